#!/usr/bin/env bash
# http_idle_mem.sh: ferrymesh's memory per idle HTTP/1.1 keep-alive client
# connection (a measurement, not a test). Starts the nginx test upstream and
# ferrymesh (one worker, bench/conf/http-ferrymesh.json.tmpl), opens N client
# connections, sends one GET /small on each and reads the answer, holds them
# all idle, and prints (VmRSS held - VmRSS before) / N.
#
#   cargo build --release && bash bench/http_idle_mem.sh    # N=2000
#
# Needs nginx (bash tests/http/install.sh), curl and python3.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${N:-2000}
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
python3 - "$F" "$PORT" "$N" <<'PY'
import socket, sys, time
pid, port, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
before = rss()
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while not (b"\r\n\r\n" in got and got.endswith(b"\n") and len(got) > 150):
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("connection closed early")
        got += chunk
    socks.append(s)
time.sleep(1)
held = rss()
print(f"{n} idle HTTP/1.1 connections: {(held - before) / n:,.0f} bytes each (VmRSS {before:,} -> {held:,})")
PY
