#!/usr/bin/env bash
# bench-adaptive.sh — how well does `--rate auto` find a receiver's capacity? (docs/pacing.md)
#
# Runs examples/bench_adaptive.rs: for each receiver — token buckets of C = 50, 300 and 2,000
# requests/s, quotas of 1,000 per 10 s and 400 per 2 s, 10 in flight × 20 ms, a latency knee at 300/s, and a
# capacity step 300 → 75 → 300 — it replays generated events through the real pipeline
# (--concurrency 32, ledger on, in-process) into the embedded receiver for S seconds (default 20),
# with --rate auto and, beside it, a fixed --rate of 1.25·C and 0.8·C.
#
# Reading the table: "goodput/C" = requests accepted from 5 s on until the run is stopped, over
# what the receiver could take in that time (the quota: over the whole run; target ≥ 0.90 for auto
# against the token buckets, the quota and max-in-flight); "rejected" = share of all requests
# answered 429/503 (target ≤ 3% for auto); "settled in" = when the rate sent first stays within
# [0.8·C, 1.05·C] for a whole second (for the step: from each step, the slower; target ≤ 5 s).
# It also draws docs/adaptive-step.svg (the capacity step). --trace prints each run per second.
# Run it on an otherwise idle machine: other load shows up as lower goodput for every column.
#
# Usage: scripts/bench-adaptive.sh [--secs S] [--steady S] [--svg PATH] [--only NAME] [--trace]
#        (~8 minutes with the defaults: 8 receivers × 3 runs × 20 s)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init
run_example bench_adaptive "$@"
