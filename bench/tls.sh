#!/usr/bin/env bash
# tls.sh: TLS benchmark (not a test): ferrymesh against nginx and haproxy, each
# terminating TLS with one worker pinned to core PROXY_CPU (0) in front of a
# plain nginx HTTP/1.1 upstream; the load tools and the upstream share
# LOAD_CPU (1). Same certificate for all (ECDSA P-256, made here with
# openssl), TLS 1.3, targets alternating within each round. Per target it
# measures:
#   - full handshakes per second (`openssl s_time -new`) and the proxy CPU per
#     handshake; resumed ones (`openssl s_time -reuse`);
#   - HTTP/1.1 and h2 over kept-alive TLS connections (h2load, ALPN): req/s
#     and proxy CPU per request;
#   - memory per idle TLS connection: IDLE connections, one request each, then
#     held: (RSS held - RSS before) / connections (kernel socket memory
#     excluded).
# Medians over rounds, ratios to the best baseline.
#
#   bash bench/install.sh && bash tests/http/install.sh   # once
#   bash bench/tls.sh      # builds ferrymesh first unless SKIP_BUILD=1
#
# Environment (defaults): ROUNDS=3 DURATION=5 CONNS=64 H2_STREAMS=8 IDLE=2000
#   PAR=4 (s_time clients at once)
#   TARGETS="ferrymesh nginx haproxy" BASE_PORT=24500 PROXY_CPU=0 LOAD_CPU=1
#   OUT=bench/results/tls-<timestamp>
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS="${ROUNDS:-3}"
DURATION="${DURATION:-5}"
CONNS="${CONNS:-64}"
H2_STREAMS="${H2_STREAMS:-8}"
IDLE="${IDLE:-2000}"
PAR="${PAR:-4}"
TARGETS="${TARGETS:-ferrymesh nginx haproxy}"
BASE_PORT="${BASE_PORT:-24500}"
OUT="${OUT:-$BENCH_DIR/results/tls-$(date +%Y%m%d-%H%M%S)}"
bench_init
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
for c in openssl h2load nginx haproxy python3 taskset; do command -v "$c" >/dev/null || die "$c is required"; done
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release --bins) || die "build failed"
fi
mkdir -p "$OUT/certs" "$OUT/runs"
RUNS="$OUT/runs.jsonl"
: >"$RUNS"

# One CA, one leaf for 127.0.0.1.
C="$OUT/certs"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=bench CA" \
    -keyout "$C/ca-key.pem" -out "$C/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=bench" \
    -keyout "$C/key.pem" -out "$C/req.pem" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >"$C/ext.cnf"
openssl x509 -req -in "$C/req.pem" -CA "$C/ca.pem" -CAkey "$C/ca-key.pem" -CAcreateserial -days 30 \
    -extfile "$C/ext.cnf" -out "$C/cert.pem" 2>/dev/null
cat "$C/cert.pem" "$C/key.pem" >"$C/haproxy.pem"

UP=$BASE_PORT
LP=$((BASE_PORT + 1))
need_free_port "$UP"
need_free_port "$LP"
log "upstream: nginx on 127.0.0.1:$UP (core $LOAD_CPU)"
ACCESS_LOG=off spawn "$LOAD_CPU" "$OUT/upstream.out" bash "$ROOT/tests/http/start-nginx.sh" "$UP" "$OUT/upstream"
UPSTREAM_PID=$SPAWN_PID
wait_line "$OUT/upstream.out" '^READY' "$UPSTREAM_PID" "upstream nginx" || die "upstream did not start"

start_target() {
    local t=$1 dir=$2
    mkdir -p "$dir"
    case $t in
    ferrymesh)
        cat >"$dir/fm.json" <<JSON
{"servers":[{"default_log_level":"ERROR","routers":[{"router_config_name":"web","virtual_hosts":[{"name":"all","domains":["*"],"routers":[{"match":{"prefix":"/"},"route":{"cluster_name":"up"}}]}]}],
"listeners":[{"name":"tls","address":"127.0.0.1:$LP","bind_port":true,"connection_idle_timeout":"300s","filter_chains":[{"tls_context":{"status":true,"cert_chain":"$C/cert.pem","private_key":"$C/key.pem","alpn":"h2,http/1.1"},
"filters":[{"type":"proxy","config":{"downstream_protocol":"Auto","upstream_protocol":"Http1","router_config_name":"web"}}]}]}]}],
"cluster_manager":{"clusters":[{"name":"up","type":"SIMPLE","hosts":[{"address":"127.0.0.1:$UP"}]}]}}
JSON
        spawn "$PROXY_CPU" "$dir/proxy.log" "$FERRYMESH_BIN" start -c "$dir/fm.json" --workers 1
        ;;
    nginx)
        mkdir -p "$dir/run"
        cat >"$dir/nginx.conf" <<NGX
daemon off; master_process on; worker_processes 1; worker_rlimit_nofile 20000;
pid $dir/run/nginx.pid; error_log $dir/run/error.log warn;
events { worker_connections 19000; }
http {
  access_log off; client_body_temp_path $dir/run/cb; proxy_temp_path $dir/run/p; fastcgi_temp_path $dir/run/f;
  uwsgi_temp_path $dir/run/u; scgi_temp_path $dir/run/s;
  keepalive_requests 100000000; keepalive_timeout 300s; http2_max_concurrent_streams 1024;
  ssl_session_cache shared:SSL:10m; ssl_protocols TLSv1.2 TLSv1.3;
  upstream web { server 127.0.0.1:$UP; keepalive 1024; keepalive_requests 100000000; keepalive_timeout 300s; }
  server {
    listen 127.0.0.1:$LP ssl http2 backlog=4096;
    ssl_certificate $C/cert.pem; ssl_certificate_key $C/key.pem;
    location / { proxy_pass http://web; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
NGX
        spawn "$PROXY_CPU" "$dir/proxy.log" nginx -p "$dir/run" -c "$dir/nginx.conf"
        ;;
    haproxy)
        cat >"$dir/haproxy.cfg" <<HAP
global
    nbthread 1
    maxconn 9900
    tune.ssl.cachesize 100000
defaults
    mode http
    option http-keep-alive
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
frontend web
    bind 127.0.0.1:$LP ssl crt $C/haproxy.pem alpn h2,http/1.1
    maxconn 9900
    default_backend web
backend web
    http-reuse safe
    server up1 127.0.0.1:$UP maxconn 9900
HAP
        spawn "$PROXY_CPU" "$dir/proxy.log" haproxy -f "$dir/haproxy.cfg"
        ;;
    esac
    PROXY_PID=$SPAWN_PID
    wait_port "$LP" "$PROXY_PID" "$t"
}

# s_time MODE(-new|-reuse) -> handshakes, seconds, and the proxy's CPU ticks
# spent. PAR s_time clients run at once: one alone is the limit, not the proxy.
handshakes() {
    local mode=$1 dir=$2 pid=$3 c0 c1 k n=0 secs="$DURATION"
    # Resumption is measured over TLS 1.2: s_time reads nothing after the
    # handshake, so it never sees a TLS 1.3 ticket ('r' marks a resumed one).
    local v=()
    [ "$mode" = -reuse ] && v=(-tls1_2)
    c0=$(cpu_ticks "$pid")
    for k in $(seq 1 "$PAR"); do
        taskset -c "$LOAD_CPU" openssl s_time -connect "127.0.0.1:$LP" "$mode" "${v[@]}" -time "$DURATION" \
            -CAfile "$C/ca.pem" >"$dir/s_time$mode.$k.out" 2>&1 &
    done
    wait
    c1=$(cpu_ticks "$pid")
    for k in $(seq 1 "$PAR"); do
        local m
        if [ "$mode" = -reuse ]; then
            # Only the resumed ones count.
            m=$(grep -v connections "$dir/s_time$mode.$k.out" | tr -cd 'r' | wc -c)
        else
            m=$(awk '/connections in [0-9.]+ real seconds/ {print $1; exit}' "$dir/s_time$mode.$k.out")
        fi
        n=$((n + ${m:-0}))
    done
    echo "$n $secs $((c1 - c0))"
}

# h2load over TLS -> requests succeeded, seconds, proxy ticks.
h2run() {
    local proto=$1 dir=$2 pid=$3 c0 c1 out args
    if [ "$proto" = h1 ]; then args=(--h1 -c "$CONNS" -m 1); else args=(-c "$CONNS" -m "$H2_STREAMS"); fi
    taskset -c "$LOAD_CPU" h2load "${args[@]}" -D 1 "https://127.0.0.1:$LP/small" >/dev/null 2>&1 || true
    c0=$(cpu_ticks "$pid")
    out=$(taskset -c "$LOAD_CPU" h2load "${args[@]}" -D "$DURATION" "https://127.0.0.1:$LP/small" 2>&1 || true)
    c1=$(cpu_ticks "$pid")
    echo "$out" >"$dir/h2load-$proto.out"
    local ok
    ok=$(echo "$out" | awk '/^requests:/ {print $8; exit}')
    echo "${ok:-0} $DURATION $((c1 - c0))"
}

idle_mem() {
    local dir=$1 pid=$2 before after held
    before=$(status_kb "$pid" VmRSS)
    taskset -c "$LOAD_CPU" python3 "$ROOT/bench/tls_idle.py" 127.0.0.1 "$LP" "$IDLE" "$C/ca.pem" >"$dir/idle.out" 2>&1 &
    held=$!
    local i
    for i in $(seq 1 1200); do grep -q '^READY' "$dir/idle.out" 2>/dev/null && break; sleep 0.1; done
    sleep 1
    after=$(status_kb "$pid" VmRSS)
    kill "$held" 2>/dev/null || true
    wait "$held" 2>/dev/null || true
    echo $(((after - before) * 1024 / IDLE))
}

log "targets: $TARGETS; $ROUNDS rounds; ${DURATION}s each; idle connections: $IDLE"
for r in $(seq 1 "$ROUNDS"); do
    log "round $r/$ROUNDS"
    for t in $TARGETS; do
        dir="$OUT/runs/r$r-$t"
        start_target "$t" "$dir" || { warn "$t did not start"; unspawn "${PROXY_PID:-}"; continue; }
        pid=$PROXY_PID
        # Idle memory first, on the fresh process (memory a load freed would
        # otherwise be reused by the allocator and hide the connections' cost).
        idle=$(idle_mem "$dir" "$pid")
        read -r fn fs ft < <(handshakes -new "$dir" "$pid")
        read -r rn rs rt < <(handshakes -reuse "$dir" "$pid")
        read -r h1n h1s h1t < <(h2run h1 "$dir" "$pid")
        read -r h2n h2s h2t < <(h2run h2 "$dir" "$pid")
        unspawn "$pid"
        python3 - "$t" "$r" "$CLK_TCK" "$fn" "$fs" "$ft" "$rn" "$rs" "$rt" "$h1n" "$h1s" "$h1t" "$h2n" "$h2s" "$h2t" "$idle" >>"$RUNS" <<'PY'
import json, sys
t, r, tck = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
v = [float(x) for x in sys.argv[4:]]
def rate(n, s): return n / s if s else 0
def per(ticks, n): return ticks / tck * 1e6 / n if n else None
print(json.dumps({"target": t, "round": r,
    "full_hs_per_s": rate(v[0], v[1]), "cpu_us_per_full_hs": per(v[2], v[0]),
    "resumed_hs_per_s": rate(v[3], v[4]), "cpu_us_per_resumed_hs": per(v[5], v[3]),
    "h1_rps": rate(v[6], v[7]), "h1_cpu_us_per_req": per(v[8], v[6]),
    "h2_rps": rate(v[9], v[10]), "h2_cpu_us_per_req": per(v[11], v[9]),
    "idle_bytes_per_conn": v[12]}))
PY
        tail -1 "$RUNS" >&2
    done
done

python3 - "$RUNS" "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')" >"$OUT/summary.md" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
targets = []
for r in runs:
    if r["target"] not in targets: targets.append(r["target"])
cols = [("full_hs_per_s", "full handshakes/s", 1), ("cpu_us_per_full_hs", "CPU µs/full handshake", -1),
        ("resumed_hs_per_s", "resumed/s", 1), ("cpu_us_per_resumed_hs", "CPU µs/resumed", -1),
        ("h1_rps", "HTTP/1.1 req/s", 1), ("h1_cpu_us_per_req", "HTTP/1.1 CPU µs/req", -1),
        ("h2_rps", "h2 req/s", 1), ("h2_cpu_us_per_req", "h2 CPU µs/req", -1),
        ("idle_bytes_per_conn", "bytes/idle TLS conn", -1)]
med = {t: {} for t in targets}
for t in targets:
    for k, _, _ in cols:
        xs = [r[k] for r in runs if r["target"] == t and r.get(k) is not None]
        med[t][k] = statistics.median(xs) if xs else None
print(f"ferrymesh {sys.argv[2]}; medians of {max(r['round'] for r in runs)} rounds; ratio to the best of nginx/haproxy\n")
print("| target | " + " | ".join(c[1] for c in cols) + " |")
print("|---|" + "---:|" * len(cols))
for t in targets:
    cells = []
    for k, _, better in cols:
        v = med[t][k]
        base = [med[b][k] for b in targets if b != "ferrymesh" and med[b][k]]
        best = (max(base) if better > 0 else min(base)) if base else None
        txt = "—" if v is None else (f"{v:,.0f}" if v >= 100 else f"{v:.2f}")
        if t == "ferrymesh" and v is not None and best:
            txt += f" ({v / best:.2f}×)"
        cells.append(txt)
    print(f"| {t} | " + " | ".join(cells) + " |")
PY
cat "$OUT/summary.md"
log "raw results: $RUNS"
