#!/usr/bin/env bash
# Installs what the HTTP tests and bench/http.sh need from Debian: curl, the
# nghttp2 client tools (h2load, nghttp), wrk, nginx (upstream + baseline),
# python3 (tests/http/smuggling.py). Idempotent: packages already present
# are left alone. bench/install.sh adds haproxy and Envoy for the benchmark.
#
#   bash tests/http/install.sh       # as root (or with sudo available)
set -euo pipefail
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/../../bench" && pwd)/lib.sh"

APT_PKGS=(curl nghttp2-client wrk nginx python3 procps util-linux)

apt_ensure "${APT_PKGS[@]}"
# A system nginx started by the package's postinst (if a service manager
# allowed it) stays on port 80; the tests run their own instances elsewhere.

echo "curl:   $(curl --version | head -1 | awk '{print $2}')"
echo "h2load: $(h2load --version 2>&1 | head -1)"
echo "nghttp: $(nghttp --version 2>&1 | head -1)"
echo "wrk:    $(wrk -v 2>&1 | head -1)"
echo "nginx:  $(nginx -v 2>&1 | sed 's/.*version: //')"
for c in curl h2load nghttp wrk nginx python3; do command -v "$c" >/dev/null || { echo "MISSING: $c"; exit 1; }; done
