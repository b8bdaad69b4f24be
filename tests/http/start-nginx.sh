#!/usr/bin/env bash
# start-nginx.sh PORT DIR: runs a real nginx as the HTTP/1.1 test upstream on
# 127.0.0.1:PORT, in the foreground, with its config, pid file, logs and temp
# files under DIR (created if missing). See nginx-upstream.conf.tmpl for what
# it serves.
#
# The script becomes nginx (exec), a single process (master_process off), so
# the PID of this script is nginx's PID. Once nginx accepts connections it
# prints one line on stdout:
#
#   READY PORT PID
#
# Stop it by that PID (SIGTERM: fast shutdown; SIGQUIT: graceful; SIGKILL is
# safe too, there are no worker processes to orphan). If nginx does not
# listen within STARTUP_TIMEOUT seconds (default 10) it is killed and the
# script's exit status is nonzero; nothing READY is printed.
#
# Environment:
#   ACCESS_LOG=DIR/access.log   path of the access log, or "off" (the
#                               benchmark turns it off: it costs CPU)
#   H2C_PORT=                   also serve HTTP/2 cleartext (prior knowledge
#                               only) on 127.0.0.1:H2C_PORT; READY waits for it
#   KEEPALIVE_REQUESTS=100000000  requests per connection before nginx closes
#                               it (HTTP/2: with a GOAWAY)
#   NGINX_BIN=nginx
#   STARTUP_TIMEOUT=10
#
# Usage from a shell (stop it with kill $pid):
#   bash tests/http/start-nginx.sh 18080 /tmp/up >/tmp/up.out 2>&1 &
#   until grep -q '^READY' /tmp/up.out; do sleep 0.05; done
#   read -r _ port pid </tmp/up.out
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 PORT DIR" >&2
    exit 2
fi
PORT=$1
case $PORT in '' | *[!0-9]*) echo "start-nginx.sh: bad port '$PORT'" >&2; exit 2 ;; esac
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$2"
DIR="$(cd "$2" && pwd)"   # nginx wants absolute paths
NGINX_BIN="${NGINX_BIN:-nginx}"
STARTUP_TIMEOUT="${STARTUP_TIMEOUT:-10}"
ACCESS_LOG="${ACCESS_LOG:-$DIR/access.log}"
H2C_PORT="${H2C_PORT:-}"
KEEPALIVE_REQUESTS="${KEEPALIVE_REQUESTS:-100000000}"
case $KEEPALIVE_REQUESTS in '' | *[!0-9]*) echo "start-nginx.sh: bad KEEPALIVE_REQUESTS '$KEEPALIVE_REQUESTS'" >&2; exit 2 ;; esac
case $H2C_PORT in *[!0-9]*) echo "start-nginx.sh: bad H2C_PORT '$H2C_PORT'" >&2; exit 2 ;; esac
h2c_listen="# no H2C_PORT"
[ -n "$H2C_PORT" ] && h2c_listen="listen 127.0.0.1:$H2C_PORT http2 backlog=4096;"
if [ "$ACCESS_LOG" = off ]; then
    log_directive="off"
else
    log_directive="$ACCESS_LOG upstream"
fi

command -v "$NGINX_BIN" >/dev/null || { echo "start-nginx.sh: $NGINX_BIN not found (bash tests/http/install.sh)" >&2; exit 1; }
for p in $PORT $H2C_PORT; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
        echo "start-nginx.sh: 127.0.0.1:$p is already in use" >&2
        exit 1
    fi
done

mkdir -p "$DIR/client_body" "$DIR/proxy" "$DIR/fastcgi" "$DIR/uwsgi" "$DIR/scgi"
# /status/NNN: `return` wants a literal code, so one exact location per code.
# 3xx without a URL are sent without Location; 204 and 304 without a body.
{
    for code in $(seq 200 599); do
        case $code in
        204 | 304 | 301 | 302 | 303 | 307 | 308) echo "location = /status/$code { return $code; }" ;;
        *) echo "location = /status/$code { return $code \"status $code\\n\"; }" ;;
        esac
    done
} >"$DIR/status.conf"
# Placeholders are bare words; comment lines are left alone.
sed -e "/^[[:space:]]*#/!s|RUN_DIR|$DIR|g" \
    -e "/^[[:space:]]*#/!s|LISTEN_PORT|$PORT|g" \
    -e "/^[[:space:]]*#/!s|ACCESS_LOG|$log_directive|g" \
    -e "/^[[:space:]]*#/!s|H2C_LISTEN|$h2c_listen|g" \
    -e "/^[[:space:]]*#/!s|KEEPALIVE_REQUESTS|$KEEPALIVE_REQUESTS|g" \
    "$HERE/nginx-upstream.conf.tmpl" >"$DIR/nginx.conf"

# Watcher: after the exec below, $$ is nginx. Prints READY once the port
# accepts, gives up (and kills nginx) after STARTUP_TIMEOUT.
(
    pid=$$
    tries=$((STARTUP_TIMEOUT * 20))
    for _ in $(seq 1 "$tries"); do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "start-nginx.sh: nginx exited before listening on $PORT; see $DIR/error.log" >&2
            exit 1
        fi
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null &&
            { [ -z "$H2C_PORT" ] || (exec 3<>"/dev/tcp/127.0.0.1/$H2C_PORT") 2>/dev/null; }; then
            echo "READY $PORT $pid"
            exit 0
        fi
        sleep 0.05
    done
    echo "start-nginx.sh: nginx did not listen on 127.0.0.1:$PORT within ${STARTUP_TIMEOUT}s; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    exit 1
) &

exec "$NGINX_BIN" -p "$DIR/" -c "$DIR/nginx.conf" -e "$DIR/error.log"
