#!/usr/bin/env bash
# Switchboard and Kamailio side by side, same machine, same run, loopback.
#
# Calls: INVITE/100/180/200/ACK, HOLD_MS hold, BYE/200, from a caller to a
# SIPp UAS (`sipp -sn uas`), through
#   (a) Switchboard as a B2BUA: caller member 100 authenticates (407) and
#       dials member 200, registered from the UAS's port;
#   (b) Kamailio 5.6 (Debian package) as a transaction-stateful,
#       record-routing proxy (tm + rr, 2 UDP workers, tlsf allocator, 4 GB
#       shared memory) relaying every INVITE to the UAS, no authentication;
#       SIPp runs ops/bench/uac-late-180.xml there (SIPp's uac flow that
#       accepts a 180 relayed after the 200 by another Kamailio worker).
# Each is loaded by SIPp (the field's reference) and by switchboard-load,
# each a row. For each row the rate steps up (STEP_S seconds per step) until
# a step fails (0.1% or more failed calls, or under 95% of the rate); the
# row reports the highest passing rate, the server's CPU per call at that
# rate, and the server's memory (PSS) at the end of the row.
# REGISTER with digest auth (MD5, qop=auth) per second: switchboard-load
# registers USERS members against each server's registrar (Switchboard's
# own; Kamailio's registrar + auth_db over db_text, in-memory location).
#
# Prints a table and the Switchboard/Kamailio ratios. Every step is bounded
# in calls and time; everything stays on 127.0.0.1.
#
# Usage: ops/bench/vs-kamailio.sh
# Env:   STEP_S (default 20), HOLD_MS (default 1000),
#        CALL_RATES (default "500 1000 1500 2000 2500 3000 4000 5000 6000 7000 8000"),
#        REG_RATES (default "1000 2000 4000 6000 8000 12000 16000"), USERS (default 2000),
#        SERVERS (default "switchboard kamailio"), GENS (default "sipp load"; "" skips calls)
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v sipp >/dev/null || ./ops/install-test-deps.sh
if ! command -v kamailio >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends kamailio >/dev/null
fi
STEP_S=${STEP_S:-20}
HOLD_MS=${HOLD_MS:-1000}
read -r -a CALL_RATES <<<"${CALL_RATES:-500 1000 1500 2000 2500 3000 4000 5000 6000 7000 8000}"
read -r -a REG_RATES <<<"${REG_RATES:-1000 2000 4000 6000 8000 12000 16000}"
USERS=${USERS:-2000}
read -r -a SERVERS <<<"${SERVERS:-switchboard kamailio}"
read -r -a GENS <<<"${GENS:-sipp load}"
SB_PORT=35060; SB_HTTP=35080; KAM_PORT=35070; UAS_PORT=35202; UAC_PORT=35201

cargo build --release --locked -p switchboard -p switchboard-loadtest -q
SB=./target/release/switchboard
L=./target/release/switchboard-load
WORK=$(mktemp -d)
SERVER=""
cleanup() { kill $(jobs -p) 2>/dev/null || true; [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT
HZ=$(getconf CLK_TCK)
S=$(pwd)/tests/scenarios
BENCH=$(pwd)/ops/bench

# --- the servers -------------------------------------------------------------
echo "provisioning $USERS members..." >&2
$SB member add --number 100 --password pw-100 --data "$WORK/sb" >/dev/null
$SB member add --number 200 --password pw-200 --data "$WORK/sb" >/dev/null
for n in $(seq 10000 $((10000 + USERS - 1))); do
  $SB member add --number "$n" --password "pw-$n" --data "$WORK/sb" >/dev/null
done
mkdir -p "$WORK/kamdb"
printf 'table_name(string) table_version(int)\nsubscriber:7\nlocation:9\n' >"$WORK/kamdb/version"
{
  echo 'id(int,auto) username(string) domain(string) password(string) ha1(string,null) ha1b(string,null)'
  i=1
  for n in 100 200 $(seq 10000 $((10000 + USERS - 1))); do echo "$i:$n:127.0.0.1:pw-$n::"; i=$((i + 1)); done
} >"$WORK/kamdb/subscriber"
cat >"$WORK/kamailio.cfg" <<EOF
#!KAMAILIO
debug=0
log_stderror=yes
children=2
listen=udp:127.0.0.1:$KAM_PORT
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "db_text.so"
loadmodule "auth.so"
loadmodule "auth_db.so"
modparam("usrloc", "db_mode", 0)
modparam("auth_db", "db_url", "text://$WORK/kamdb")
modparam("auth_db", "calculate_ha1", yes)
modparam("auth_db", "password_column", "password")
modparam("auth_db", "load_credentials", "")
request_route {
  if (!mf_process_maxfwd_header("10")) { sl_send_reply("483", "Too Many Hops"); exit; }
  if (is_method("REGISTER")) {
    if (!auth_check("\$fd", "subscriber", "1")) { auth_challenge("\$fd", "1"); exit; }
    save("location");
    exit;
  }
  if (has_totag()) {
    # Loose routing for UAs that honour Record-Route; the UAS otherwise.
    if (!loose_route()) { \$du = "sip:127.0.0.1:$UAS_PORT"; }
    if (is_method("ACK")) { if (t_check_trans()) { t_relay(); } else { forward(); } exit; }
    t_relay();
    exit;
  }
  if (is_method("CANCEL")) { if (t_check_trans()) { t_relay(); } exit; }
  record_route();
  \$du = "sip:127.0.0.1:$UAS_PORT";
  t_relay();
}
EOF

start_server() { # name -> sets SERVER (pid) and TARGET
  case $1 in
    switchboard)
      RUST_LOG=error $SB serve --data "$WORK/sb" --sip 127.0.0.1:$SB_PORT --http 127.0.0.1:$SB_HTTP >"$WORK/sb.log" 2>&1 &
      SERVER=$!; TARGET=127.0.0.1:$SB_PORT
      for _ in $(seq 100); do grep -q serving "$WORK/sb.log" && break; sleep 0.1; done ;;
    kamailio)
      kamailio -f "$WORK/kamailio.cfg" -DD -E -x tlsf -X tlsf -m 4096 -M 64 >"$WORK/kam.log" 2>&1 &
      SERVER=$!; TARGET=127.0.0.1:$KAM_PORT ;;
  esac
  # Ready when it answers a registration of member 100 with digest auth.
  for _ in $(seq 50); do
    $L register "$TARGET" --from 100 -m 1 -d 2 --drain 1 -q >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "$1 did not come up" >&2; exit 1
}
stop_server() { kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; SERVER=""; sleep 1; }
# CPU ticks of the server and all its processes (Kamailio forks workers).
cpu_ticks() {
  local total=0 p
  for p in $SERVER $(pgrep -P "$SERVER" 2>/dev/null); do
    total=$((total + $(awk '{print $14+$15}' /proc/$p/stat 2>/dev/null || echo 0)))
  done
  echo $total
}
# Memory of the server: proportional set size summed over its processes
# (Kamailio's workers share its shared-memory pool; RSS would count it once
# per process), at the end of a row.
mem_kb() {
  local total=0 p
  for p in $SERVER $(pgrep -P "$SERVER" 2>/dev/null); do
    total=$((total + $(awk '/^Pss:/ {print $2}' /proc/$p/smaps_rollup 2>/dev/null || echo 0)))
  done
  echo $total
}

# switchboard-load's achieved rate: calls started per second over the
# step's whole seconds, from its own timeline (a call that times out at the
# end must not stretch the step; a starved generator shows here).
achieved() { # report.json seconds
  python3 -c "
import json; r=json.load(open('$1')); d=int($2)
full=[s['started'] for s in r['timeline'][:d]]
print(sum(full)/max(len(full),1))" 2>/dev/null || echo 0
}

# One call step: prints "ok failed ticks".
call_step() { # server generator rate
  local rate=$3 calls=$(($3 * STEP_S)) c0 c1 ok failed
  ACHIEVED=""
  c0=$(cpu_ticks)
  case $2 in
    sipp)
      rm -f "$WORK"/step.csv
      if [ "$1" = switchboard ]; then
        sed "s/__HOLD__/$HOLD_MS/" "$S/uac.xml" >"$WORK/uac.xml"
        printf 'SEQUENTIAL\n100;pw-100;\n' >"$WORK/caller.csv"
        (cd "$WORK" && timeout $((STEP_S * 3 + 60)) sipp -sf uac.xml -inf caller.csv -au 100 -ap pw-100 -s 200 \
          -i 127.0.0.1 -p $UAC_PORT -r "$rate" -m "$calls" -l $((rate * 4)) -recv_timeout 8000 \
          -nostdin -trace_stat -stf step.csv -fd 1 "$TARGET" >/dev/null 2>&1) || true
      else
        # SIPp's uac flow, tolerating a 180 that Kamailio's workers relay after the 200.
        (cd "$WORK" && timeout $((STEP_S * 3 + 60)) sipp -sf "$BENCH/uac-late-180.xml" -s 200 -d $((HOLD_MS - 200)) \
          -i 127.0.0.1 -p $UAC_PORT -r "$rate" -m "$calls" -l $((rate * 4)) -recv_timeout 8000 \
          -nostdin -trace_stat -stf step.csv -fd 1 "$TARGET" >/dev/null 2>&1) || true
      fi
      # SIPp's own figures: totals, and calls started per one-second period
      # over the best STEP_S consecutive periods (its exit time must not
      # stretch the step).
      read -r ok failed ACHIEVED < <(python3 - "$WORK/step.csv" "$STEP_S" <<'PY'
import csv, sys
try:
    rows = list(csv.reader(open(sys.argv[1]), delimiter=';'))
    head, last = rows[0], rows[-1]
    d = int(sys.argv[2])
    per = [int(r[head.index('OutgoingCall(P)')]) for r in rows[1:]]
    best = max(sum(per[i:i + d]) for i in range(max(len(per) - d + 1, 1)))
    print(int(last[head.index('SuccessfulCall(C)')]), int(last[head.index('FailedCall(C)')]), best / d)
except Exception:
    print(0, 0, 0)
PY
) ;;
    load)
      timeout $((STEP_S * 3 + 60)) $L call "$TARGET" --from 100 --to 200 -p $UAC_PORT -r "$rate" -m "$calls" \
        -l $((rate * 4)) --hold "$HOLD_MS" --recv-timeout 8000 --drain 20 -q --json "$WORK/step.json" >/dev/null 2>&1 || true
      # Calls that did not succeed count as failed, timed-out ones included.
      read -r ok failed < <(python3 -c "import json; r=json.load(open('$WORK/step.json')); print(r['succeeded'], r['failed'])" 2>/dev/null || echo "0 0")
      # The tool's own clock: calls started over the time it took to start them
      # (a timed-out call at the end must not stretch the step).
      ACHIEVED=$(achieved "$WORK/step.json" "$STEP_S") ;;
  esac
  c1=$(cpu_ticks)
  echo "$ok $failed $((c1 - c0)) ${ACHIEVED:-wall}"
}

declare -A BEST USPC PEAK REG REGUS REGPEAK
for k in switchboard kamailio; do
  for g in sipp load; do BEST[$k,$g]=0; USPC[$k,$g]=-; PEAK[$k,$g]=-; done
  REG[$k]=0; REGUS[$k]=-; REGPEAK[$k]=-
done
for server in "${SERVERS[@]}"; do
  for gen in "${GENS[@]}"; do
    start_server $server
    if [ $server = switchboard ]; then
      $L register "$TARGET" --from 200 -p $UAS_PORT -m 1 -q >/dev/null || { echo "callee registration failed" >&2; exit 1; }
    fi
    (cd "$WORK" && exec sipp -sn uas -i 127.0.0.1 -p $UAS_PORT -nostdin -max_socket 65000 >/dev/null 2>&1) &
    UAS=$!
    sleep 0.5
    BEST[$server,$gen]=0; USPC[$server,$gen]=-
    for rate in "${CALL_RATES[@]}"; do
      t0=$(date +%s.%N)
      read -r ok failed ticks achieved < <(call_step $server $gen "$rate")
      t1=$(date +%s.%N)
      calls=$((rate * STEP_S))
      [ "$achieved" = wall ] && achieved=$(python3 -c "print($ok/max($t1-$t0-$HOLD_MS/1000,1e-9))")
      verdict=$(python3 -c "
ok,calls,rate=$ok,$calls,$rate
print('pass' if calls-ok <= calls*0.001 and $achieved >= 0.95*rate else 'FAIL')")
      uspc=$(python3 -c "print(round(1e6*$ticks/$HZ/max($ok,1)))")
      printf '%-12s %-6s %6s calls/s: %8s ok %6s failed %6s us/call %s\n' $server $gen "$rate" "$ok" "$((calls - ok))" "$uspc" "$verdict" >&2
      [ "$verdict" = pass ] || break
      BEST[$server,$gen]=$rate; USPC[$server,$gen]=$uspc
    done
    PEAK[$server,$gen]=$(mem_kb)
    kill $UAS 2>/dev/null || true; wait $UAS 2>/dev/null || true
    stop_server
  done
  [ "${REGISTER:-1}" = 1 ] || continue
  # REGISTER with digest auth.
  start_server $server
  REG[$server]=0; REGUS[$server]=-
  for rate in "${REG_RATES[@]}"; do
    n=$((rate * 5))
    c0=$(cpu_ticks)
    timeout 120 $L register "$TARGET" --from 10000-$((10000 + USERS - 1)) -p $UAC_PORT -r "$rate" -m "$n" \
      --recv-timeout 8000 --drain 20 -q --json "$WORK/reg.json" >/dev/null 2>&1 || true
    c1=$(cpu_ticks)
    ok=$(python3 -c "import json; print(json.load(open('$WORK/reg.json'))['succeeded'])" 2>/dev/null || echo 0)
    ach=$(achieved "$WORK/reg.json" 5)
    uspc=$(python3 -c "print(round(1e6*($c1-$c0)/$HZ/max($ok,1)))")
    verdict=$(python3 -c "print('pass' if $n-$ok <= $n*0.001 and $ach >= 0.95*$rate else 'FAIL')")
    printf '%-12s REGISTER %6s/s: %8s ok of %s, %s us/registration %s\n' $server "$rate" "$ok" "$n" "$uspc" "$verdict" >&2
    [ "$verdict" = pass ] || break
    REG[$server]=$rate; REGUS[$server]=$uspc
  done
  REGPEAK[$server]=$(mem_kb)
  stop_server
done

echo
printf '%-34s %14s %14s %12s\n' "" Switchboard Kamailio ratio
for gen in sipp load; do
  name=$([ $gen = sipp ] && echo "SIPp" || echo "switchboard-load")
  printf '%-34s %14s %14s %12s\n' "calls/s, $name" "${BEST[switchboard,$gen]}" "${BEST[kamailio,$gen]}" \
    "$(python3 -c "print(f'{${BEST[switchboard,$gen]}/max(${BEST[kamailio,$gen]},1):.2f}')")"
  printf '%-34s %14s %14s\n' "  server CPU us/call at that rate" "${USPC[switchboard,$gen]}" "${USPC[kamailio,$gen]}"
  printf '%-34s %14s %14s\n' "  server memory, end of row (PSS kB)" "${PEAK[switchboard,$gen]}" "${PEAK[kamailio,$gen]}"
done
printf '%-34s %14s %14s %12s\n' "REGISTER/s (digest), switchboard-load" "${REG[switchboard]}" "${REG[kamailio]}" \
  "$(python3 -c "print(f'{${REG[switchboard]}/max(${REG[kamailio]},1):.2f}')")"
printf '%-34s %14s %14s\n' "  server CPU us/REGISTER" "${REGUS[switchboard]}" "${REGUS[kamailio]}"
printf '%-34s %14s %14s\n' "  server memory, end (PSS kB)" "${REGPEAK[switchboard]}" "${REGPEAK[kamailio]}"
echo "step ${STEP_S}s, hold ${HOLD_MS}ms; $(date -u +%F); $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}'), $(nproc) cores"
