#!/usr/bin/env bash
# Runs the HTTP example: two Python HTTP upstreams, ferrymesh on 127.0.0.1:8080
# (HTTP/1.1 and h2c on one port), and curl requests through it. Stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --bin ferrymesh
command -v curl >/dev/null || { echo "needs curl (bash tests/http/install.sh)"; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for port in 8081 8082; do
  mkdir -p "$work/$port" && echo "hello from upstream $port" > "$work/$port/index.html"
  python3 -m http.server "$port" --bind 127.0.0.1 --directory "$work/$port" >/dev/null 2>&1 & pids+=($!)
done
target/release/ferrymesh start -c examples/http/ferrymesh.json --workers 1 & pids+=($!)
for port in 8081 8082 8080; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.05; done
done

set -x
curl -s http://127.0.0.1:8080/index.html
curl -s http://127.0.0.1:8080/index.html
curl -s -i http://127.0.0.1:8080/api/index.html
curl -s --http2-prior-knowledge -i http://127.0.0.1:8080/healthz
curl -s -i http://127.0.0.1:8080/old/page
curl -s -i http://127.0.0.1:8080/missing.html | head -1
set +x
echo "--- the admin server: curl -s http://127.0.0.1:34902/stats/prometheus; dashboard: http://127.0.0.1:34902/dashboard"
curl -s http://127.0.0.1:34902/stats/prometheus | grep -E '^ferrymesh_requests_total' || true
