#!/usr/bin/env bash
# bolt_instructions.sh: user-space instructions per bolt call at a fixed,
# low rate, under callgrind (not a test; deterministic where CPU time is
# not). boltload --rate RATE over 64 connections through one ferrymesh
# worker to the bolt echo upstream; callgrind's counters are zeroed after a
# 2 s warm-up and dumped after SECS, and the worker thread's instructions
# are divided by the calls. At 1,000 calls a second each connection calls
# every 64 ms, so it keeps its phase (proxy::LINGER); at 100 calls a second
# (640 ms apart) it parks and resumes for every call.
#
#   RATE=1000 SECS=10 bash bench/bolt_instructions.sh
#   RATE=max SECS=10 bash bench/bolt_instructions.sh   # full load, 64 x 8
#   TARGET=nginx RATE=max bash bench/bolt_instructions.sh   # nginx stream's own
#   ROUTE=exact RATE=max bash bench/bolt_instructions.sh    # route by exact service
#
# Under callgrind a proxy runs tens of times slower, so "max" is a few
# thousand calls a second; both targets see that same load, which makes their
# counts comparable to each other (user space only: the kernel's share is not
# counted).
#
# Environment: TARGET=ferrymesh (or nginx) RATE=1000 SECS=10 FERRYMESH_BIN (default target/release/
# ferrymesh; build with cargo build --release --bins && cargo build --release --examples). Needs
# valgrind.
set -u
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RATE=${RATE:-1000}
TARGET=${TARGET:-ferrymesh}
# RATE=max: full load, INFLIGHT (8) pipelined calls per connection.
if [ "$RATE" = max ]; then PACE="--inflight ${INFLIGHT:-8}"; else PACE="--rate $RATE"; fi
SECS=${SECS:-10}
D=$(mktemp -d)
cd "$D" || exit 1
"$BOLT_ECHO_BIN" --listen 127.0.0.1:25200 >up.log 2>&1 &
U=$!
sleep 0.5
case $TARGET in
ferrymesh)
    render "$CONF_DIR/ferrymesh.json.tmpl" fm.json LISTEN_PORT=25201 UPSTREAM_PORT=25200 PROTOCOL=bolt POLL_FIELDS="$(BUSY_POLL=${BUSY_POLL:-0s} fm_poll_fields)"
    if [ "${ROUTE:-regex}" = exact ]; then
        # The usual RPC route: an exact service, as boltload sends it.
        sed -i 's/"value":".\*","regex":true/"value":"com.example.EchoService:1.0"/' fm.json
        grep -q EchoService fm.json || { echo "ROUTE=exact: the template's route changed" >&2; exit 2; }
    fi
    valgrind --tool=callgrind --callgrind-out-file="$D/cg.out" "$FERRYMESH_BIN" start -c fm.json --workers 1 2>vg.log &
    ;;
nginx)
    # One process (no master), so that callgrind's controls reach the worker.
    render "$CONF_DIR/nginx.conf.tmpl" nginx.conf STREAM_MODULE="$(nginx_stream_module)" RUN_DIR="$D" \
        LISTEN_PORT=25201 UPSTREAM_PORT=25200
    sed -i 's/^master_process on;/master_process off;/' nginx.conf
    valgrind --tool=callgrind --callgrind-out-file="$D/cg.out" nginx -p "$D" -c "$D/nginx.conf" -e "$D/nginx-error.log" 2>vg.log &
    ;;
*) echo "TARGET: ferrymesh or nginx" >&2; exit 2 ;;
esac
F=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/25201) 2>/dev/null && break; sleep 0.2; done
"$BOLTLOAD_BIN" --target 127.0.0.1:25201 $PACE --connections 64 --duration 2 --warmup 0 --json >/dev/null
callgrind_control -z $F >/dev/null 2>&1
"$BOLTLOAD_BIN" --target 127.0.0.1:25201 $PACE --connections 64 --duration "$SECS" --warmup 0 --json |
    grep '^{' | tail -1 >load.json
callgrind_control -d $F >/dev/null 2>&1
sleep 1
kill -INT $F
sleep 2
kill $F $U 2>/dev/null
wait 2>/dev/null
n=$(python3 -c "import json; print(json.load(open('load.json'))['requests'])")
read -r total f < <(for c in "$D"/cg.out*; do
    echo "$(grep -E "^(summary|totals):" "$c" | tail -1 | awk '{print $2}') $c"
done | sort -rn | head -1)
echo "$TARGET, bolt at $RATE calls/s: $n calls, $((total / n)) instructions per call  ($f)"
