#!/usr/bin/env bash
# Install the test peers and run every check and test. This is what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
./ops/install-test-deps.sh

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
if [ -n "${SCYLLA_URI:-}" ]; then
  echo "== ScyllaDB conformance against $SCYLLA_URI"
  cargo nextest run -p switchboard-schema --locked --run-ignored only scylla_backend_conforms
else
  echo "== ScyllaDB conformance: SKIPPED (SCYLLA_URI not set; the suite ran against the embedded backend)"
fi
