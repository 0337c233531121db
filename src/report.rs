//! What the user sees: live counters and the progress bar while running, the summary at the end.
//!
//! Workers only bump atomics (and record a latency under a short lock); the progress bar reads the
//! counters ten times a second from its own task, so the hot path never touches the terminal.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

use crate::error::{RunError, exit};
use crate::source::SourceError;

/// Live counters of a run, shared by the producer, the workers and the progress bar.
pub struct Counters {
    /// Events read from the source, before selection.
    pub fetched: AtomicU64,
    /// Events selected (after filters), skipped ones included.
    pub selected: AtomicU64,
    /// Already delivered in an earlier run.
    pub skipped: AtomicU64,
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
    status_codes: Box<[AtomicU64]>,
    latency_us: Mutex<Histogram<u64>>,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            fetched: AtomicU64::new(0),
            selected: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retrying: AtomicU64::new(0),
            attempts: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            source_done: AtomicBool::new(false),
            status_codes: (0..600).map(|_| AtomicU64::new(0)).collect(),
            // 1 µs to 1 hour at 3 significant figures.
            latency_us: Mutex::new(
                Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid"),
            ),
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

    fn get(c: &AtomicU64) -> u64 {
        c.load(Relaxed)
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

/// The end-of-run summary: SPEC §5, field for field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Summary {
    pub events: u64,
    pub delivered: u64,
    pub failed: u64,
    pub skipped: u64,
    pub attempts: u64,
    pub retries: u64,
    pub elapsed_secs: f64,
    pub throughput_per_sec: f64,
    pub latency_ms: Latency,
    pub status_codes: BTreeMap<String, u64>,
    pub dry_run: bool,
    pub interrupted: bool,
}

fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

impl Summary {
    pub fn from_counters(c: &Counters, elapsed: Duration, dry_run: bool, interrupted: bool) -> Summary {
        let secs = elapsed.as_secs_f64();
        let delivered = Counters::get(&c.delivered);
        let latency_ms = match c.latency_us.lock() {
            Ok(h) if !h.is_empty() => Latency {
                p50: round(h.value_at_quantile(0.50) as f64 / 1000.0, 1),
                p90: round(h.value_at_quantile(0.90) as f64 / 1000.0, 1),
                p99: round(h.value_at_quantile(0.99) as f64 / 1000.0, 1),
                max: round(h.max() as f64 / 1000.0, 1),
            },
            _ => Latency::default(),
        };
        let status_codes = c
            .status_codes
            .iter()
            .enumerate()
            .filter_map(|(code, n)| {
                let n = n.load(Relaxed);
                (n > 0).then(|| (code.to_string(), n))
            })
            .collect();
        Summary {
            events: Counters::get(&c.selected),
            delivered,
            failed: Counters::get(&c.failed),
            skipped: Counters::get(&c.skipped),
            attempts: Counters::get(&c.attempts),
            retries: Counters::get(&c.retries),
            elapsed_secs: round(secs, 2),
            throughput_per_sec: if secs > 0.0 { round(delivered as f64 / secs, 1) } else { 0.0 },
            latency_ms,
            status_codes,
            dry_run,
            interrupted,
        }
    }

    /// The human summary (for stderr).
    pub fn human(&self, target: &str, pending: u64) -> String {
        let mut s = String::new();
        let verb = if self.interrupted { "Interrupted after" } else { "Done in" };
        s.push_str(&format!("{verb} {:.1}s: {} events for {target}\n", self.elapsed_secs, thousands(self.events)));
        s.push_str(&format!(
            "  delivered {}   failed {}   skipped {} (delivered earlier)",
            thousands(self.delivered),
            thousands(self.failed),
            thousands(self.skipped)
        ));
        let not_sent = self.events.saturating_sub(self.delivered + self.failed + self.skipped);
        if not_sent > 0 {
            s.push_str(&format!("   not yet sent {}", thousands(not_sent)));
        }
        if pending > 0 {
            s.push_str(&format!(" ({} were mid-retry, recorded as pending)", thousands(pending)));
        }
        s.push('\n');
        if self.attempts > 0 {
            s.push_str(&format!(
                "  {} requests ({} retries), {:.1}/s delivered; latency p50 {} ms, p90 {} ms, p99 {} ms, max {} ms\n",
                thousands(self.attempts),
                thousands(self.retries),
                self.throughput_per_sec,
                self.latency_ms.p50,
                self.latency_ms.p90,
                self.latency_ms.p99,
                self.latency_ms.max
            ));
            let codes: Vec<String> = self.status_codes.iter().map(|(c, n)| format!("{c} ×{}", thousands(*n))).collect();
            if !codes.is_empty() {
                s.push_str(&format!("  responses: {}\n", codes.join(", ")));
            }
        }
        s
    }
}

/// How a run ended, beyond the counts.
#[derive(Debug)]
pub struct Report {
    pub summary: Summary,
    /// The source failed (exit status 3). What was fetched before was still delivered.
    pub source_error: Option<SourceError>,
    /// Entries that were not events (line numbers / page entries), the first few.
    pub malformed: Vec<String>,
    pub malformed_count: u64,
    /// Events left pending because the run was interrupted mid-retry.
    pub pending: u64,
    /// `--dry-run`: the human report (count, ETA, sample request).
    pub dry_run_text: Option<String>,
    /// Where events went, for the human summary.
    pub target: String,
}

impl Report {
    /// SPEC §3: 130 interrupted, 3 source failed, 1 some failed, 0 all delivered.
    pub fn exit_code(&self) -> u8 {
        if self.summary.interrupted {
            exit::INTERRUPTED
        } else if self.source_error.is_some() || self.malformed_count > 0 {
            exit::SOURCE
        } else if self.summary.failed > 0 {
            exit::FAILED
        } else {
            exit::OK
        }
    }
}

pub fn fail(code: u8, e: &dyn std::fmt::Display) -> u8 {
    eprintln!("Error: {e}");
    code
}

/// Print a line on stdout; a closed pipe (`| head`) is not an error.
pub fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

pub fn run_error(e: &RunError) -> u8 {
    fail(e.exit_code(), e)
}

/// The end of a run as the user sees it: dry-run report, human summary, hints, JSON.
pub fn print_report(report: &Report, json: bool, quiet: bool, ledger_path: &Path) {
    let s = &report.summary;
    if let Some(text) = &report.dry_run_text {
        if json {
            eprint!("{text}");
        } else {
            print_stdout(text);
        }
    } else if !quiet {
        eprint!("{}", s.human(&report.target, report.pending));
    }
    if report.malformed_count > 0 {
        eprintln!(
            "Error: {} source entries were not events and were skipped (everything else was processed):",
            thousands(report.malformed_count)
        );
        for m in &report.malformed {
            eprintln!("  {m}");
        }
        if report.malformed_count as usize > report.malformed.len() {
            eprintln!("  … and {} more", report.malformed_count as usize - report.malformed.len());
        }
    }
    if let Some(e) = &report.source_error {
        eprintln!("Error: {e}");
        if s.delivered > 0 {
            eprintln!("The events fetched before the failure were processed; run the same command again to continue.");
        }
    }
    if !quiet && !s.dry_run {
        if s.interrupted {
            eprintln!(
                "Progress is saved in {}; run the same command again to continue where this run stopped.",
                ledger_path.display()
            );
        } else if s.failed > 0 {
            eprintln!(
                "{} events failed for good: `savvy-replay status` shows why; `savvy-replay failed --out failed.ndjson` exports them, \
                 and `run --only-failed` retries them.",
                thousands(s.failed)
            );
        }
    }
    if json {
        match serde_json::to_string(s) {
            Ok(line) => print_stdout(&format!("{line}\n")),
            Err(e) => eprintln!("Error: cannot write the JSON summary: {e}"),
        }
    }
}

pub fn open_out(path: Option<&PathBuf>) -> Result<Box<dyn Write>, String> {
    Ok(match path {
        Some(p) if p.as_os_str() != "-" => Box::new(std::io::BufWriter::with_capacity(
            256 * 1024,
            std::fs::File::create(p).map_err(|e| format!("cannot create --out {}: {e}", p.display()))?,
        )),
        _ => Box::new(std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout().lock())),
    })
}

pub fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The bar currently on screen, so log lines can be printed around it instead of through it.
static ACTIVE_BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();

fn active_bar() -> &'static Mutex<Option<ProgressBar>> {
    ACTIVE_BAR.get_or_init(|| Mutex::new(None))
}

/// Write to stderr without tearing the progress bar (used by the log subscriber).
pub fn write_stderr(buf: &[u8]) -> std::io::Result<()> {
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
    pub fn start(counters: Arc<Counters>, visible: bool) -> Progress {
        let target = if visible { ProgressDrawTarget::stderr_with_hz(10) } else { ProgressDrawTarget::hidden() };
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(Self::style(false));
        if let Ok(mut slot) = active_bar().lock() {
            *slot = Some(bar.clone());
        }
        let task = (!bar.is_hidden()).then(|| {
            let bar = bar.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(100));
                let mut known = false;
                let mut window = RateWindow::default();
                loop {
                    tick.tick().await;
                    let rate = window.observe(Counters::get(&counters.attempts));
                    Self::update(&bar, &counters, &mut known, rate);
                }
            })
        });
        Progress { bar, task }
    }

    fn style(total_known: bool) -> ProgressStyle {
        let template = if total_known {
            "{spinner} [{elapsed_precise}] {wide_bar:.cyan/blue} {human_pos}/{human_len} ETA {eta} {msg}"
        } else {
            "{spinner} [{elapsed_precise}] {human_pos} done (total known after the last page) {msg}"
        };
        ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
    }

    fn update(bar: &ProgressBar, c: &Counters, known: &mut bool, rate: f64) {
        let done = Counters::get(&c.delivered) + Counters::get(&c.failed) + Counters::get(&c.skipped);
        if !*known && c.source_done.load(Relaxed) {
            *known = true;
            bar.set_style(Self::style(true));
        }
        if *known {
            bar.set_length(Counters::get(&c.selected));
        }
        bar.set_position(done);
        bar.set_message(format!(
            "· fetched {} · delivered {} · failed {} · retrying {} · {rate:.0} req/s",
            thousands(Counters::get(&c.fetched)),
            thousands(Counters::get(&c.delivered)),
            thousands(Counters::get(&c.failed)),
            thousands(Counters::get(&c.retrying)),
        ));
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
            (Some((t0, n0)), Some((t1, n1))) if t1 > t0 => (n1 - n0) as f64 / (*t1 - *t0).as_secs_f64(),
            _ => 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn summary_has_exactly_the_spec_fields() {
        let c = Counters::default();
        c.selected.store(3, Relaxed);
        c.delivered.store(2, Relaxed);
        c.failed.store(1, Relaxed);
        c.record_attempt(Some(200), Duration::from_millis(3));
        c.record_attempt(Some(200), Duration::from_millis(5));
        c.record_attempt(Some(422), Duration::from_millis(7));
        c.record_attempt(None, Duration::from_millis(9));
        let s = Summary::from_counters(&c, Duration::from_secs(2), false, false);
        let v = serde_json::to_value(&s).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = vec![
            "events",
            "delivered",
            "failed",
            "skipped",
            "attempts",
            "retries",
            "elapsed_secs",
            "throughput_per_sec",
            "latency_ms",
            "status_codes",
            "dry_run",
            "interrupted",
        ];
        want.sort_unstable();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        assert_eq!(keys_sorted, want);
        assert_eq!(v["status_codes"], serde_json::json!({"200": 2, "422": 1}));
        assert_eq!(v["attempts"], 4);
        assert_eq!(v["throughput_per_sec"], 1.0);
        assert_eq!(v["latency_ms"]["max"], 9.0);
        assert_eq!(v["latency_ms"]["p50"], 5.0);
    }
}
