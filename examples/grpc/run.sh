#!/usr/bin/env bash
# Runs the gRPC example: a Python grpcio server on 127.0.0.1:9091, ferrymesh on
# 127.0.0.1:9090, and the grpcio test client through it (unary, streaming both
# ways, a deadline, an error with trailing metadata), then one call that
# ferrymesh itself fails with DEADLINE_EXCEEDED (route timeout 300ms).
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --bin ferrymesh
python3 -c 'import grpc' 2>/dev/null || python3 -m pip install --quiet -r tests/grpc/requirements.txt
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
python3 tests/grpc/server.py --port 9091 --name example > /dev/null & pids+=($!)
target/release/ferrymesh start -c examples/grpc/ferrymesh.json --workers 1 & pids+=($!)
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/9090) 2>/dev/null && (exec 3<>/dev/tcp/127.0.0.1/9091) 2>/dev/null && break; sleep 0.1; done
python3 tests/grpc/client.py 127.0.0.1:9090 --expect-server example
python3 tests/grpc/client.py 127.0.0.1:9090 --expect-status 4 --from-peer --method /echo.Echo/Slow --request 2000 --timeout 5
set +x
echo "--- the admin server: curl -s http://127.0.0.1:34903/stats/prometheus; dashboard: http://127.0.0.1:34903/dashboard"
curl -s http://127.0.0.1:34903/stats/prometheus | grep -E '^ferrymesh_requests_total' || true
