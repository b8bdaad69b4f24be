#!/usr/bin/env bash
# Runs MOSN's TLS example set-up with ferrymesh: a bolt client -> ferrymesh
# "client" (plaintext listener 127.0.0.1:2045) -> mutual TLS -> ferrymesh
# "server" (TLS listener 127.0.0.1:2046, client certificates required and
# held to a SPIFFE id) -> a plaintext bolt upstream (127.0.0.1:8080).
# Certificates are made here with openssl in MOSN's shapes (a CA; leaves with
# an IP SAN of 127.0.0.1), plus SPIFFE ids. Everything is stopped by PID on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --bin ferrymesh --example bolt-echo --example bolt-client
T=target/release
C=examples/tls/certs
mkdir -p "$C"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/O=Acme Co/CN=example CA" \
    -keyout "$C/ca-key.pem" -out "$C/ca.pem" 2>/dev/null
for who in server client; do
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$who" \
        -keyout "$C/$who-key.pem" -out "$C/$who.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,URI:spiffe://ferrymesh.example/ns/default/sa/%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n' "$who" >"$C/$who.ext"
    openssl x509 -req -in "$C/$who.csr" -CA "$C/ca.pem" -CAkey "$C/ca-key.pem" -CAcreateserial -days 30 \
        -extfile "$C/$who.ext" -out "$C/$who.pem" 2>/dev/null
done
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

$T/examples/bolt-echo --listen 127.0.0.1:8080 --name upstream & pids+=($!)
$T/ferrymesh start -c examples/tls/server_config.json --workers 1 & pids+=($!)
$T/ferrymesh start -c examples/tls/client_config.json --workers 1 & pids+=($!)
for port in 8080 2046 2045; do
    for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
done

echo "--- bolt requests: client -> :2045 -> mutual TLS -> :2046 -> upstream :8080"
$T/examples/bolt-client --target 127.0.0.1:2045 --count 4
echo "--- the server side's certificate, as openssl s_client sees it on :2046 (without a client certificate it is refused)"
openssl s_client -connect 127.0.0.1:2046 -CAfile "$C/ca.pem" </dev/null 2>&1 | grep -E "^subject=|Verify return code" || true
sleep 0.3
echo "--- TLS metrics of both sides"
curl -s http://127.0.0.1:34901/stats/prometheus | grep -E '^ferrymesh_upstream_tls_'
curl -s http://127.0.0.1:34902/stats/prometheus | grep -E '^ferrymesh_downstream_tls_'
