#!/usr/bin/env bash
# Runs client.py against server.py directly (no proxy). Exit status = client's.
set -euo pipefail
cd "$(dirname "$0")"
out=$(mktemp); trap 'kill -TERM $SP 2>/dev/null || true; wait $SP 2>/dev/null || true; rm -f "$out"' EXIT
python3 server.py --port 0 --name direct >"$out" & SP=$!
for _ in $(seq 100); do grep -q '^READY ' "$out" && break; sleep 0.1; done
PORT=$(awk '/^READY /{print $2}' "$out")
[ -n "$PORT" ] || { echo "server did not become ready" >&2; exit 1; }
python3 client.py "127.0.0.1:$PORT" --expect-server direct
