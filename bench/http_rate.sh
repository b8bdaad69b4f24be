#!/usr/bin/env bash
# http_rate.sh: latency added by each proxy to HTTP/1.1 (or h2c, MODE=h2c)
# at a fixed request rate (a benchmark, not a test). The fixed-rate companion
# of bench/http.sh's full-load modes: `boltload --protocol http1 --rate R`
# sends keep-alive GETs of /small at R per second in total over CONNS
# connections on a fixed schedule (`--protocol h2c`: each GET a stream of an
# HTTP/2 connection, prior knowledge), and every latency counts from the
# request's due time (no coordinated omission). Same topology as http.sh: the nginx upstream and the
# load tool on LOAD_CPU, each proxy one worker on PROXY_CPU, targets
# alternating within each round. Prints each target's added p50/p99/p99.9
# over direct (medians over rounds), the ratio of its added p99 to the best
# peer's, and its CPU per request.
#
#   bash bench/install.sh && bash tests/http/install.sh   # once
#   bash bench/http_rate.sh          # builds with cargo first unless SKIP_BUILD=1
#
# Environment (defaults):
#   MODE=h1           or h2c (direct is then the upstream nginx's h2c port)
#   RATE=5000 CONNS=64 DURATION=8 WARMUP=1 ROUNDS=3
#   TARGETS="direct ferrymesh nginx haproxy"   (envoy too, if installed)
#   URL_PATH=/small BASE_PORT=23500 PROXY_CPU=0 LOAD_CPU=1
#   OUT=bench/results/http-rate-<timestamp>
# Exit status: 0, or 1 if a run failed or saw errors.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODE="${MODE:-h1}"
case $MODE in h1) PROTO=http1 ;; h2c) PROTO=h2c ;; *) echo "MODE: h1 or h2c" >&2; exit 2 ;; esac
RATE="${RATE:-5000}"
CONNS="${CONNS:-64}"
DURATION="${DURATION:-8}"
WARMUP="${WARMUP:-1}"
ROUNDS="${ROUNDS:-3}"
TARGETS="${TARGETS:-direct ferrymesh nginx haproxy}"
URL_PATH="${URL_PATH:-/small}"
BASE_PORT="${BASE_PORT:-23500}"
OUT="${OUT:-$BENCH_DIR/results/$MODE-rate-$(date +%Y%m%d-%H%M%S)}"

bench_init
if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release --bins"
    (cd "$ROOT" && cargo build --release --bins) || die "build failed"
fi
[ -x "$BOLTLOAD_BIN" ] || die "missing $BOLTLOAD_BIN (cargo build --release --bins)"
select_targets have_http_target
mkdir -p "$OUT/runs"
RUNS="$OUT/runs.jsonl"
: >"$RUNS"
FAILED=0

# run_one ROUND TARGET INDEX
run_one() {
    local round=$1 t=$2 idx=$3 dir="$OUT/runs/r$round-$t" up=$BASE_PORT port pid="" cpu0="" cpu1="" rc=0
    mkdir -p "$dir"
    start_http_upstream "$dir" "$up" "$([ "$MODE" = h2c ] && echo $((up + 1)))" ||
        { FAILED=1; unspawn "${UPSTREAM_PID:-}"; return; }
    if [ "$t" = direct ]; then
        port=$up
        [ "$MODE" = h2c ] && port=$((up + 1))
    else
        if ! start_http_proxy "$t" "$dir" "$((BASE_PORT + 10 + 2 * idx))" "$((BASE_PORT + 11 + 2 * idx))" "$up"; then
            FAILED=1; unspawn "${PROXY_PID:-}"; unspawn "$UPSTREAM_PID"; return
        fi
        pid=$PROXY_PID
        port=$PROXY_H1_PORT
        [ "$MODE" = h2c ] && port=$PROXY_H2C_PORT
    fi
    [ -n "$pid" ] && cpu0=$(cpu_ticks "$pid")
    spawn "$LOAD_CPU" "$dir/load.out" "$BOLTLOAD_BIN" --target "127.0.0.1:$port" --protocol "$PROTO" --path "$URL_PATH" \
        --rate "$RATE" --connections "$CONNS" --duration "$DURATION" --warmup "$WARMUP" --json
    wait "$SPAWN_PID" || rc=$?
    unspawn "$SPAWN_PID"
    [ -n "$pid" ] && [ -d "/proc/$pid" ] && cpu1=$(cpu_ticks "$pid")
    [ -n "$pid" ] && unspawn "$pid"
    unspawn "$UPSTREAM_PID"
    python3 - "$round" "$t" "$rc" "$dir/load.out" "$cpu0" "$cpu1" "$CLK_TCK" "$DURATION" "$WARMUP" >>"$RUNS" <<'EOF'
import json, sys
rnd, t, rc, outf, cpu0, cpu1, tck, dur, warm = sys.argv[1:]
lines = [l for l in open(outf, errors="replace") if l.startswith("{")]
r = {"round": int(rnd), "target": t, "exit": int(rc)}
if not lines:
    r["failed"] = "boltload printed no result"
else:
    r.update(json.loads(lines[-1]))
    if cpu0 and cpu1:
        # The proxy's CPU over warm-up and measured window, per request sent in both.
        sent = r["rate"] * (float(dur) + float(warm))
        r["cpu_us_per_req"] = (int(cpu1) - int(cpu0)) / int(tck) * 1e6 / sent
print(json.dumps(r))
EOF
    log "$t round $round: $(tail -1 "$RUNS")"
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(1 if r.get("failed") or r.get("errors") or r.get("mismatches") or r.get("exit") else 0)' "$(tail -1 "$RUNS")" ||
        { warn "$t round $round failed or saw errors; see $dir"; FAILED=1; }
}

log "$MODE at a fixed $RATE req/s over $CONNS connections: ${RUN_TARGETS[*]}; $ROUNDS rounds; results in $OUT"
run_rounds

python3 - "$RUNS" "$MODE" <<'EOF' | tee "$OUT/summary.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ok = [r for r in rows if not r.get("failed")]
by = {}
for r in ok:
    by.setdefault(r["target"], []).append(r)
med = lambda t, k: statistics.median(r[k] for r in by[t]) if t in by and all(r.get(k) is not None for r in by[t]) else None
if "direct" not in by:
    print("no direct run: nothing to subtract"); sys.exit(0)
d = {k: med("direct", k) for k in ("p50_us", "p99_us", "p999_us")}
print(f"## {'HTTP/1.1' if sys.argv[2] == 'h1' else 'h2c'} latency added at a fixed {ok[0]['rate']:,.0f} req/s (direct: p50 {d['p50_us']:.0f}, "
      f"p99 {d['p99_us']:.0f}, p99.9 {d['p999_us']:.0f} µs; medians of {len(by['direct'])} rounds)\n")
added = {t: {k: med(t, k) - d[k] for k in d} for t in by if t != "direct"}
peers = [t for t in added if t != "ferrymesh"]
best = min(peers, key=lambda t: added[t]["p99_us"]) if peers else None
print("| target | added p50 µs | added p99 µs | added p99.9 µs | added p99 vs best peer | CPU µs/req |")
print("|---|---:|---:|---:|---:|---:|")
for t, a in added.items():
    ratio = "best peer" if t == best else (f"{a['p99_us'] / added[best]['p99_us']:.2f}×" if best and added[best]['p99_us'] > 0 else "—")
    cpu = med(t, "cpu_us_per_req")
    print(f"| {t} | {a['p50_us']:+.0f} | {a['p99_us']:+.0f} | {a['p999_us']:+.0f} | {ratio} | {cpu:.1f} |" if cpu is not None
          else f"| {t} | {a['p50_us']:+.0f} | {a['p99_us']:+.0f} | {a['p999_us']:+.0f} | {ratio} | — |")
EOF
log "raw results: $RUNS"
exit "$FAILED"
