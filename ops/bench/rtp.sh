#!/usr/bin/env bash
# Media relay benchmark: relayed packets per second, one-way time through
# the relay (p50/p99) and the relay's CPU share, at 100, 500 and 1,000
# concurrent G.711 calls on loopback (two 50 packet/s streams per call),
# for Switchboard's relay and for rtpengine (Debian rtpengine-daemon,
# userspace forwarding, sessions made over its ng control protocol).
#
#   ops/bench/rtp.sh [SECONDS] [CALLS...]      default: 20 s, 100 500 1000
#
# Bounded: each step runs 2 s of warm-up plus SECONDS, loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-20}
shift || true
steps=("${@:-100 500 1000}")
read -r -a steps <<<"${steps[*]}"

if ! command -v rtpengine >/dev/null || ! command -v python3 >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends rtpengine-daemon python3
fi
cargo build --release -q -p switchboard-loadtest -p switchboard-actors --example media_relay_host
load=target/release/switchboard-load
host=target/release/examples/media_relay_host
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

# CPU seconds (user + system) of a process so far.
cpu() { awk '{ printf "%.2f\n", ($14 + $15) / 100 }' "/proc/$1/stat"; }

measure() { # name pid pairs-file calls
  local name=$1 pid=$2 pairs=$3 calls=$4
  local c0 t0 c1 t1
  c0=$(cpu "$pid"); t0=$(date +%s.%N)
  # Exit status 1 only says some packets were lost; the table shows how many.
  "$load" media --pairs "$pairs" --warmup 2 --seconds "$secs" --json >"$work/$name-$calls.json" || true
  c1=$(cpu "$pid"); t1=$(date +%s.%N)
  python3 - "$work/$name-$calls.json" "$c0" "$c1" "$t0" "$t1" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
c0, c1, t0, t1 = map(float, sys.argv[2:6])
share = 100 * (c1 - c0) / (t1 - t0)
lost = r["sent"] - r["received"]
print(f'{sys.argv[6]:12} {r["calls"]:6} {r["relayed_per_second"]:10.0f} {r["p50_us"]:9.1f} {r["p99_us"]:9.1f} {r["max_us"]:9.1f} {lost:7} {share:6.1f}%')
PY
}

echo "relay        calls  packets/s   p50 µs    p99 µs    max µs    lost    CPU (of one core)"
for calls in "${steps[@]}"; do
  # Switchboard: the relay as calls use it, sessions made in process.
  coproc HOST { exec "$host" "$calls"; }
  head -n "$calls" <&"${HOST[0]}" >"$work/sb-pairs"
  measure switchboard "$HOST_PID" "$work/sb-pairs" "$calls"
  exec {HOST[1]}>&-
  wait "$HOST_PID" 2>/dev/null || true

  # rtpengine: userspace (no kernel table), two threads like our runtime.
  rtpengine --foreground --log-stderr --log-level=3 --table=-1 --num-threads=2 \
    --interface=127.0.0.1 --listen-ng=127.0.0.1:22223 --port-min=50000 --port-max=59999 \
    2>"$work/rtpengine.log" &
  rpid=$!
  sleep 1
  python3 - "$calls" >"$work/re-pairs" <<'PY'
# ng protocol: bencoded dictionaries over UDP, "cookie dict" each way.
import socket, sys, re
def enc(v):
    if isinstance(v, dict):
        return b"d" + b"".join(enc(k) + enc(x) for k, x in sorted(v.items())) + b"e"
    if isinstance(v, list):
        return b"l" + b"".join(enc(x) for x in v) + b"e"
    v = v.encode() if isinstance(v, str) else v
    return str(len(v)).encode() + b":" + v
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
def ng(i, cmd):
    cookie = f"{i}-{cmd['command']}".encode()
    s.sendto(cookie + b" " + enc(cmd), ("127.0.0.1", 22223))
    data = s.recv(65535)
    sdp = re.search(rb"3:sdp(\d+):", data)
    n = int(sdp.group(1)); at = sdp.end()
    body = data[at:at + n].decode()
    return int(re.search(r"m=audio (\d+)", body).group(1))
sdp = lambda port: f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
for i in range(int(sys.argv[1])):
    cid = f"bench-{i}"
    b_side = ng(i, {"command": "offer", "call-id": cid, "from-tag": "a", "sdp": sdp(9), "flags": []})
    a_side = ng(i, {"command": "answer", "call-id": cid, "from-tag": "a", "to-tag": "b", "sdp": sdp(9), "flags": []})
    print(f"127.0.0.1:{a_side} 127.0.0.1:{b_side}")
PY
  measure rtpengine "$rpid" "$work/re-pairs" "$calls"
  kill "$rpid"; wait "$rpid" 2>/dev/null || true
done
