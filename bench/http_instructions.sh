#!/usr/bin/env bash
# Instructions per request through ferrymesh, counted by callgrind over a
# fixed number of requests (deterministic, unlike req/s here): HTTP/1.1
# (MODE=h1, the default) or h2c (MODE=h2c: 8 connections x 8 streams), both to
# an HTTP/1.1 nginx upstream.
# With RATE set, the requests come at that fixed rate instead (boltload
# --rate over 64 connections for SECS seconds), where each one pays the
# wake-ups a busy proxy shares out over many.
# Needs valgrind (bash bench/install.sh), nginx and h2load (bash
# tests/http/install.sh). Usage:
#   cargo build --release && bash bench/http_instructions.sh   [N=20000 MODE=h1]
#   RATE=1000 SECS=8 MODE=h2c bash bench/http_instructions.sh
#   CONNS=64 N=40000 MODE=h2c bash bench/http_instructions.sh   # bench/http.sh's
#     64 connections x 8 streams (default CONNS=8: 8 x 8, or 8 for HTTP/1.1)
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-20000}
MODE=${MODE:-h1}
RATE=${RATE:-}
SECS=${SECS:-8}
CONNS=${CONNS:-8}
case $MODE in h1) LOAD=(--h1 -c "$CONNS") PROTO=http1 ;; h2c) LOAD=(-c "$CONNS" -m 8) PROTO=h2c ;; *) echo "MODE: h1 or h2c" >&2; exit 2 ;; esac
BOLTLOAD=${BOLTLOAD_BIN:-$ROOT/target/release/boltload}
if [ -n "$RATE" ]; then N=$((RATE * SECS)); fi
measure() {
    if [ -n "$RATE" ]; then
        "$BOLTLOAD" --target 127.0.0.1:25101 --protocol $PROTO --path /small --rate "$RATE" --connections 64 \
            --duration "$1" --warmup 0 --json | tail -1
    else
        h2load "${LOAD[@]}" -n "$2" http://127.0.0.1:25101/small | grep -E "succeeded"
    fi
}
D=$(mktemp -d); cd $D
sed -e 's/LISTEN_PORT/25101/; s/UPSTREAM_PORT/25100/; s/POLL_FIELDS/"busy_poll":"0s",/' "$ROOT/bench/conf/http-ferrymesh.json.tmpl" > fm.json
ACCESS_LOG=off bash "$ROOT/tests/http/start-nginx.sh" 25100 $D/up > up.out 2>&1 &
sleep 1
valgrind --tool=callgrind --callgrind-out-file=$D/cg.out "${FERRYMESH_BIN:-$ROOT/target/release/ferrymesh}" start -c fm.json --workers 1 2>vg.log & F=$!
for _ in $(seq 100); do curl -s -o /dev/null http://127.0.0.1:25101/small && break; sleep 0.2; done
measure 1 200 > /dev/null 2>&1
callgrind_control -z $F >/dev/null 2>&1
measure "$SECS" "$N"
callgrind_control -d $F >/dev/null 2>&1
sleep 1
kill -INT $F; sleep 2; kill $F 2>/dev/null
read -r _ _ npid < up.out; kill $npid 2>/dev/null; wait 2>/dev/null
# The dump with the most instructions is the one of the measured requests
# (the one written at exit holds only the shutdown).
read -r total f < <(for c in $D/cg.out*; do
    echo "$(grep -E "^(summary|totals):" "$c" | tail -1 | awk '{print $2}') $c"
done | sort -rn | head -1)
echo "$MODE${RATE:+ at $RATE/s} instructions/request: $((total / N))  ($f)"
