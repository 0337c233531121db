#!/usr/bin/env bash
# bench-rate.sh — does `--rate R` hold, measured at the receiver? (The target: within 1% from 10
# to 5,000 requests/s, burst 1; docs/performance.md.)
#
# Runs examples/rate_probe.rs: for each rate R (default 10 100 1000 5000) and concurrency (default
# 32 and 8) it replays R × 3 s generated events (5 s below 50/s) through the real pipeline
# (`--burst 1`, ledger on, in-process) into the embedded receiver, which records arrival times.
#
# Reading the table: "achieved" = (n − 1) / (last arrival − first arrival); "error" is its distance
# from R (target |error| ≤ 1%); "max in any 1 s window" should be at most R + burst (1) + the
# limiter's ~2 ms of catch-up capacity (R + 3 at 1,000/s, R + 11 at 5,000/s). The last line says
# PASS/FAIL on the 1% target. Run it on an otherwise idle machine: the limiter absorbs only ~2 ms of
# late wake-ups, so CPU contention from other processes shows up as a lower achieved rate.
#
# Usage: scripts/bench-rate.sh [--secs S] [--concurrency 32,8] [RATE…]   (~45 s with the defaults)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_start
run_example rate_probe "$@"
