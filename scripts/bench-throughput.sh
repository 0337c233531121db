#!/usr/bin/env bash
# bench-throughput.sh — raw delivery throughput of savvy-replay vs oha against the SAME local receiver.
#
# N realistic events (default 100,000, ~1.9 KB each, shaped like shared/examples/event.json) are
# generated as NDJSON; then, for each receiver — the product's own `savvy-replay sink -q` (hyper) and
# nginx (`return 200` after reading the body; skipped when nginx cannot be installed) — it runs:
#   oha:          oha -n N -c 32 -m POST -H 'content-type: application/json' -D body.json URL
#   savvy-replay: savvy-replay run --input events.ndjson --webhook-url URL --rate 0 --concurrency 32
#                   --ledger $TMP/ledger.db -q --json        (ledger ON, fresh ledger each time)
# body.json is one webhook envelope of the same size savvy-replay sends. Each receiver is restarted
# before each measurement; each pair is repeated REPEAT times (default 3) and the median is reported.
#
# Reading the table: requests/s of each client and savvy-replay/oha. oha is a bare load generator
# (no JSON parsing, no envelope, no ledger, no retries), so the ratio is the price of doing the real
# job; 1.00 would be "as fast as the wire". Everything (clients and receiver) shares the machine's
# cores, so absolute figures depend on the core count.
#
# Usage: scripts/bench-throughput.sh [N]     env: REPEAT=3 CONCURRENCY=32 NGINX=0 (skip nginx)
# Default run: ~1.5 min on 2 vCPU. All traffic goes to 127.0.0.1 and every load is a fixed count.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N="${1:-100000}"
REPEAT="${REPEAT:-3}"

bench_start python curl time oha
use_nginx=1
if [[ "${NGINX:-1}" == 0 ]] || ! need_nginx; then
    use_nginx=0
    log "nginx unavailable or disabled: measuring against the sink only"
fi

log "generating $N events"
gen_events "$N" full "$BENCH_TMP/events.ndjson"
gen_envelope full "$BENCH_TMP/body.json"
log "event line: $(head -c 100000 "$BENCH_TMP/events.ndjson" | head -n 1 | wc -c) bytes, webhook body: $(wc -c <"$BENCH_TMP/body.json") bytes"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

start_receiver() { # KIND PORT
    case "$1" in
    sink) start_sink "$2" "$BENCH_TMP/sink.log" && RECV_PID=$SINK_PID ;;
    nginx) start_nginx "$2" "$BENCH_TMP/nginx" && RECV_PID=$NGINX_PID ;;
    esac
}

receivers=(sink)
[[ $use_nginx == 1 ]] && receivers+=(nginx)
declare -A OHA SR
for kind in "${receivers[@]}"; do
    oha_runs=()
    sr_runs=()
    for r in $(seq 1 "$REPEAT"); do
        port="$(free_port)"
        url="http://127.0.0.1:$port/webhook"

        start_receiver "$kind" "$port"
        rps="$(oha_run "$N" "$CONCURRENCY" "$url" "$BENCH_TMP/body.json" "$BENCH_TMP/oha.json")"
        bg_stop "$RECV_PID"
        oha_runs+=("$rps")

        start_receiver "$kind" "$port"
        rm -f "$BENCH_TMP"/ledger.db*
        replay "$BENCH_TMP/events.ndjson" "$url" "$BENCH_TMP/ledger.db" "$BENCH_TMP/run.json" "$BENCH_TMP/time.log"
        bg_stop "$RECV_PID"
        delivered="$(json_field "$BENCH_TMP/run.json" delivered)"
        [[ "$delivered" == "$N" ]] || die "savvy-replay delivered $delivered of $N"
        tput="$(json_field "$BENCH_TMP/run.json" throughput_per_sec)"
        sr_runs+=("$tput")
        log "$kind run $r/$REPEAT: oha $rps req/s, savvy-replay $tput req/s ($(json_field "$BENCH_TMP/run.json" elapsed_secs) s)"
    done
    OHA[$kind]="$(printf '%s\n' "${oha_runs[@]}" | median)"
    SR[$kind]="$(printf '%s\n' "${sr_runs[@]}" | median)"
done

echo
echo "Throughput, $N events, concurrency $CONCURRENCY, ledger on, median of $REPEAT ($(nproc) vCPU; client and receiver on the same machine)"
echo
echo "| receiver | oha (req/s) | savvy-replay (req/s) | savvy-replay / oha |"
echo "|---|---:|---:|---:|"
for kind in "${receivers[@]}"; do
    label="$kind"
    [[ $kind == sink ]] && label="savvy-replay sink (hyper)"
    [[ $kind == nginx ]] && label="nginx $("$(command -v nginx || echo /usr/sbin/nginx)" -v 2>&1 | sed 's/.*nginx\///') (1 worker)"
    ratio="$(python3 -c 'import sys; print(f"{float(sys.argv[1]) / float(sys.argv[2]):.2f}")' "${SR[$kind]}" "${OHA[$kind]}")"
    printf '| %s | %.0f | %.0f | %s |\n' "$label" "${OHA[$kind]}" "${SR[$kind]}" "$ratio"
done
