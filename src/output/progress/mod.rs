//! What runs live: the counters the producer and workers bump, and the progress bar that reads them.
//!
//! Workers only bump atomics (and record a latency under a short lock); the progress bar reads the
//! counters ten times a second from its own task, so the hot path never touches the terminal.
//!
//! Every frame is drawn from one [`Snapshot`] by [`line()`] (in `progress/line.rs`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::deliver::cause::Cause;
use crate::output::estimate::{Estimator, Reading};
use crate::pacing::PaceStatus;

mod line;
mod waiting;
pub use line::{MAX_WIDTH, Pause, Snapshot, line};
pub use waiting::Waiting;

/// Live counters of a run, shared by the producer, the workers and the progress bar.
pub struct Counters {
    /// Events read from the source, before selection.
    pub fetched: AtomicU64,
    /// Events selected (after filters), skipped ones included.
    pub selected: AtomicU64,
    /// Already delivered in an earlier run.
    pub skipped: AtomicU64,
    /// Repeats of an event id this run already had (sent once; not counted in `selected`).
    pub duplicates: AtomicU64,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    /// Events waiting for a retry right now.
    pub retrying: AtomicU64,
    /// Requests sent.
    pub attempts: AtomicU64,
    pub retries: AtomicU64,
    /// Events left undelivered because the run was interrupted while they were being tried.
    pub pending: AtomicU64,
    /// The source has been read to the end, so `selected` is the total.
    pub source_done: AtomicBool,
    /// How much of the source has been read, in millionths; 0 until that can be told. Set by the
    /// producer ([`crate::output::estimate`] says how).
    pub source_read_ppm: AtomicU64,
    status_codes: Box<[AtomicU64]>,
    /// Attempts without an HTTP answer, by [`Cause`] (indexed as `Cause::ALL`).
    errors: Box<[AtomicU64]>,
    latency_us: Mutex<Histogram<u64>>,
    /// The rate and the pool's pauses, as [`crate::pacing::Pacer`] sets them.
    pub pace: Arc<PaceStatus>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            fetched: AtomicU64::new(0),
            selected: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retrying: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            source_done: AtomicBool::new(false),
            source_read_ppm: AtomicU64::new(0),
            status_codes: (0..600).map(|_| AtomicU64::new(0)).collect(),
            errors: Cause::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            // 1 µs to 1 hour at 3 significant figures.
            latency_us: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid"),
            ),
            pace: Arc::new(PaceStatus::default()),
        }
    }
}

impl Counters {
    /// One request's answer (status `None`: no answer) and how long it took.
    pub fn record_attempt(&self, status: Option<u16>, latency: Duration) {
        self.attempts.fetch_add(1, Relaxed);
        if let Some(slot) = status.and_then(|s| self.status_codes.get(usize::from(s))) {
            slot.fetch_add(1, Relaxed);
        }
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX).max(1);
        if let Ok(mut h) = self.latency_us.lock() {
            h.saturating_record(us);
        }
    }

    /// One attempt that got no HTTP answer, by cause (recorded besides [`Counters::record_attempt`]).
    pub fn record_error(&self, cause: Cause) {
        if let Some(slot) = Cause::ALL.iter().position(|c| *c == cause).and_then(|i| self.errors.get(i)) {
            slot.fetch_add(1, Relaxed);
        }
    }

    /// Attempts without an answer so far, by cause key (the summary's `errors`).
    pub fn errors(&self) -> BTreeMap<String, u64> {
        Cause::ALL
            .iter()
            .zip(self.errors.iter())
            .filter_map(|(cause, n)| {
                let n = n.load(Relaxed);
                (n > 0).then(|| (cause.key().to_owned(), n))
            })
            .collect()
    }

    /// Every live number read once, for one frame of the progress bar.
    pub fn snapshot(&self) -> Snapshot {
        let pause = match self.pace.outage_for() {
            Some(d) => Some(Pause::Outage(d)),
            None => self.pace.paused_for().map(Pause::RetryAfter),
        };
        let ppm = Self::get(&self.source_read_ppm);
        Snapshot {
            selected: Self::get(&self.selected),
            skipped: Self::get(&self.skipped),
            delivered: Self::get(&self.delivered),
            failed: Self::get(&self.failed),
            retrying: Self::get(&self.retrying),
            attempts: Self::get(&self.attempts),
            exhausted: self.source_done.load(Relaxed),
            fraction: (ppm > 0).then(|| ppm as f64 / 1e6),
            rate: self.pace.rate(),
            mode: self.pace.mode(),
            pause,
        }
    }

    pub(crate) fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
    }

    /// Latency percentiles so far, in milliseconds (zeros before the first answer).
    pub fn latency(&self) -> Latency {
        match self.latency_us.lock() {
            Ok(h) if !h.is_empty() => Latency {
                p50: round(h.value_at_quantile(0.50) as f64 / 1000.0, 1),
                p90: round(h.value_at_quantile(0.90) as f64 / 1000.0, 1),
                p99: round(h.value_at_quantile(0.99) as f64 / 1000.0, 1),
                max: round(h.max() as f64 / 1000.0, 1),
            },
            _ => Latency::default(),
        }
    }

    /// How many answers had each HTTP status so far, keyed by the status as text (the summary's
    /// `status_codes`).
    pub fn status_codes(&self) -> BTreeMap<String, u64> {
        self.status_codes
            .iter()
            .enumerate()
            .filter_map(|(code, n)| {
                let n = n.load(Relaxed);
                (n > 0).then(|| (code.to_string(), n))
            })
            .collect()
    }
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

/// `x` rounded to `places` decimals, for the summary's figures.
pub fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

/// The bar currently on screen, so log lines can be printed around it instead of through it.
static ACTIVE_BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();

fn active_bar() -> &'static Mutex<Option<ProgressBar>> {
    ACTIVE_BAR.get_or_init(|| Mutex::new(None))
}

/// Write to stderr without tearing the progress bar (used by the log subscriber).
pub fn write_stderr(buf: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let bar = active_bar().lock().ok().and_then(|g| g.clone());
    match bar {
        Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf)),
        None => std::io::stderr().write_all(buf),
    }
}
/// The live progress bar on stderr; hidden when stderr is not a terminal or with `--quiet`.
pub struct Progress {
    bar: ProgressBar,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Progress {
    /// Start drawing `counters` ten times a second. `limit` is `--limit` (it caps the total).
    pub fn start(counters: Arc<Counters>, visible: bool, limit: Option<u64>) -> Progress {
        let target = if visible { ProgressDrawTarget::stderr_with_hz(10) } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(None, target);
        // The whole line is ours ([`line`]): one string per frame, so nothing on it can be drawn
        // from two different moments.
        bar.set_style(ProgressStyle::with_template("{msg}").unwrap_or_else(|_| ProgressStyle::default_bar()));
        if let Ok(mut slot) = active_bar().lock() {
            waiting::give_way();
            if let Some(spinner) = slot.replace(bar.clone()) {
                spinner.finish_and_clear();
            }
        }
        let task = (!bar.is_hidden()).then(|| {
            let bar = bar.clone();
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                let mut window = RateWindow::default();
                let mut estimator = Estimator::default();
                let color = console::colors_enabled_stderr();
                loop {
                    tick.tick().await;
                    let s = counters.snapshot();
                    let measured = window.observe(s.attempts);
                    let est = estimator.observe(Reading {
                        at: started.elapsed(),
                        done: s.done(),
                        selected: s.selected,
                        fraction: s.fraction,
                        exhausted: s.exhausted,
                        limit,
                        paced: s.rate,
                    });
                    let width = console::Term::stderr().size_checked().map_or(MAX_WIDTH, |(_, w)| usize::from(w));
                    // One column spare: a line that fills the last column makes some terminals wrap.
                    bar.set_message(line(&s, est, measured, width.saturating_sub(1).min(MAX_WIDTH), color));
                }
            })
        });
        Progress { bar, task }
    }

    pub fn finish(self) {
        if let Some(t) = self.task {
            t.abort();
        }
        self.bar.finish_and_clear();
        if let Ok(mut slot) = active_bar().lock() {
            *slot = None;
        }
    }
}

/// Requests per second over the last couple of seconds, for the progress bar.
#[derive(Default)]
struct RateWindow {
    samples: std::collections::VecDeque<(std::time::Instant, u64)>,
}

impl RateWindow {
    const SPAN: Duration = Duration::from_secs(2);

    fn observe(&mut self, total: u64) -> f64 {
        let now = std::time::Instant::now();
        self.samples.push_back((now, total));
        while self.samples.len() > 2 && self.samples.front().is_some_and(|(t, _)| now - *t > Self::SPAN) {
            self.samples.pop_front();
        }
        match (self.samples.front(), self.samples.back()) {
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => n1.saturating_sub(*n0) as f64 / (*t1 - *t0).as_secs_f64(),
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reads_rate_pause_and_errors() {
        let c = Counters::default();
        c.pace.set_rate(Some(50.0 / 3600.0), crate::pacing::RateMode::default());
        assert!((c.snapshot().rate.unwrap() - 50.0 / 3600.0).abs() < 1e-3);
        c.pace.set_rate(None, crate::pacing::RateMode::default());
        assert_eq!(c.snapshot().rate, None);
        c.pace.pause_for(Duration::from_secs(30));
        assert!(matches!(c.snapshot().pause, Some(Pause::RetryAfter(d)) if d > Duration::from_secs(20)));
        c.pace.outage(Some(Duration::from_secs(5)));
        assert!(matches!(c.snapshot().pause, Some(Pause::Outage(d)) if d >= Duration::from_secs(5)));
        c.record_error(Cause::Reset);
        c.record_error(Cause::Reset);
        c.record_error(Cause::Timeout);
        assert_eq!(c.errors(), BTreeMap::from([("connection reset".to_owned(), 2), ("timeout".to_owned(), 1)]));
    }
}
