#!/usr/bin/env bash
# Shedding under overload: offered vs accepted vs 503 rate vs p99 setup time.
#
# A release `switchboard serve` with `[overload] max_cps = LIMIT`; a SIPp UAC
# (member 100, tests/scenarios/uac_or_shed.xml) calls a registered SIPp UAS
# (member 200) at 0.5x, 1x, 1.5x and 2x LIMIT for STEP_S seconds each. Each
# call is either served (407 round, 200, HOLD_MS, BYE) or shed at once (503
# with Retry-After, checked). Per step: offered calls/s, accepted/s (calls
# the engine counted), 503/s (its shed counter), failed calls (neither path:
# must be 0), and the setup time from the first INVITE to the final answer
# (p50/p99, SIPp's response time of each call). Bounded in calls and time;
# loopback only.
#
# Usage: ops/bench/shed.sh [LIMIT]     (default 1000)
# Env:   STEP_S (default 20), HOLD_MS (default 1000)
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v sipp >/dev/null || ./ops/install-test-deps.sh
LIMIT=${1:-1000}
STEP_S=${STEP_S:-20}
HOLD_MS=${HOLD_MS:-1000}
SIP_PORT=${SIP_PORT:-15060}
HTTP_PORT=${HTTP_PORT:-18080}
UAS_PORT=15202
UAC_PORT=15201
source ops/bench/onnet.sh
bench_setup
printf '[overload]\nmax_cps = %s\n[calls]\ndrain_s = 5\n' "$LIMIT" >"$WORK/switchboard.toml"
SWITCHBOARD_ENUM=127.0.0.1:15300 RUST_LOG=error $BIN serve --config "$WORK/switchboard.toml" --data "$WORK/data" \
  --sip 127.0.0.1:$SIP_PORT --http 127.0.0.1:$HTTP_PORT >"$WORK/serve.log" 2>&1 &
wait_serving
sed "s/__HOLD__/$HOLD_MS/" $S/uac_or_shed.xml >"$WORK/uac.xml"
start_callee

counter() {
  python3 -c "import urllib.request, re
t = urllib.request.urlopen('http://127.0.0.1:$HTTP_PORT/metrics').read().decode()
print(sum(float(v) for v in re.findall(r'^$1\{[^}]*\} (\S+)', t, re.M)))"
}
printf '%8s %9s %9s %9s %7s %16s\n' offered offered/s accepted/s 503/s failed "setup p50/p99"
for factor in 0.5 1 1.5 2; do
  rate=$(python3 -c "print(round($LIMIT * $factor))")
  calls=$((rate * STEP_S))
  a0=$(counter switchboard_calls_total); s0=$(counter switchboard_shed_total)
  rm -f "$WORK"/*_rtt.csv "$WORK"/step.csv
  t0=$(date +%s.%N)
  (cd "$WORK" && timeout $((STEP_S * 3 + 40)) sipp -sf uac.xml -inf caller.csv -au 100 -ap bench-100 -s 200 \
    -i 127.0.0.1 -p $UAC_PORT -r "$rate" -m "$calls" -l $((rate * 4)) -recv_timeout 8000 -nostdin \
    -trace_stat -stf step.csv -fd 1 -trace_rtt -rtt_freq 1 127.0.0.1:$SIP_PORT >/dev/null 2>&1) || true
  t1=$(date +%s.%N)
  sleep 2
  a1=$(counter switchboard_calls_total); s1=$(counter switchboard_shed_total)
  python3 - "$WORK" "$rate" "$calls" "$a0" "$a1" "$s0" "$s1" "$t0" "$t1" "$HOLD_MS" <<'PY'
import csv, glob, sys
work, rate, calls, a0, a1, s0, s1, t0, t1, hold = sys.argv[1:]
rows = list(csv.reader(open(f"{work}/step.csv"), delimiter=';'))
head, last = rows[0], rows[-1]
ok = int(last[head.index('SuccessfulCall(C)')]); failed = int(last[head.index('FailedCall(C)')])
span = float(t1) - float(t0) - int(hold) / 1000
rtts = []
for f in glob.glob(f"{work}/*_rtt.csv"):
    for r in csv.reader(open(f), delimiter=';'):
        try:
            rtts.append(float(r[1]))
        except (ValueError, IndexError):
            pass
rtts.sort()
q = lambda p: rtts[min(len(rtts) - 1, int(len(rtts) * p))] if rtts else 0
acc = (float(a1) - float(a0)) / span
shed = (float(s1) - float(s0)) / span
print(f"{calls:>8} {ok / span + failed / span:>9.0f} {acc:>9.0f} {shed:>9.0f} {failed:>7} {q(0.5):>7.1f}/{q(0.99):>6.1f} ms")
PY
done
peak=$(awk '/VmHWM/ {print $2" "$3}' /proc/$(pgrep -f "release/switchboard serve --config $WORK" | head -1)/status 2>/dev/null || echo "?")
echo "limit $LIMIT new calls/s (step ${STEP_S}s, hold ${HOLD_MS}ms); engine peak memory: $peak"
