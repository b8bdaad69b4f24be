#!/usr/bin/env bash
# bolt_ab.sh: two ferrymesh builds compared under the same full bolt load, in
# alternating pairs (not a test). For each run: the bolt echo upstream, one
# ferrymesh worker on PROXY_CPU, boltload (CONNS x INFLIGHT, pipelined) on
# LOAD_CPU; over a window in the middle of the load, `perf stat` counts the
# proxy's task clock and its syscalls by kind (tracepoints: they work in VMs
# without hardware counters), divided by the requests done. Pairs taken back
# to back cancel most of a shared machine's drift, which comparing two
# separate bench/bolt.sh runs does not.
#
#   cp target/release/ferrymesh /tmp/before   # build the change, then:
#   A=/tmp/before B=target/release/ferrymesh bash bench/bolt_ab.sh
#
# Environment: A, B (binaries; B defaults to target/release/ferrymesh)
#   PAIRS=3 CONNS=64 INFLIGHT=8 PAYLOAD=128 SECS=4 BASE_PORT=23700
#   PROXY_CPU=0 LOAD_CPU=1. Needs perf (bash bench/install.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

A="${A:?A=path of the first ferrymesh binary}"
B="${B:-$FERRYMESH_BIN}"
PAIRS="${PAIRS:-3}"
CONNS="${CONNS:-64}"
INFLIGHT="${INFLIGHT:-8}"
PAYLOAD="${PAYLOAD:-128}"
SECS="${SECS:-4}"
BASE_PORT="${BASE_PORT:-23700}"
OUT="$(mktemp -d)"

bench_init
for c in perf taskset python3; do command -v "$c" >/dev/null || die "$c is required"; done
for b in "$A" "$B" "$BOLT_ECHO_BIN" "$BOLTLOAD_BIN"; do
    [ -x "$b" ] || die "missing $b (cargo build --release --bins && cargo build --release --examples)"
done

# run_one LABEL BINARY: one run, one line of figures.
run_one() {
    local label=$1 bin=$2 dir="$OUT/$1" lp=$((BASE_PORT + 1))
    mkdir -p "$dir"
    start_upstream "$dir" "$BASE_PORT" || die "upstream did not start"
    FERRYMESH_BIN=$bin start_proxy ferrymesh "$dir" "$lp" "$BASE_PORT" || die "$label did not start"
    spawn "$LOAD_CPU" "$dir/load.out" "$BOLTLOAD_BIN" --target "127.0.0.1:$lp" --connections "$CONNS" \
        --inflight "$INFLIGHT" --duration $((SECS + 2)) --warmup 1 --payload "$PAYLOAD" --json
    local lpid=$SPAWN_PID
    isleep 2
    local t0 t1
    t0=$(awk '{print $14, $15}' "/proc/$PROXY_PID/stat")
    perf stat -x, -e 'task-clock,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_writev' \
        -p "$PROXY_PID" -- sleep "$SECS" 2>"$dir/perf.csv"
    t1=$(awk '{print $14, $15}' "/proc/$PROXY_PID/stat")
    echo "$t0 $t1" >"$dir/ticks"
    wait "$lpid" || true
    unspawn "$lpid"
    unspawn "$PROXY_PID"
    unspawn "$UPSTREAM_PID"
    python3 - "$label" "$dir/load.out" "$dir/perf.csv" "$SECS" "$dir/ticks" "$(getconf CLK_TCK)" <<'PY'
import json, sys
label, load, perf, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
u0, s0, u1, s1 = map(int, open(sys.argv[5]).read().split())
tck = int(sys.argv[6])
r = json.loads([l for l in open(load) if l.startswith("{")][-1])
n = r["rps"] * secs
figures = []
for line in open(perf):
    p = line.strip().split(",")
    if len(p) > 3 and p[0].replace(".", "").isdigit():
        name = p[2].replace("syscalls:sys_enter_", "")
        v = float(p[0]) / n
        figures.append(f"CPU {v * 1000:.2f} us/req" if name == "task-clock" else f"{name} {v:.3f}")
# User and system time from /proc over the same window (ticks: coarse, but
# the split shows which side a change moved).
figures.append(f"user {(u1 - u0) / tck / n * 1e6:.2f} sys {(s1 - s0) / tck / n * 1e6:.2f}")
print(f"{label}: {r['rps']:,.0f} req/s  " + "  ".join(figures) + f"  errors {r['errors']} mismatches {r['mismatches']}")
PY
}

log "A=$A B=$B; $PAIRS pairs of ${SECS}s; $CONNS conns x $INFLIGHT in flight, $PAYLOAD B"
for i in $(seq "$PAIRS"); do
    run_one A "$A"
    run_one B "$B"
done
