//! What runs live: the counters the producer and workers bump, and the progress bar that reads them.
//!
//! Workers only bump atomics (and record a latency under a short lock); the progress bar reads the
//! counters ten times a second from its own task, so the hot path never touches the terminal.
//!
//! Every frame is drawn from one [`Snapshot`]: each counter is read once and every number on the
//! line derives from those reads, so a frame's counts always agree (done = delivered + failed +
//! skipped). The line is laid out by [`line`], a pure function tested for width: it fits in 80
//! columns (less on a narrower terminal) by dropping its least useful parts first.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::cause::Cause;
use crate::estimate::{Estimate, Estimator, Reading};
use crate::pacing::PaceStatus;

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
    /// producer ([`crate::estimate`] says how).
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

    /// Attempts without an answer so far, by cause key (SPEC §5 `errors`).
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
            auto: self.pace.is_auto(),
            pause,
        }
    }

    fn get(c: &AtomicU64) -> u64 {
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

    /// How many answers had each HTTP status so far, keyed by the status as text (SPEC §5).
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

/// The counters as one frame of the bar sees them: each read once.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    pub selected: u64,
    pub skipped: u64,
    pub delivered: u64,
    pub failed: u64,
    pub retrying: u64,
    pub attempts: u64,
    /// The source is read to the end.
    pub exhausted: bool,
    /// How much of the source has been read, when that can be told.
    pub fraction: Option<f64>,
    /// The pace requests are held to (requests per second), when there is one.
    pub rate: Option<f64>,
    /// `--rate auto` sets that pace.
    pub auto: bool,
    pub pause: Option<Pause>,
}

impl Snapshot {
    /// Events finished: delivered, failed, or delivered in an earlier run.
    pub fn done(&self) -> u64 {
        self.delivered + self.failed + self.skipped
    }
}

/// Why the pool is holding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pause {
    /// The receiver sent `Retry-After`; this much of it is left.
    RetryAfter(Duration),
    /// The receiver stopped answering as a whole, this long ago; one probe at a time until it is
    /// back.
    Outage(Duration),
}

/// The widest the line gets, whatever the terminal (SPEC §3: it fits in 80 columns).
pub const MAX_WIDTH: usize = 80;
/// A bar narrower than this says nothing: leave it out.
const BAR_MIN: usize = 10;
const BAR_MAX: usize = 30;
const GAP: &str = "  ";

/// One part of the line; `rank` 0 is the last to go when the line is too long.
struct Part {
    text: String,
    rank: u8,
    style: Option<console::Style>,
}

/// The progress line for one frame, at most `width` columns. `measured` is the request rate seen
/// over the last seconds, shown when requests are not paced. With `color`, parts are styled (the
/// caller decides: only on a terminal that wants colours).
pub fn line(s: &Snapshot, est: Option<Estimate>, measured: f64, width: usize, color: bool) -> String {
    let width = width.min(MAX_WIDTH);
    let done = s.done();
    let tilde = |exact: bool| if exact { "" } else { "~" };
    let mut parts = Vec::new();
    let mut add = |text: String, rank: u8, style: Option<console::Style>| parts.push(Part { text, rank, style });
    match est {
        Some(e) => {
            add(format!("{}/{}{}", HumanCount(done), tilde(e.exact), HumanCount(e.total)), 0, None);
            if let Some(pct) = done.min(e.total).saturating_mul(100).checked_div(e.total) {
                add(format!("{pct}%"), 9, None);
            }
            if let Some(eta) = e.eta {
                add(format!("ETA {}{}", tilde(e.exact), short_duration(eta)), 2, None);
            }
        }
        None => add(format!("{} done", HumanCount(done)), 0, None),
    }
    add(format!("delivered {}", HumanCount(s.delivered)), 5, None);
    if s.failed > 0 {
        add(format!("failed {}", HumanCount(s.failed)), 3, Some(console::Style::new().red()));
    } else {
        add("failed 0".to_owned(), 8, None);
    }
    if s.retrying > 0 {
        add(format!("retrying {}", HumanCount(s.retrying)), 4, Some(console::Style::new().yellow()));
    }
    if s.skipped > 0 {
        add(format!("skipped {}", HumanCount(s.skipped)), 7, None);
    }
    match s.pause {
        Some(Pause::RetryAfter(left)) => {
            // Rounded up: a pause still on never reads "0s".
            let left = Duration::from_secs(left.as_secs() + u64::from(left.subsec_nanos() > 0));
            add(format!("paused: Retry-After {}", short_duration(left)), 1, Some(console::Style::new().yellow()))
        }
        Some(Pause::Outage(d)) => {
            add(format!("paused: outage {}", short_duration(d)), 1, Some(console::Style::new().yellow()))
        }
        None => {
            let rate = rate_text(s.rate.unwrap_or(measured));
            add(if s.auto { format!("auto {rate}") } else { rate }, 3, None)
        }
    }
    // Drop the least useful parts until the rest fits.
    let fits = |parts: &[Part]| {
        let text: usize = parts.iter().map(|p| p.text.chars().count()).sum();
        text + GAP.len() * parts.len().saturating_sub(1) <= width
    };
    while !fits(&parts) && parts.len() > 1 {
        let worst = parts.iter().enumerate().max_by_key(|(i, p)| (p.rank, *i)).map_or(0, |(i, _)| i);
        parts.remove(worst);
    }
    let used: usize =
        parts.iter().map(|p| p.text.chars().count()).sum::<usize>() + GAP.len() * parts.len().saturating_sub(1);
    let mut out = String::new();
    // The bar takes the room that is left, when there is enough of it for a bar to mean something.
    if let Some(e) = est
        && e.total > 0
        && width.saturating_sub(used + GAP.len()) >= BAR_MIN
    {
        let cells = (width - used - GAP.len()).min(BAR_MAX);
        let filled = ((done.min(e.total) as f64 / e.total as f64) * cells as f64).floor() as usize;
        let (full, empty) = ("━".repeat(filled), "─".repeat(cells - filled));
        if color {
            out.push_str(&format!(
                "{}{}",
                console::Style::new().cyan().force_styling(true).apply_to(full),
                console::Style::new().blue().force_styling(true).apply_to(empty)
            ));
        } else {
            out.push_str(&full);
            out.push_str(&empty);
        }
        out.push_str(GAP);
    }
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(GAP);
        }
        match (&p.style, color) {
            (Some(style), true) => out.push_str(&style.clone().force_styling(true).apply_to(&p.text).to_string()),
            _ => out.push_str(&p.text),
        }
    }
    // A single part wider than the line (a huge count on a tiny terminal): cut it.
    if console::measure_text_width(&out) > width {
        return console::truncate_str(&console::strip_ansi_codes(&out), width, "").into_owned();
    }
    out
}

/// A rate for the line: `100 req/s`, `2.5 req/s`, `30 req/min`, `50 req/h`.
pub fn rate_text(per_sec: f64) -> String {
    let (n, unit) = if per_sec >= 1.0 || per_sec <= 0.0 {
        (per_sec.max(0.0), "s")
    } else if per_sec * 60.0 >= 1.0 {
        (per_sec * 60.0, "min")
    } else {
        (per_sec * 3600.0, "h")
    };
    if n < 10.0 && (n - n.round()).abs() >= 0.05 {
        format!("{n:.1} req/{unit}")
    } else {
        format!("{} req/{unit}", HumanCount(n.round() as u64))
    }
}

/// `41s`, `12m30s`, `3h05m`, `4d07h`: short enough for the line.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs() + u64::from(d.subsec_millis() >= 500);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
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
            *slot = Some(bar.clone());
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

    fn width(s: &str) -> usize {
        console::measure_text_width(s)
    }

    fn est(total: u64, exact: bool, eta_secs: Option<u64>) -> Option<Estimate> {
        Some(Estimate { total, exact, eta: eta_secs.map(Duration::from_secs) })
    }

    #[test]
    fn a_typical_frame_reads_at_a_glance() {
        let s = Snapshot { selected: 2000, delivered: 1696, failed: 51, rate: Some(100.0), ..Snapshot::default() };
        let l = line(&s, est(6000, false, Some(41)), 97.0, 79, false);
        assert!(l.contains("1,747/~6,000"), "{l}");
        assert!(l.contains("ETA ~41s") && l.contains("delivered 1,696") && l.contains("failed 51"), "{l}");
        assert!(l.contains("100 req/s"), "{l}");
        assert!(width(&l) <= 79, "{l}");
        // Exact once the source is read: no `~`.
        let l = line(&s, est(6000, true, Some(41)), 97.0, 79, false);
        assert!(l.contains("1,747/6,000") && l.contains("ETA 41s"), "{l}");
    }

    /// The frame the issue saw: `1,747 done` next to `delivered 1,696` with 0 failed. From one
    /// snapshot, done is delivered + failed + skipped, always.
    #[test]
    fn the_counts_on_a_frame_agree() {
        let s = Snapshot { delivered: 1696, failed: 0, skipped: 51, ..Snapshot::default() };
        let l = line(&s, None, 0.0, 200, false);
        assert!(l.starts_with("1,747 done") && l.contains("delivered 1,696") && l.contains("skipped 51"), "{l}");
    }

    #[test]
    fn a_paused_pool_says_why() {
        let s = Snapshot { pause: Some(Pause::RetryAfter(Duration::from_secs(12))), ..Snapshot::default() };
        assert!(line(&s, None, 0.0, 79, false).contains("paused: Retry-After 12s"));
        let s = Snapshot { pause: Some(Pause::Outage(Duration::from_secs(75))), retrying: 8, ..Snapshot::default() };
        assert!(line(&s, est(10, false, None), 0.0, 79, false).contains("paused: outage 1m15s"));
        let s = Snapshot { rate: Some(187.4), auto: true, ..Snapshot::default() };
        assert!(line(&s, None, 0.0, 79, false).contains("auto 187 req/s"));
        let s = Snapshot { pause: Some(Pause::RetryAfter(Duration::from_millis(200))), ..Snapshot::default() };
        assert!(line(&s, None, 0.0, 79, false).contains("paused: Retry-After 1s"));
    }

    /// Every frame fits, whatever the counts, and on narrow terminals too; colours do not count.
    #[test]
    fn no_frame_is_wider_than_the_line() {
        let big = 123_456_789_012u64;
        for n in [0, 7, 1_747, 99_999, 1_234_567, big] {
            for pause in [
                None,
                Some(Pause::Outage(Duration::from_secs(600))),
                Some(Pause::RetryAfter(Duration::from_secs(3600))),
            ] {
                let s = Snapshot {
                    selected: n,
                    skipped: n,
                    delivered: n,
                    failed: n,
                    retrying: n,
                    attempts: n,
                    rate: Some(12_345.0),
                    auto: true,
                    pause,
                    ..Snapshot::default()
                };
                for e in [None, est(n * 4, false, Some(n)), est(n * 4, true, Some(100 * 86_400))] {
                    for w in [20, 40, 79, 80, 200] {
                        for color in [false, true] {
                            let l = line(&s, e, 0.0, w, color);
                            assert!(width(&l) <= w.min(MAX_WIDTH), "{w}: {l}");
                            assert!(!l.contains('\n'));
                            if !color {
                                assert!(!l.contains('\u{1b}'), "{l}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn no_colour_codes_unless_asked() {
        let s = Snapshot { failed: 3, retrying: 2, ..Snapshot::default() };
        assert!(!line(&s, est(10, false, Some(5)), 0.0, 79, false).contains('\u{1b}'));
        assert!(line(&s, est(10, false, Some(5)), 0.0, 79, true).contains('\u{1b}'));
    }

    #[test]
    fn rates_and_durations_read_short() {
        assert_eq!(rate_text(100.0), "100 req/s");
        assert_eq!(rate_text(2.5), "2.5 req/s");
        assert_eq!(rate_text(1500.0), "1,500 req/s");
        assert_eq!(rate_text(0.5), "30 req/min");
        assert_eq!(rate_text(50.0 / 3600.0), "50 req/h");
        assert_eq!(rate_text(0.0), "0 req/s");
        assert_eq!(short_duration(Duration::from_millis(41_400)), "41s");
        assert_eq!(short_duration(Duration::from_secs(750)), "12m30s");
        assert_eq!(short_duration(Duration::from_secs(3 * 3600 + 300)), "3h05m");
        assert_eq!(short_duration(Duration::from_secs(4 * 86_400 + 7 * 3600)), "4d07h");
    }

    #[test]
    fn snapshot_reads_rate_pause_and_errors() {
        let c = Counters::default();
        c.pace.set_rate(Some(50.0 / 3600.0), false);
        assert!((c.snapshot().rate.unwrap() - 50.0 / 3600.0).abs() < 1e-3);
        c.pace.set_rate(None, false);
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
