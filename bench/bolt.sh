#!/usr/bin/env bash
# bolt.sh: bolt v1 (or Dubbo, PROTO=dubbo) throughput/latency/CPU/memory
# benchmark (not a test).
#
# Runs the project's load generator (boltload) against a bolt echo upstream
# directly, through ferrymesh, and through three L4 baselines (nginx stream,
# haproxy mode tcp, Envoy tcp_proxy). Every proxy gets ONE worker pinned to
# core PROXY_CPU (0); load generator and upstream are pinned to LOAD_CPU (1).
# Targets alternate within each round. For each target it reports the median
# over rounds of req/s, p50/p99 latency, proxy CPU per request (utime+stime of
# the proxy's process tree over the measured window) and peak RSS (VmHWM,
# summed over the process tree, e.g. nginx master + worker), each as a ratio
# to direct and to the best L4 baseline (highest median req/s).
#
#   bash bench/install.sh          # once: nginx, haproxy, envoy
#   bash bench/bolt.sh             # builds with cargo first unless SKIP_BUILD=1
#
# Environment (defaults):
#   PROTO=bolt        or dubbo: the same runs with Dubbo frames (boltload
#                     --protocol dubbo; bolt-echo answers Dubbo too; the L4
#                     baselines forward bytes whatever they are)
#   CONNS=64 INFLIGHT=8 PAYLOAD=128 DURATION=10 WARMUP=2 ROUNDS=3
#   RATE=             fixed-rate mode: requests per second in total, paced
#                     (boltload --rate; latency from each request's due time);
#                     the summary adds each proxy's p50/p99/p99.9 over direct's
#                     and the ratio of its added p99 to the best peer's
#   TARGETS="direct ferrymesh nginx haproxy envoy"
#   SKIP_BUILD=0      1: use the binaries already in target/release
#   REQUIRE_ALL=0     1: fail if a baseline is not installed (else skip it)
#   BASE_PORT=23400   upstream port; proxies listen on BASE_PORT+1..+5
#   PROXY_CPU=0 LOAD_CPU=1
#   OUT=bench/results/bolt-<timestamp>
#   BOLT_ECHO_BIN / BOLTLOAD_BIN / FERRYMESH_BIN / ENVOY_BIN: override binaries
#
# Raw results go to $OUT (runs.jsonl, per-run configs and logs, summary.md).
# Exit status: 0, or 1 if any run had errors/mismatches or failed to start.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNS="${CONNS:-64}"
INFLIGHT="${INFLIGHT:-8}"
PAYLOAD="${PAYLOAD:-128}"
DURATION="${DURATION:-10}"
WARMUP="${WARMUP:-2}"
ROUNDS="${ROUNDS:-3}"
TARGETS="${TARGETS:-direct ferrymesh nginx haproxy envoy}"
BASE_PORT="${BASE_PORT:-23400}"
PROTO="${PROTO:-bolt}"
RATE="${RATE:-}"
OUT="${OUT:-$BENCH_DIR/results/$PROTO-$(date +%Y%m%d-%H%M%S)}"

bench_init
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"

if [ "$(nproc)" -lt 2 ]; then
    warn "fewer than 2 cores: proxy and load generator will share a core"
fi
for c in taskset python3 ps; do command -v "$c" >/dev/null || die "$c is required"; done

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release --bins, then --examples"
    build_release || die "build failed"
fi
for b in "$BOLT_ECHO_BIN" "$BOLTLOAD_BIN"; do
    [ -x "$b" ] || die "missing $b (build with: cargo build --release --bins && cargo build --release --examples)"
done

# Which targets can run here.
select_targets have_target

mkdir -p "$OUT/runs"
RUNS="$OUT/runs.jsonl"
: >"$RUNS"

# Something else busy on the machine makes the numbers meaningless: sample
# how busy the CPUs are over one second before starting.
busy=$(awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat)
isleep 1
busy=$(awk -v b="$busy" '/^cpu / {split(b, a, " "); printf "%.0f", 100 * ($2+$3+$4+$7+$8 - a[1]) / ($2+$3+$4+$5+$6+$7+$8 - a[2])}' /proc/stat)
if [ "$busy" -gt 10 ]; then
    warn "the CPUs are ${busy}% busy before the benchmark starts (a build? tests?): numbers will be noisy"
fi

{
    echo "{"
    echo "  \"date\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\","
    echo "  \"host\": \"$(uname -srm)\","
    echo "  \"cpu\": \"$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)\","
    echo "  \"nproc\": $(nproc),"
    echo "  \"git\": \"$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null)$(cd "$ROOT" && git diff --quiet 2>/dev/null || echo -dirty)\","
    echo "  \"conns\": $CONNS, \"inflight\": $INFLIGHT, \"payload\": $PAYLOAD, \"rate\": ${RATE:-null},"
    echo "  \"duration\": $DURATION, \"warmup\": $WARMUP, \"rounds\": $ROUNDS,"
    echo "  \"proxy_cpu\": $PROXY_CPU, \"load_cpu\": $LOAD_CPU,"
    echo "  \"versions\": {"
    sep=""
    for t in "${RUN_TARGETS[@]}"; do
        [ "$t" = direct ] && continue
        printf '%s    "%s": "%s"' "$sep" "$t" "$(target_version "$t" | tr -d '"')"
        sep=$',\n'
    done
    printf '\n  }\n}\n'
} >"$OUT/meta.json"

now() { date +%s.%N; }
# sleep_until EPOCH_FLOAT
sleep_until() {
    local s
    s=$(awk -v t="$1" -v n="$(now)" 'BEGIN { d = t - n; printf "%.3f", (d > 0 ? d : 0) }')
    isleep "$s"
}

FAILED=0

# run_one ROUND TARGET INDEX
run_one() {
    local round=$1 t=$2 idx=$3
    local dir="$OUT/runs/r$round-$t" up=$BASE_PORT lp=$((BASE_PORT + idx)) port
    local pid="" lpid rc=0 t_start cpu0="" cpu1="" w0 w1 hwm="" rss="" threads="" json
    mkdir -p "$dir"
    if ! start_upstream "$dir" "$up"; then
        FAILED=1
        echo "{\"round\":$round,\"target\":\"$t\",\"failed\":\"upstream did not start\"}" >>"$RUNS"
        unspawn "${UPSTREAM_PID:-}"
        return
    fi
    if [ "$t" = direct ]; then
        port=$up
    else
        if ! start_proxy "$t" "$dir" "$lp" "$up"; then
            FAILED=1
            echo "{\"round\":$round,\"target\":\"$t\",\"failed\":\"proxy did not start\"}" >>"$RUNS"
            unspawn "${PROXY_PID:-}"
            unspawn "$UPSTREAM_PID"
            return
        fi
        pid=$PROXY_PID
        port=$lp
    fi

    t_start=$(now)
    spawn "$LOAD_CPU" "$dir/boltload.out" "$BOLTLOAD_BIN" --target "127.0.0.1:$port" \
        --connections "$CONNS" --inflight "$INFLIGHT" --duration "$DURATION" \
        --warmup "$WARMUP" --payload "$PAYLOAD" --protocol "${PROTO:-bolt}" ${RATE:+--rate "$RATE"} --json
    lpid=$SPAWN_PID
    # CPU of the proxy over boltload's measured window [warmup, warmup+duration].
    sleep_until "$(awk -v a="$t_start" -v b="$WARMUP" 'BEGIN { printf "%.6f", a + b }')"
    if [ -n "$pid" ]; then cpu0=$(cpu_ticks "$pid"); fi
    w0=$(now)
    sleep_until "$(awk -v a="$t_start" -v b="$WARMUP" -v c="$DURATION" 'BEGIN { printf "%.6f", a + b + c }')"
    if [ -n "$pid" ]; then
        cpu1=$(cpu_ticks "$pid")
        threads=$(awk '/^Threads:/ {print $2}' "/proc/$pid/status")
    fi
    w1=$(now)
    wait "$lpid" || rc=$?
    unspawn "$lpid"
    if [ -n "$pid" ]; then
        if [ -d "/proc/$pid" ]; then
            hwm=$(status_kb "$pid" VmHWM)
            rss=$(status_kb "$pid" VmRSS)
        else
            warn "$t (pid $pid) died during the run; see $dir"
            FAILED=1
        fi
        unspawn "$pid"
    fi
    unspawn "$UPSTREAM_PID"

    json=$(grep '^{' "$dir/boltload.out" | tail -1 || true)
    if [ -z "$json" ]; then
        warn "$t round $round: boltload printed no result (exit $rc); see $dir/boltload.out"
        tail -5 "$dir/boltload.out" >&2 || true
        FAILED=1
        echo "{\"round\":$round,\"target\":\"$t\",\"failed\":\"no boltload result\",\"exit\":$rc}" >>"$RUNS"
        return
    fi
    python3 - "$json" "$round" "$t" "$rc" "${cpu0:-}" "${cpu1:-}" "$w0" "$w1" "${hwm:-}" "${rss:-}" \
        "${threads:-}" "$CLK_TCK" >>"$RUNS" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
rnd, target, rc, cpu0, cpu1, w0, w1, hwm, rss, threads, tck = sys.argv[2:]
r.update(round=int(rnd), target=target, exit=int(rc), window_s=round(float(w1) - float(w0), 3))
if cpu0 and cpu1:
    cpu_s = (int(cpu1) - int(cpu0)) / int(tck)
    r["proxy_cpu_s"] = cpu_s
    r["proxy_cpu_util"] = round(cpu_s / (float(w1) - float(w0)), 3)
    r["cpu_us_per_req"] = cpu_s * 1e6 / r["requests"] if r["requests"] else None
if hwm:
    r["peak_rss_kb"] = int(hwm)
    r["end_rss_kb"] = int(rss)
if threads:
    r["threads"] = int(threads)
print(json.dumps(r))
EOF
    local last
    last=$(tail -1 "$RUNS")
    python3 - "$last" >&2 <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
cpu = rss = ""
if r.get("cpu_us_per_req") is not None:
    cpu = f"proxy CPU {r['cpu_us_per_req']:.2f} us/req ({r['proxy_cpu_util'] * 100:.0f}% of a core)"
if r.get("peak_rss_kb"):
    rss = f"peak RSS {r['peak_rss_kb'] / 1024:.1f} MiB"
print(f"  {r['target']:<10} round {r['round']}: {r['rps']:>10,.0f} req/s  p50 {r['p50_us']} us  p99 {r['p99_us']} us  {cpu}  {rss}")
EOF
    local e m
    read -r e m < <(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); print(r["errors"], r["mismatches"])' "$last")
    if [ "$e" != 0 ] || [ "$m" != 0 ]; then
        warn "$t round $round: $e ERRORS, $m MISMATCHES (boltload exit $rc); see $dir"
        FAILED=1
    elif [ "$rc" != 0 ]; then
        warn "$t round $round: boltload exited $rc; see $dir/boltload.out"
        FAILED=1
    fi
}

log "ferrymesh bolt benchmark: ${RUN_TARGETS[*]}; $ROUNDS rounds of ${WARMUP}s warmup + ${DURATION}s;" \
    "$CONNS conns x $INFLIGHT in flight, ${PAYLOAD} B payload; proxies on cpu $PROXY_CPU, load+upstream on cpu $LOAD_CPU"
log "results: $OUT"
run_rounds

python3 - "$OUT" "$PROTO" <<'EOF' | tee "$OUT/summary.md"
import json, statistics, sys

out = sys.argv[1]
proto = sys.argv[2]
meta = json.load(open(f"{out}/meta.json"))
runs = [json.loads(l) for l in open(f"{out}/runs.jsonl") if l.strip()]
order = []
for r in runs:
    if r["target"] not in order:
        order.append(r["target"])
L4 = ("nginx", "haproxy", "envoy")
NAMES = {"direct": "direct (no proxy)", "ferrymesh": f"ferrymesh ({proto} L7)",
         "nginx": "nginx stream", "haproxy": "haproxy mode tcp", "envoy": "Envoy tcp_proxy"}

def med(t, key):
    vals = [r[key] for r in runs if r["target"] == t and not r.get("failed") and r.get(key) is not None]
    return statistics.median(vals) if vals else None

stats = {t: {k: med(t, k) for k in ("rps", "p50_us", "p99_us", "p999_us", "cpu_us_per_req", "peak_rss_kb", "proxy_cpu_util")}
         for t in order}
best = max((t for t in order if t in L4 and stats[t]["rps"]), key=lambda t: stats[t]["rps"], default=None)
bad = [r for r in runs if r.get("failed") or r.get("errors") or r.get("mismatches") or r.get("exit")]

def ratio(v, ref):
    return f"{v / ref:.2f}" if v is not None and ref else "—"

def cell(t, key, fmt, vs_direct=True):
    v = stats[t][key]
    if v is None:
        return "—"
    s = fmt(v)
    if t == "direct" or (t == best and not vs_direct):
        return s
    d = ratio(v, stats.get("direct", {}).get(key)) if vs_direct else None
    b = ratio(v, stats[best][key]) if best and t != best else None
    parts = [x for x in (d and d != "—" and f"{d}× direct", b and b != "—" and f"{b}× {best}") if x]
    return f"{s} ({', '.join(parts)})" if parts else s

v = meta.get("versions", {})
print(f"## {proto} benchmark ({meta['date'][:10]})\n")
print(f"{meta['conns']} connections × {meta['inflight']} in flight, {meta['payload']} B payload, "
      f"median of {meta['rounds']} rounds of {meta['duration']} s (after {meta['warmup']} s warmup), "
      f"targets alternating. Each proxy runs one worker pinned to core {meta['proxy_cpu']}; "
      f"load generator (boltload) and bolt echo upstream share core {meta['load_cpu']}. "
      f"{meta['cpu']}, {meta['nproc']} cores, {meta['host']}. ferrymesh {meta['git']}; "
      + ", ".join(f"{x}" for k, x in v.items() if k != "ferrymesh") + ".\n")
print("| target | req/s | p50 µs | p99 µs | proxy CPU µs/req | proxy peak RSS MiB | proxy core busy |")
print("|---|---:|---:|---:|---:|---:|---:|")
for t in order:
    flag = " ⚠" if any(r["target"] == t for r in bad) else ""
    u = stats[t]["proxy_cpu_util"]
    busy = "—" if u is None else f"{u * 100:.0f}%"
    print(f"| {NAMES.get(t, t)}{' ★' if t == best else ''}{flag} | {cell(t, 'rps', lambda x: f'{x:,.0f}')} "
          f"| {cell(t, 'p50_us', lambda x: f'{x:.0f}')} | {cell(t, 'p99_us', lambda x: f'{x:.0f}')} "
          f"| {cell(t, 'cpu_us_per_req', lambda x: f'{x:.2f}', vs_direct=False)} "
          f"| {cell(t, 'peak_rss_kb', lambda x: f'{x / 1024:.1f}', vs_direct=False)} "
          f"| {busy} |")
print()
print("Ratios are this target's value divided by direct's and by the best L4 baseline's "
      f"(★ = highest median req/s of nginx/haproxy/envoy{': ' + best if best else ''}). "
      "Higher is better for req/s, lower for everything else. Proxy CPU is utime+stime of the proxy's "
      "processes over the measured window divided by the requests completed in it; peak RSS is VmHWM "
      "summed over the proxy's processes (nginx: master + worker); proxy core busy is that CPU time "
      "as a share of the measured window (below 100%: the proxy was not the bottleneck).")

def paired(key, a, b):
    """a's value over b's within each round (adjacent in time, so less of the
    machine's drift than a ratio of medians): median (min-max), or None."""
    by = {}
    for r in runs:
        if not r.get("failed") and r.get(key) is not None:
            by.setdefault(r["round"], {})[r["target"]] = r[key]
    rs = sorted(v[a] / v[b] for v in by.values() if v.get(a) is not None and v.get(b))
    return f"{statistics.median(rs):.2f}× ({rs[0]:.2f}–{rs[-1]:.2f}, {len(rs)} rounds)" if rs else None

pairs = [f"{t} {x}" for t in order if t in L4 for x in [paired("cpu_us_per_req", "ferrymesh", t)] if x]
if "ferrymesh" in order and pairs:
    print("\nferrymesh's CPU per request over each baseline's in the same round, median (range): "
          + "; ".join(pairs) + ".")
if meta.get("rate") and "direct" in stats:
    d = stats["direct"]
    added = {t: {k: (stats[t][k] - d[k]) if stats[t][k] is not None and d[k] is not None else None
                 for k in ("p50_us", "p99_us", "p999_us")} for t in order if t != "direct"}
    peers = [t for t in added if t in L4 and added[t]["p99_us"] is not None]
    bestp = min(peers, key=lambda t: added[t]["p99_us"], default=None)
    print(f"\n### Latency added at a fixed {meta['rate']:,} req/s (over direct: p50 {d['p50_us']:.0f}, "
          f"p99 {d['p99_us']:.0f}, p99.9 {d['p999_us'] or 0:.0f} µs)\n")
    print("| target | added p50 µs | added p99 µs | added p99.9 µs | added p99 vs best peer |")
    print("|---|---:|---:|---:|---:|")
    for t, a in added.items():
        r = (f"{a['p99_us'] / added[bestp]['p99_us']:.2f}×" if bestp and t != bestp and added[bestp]["p99_us"]
             else ("best peer" if t == bestp else "—"))
        f = lambda x: "—" if x is None else f"{x:+.0f}"
        print(f"| {NAMES.get(t, t)} | {f(a['p50_us'])} | {f(a['p99_us'])} | {f(a['p999_us'])} | {r} |")
    print("\nLatencies count from each request's due time (boltload --rate: paced sends, no "
          "coordinated omission); medians over rounds of each target's percentile.")
if bad:
    print("\n⚠ = some runs of this target failed or saw errors/mismatches (see below).")
print("\n<details><summary>per-round results</summary>\n")
print("| round | target | req/s | p50 µs | p99 µs | CPU µs/req | core util | peak RSS KiB | errors | mismatches |")
print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in runs:
    if r.get("failed"):
        print(f"| {r['round']} | {r['target']} | FAILED: {r['failed']} | | | | | | | |")
        continue
    c = r.get("cpu_us_per_req")
    u = r.get("proxy_cpu_util")
    print(f"| {r['round']} | {r['target']} | {r['rps']:,.0f} | {r['p50_us']} | {r['p99_us']} | "
          f"{f'{c:.2f}' if c is not None else '—'} | {f'{u * 100:.0f}%' if u is not None else '—'} | "
          f"{r.get('peak_rss_kb', '—')} | {r['errors']} | {r['mismatches']} |")
print("\n</details>")
if bad:
    print("\n**WARNING: some runs failed or saw errors/mismatches:** "
          + "; ".join(f"{r['target']} round {r['round']}: " + (r.get("failed") or
                      f"{r.get('errors')} errors, {r.get('mismatches')} mismatches, exit {r.get('exit')}")
                      for r in bad))
EOF

log "raw results: $OUT/runs.jsonl; table: $OUT/summary.md"
if [ "$FAILED" != 0 ]; then
    warn "SOME RUNS FAILED OR SAW ERRORS/MISMATCHES (see above and $OUT)"
    exit 1
fi
