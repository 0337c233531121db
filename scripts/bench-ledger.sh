#!/usr/bin/env bash
# bench-ledger.sh — what the ledger (SQLite, WAL, one writer task, group commit) costs.
#
# N realistic events (default 100,000, ~1.9 KB each) are delivered to the product's own receiver
# (`savvy-replay sink -q`) at --rate 0 --concurrency 32 with the ledger on, under /usr/bin/time -v:
#   * throughput and peak RSS ("Maximum resident set size") of the run;
#   * CPU seconds of the whole process (the ledger writer runs on the runtime's thread, so its own
#     share is not sampled apart; docs/performance.md has it from other measurements);
#   * the ledger file's size, and a rerun of the same command (resume): everything is skipped,
#     nothing is sent — how long checking 100k ids against the ledger takes;
#   * the same with the ledger on tmpfs (/dev/shm), to show whether the disk matters;
#   * baseline: oha hitting the same receiver with the same number of same-size bodies — no
#     ledger, no JSON work at all (savvy-replay has no switch to turn its ledger off).
#
# Reading the table: on a 2-vCPU machine the client and the receiver share the cores, so CPU per
# request is what limits throughput. Peak RSS is the client's.
#
# Every row is the median (by req/s) of REPEAT runs (default 3).
#
# Usage: scripts/bench-ledger.sh [N]   env: REPEAT=3 CONCURRENCY=32 IDS=sequential|random   (~1 min on 2 vCPU)
# All traffic goes to 127.0.0.1.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N="${1:-100000}"
REPEAT="${REPEAT:-3}"

bench_start python curl time pgrep oha

log "generating $N events"
gen_events "$N" full "$BENCH_TMP/events.ndjson"
gen_envelope full "$BENCH_TMP/body.json"

# measure NAME LEDGER_PATH  — one replay with the sampler; fills R_* variables.
measure() {
    local name="$1" ledger="$2" port url tpid pid
    port="$(free_port)"
    url="http://127.0.0.1:$port/webhook"
    start_sink "$port" "$BENCH_TMP/sink.log"
    rm -f "$ledger" "$ledger"-* "$ledger".lock
    /usr/bin/time -v "$BIN" run --input "$BENCH_TMP/events.ndjson" --webhook-url "$url" --rate 0 \
        --concurrency "$CONCURRENCY" --ledger "$ledger" -q --json >"$BENCH_TMP/$name.json" 2>"$BENCH_TMP/$name.time" &
    tpid=$!
    bg_track "$tpid"
    pid="$(child_pid "$tpid")" || die "savvy-replay did not start"
    wait "$tpid" || {
        cat "$BENCH_TMP/$name.time" >&2
        die "savvy-replay run failed"
    }
    bg_stop "$tpid"
    R_DELIVERED="$(json_field "$BENCH_TMP/$name.json" delivered)"
    [[ "$R_DELIVERED" == "$N" ]] || die "$name: delivered $R_DELIVERED of $N"
    R_TPUT="$(json_field "$BENCH_TMP/$name.json" throughput_per_sec)"
    R_RSS="$(rss_kib "$BENCH_TMP/$name.time")"
    R_CPU="$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$BENCH_TMP/$name.time")"
    R_SIZE="$( (du -cb "$ledger" "$ledger"-wal 2>/dev/null || true) | tail -n 1 | cut -f1)"

    # Resume: the same command again skips all N (nothing is sent).
    /usr/bin/time -v "$BIN" run --input "$BENCH_TMP/events.ndjson" --webhook-url "$url" --rate 0 \
        --concurrency "$CONCURRENCY" --ledger "$ledger" -q --json >"$BENCH_TMP/$name.rerun.json" 2>"$BENCH_TMP/$name.rerun.time" ||
        die "$name: rerun failed"
    R_SKIPPED="$(json_field "$BENCH_TMP/$name.rerun.json" skipped)"
    R_RERUN="$(json_field "$BENCH_TMP/$name.rerun.json" elapsed_secs)"
    R_RERUN_RSS="$(rss_kib "$BENCH_TMP/$name.rerun.time")"
    [[ "$R_SKIPPED" == "$N" ]] || die "$name: rerun skipped $R_SKIPPED of $N"
    bg_stop "$SINK_PID"
    log "$name: $R_TPUT req/s, peak RSS $R_RSS KiB, CPU $R_CPU s rerun $R_RERUN s"
}

# The line of FILE with the median first field (whitespace-separated values, one run a line).
median_line() { sort -g -k1,1 "$1" | awk '{a[NR] = $0} END {print a[int((NR + 1) / 2)]}'; }

log "baseline: oha, no ledger"
: >"$BENCH_TMP/oha.runs"
for r in $(seq 1 "$REPEAT"); do
    port="$(free_port)"
    start_sink "$port" "$BENCH_TMP/sink.log"
    /usr/bin/time -v oha -n "$N" -c "$CONCURRENCY" -m POST -H 'content-type: application/json' -D "$BENCH_TMP/body.json" \
        --no-tui --output-format json "http://127.0.0.1:$port/webhook" >"$BENCH_TMP/oha.json" 2>"$BENCH_TMP/oha.time"
    bg_stop "$SINK_PID"
    rps="$(python3 -c 'import json, sys; print("%.0f" % json.load(open(sys.argv[1]))["summary"]["requestsPerSec"])' "$BENCH_TMP/oha.json")"
    cpu="$(awk -F': ' '/User time|System time/ {s += $2} END {printf "%.2f", s}' "$BENCH_TMP/oha.time")"
    echo "$rps $(rss_kib "$BENCH_TMP/oha.time") $cpu" >>"$BENCH_TMP/oha.runs"
    log "oha run $r/$REPEAT: $rps req/s"
done
read -r OHA_RPS OHA_RSS OHA_CPU <<<"$(median_line "$BENCH_TMP/oha.runs")"

# runs NAME LEDGER_PATH  — REPEAT measurements; prints the median one (by throughput).
runs() {
    local r
    : >"$BENCH_TMP/$1.runs"
    for r in $(seq 1 "$REPEAT"); do
        measure "$1" "$2"
        echo "$R_TPUT $R_RSS $R_CPU - $R_SIZE $R_RERUN $R_RERUN_RSS" >>"$BENCH_TMP/$1.runs"
    done
}

runs disk "$BENCH_TMP/ledger/ledger.db"
read -r -a D <<<"$(median_line "$BENCH_TMP/disk.runs")"
T=("-")
if [[ -d /dev/shm && -w /dev/shm ]]; then
    SHM="$(mktemp -d /dev/shm/savvy-bench.XXXXXX)"
    trap 'rm -rf "$SHM"; bench_cleanup' EXIT
    runs tmpfs "$SHM/ledger.db"
    read -r -a T <<<"$(median_line "$BENCH_TMP/tmpfs.runs")"
fi

mib() { awk -v k="$1" 'BEGIN { if (k == "-") print "-"; else printf "%.1f MiB", k / 1024 }'; }
mb() { awk -v b="$1" 'BEGIN { if (b == "-") print "-"; else printf "%.1f MB", b / 1e6 }'; }
us_per() { awk -v s="$1" -v n="$N" 'BEGIN { if (s == "-") print "-"; else printf "%.1f µs", 1e6 * s / n }'; }

echo
echo "Ledger cost, $N events (~1.9 KB), concurrency $CONCURRENCY, receiver: savvy-replay sink, median of $REPEAT ($(nproc) vCPU, client and receiver on the same machine)"
echo
echo "| client | req/s | peak RSS | client CPU / request | ledger size | rerun: $N skipped |"
echo "|---|---:|---:|---:|---:|---:|"
printf '| oha (no ledger, baseline) | %s | %s | %s | - | - |\n' "$OHA_RPS" "$(mib "$OHA_RSS")" "$(us_per "$OHA_CPU")"
printf '| savvy-replay, ledger on disk | %.0f | %s | %s | %s | %s s, %s |\n' "${D[0]}" "$(mib "${D[1]}")" \
    "$(us_per "${D[2]}")" "$(mb "${D[4]}")" "${D[5]}" "$(mib "${D[6]}")"
if [[ "${T[0]}" != "-" ]]; then
    printf '| savvy-replay, ledger on tmpfs | %.0f | %s | %s | %s | %s s, %s |\n' "${T[0]}" "$(mib "${T[1]}")" \
        "$(us_per "${T[2]}")" "$(mb "${T[4]}")" "${T[5]}" "$(mib "${T[6]}")"
fi
