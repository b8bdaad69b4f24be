#!/usr/bin/env bash
# Runs the bolt example: two echo upstreams, ferrymesh in front of them, and a
# client that sends a few requests and a heartbeat through it. Everything is
# stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --bin ferrymesh --example bolt-echo --example bolt-client
T=target/release
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

$T/examples/bolt-echo --listen 127.0.0.1:12200 --name echo-a & pids+=($!)
$T/examples/bolt-echo --listen 127.0.0.1:12201 --name echo-b & pids+=($!)
$T/ferrymesh start -c examples/bolt/ferrymesh.json --workers 1 & pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/2045) 2>/dev/null && break; sleep 0.05; done

echo "--- requests through ferrymesh (127.0.0.1:2045 -> echo-a / echo-b)"
$T/examples/bolt-client --target 127.0.0.1:2045 --count 4
echo "--- a service no route matches: bolt status 6 (NO_PROCESSOR), as MOSN answers"
$T/examples/bolt-client --target 127.0.0.1:2045 --service com.example.Unknown:1.0 --count 1
echo "--- the admin server (MOSN's admin block, 127.0.0.1:34901): metrics and the dashboard"
curl -s http://127.0.0.1:34901/stats/prometheus | grep -E '^ferrymesh_(upstream_requests_total|upstream_host_requests_total|requests_total\{protocol="bolt"\})'
curl -s http://127.0.0.1:34901/clusters | grep rq_total
echo "dashboard: http://127.0.0.1:34901/dashboard (KEEP=1 bash examples/bolt/run.sh keeps everything running; Ctrl-C stops)"
if [ "${KEEP:-0}" = 1 ]; then
  echo "--- sending a request every 100 ms; reload with: kill -HUP <ferrymesh pid> or curl -X POST http://127.0.0.1:34901/api/v1/reload"
  while true; do $T/examples/bolt-client --target 127.0.0.1:2045 --count 1 >/dev/null 2>&1 || true; sleep 0.1; done
fi
