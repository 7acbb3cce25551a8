#!/usr/bin/env bash
# Call set-up time on one node against across two nodes (issue 21): the
# time from the caller's authenticated INVITE to its 200 OK, measured by
# SIPp (rtd), for on-net calls from member 100 to member 200 at a steady
# rate.
#
#   one:   100 and 200 both on node a
#   cross: 100 on node a, 200's phone registered through node b: a hands
#          each call to b over SIP (signed), b delivers it
#
# Both nodes are release `switchboard serve` processes on one data
# directory (the embedded store shared, as nodes share a cluster's
# keyspace), on 127.0.0.1. Bounded: CALLS calls (default 1000) at RATE
# calls/s (default 50), 2 s hold. Prints p50/p90/p99/max in ms per case.
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v sipp >/dev/null || ./ops/install-test-deps.sh
CALLS=${CALLS:-1000}
RATE=${RATE:-50}
cargo build --release --locked --bin switchboard -q
BIN=./target/release/switchboard
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
S=$(pwd)/tests/scenarios
$BIN member add --number 100 --password bench-100 --data "$WORK/data" >/dev/null
$BIN member add --number 200 --password bench-200 --data "$WORK/data" >/dev/null
for n in a b; do
  cat >"$WORK/$n.toml" <<TOML
[node]
name = "$n"
region = "seoul"

[cluster]
secret = "the benchmark cluster's shared secret"
TOML
done
serve() { # name sip http
  $BIN serve --config "$WORK/$1.toml" --data "$WORK/data" --sip "127.0.0.1:$2" --http "127.0.0.1:$3" \
    >"$WORK/$1.log" 2>&1 &
  for _ in $(seq 300); do grep -q serving "$WORK/$1.log" && return 0; sleep 0.1; done
  cat "$WORK/$1.log"; exit 1
}
SIP_A=16060; SIP_B=16070
SWITCHBOARD_ENUM=127.0.0.1:0 serve a $SIP_A 16080
SWITCHBOARD_ENUM=127.0.0.1:0 serve b $SIP_B 16081
sleep 3 # each node has read the other's announcement
# The caller's scenario with its response-time measure: from the
# authenticated INVITE to the 200.
awk 'BEGIN{n=0} /<send retrans="500">/{n++; if(n==2){sub(/<send retrans="500">/,"<send retrans=\"500\" start_rtd=\"1\">")}} {print}' \
  "$S/uac.xml" | sed 's|<recv response="200" rrs="true">|<recv response="200" rrs="true" rtd="1">|' \
  | sed 's/__HOLD__/2000/' >"$WORK/uac.xml"
grep -q 'start_rtd' "$WORK/uac.xml" && grep -q 'rtd="1"' "$WORK/uac.xml"
sed 's/__FINAL__/200/' "$S/register.xml" >"$WORK/register.xml"
printf 'SEQUENTIAL\n100;bench-100;\n' >"$WORK/caller.csv"
printf 'SEQUENTIAL\n200;bench-200;3600;\n' >"$WORK/callee.csv"

run() { # case sip-of-callee's-node
  local case=$1 at=$2 uas=16202
  (cd "$WORK" && sipp -sf register.xml -inf callee.csv -au 200 -ap bench-200 -m 1 -i 127.0.0.1 -p $uas \
    "127.0.0.1:$at" -nostdin -timeout 10s -timeout_error >/dev/null 2>&1) || { echo "registration failed"; exit 1; }
  (cd "$WORK" && exec sipp -sf "$S/uas.xml" -i 127.0.0.1 -p $uas -nostdin >/dev/null 2>&1) &
  local uas_pid=$!
  rm -f "$WORK"/uac_*_rtt.csv
  (cd "$WORK" && timeout $((CALLS / RATE + 60)) sipp -sf uac.xml -inf caller.csv -au 100 -ap bench-100 -s 200 \
    -i 127.0.0.1 -p 16201 "127.0.0.1:$SIP_A" -r "$RATE" -m "$CALLS" -nostdin -trace_rtt -rtt_freq 1 \
    -timeout $((CALLS / RATE + 50))s >/dev/null 2>&1) || echo "($case: some calls failed)"
  kill "$uas_pid" 2>/dev/null || true
  wait "$uas_pid" 2>/dev/null || true
  python3 - "$case" "$WORK"/uac_*_rtt.csv <<'PY'
import sys
case, files = sys.argv[1], sys.argv[2:]
ms = []
for f in files:
    for line in open(f):
        parts = line.strip().split(';')
        if len(parts) >= 2:
            try:
                ms.append(float(parts[1]))
            except ValueError:
                pass
ms.sort()
q = lambda p: ms[min(len(ms) - 1, int(len(ms) * p))] if ms else float('nan')
print(f"{case:<6} calls {len(ms):>5}  p50 {q(0.5):6.2f} ms  p90 {q(0.9):6.2f} ms  p99 {q(0.99):6.2f} ms  max {ms[-1] if ms else float('nan'):6.2f} ms")
PY
  sleep 3
}
run one $SIP_A
run cross $SIP_B
