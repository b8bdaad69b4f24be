#!/usr/bin/env bash
# http_syscalls.sh: syscalls and CPU per request of one proxy under the
# bench/http.sh load (not a test). Counts the proxy's syscalls by kind with
# `perf stat` tracepoints (they work in VMs without hardware counters), its
# page faults, and its user and system CPU from /proc, over one run, divided
# by the requests done.
# Upstream connects and closes per request show a pool that churns.
#
#   bash bench/http_syscalls.sh                     # ferrymesh, h2c, 5 s
#   TARGET=haproxy MODE=h1 SECS=10 bash bench/http_syscalls.sh
#   RECORD=1 MODE=h1 bash bench/http_syscalls.sh     # a perf record profile instead
#   RATE=5000 MODE=h2c bash bench/http_syscalls.sh   # at a fixed rate (boltload, 64 connections)
#
# Environment: TARGET=ferrymesh|nginx|haproxy|envoy  MODE=h1|h2c  SECS=5
#   BASE_PORT=23600  FERRYMESH_BIN (default target/release/ferrymesh; build it
#   first)  PROXY_CPU=0 LOAD_CPU=1. Load: wrk -c64 (h1) or h2load -c64 -m8
#   (h2c), GET /small, as in bench/http.sh. EXTRA_EVENTS: more perf stat
#   events (net:net_dev_queue counts packets sent). Needs perf (bash bench/install.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TARGET="${TARGET:-ferrymesh}"
MODE="${MODE:-h2c}"
SECS="${SECS:-5}"
BASE_PORT="${BASE_PORT:-23600}"
OUT="$(mktemp -d)"

bench_init
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
for c in perf taskset; do command -v "$c" >/dev/null || die "$c is required"; done
case $MODE in
h1) PROTO=http1; command -v wrk >/dev/null || die "wrk is required (bash tests/http/install.sh)" ;;
h2c) PROTO=h2c; command -v h2load >/dev/null || die "h2load is required (bash tests/http/install.sh)" ;;
*) die "unknown MODE $MODE (h1, h2c)" ;;
esac
[ "$TARGET" != ferrymesh ] || [ -x "$FERRYMESH_BIN" ] || die "no $FERRYMESH_BIN (cargo build --release)"

start_http_upstream "$OUT" "$BASE_PORT" "$((BASE_PORT + 1))" || die "upstream did not start"
start_http_proxy "$TARGET" "$OUT" "$((BASE_PORT + 10))" "$((BASE_PORT + 11))" "$BASE_PORT" || die "$TARGET did not start"
port=$PROXY_H1_PORT
[ "$MODE" = h2c ] && port=$PROXY_H2C_PORT
url="http://127.0.0.1:$port/small"

# load SECONDS OUTFILE: the load tool on LOAD_CPU.
load() {
    if [ -n "${RATE:-}" ]; then
        taskset -c "$LOAD_CPU" "$BOLTLOAD_BIN" --target "127.0.0.1:$port" --protocol "$PROTO" \
            --path /small --rate "$RATE" --connections 64 --duration "$1" --warmup 0 --json | tail -1 >"$2"
        return
    fi
    case $MODE in
    h1) taskset -c "$LOAD_CPU" wrk -t1 -c64 -d"$1s" "$url" >"$2" ;;
    h2c) taskset -c "$LOAD_CPU" h2load -t1 -c64 -m8 -D "$1" "$url" >"$2" ;;
    esac
}

kinds="read write readv writev recvfrom sendto recvmsg sendmsg epoll_wait epoll_pwait epoll_ctl connect accept4 close shutdown futex"
events="task-clock,raw_syscalls:sys_enter,context-switches,page-faults${EXTRA_EVENTS:+,$EXTRA_EVENTS}"
for k in $kinds; do events="$events,syscalls:sys_enter_$k"; done

load 2 "$OUT/warmup.txt"
pids=$(proc_tree "$PROXY_PID" | paste -sd,)
read -r u0 s0 < <(cpu_ticks_split "$PROXY_PID")
if [ -n "${RECORD:-}" ]; then
    # Samples instead of counts: read with perf report -i "$OUT/perf.data".
    perf record -F 4000 -g -p "$pids" -o "$OUT/perf.data" -- sleep "$SECS" >/dev/null 2>&1 &
else
    perf stat -e "$events" -p "$pids" -o "$OUT/perf.txt" -- sleep "$SECS" &
fi
perf_pid=$!
load "$SECS" "$OUT/load.txt"
wait "$perf_pid" || die "perf failed: $(tail -3 "$OUT/perf.txt" 2>/dev/null)"
[ -z "${RECORD:-}" ] || log "profile: perf report -i $OUT/perf.data --no-children --sort sym"
[ -f "$OUT/perf.txt" ] || : >"$OUT/perf.txt"
read -r u1 s1 < <(cpu_ticks_split "$PROXY_PID")

case ${RATE:+rate}$MODE in
rate*) requests=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["requests"])' "$OUT/load.txt") ;;
h1) requests=$(awk '/requests in/ {print $1}' "$OUT/load.txt") ;;
h2c) requests=$(awk '/^requests:/ {print $4}' "$OUT/load.txt") ;;
esac
[ -n "${requests:-}" ] && [ "$requests" -gt 0 ] || die "the load tool reported no requests: $(tail -3 "$OUT/load.txt")"

python3 - "$TARGET" "$MODE" "$requests" "$u0" "$s0" "$u1" "$s1" "$CLK_TCK" "$OUT/perf.txt" <<'EOF'
import re, sys
target, mode, reqs, u0, s0, u1, s1, tck, perf = sys.argv[1:]
reqs, tck = int(reqs), int(tck)
us = lambda a, b: (int(b) - int(a)) / tck * 1e6 / reqs
print(f"{target} {mode}: {reqs:,} requests; proxy CPU {us(u0, u1) + us(s0, s1):.2f} us/req "
      f"(user {us(u0, u1):.2f}, system {us(s0, s1):.2f})")
for line in open(perf):
    t = re.match(r"\s*([\d,.]+)\s+msec\s+task-clock", line)
    if t:
        ms = float(t.group(1).replace(",", ""))
        print(f"  task-clock (precise CPU)     {ms:>12,.1f} ms  {ms * 1000 / reqs:8.2f} us per request")
        continue
    m = re.match(r"\s*([\d,]+)\s+(\S+)", line)
    if m and m.group(2) != "seconds":
        n = int(m.group(1).replace(",", ""))
        if n:
            print(f"  {m.group(2).replace('syscalls:sys_enter_', ''):<28} {n:>12,}  {n / reqs:8.3f} per request")
EOF
