#!/usr/bin/env bash
# Install the test peers and run every check and test. This is what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
./ops/install-test-deps.sh

# The CQL cluster of the ScyllaDB backend's tests: Apache Cassandra 5.0 in two
# data centers on loopback (ops/cassandra), started now so that it comes up
# while the checks below run, unless SCYLLA_URI names a cluster already.
cluster=
if [ -z "${SCYLLA_URI:-}" ]; then
  cluster=started
  mkdir -p target
  ./ops/cassandra/cluster.sh start 2 >target/cassandra-start.log 2>&1 &
  cluster_pid=$!
  trap './ops/cassandra/cluster.sh stop >/dev/null 2>&1 || true' EXIT
fi

echo "== format";        cargo fmt --all -- --check
echo "== lint";          cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== layering"       # the engine stays sans-IO: no runtime, actors, HTTP or database
if cargo tree -p switchboard-engine -e normal --prefix none --locked | grep -E '^(tokio|ractor|warp|scylla|rusqlite) '; then
  echo "engine must not depend on the crates above"; exit 1
fi
echo "== docs";          RUSTDOCFLAGS=-Dwarnings cargo doc --workspace --no-deps --locked -q
echo "== build";         cargo build --workspace --all-targets --locked
echo "== tests";         cargo nextest run --workspace --locked --no-fail-fast
echo "== doc tests";     cargo test --doc --workspace --locked -q
if [ -n "$cluster" ]; then
  echo "== CQL cluster (ops/cassandra: Cassandra 5.0, seoul and virginia)"
  if ! wait "$cluster_pid"; then
    cat target/cassandra-start.log
    echo "the CQL cluster did not start"; exit 1
  fi
  cat target/cassandra-start.log
  eval "$(./ops/cassandra/cluster.sh env)"
fi
echo "== ScyllaDB conformance against $SCYLLA_URI"
cargo nextest run -p switchboard-schema --locked --run-ignored only scylla_backend_conforms --no-capture
if [ -n "${SCYLLA_URI_REMOTE:-}" ]; then
  echo "== Nodes on the CQL cluster (a hand-over across two regions; kill -9 and takeover)"
  cargo nextest run -p switchboard-tests --locked --run-ignored only -E 'test(on_the_cql_cluster)'
else
  echo "== Two nodes in two regions on the CQL cluster: SKIPPED (SCYLLA_URI_REMOTE names no second data center)"
fi
