#!/usr/bin/env bash
# idle_mem.sh: proxy memory per idle client connection (a benchmark, not a test).
#
# For each target: start the bolt echo upstream and the proxy (one worker,
# pinned like bolt.sh), warm it up with a short boltload run, record the
# proxy's VmRSS, then let bench/idle_conns.py open N connections to the proxy,
# send one bolt heartbeat on each and read its ack (ferrymesh answers it
# itself; the L4 proxies pass it to the echo upstream, which answers), and
# hold them all idle. VmRSS is sampled again and
#     (RSS_with - RSS_before) / N
# is the cost of one idle connection. ferrymesh's target is 600 bytes; the
# summary also gives each target's ratio to the leanest peer's.
#
#   bash bench/idle_mem.sh            # builds with cargo first unless SKIP_BUILD=1
#
# Environment (defaults):
#   IDLE_CONNS=10000   connections held through ferrymesh
#   TARGETS="ferrymesh nginx haproxy envoy"
#   BASELINE_CONNS     connections for the L4 proxies: they hold two fds per
#                      client (downstream + upstream), so with the 20000 fd
#                      hard limit here they get min(IDLE_CONNS, (limit-200)/2)
#   TARGET_BYTES=600   the per-connection budget reported against (issue 14's goal)
#   SETTLE=2           seconds to let RSS settle before each sample
#   SKIP_BUILD=0 BASE_PORT=23500 PROXY_CPU=0 LOAD_CPU=1
#   OUT=bench/results/idle-<timestamp>
# Exit status: 0, or 1 if a target failed to hold its connections.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

IDLE_CONNS="${IDLE_CONNS:-10000}"
TARGETS="${TARGETS:-ferrymesh nginx haproxy envoy}"
TARGET_BYTES="${TARGET_BYTES:-600}"
SETTLE="${SETTLE:-2}"
BASE_PORT="${BASE_PORT:-23500}"
OUT="${OUT:-$BENCH_DIR/results/idle-$(date +%Y%m%d-%H%M%S)}"

bench_init
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)
[ "$NOFILE" -ge $((IDLE_CONNS + 100)) ] ||
    die "open-file limit $NOFILE is too low for $IDLE_CONNS connections (ulimit -Hn is $(ulimit -Hn))"
BASELINE_CONNS="${BASELINE_CONNS:-$(( IDLE_CONNS < (NOFILE - 200) / 2 ? IDLE_CONNS : (NOFILE - 200) / 2 ))}"

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    log "cargo build --release --bins, then --examples"
    build_release || die "build failed"
fi
for b in "$BOLT_ECHO_BIN" "$BOLTLOAD_BIN"; do
    [ -x "$b" ] || die "missing $b (build with: cargo build --release --bins && cargo build --release --examples)"
done

RUN_TARGETS=()
for t in $TARGETS; do
    if why=$(have_target "$t"); then RUN_TARGETS+=("$t"); else warn "skipping $t: $why"; fi
done
[ "${#RUN_TARGETS[@]}" -gt 0 ] || die "nothing to run"

mkdir -p "$OUT"
RESULTS="$OUT/idle.jsonl"
: >"$RESULTS"
FAILED=0

# measure TARGET INDEX
measure() {
    local t=$1 idx=$2
    local dir="$OUT/$t" up=$BASE_PORT lp=$((BASE_PORT + idx)) n pid cpid rc=0
    local before with after held alive closed secs
    mkdir -p "$dir"
    n=$IDLE_CONNS
    [ "$t" = ferrymesh ] || n=$BASELINE_CONNS
    start_upstream "$dir" "$up" || { FAILED=1; unspawn "${UPSTREAM_PID:-}"; return; }
    if ! start_proxy "$t" "$dir" "$lp" "$up"; then
        FAILED=1; unspawn "${PROXY_PID:-}"; unspawn "$UPSTREAM_PID"; return
    fi
    pid=$PROXY_PID

    # Warm-up: real traffic, so pools, buffers and the allocator are primed.
    spawn "$LOAD_CPU" "$dir/warmup.out" "$BOLTLOAD_BIN" --target "127.0.0.1:$lp" --connections 4 \
        --inflight 4 --duration 1 --warmup 0 --payload 128 --json
    wait "$SPAWN_PID" || { warn "$t: warm-up failed: $(tail -1 "$dir/warmup.out")"; FAILED=1; }
    unspawn "$SPAWN_PID"
    isleep "$SETTLE"
    before=$(status_kb "$pid" VmRSS)

    rm -f "$dir/release"
    spawn "$LOAD_CPU" "$dir/idle_conns.out" python3 "$BENCH_DIR/idle_conns.py" --port "$lp" \
        --conns "$n" --release-file "$dir/release" --max-hold 600
    cpid=$SPAWN_PID
    if ! wait_line "$dir/idle_conns.out" '^(HELD|FAILED)' "$cpid" "idle_conns.py" 300 ||
        grep -q '^FAILED' "$dir/idle_conns.out"; then
        warn "$t: could not open $n connections: $(tail -3 "$dir/idle_conns.out")"
        FAILED=1
        touch "$dir/release"; unspawn "$cpid"; unspawn "$pid"; unspawn "$UPSTREAM_PID"
        echo "{\"target\":\"$t\",\"conns\":$n,\"failed\":true}" >>"$RESULTS"
        return
    fi
    read -r _ held secs < <(grep '^HELD' "$dir/idle_conns.out")
    isleep "$SETTLE"
    with=$(status_kb "$pid" VmRSS)
    touch "$dir/release"
    wait "$cpid" || rc=$?
    unspawn "$cpid"
    read -r _ alive _ closed < <(grep '^ALIVE' "$dir/idle_conns.out" || echo "ALIVE 0 CLOSED $n")
    if [ "$rc" != 0 ] || [ "$closed" != 0 ]; then
        warn "$t: $closed of $held connections were closed while idle (idle_conns exit $rc)"
        FAILED=1
    fi
    isleep "$SETTLE"
    after=$(status_kb "$pid" VmRSS)
    [ -d "/proc/$pid" ] || { warn "$t died"; FAILED=1; }
    unspawn "$pid"
    unspawn "$UPSTREAM_PID"
    python3 - "$t" "$held" "$secs" "$before" "$with" "$after" "$alive" "$closed" "$TARGET_BYTES" >>"$RESULTS" <<'EOF'
import json, sys
t, n, secs, before, with_, after, alive, closed, budget = sys.argv[1:]
n, before, with_, after = int(n), int(before), int(with_), int(after)
per = (with_ - before) * 1024 / n
print(json.dumps(dict(target=t, conns=n, open_s=float(secs), rss_before_kb=before, rss_with_kb=with_,
                      rss_after_close_kb=after, bytes_per_conn=round(per), alive=int(alive),
                      closed=int(closed), budget_bytes=int(budget))))
EOF
    log "$t: $held idle connections: RSS $before kB -> $with kB (after close: $after kB) = $(tail -1 "$RESULTS" | python3 -c 'import json,sys; print(json.load(sys.stdin)["bytes_per_conn"])') bytes/connection"
}

log "idle connection memory: ${RUN_TARGETS[*]}; ferrymesh $IDLE_CONNS connections, L4 baselines $BASELINE_CONNS; results: $OUT"
i=0
for t in "${RUN_TARGETS[@]}"; do
    i=$((i + 1))
    measure "$t" "$i"
done

python3 - "$RESULTS" "$TARGET_BYTES" <<'EOF' | tee "$OUT/summary.md"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
budget = int(sys.argv[2])
NAMES = {"ferrymesh": "ferrymesh (bolt L7)", "nginx": "nginx stream", "haproxy": "haproxy mode tcp",
         "envoy": "Envoy tcp_proxy"}
print("## Memory per idle connection\n")
print("Each client connection sends one bolt heartbeat, reads the ack, then stays idle. "
      "Bytes/connection = (proxy VmRSS with the connections held - VmRSS before) / connections; "
      "kernel socket memory is not included. L4 proxies hold an upstream connection per client too.\n")
print("| target | connections | RSS before MiB | RSS held MiB | bytes / idle conn | vs leanest peer | vs budget |")
print("|---|---:|---:|---:|---:|---:|---|")
peers = [r["bytes_per_conn"] for r in rows if r["target"] != "ferrymesh" and not r.get("failed")]
best = min(peers) if peers else None
def ratio(b):
    return f"{b / best:.2f}×" if best else "—"
for r in rows:
    if r.get("failed"):
        print(f"| {NAMES.get(r['target'], r['target'])} | {r['conns']} | FAILED | | | | |")
        continue
    b = r["bytes_per_conn"]
    verdict = ""
    if r["target"] == "ferrymesh":
        verdict = f"{'within' if b <= budget else 'OVER'} the {budget:,} B budget ({b / budget:.2f}×)"
    print(f"| {NAMES.get(r['target'], r['target'])} | {r['conns']:,} | {r['rss_before_kb'] / 1024:.1f} "
          f"| {r['rss_with_kb'] / 1024:.1f} | {b:,} | {ratio(b)} | {verdict} |")
EOF
log "raw results: $RESULTS"
if [ "$FAILED" != 0 ]; then
    warn "SOME MEASUREMENTS FAILED (see above and $OUT)"
    exit 1
fi
