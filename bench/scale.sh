#!/usr/bin/env bash
# scale.sh: how ferrymesh's CPU per request (and memory) grows with the size
# of its tables (a benchmark, not a test).
#
# Sets (SETS, any of):
#   bolt    SIZES routes matching the bolt `service` header exactly
#           (com.example.S<i>:1.0), all to one bolt echo upstream; boltload
#           sends the LAST route's service.
#   http    SIZES prefix routes (/svc<i>/, rewritten to /) in one virtual
#           host, to the nginx test upstream; wrk requests /svc<last>/small.
#   vhosts  SIZES virtual hosts with Istio-style domains (svc<i>.ns.svc.
#           cluster.local, svc<i>.ns, svc<i>; every 10th also *.svc<i>.
#           example.com), plus a "*" host answering 404 itself; wrk sends
#           Host: svc<last>.ns.svc.cluster.local.
#   lb      one bolt cluster of HOSTS hosts for each lb_type of LBS; the hosts
#           are 127.0.X.Y:PORT, all served by ONE bolt echo listening on
#           0.0.0.0:PORT (the only address covering all of 127/8; it is the
#           one exception to lib.sh's 127.0.0.1-only rule). ferrymesh keeps
#           an upstream connection per host it has used, so a run holds up to
#           HOSTS connections in each process.
# Configs come from bench/scale_config.py (which documents them exactly).
#
# Each run starts a fresh upstream and ferrymesh (`--workers 1`, pinned to
# PROXY_CPU), warms up for WARMUP s, then measures DURATION s with the load
# tool and the upstream on LOAD_CPU, as bench/bolt.sh and bench/http.sh do.
# CPU per request is ferrymesh's utime+stime (/proc/PID/stat) over the
# measured window divided by the requests completed in it; RSS is ferrymesh's
# VmRSS when the measured window starts (after the warm-up). Sizes (and, in
# the lb set, lb types) alternate within each round; tables show medians over
# rounds, each size as a ratio to the smallest size, the route/vhost sets
# also (RSS - RSS of the smallest size) / extra entries = memory per entry,
# the lb set also the ratio to LB_ROUNDROBIN at the same host count.
# For each route/vhost set, `ferrymesh check` is run once on a CHECK_SIZE-entry
# config and its last lines printed with the wall time it took (the table
# build time, once `check` prints it).
#
#   bash bench/scale.sh                                  # everything
#   SETS=bolt SIZES="10 1000" DURATION=2 bash bench/scale.sh
#   SETS=lb HOSTS="2 1000" LBS=LB_RANDOM bash bench/scale.sh
#   (http and vhosts need nginx, wrk and curl: bash tests/http/install.sh)
#
# Environment (defaults):
#   SETS="bolt http vhosts lb"   space or comma separated
#   SIZES="10 100 1000 10000"    routes / virtual hosts (bolt, http, vhosts)
#   HOSTS="2 1000 10000"         hosts per cluster (lb)
#   LBS="LB_ROUNDROBIN LB_RANDOM LB_WEIGHTED_ROUNDROBIN LB_LEAST_REQUEST"
#   DURATION=5 WARMUP=2 ROUNDS=1
#   CONNS=64 INFLIGHT=8 PAYLOAD=128   boltload (bolt, lb)
#   HTTP_CONNS=64                     wrk connections, one thread (http, vhosts)
#   CHECK_SIZE=10000  entries of the config given to `ferrymesh check`
#   CHECK_LINES=6     lines of its output shown (long lines cut)
#   SKIP_BUILD=0      1: use the binaries already in target/release
#   BASE_PORT=23700   upstream port; ferrymesh listens on BASE_PORT+1
#   PROXY_CPU=0 LOAD_CPU=1
#   OUT=$(mktemp -d /tmp/ferrymesh-scale.XXXXXX)   configs, logs, runs.jsonl,
#                     summary.md (kept; the configs of 10000 entries are ~2 MB)
#   BOLT_ECHO_BIN / BOLTLOAD_BIN / FERRYMESH_BIN: override binaries
# Exit status: 0, or 1 if any run failed to start, saw errors, mismatches or
# non-2xx answers.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SETS="${SETS:-bolt http vhosts lb}"
SETS="${SETS//,/ }"
SIZES="${SIZES:-10 100 1000 10000}"
HOSTS="${HOSTS:-2 1000 10000}"
LBS="${LBS:-LB_ROUNDROBIN LB_RANDOM LB_WEIGHTED_ROUNDROBIN LB_LEAST_REQUEST}"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-2}"
ROUNDS="${ROUNDS:-1}"
CONNS="${CONNS:-64}"
INFLIGHT="${INFLIGHT:-8}"
PAYLOAD="${PAYLOAD:-128}"
HTTP_CONNS="${HTTP_CONNS:-64}"
CHECK_SIZE="${CHECK_SIZE:-10000}"
CHECK_LINES="${CHECK_LINES:-6}"
BASE_PORT="${BASE_PORT:-23700}"
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/ferrymesh-scale.XXXXXX")}"
UP_PORT=$BASE_PORT
LISTEN_PORT=$((BASE_PORT + 1))

bench_init
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)

for s in $SETS; do
    case $s in bolt | http | vhosts | lb) ;; *) die "unknown set $s (bolt, http, vhosts, lb)" ;; esac
done
[ "$(nproc)" -ge 2 ] || warn "fewer than 2 cores: ferrymesh and the load will share a core"
for c in taskset python3 ps; do command -v "$c" >/dev/null || die "$c is required"; done

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release --bins, then --examples"
    build_release || die "build failed"
fi
[ -x "$FERRYMESH_BIN" ] || die "missing $FERRYMESH_BIN (cargo build --release --bins)"

# Which sets can run here: bolt ones need the echo and boltload, HTTP ones
# nginx (tests/http/start-nginx.sh), wrk and curl.
RUN_SETS=()
for s in $SETS; do
    case $s in
    bolt | lb) missing=""
        for b in "$BOLT_ECHO_BIN" "$BOLTLOAD_BIN"; do [ -x "$b" ] || missing="$missing $b"; done ;;
    http | vhosts) missing=""
        for c in nginx wrk curl; do command -v "$c" >/dev/null || missing="$missing $c"; done
        [ -z "$missing" ] || missing="$missing (bash tests/http/install.sh)" ;;
    esac
    if [ -n "$missing" ]; then warn "skipping set $s: missing$missing"; else RUN_SETS+=("$s"); fi
done
[ "${#RUN_SETS[@]}" -gt 0 ] || die "nothing to run"

mkdir -p "$OUT/conf" "$OUT/runs"
RUNS="$OUT/runs.jsonl"
CHECKS="$OUT/check.md"
: >"$RUNS"
: >"$CHECKS"

busy=$(cpu_busy_pct)
if [ "$busy" -gt 10 ]; then
    warn "the CPUs are ${busy}% busy before the benchmark starts (a build? tests?): numbers will be noisy"
fi

# wrk prints its numbers as one JSON line through this.
cat >"$OUT/wrk-report.lua" <<'EOF'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"duration_us":%d,"err_connect":%d,"err_read":%d,' ..
    '"err_write":%d,"err_status":%d,"err_timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
EOF

now() { date +%s.%N; }
# sleep_until EPOCH_FLOAT
sleep_until() {
    local s
    s=$(awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; printf "%.3f", (d > 0 ? d : 0) }')
    isleep "$s"
}
# plus EPOCH_FLOAT SECONDS...: their sum.
plus() { awk 'BEGIN { s = 0; for (i = 1; i < ARGC; i++) s += ARGV[i]; printf "%.6f", s }' "$@"; }
# cpu_jiffies CPU: busy and total jiffies of one core from /proc/stat.
cpu_jiffies() { awk -v c="cpu$1" '$1 == c {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }

FAILED=0

# gen SET SIZE [LB]: writes the config (once; rounds reuse it) and sets CONF
# and PROBE (the service, path or Host that hits the last entry).
gen() {
    local set=$1 size=$2 lb=${3:-}
    CONF="$OUT/conf/$set-$size${lb:+-$lb}.json"
    if [ ! -f "$CONF" ]; then
        python3 "$BENCH_DIR/scale_config.py" "$set" "$size" "$CONF" --listen "$LISTEN_PORT" \
            --upstream-port "$UP_PORT" ${lb:+--lb "$lb"} >"$CONF.probe" || die "scale_config.py $set $size failed"
    fi
    PROBE=$(cat "$CONF.probe")
}

# start_ferrymesh DIR CONF: one worker on PROXY_CPU; sets PROXY_PID.
start_ferrymesh() {
    need_free_port "$LISTEN_PORT"
    spawn "$PROXY_CPU" "$1/ferrymesh.log" "$FERRYMESH_BIN" start -c "$2" --workers 1
    PROXY_PID=$SPAWN_PID
    wait_port "$LISTEN_PORT" "$PROXY_PID" ferrymesh 60 || { tail -20 "$1/ferrymesh.log" >&2; return 1; }
}

# start_any_upstream DIR: the bolt echo on 0.0.0.0:UP_PORT (lb set), so that
# every 127.0.X.Y:UP_PORT reaches it; sets UPSTREAM_PID.
start_any_upstream() {
    need_free_port "$UP_PORT"
    spawn "$LOAD_CPU" "$1/upstream.log" "$BOLT_ECHO_BIN" --listen "0.0.0.0:$UP_PORT"
    UPSTREAM_PID=$SPAWN_PID
    wait_line "$1/upstream.log" "^READY " "$UPSTREAM_PID" "bolt-echo" && wait_port "$UP_PORT" "$UPSTREAM_PID" "bolt-echo"
}

# fail_run SET SIZE LB ROUND WHY: records a run that produced no numbers.
fail_run() {
    FAILED=1
    warn "$1 size $2 ${3:+$3 }round $4: $5"
    python3 -c 'import json,sys; s,n,lb,r,why = sys.argv[1:]; print(json.dumps(dict(set=s, size=int(n), lb=lb, round=int(r), failed=why)))' \
        "$@" >>"$RUNS"
}

# Sampled around the measured window by both kinds of run.
snap_start() {
    CPU0=$(cpu_ticks "$PROXY_PID")
    RSS=$(status_kb "$PROXY_PID" VmRSS)
    FDS=$(find "/proc/$PROXY_PID/fd" -mindepth 1 2>/dev/null | wc -l)
    J0=$(cpu_jiffies "$LOAD_CPU")
    P0=$(cpu_jiffies "$PROXY_CPU")
    W0=$(now)
}
snap_end() {
    CPU1=$(cpu_ticks "$PROXY_PID")
    J1=$(cpu_jiffies "$LOAD_CPU")
    P1=$(cpu_jiffies "$PROXY_CPU")
    W1=$(now)
    HWM=$(status_kb "$PROXY_PID" VmHWM)
}

# record SET SIZE LB ROUND TOOL OUTFILE RC: appends the run to runs.jsonl and
# prints a line about it; fails the run on errors / mismatches / non-2xx.
record() {
    local set=$1 size=$2 lb=$3 round=$4 tool=$5 outf=$6 rc=$7 line
    if ! python3 - "$@" "$CPU0" "$CPU1" "$W0" "$W1" "$RSS" "$HWM" "$FDS" "$J0" "$J1" "$P0" "$P1" "$CLK_TCK" \
        >>"$RUNS" <<'EOF'; then
import json, sys
(set_, size, lb, rnd, tool, outf, rc, cpu0, cpu1, w0, w1, rss, hwm, fds, j0, j1, p0, p1, tck) = sys.argv[1:]
r = dict(set=set_, size=int(size), lb=lb, round=int(rnd), exit=int(rc))
lines = [l for l in open(outf, errors="replace").read().splitlines() if l.startswith("{")]
if not lines:
    r["failed"] = f"{tool} printed no result (exit {rc}); see {outf}"
    print(json.dumps(r)); sys.exit(0)
j = json.loads(lines[-1])
if tool == "boltload":
    r.update(requests=j["requests"], rps=j["rps"], p50_us=j["p50_us"], p99_us=j["p99_us"],
             errors=j["errors"] + j["mismatches"])
else:
    dur = j["duration_us"] / 1e6
    r.update(requests=j["requests"], rps=j["requests"] / dur, p50_us=j["p50_us"], p99_us=j["p99_us"],
             errors=j["err_connect"] + j["err_read"] + j["err_write"] + j["err_timeout"] + j["err_status"])
window = float(w1) - float(w0)
cpu_s = (int(cpu1) - int(cpu0)) / int(tck)
r["window_s"] = round(window, 3)
r["proxy_cpu_util"] = round(cpu_s / window, 3)
r["cpu_us_per_req"] = cpu_s * 1e6 / r["requests"] if r["requests"] else None
r["rss_kb"] = int(rss)
r["peak_rss_kb"] = int(hwm)
r["fds"] = int(fds)
def util(x0, x1):
    b0, a0 = map(int, x0.split()); b1, a1 = map(int, x1.split())
    return round((b1 - b0) / (a1 - a0), 3) if a1 > a0 else None
r["load_core_util"] = util(j0, j1)
# What else ran on ferrymesh's core (a build, tests): the core's busy share
# minus ferrymesh's own.
pc = util(p0, p1)
if pc is not None:
    r["other_on_proxy_core"] = round(max(0.0, pc - r["proxy_cpu_util"]), 3)
print(json.dumps(r))
EOF
        fail_run "$set" "$size" "$lb" "$round" "could not parse $outf"
        return
    fi
    line=$(tail -1 "$RUNS")
    python3 - "$line" >&2 <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
what = f"{r['set']:<6} {r['size']:>6}{' ' + r['lb'] if r['lb'] else ''} round {r['round']}"
if r.get("failed"):
    print(f"  {what}: FAILED: {r['failed']}"); sys.exit(0)
c = r["cpu_us_per_req"]
print(f"  {what}: {r['rps']:>9,.0f} req/s  CPU {c:.2f} us/req ({r['proxy_cpu_util'] * 100:.0f}% of a core)"
      f"  RSS {r['rss_kb'] / 1024:.1f} MiB  other on proxy core {r.get('other_on_proxy_core', 0) * 100:.0f}%"
      + (f"  ERRORS {r['errors']}" if r["errors"] else ""))
EOF
    if python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r.get("failed") or r["errors"] or r["exit"] else 1)' "$line"; then
        warn "$set size $size ${lb:+$lb }round $round: failed or saw errors (exit $rc); see $(dirname "$outf")"
        FAILED=1
    fi
}

# run_bolt ROUND SET SIZE [LB]: sets bolt and lb.
run_bolt() {
    local round=$1 set=$2 size=$3 lb=${4:-} dir lpid rc=0 t_start
    dir="$OUT/runs/$set-$size${lb:+-$lb}-r$round"
    mkdir -p "$dir"
    gen "$set" "$size" "$lb"
    if [ "$set" = lb ]; then start_any_upstream "$dir"; else start_upstream "$dir" "$UP_PORT"; fi ||
        { unspawn "${UPSTREAM_PID:-}"; fail_run "$set" "$size" "$lb" "$round" "upstream did not start"; return; }
    start_ferrymesh "$dir" "$CONF" ||
        { unspawn "${PROXY_PID:-}"; unspawn "$UPSTREAM_PID"; fail_run "$set" "$size" "$lb" "$round" "ferrymesh did not start"; return; }

    t_start=$(now)
    spawn "$LOAD_CPU" "$dir/boltload.out" "$BOLTLOAD_BIN" --target "127.0.0.1:$LISTEN_PORT" \
        --connections "$CONNS" --inflight "$INFLIGHT" --duration "$DURATION" --warmup "$WARMUP" \
        --payload "$PAYLOAD" --service "$PROBE" --json
    lpid=$SPAWN_PID
    # ferrymesh's CPU over boltload's measured window [warmup, warmup+duration].
    sleep_until "$(plus "$t_start" "$WARMUP")"
    snap_start
    sleep_until "$(plus "$t_start" "$WARMUP" "$DURATION")"
    snap_end
    wait "$lpid" || rc=$?
    unspawn "$lpid"
    [ -d "/proc/$PROXY_PID" ] || { warn "ferrymesh died during the run; see $dir"; FAILED=1; }
    unspawn "$PROXY_PID"
    unspawn "$UPSTREAM_PID"
    record "$set" "$size" "$lb" "$round" boltload "$dir/boltload.out" "$rc"
}

# wrk_run SECS OUTFILE PATH HOST: wrk on LOAD_CPU against ferrymesh, to
# completion (killed 30 s after it should have ended). HOST may be empty.
wrk_run() {
    local secs=$1 outf=$2 path=$3 host=$4 rc=0 hdr=()
    [ -z "$host" ] || hdr=(-H "Host: $host")
    spawn "$LOAD_CPU" "$outf" timeout -k 5 $((secs + 30)) wrk -t1 -c"$HTTP_CONNS" -d"${secs}s" \
        "${hdr[@]}" -s "$OUT/wrk-report.lua" "http://127.0.0.1:$LISTEN_PORT$path"
    wait "$SPAWN_PID" || rc=$?
    unspawn "$SPAWN_PID"
    return "$rc"
}

EXPECTED_BODY=""
# run_http ROUND SET SIZE: sets http and vhosts.
run_http() {
    local round=$1 set=$2 size=$3 dir path host="" got rc=0
    dir="$OUT/runs/$set-$size-r$round"
    mkdir -p "$dir"
    gen "$set" "$size"
    if [ "$set" = http ]; then path=$PROBE; else path=/small; host=$PROBE; fi
    start_http_upstream "$dir" "$UP_PORT" ||
        { unspawn "${UPSTREAM_PID:-}"; fail_run "$set" "$size" "" "$round" "upstream did not start"; return; }
    [ -n "$EXPECTED_BODY" ] || EXPECTED_BODY=$(curl -s -m 5 "http://127.0.0.1:$UP_PORT/small" || true)
    start_ferrymesh "$dir" "$CONF" ||
        { unspawn "${PROXY_PID:-}"; unspawn "$UPSTREAM_PID"; fail_run "$set" "$size" "" "$round" "ferrymesh did not start"; return; }

    # The last entry must route to the upstream (the vhosts config's "*"
    # host answers 404 itself, the http config has no catch-all).
    got=$(curl -s -m 5 ${host:+-H "Host: $host"} "http://127.0.0.1:$LISTEN_PORT$path" 2>/dev/null || true)
    if [ -z "$EXPECTED_BODY" ] || [ "$got" != "$EXPECTED_BODY" ]; then
        unspawn "$PROXY_PID"; unspawn "$UPSTREAM_PID"
        fail_run "$set" "$size" "" "$round" "GET $path ${host:+(Host: $host) }did not return the upstream's /small"
        return
    fi
    [ "$WARMUP" = 0 ] || wrk_run "$WARMUP" "$dir/wrk-warmup.out" "$path" "$host" || true
    snap_start
    wrk_run "$DURATION" "$dir/wrk.out" "$path" "$host" || rc=$?
    snap_end
    [ -d "/proc/$PROXY_PID" ] || { warn "ferrymesh died during the run; see $dir"; FAILED=1; }
    unspawn "$PROXY_PID"
    unspawn "$UPSTREAM_PID"
    record "$set" "$size" "" "$round" wrk "$dir/wrk.out" "$rc"
}

# check_config SET: `ferrymesh check` on the set's CHECK_SIZE-entry config.
check_config() {
    local set=$1 size=$CHECK_SIZE t0 t1 rc=0 secs
    gen "$set" "$size"
    t0=$(now)
    "$FERRYMESH_BIN" check -c "$CONF" >"$OUT/check-$set-$size.txt" 2>&1 || rc=$?
    t1=$(now)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    log "ferrymesh check, $set config with $size entries: exit $rc, $secs s wall (shown with the summary)"
    {
        printf '### `ferrymesh check` of the %s config with %s entries (exit %s, %s s wall)\n\n```\n' \
            "$set" "$size" "$rc" "$secs"
        tail -n "$CHECK_LINES" "$OUT/check-$set-$size.txt" | cut -c1-240
        printf '```\n\n'
    } >>"$CHECKS"
    [ "$rc" = 0 ] || { warn "ferrymesh check failed on $CONF"; FAILED=1; }
}

log "ferrymesh scale benchmark: sets ${RUN_SETS[*]}; sizes $SIZES; lb hosts $HOSTS ($LBS);" \
    "$ROUNDS rounds of ${WARMUP}s warm-up + ${DURATION}s; ferrymesh on cpu $PROXY_CPU, load+upstream on cpu $LOAD_CPU"
log "results: $OUT"
for set in "${RUN_SETS[@]}"; do
    case $set in bolt | http | vhosts) check_config "$set" ;; esac
done
for round in $(seq 1 "$ROUNDS"); do
    log "round $round/$ROUNDS"
    for set in "${RUN_SETS[@]}"; do
        case $set in
        bolt) for n in $SIZES; do run_bolt "$round" bolt "$n"; done ;;
        http | vhosts) for n in $SIZES; do run_http "$round" "$set" "$n"; done ;;
        lb)
            for n in $HOSTS; do
                # ferrymesh and the echo each hold one fd per host used.
                if [ "$n" -gt $((NOFILE - 500)) ]; then
                    fail_run lb "$n" "" "$round" "$n hosts need more than the open-file limit $NOFILE"
                    continue
                fi
                for lb in $LBS; do run_bolt "$round" lb "$n" "$lb"; done
            done
            ;;
        esac
    done
done

set +e
python3 - "$RUNS" "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)$(cd "$ROOT" && git diff --quiet 2>/dev/null || echo -dirty)" \
    "$ROUNDS" "$WARMUP" "$DURATION" "$CONNS" "$INFLIGHT" "$HTTP_CONNS" "$FERRYMESH_BIN" \
    "$(date -u +%Y-%m-%d)" >"$OUT/summary.md" <<'EOF'
import json, statistics, sys

runs_file, git, rounds, warmup, duration, conns, inflight, http_conns, binary, date = sys.argv[1:]
runs = [json.loads(l) for l in open(runs_file) if l.strip()]
ok = [r for r in runs if not r.get("failed") and not r.get("errors")]

def med(rs, key):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(vals) if vals else None

def x(v, ref):
    return f"{v / ref:.2f}×" if v is not None and ref else "—"

def pct(v):
    return "—" if v is None else f"{v * 100:.0f}%"

TITLES = {
    "bolt": "bolt: routes on the `service` header (exact), boltload sends the last route's service",
    "http": "HTTP/1.1: prefix routes `/svc<i>/` in one virtual host, wrk requests the last one",
    "vhosts": "HTTP/1.1: virtual hosts with Istio-style domains, wrk sends the last one's Host",
    "lb": "load balancers: one bolt cluster of N hosts (127.0.X.Y, one echo behind them all)",
}
UNIT = {"bolt": "routes", "http": "routes", "vhosts": "vhosts"}
print(f"## ferrymesh scale benchmark ({date})\n")
print(f"Binary {binary} (work tree at {git}). One worker pinned to a core; load tool and upstream on the other. Median of {rounds} round(s) "
      f"of {duration} s after a {warmup} s warm-up; bolt: boltload {conns} connections × {inflight} in "
      f"flight; HTTP: wrk {http_conns} connections. CPU = ferrymesh utime+stime over the measured window ÷ "
      "requests; RSS = ferrymesh VmRSS when the measured window starts.\n")
for s in ("bolt", "http", "vhosts", "lb"):
    rs = [r for r in runs if r["set"] == s]
    if not rs:
        continue
    print(f"### {TITLES[s]}\n")
    if s != "lb":
        sizes = sorted({r["size"] for r in rs})
        st = {n: {k: med([r for r in ok if r["set"] == s and r["size"] == n], k)
                  for k in ("rps", "cpu_us_per_req", "rss_kb", "proxy_cpu_util", "other_on_proxy_core")}
              for n in sizes}
        base = next((n for n in sizes if st[n]["cpu_us_per_req"] is not None), None)
        print(f"| {UNIT[s]} | req/s | CPU µs/req | × {base} {UNIT[s]} | RSS MiB | bytes per extra entry "
              "| ferrymesh core busy | other on its core |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in sizes:
            v = st[n]
            if v["rps"] is None:
                print(f"| {n:,} | FAILED | | | | | | |")
                continue
            b = st[base] if base is not None else None
            per = "—"
            if b and n != base and v["rss_kb"] is not None and b["rss_kb"] is not None:
                per = f"{(v['rss_kb'] - b['rss_kb']) * 1024 / (n - base):,.0f}"
            print(f"| {n:,} | {v['rps']:,.0f} | {v['cpu_us_per_req']:.2f} "
                  f"| {x(v['cpu_us_per_req'], b and b['cpu_us_per_req'])} | {v['rss_kb'] / 1024:.1f} | {per} "
                  f"| {pct(v['proxy_cpu_util'])} | {pct(v['other_on_proxy_core'])} |")
    else:
        hosts = sorted({r["size"] for r in rs})
        lbs = list(dict.fromkeys(r["lb"] for r in rs if r["lb"]))
        st = {(n, lb): {k: med([r for r in ok if r["set"] == s and r["size"] == n and r["lb"] == lb], k)
                        for k in ("rps", "cpu_us_per_req", "rss_kb", "fds", "proxy_cpu_util", "other_on_proxy_core")}
              for n in hosts for lb in lbs}
        print(f"| lb_type | hosts | req/s | CPU µs/req | × {hosts[0]:,} hosts | × LB_ROUNDROBIN | RSS MiB "
              "| open fds | ferrymesh core busy | other on its core |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for lb in lbs:
            for n in hosts:
                v = st[(n, lb)]
                if v["rps"] is None:
                    print(f"| {lb} | {n:,} | FAILED | | | | | | | |")
                    continue
                small = st[(hosts[0], lb)]["cpu_us_per_req"]
                rr = st.get((n, "LB_ROUNDROBIN"), {}).get("cpu_us_per_req")
                print(f"| {lb} | {n:,} | {v['rps']:,.0f} | {v['cpu_us_per_req']:.2f} "
                      f"| {x(v['cpu_us_per_req'], small) if n != hosts[0] else '1.00×'} "
                      f"| {x(v['cpu_us_per_req'], rr) if lb != 'LB_ROUNDROBIN' else '—'} "
                      f"| {v['rss_kb'] / 1024:.1f} | {v['fds']:,.0f} | {pct(v['proxy_cpu_util'])} "
                      f"| {pct(v['other_on_proxy_core'])} |")
        print(f"\n× {hosts[0]:,} hosts compares a balancer with itself on the smallest cluster: it includes what spreading "
              "the load costs anyway (one upstream connection per host, so fewer requests share each write "
              "and read). × LB_ROUNDROBIN compares balancers at the same host count: that is the balancer's own "
              "cost. Open fds (when the window starts) ≈ upstream connections + the load's "
              f"connections + a few.")
    print()
bad = [r for r in runs if r.get("failed") or r.get("errors")]
if bad:
    print("**Failed runs (left out of the tables):** " + "; ".join(
        f"{r['set']} {r['size']}{' ' + r['lb'] if r.get('lb') else ''} round {r['round']}: "
        + (r.get("failed") or f"{r['errors']} errors") for r in bad) + "\n")
print("Bytes per extra entry = (RSS − RSS of the smallest table) ÷ the extra entries (route and vhost "
      "sets). ferrymesh core busy "
      "below ~100% means ferrymesh was not the bottleneck (the load core was); CPU per request is still "
      "its own cost. \"Other on its core\" is CPU the rest of the machine took on ferrymesh's core "
      "during the window: when it is high (a build, tests), rerun.\n")
EOF
st=$?
set -e
cat "$CHECKS" >>"$OUT/summary.md"
cat "$OUT/summary.md"

log "raw results: $RUNS; table: $OUT/summary.md"
[ "$st" = 0 ] || { warn "the summary could not be computed (python exit $st)"; FAILED=1; }
if [ "$FAILED" != 0 ]; then
    warn "SOME RUNS FAILED OR SAW ERRORS (see above and $OUT)"
    exit 1
fi
