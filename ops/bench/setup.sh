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
# calls/s (default 50), 2 s hold. Prints p50/p90/p99/max per case twice:
# as SIPp measures it (rtd, in steps of its ~4 ms tick) and on the wire
# (tcpdump on lo: the authenticated INVITE arriving at node a to its 200 OK
# leaving, in microseconds).
set -euo pipefail
cd "$(dirname "$0")/../.."
{ command -v sipp && command -v tcpdump; } >/dev/null || ./ops/install-test-deps.sh
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
  # The wire between the caller and node a, timestamped by the kernel.
  tcpdump -i lo -U -s 1500 -w "$WORK/$case.pcap" "udp and port $SIP_A and port 16201" 2>/dev/null &
  local dump_pid=$!
  sleep 1
  (cd "$WORK" && timeout $((CALLS / RATE + 60)) sipp -sf uac.xml -inf caller.csv -au 100 -ap bench-100 -s 200 \
    -i 127.0.0.1 -p 16201 "127.0.0.1:$SIP_A" -r "$RATE" -m "$CALLS" -nostdin -trace_rtt -rtt_freq 1 \
    -timeout $((CALLS / RATE + 50))s >/dev/null 2>&1) || echo "($case: some calls failed)"
  sleep 1
  kill "$dump_pid" 2>/dev/null || true
  wait "$dump_pid" 2>/dev/null || true
  kill "$uas_pid" 2>/dev/null || true
  wait "$uas_pid" 2>/dev/null || true
  python3 - "$case" "$WORK/$case.pcap" "$WORK"/uac_*_rtt.csv <<'PY'
import struct, sys
case, pcap, files = sys.argv[1], sys.argv[2], sys.argv[3:]
def quantiles(xs):
    xs = sorted(xs)
    q = lambda p: xs[min(len(xs) - 1, int(len(xs) * p))] if xs else float('nan')
    return len(xs), q(0.5), q(0.9), q(0.99), (xs[-1] if xs else float('nan'))
# SIPp's own measure (its scheduling tick: ~4 ms steps).
ms = []
for f in files:
    for line in open(f):
        parts = line.strip().split(';')
        if len(parts) >= 2:
            try:
                ms.append(float(parts[1]))
            except ValueError:
                pass
n, p50, p90, p99, top = quantiles(ms)
print(f"{case:<6} sipp  calls {n:>5}  p50 {p50:6.2f} ms  p90 {p90:6.2f} ms  p99 {p99:6.2f} ms  max {top:6.2f} ms")
# The wire: the authenticated INVITE (CSeq 2) arriving at node a to the
# first 200 OK for it leaving, per Call-ID, in microseconds.
invite, ok = {}, {}
with open(pcap, 'rb') as fh:
    head = fh.read(24)
    magic = struct.unpack('<I', head[:4])[0]
    nano = magic == 0xa1b23c4d
    link = struct.unpack('<I', head[20:24])[0]
    while True:
        rec = fh.read(16)
        if len(rec) < 16:
            break
        sec, frac, incl, _ = struct.unpack('<IIII', rec)
        data = fh.read(incl)
        t = sec * 1e6 + (frac / 1000 if nano else frac)
        off = 14 if link == 1 else 16 if link == 113 else 0
        ihl = (data[off] & 0x0f) * 4
        payload = data[off + ihl + 8:].decode('latin-1')
        first, _, rest = payload.partition('\r\n')
        cid = cseq = None
        for line in rest.split('\r\n'):
            k, _, v = line.partition(':')
            k = k.strip().lower()
            if k in ('call-id', 'i'):
                cid = v.strip()
            elif k == 'cseq':
                cseq = v.strip()
        if cid is None or cseq != '2 INVITE':
            continue
        if first.startswith('INVITE '):
            invite.setdefault(cid, t)
        elif first.startswith('SIP/2.0 200'):
            ok.setdefault(cid, t)
us = [ok[c] - invite[c] for c in invite if c in ok]
n, p50, p90, p99, top = quantiles(us)
print(f"{case:<6} wire  calls {n:>5}  p50 {p50:6.0f} us  p90 {p90:6.0f} us  p99 {p99:6.0f} us  max {top:6.0f} us")
PY
  sleep 3
}
run one $SIP_A
run cross $SIP_B
