#!/usr/bin/env bash
# http.sh: HTTP/1.1 and h2c throughput/latency/CPU benchmark (not a test).
#
# Load: wrk (HTTP/1.1 keep-alive) and h2load (HTTP/2 cleartext, prior
# knowledge), one thread each, GET /small (100-byte body). Through ferrymesh
# (downstream Auto, upstream Http1) and three L7 baselines: nginx
# (proxy_pass with an upstream keep-alive pool; h2c via a plain-text `listen
# ... http2`), haproxy (mode http; h2c via `bind ... proto h2`), Envoy (HTTP
# connection manager, codec_type AUTO); plus "direct" (the load tool straight
# at the upstream: the ceiling of the load core). Every proxy gets ONE worker
# pinned to core PROXY_CPU (0); the load tool and the upstream (a real nginx,
# tests/http/start-nginx.sh, access log off) share LOAD_CPU (1). All proxies
# speak HTTP/1.1 to the upstream. Targets alternate within each round. For
# each target and protocol it reports the median over rounds of req/s, p50/p99
# latency, proxy CPU per request (utime+stime of the proxy's process tree
# while the load ran, over the requests completed) and peak RSS, each as a
# ratio to the best baseline value in that column.
#
#   bash bench/install.sh && bash tests/http/install.sh   # once
#   bash bench/http.sh            # builds ferrymesh with cargo first unless SKIP_BUILD=1
#
# Environment (defaults):
#   MODES="h1 h2c"
#   CONNS=64                  wrk connections (HTTP/1.1: 64 requests in flight)
#   H2_CONNS=64 H2_STREAMS=8  h2load connections x concurrent streams each
#   DURATION=10 WARMUP=2 ROUNDS=3   seconds measured / warm-up run before it
#   TARGETS="direct ferrymesh nginx haproxy envoy"
#   URL_PATH=/small
#   SKIP_BUILD=0      1: use the ferrymesh already in target/release
#   REQUIRE_ALL=0     1: fail if a target cannot run here (else skip it)
#   H1_GOAL=1.1 H2C_GOAL=1.2   ferrymesh req/s goals, as a ratio to the best baseline
#   ENFORCE_GOALS=0   1: exit 1 when ferrymesh misses a goal
#   BASE_PORT=23500   upstream h1 (h2c on +1); target i listens on +10+2i (and +11+2i)
#   PROXY_CPU=0 LOAD_CPU=1
#   NOISE=0.15        flag runs where more than this share of the proxy core
#                     went to other processes (a build, tests) as noisy
#   KEEP_H2LOAD_LOGS=0  1: keep h2load's per-request logs (~25 bytes a request)
#   OUT=bench/results/http-<timestamp>
#   FERRYMESH_BIN / ENVOY_BIN: override binaries
#
# Raw results go to $OUT (runs.jsonl, per-run configs, tool output and logs,
# summary.md). Exit status: 0, or 1 if any run failed, saw errors or non-2xx
# answers, or (ENFORCE_GOALS=1) ferrymesh missed a goal.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODES="${MODES:-h1 h2c}"
CONNS="${CONNS:-64}"
H2_CONNS="${H2_CONNS:-64}"
H2_STREAMS="${H2_STREAMS:-8}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
ROUNDS="${ROUNDS:-3}"
TARGETS="${TARGETS:-direct ferrymesh nginx haproxy envoy}"
URL_PATH="${URL_PATH:-/small}"
H1_GOAL="${H1_GOAL:-1.1}"
H2C_GOAL="${H2C_GOAL:-1.2}"
BASE_PORT="${BASE_PORT:-23500}"
NOISE="${NOISE:-0.15}"
OUT="${OUT:-$BENCH_DIR/results/http-$(date +%Y%m%d-%H%M%S)}"

bench_init
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ "$(nproc)" -lt 2 ]; then
    warn "fewer than 2 cores: proxy and load generator will share a core"
fi
for c in taskset python3 ps curl; do command -v "$c" >/dev/null || die "$c is required"; done
for m in $MODES; do
    case $m in
    h1) command -v wrk >/dev/null || die "wrk is required (bash tests/http/install.sh)" ;;
    h2c) command -v h2load >/dev/null || die "h2load is required (bash tests/http/install.sh)" ;;
    *) die "unknown mode $m (h1, h2c)" ;;
    esac
done
[ -f "$HTTP_TESTS_DIR/start-nginx.sh" ] || die "missing $HTTP_TESTS_DIR/start-nginx.sh"

if [ "${SKIP_BUILD:-0}" != 1 ] && [[ " $TARGETS " == *" ferrymesh "* ]]; then
    log "cargo build --release --bin ferrymesh"
    (cd "$ROOT" && cargo build --release --bin ferrymesh) || die "build failed"
fi

select_targets have_http_target

mkdir -p "$OUT/runs"
RUNS="$OUT/runs.jsonl"
: >"$RUNS"

busy=$(cpu_busy_pct)
if [ "$busy" -gt 10 ]; then
    warn "the CPUs are ${busy}% busy before the benchmark starts (a build? tests?): numbers will be noisy"
fi

{
    echo "{"
    echo "  \"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
    echo "  \"host\": \"$(uname -srm)\","
    echo "  \"cpu\": \"$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)\","
    echo "  \"nproc\": $(nproc),"
    echo "  \"busy_before_pct\": $busy,"
    echo "  \"git\": \"$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)$(cd "$ROOT" && git diff --quiet 2>/dev/null || echo -dirty)\","
    echo "  \"modes\": \"$MODES\", \"conns\": $CONNS, \"h2_conns\": $H2_CONNS, \"h2_streams\": $H2_STREAMS,"
    echo "  \"path\": \"$URL_PATH\", \"duration\": $DURATION, \"warmup\": $WARMUP, \"rounds\": $ROUNDS,"
    echo "  \"proxy_cpu\": $PROXY_CPU, \"load_cpu\": $LOAD_CPU,"
    echo "  \"goals\": {\"h1\": $H1_GOAL, \"h2c\": $H2C_GOAL},"
    echo "  \"tools\": {\"wrk\": \"$(wrk -v 2>&1 | head -1 | awk '{print $2}')\", \"h2load\": \"$(h2load --version 2>&1 | head -1 | awk '{print $2}')\"},"
    echo "  \"versions\": {"
    printf '    "upstream": "%s"' "$(nginx -v 2>&1 | sed 's/^nginx version: //')"
    for t in "${RUN_TARGETS[@]}"; do
        [ "$t" = direct ] && continue
        printf ',\n    "%s": "%s"' "$t" "$(target_version "$t" | tr -d '"')"
    done
    printf '\n  }\n}\n'
} >"$OUT/meta.json"

# wrk prints its numbers as one JSON line through this.
cat >"$OUT/wrk-report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"duration_us":%d,"bytes":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
EOF

now() { date +%s.%N; }
# cpu_jiffies CPU: busy and total jiffies of one core from /proc/stat.
cpu_jiffies() { awk -v c="cpu$1" '$1 == c {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }

FAILED=0

# load MODE PORT SECONDS OUTFILE [H2LOG]: runs the load tool on LOAD_CPU to
# completion (bounded: killed 30 s after it should have ended).
load() {
    local mode=$1 port=$2 secs=$3 outf=$4 h2log=${5:-} rc=0 url="http://127.0.0.1:$2$URL_PATH"
    case $mode in
    h1) spawn "$LOAD_CPU" "$outf" timeout -k 5 $((secs + 30)) \
            wrk -t1 -c"$CONNS" -d"${secs}s" --latency -s "$OUT/wrk-report.lua" "$url" ;;
    h2c) spawn "$LOAD_CPU" "$outf" timeout -k 5 $((secs + 30)) \
            h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" -D "$secs" ${h2log:+--log-file="$h2log"} "$url" ;;
    esac
    local lpid=$SPAWN_PID
    wait "$lpid" || rc=$?
    unspawn "$lpid"
    return "$rc"
}

# sanity MODE PORT: one request through the target must return /small's body.
EXPECTED_BODY=""
sanity() {
    local mode=$1 port=$2 got flag=""
    [ "$mode" = h2c ] && flag="--http2-prior-knowledge"
    got=$(curl -s -m 5 $flag "http://127.0.0.1:$port$URL_PATH" 2>/dev/null || true)
    [ -n "$EXPECTED_BODY" ] && [ "$got" = "$EXPECTED_BODY" ]
}

# run_one ROUND TARGET INDEX
run_one() {
    local round=$1 t=$2 idx=$3
    local dir="$OUT/runs/r$round-$t" up=$BASE_PORT uph2=$((BASE_PORT + 1))
    local lp=$((BASE_PORT + 10 + 2 * idx)) hp=$((BASE_PORT + 11 + 2 * idx))
    local pid="" h1port h2port mode port rc cpu0 cpu1 j0 j1 p0 p1 t0 t1 hwm rss threads h2log
    mkdir -p "$dir"
    if ! start_http_upstream "$dir" "$up" "$uph2"; then
        FAILED=1
        echo "{\"round\":$round,\"target\":\"$t\",\"failed\":\"upstream did not start\"}" >>"$RUNS"
        unspawn "${UPSTREAM_PID:-}"
        return
    fi
    if [ -z "$EXPECTED_BODY" ]; then
        EXPECTED_BODY=$(curl -s -m 5 "http://127.0.0.1:$up$URL_PATH" || true)
    fi
    if [ "$t" = direct ]; then
        h1port=$up
        h2port=$uph2
    else
        if ! start_http_proxy "$t" "$dir" "$lp" "$hp" "$up"; then
            FAILED=1
            echo "{\"round\":$round,\"target\":\"$t\",\"failed\":\"proxy did not start\"}" >>"$RUNS"
            unspawn "${PROXY_PID:-}"
            unspawn "$UPSTREAM_PID"
            return
        fi
        pid=$PROXY_PID
        h1port=$PROXY_H1_PORT
        h2port=$PROXY_H2C_PORT
    fi

    for mode in $MODES; do
        port=$h1port
        [ "$mode" = h2c ] && port=$h2port
        if ! sanity "$mode" "$port"; then
            warn "$t $mode round $round: GET $URL_PATH through 127.0.0.1:$port did not return the upstream's body"
            FAILED=1
            echo "{\"round\":$round,\"target\":\"$t\",\"mode\":\"$mode\",\"failed\":\"sanity request failed\"}" >>"$RUNS"
            continue
        fi
        if [ "$WARMUP" != 0 ]; then
            load "$mode" "$port" "$WARMUP" "$dir/$mode-warmup.out" || true
        fi
        h2log=""
        [ "$mode" = h2c ] && h2log="$dir/h2load-requests.log"
        cpu0=""
        cpu1=""
        hwm=""
        rss=""
        threads=""
        sleeps0=""
        sleeps1=""
        [ -n "$pid" ] && cpu0=$(cpu_ticks_split "$pid") && sleeps0=$(sleeps "$pid")
        j0=$(cpu_jiffies "$LOAD_CPU")
        p0=$(cpu_jiffies "$PROXY_CPU")
        t0=$(now)
        rc=0
        load "$mode" "$port" "$DURATION" "$dir/$mode.out" "$h2log" || rc=$?
        t1=$(now)
        j1=$(cpu_jiffies "$LOAD_CPU")
        p1=$(cpu_jiffies "$PROXY_CPU")
        if [ -n "$pid" ]; then
            if [ -d "/proc/$pid" ]; then
                cpu1=$(cpu_ticks_split "$pid")
                sleeps1=$(sleeps "$pid")
                hwm=$(status_kb "$pid" VmHWM)
                rss=$(status_kb "$pid" VmRSS)
                threads=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")
            else
                warn "$t (pid $pid) died during the $mode run; see $dir"
                FAILED=1
            fi
        fi
        if ! python3 - "$mode" "$dir/$mode.out" "$h2log" "$round" "$t" "$rc" "$cpu0" "$cpu1" "$t0" "$t1" \
            "$hwm" "$rss" "$threads" "$CLK_TCK" "$j0" "$j1" "$p0" "$p1" "$sleeps0" "$sleeps1" >>"$RUNS" <<'EOF'; then
import json, re, sys
(mode, outf, h2log, rnd, target, rc, cpu0, cpu1, t0, t1, hwm, rss, threads, tck, j0, j1, p0, p1,
 sleeps0, sleeps1) = sys.argv[1:]
text = open(outf, errors="replace").read()
r = {"round": int(rnd), "target": target, "mode": mode, "exit": int(rc)}
if mode == "h1":
    lines = [l for l in text.splitlines() if l.startswith("{")]
    if not lines:
        r["failed"] = "wrk printed no result"
        print(json.dumps(r)); sys.exit(0)
    w = json.loads(lines[-1])
    dur = w["duration_us"] / 1e6
    r.update(requests=w["requests"], duration_s=round(dur, 3), rps=w["requests"] / dur,
             p50_us=w["p50_us"], p99_us=w["p99_us"], mean_us=w["mean_us"], max_us=w["max_us"],
             errors=w["err_connect"] + w["err_read"] + w["err_write"] + w["err_timeout"],
             non2xx=w["err_status"])
else:
    fin = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", text)
    req = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", text)
    st = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
    if not (fin and req and st):
        r["failed"] = "h2load printed no result"
        print(json.dumps(r)); sys.exit(0)
    dur = float(fin.group(1)) / (1000 if fin.group(2) == "ms" else 1)
    done = int(req.group(3))
    lat = []
    try:
        with open(h2log) as f:
            for line in f:
                p = line.split("\t")
                if len(p) >= 3:
                    lat.append(int(p[2]))
    except OSError:
        pass
    lat.sort()
    pct = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None
    r.update(requests=done, duration_s=round(dur, 3), rps=float(fin.group(3)),
             p50_us=pct(0.50), p99_us=pct(0.99), mean_us=round(sum(lat) / len(lat), 1) if lat else None,
             max_us=lat[-1] if lat else None,
             errors=int(req.group(5)) + int(req.group(7)),
             non2xx=int(st.group(2)) + int(st.group(3)) + int(st.group(4)))
window = float(t1) - float(t0)
r["window_s"] = round(window, 3)
if cpu0 and cpu1:
    (u0, s0), (u1, s1) = (map(int, x.split()) for x in (cpu0, cpu1))
    cpu_s = (u1 + s1 - u0 - s0) / int(tck)
    r["proxy_cpu_s"] = cpu_s
    r["proxy_cpu_util"] = round(cpu_s / r["duration_s"], 3) if r["duration_s"] else None
    if r["requests"]:
        r["cpu_us_per_req"] = cpu_s * 1e6 / r["requests"]
        # Which side of the syscall line the proxy's time is on: the kernel's
        # TCP work is much the same for every proxy, the user part is its own.
        r["user_us_per_req"] = (u1 - u0) / int(tck) * 1e6 / r["requests"]
        r["system_us_per_req"] = (s1 - s0) / int(tck) * 1e6 / r["requests"]
        if sleeps0 and sleeps1:
            # A proxy that outruns its load sleeps between reads, and each
            # sleep and wake-up is kernel time the busy peers do not pay.
            r["sleeps_per_1k_req"] = (int(sleeps1) - int(sleeps0)) * 1000 / r["requests"]
def util(x0, x1):
    b0, a0 = map(int, x0.split()); b1, a1 = map(int, x1.split())
    return round((b1 - b0) / (a1 - a0), 3) if a1 > a0 else None
r["load_core_util"] = util(j0, j1)
# Everything that ran on the proxy's core (softirq included) minus the proxy
# itself: a build or test running meanwhile shows up here.
r["proxy_core_util"] = util(p0, p1)
if r["proxy_core_util"] is not None:
    r["foreign_on_proxy_core"] = round(max(0.0, r["proxy_core_util"] - (r.get("proxy_cpu_util") or 0)), 3)
if hwm:
    r["peak_rss_kb"] = int(hwm); r["end_rss_kb"] = int(rss)
if threads:
    r["threads"] = int(threads)
print(json.dumps(r))
EOF
            FAILED=1
            echo "{\"round\":$round,\"target\":\"$t\",\"mode\":\"$mode\",\"failed\":\"could not parse $dir/$mode.out\"}" >>"$RUNS"
        fi
        [ "${KEEP_H2LOAD_LOGS:-0}" = 1 ] || rm -f "$dir/h2load-requests.log"
        python3 - "$(tail -1 "$RUNS")" "$NOISE" >&2 <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
NOISE = float(sys.argv[2])
if r.get("failed"):
    print(f"  {r['target']:<10} {r.get('mode', ''):<4} round {r['round']}: FAILED: {r['failed']}")
    sys.exit(0)
cpu = rss = ""
if r.get("cpu_us_per_req") is not None:
    cpu = f"proxy CPU {r['cpu_us_per_req']:.2f} us/req ({r['proxy_cpu_util'] * 100:.0f}% of a core)"
if r.get("peak_rss_kb"):
    rss = f"peak RSS {r['peak_rss_kb'] / 1024:.1f} MiB"
lc = r.get("load_core_util")
lc = f"load core {lc * 100:.0f}%" if lc is not None else ""
err = f"  ERRORS {r['errors']} non-2xx {r['non2xx']}" if r["errors"] or r["non2xx"] else ""
fo = r.get("foreign_on_proxy_core") or 0
noise = f"  NOISY: {fo * 100:.0f}% of the proxy core went to something else" if fo > NOISE else ""
print(f"  {r['target']:<10} {r['mode']:<4} round {r['round']}: {r['rps']:>9,.0f} req/s  p50 {r['p50_us']} us  "
      f"p99 {r['p99_us']} us  {cpu}  {rss}  {lc}{err}{noise}")
EOF
        read -r e n x < <(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r.get("errors", 0), r.get("non2xx", 0), 1 if r.get("failed") else 0)' "$(tail -1 "$RUNS")")
        if [ "$e" != 0 ] || [ "$n" != 0 ] || [ "$x" != 0 ]; then
            warn "$t $mode round $round: $e errors, $n non-2xx answers (exit $rc); see $dir/$mode.out"
            FAILED=1
        elif [ "$rc" != 0 ]; then
            warn "$t $mode round $round: load tool exited $rc; see $dir/$mode.out"
            FAILED=1
        fi
    done

    [ -n "$pid" ] && unspawn "$pid"
    unspawn "$UPSTREAM_PID"
}

log "ferrymesh HTTP benchmark: ${RUN_TARGETS[*]}; modes $MODES; $ROUNDS rounds of ${WARMUP}s warmup + ${DURATION}s;" \
    "h1: wrk $CONNS conns; h2c: h2load $H2_CONNS conns x $H2_STREAMS streams; GET $URL_PATH;" \
    "proxies on cpu $PROXY_CPU, load+upstream on cpu $LOAD_CPU"
log "results: $OUT"
run_rounds

set +e
python3 - "$OUT" "$NOISE" <<'EOF' | tee "$OUT/summary.md"
import json, statistics, sys

out = sys.argv[1]
NOISE = float(sys.argv[2])
meta = json.load(open(f"{out}/meta.json"))
runs = [json.loads(l) for l in open(f"{out}/runs.jsonl") if l.strip()]
BASE = ("nginx", "haproxy", "envoy")
NAMES = {
    "h1": {"direct": "direct (wrk → upstream)", "ferrymesh": "ferrymesh", "nginx": "nginx proxy_pass",
           "haproxy": "haproxy mode http", "envoy": "Envoy HCM"},
    "h2c": {"direct": "direct (h2load → upstream nginx h2c)", "ferrymesh": "ferrymesh (Auto)",
            "nginx": "nginx listen http2", "haproxy": "haproxy proto h2", "envoy": "Envoy HCM (AUTO)"},
}
TITLE = {"h1": "HTTP/1.1 (wrk, {conns} connections, keep-alive)",
         "h2c": "h2c prior knowledge (h2load, {h2_conns} connections × {h2_streams} streams)"}
GOAL = meta["goals"]
KEYS = ("rps", "p50_us", "p99_us", "cpu_us_per_req", "user_us_per_req", "system_us_per_req", "sleeps_per_1k_req",
        "per_core_rps", "peak_rss_kb", "proxy_cpu_util", "load_core_util")
HIGHER_BETTER = {"rps", "per_core_rps"}
for r in runs:
    if r.get("cpu_us_per_req"):
        r["per_core_rps"] = 1e6 / r["cpu_us_per_req"]
modes = meta["modes"].split()
missed = []

def med(rs, key):
    vals = [r[key] for r in rs if not r.get("failed") and r.get(key) is not None]
    return statistics.median(vals) if vals else None

v = meta.get("versions", {})
print(f"## HTTP benchmark ({meta['date'][:10]})\n")
print(f"GET {meta['path']} (100-byte body), median of {meta['rounds']} rounds of {meta['duration']} s "
      f"(each after a {meta['warmup']} s warm-up run), targets alternating. Each proxy runs one worker "
      f"pinned to core {meta['proxy_cpu']} and talks HTTP/1.1 to the upstream; the load tool (one thread) "
      f"and the upstream ({v.get('upstream')}, one process) share core {meta['load_cpu']}. "
      f"{meta['cpu']}, {meta['nproc']} cores, {meta['host']}. wrk {meta['tools']['wrk']}, "
      f"h2load {meta['tools']['h2load']}; ferrymesh {meta['git']}; "
      + ", ".join(x for k, x in v.items() if k not in ("ferrymesh", "upstream")) + ".\n")
for mode in modes:
    mr = [r for r in runs if r.get("mode") == mode or (r.get("failed") and "mode" not in r)]
    order = []
    for r in mr:
        if r["target"] not in order:
            order.append(r["target"])
    stats = {t: {k: med([r for r in mr if r["target"] == t], k) for k in KEYS} for t in order}
    best = {}
    for k in KEYS:
        cands = [(stats[t][k], t) for t in order if t in BASE and stats[t][k] is not None]
        if cands:
            best[k] = (max if k in HIGHER_BETTER else min)(cands)
    bad = [r for r in mr if r.get("failed") or r.get("errors") or r.get("non2xx") or r.get("exit")]

    def cell(t, key, fmt):
        val = stats[t][key]
        if val is None:
            return "—"
        s = fmt(val)
        if t in ("direct",) or key not in best:
            return s
        bv, bt = best[key]
        if bt == t:
            return s + " ★"
        return f"{s} ({val / bv:.2f}× {bt})" if bv else s

    print(f"### {TITLE[mode].format(**meta)}\n")
    print("| target | req/s | p50 µs | p99 µs | proxy CPU µs/req | req/s per proxy core | peak RSS MiB "
          "| proxy core busy | load core busy |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in order:
        flag = " ⚠" if any(r["target"] == t for r in bad) else ""
        pu, lu = stats[t]["proxy_cpu_util"], stats[t]["load_core_util"]
        print(f"| {NAMES[mode].get(t, t)}{flag} | {cell(t, 'rps', lambda x: f'{x:,.0f}')} "
              f"| {cell(t, 'p50_us', lambda x: f'{x:.0f}')} | {cell(t, 'p99_us', lambda x: f'{x:.0f}')} "
              f"| {cell(t, 'cpu_us_per_req', lambda x: f'{x:.2f}')} "
              f"| {cell(t, 'per_core_rps', lambda x: f'{x:,.0f}')} "
              f"| {cell(t, 'peak_rss_kb', lambda x: f'{x / 1024:.1f}')} "
              f"| {'—' if pu is None else f'{pu * 100:.0f}%'} | {'—' if lu is None else f'{lu * 100:.0f}%'} |")
    print()
    goal = GOAL.get(mode)
    if "ferrymesh" in stats and "rps" in best and stats["ferrymesh"]["rps"]:
        ratio = stats["ferrymesh"]["rps"] / best["rps"][0]
        hit = ratio >= goal
        if not hit:
            missed.append(mode)
        line = (f"**ferrymesh {mode}: {ratio:.2f}× the best baseline's req/s ({best['rps'][1]}); goal ≥ {goal}× "
                f"→ {'MET' if hit else 'MISSED'}.**")
        if stats["ferrymesh"]["per_core_rps"] and "per_core_rps" in best:
            pr = stats["ferrymesh"]["per_core_rps"] / best["per_core_rps"][0]
            line += (f" Per proxy core (1 / CPU per request): {pr:.2f}× the best ({best['per_core_rps'][1]}), "
                     f"{'meets' if pr >= goal else 'below'} the same goal.")
        lb = [t for t in ("ferrymesh", *BASE) if t in stats and (stats[t]["load_core_util"] or 0) > 0.95]
        if lb:
            line += (f" Note: {', '.join(lb)} saturated the load core (> 95%), so their req/s is a floor "
                     "set by the load side; compare per-core numbers.")
        # The load tool and the upstream cost the load core a fixed amount per
        # request through a given proxy, so ferrymesh's own run says how far
        # the load core lets it go, however fast ferrymesh itself were.
        util = stats["ferrymesh"]["load_core_util"] or 0
        if util:
            cap = stats["ferrymesh"]["rps"] / util
            line += (f" The load core ({util * 100:.0f}% busy in ferrymesh's run) caps ferrymesh near "
                     f"{cap:,.0f} req/s = {cap / best['rps'][0]:.2f}× {best['rps'][1]}"
                     f"{', below the goal' if cap / best['rps'][0] < goal else ''}.")
        # The machine's speed drifts between rounds, so each round's ratio
        # (targets a minute apart at most) says more than a ratio of medians.
        paired = {"rps": [], "per_core_rps": []}
        for rnd in sorted({r["round"] for r in mr if "round" in r}):
            rr = {r["target"]: r for r in mr if r.get("round") == rnd and not r.get("failed")}
            for k in paired:
                base = [rr[t][k] for t in BASE if t in rr and rr[t].get(k)]
                if "ferrymesh" in rr and rr["ferrymesh"].get(k) and base:
                    paired[k].append(rr["ferrymesh"][k] / max(base))
        if paired["rps"]:
            fmt = lambda xs: " / ".join(f"{x:.2f}" for x in xs)
            line += (f" Round by round, ferrymesh ÷ that round's best baseline: req/s {fmt(paired['rps'])} "
                     f"(median {statistics.median(paired['rps']):.2f}×)")
            if paired["per_core_rps"]:
                line += (f", per proxy core {fmt(paired['per_core_rps'])} "
                         f"(median {statistics.median(paired['per_core_rps']):.2f}×)")
            line += "."
        # The issue's CPU goals name a baseline each (nginx for HTTP/1.1,
        # haproxy for h2c): ferrymesh's CPU per request over each one's, round by round.
        cpu = []
        for t in BASE:
            rs = []
            for rnd in sorted({r["round"] for r in mr if "round" in r}):
                rr = {r["target"]: r for r in mr if r.get("round") == rnd and not r.get("failed")}
                if rr.get("ferrymesh", {}).get("cpu_us_per_req") and rr.get(t, {}).get("cpu_us_per_req"):
                    rs.append(rr["ferrymesh"]["cpu_us_per_req"] / rr[t]["cpu_us_per_req"])
            if rs:
                rs.sort()
                cpu.append(f"{t} {statistics.median(rs):.2f}× ({rs[0]:.2f}–{rs[-1]:.2f}, {len(rs)} rounds)")
        if cpu:
            line += " ferrymesh's CPU per request over each baseline's in the same round, median (range): " + "; ".join(cpu) + "."
        split = [f"{t} {stats[t]['user_us_per_req']:.2f} + {stats[t]['system_us_per_req']:.2f}"
                 for t in order if t in ("ferrymesh", *BASE) and stats[t]["user_us_per_req"] is not None
                 and stats[t]["system_us_per_req"] is not None]
        if split:
            line += (" CPU per request as user + system µs, medians (from clock ticks, so ±0.1 µs or so): "
                     + "; ".join(split) + ".")
        sleeps = [f"{t} {stats[t]['sleeps_per_1k_req']:.1f}" for t in order
                  if t in ("ferrymesh", *BASE) and stats[t]["sleeps_per_1k_req"] is not None]
        if sleeps:
            line += " Sleeps (voluntary context switches) per 1,000 requests, medians: " + "; ".join(sleeps) + "."
        print(line + "\n")
    elif goal:
        print(f"ferrymesh {mode}: no result (goal ≥ {goal}× the best baseline's req/s).\n")
    noisy = [r for r in mr if (r.get("foreign_on_proxy_core") or 0) > NOISE]
    if noisy:
        print("⚠ NOISY: other processes took CPU on the proxy core during "
              + ", ".join(f"{r['target']} round {r['round']} ({r['foreign_on_proxy_core'] * 100:.0f}%)" for r in noisy)
              + "; rerun on an idle machine.\n")
    if bad:
        print("⚠ = some runs of this target failed or saw errors / non-2xx answers: "
              + "; ".join(f"{r['target']} round {r['round']}: " + (r.get("failed") or
                          f"{r.get('errors')} errors, {r.get('non2xx')} non-2xx, exit {r.get('exit')}")
                          for r in bad) + "\n")

print("★ = best of nginx/haproxy/envoy in that column; other cells show value ÷ that best "
      "(higher is better for req/s, lower for everything else). Proxy CPU is utime+stime of the "
      "proxy's processes while the load tool ran, divided by the requests it completed; peak RSS is "
      "VmHWM summed over the proxy's processes (nginx: master + worker); req/s per proxy core is "
      "1 s / CPU per request, what one fully busy core would serve; proxy core busy is that CPU "
      "time over the measured duration (below ~100%: the proxy was not the bottleneck); load core busy "
      "is how busy the load tool + upstream core was (near 100%: the load side limited the run). "
      "p50/p99 come from wrk's histogram (h1) and h2load's per-request log (h2c).")
print("\n<details><summary>per-round results</summary>\n")
print("| round | mode | target | req/s | p50 µs | p99 µs | CPU µs/req | user + system | proxy busy "
      "| other on proxy core | load core | peak RSS KiB | errors | non-2xx |")
print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in runs:
    if r.get("failed"):
        print(f"| {r['round']} | {r.get('mode', '')} | {r['target']} | FAILED: {r['failed']} | | | | | | | | | | |")
        continue
    c, u, l = r.get("cpu_us_per_req"), r.get("proxy_cpu_util"), r.get("load_core_util")
    fo = r.get("foreign_on_proxy_core")
    us = (f"{r['user_us_per_req']:.2f} + {r['system_us_per_req']:.2f}"
          if r.get("user_us_per_req") is not None and r.get("system_us_per_req") is not None else "—")
    print(f"| {r['round']} | {r['mode']} | {r['target']} | {r['rps']:,.0f} | {r['p50_us']} | {r['p99_us']} | "
          f"{f'{c:.2f}' if c is not None else '—'} | {us} | {f'{u * 100:.0f}%' if u is not None else '—'} | "
          f"{f'{fo * 100:.0f}%' if fo is not None else '—'}{' ⚠' if (fo or 0) > NOISE else ''} | "
          f"{f'{l * 100:.0f}%' if l is not None else '—'} | {r.get('peak_rss_kb', '—')} | "
          f"{r['errors']} | {r['non2xx']} |")
print("\n</details>")
sys.exit(3 if missed else 0)
EOF
st=${PIPESTATUS[0]}
set -e

log "raw results: $OUT/runs.jsonl; table: $OUT/summary.md"
if [ "$st" != 0 ] && [ "$st" != 3 ]; then
    warn "the summary could not be computed (python exit $st)"
    FAILED=1
fi
if [ "$st" = 3 ] && [ "${ENFORCE_GOALS:-0}" = 1 ]; then
    warn "ferrymesh missed a req/s goal (see $OUT/summary.md)"
    FAILED=1
fi
if [ "$FAILED" != 0 ]; then
    warn "SOME RUNS FAILED OR SAW ERRORS (see above and $OUT)"
    exit 1
fi
