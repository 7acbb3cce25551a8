# Shared by cps.sh and shed.sh (sourced, not run): a release engine on
# loopback with members 100 (caller) and 200 (callee, a SIPp UAS).
#
# bench_setup            build, make $WORK (removed on exit, every child
#                        stopped and waited for), add members 100 and 200
# wait_serving           wait until the engine started in the background
#                        printed its banner into $WORK/serve.log
# start_callee           register member $CALLEE (default 200, password
#                        bench-200) from $UAS_PORT and answer calls there
#                        with tests/scenarios/uas.xml
# Expects: SIP_PORT, UAS_PORT; sets BIN, WORK, S (the scenarios folder).

bench_setup() {
  cargo build --release --locked --bin switchboard -q
  BIN=./target/release/switchboard
  WORK=$(mktemp -d)
  trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
  $BIN member add --number 100 --password bench-100 --data "$WORK/data" >/dev/null
  $BIN member add --number 200 --password bench-200 --data "$WORK/data" >/dev/null
  S=$(pwd)/tests/scenarios
  printf 'SEQUENTIAL\n100;bench-100;\n' >"$WORK/caller.csv"
}

wait_serving() {
  for _ in $(seq 300); do grep -q serving "$WORK/serve.log" && return 0; sleep 0.1; done
  cat "$WORK/serve.log"
  exit 1
}

start_callee() {
  local callee=${CALLEE:-200}
  sed 's/__FINAL__/200/' "$S/register.xml" >"$WORK/register.xml"
  printf 'SEQUENTIAL\n%s;bench-200;3600;\n' "$callee" >"$WORK/callee.csv"
  (cd "$WORK" && sipp -sf register.xml -inf callee.csv -au "$callee" -ap bench-200 -m 1 -i 127.0.0.1 -p $UAS_PORT \
    127.0.0.1:$SIP_PORT -nostdin -timeout 10s -timeout_error >/dev/null 2>&1) || { echo "callee registration failed"; exit 1; }
  start_uas
}

# The UAS alone (a trunk's side needs no registration).
start_uas() {
  (cd "$WORK" && exec sipp -sf "$S/uas.xml" -i 127.0.0.1 -p $UAS_PORT -nostdin -max_socket 65000 >/dev/null 2>&1) &
}
