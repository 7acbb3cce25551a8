#!/usr/bin/env bash
# Build and run `switchboard serve` on the embedded defaults:
# SIP on 127.0.0.1:5060 (UDP+TCP), HTTP on 127.0.0.1:8080, data in ./data.
# Extra arguments go to `serve` (e.g. --config ops/config/switchboard.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin switchboard
exec ./target/release/switchboard serve "$@"
