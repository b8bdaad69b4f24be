#!/usr/bin/env bash
# smuggle-through.sh [TARGET] [smuggling.py options...]: runs smuggling.py
# through TARGET (ferrymesh, nginx, haproxy, envoy; default ferrymesh) in
# front of the nginx test upstream, with the upstream's access log checked
# (--upstream-log), or against the nginx upstream itself (TARGET=direct: no
# log check, nginx logs what it rejects). Uses the benchmark's configs
# (bench/conf/http-*.tmpl) and helpers (bench/lib.sh), unpinned by default.
#
#   bash tests/http/smuggle-through.sh ferrymesh --summary
#   bash tests/http/smuggle-through.sh haproxy --only cl-te,te-cl -v
#
# Environment: BASE_PORT=24100 (upstream; proxy on +1, its h2c port +2),
# OUT=/tmp/smuggle-<target>-<timestamp> (configs, logs, results.jsonl),
# FERRYMESH_BIN=target/release/ferrymesh, PROXY_CPU / LOAD_CPU (default: all
# cores). Exit status: smuggling.py's (0 = every case ok), 1 if something
# did not start.
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../../bench" && pwd)/lib.sh"

TARGET=ferrymesh
if [ $# -gt 0 ] && [[ $1 != -* ]]; then TARGET=$1; shift; fi
BASE_PORT="${BASE_PORT:-24100}"
OUT="${OUT:-/tmp/smuggle-$TARGET-$(date +%Y%m%d-%H%M%S)}"
ALL_CPUS="0-$(($(nproc) - 1))"
PROXY_CPU="${PROXY_CPU:-$ALL_CPUS}"
LOAD_CPU="${LOAD_CPU:-$ALL_CPUS}"

bench_init
mkdir -p "$OUT"
if [ "$TARGET" != direct ]; then
    why=$(have_http_target "$TARGET") || die "$TARGET: $why"
fi

need_free_port "$BASE_PORT"
spawn "$LOAD_CPU" "$OUT/upstream.log" bash "$HTTP_TESTS_DIR/start-nginx.sh" "$BASE_PORT" "$OUT/upstream"
UPSTREAM_PID=$SPAWN_PID
wait_line "$OUT/upstream.log" '^READY ' "$UPSTREAM_PID" "nginx upstream" || die "upstream did not start"

args=()
if [ "$TARGET" = direct ]; then
    port=$BASE_PORT
else
    start_http_proxy "$TARGET" "$OUT" $((BASE_PORT + 1)) $((BASE_PORT + 2)) "$BASE_PORT" || die "$TARGET did not start"
    port=$PROXY_H1_PORT
    args+=(--upstream-log "$OUT/upstream/access.log")
fi
log "smuggling.py through $TARGET (127.0.0.1:$port); output in $OUT"
rc=0
python3 "$HTTP_TESTS_DIR/smuggling.py" "127.0.0.1:$port" "${args[@]}" "$@" | tee "$OUT/results.jsonl" || rc=${PIPESTATUS[0]}
log "upstream access log: $OUT/upstream/access.log"
exit "$rc"
