#!/usr/bin/env bash
# http_idle_mem.sh: memory per idle HTTP/1.1 keep-alive client connection, or
# h2c one (MODE=h2c), in ferrymesh, nginx and haproxy (a measurement, not a
# test). For each target: the nginx test upstream and the proxy (one worker,
# bench/conf/http-*.tmpl, as bench/http.sh runs them), then N client
# connections, each sending one GET /small and reading the answer (h2c: prior
# knowledge, its SETTINGS acknowledged, the stream read to its end), all held
# idle; prints (VmRSS held - VmRSS before) / N, VmRSS summed over the proxy's
# processes. Kernel socket memory is not included.
#
#   bash bench/install.sh && bash tests/http/install.sh   # once
#   cargo build --release && bash bench/http_idle_mem.sh   # N=2000
#   MODE=h2c N=9000 bash bench/http_idle_mem.sh
#
# Environment (defaults): N=2000 (at most 9,800: haproxy's maxconn), MODE=h1,
# TARGETS="ferrymesh nginx haproxy", BASE_PORT=25400,
# OUT=bench/results/idle-<mode>-<timestamp>
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
N=${N:-2000}
MODE=${MODE:-h1}
TARGETS="${TARGETS:-ferrymesh nginx haproxy}"
BASE_PORT=${BASE_PORT:-25400}
OUT="${OUT:-$BENCH_DIR/results/idle-$MODE-$(date +%Y%m%d-%H%M%S)}"
bench_init
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
select_targets have_http_target
mkdir -p "$OUT"
RESULTS="$OUT/idle.jsonl"
: >"$RESULTS"
FAILED=0

i=0
for t in "${RUN_TARGETS[@]}"; do
    i=$((i + 1))
    dir="$OUT/$t"
    mkdir -p "$dir"
    start_http_upstream "$dir" "$BASE_PORT" || { FAILED=1; unspawn "${UPSTREAM_PID:-}"; continue; }
    if ! start_http_proxy "$t" "$dir" "$((BASE_PORT + 10 + 2 * i))" "$((BASE_PORT + 11 + 2 * i))" "$BASE_PORT"; then
        FAILED=1; unspawn "${PROXY_PID:-}"; unspawn "$UPSTREAM_PID"; continue
    fi
    port=$PROXY_H1_PORT
    flag=""
    if [ "$MODE" = h2c ]; then port=$PROXY_H2C_PORT; flag="--http2-prior-knowledge"; fi
    for _ in $(seq 100); do curl -s $flag -o /dev/null "http://127.0.0.1:$port/small" && break; sleep 0.1; done
    pids=$(proc_tree "$PROXY_PID" | tr -s ' \n' ',' | sed 's/,*$//')
    python3 - "$pids" "$port" "$N" "$MODE" "$t" >>"$RESULTS" <<'PY' || { warn "$t: the measurement failed"; FAILED=1; }
import json, socket, struct, sys, time
pids, port, n, mode, target = sys.argv[1].split(","), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
def rss():
    # Summed over the proxy's processes (nginx: master and worker).
    total = 0
    for pid in pids:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total
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
print(f"{target}: {n} idle {name} connections: {(held - before) / n:,.0f} bytes each (VmRSS {before:,} -> {held:,})",
      file=sys.stderr)
print(json.dumps(dict(target=target, mode=mode, conns=n, rss_before=before, rss_held=held,
                      bytes_per_conn=round((held - before) / n))))
PY
    unspawn "$PROXY_PID"
    unspawn "$UPSTREAM_PID"
done

python3 - "$RESULTS" <<'EOF' | tee "$OUT/summary.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
if not rows:
    sys.exit("no results")
mode = "h2c" if rows[0]["mode"] == "h2c" else "HTTP/1.1"
peers = [r for r in rows if r["target"] != "ferrymesh"]
best = min(peers, key=lambda r: r["bytes_per_conn"], default=None)
print(f"## Memory per idle {mode} client connection ({rows[0]['conns']:,} connections, one GET each, then held)\n")
print("| target | bytes / idle conn | vs best peer |")
print("|---|---:|---:|")
for r in rows:
    ratio = f"{r['bytes_per_conn'] / best['bytes_per_conn']:.2f}×" if best and r is not best else "—"
    print(f"| {r['target']} | {r['bytes_per_conn']:,} | {ratio} |")
EOF
exit "$FAILED"
