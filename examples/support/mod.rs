//! What the in-process benchmarks (`bench_adaptive`, `bench_noise`) share: the run they time.

use std::path::Path;
use std::time::{Duration, Instant};

use savvy_replay::{RateMode, Resume, RunConfig, SourceConfig};
use tokio_util::sync::CancellationToken;

/// A benchmark's run from `input` into `url` at `rate`: `--concurrency 32`, a fresh ledger in
/// `dir`, quiet. Returns its configuration, the token that stops it `secs` from now (as Ctrl-C
/// would), and when that is.
pub fn timed_run(
    input: &Path,
    url: &str,
    dir: &Path,
    rate: RateMode,
    secs: f64,
) -> Result<(RunConfig, CancellationToken, Instant), Box<dyn std::error::Error>> {
    let cfg = RunConfig {
        concurrency: 32,
        rate,
        ledger: dir.join("ledger.db"),
        resume: Resume::Fresh,
        quiet: true,
        ..RunConfig::new(SourceConfig::File(input.to_owned()), url.parse()?)
    };
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let stopped = Instant::now() + Duration::from_secs_f64(secs);
    tokio::spawn(async move {
        tokio::time::sleep_until(stopped.into()).await;
        stop.cancel();
    });
    Ok((cfg, cancel, stopped))
}
