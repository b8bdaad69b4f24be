#!/usr/bin/env bash
# Runs the Dubbo example as MOSN's examples/codes/dubbo sets it up: a Dubbo
# consumer -> ferrymesh client side (127.0.0.1:2045) -> ferrymesh server side
# (127.0.0.1:2046) -> a Dubbo provider (127.0.0.1:20880). Consumer and
# provider are sofa-rpc-node with npm dubbo-remoting (hessian2). Everything is
# stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --bin ferrymesh
[ -d tests/interop/node_modules/dubbo-remoting ] || npm ci --prefix tests/interop --no-audit --no-fund --loglevel=error
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

node tests/interop/dubbo_server.js --port 20880 --name provider > /dev/null & pids+=($!)
target/release/ferrymesh start -c examples/dubbo/server_config.json --workers 1 & pids+=($!)
target/release/ferrymesh start -c examples/dubbo/client_config.json --workers 1 & pids+=($!)
for port in 20880 2046 2045; do
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
done

echo "--- three echo calls: consumer -> ferrymesh :2045 -> ferrymesh :2046 -> provider :20880"
node tests/interop/dubbo_client.js 127.0.0.1:2045 --count 3 --expect-server provider
echo "--- a service error travels back as the provider's Dubbo status 80"
node tests/interop/dubbo_client.js 127.0.0.1:2045 --method fail --expect-status 80
echo "--- a heartbeat is answered by ferrymesh (status 20)"
node tests/interop/dubbo_client.js 127.0.0.1:2045 --method heartbeat
sleep 0.3
echo "--- metrics of the client side: curl -s http://127.0.0.1:34911/stats/prometheus"
curl -s http://127.0.0.1:34911/stats/prometheus | grep -E '^ferrymesh_requests_total\{protocol="dubbo"\}|^ferrymesh_upstream_requests_total'
