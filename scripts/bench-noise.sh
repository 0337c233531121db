#!/usr/bin/env bash
# bench-noise.sh — is a background of random errors taken for congestion by `--rate auto`?
#
# Runs examples/bench_noise.rs: against a receiver with no limit that resets 2% of connections,
# then one that answers 2% with 502/503 (no Retry-After), it replays generated events through the
# real pipeline (--concurrency 32, ledger on, in-process, loopback) for S seconds with --rate 0
# and then with --rate auto, and prints each goodput from 5 s on, the events failed for good, and
# auto / unlimited. The target: at least 0.80, and 0 failed. Run it on an otherwise idle machine.
#
# Usage: scripts/bench-noise.sh [--secs S] [--steady S] [--noise F]    (~1 minute with the defaults)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_init
run_example bench_noise "$@"
