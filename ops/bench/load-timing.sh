#!/usr/bin/env bash
# Send timing of switchboard-load: does the paced rate hold, without drift,
# at 10,000 SIP messages per second and above, on one core?
#
# switchboard-load `call` (one current-thread runtime: one core) places calls
# at each RATE for STEP_S seconds against switchboard-load `answer`, on
# 127.0.0.1. Each call is 6 messages on the caller's socket (INVITE, 100,
# 200, ACK, BYE, 200), so 1,700 calls/s is about 10,000 messages/s.
#
# Prints per rate: messages per second, calls started per second (lowest and
# highest one-second sample), drift (calls started minus rate x time, at the
# end), failed calls, and the caller's CPU share of one core.
#
# Usage: ops/bench/load-timing.sh [rates...]   (default: 1700 3400 5000)
set -euo pipefail
cd "$(dirname "$0")/../.."
RATES=("$@"); [ ${#RATES[@]} -gt 0 ] || RATES=(1700 3400 5000)
STEP_S=${STEP_S:-20}
PORT=${PORT:-27700}
cargo build --release --locked -p switchboard-loadtest -q
L=./target/release/switchboard-load
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
HZ=$(getconf CLK_TCK)
printf '%8s %10s %14s %8s %8s %7s\n' rate msgs/s started/s drift failed cpu%
for rate in "${RATES[@]}"; do
  $L answer -p "$PORT" -d $((STEP_S + 40)) -q >/dev/null 2>&1 &
  ANS=$!
  sleep 0.3
  $L call "127.0.0.1:$PORT" -r "$rate" -d "$STEP_S" --hold 1000 -q --json "$WORK/r.json" >/dev/null 2>&1 &
  PID=$!
  ticks=0
  while kill -0 $PID 2>/dev/null; do
    t=$(awk '{print $14+$15}' /proc/$PID/stat 2>/dev/null || echo "$ticks"); ticks=$t; sleep 0.2
  done
  wait $PID || true
  kill $ANS 2>/dev/null || true; wait $ANS 2>/dev/null || true
  python3 - "$WORK/r.json" "$rate" "$STEP_S" "$ticks" "$HZ" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); rate = float(sys.argv[2]); step = float(sys.argv[3])
ticks, hz = float(sys.argv[4]), float(sys.argv[5])
full = [s for s in r['timeline'] if s['t'] <= step + 0.01]
per = [s['started'] for s in full]
msgs = (r['messages_out'] + r['messages_in']) / (step + 1.0)  # the step plus the last calls' hold
drift = r['started'] - rate * step
cpu = 100 * ticks / hz / r['elapsed_s']
print(f"{int(rate):8d} {msgs:10.0f} {min(per):6d}-{max(per):<7d} {drift:+8.0f} {r['failed']:8d} {cpu:6.0f}%")
PY
  PORT=$((PORT + 1))
done
