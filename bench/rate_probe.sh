#!/usr/bin/env bash
# rate_probe.sh: where each proxy's time goes at a fixed request rate (not a
# test). For each target, the fixed-rate load of bench/bolt.sh (RATE=...) or
# bench/http_rate.sh runs while `perf trace -s` counts the proxy's syscalls
# by kind, printed per request; with RECORD=1, `perf record -g` samples it
# instead and the profile is left in OUT (read it with `perf report -i`).
# Same topology as the fixed-rate benches: each proxy one worker on
# PROXY_CPU, load tool and upstream on LOAD_CPU.
#
#   MODE=bolt bash bench/rate_probe.sh          # syscalls per call, each target
#   MODE=h1 RECORD=1 TARGETS=ferrymesh bash bench/rate_probe.sh
#   RATE=max INFLIGHT=8 RECORD=1 TARGETS=ferrymesh bash bench/rate_probe.sh  # full load
#
# Environment: MODE=bolt|h1|h2c  RATE=5000 (or max: pipelined, INFLIGHT=8 per
#   connection for bolt and h2c; per-request figures then use the load's req/s)  CONNS=64 SECS=4
#   TARGETS="ferrymesh nginx haproxy"  BASE_PORT=23800  RECORD=  OUT=(mktemp)
# Build first (cargo build --release --bins && cargo build --release --examples). Needs perf.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MODE="${MODE:-bolt}"
RATE="${RATE:-5000}"
CONNS="${CONNS:-64}"
SECS="${SECS:-4}"
TARGETS="${TARGETS:-ferrymesh nginx haproxy}"
BASE_PORT="${BASE_PORT:-23800}"
OUT="${OUT:-$(mktemp -d)}"
case $MODE in bolt) PROTO=bolt ;; h1) PROTO=http1 ;; h2c) PROTO=h2c ;; *) die "MODE: bolt, h1 or h2c" ;; esac

bench_init
command -v perf >/dev/null || die "perf is required (bash bench/install.sh)"
idx=0
for t in $TARGETS; do
    dir="$OUT/$t"
    mkdir -p "$dir"
    up=$BASE_PORT
    if [ "$MODE" = bolt ]; then
        start_upstream "$dir" "$up" || die "upstream did not start"
        start_proxy "$t" "$dir" "$((up + 1))" "$up" || die "$t did not start"
        port=$((up + 1))
        load=("$BOLTLOAD_BIN" --target "127.0.0.1:$port")
    else
        start_http_upstream "$dir" "$up" "$([ "$MODE" = h2c ] && echo $((up + 1)))" || die "upstream did not start"
        start_http_proxy "$t" "$dir" "$((up + 10 + 2 * idx))" "$((up + 11 + 2 * idx))" "$up" || die "$t did not start"
        port=$PROXY_H1_PORT
        [ "$MODE" = h2c ] && port=$PROXY_H2C_PORT
        load=("$BOLTLOAD_BIN" --target "127.0.0.1:$port" --protocol "$PROTO" --path /small)
    fi
    if [ "$RATE" = max ]; then
        pace=(--inflight "$([ "$MODE" = h1 ] && echo 1 || echo "${INFLIGHT:-8}")")
    else
        pace=(--rate "$RATE")
    fi
    spawn "$LOAD_CPU" "$dir/load.out" "${load[@]}" "${pace[@]}" --connections "$CONNS" \
        --duration $((SECS + 2)) --warmup 1 --json
    lpid=$SPAWN_PID
    isleep 1.5
    pids=$(proc_tree "$PROXY_PID" | paste -sd,)
    if [ -n "${RECORD:-}" ]; then
        perf record -F 10000 -g -p "$pids" -o "$dir/perf.data" -- sleep "$SECS" >/dev/null 2>&1 || true
    else
        perf trace -s -p "$pids" -o "$dir/trace.txt" -- sleep "$SECS" >/dev/null 2>&1 || true
    fi
    wait "$lpid" || true
    unspawn "$lpid"
    unspawn "$PROXY_PID"
    unspawn "$UPSTREAM_PID"
    echo "== $t ($MODE, $RATE req/s over $CONNS connections)"
    grep '^{' "$dir/load.out" | tail -1
    if [ -f "$dir/trace.txt" ]; then
        # perf trace -s: "syscall calls errors total min avg max stddev" rows.
        rps=$RATE
        [ "$RATE" = max ] && rps=$(grep '^{' "$dir/load.out" | tail -1 | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["rps"]))')
        awk -v n=$((rps * SECS)) '$1 ~ /^[a-z_0-9]+$/ && $2 ~ /^[0-9]+$/ && $2 > n / 100 {
            printf "  %-14s %6.3f per request (%d calls, %s ms)\n", $1, $2 / n, $2, $4 }' "$dir/trace.txt"
    else
        echo "  profile: perf report -i $dir/perf.data --no-children --sort dso,sym"
    fi
    idx=$((idx + 1))
done
