#!/usr/bin/env bash
# Store throughput: CDR writes/s, number-registry lookups/s and call holds
# (set then settled)/s, with the same code against the embedded store
# (always) and a CQL cluster: the one SCYLLA_URI names
# (scylla://host:port[,…]/keyspace?dc=DC; run `switchboard migrate` on it
# first), or with CASSANDRA=1 a two-DC Apache Cassandra 5.0 cluster on
# loopback that this script starts, migrates and stops. Prints count,
# seconds, operations per second and p50/p99 latency per operation.
#
# Usage: ops/bench/store.sh
# Env:   CDRS (default 20000), LOOKUPS (default 50000), HOLDS (default 5000),
#        CONCURRENCY (default 64), SCYLLA_URI, CASSANDRA
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked -q -p switchboard-schema --example store_bench
BIN=./target/release/examples/store_bench
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "== embedded ($WORK)"
$BIN embedded "$WORK"
if [ -z "${SCYLLA_URI:-}" ] && [ -n "${CASSANDRA:-}" ]; then
  ./ops/cassandra/cluster.sh start 2
  trap 'rm -rf "$WORK"; ./ops/cassandra/cluster.sh stop' EXIT
  eval "$(./ops/cassandra/cluster.sh env)"
  SCYLLA_URI="${SCYLLA_URI/switchboard_test/switchboard_bench_$$}"
  export MIGRATE="$SCYLLA_REPLICATION"
fi
if [ -n "${SCYLLA_URI:-}" ]; then
  echo "== CQL cluster ($SCYLLA_URI)"
  $BIN "$SCYLLA_URI"
else
  echo "== CQL cluster: skipped (set SCYLLA_URI, or CASSANDRA=1 to start one here)"
fi
