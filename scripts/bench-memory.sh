#!/usr/bin/env bash
# bench-memory.sh — memory stays flat: 1,000,000 events replayed at --rate 0 --concurrency 32 must
# keep savvy-replay's peak RSS under 64 MiB (a bounded channel, no list of events or ids).
#
# Generates N (default 1,000,000) small but realistic events (~500 bytes a line, shaped like
# shared/examples/event.json with one attendee) and replays them into the product's own receiver
# (`savvy-replay sink -q`) with the ledger on, under /usr/bin/time -v. While it runs, the resident
# set is sampled from /proc every 0.5 s, so the table also shows RSS after 10% / 50% / 100% of the
# run: flat means the figure does not grow with the number of events sent.
# STREAM=1 pipes the generator straight into `--input -` instead of writing a ~500 MB file first.
#
# Reading the result: "peak RSS" is /usr/bin/time's "Maximum resident set size" of savvy-replay
# alone (not the generator, not the receiver); the last line says PASS (< LIMIT_MIB, default 64) or
# FAIL, and the script exits 1 on FAIL.
#
# Usage: scripts/bench-memory.sh [N]   env: STREAM=0|1 LIMIT_MIB=64   (~1.5 min on 2 vCPU)
# All traffic goes to 127.0.0.1.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N="${1:-1000000}"
LIMIT_MIB="${LIMIT_MIB:-64}"

bench_start python curl time pgrep

port="$(free_port)"
url="http://127.0.0.1:$port/webhook"
if [[ "${STREAM:-0}" == 1 ]]; then
    input=-
else
    log "generating $N events (~$((N / 2000)) MB)"
    gen_events "$N" small "$BENCH_TMP/events.ndjson"
    input="$BENCH_TMP/events.ndjson"
fi
start_sink "$port" "$BENCH_TMP/sink.log"

log "replaying $N events into $url (rate 0, concurrency $CONCURRENCY, ledger on)"
run_cmd=("$BIN" run --input "$input" --webhook-url "$url" --rate 0 --concurrency "$CONCURRENCY"
    --ledger "$BENCH_TMP/ledger.db" -q --json)
if [[ "$input" == - ]]; then
    python3 "$SCRIPTS/gen-events.py" "$N" --size small |
        /usr/bin/time -v "${run_cmd[@]}" >"$BENCH_TMP/run.json" 2>"$BENCH_TMP/time.log" &
else
    /usr/bin/time -v "${run_cmd[@]}" >"$BENCH_TMP/run.json" 2>"$BENCH_TMP/time.log" &
fi
job=$!
bg_track "$job"
# $! is /usr/bin/time (the last command of the pipeline); savvy-replay is its child.
pid="$(child_pid "$job" || true)"
started="$(date +%s.%N)"
: >"$BENCH_TMP/rss.log"
if [[ -n "$pid" ]]; then
    (
        while kill -0 "$pid" 2>/dev/null; do
            rss="$(awk '/^VmRSS:/ {print $2}' /proc/"$pid"/status 2>/dev/null || true)"
            [[ -n "$rss" ]] && echo "$(date +%s.%N) $rss" >>"$BENCH_TMP/rss.log"
            sleep 0.5
        done
    ) &
    bg_track $!
fi
wait "$job" || {
    cat "$BENCH_TMP/time.log" >&2
    die "savvy-replay run failed"
}
bg_stop "$job"
bg_stop "$SINK_PID"

delivered="$(json_field "$BENCH_TMP/run.json" delivered)"
[[ "$delivered" == "$N" ]] || die "delivered $delivered of $N"
tput="$(json_field "$BENCH_TMP/run.json" throughput_per_sec)"
elapsed="$(json_field "$BENCH_TMP/run.json" elapsed_secs)"
# /usr/bin/time's maximum, or the largest /proc sample if that is higher.
peak="$(rss_kib "$BENCH_TMP/time.log")"
peak="$(awk -v p="$peak" '$2 > p {p = $2} END {print p}' "$BENCH_TMP/rss.log")"
at() { # RSS (KiB) of the last sample taken before FRACTION of the run
    awk -v s="$started" -v e="$elapsed" -v f="$1" '$1 - s <= f * e + 0.5 {r = $2} END {print (r == "" ? "-" : r)}' "$BENCH_TMP/rss.log"
}
mib() { awk -v k="$1" 'BEGIN { if (k == "-") print "-"; else printf "%.1f MiB", k / 1024 }'; }
verdict="$(awk -v k="$peak" -v l="$LIMIT_MIB" 'BEGIN { print (k / 1024 < l ? "PASS" : "FAIL") }')"

echo
echo "Memory, $N events (~500 B each), rate 0, concurrency $CONCURRENCY, ledger on ($(nproc) vCPU, input: $([[ $input == - ]] && echo stdin || echo file))"
echo
echo "| events | elapsed | req/s | RSS at 10% | RSS at 50% | RSS at end | peak RSS | limit | result |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---|"
printf '| %s | %s s | %.0f | %s | %s | %s | %s | %s MiB | %s |\n' "$N" "$elapsed" "$tput" "$(mib "$(at 0.1)")" \
    "$(mib "$(at 0.5)")" "$(mib "$(at 1.0)")" "$(mib "$peak")" "$LIMIT_MIB" "$verdict"
[[ "$verdict" == PASS ]]
