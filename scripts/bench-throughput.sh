#!/usr/bin/env bash
# bench-throughput.sh — savvy-replay against oha, alternating, against the SAME nginx.
#
# N realistic events (default 50,000, ~1.9 KB each, shaped like shared/examples/event.json) are
# generated as NDJSON. One nginx (1 worker, `return 200` after reading the body) is started once and
# serves every run. Then, REPEAT times (default 3), in turn:
#   oha:          oha -n N -c C -m POST -H 'content-type: application/json' -D body.json URL
#   savvy-replay: savvy-replay run --input events.ndjson --webhook-url URL --rate 0 --concurrency C
#                   --ledger $TMP/ledger.db -q --json        (ledger ON, a fresh ledger each time)
# body.json is one webhook envelope of the size savvy-replay sends. Each run is under
# /usr/bin/time, which gives its CPU time (user + sys, all threads).
#
# Reading the table (medians): requests/s as each client reports it, savvy-replay / oha, and CPU
# time per event (user + sys over N). oha is a bare load generator (no JSON, no envelope, no
# signature, no ledger), so the ratio is the price of doing the real job. Client and nginx share
# the machine's cores, so on a small machine the CPU per event decides the rate.
#
# Needs nginx, oha, python3, curl and /usr/bin/time; it installs nothing. On Debian/Ubuntu:
#   apt-get install nginx time curl python3 && cargo install --locked oha
# Usage: scripts/bench-throughput.sh [N]     env: REPEAT=3 CONCURRENCY=32 IDS=sequential|random
# (IDS=random: ids in no order, as SavvyCal's look; the ledger's writes then touch more pages)
# About 30 s on 2 vCPU. All traffic goes to 127.0.0.1 and every load is a fixed count.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N="${1:-50000}"
REPEAT="${REPEAT:-3}"

nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"
missing=()
[[ -x "$nginx_bin" ]] || missing+=(nginx)
have oha || missing+=(oha)
have python3 || missing+=(python3)
have curl || missing+=(curl)
[[ -x /usr/bin/time ]] || missing+=(/usr/bin/time)
((${#missing[@]} == 0)) ||
    die "missing: ${missing[*]}; install them first (apt-get install nginx time curl python3 && cargo install --locked oha)"

bench_init
build_release

log "generating $N events"
gen_events "$N" full "$BENCH_TMP/events.ndjson"
gen_envelope full "$BENCH_TMP/body.json"
log "event line: $(head -n 1 "$BENCH_TMP/events.ndjson" | wc -c) bytes, webhook body: $(wc -c <"$BENCH_TMP/body.json") bytes"

port="$(free_port)"
url="http://127.0.0.1:$port/webhook"
start_nginx "$port" "$BENCH_TMP/nginx" || die "nginx did not start (see $BENCH_TMP/nginx/logs)"

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# CPU µs per event from a `/usr/bin/time -f '%U %S'` line (the last line of FILE).
cpu_per_event() { tail -n 1 "$1" | awk -v n="$N" '{printf "%.1f", ($1 + $2) * 1e6 / n}'; }

oha_rps=() oha_cpu=() sr_rps=() sr_cpu=()
for r in $(seq 1 "$REPEAT"); do
    /usr/bin/time -f '%U %S' -o "$BENCH_TMP/oha.time" \
        oha -n "$N" -c "$CONCURRENCY" -m POST -H 'content-type: application/json' -D "$BENCH_TMP/body.json" \
        --no-tui --output-format json "$url" >"$BENCH_TMP/oha.json"
    rps="$(python3 - "$BENCH_TMP/oha.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
ok = sum(v for k, v in d.get("statusCodeDistribution", {}).items() if k.startswith("2"))
if ok == 0:
    sys.exit("oha: no 2xx answers: %r" % d.get("statusCodeDistribution"))
print("%.1f" % d["summary"]["requestsPerSec"])
EOF
)"
    oha_rps+=("$rps")
    oha_cpu+=("$(cpu_per_event "$BENCH_TMP/oha.time")")

    rm -f "$BENCH_TMP"/ledger.db*
    /usr/bin/time -f '%U %S' -o "$BENCH_TMP/sr.time" \
        "$BIN" run --input "$BENCH_TMP/events.ndjson" --webhook-url "$url" --rate 0 \
        --concurrency "$CONCURRENCY" --ledger "$BENCH_TMP/ledger.db" -q --json >"$BENCH_TMP/run.json" ||
        die "savvy-replay run failed"
    delivered="$(json_field "$BENCH_TMP/run.json" delivered)"
    [[ "$delivered" == "$N" ]] || die "savvy-replay delivered $delivered of $N"
    sr_rps+=("$(json_field "$BENCH_TMP/run.json" throughput_per_sec)")
    sr_cpu+=("$(cpu_per_event "$BENCH_TMP/sr.time")")
    log "round $r/$REPEAT: oha ${oha_rps[-1]} req/s (${oha_cpu[-1]} µs CPU/req), savvy-replay ${sr_rps[-1]} events/s (${sr_cpu[-1]} µs CPU/event)"
done

o="$(printf '%s\n' "${oha_rps[@]}" | median)"
s="$(printf '%s\n' "${sr_rps[@]}" | median)"
oc="$(printf '%s\n' "${oha_cpu[@]}" | median)"
sc="$(printf '%s\n' "${sr_cpu[@]}" | median)"
echo
echo "Throughput, $N events, concurrency $CONCURRENCY, ledger on, ${IDS:-sequential} ids, median of $REPEAT alternating rounds, one nginx $("$nginx_bin" -v 2>&1 | sed 's/.*nginx\///') worker ($(nproc) vCPU, load before: $(cut -d' ' -f1 /proc/loadavg))"
echo
echo "| client | req/s | CPU per event (user + sys) |"
echo "|---|---:|---:|"
printf '| oha | %.0f | %s µs |\n' "$o" "$oc"
printf '| savvy-replay | %.0f | %s µs |\n' "$s" "$sc"
python3 -c 'import sys; print(f"\nsavvy-replay / oha: {float(sys.argv[1]) / float(sys.argv[2]):.2f}x the rate, {float(sys.argv[3]) / float(sys.argv[4]):.2f}x the CPU per event")' "$s" "$o" "$sc" "$oc"
