#!/usr/bin/env bash
# observe.sh: what metrics and access logs cost ferrymesh per request, over
# bolt and HTTP/1.1 (a benchmark, not a test).
#
# Metrics cannot be switched off in the current tree, so "off" is an older
# binary: three ferrymesh variants run the same load on the same pinned core.
#   base          ferrymesh from BASE_REV (c72d7a6: before the metrics and
#                 runtime work; counters were plain Cells summed at exit, no
#                 per-listener/cluster/host counters, no latency histogram,
#                 no access logs)
#   metrics       this tree's ferrymesh (per-worker per-listener/cluster/host
#                 counters and the latency histogram), no access log
#   metrics+log   this tree's ferrymesh with one access log on the listener,
#                 MOSN's default format (`"log_format": ""`), to a file in the
#                 run's directory
# Protocols (PROTOS):
#   bolt  boltload -> ferrymesh bolt listener -> bolt-echo example, configs
#         from bench/conf/ferrymesh.json.tmpl (as bench/bolt.sh)
#   h1    wrk (one thread, HTTP/1.1 keep-alive, GET URL_PATH) -> ferrymesh
#         (Auto downstream, Http1 upstream) -> the nginx test upstream
#         (tests/http/start-nginx.sh, access log off), configs from
#         bench/conf/http-ferrymesh.json.tmpl (as bench/http.sh)
#
# Each run starts a fresh upstream and ferrymesh (`--workers 1`, pinned to
# PROXY_CPU), warms up for WARMUP s, then measures DURATION s with the load
# tool and the upstream on LOAD_CPU. CPU per request is ferrymesh's
# utime+stime over the measured window (/proc/PID/stat, every thread: the
# access-log writer thread included, and shown on its own too) divided by the
# requests completed in it.
# Within a round every protocol runs all variants back to back, and the
# variant order rotates from round to round, so drift hits all of them alike.
# For metrics+log the access log's growth over the window is divided by the
# requests (bytes per request) and its size by its line count (bytes per
# line), to show that a line per request was written.
#
# The table gives medians over rounds, each variant's req/s and CPU/request as
# a ratio to base, and the paired ratio (median over rounds of variant/base in
# the same round, which cancels slow drift). The verdict compares
# metrics+log's CPU per request with base's against MAX_OVERHEAD.
#
#   bash bench/observe.sh                          # builds what is missing first
#   ROUNDS=3 DURATION=5 SKIP_BUILD=1 bash bench/observe.sh
#   (h1 needs nginx, wrk and curl: bash tests/http/install.sh)
#
# Environment (defaults):
#   PROTOS="bolt h1"             space or comma separated
#   VARIANTS="base metrics metrics+log"
#   DURATION=5 WARMUP=2 ROUNDS=3
#   CONNS=64 INFLIGHT=8 PAYLOAD=128   boltload (bolt)
#   HTTP_CONNS=64 URL_PATH=/small     wrk (h1)
#   MAX_OVERHEAD=0.05            the bar: metrics+log CPU/request <= base x 1.05
#   NOISE=0.15                   flag runs where more than this share of a
#                                core went to other processes (ferrymesh's
#                                core) or was stolen by the hypervisor (either)
#   BASE_REV=c72d7a6
#   BASE_TREE=/tmp/ferrymesh-base           git worktree of BASE_REV (reused)
#   BASE_TARGET=/tmp/ferrymesh-base-target  its CARGO_TARGET_DIR
#   BASE_BIN=$BASE_TARGET/release/ferrymesh the base binary; when it does not
#                                exist it is built (`git worktree add` if the
#                                tree is missing, then `cargo build --release
#                                --bins`, then `--examples`, there)
#   SKIP_BUILD=0      1: build nothing; use target/release and BASE_BIN as found.
#                     Otherwise this tree is built (`cargo build --release --bins`,
#                     then `--examples`). Builds run under `nice -n 10`, one at a
#                     time, after waiting until no other cargo runs.
#   KEEP_ACCESS_LOGS=0  1: keep the access logs (~200 B a request)
#   BASE_PORT=23800   upstream port; ferrymesh listens on BASE_PORT+1
#   PROXY_CPU=0 LOAD_CPU=1
#   OUT=$(mktemp -d /tmp/ferrymesh-observe.XXXXXX)   configs, logs,
#                     runs.jsonl, summary.md (kept)
#   BOLT_ECHO_BIN / BOLTLOAD_BIN / FERRYMESH_BIN: override binaries
# Output: a line per run on stderr, then summary.md (also printed).
# Exit status: 0, or 1 if any run failed to start, saw errors, mismatches or
# non-2xx answers, or wrote no access-log lines when it should have. Missing
# the bar is reported, not an error.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROTOS="${PROTOS:-bolt h1}"
PROTOS="${PROTOS//,/ }"
VARIANTS="${VARIANTS:-base metrics metrics+log}"
VARIANTS="${VARIANTS//,/ }"
DURATION="${DURATION:-5}"
WARMUP="${WARMUP:-2}"
ROUNDS="${ROUNDS:-3}"
CONNS="${CONNS:-64}"
INFLIGHT="${INFLIGHT:-8}"
PAYLOAD="${PAYLOAD:-128}"
HTTP_CONNS="${HTTP_CONNS:-64}"
URL_PATH="${URL_PATH:-/small}"
MAX_OVERHEAD="${MAX_OVERHEAD:-0.05}"
NOISE="${NOISE:-0.15}"
BASE_REV="${BASE_REV:-c72d7a6}"
BASE_TREE="${BASE_TREE:-/tmp/ferrymesh-base}"
BASE_TARGET="${BASE_TARGET:-/tmp/ferrymesh-base-target}"
BASE_BIN="${BASE_BIN:-$BASE_TARGET/release/ferrymesh}"
BASE_PORT="${BASE_PORT:-23800}"
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/ferrymesh-observe.XXXXXX")}"
UP_PORT=$BASE_PORT
LISTEN_PORT=$((BASE_PORT + 1))
HEAD_BIN=$FERRYMESH_BIN

bench_init
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

for p in $PROTOS; do
    case $p in bolt | h1) ;; *) die "unknown protocol $p (bolt, h1)" ;; esac
done
for v in $VARIANTS; do
    case $v in base | metrics | metrics+log) ;; *) die "unknown variant $v (base, metrics, metrics+log)" ;; esac
done
[ "$(nproc)" -ge 2 ] || warn "fewer than 2 cores: ferrymesh and the load will share a core"
for c in taskset python3 ps; do command -v "$c" >/dev/null || die "$c is required"; done

# cargo_build DIR [ENV=VALUE...]: one niced release build, after any other
# cargo on the machine has finished (it is shared; two builds at once would
# also skew each other's timing).
cargo_build() {
    local dir=$1
    shift
    while pgrep -x cargo >/dev/null; do
        log "another cargo is running; waiting for it to finish"
        isleep 10
    done
    log "($dir) ${*:+$* }nice -n 10 cargo build --release --bins, then --examples"
    # Two runs, as in build_release (lib.sh): the bins without test-util.
    (cd "$dir" && env "$@" nice -n 10 cargo build --release --bins && env "$@" nice -n 10 cargo build --release --examples)
}

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    cargo_build "$ROOT" || die "build failed"
    if [[ " $VARIANTS " == *" base "* ]] && [ ! -x "$BASE_BIN" ]; then
        if [ ! -e "$BASE_TREE/.git" ]; then
            log "git worktree add $BASE_TREE $BASE_REV"
            (cd "$ROOT" && git worktree add --detach "$BASE_TREE" "$BASE_REV") || die "git worktree add failed"
        fi
        cargo_build "$BASE_TREE" CARGO_TARGET_DIR="$BASE_TARGET" || die "build of $BASE_REV failed"
        [ -x "$BASE_BIN" ] || die "the build of $BASE_REV made no $BASE_BIN (set BASE_BIN)"
    fi
fi
[ -x "$HEAD_BIN" ] || die "missing $HEAD_BIN (cargo build --release --bins)"
if [[ " $VARIANTS " == *" base "* ]]; then
    [ -x "$BASE_BIN" ] || die "missing $BASE_BIN (unset SKIP_BUILD to build it, or set BASE_BIN)"
fi

# Run copies: another build in this tree (the machine is shared) must not
# swap a binary between two runs.
mkdir -p "$OUT/bin"
HEAD_ORIG=$HEAD_BIN
BASE_ORIG=$BASE_BIN
cp "$HEAD_BIN" "$OUT/bin/ferrymesh" && HEAD_BIN="$OUT/bin/ferrymesh"
if [[ " $VARIANTS " == *" base "* ]]; then cp "$BASE_BIN" "$OUT/bin/ferrymesh-base" && BASE_BIN="$OUT/bin/ferrymesh-base"; fi
for b in BOLT_ECHO_BIN BOLTLOAD_BIN; do
    if [ -x "${!b}" ]; then cp "${!b}" "$OUT/bin/" && printf -v "$b" '%s' "$OUT/bin/$(basename "${!b}")"; fi
done

# Which protocols can run here.
RUN_PROTOS=()
for p in $PROTOS; do
    missing=""
    case $p in
    bolt) for b in "$BOLT_ECHO_BIN" "$BOLTLOAD_BIN"; do [ -x "$b" ] || missing="$missing $b"; done ;;
    h1) for c in nginx wrk curl; do command -v "$c" >/dev/null || missing="$missing $c"; done
        [ -f "$HTTP_TESTS_DIR/start-nginx.sh" ] || missing="$missing $HTTP_TESTS_DIR/start-nginx.sh"
        [ -z "$missing" ] || missing="$missing (bash tests/http/install.sh)" ;;
    esac
    if [ -n "$missing" ]; then warn "skipping $p: missing$missing"; else RUN_PROTOS+=("$p"); fi
done
[ "${#RUN_PROTOS[@]}" -gt 0 ] || die "nothing to run"
read -r -a VARS <<<"$VARIANTS"

mkdir -p "$OUT/runs"
RUNS="$OUT/runs.jsonl"
: >"$RUNS"

busy=$(cpu_busy_pct)
if [ "$busy" -gt 10 ]; then
    warn "the CPUs are ${busy}% busy before the benchmark starts (a build? tests?): numbers will be noisy"
fi

python3 - "$OUT/meta.json" <<EOF
import json
json.dump({
    "date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
    "host": "$(uname -srm)",
    "cpu": "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)",
    "nproc": $(nproc),
    "busy_before_pct": $busy,
    "git": "$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)$(cd "$ROOT" && git diff --quiet 2>/dev/null || echo -dirty)",
    "base_rev": "$BASE_REV", "base_bin": "$BASE_ORIG", "head_bin": "$HEAD_ORIG",
    "head_bin_built": "$(date -u -r "$HEAD_ORIG" +%Y-%m-%dT%H:%M:%SZ)",
    "dirty": "$(cd "$ROOT" && git diff --name-only 2>/dev/null | tr '\n' ' ')",
    "rounds": $ROUNDS, "warmup": $WARMUP, "duration": $DURATION,
    "conns": $CONNS, "inflight": $INFLIGHT, "payload": $PAYLOAD,
    "http_conns": $HTTP_CONNS, "path": "$URL_PATH",
    "max_overhead": $MAX_OVERHEAD, "noise": $NOISE,
    "proxy_cpu": $PROXY_CPU, "load_cpu": $LOAD_CPU,
}, open(__import__("sys").argv[1], "w"), indent=1)
EOF

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
# cpu_jiffies CPU: busy, total and stolen jiffies of one core from
# /proc/stat (total includes steal: time the hypervisor gave to another VM,
# which leaves both cores looking idle while the load stalls).
cpu_jiffies() { awk -v c="cpu$1" '$1 == c {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8+$9, $9}' /proc/stat; }
# thread_ticks PID NAME: utime+stime (clock ticks) of PID's threads named NAME.
thread_ticks() {
    local total=0 t f rest
    for t in /proc/"$1"/task/*; do
        f=$(cat "$t/stat" 2>/dev/null) || continue
        [ "$(cat "$t/comm" 2>/dev/null)" = "$2" ] || continue
        rest=${f##*) }
        set -- $rest
        total=$((total + ${12} + ${13}))
    done
    echo "$total"
}
# fsize FILE: its size in bytes, 0 if it does not exist (yet).
fsize() { stat -c %s "$1" 2>/dev/null || echo 0; }

FAILED=0

# config PROTO VARIANT DIR: writes DIR/ferrymesh.json from the protocol's
# template; metrics+log gets an access log (default format) to DIR/access.log.
# Sets CONF, BIN and ALOG (empty without a log).
config() {
    local proto=$1 variant=$2 dir=$3 tmpl
    case $proto in bolt) tmpl="$CONF_DIR/ferrymesh.json.tmpl" ;; h1) tmpl="$CONF_DIR/http-ferrymesh.json.tmpl" ;; esac
    CONF="$dir/ferrymesh.json"
    # PROTOCOL: the bolt template's codec placeholder (bench/bolt.sh PROTO=);
    # the HTTP template has none.
    render "$tmpl" "$CONF" LISTEN_PORT="$LISTEN_PORT" UPSTREAM_PORT="$UP_PORT" PROTOCOL=bolt POLL_FIELDS="$(BUSY_POLL=${BUSY_POLL:-0s} fm_poll_fields)"
    BIN=$HEAD_BIN
    ALOG=""
    case $variant in
    base) BIN=$BASE_BIN ;;
    metrics+log)
        ALOG="$dir/access.log"
        python3 - "$CONF" "$ALOG" <<'EOF'
import json, sys
conf, path = sys.argv[1:]
c = json.load(open(conf))
for s in c["servers"]:
    for l in s["listeners"]:
        l["access_logs"] = [{"log_path": path, "log_format": ""}]
json.dump(c, open(conf, "w"))
EOF
        ;;
    esac
}

# start_ferrymesh DIR: BIN with CONF, one worker on PROXY_CPU; sets PROXY_PID.
start_ferrymesh() {
    need_free_port "$LISTEN_PORT"
    spawn "$PROXY_CPU" "$1/ferrymesh.log" "$BIN" start -c "$CONF" --workers 1
    PROXY_PID=$SPAWN_PID
    wait_port "$LISTEN_PORT" "$PROXY_PID" ferrymesh 30 || { tail -20 "$1/ferrymesh.log" >&2; return 1; }
}

# fail_run PROTO VARIANT ROUND WHY: records a run that produced no numbers.
fail_run() {
    FAILED=1
    warn "$1 $2 round $3: $4"
    python3 -c 'import json,sys; p,v,r,why = sys.argv[1:]; print(json.dumps(dict(proto=p, variant=v, round=int(r), failed=why)))' \
        "$@" >>"$RUNS"
}

# Sampled around the measured window.
snap_start() {
    CPU0=$(cpu_ticks "$PROXY_PID")
    WR0=$(thread_ticks "$PROXY_PID" access-log)
    P0=$(cpu_jiffies "$PROXY_CPU")
    J0=$(cpu_jiffies "$LOAD_CPU")
    W0=$(now)
}
snap_end() {
    CPU1=$(cpu_ticks "$PROXY_PID")
    WR1=$(thread_ticks "$PROXY_PID" access-log)
    P1=$(cpu_jiffies "$PROXY_CPU")
    J1=$(cpu_jiffies "$LOAD_CPU")
    W1=$(now)
    RSS=$(status_kb "$PROXY_PID" VmRSS)
}

# record PROTO VARIANT ROUND TOOL OUTFILE RC: appends the run to runs.jsonl
# and prints a line about it; fails the run on errors / mismatches / non-2xx
# and, with an access log, on a log that did not grow by about a line a
# request. Uses LOG0/LOG1 (log size around the window), LOG_BYTES/LOG_LINES
# (the whole file at the end).
record() {
    local proto=$1 variant=$2 round=$3 tool=$4 outf=$5 rc=$6 line
    if ! python3 - "$@" "$CPU0" "$CPU1" "$W0" "$W1" "$P0" "$P1" "$J0" "$J1" "$RSS" "$CLK_TCK" \
        "$LOG0" "$LOG1" "$LOG_BYTES" "$LOG_LINES" "$WR0" "$WR1" >>"$RUNS" <<'EOF'; then
import json, sys
(proto, variant, rnd, tool, outf, rc, cpu0, cpu1, w0, w1, p0, p1, j0, j1, rss, tck,
 log0, log1, log_bytes, log_lines, wr0, wr1) = sys.argv[1:]
r = dict(proto=proto, variant=variant, round=int(rnd), exit=int(rc))
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
def util(x0, x1, i=0):
    x0, x1 = list(map(int, x0.split())), list(map(int, x1.split()))
    return round((x1[i] - x0[i]) / (x1[1] - x0[1]), 3) if x1[1] > x0[1] else None
r["load_core_util"] = util(j0, j1)
# What else ran on ferrymesh's core (a build, tests): the core's busy share
# minus ferrymesh's own; and what the hypervisor took from each core.
pc = util(p0, p1)
if pc is not None:
    r["other_on_proxy_core"] = round(max(0.0, pc - r["proxy_cpu_util"]), 3)
r["stolen"] = max(util(p0, p1, 2) or 0, util(j0, j1, 2) or 0)
# The access-log writer thread's share of ferrymesh's CPU.
if r["requests"] and int(wr1) > int(wr0):
    r["writer_us_per_req"] = (int(wr1) - int(wr0)) / int(tck) * 1e6 / r["requests"]
if log_lines != "":
    r["log_bytes"], r["log_lines"] = int(log_bytes), int(log_lines)
    r["log_bytes_per_req"] = (int(log1) - int(log0)) / r["requests"] if r["requests"] else None
    r["log_bytes_per_line"] = int(log_bytes) / int(log_lines) if int(log_lines) else None
    # Lines written while measuring, per request measured: ~1 (up to 100 ms
    # of buffering at either end of the window).
    if not r["log_bytes_per_req"] or not r["log_bytes_per_line"]:
        r["log_problem"] = "the access log did not grow"
    else:
        per = r["log_bytes_per_req"] / r["log_bytes_per_line"]
        r["log_lines_per_req"] = round(per, 3)
        if not 0.9 <= per <= 1.1:
            r["log_problem"] = f"{per:.2f} log lines per request"
print(json.dumps(r))
EOF
        fail_run "$proto" "$variant" "$round" "could not parse $outf"
        return
    fi
    line=$(tail -1 "$RUNS")
    python3 - "$line" "$NOISE" >&2 <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
noise = float(sys.argv[2])
what = f"{r['proto']:<4} {r['variant']:<11} round {r['round']}"
if r.get("failed"):
    print(f"  {what}: FAILED: {r['failed']}"); sys.exit(0)
o = (r.get("other_on_proxy_core") or 0) + (r.get("stolen") or 0)
lg = ""
if "log_bytes_per_req" in r:
    lg = f"  log {r['log_bytes_per_req'] or 0:.0f} B/req, {r['log_bytes_per_line'] or 0:.0f} B/line"
print(f"  {what}: {r['rps']:>9,.0f} req/s  CPU {r['cpu_us_per_req']:.3f} us/req "
      f"({r['proxy_cpu_util'] * 100:.0f}% of a core)  load core {(r['load_core_util'] or 0) * 100:.0f}%"
      f"  other on proxy core {(r.get('other_on_proxy_core') or 0) * 100:.0f}%"
      f"  stolen {(r.get('stolen') or 0) * 100:.0f}%{lg}"
      + (f" (writer thread {r['writer_us_per_req']:.3f} us/req)" if r.get("writer_us_per_req") else "")
      + (f"  NOISY" if o > noise else "")
      + (f"  ERRORS {r['errors']}" if r["errors"] else "")
      + (f"  LOG: {r['log_problem']}" if r.get("log_problem") else ""))
EOF
    if python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r.get("failed") or r["errors"] or r["exit"] or r.get("log_problem") else 1)' "$line"; then
        warn "$proto $variant round $round: failed, saw errors or wrote no log (exit $rc); see $(dirname "$outf")"
        FAILED=1
    fi
}

# log_done: LOG_BYTES and LOG_LINES of ALOG once ferrymesh has stopped (empty
# without a log); drops the file unless KEEP_ACCESS_LOGS=1.
log_done() {
    LOG_BYTES=""
    LOG_LINES=""
    [ -n "$ALOG" ] || return 0
    LOG_BYTES=$(fsize "$ALOG")
    LOG_LINES=$( (wc -l <"$ALOG") 2>/dev/null || echo 0)
    [ "${KEEP_ACCESS_LOGS:-0}" = 1 ] || rm -f "$ALOG"
}

# run_bolt ROUND VARIANT
run_bolt() {
    local round=$1 variant=$2 dir lpid rc=0 t_start
    dir="$OUT/runs/bolt-$variant-r$round"
    mkdir -p "$dir"
    config bolt "$variant" "$dir"
    start_upstream "$dir" "$UP_PORT" ||
        { unspawn "${UPSTREAM_PID:-}"; fail_run bolt "$variant" "$round" "upstream did not start"; return; }
    start_ferrymesh "$dir" ||
        { unspawn "${PROXY_PID:-}"; unspawn "$UPSTREAM_PID"; fail_run bolt "$variant" "$round" "ferrymesh did not start"; return; }

    t_start=$(now)
    spawn "$LOAD_CPU" "$dir/boltload.out" "$BOLTLOAD_BIN" --target "127.0.0.1:$LISTEN_PORT" \
        --connections "$CONNS" --inflight "$INFLIGHT" --duration "$DURATION" --warmup "$WARMUP" \
        --payload "$PAYLOAD" --json
    lpid=$SPAWN_PID
    # ferrymesh's CPU over boltload's measured window [warmup, warmup+duration].
    sleep_until "$(plus "$t_start" "$WARMUP")"
    snap_start
    LOG0=$(fsize "$ALOG")
    sleep_until "$(plus "$t_start" "$WARMUP" "$DURATION")"
    snap_end
    LOG1=$(fsize "$ALOG")
    wait "$lpid" || rc=$?
    unspawn "$lpid"
    [ -d "/proc/$PROXY_PID" ] || { warn "ferrymesh died during the run; see $dir"; FAILED=1; }
    unspawn "$PROXY_PID"
    unspawn "$UPSTREAM_PID"
    log_done
    record bolt "$variant" "$round" boltload "$dir/boltload.out" "$rc"
}

# wrk_run SECS OUTFILE: wrk on LOAD_CPU against ferrymesh, to completion
# (killed 30 s after it should have ended).
wrk_run() {
    local secs=$1 outf=$2 rc=0
    spawn "$LOAD_CPU" "$outf" timeout -k 5 $((secs + 30)) wrk -t1 -c"$HTTP_CONNS" -d"${secs}s" \
        -s "$OUT/wrk-report.lua" "http://127.0.0.1:$LISTEN_PORT$URL_PATH"
    wait "$SPAWN_PID" || rc=$?
    unspawn "$SPAWN_PID"
    return "$rc"
}

EXPECTED_BODY=""
# run_h1 ROUND VARIANT
run_h1() {
    local round=$1 variant=$2 dir got rc=0
    dir="$OUT/runs/h1-$variant-r$round"
    mkdir -p "$dir"
    config h1 "$variant" "$dir"
    start_http_upstream "$dir" "$UP_PORT" ||
        { unspawn "${UPSTREAM_PID:-}"; fail_run h1 "$variant" "$round" "upstream did not start"; return; }
    [ -n "$EXPECTED_BODY" ] || EXPECTED_BODY=$(curl -s -m 5 "http://127.0.0.1:$UP_PORT$URL_PATH" || true)
    start_ferrymesh "$dir" ||
        { unspawn "${PROXY_PID:-}"; unspawn "$UPSTREAM_PID"; fail_run h1 "$variant" "$round" "ferrymesh did not start"; return; }
    got=$(curl -s -m 5 "http://127.0.0.1:$LISTEN_PORT$URL_PATH" 2>/dev/null || true)
    if [ -z "$EXPECTED_BODY" ] || [ "$got" != "$EXPECTED_BODY" ]; then
        unspawn "$PROXY_PID"; unspawn "$UPSTREAM_PID"
        fail_run h1 "$variant" "$round" "GET $URL_PATH did not return the upstream's body"
        return
    fi
    [ "$WARMUP" = 0 ] || wrk_run "$WARMUP" "$dir/wrk-warmup.out" || true
    # The log size is read 0.3 s after each wrk run, once the writer (every
    # 100 ms) has caught up, so that it covers exactly the measured run.
    if [ -n "$ALOG" ]; then isleep 0.3; fi
    LOG0=$(fsize "$ALOG")
    snap_start
    wrk_run "$DURATION" "$dir/wrk.out" || rc=$?
    snap_end
    if [ -n "$ALOG" ]; then isleep 0.3; fi
    LOG1=$(fsize "$ALOG")
    [ -d "/proc/$PROXY_PID" ] || { warn "ferrymesh died during the run; see $dir"; FAILED=1; }
    unspawn "$PROXY_PID"
    unspawn "$UPSTREAM_PID"
    log_done
    record h1 "$variant" "$round" wrk "$dir/wrk.out" "$rc"
}

log "ferrymesh observability cost: ${RUN_PROTOS[*]} x ${VARS[*]}; $ROUNDS rounds of ${WARMUP}s warm-up + ${DURATION}s;" \
    "ferrymesh on cpu $PROXY_CPU, load+upstream on cpu $LOAD_CPU; base = $BASE_BIN"
log "results: $OUT"
for round in $(seq 1 "$ROUNDS"); do
    log "round $round/$ROUNDS"
    for proto in "${RUN_PROTOS[@]}"; do
        # Rotate the variant order by round.
        n=${#VARS[@]}
        for k in $(seq 0 $((n - 1))); do
            v=${VARS[$(((k + round - 1) % n))]}
            "run_$proto" "$round" "$v"
        done
    done
done

set +e
python3 - "$OUT" >"$OUT/summary.md" <<'EOF'
import json, statistics, sys

out = sys.argv[1]
meta = json.load(open(f"{out}/meta.json"))
runs = [json.loads(l) for l in open(f"{out}/runs.jsonl") if l.strip()]
ok = [r for r in runs if not r.get("failed") and not r.get("errors")]
bar = meta["max_overhead"]

def med(rs, key):
    vals = [r[key] for r in rs if r.get(key) is not None]
    return statistics.median(vals) if vals else None

def pct(v):
    return "—" if v is None else f"{v * 100:.0f}%"

def x(v, ref):
    return f"{v / ref:.3f}×" if v is not None and ref else "—"

TITLES = {
    "bolt": f"bolt: boltload {meta['conns']} connections × {meta['inflight']} in flight, "
            f"{meta['payload']} B payload, to the bolt-echo example",
    "h1": f"HTTP/1.1: wrk {meta['http_conns']} connections, GET {meta['path']}, to the nginx test upstream",
}
print(f"## ferrymesh: what metrics and access logs cost ({meta['date'][:10]})\n")
print(f"base = `{meta['base_bin']}` (ferrymesh at {meta['base_rev']}, before metrics and access logs); "
      f"metrics = `{meta['head_bin']}` (built {meta['head_bin_built']}; work tree at {meta['git']}"
      + (f", modified: {meta['dirty'].strip()}" if meta['dirty'].strip() else "") + "); "
      f"metrics+log = the same with an access log "
      "to a file, MOSN's default format. One worker pinned to core "
      f"{meta['proxy_cpu']}; load tool and upstream on core {meta['load_cpu']}. Median of {meta['rounds']} "
      f"round(s) of {meta['duration']} s after a {meta['warmup']} s warm-up, variants alternating (order "
      f"rotated each round). {meta['cpu']}, {meta['nproc']} cores, {meta['host']}.\n")
verdicts = []
for proto in ("bolt", "h1"):
    rs = [r for r in ok if r["proto"] == proto]
    if not any(r["proto"] == proto for r in runs):
        continue
    variants = list(dict.fromkeys(r["variant"] for r in runs if r["proto"] == proto))
    variants.sort(key=lambda v: ("base", "metrics", "metrics+log").index(v))
    st = {v: {k: med([r for r in rs if r["variant"] == v], k)
              for k in ("rps", "cpu_us_per_req", "proxy_cpu_util", "other_on_proxy_core", "load_core_util",
                        "stolen", "writer_us_per_req", "log_bytes_per_req", "log_bytes_per_line")}
          for v in variants}
    # Paired: variant / base within the same round.
    def paired(v, key):
        by = {r["round"]: r for r in rs if r["variant"] == "base"}
        vals = [r[key] / by[r["round"]][key] for r in rs
                if r["variant"] == v and r["round"] in by and r.get(key) and by[r["round"]].get(key)]
        return statistics.median(vals) if vals else None
    b = st.get("base", {})
    print(f"### {TITLES[proto]}\n")
    print("| variant | req/s | × base | CPU µs/req | × base | paired × base | of which log writer µs/req "
          "| log B/req | log B/line | ferrymesh core busy | load core busy | other on its core | stolen |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v in variants:
        s = st[v]
        if s["rps"] is None:
            print(f"| {v} | FAILED | | | | | | | | | | | |")
            continue
        isb = v == "base"
        pr = paired(v, "cpu_us_per_req")
        lb = "—" if s["log_bytes_per_req"] is None else f"{s['log_bytes_per_req']:.0f}"
        ll = "—" if s["log_bytes_per_line"] is None else f"{s['log_bytes_per_line']:.0f}"
        wr = "—" if s["writer_us_per_req"] is None else f"{s['writer_us_per_req']:.3f}"
        print(f"| {v} | {s['rps']:,.0f} | {'—' if isb else x(s['rps'], b.get('rps'))} "
              f"| {s['cpu_us_per_req']:.3f} | {'—' if isb else x(s['cpu_us_per_req'], b.get('cpu_us_per_req'))} "
              f"| {'—' if isb or pr is None else f'{pr:.3f}×'} | {wr} | {lb} | {ll} "
              f"| {pct(s['proxy_cpu_util'])} | {pct(s['load_core_util'])} | {pct(s['other_on_proxy_core'])} "
              f"| {pct(s['stolen'])} |")
    print()
    ml, bc = st.get("metrics+log", {}).get("cpu_us_per_req"), b.get("cpu_us_per_req")
    if ml is not None and bc:
        over = ml / bc - 1
        pover = paired("metrics+log", "cpu_us_per_req")
        pv = "" if pover is None else f"; paired {(pover - 1) * 100:+.1f}%"
        ok_ = over <= bar
        verdicts.append(f"- **{'bolt' if proto == 'bolt' else 'HTTP/1.1'}: metrics + access log cost "
                        f"{over * 100:+.1f}% CPU per request vs base{pv} ({ml - bc:+.3f} µs/req) — "
                        + (f"within the {bar * 100:.0f}% bar.**" if ok_ else
                           f"misses the {bar * 100:.0f}% bar by {(over - bar) * 100:.1f} points.**"))
if verdicts:
    print(f"### Verdict (bar: metrics + access logs at most {bar * 100:.0f}% more CPU per request than base)\n")
    print("\n".join(verdicts) + "\n")
bad = [r for r in runs if r.get("failed") or r.get("errors") or r.get("log_problem")]
if bad:
    print("**Failed runs (failed or with errors: left out of the tables):** " + "; ".join(
        f"{r['proto']} {r['variant']} round {r['round']}: "
        + (r.get("failed") or (f"{r['errors']} errors" if r.get("errors") else r.get("log_problem")))
        for r in bad) + "\n")
noise = lambda r: (r.get("other_on_proxy_core") or 0) + (r.get("stolen") or 0)
noisy = [r for r in ok if noise(r) > meta["noise"]]
if noisy:
    print(f"**Noisy runs (more than {meta['noise'] * 100:.0f}% of a core went to other processes or was "
          "stolen; rerun):** "
          + ", ".join(f"{r['proto']} {r['variant']} round {r['round']} ({pct(noise(r))})"
                      for r in noisy) + "\n")
print("CPU µs/req = ferrymesh's utime+stime (all threads, the log writer's included) over the measured window ÷ "
      "requests completed in it. × base = median ÷ base's median; paired × base = median over rounds of "
      "(this run ÷ base's run in the same round). Log B/req = the access log's growth over the window ÷ requests; "
      "log B/line = the file's size ÷ its lines (about equal when a line was written per request). "
      "ferrymesh core busy below ~100% means the load core was the bottleneck; CPU per request is still "
      "ferrymesh's own. \"Other on its core\" is CPU the rest of the machine took on ferrymesh's core during "
      "the window; \"stolen\" the larger of the two cores' steal time (the hypervisor running another VM): "
      "when either is high, rerun. \"Of which log writer\" is the access-log thread's share of the CPU "
      "per request (the rest of the log's cost is formatting on the worker).")
print("\n<details><summary>per-run results</summary>\n")
print("| proto | round | variant | req/s | CPU µs/req | core busy | load core busy | other on its core | stolen | log B/req |")
print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
for r in sorted(runs, key=lambda r: (r["proto"], r["round"])):
    if r.get("failed"):
        print(f"| {r['proto']} | {r['round']} | {r['variant']} | FAILED: {r['failed']} | | | | | | |")
        continue
    lb = r.get("log_bytes_per_req")
    print(f"| {r['proto']} | {r['round']} | {r['variant']} | {r['rps']:,.0f} | {r['cpu_us_per_req']:.3f} "
          f"| {pct(r['proxy_cpu_util'])} | {pct(r.get('load_core_util'))} | {pct(r.get('other_on_proxy_core'))} "
          f"| {pct(r.get('stolen'))} "
          f"| {'—' if lb is None else f'{lb:.0f}'} |")
print("\n</details>")
EOF
st=$?
set -e
cat "$OUT/summary.md"

log "raw results: $RUNS; table: $OUT/summary.md"
[ "$st" = 0 ] || { warn "the summary could not be computed (python exit $st)"; FAILED=1; }
if [ "$FAILED" != 0 ]; then
    warn "SOME RUNS FAILED OR SAW ERRORS (see above and $OUT)"
    exit 1
fi
