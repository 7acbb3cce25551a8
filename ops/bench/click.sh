#!/usr/bin/env bash
# Clicks to call per second through the REST API, on loopback.
#
# A release `switchboard serve` with a prepaid plan, one member (signed up,
# topped up) owning a card whose button rings +1 646 555 0199, and one
# carrier trunk to `switchboard-load click`'s UAS, which answers every leg
# the engine places. The load tool sends `POST /api/v1/calls` with the
# member's API key at each step's rate, every click calling a different
# visitor number (+1 212 …); each call rings the visitor, says "connecting",
# rings the owner, bridges both (RTP anchored) and is ended by the engine
# after HOLD_S seconds (max call duration), then rated and recorded.
#
# Per step: offered rate, clicks sent, accepted/s (201 answers), visitors'
# INVITEs/s on the wire, HTTP answer time p50/p99, request-to-INVITE time
# p50/p99/max, engine CPU share (of one core) and CPU µs per click. A step
# passes when every click sent was accepted and reached its INVITE and at
# least 95% of the rate was sustained. Abuse limits are raised for the run (they
# are per address, and the load comes from one).
#
# Usage: ops/bench/click.sh [rates...]    (default: 50 100 200 400 600 800)
# Env:   STEP_S (seconds per step, default 20), HOLD_S (call length, default 2)
# (A click's call always anchors media: the visitor hears the prompt.)
set -euo pipefail
cd "$(dirname "$0")/../.."
RATES=("$@"); [ ${#RATES[@]} -gt 0 ] || RATES=(50 100 200 400 600 800)
STEP_S=${STEP_S:-20}
HOLD_S=${HOLD_S:-2}
SIP_PORT=${SIP_PORT:-15060}
HTTP_PORT=${HTTP_PORT:-18080}
UAS_PORT=15210
ADMIN=bench-operator-token-0123456789
BASE=http://127.0.0.1:$HTTP_PORT

cargo build --release --locked --bin switchboard -q
cargo build --release --locked -p switchboard-loadtest --bin switchboard-load -q
BIN=./target/release/switchboard
LOAD=./target/release/switchboard-load
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
printf 'prefix,per_minute\n1,10000\n' >"$WORK/plan.csv"     # 1 cent a minute
printf 'prefix,per_minute\n1,5000\n' >"$WORK/rates.csv"
cat >"$WORK/switchboard.toml" <<TOML
[api]
admin_token = "$ADMIN"
[calls]
max_duration_s = $HOLD_S
[billing]
plan = "$WORK/plan.csv"
[cards]
clicks_per_address_per_minute = 100000000
clicks_per_card_per_minute = 100000000
calls_per_callback_per_hour = 1000
concurrent_per_card = 1000000
concurrent_per_owner = 1000000
[[trunks]]
name = "pstn"
address = "127.0.0.1:$UAS_PORT"
rates = "$WORK/rates.csv"
options_interval_s = 0
TOML
SWITCHBOARD_ENUM=127.0.0.1:15300 RUST_LOG=error $BIN serve --config "$WORK/switchboard.toml" --data "$WORK/data" \
  --sip 127.0.0.1:$SIP_PORT --http 127.0.0.1:$HTTP_PORT >"$WORK/serve.log" 2>&1 &
PID=$!
for _ in $(seq 300); do grep -q serving "$WORK/serve.log" && break; sleep 0.1; done
grep -q serving "$WORK/serve.log" || { cat "$WORK/serve.log"; exit 1; }

post() { curl -sf -X POST "$BASE/api/v1/$1" -H 'content-type: application/json' -H "authorization: Bearer $2" -d "$3"; }
field() { python3 -c "import json, sys; v = json.load(sys.stdin)
for k in sys.argv[1].split('.'): v = v[int(k)] if k.isdigit() else v[k]
print(v)" "$1"; }
signed=$(curl -sf -X POST "$BASE/api/v1/signup" -H 'content-type: application/json' \
  -d '{"login":"bench@example.com","password":"bench-password-1","kind":"individual","name":"Bench"}')
TOKEN=$(echo "$signed" | field token)
MEMBER=$(echo "$signed" | field member.id)
card=$(post members/me/cards "$TOKEN" '{"info":{"name":"Bench","phones":[{"label":"Desk","number":"+16465550199","button_id":""}]}}')
CARD=$(echo "$card" | field id)
BUTTON=$(echo "$card" | field info.phones.0.button_id)
KEY=$(post members/me/api-keys "$TOKEN" '' | field key)
post "members/$MEMBER/topups" "$ADMIN" '{"key":"bench","amount":1000000000}' >/dev/null

cpu_ticks() { awk '{print $14+$15}' /proc/$PID/stat; }
HZ=$(getconf CLK_TCK)
best=0
accepted=0
first=12122000000
printf '%6s %6s %9s %9s %15s %22s %6s %8s\n' rate sent acc/s invite/s "http p50/p99" "to INVITE p50/p99/max" cpu% us/click
for rate in "${RATES[@]}"; do
  count=$((rate * STEP_S))
  c0=$(cpu_ticks)
  $LOAD click --http 127.0.0.1:$HTTP_PORT --key "$KEY" --card "$CARD" --button "$BUTTON" \
    --uas 127.0.0.1:$UAS_PORT --first-callback $first -r "$rate" -m "$count" -d "$STEP_S" \
    --drain 10 -l $((rate * 4)) --json -q >"$WORK/step.json" 2>"$WORK/load.err" || true
  c1=$(cpu_ticks)
  first=$((first + count))
  read -r pass line < <(python3 - "$WORK/step.json" "$rate" "$count" "$((c1 - c0))" "$HZ" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
rate, count, ticks, hz = float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ms = lambda us: us / 1000
cpu = 100 * ticks / hz / max(r["seconds"], 1e-3)
us = 1e6 * ticks / hz / max(r["accepted"], 1)
ok = (r["accepted"] == r["sent"] and r["invites"] == r["sent"] and r["sent"] >= 0.95 * count
      and r["accepted_per_s"] >= 0.95 * rate)
print(int(ok), f'{rate:6.0f}|{r["sent"]:6d}|{r["accepted_per_s"]:9.1f}|{r["invites_per_s"]:9.1f}|'
      f'{ms(r["http_us"][0]):6.2f}/{ms(r["http_us"][1]):6.2f} ms|'
      f'{ms(r["invite_us"][0]):6.2f}/{ms(r["invite_us"][1]):6.2f}/{ms(r["invite_us"][2]):6.1f} ms|'
      f'{cpu:6.0f}|{us:8.0f}|{"pass" if ok else "FAIL " + json.dumps(r["refused"])}')
PY
)
  [ -n "$line" ] || { echo "no report:"; cat "$WORK/step.json"; tail -5 "$WORK/serve.log"; }
  echo "$line" | tr '|' ' '
  sleep $((HOLD_S + 2))
  [ "$pass" = 1 ] || break
  best=$rate
  accepted=$((accepted + count))
done
# Each call ends HOLD_S after the bridge, which follows the prompt.
sleep $((HOLD_S + 8))
# Every accepted click is one CDR, and the balance fell by what they cost.
$BIN cdrs export --data "$WORK/data" --payer "$MEMBER" >"$WORK/cdrs.csv" 2>/dev/null
python3 - "$WORK/cdrs.csv" "$accepted" <<'PY'
import collections, csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
by = collections.Counter(r["result"] for r in rows)
print(f"CDRs: {len(rows)} ({dict(by)}) for {sys.argv[2]} clicks of passing steps, charged {sum(int(r['price']) for r in rows)} in total")
PY
peak=$(awk '/VmHWM/ {print $2" "$3}' /proc/$PID/status)
balance=$(curl -sf "$BASE/api/v1/members/$MEMBER/ledger" -H "authorization: Bearer $ADMIN" | field balance)
echo "highest passing rate: $best clicks/s (step ${STEP_S}s, calls of ${HOLD_S}s); engine peak memory: $peak; owner's balance now $balance of 1000000000"
