#!/usr/bin/env bash
# Concurrent-call capacity of Switchboard, signalling only: calls are set up
# at RATE per second and held open (HOLD_S) while the engine's resident
# memory and the call set-up latency are sampled, until COUNT calls are up,
# the set-up latency breaks (p99 INVITE→200 over MAX_P99_MS in a second) or
# calls fail. Prints, every STEP calls: calls up, engine RSS, memory per
# call since the start, and that second's set-up p99.
#
# Caller: switchboard-load (member 100, digest auth); callee: switchboard-load
# `answer` registered as member 200. Bounded: COUNT calls, the hold, and a
# timeout; all on 127.0.0.1.
#
# Usage: ops/bench/capacity.sh   Env: COUNT (default 20000), RATE (default 500),
#        HOLD_S (default: long enough to hold them all), MAX_P99_MS (default 200)
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNT=${COUNT:-20000}
RATE=${RATE:-500}
HOLD_S=${HOLD_S:-$((COUNT / RATE + 30))}
MAX_P99_MS=${MAX_P99_MS:-200}
SIP=36060; HTTP=36080; UAS=36202
cargo build --release --locked -p switchboard -p switchboard-loadtest -q
SB=./target/release/switchboard
L=./target/release/switchboard-load
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
$SB member add --number 100 --password pw-100 --data "$WORK/d" >/dev/null
$SB member add --number 200 --password pw-200 --data "$WORK/d" >/dev/null
RUST_LOG=error $SB serve --data "$WORK/d" --sip 127.0.0.1:$SIP --http 127.0.0.1:$HTTP >"$WORK/serve.log" 2>&1 &
PID=$!
for _ in $(seq 100); do grep -q serving "$WORK/serve.log" && break; sleep 0.1; done
$L register 127.0.0.1:$SIP --from 200 -p $UAS -m 1 -q >/dev/null
$L answer -p $UAS -d $((HOLD_S + COUNT / RATE + 60)) -q >/dev/null 2>&1 &
sleep 0.5
rss() { awk '/VmRSS/ {print $2}' /proc/$PID/status; }
base=$(rss)
$L call 127.0.0.1:$SIP --from 100 --to 200 -r "$RATE" -m "$COUNT" -l $((COUNT + 1)) --hold $((HOLD_S * 1000)) \
  --drain 5 -d $((COUNT / RATE + 5)) --json "$WORK/c.json" >"$WORK/call.out" 2>"$WORK/call.err" &
CALLER=$!
printf '%10s %10s %14s %12s\n' calls_up rss_MB bytes/call p99_setup_ms
worst=0
while kill -0 $CALLER 2>/dev/null; do
  sleep 2
  up=$(curl -s 127.0.0.1:$HTTP/metrics | awk '/^switchboard_calls_active / {print int($2)}')
  p99=$(tail -n 1 "$WORK/call.err" | sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p')
  r=$(rss)
  per=$(python3 -c "print(round(($r - $base) * 1024 / max(${up:-0}, 1)))")
  printf '%10s %10s %14s %12s\n' "${up:-0}" "$((r / 1024))" "$per" "${p99:--}"
  [ "${up:-0}" -ge "$COUNT" ] && break
  if [ -n "$p99" ] && python3 -c "import sys; sys.exit(0 if float('$p99') > $MAX_P99_MS else 1)"; then
    echo "set-up latency broke: p99 $p99 ms > $MAX_P99_MS ms"; break
  fi
  if grep -q "failed [1-9]" <(tail -n 1 "$WORK/call.err"); then echo "calls failed: $(tail -n 1 "$WORK/call.err")"; break; fi
done
up=$(curl -s 127.0.0.1:$HTTP/metrics | awk '/^switchboard_calls_active / {print int($2)}')
r=$(rss)
echo "held open: ${up:-0} calls; engine RSS $((r / 1024)) MB (idle $((base / 1024)) MB); $(python3 -c "print(round(($r - $base) * 1024 / max(${up:-0}, 1)))") bytes per call"
kill $CALLER 2>/dev/null || true
