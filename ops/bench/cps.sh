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
# (of one core), CPU microseconds per call and the CDRs written per second
# (every call writes one to the embedded store as it ends); then the highest
# passing rate, the engine's peak memory, and whether every call placed has
# exactly one CDR. rss_MB is the engine's resident memory at the
# end of each step (calls of the step still lingering included).
#
# With LCR=1 the callee is a carrier trunk instead: the UAC dials the PSTN
# number +82 2 1234 5678, the engine picks the trunk by least cost among three
# trunks whose rate decks hold 1,000,000 prefixes between them, translates the
# number to the national format, and the SIPp UAS plays the trunk.
#
# With INBOUND=1 the caller is a carrier instead: SIPp on 127.0.0.3 plays
# a carrier's switch behind an inbound trunk and calls the DID
# +1 212 555 0100 (in national format, unauthenticated, with
# P-Asserted-Identity) that the operator assigned to member 200; the engine
# reads the number back from the trunk's format, finds the DID's holder and
# rings its registered phone (issue 20).
#
# Usage: ops/bench/cps.sh [rates...]   (default: 200 400 800 1200 1600 2000 2500 3000 3500 4000)
# Env:   STEP_S (seconds per step, default 20, as in the Kamailio reference runs), HOLD_MS (default 1000),
#        LCR (1: calls to a PSTN number through least-cost routing to a SIPp trunk),
#        INBOUND (1: calls from a carrier's trunk to a member's DID),
#        MEDIA (0: SDP passes end to end instead of the media being anchored),
#        MEDIA_PORTS (the relay's port range, e.g. "30000, 39999"; default: the engine's)
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

source ops/bench/onnet.sh
bench_setup
LCR=${LCR:-0}
CONFIG=()
DIAL=200
if [ "$LCR" = 1 ]; then
  python3 - "$WORK" <<'PY'
import random, sys
work = sys.argv[1]
rng = random.Random(7)
seen = set()
for name, n, extra in (("seoul", 333_334, "822,20000\n"), ("korea", 333_333, "82,5000\n"), ("world", 333_333, "8231,90000\n")):
    with open(f"{work}/{name}.csv", "w") as f:
        f.write("prefix,per_minute\n" + extra)
        while n > 1:
            p = "".join(rng.choice("0123456789") for _ in range(rng.randint(6, 12)))
            if p.startswith("82") or p in seen:
                continue
            seen.add(p)
            f.write(f"{p},{rng.randint(1000, 90000)}\n")
            n -= 1
PY
  cat >"$WORK/switchboard.toml" <<TOML
[numbering]
home_country = "KR"
[[trunks]]
name = "seoul"
address = "127.0.0.1:$UAS_PORT"
format = "national"
rates = "$WORK/seoul.csv"
options_interval_s = 0
[[trunks]]
name = "korea"
address = "127.0.0.1:15299"
rates = "$WORK/korea.csv"
options_interval_s = 0
[[trunks]]
name = "world"
address = "127.0.0.1:15298"
rates = "$WORK/world.csv"
options_interval_s = 0
TOML
  CONFIG=(--config "$WORK/switchboard.toml")
  DIAL=+82212345678
fi
INBOUND=${INBOUND:-0}
ADMIN=bench-operator-token-0123456789
if [ "$INBOUND" = 1 ]; then
  cat >"$WORK/switchboard.toml" <<TOML
[api]
admin_token = "$ADMIN"
[[trunks]]
name = "carrier"
address = "127.0.0.3:15297"
format = "national"
inbound = true
trusted = true
options_interval_s = 0
TOML
  printf 'number,country,area,price_class,price,kind,trunk,monthly_price\n+12125550100,,212,,0,did,carrier,300\n' >"$WORK/dids.csv"
  $BIN numbers import "$WORK/dids.csv" --data "$WORK/data" >/dev/null
fi
touch "$WORK/switchboard.toml"
if [ "${MEDIA:-1}" = 0 ]; then
  printf '[media]\nenabled = false\n' >>"$WORK/switchboard.toml"
elif [ -n "${MEDIA_PORTS:-}" ]; then
  printf '[media]\nports = [%s]\n' "$MEDIA_PORTS" >>"$WORK/switchboard.toml"
fi
CONFIG=(--config "$WORK/switchboard.toml")
RUST_LOG=error $BIN serve "${CONFIG[@]}" --data "$WORK/data" --sip 127.0.0.1:$SIP_PORT --http 127.0.0.1:$HTTP_PORT >"$WORK/serve.log" 2>&1 &
PID=$!
wait_serving

sed "s/__HOLD__/$HOLD_MS/" $S/uac.xml >"$WORK/uac.xml"
UAC_ARGS=(-inf caller.csv -au 100 -ap bench-100 -s "$DIAL" -i 127.0.0.1)
if [ "$INBOUND" = 1 ]; then
  # The DID's holder: a member who signed up, with a SIP password.
  API=http://127.0.0.1:$HTTP_PORT/api/v1
  read -r CALLEE TOKEN < <(curl -sf -X POST $API/signup \
    -d '{"login":"did@bench.example","password":"bench-password-1","kind":"individual","name":"Bench"}' |
    python3 -c 'import json,sys; v=json.load(sys.stdin); print(v["member"]["id"], v["token"])')
  curl -sf -X PUT "$API/members/$CALLEE/sip" -H "Authorization: Bearer $TOKEN" -d '{"password":"bench-200"}' >/dev/null
  curl -sf -X PUT "$API/numbers/+12125550100/holder" \
    -H "Authorization: Bearer $ADMIN" -d "{\"account\":\"$CALLEE\"}" >/dev/null || { echo "assigning the DID failed"; exit 1; }
  export CALLEE
  sed -e "s/__HOLD__/$HOLD_MS/" -e "s/__CALLED__/2125550100/g" -e "s/__FROM__/6465550123/g" \
    -e "s/__PAI__/6465550123/g" $S/carrier_call.xml >"$WORK/uac.xml"
  UAC_ARGS=(-i 127.0.0.3)
fi
if [ "$LCR" != 1 ]; then
  start_callee
else
  start_uas
fi

cpu_ticks() { awk '{print $14+$15}' /proc/$PID/stat; }
cdrs() {
  python3 -c "import urllib.request, re
t = urllib.request.urlopen('http://127.0.0.1:$HTTP_PORT/metrics').read().decode()
m = re.search(r'switchboard_cdrs_total\{result=\"written\"\} (\d+)', t)
print(m.group(1) if m else 0)"
}
HZ=$(getconf CLK_TCK)
best=0
printf '%8s %8s %8s %10s %9s %12s %9s %8s\n' rate calls failed achieved cpu% us/call rss_MB cdr/s
placed=0
for rate in "${RATES[@]}"; do
  calls=$((rate * STEP_S))
  t0=$(date +%s.%N); c0=$(cpu_ticks); d0=$(cdrs)
  rm -f "$WORK"/uac_*_.csv "$WORK"/*.csv.stat 2>/dev/null || true
  (cd "$WORK" && timeout $((STEP_S * 3 + 30)) sipp -sf uac.xml "${UAC_ARGS[@]}" -p $UAC_PORT -r "$rate" -m "$calls" -l $((rate * (HOLD_MS / 1000 + 3))) -recv_timeout 8000 \
    -nostdin -trace_stat -stf step.csv -fd 1 -trace_err -error_file "$WORK/errors-$rate.log" \
    127.0.0.1:$SIP_PORT >/dev/null 2>&1) || true
  t1=$(date +%s.%N); c1=$(cpu_ticks); d1=$(cdrs)
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
  cdrps=$(python3 -c "print(f'{($d1 - $d0) / ($t1 - $t0):.0f}')")
  placed=$((placed + ok + failed))
  printf '%8s %8s %8s %10s %9s %12s %9s %8s %s\n' "$rate" "$calls" "$((calls - ok))" "$achieved" "$cpu" "$uspc" "$rss" "$cdrps" "$([ "$pass" = 1 ] && echo pass || echo FAIL)"
  if [ "$pass" != 1 ]; then
    # Why the calls failed, as SIPp saw it (first lines, then by kind).
    grep -E "^[0-9-]+\s[0-9:.]+\s[0-9.]+: " "$WORK/errors-$rate.log" 2>/dev/null | cut -d: -f4- | sort | uniq -c | sort -rn | head -5 || true
    break
  fi
  best=$rate
done
sleep 3
echo "CDRs written: $(cdrs) for $placed calls placed (SIPp's successful + failed count)"
# What the engine shed, and how far behind its event loop fell.
python3 -c "import urllib.request, re
t = urllib.request.urlopen('http://127.0.0.1:$HTTP_PORT/metrics').read().decode()
shed = sum(float(v) for v in re.findall(r'^switchboard_shed_total\{[^}]*\} (\S+)', t, re.M))
lag = re.search(r'^switchboard_event_loop_lag_seconds (\S+)', t, re.M)
print(f'shed: {shed:.0f} requests; event-loop lag at the end: {float(lag.group(1)) * 1000 if lag else 0:.1f} ms')"
peak=$(awk '/VmHWM/ {print $2" "$3}' /proc/$PID/status)
echo "highest passing rate: $best calls/s (step ${STEP_S}s, hold ${HOLD_MS}ms); engine peak memory: $peak"
