#!/usr/bin/env bash
# http_idle_mem.sh: ferrymesh's memory per idle HTTP/1.1 keep-alive client
# connection, or h2c one (MODE=h2c), a measurement, not a test. Starts the
# nginx test upstream and ferrymesh (one worker,
# bench/conf/http-ferrymesh.json.tmpl), opens N client connections, sends one
# GET /small on each and reads the answer (h2c: prior knowledge, its SETTINGS
# acknowledged, the stream read to its end), holds them all idle, and prints
# (VmRSS held - VmRSS before) / N.
#
#   cargo build --release && bash bench/http_idle_mem.sh    # N=2000
#   MODE=h2c N=10000 bash bench/http_idle_mem.sh
#
# Needs nginx (bash tests/http/install.sh), curl and python3.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${N:-2000}
MODE=${MODE:-h1}
PORT=${PORT:-25401}
BIN=${FERRYMESH_BIN:-$ROOT/target/release/ferrymesh}
D=$(mktemp -d)
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
sed -e "s/LISTEN_PORT/$PORT/; s/UPSTREAM_PORT/$((PORT - 1))/" "$ROOT/bench/conf/http-ferrymesh.json.tmpl" >"$D/fm.json"
ACCESS_LOG=off bash "$ROOT/tests/http/start-nginx.sh" $((PORT - 1)) "$D/up" >"$D/up.out" 2>&1 &
"$BIN" start -c "$D/fm.json" --workers 1 >"$D/fm.log" 2>&1 &
F=$!
cleanup() {
    kill "$F" 2>/dev/null || true
    read -r _ _ npid <"$D/up.out" 2>/dev/null && kill "$npid" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/small" && break; sleep 0.1; done
python3 - "$F" "$PORT" "$N" "$MODE" <<'PY'
import socket, struct, sys, time
pid, port, n, mode = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
before = rss()
def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload

# GET /small on stream 1: :method GET, :scheme http (static 2, 6), then
# :path and :authority as literals without indexing (names static 4, 1).
H2_GET = frame(1, 0x5, 1, b"\x82\x86\x04\x06/small\x01\x01x")

def h1(s):
    s.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while not (b"\r\n\r\n" in got and got.endswith(b"\n") and len(got) > 150):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("connection closed early")
        got += chunk

def h2c(s):
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(4, 0, 0) + H2_GET)
    buf, ended = b"", False
    while not ended:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("connection closed early")
        buf += chunk
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            size, kind, flags = int.from_bytes(buf[:3], "big"), buf[3], buf[4]
            stream = int.from_bytes(buf[5:9], "big") & 0x7fffffff
            buf = buf[9 + size:]
            if kind == 4 and not flags & 1:
                s.sendall(frame(4, 1, 0))  # acknowledge the server's settings
            elif kind in (0, 1) and stream == 1 and flags & 1:
                ended = True
            elif kind in (3, 7):
                sys.exit("stream reset or connection refused (GOAWAY)")

socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    (h2c if mode == "h2c" else h1)(s)
    socks.append(s)
time.sleep(1)
held = rss()
name = "h2c" if mode == "h2c" else "HTTP/1.1"
print(f"{n} idle {name} connections: {(held - before) / n:,.0f} bytes each (VmRSS {before:,} -> {held:,})")
PY
