#!/usr/bin/env bash
# busy_poll_cost.sh: what ferrymesh's default `busy_poll` (250us, `awaiting`,
# on credit) costs and buys, against polling off (`busy_poll: 0s`), over bolt
# at fixed rates (a benchmark, not a test).
#
# For each case, "RATE" or "RATE:DELAY_MS", a fresh bolt-echo (answering after
# DELAY_MS, default 0) on LOAD_CPU and a fresh ferrymesh (one worker, admin on)
# on PROXY_CPU; boltload sends RATE calls a second over 64 connections for
# DURATION s. Per variant: ferrymesh's CPU per call (utime+stime over the
# measured window), p50/p99 from each call's due time, and the share of the
# window its polls spent finding nothing (ferrymesh_busy_poll_seconds_total),
# and its polls per call (ferrymesh_busy_polls_total).
# Variants alternate within a round; ROUNDS rounds.
#
#   CASES="1000 5000 10000 2000:5"   the default; "max": no rate, 64 x 8 in
#                                    flight as fast as answered
#   NOCREDIT_BIN=path                also run that binary (e.g. one built from
#                                    9bb04a4, before the credit) with
#                                    busy_poll 250us, mode awaiting
#   ROUNDS=1 DURATION=8 WARMUP=1 BASE_PORT=26200 SKIP_BUILD=1
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CASES="${CASES:-1000 5000 10000 2000:5}"
ROUNDS="${ROUNDS:-1}"
DURATION="${DURATION:-8}"
WARMUP="${WARMUP:-1}"
BASE_PORT="${BASE_PORT:-26200}"
OUT="$ROOT/bench/results/busy-poll-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
bench_init
[ -n "${SKIP_BUILD:-}" ] || build_release

variants="off default"
[ -n "${NOCREDIT_BIN:-}" ] && variants="$variants no-credit"

# poll_counters ADMIN_PORT: "seconds polled finding nothing, polls", from one
# scrape (0 for a build without the metric).
poll_counters() {
    curl -s "127.0.0.1:$1/stats/prometheus" | awk '
        $1 == "ferrymesh_busy_poll_seconds_total" { s = $2 }
        $1 == "ferrymesh_busy_polls_total" { p = $2 }
        END { print (s == "" ? 0 : s), (p == "" ? 0 : p) }'
}

run_one() { # VARIANT RATE DELAY ROUND CASE (RATE max: as fast as answered)
    local v=$1 rate=$2 delay=$3 round=$4 dir up lp ap bin fields t0 t1 json spun0 spun1 polls0 polls1
    dir="$OUT/r$round-$rate-$delay-$v"
    [ "$rate" = max ] && rate=""
    mkdir -p "$dir"
    up=$BASE_PORT lp=$((BASE_PORT + 1)) ap=$((BASE_PORT + 2))
    bin=$FERRYMESH_BIN
    case $v in
    off) fields='"busy_poll":"0s",' ;;
    default) fields='' ;;
    no-credit) fields='"busy_poll":"250us","busy_poll_mode":"awaiting",'; bin=$NOCREDIT_BIN ;;
    esac
    start_upstream "$dir" "$up" --delay-ms "$delay"
    local upid=$UPSTREAM_PID
    render "$CONF_DIR/ferrymesh.json.tmpl" "$dir/tmpl.json" LISTEN_PORT="$lp" UPSTREAM_PORT="$up" POLL_FIELDS="$fields" PROTOCOL=bolt
    python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); c["admin"]={"address":{"socket_address":{"address":"127.0.0.1","port_value":int(sys.argv[2])}}}; json.dump(c,open(sys.argv[3],"w"))' \
        "$dir/tmpl.json" "$ap" "$dir/ferrymesh.json"
    need_free_port "$lp"
    spawn "$PROXY_CPU" "$dir/ferrymesh.log" "$bin" start -c "$dir/ferrymesh.json" --workers 1
    local fpid=$SPAWN_PID
    wait_port "$lp" "$fpid" ferrymesh && wait_port "$ap" "$fpid" "ferrymesh admin"
    spawn "$LOAD_CPU" "$dir/boltload.out" "$BOLTLOAD_BIN" --target "127.0.0.1:$lp" --connections 64 --inflight 8 \
        --duration "$DURATION" --warmup "$WARMUP" --payload 128 ${rate:+--rate "$rate"} --json
    local lpid=$SPAWN_PID
    isleep "$WARMUP"
    t0=$(cpu_ticks "$fpid")
    read -r spun0 polls0 < <(poll_counters "$ap")
    isleep "$DURATION"
    t1=$(cpu_ticks "$fpid")
    read -r spun1 polls1 < <(poll_counters "$ap")
    wait "$lpid" || true
    json=$(grep '^{' "$dir/boltload.out" | tail -1 || true)
    unspawn "$fpid"
    unspawn "$upid"
    [ -n "$json" ] || { warn "$v $rate:$delay: boltload printed no result; see $dir"; return 0; }
    python3 - "$json" "$v" "${rate:-0}" "$delay" "$round" "$t0" "$t1" "${spun0:-0}" "${spun1:-0}" "$CLK_TCK" "$DURATION" "$5" "${polls0:-0}" "${polls1:-0}" <<'PY' | tee -a "$OUT/runs.jsonl"
import json, sys
d = json.loads(sys.argv[1])
v, rate, delay, rnd = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
t0, t1, s0, s1, tck, dur = int(sys.argv[6]), int(sys.argv[7]), float(sys.argv[8]), float(sys.argv[9]), int(sys.argv[10]), float(sys.argv[11])
req = max(d.get("requests", 0), 1)
rate = rate or round(d.get("rps", 0))
print(json.dumps({"round": rnd, "case": sys.argv[12], "variant": v, "rate": rate, "delay_ms": delay,
                  "cpu_us_per_call": round((t1 - t0) / tck * 1e6 / req, 2),
                  "polled_nothing_share": round((s1 - s0) / dur, 4),
                  "polls_per_call": round((float(sys.argv[14]) - float(sys.argv[13])) / req, 3),
                  "p50_us": d["p50_us"], "p99_us": d["p99_us"], "errors": d["errors"], "mismatches": d["mismatches"]}))
PY
}

log "results: $OUT"
for round in $(seq 1 "$ROUNDS"); do
    for c in $CASES; do
        rate=${c%%:*}
        delay=0
        [ "$c" != "$rate" ] && delay=${c#*:}
        for v in $variants; do run_one "$v" "$rate" "$delay" "$round" "$c"; done
    done
done

python3 - "$OUT/runs.jsonl" <<'PY' | tee "$OUT/summary.md"
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| case (calls/s[:upstream delay ms]) | variant | calls/s | CPU µs/call | p50 µs | p99 µs | time polled finding nothing | polls per call |")
print("|---|---|---:|---:|---:|---:|---:|---:|")
seen = []
for r in rows:
    k = (r["case"], r["variant"])
    if k not in seen:
        seen.append(k)
for k in seen:
    rs = [r for r in rows if (r["case"], r["variant"]) == k]
    med = lambda f: statistics.median(r[f] for r in rs)
    print(f"| {k[0]} | {k[1]} | {med('rate'):,.0f} | {med('cpu_us_per_call'):.2f} | {med('p50_us'):.0f} | {med('p99_us'):.0f} | {100 * med('polled_nothing_share'):.1f}% | {med('polls_per_call'):.2f} |")
PY
