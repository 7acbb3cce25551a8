#!/usr/bin/env bash
# On-net calls per second through the engine, on loopback, with SIPp.
#
# A SIPp UAC (member 100) calls a registered SIPp UAS (member 200) through a
# release build of `switchboard serve`. Each call: INVITE, 407, ACK, INVITE
# with digest credentials, 100/180/200, ACK, HOLD_MS hold, BYE/200 - on both
# legs of the B2BUA. The rate is stepped up; a step passes when under 0.1% of
# its calls fail and at least 95% of the target rate was sustained. Every
# step is bounded in calls and time; everything runs on 127.0.0.1.
#
# Prints, per step: rate, calls, failures, achieved rate, engine CPU share
# (of one core) and CPU microseconds per call; then the highest passing rate
# and the engine's peak memory. rss_MB is the engine's resident memory at the
# end of each step (calls of the step still lingering included).
#
# Usage: ops/bench/cps.sh [rates...]   (default: 200 400 800 1200 1600 2000 2500 3000 3500 4000)
# Env:   STEP_S (seconds per step, default 20, as in the Kamailio reference runs), HOLD_MS (default 1000)
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v sipp >/dev/null || ./ops/install-test-deps.sh
RATES=("$@"); [ ${#RATES[@]} -gt 0 ] || RATES=(200 400 800 1200 1600 2000 2500 3000 3500 4000)
STEP_S=${STEP_S:-20}
HOLD_MS=${HOLD_MS:-1000}
SIP_PORT=${SIP_PORT:-15060}
HTTP_PORT=${HTTP_PORT:-18080}
UAS_PORT=15202
UAC_PORT=15201

cargo build --release --locked --bin switchboard -q
BIN=./target/release/switchboard
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
$BIN member add --number 100 --password bench-100 --data "$WORK/data" >/dev/null
$BIN member add --number 200 --password bench-200 --data "$WORK/data" >/dev/null
RUST_LOG=error $BIN serve --data "$WORK/data" --sip 127.0.0.1:$SIP_PORT --http 127.0.0.1:$HTTP_PORT >"$WORK/serve.log" 2>&1 &
PID=$!
for _ in $(seq 50); do grep -q serving "$WORK/serve.log" && break; sleep 0.1; done

S=$(pwd)/tests/scenarios
sed 's/__FINAL__/200/' $S/register.xml >"$WORK/register.xml"
sed "s/__HOLD__/$HOLD_MS/" $S/uac.xml >"$WORK/uac.xml"
printf 'SEQUENTIAL\n200;bench-200;3600;\n' >"$WORK/callee.csv"
printf 'SEQUENTIAL\n100;bench-100;\n' >"$WORK/caller.csv"
(cd "$WORK" && sipp -sf register.xml -inf callee.csv -au 200 -ap bench-200 -m 1 -i 127.0.0.1 -p $UAS_PORT \
  127.0.0.1:$SIP_PORT -nostdin -timeout 10s -timeout_error >/dev/null 2>&1) || { echo "callee registration failed"; exit 1; }
(cd "$WORK" && exec sipp -sf "$S/uas.xml" -i 127.0.0.1 -p $UAS_PORT -nostdin -max_socket 65000 >/dev/null 2>&1) &

cpu_ticks() { awk '{print $14+$15}' /proc/$PID/stat; }
HZ=$(getconf CLK_TCK)
best=0
printf '%8s %8s %8s %10s %9s %12s %9s\n' rate calls failed achieved cpu% us/call rss_MB
for rate in "${RATES[@]}"; do
  calls=$((rate * STEP_S))
  t0=$(date +%s.%N); c0=$(cpu_ticks)
  rm -f "$WORK"/uac_*_.csv "$WORK"/*.csv.stat 2>/dev/null || true
  (cd "$WORK" && timeout $((STEP_S * 3 + 30)) sipp -sf uac.xml -inf caller.csv -au 100 -ap bench-100 -s 200 \
    -i 127.0.0.1 -p $UAC_PORT -r "$rate" -m "$calls" -l $((rate * 4)) -recv_timeout 8000 \
    -nostdin -trace_stat -stf step.csv -fd 1 127.0.0.1:$SIP_PORT >/dev/null 2>&1) || true
  t1=$(date +%s.%N); c1=$(cpu_ticks)
  read -r ok failed < <(python3 - "$WORK/step.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1]), delimiter=';'))
head, last = rows[0], rows[-1]
ok = int(last[head.index('SuccessfulCall(C)')]); failed = int(last[head.index('FailedCall(C)')])
print(ok, failed)
PY
)
  elapsed=$(python3 -c "print($t1 - $t0 - $HOLD_MS/1000)")
  read -r achieved cpu uspc pass < <(python3 -c "
ok,failed,calls,rate,el=$ok,$failed,$calls,$rate,$elapsed
ticks=($c1-$c0)/$HZ
achieved=ok/el if el>0 else 0
cpu=100*ticks/(el+$HOLD_MS/1000)
uspc=1e6*ticks/max(ok,1)
passed=(failed+(calls-ok-failed))<=calls*0.001 and achieved>=0.95*rate
print(f'{achieved:.0f} {cpu:.0f} {uspc:.0f} {int(passed)}')")
  rss=$(awk '/VmRSS/ {printf "%d", $2/1024}' /proc/$PID/status)
  printf '%8s %8s %8s %10s %9s %12s %9s %s\n' "$rate" "$calls" "$((calls - ok))" "$achieved" "$cpu" "$uspc" "$rss" "$([ "$pass" = 1 ] && echo pass || echo FAIL)"
  [ "$pass" = 1 ] || break
  best=$rate
done
peak=$(awk '/VmHWM/ {print $2" "$3}' /proc/$PID/status)
echo "highest passing rate: $best calls/s (step ${STEP_S}s, hold ${HOLD_MS}ms); engine peak memory: $peak"
