#!/usr/bin/env bash
# Store throughput: CDR writes/s and number-registry lookups/s, with the same
# code against the embedded store (always) and a ScyllaDB cluster (when
# SCYLLA_URI=scylla://host:port[,…]/keyspace?dc=DC is given; run
# `switchboard migrate` on it first). Prints count, seconds, operations per
# second and p50/p99 latency per operation, for comparison.
#
# Usage: ops/bench/store.sh
# Env:   CDRS (default 20000), LOOKUPS (default 50000), CONCURRENCY (default 64), SCYLLA_URI
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked -q -p switchboard-schema --example store_bench
BIN=./target/release/examples/store_bench
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "== embedded ($WORK)"
$BIN embedded "$WORK"
if [ -n "${SCYLLA_URI:-}" ]; then
  echo "== ScyllaDB ($SCYLLA_URI)"
  $BIN "$SCYLLA_URI"
else
  echo "== ScyllaDB: skipped (set SCYLLA_URI to measure a cluster)"
fi
