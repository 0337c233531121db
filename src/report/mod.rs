//! The end of a run as the user sees it: the summary in words and as JSON (docs/GUIDE.md,
//! "Output"), the dry-run report, hints about what to do next, and error lines. Live progress is
//! [`crate::output::progress`].

use crate::output::print::errln;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::error::{AppError, RunFacts, exit_code};
use crate::ledger::LedgerError;
use crate::output::progress::{Counters, Latency, round};
use crate::pacing::RateMode;
use crate::source::SourceError;
use indicatif::HumanCount;

mod dry_run;
pub mod status;
pub use dry_run::DryRun;

/// The end-of-run summary, field for field the JSON object of `--json` (docs/GUIDE.md, "Output").
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct Summary {
    pub events: u64,
    pub delivered: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Repeats of an event id already seen in this run, sent once.
    pub duplicates: u64,
    pub attempts: u64,
    pub retries: u64,
    pub elapsed_secs: f64,
    pub throughput_per_sec: f64,
    pub latency_ms: Latency,
    pub status_codes: BTreeMap<String, u64>,
    pub dry_run: bool,
    pub interrupted: bool,
    pub rate: RateSummary,
    /// Attempts that got no HTTP answer, by cause (the keys of `deliver::cause`).
    pub errors: BTreeMap<String, u64>,
}

/// The summary's `rate`: the configured rate, or where `--rate auto` settled.
///
/// In JSON the mode is its name (`"fixed"` or `"auto"`, [`RateMode::name`]) beside the rate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, serde::Deserialize)]
#[serde(into = "RateJson", from = "RateJson")]
pub struct RateSummary {
    pub mode: RateMode,
    /// Requests per second; `None` (null) is unlimited.
    pub final_per_sec: Option<f64>,
}

/// [`RateSummary`] as the JSON writes it.
#[derive(Serialize, serde::Deserialize)]
struct RateJson {
    mode: String,
    final_per_sec: Option<f64>,
}

impl From<RateSummary> for RateJson {
    fn from(r: RateSummary) -> RateJson {
        RateJson { mode: r.mode.name().to_owned(), final_per_sec: r.final_per_sec }
    }
}

impl From<RateJson> for RateSummary {
    fn from(r: RateJson) -> RateSummary {
        let mode = RateMode::from_name(&r.mode, r.final_per_sec).unwrap_or_default();
        RateSummary { mode, final_per_sec: r.final_per_sec }
    }
}

impl RateSummary {
    pub fn new(mode: RateMode, per_sec: Option<f64>) -> RateSummary {
        RateSummary { mode, final_per_sec: per_sec.filter(|r| r.is_finite() && *r > 0.0).map(|r| round(r, 1)) }
    }
}

impl Summary {
    pub fn from_counters(c: &Counters, elapsed: Duration, dry_run: bool, interrupted: bool) -> Summary {
        let secs = elapsed.as_secs_f64();
        let delivered = Counters::get(&c.delivered);
        let latency_ms = c.latency();
        let status_codes = c.status_codes();
        Summary {
            events: Counters::get(&c.selected),
            delivered,
            failed: Counters::get(&c.failed),
            skipped: Counters::get(&c.skipped),
            duplicates: Counters::get(&c.duplicates),
            attempts: Counters::get(&c.attempts),
            retries: Counters::get(&c.retries),
            elapsed_secs: round(secs, 2),
            throughput_per_sec: if secs > 0.0 { round(delivered as f64 / secs, 1) } else { 0.0 },
            latency_ms,
            status_codes,
            dry_run,
            interrupted,
            rate: RateSummary::new(c.pace.mode(), c.pace.rate()),
            errors: c.errors(),
        }
    }

    /// The human summary (for stderr). `stopped`: why the run ended before its end, in words.
    /// `kept`: the ledger outlives the run, so the next run starts from a settled `--rate auto`.
    pub fn human(&self, target: &str, pending: u64, stopped: Option<&str>, kept: bool) -> String {
        let mut s = String::new();
        let elapsed = format!("{:.1}s", self.elapsed_secs);
        let head = match stopped {
            Some(why) => format!("Stopped after {elapsed} ({why})"),
            None if self.interrupted => format!("Interrupted after {elapsed}"),
            None => format!("Done in {elapsed}"),
        };
        s.push_str(&format!("{head}: {} events for {target}\n", HumanCount(self.events)));
        s.push_str(&format!(
            "  delivered {}   failed {}   skipped {} (delivered earlier)",
            HumanCount(self.delivered),
            HumanCount(self.failed),
            HumanCount(self.skipped)
        ));
        let not_sent = self.events.saturating_sub(self.delivered + self.failed + self.skipped);
        if not_sent > 0 {
            s.push_str(&format!("   not yet sent {}", HumanCount(not_sent)));
        }
        if pending > 0 {
            s.push_str(&format!(" ({} were mid-retry, recorded as pending)", HumanCount(pending)));
        }
        s.push('\n');
        if self.duplicates > 0 {
            s.push_str(&format!(
                "  duplicates {} (the same event id again in this run; each event is sent once)\n",
                HumanCount(self.duplicates)
            ));
        }
        if self.attempts > 0 {
            s.push_str(&format!(
                "  {} requests ({} retries), {} delivered\n  latency p50 {} ms, p90 {} ms, p99 {} ms, max {} ms\n",
                HumanCount(self.attempts),
                HumanCount(self.retries),
                crate::words::per_sec(self.throughput_per_sec),
                self.latency_ms.p50,
                self.latency_ms.p90,
                self.latency_ms.p99,
                self.latency_ms.max
            ));
            let codes: Vec<String> =
                self.status_codes.iter().map(|(c, n)| format!("{c} ×{}", HumanCount(*n))).collect();
            if !codes.is_empty() {
                s.push_str(&format!("  responses: {}\n", codes.join(", ")));
            }
            if let (RateMode::Auto, Some(r)) = (self.rate.mode, self.rate.final_per_sec) {
                if kept {
                    s.push_str(&format!(
                        "  --rate auto settled on {} (the next auto run to this webhook starts there)\n",
                        crate::words::per_sec(r)
                    ));
                } else {
                    s.push_str(&format!("  --rate auto settled on {}\n", crate::words::per_sec(r)));
                }
            }
            // oha's "error distribution": the attempts the statuses above do not account for.
            let errors: Vec<String> = self.errors.iter().map(|(c, n)| format!("{c} ×{}", HumanCount(*n))).collect();
            if !errors.is_empty() {
                s.push_str(&format!("  no answer: {}\n", errors.join(", ")));
            }
        }
        s
    }
}

/// How a run ended, beyond the counts.
#[derive(Debug)]
pub struct Report {
    pub summary: Summary,
    /// Recording outcomes failed mid-run (exit status 2): the run stopped there; what the summary
    /// counts as delivered or failed is recorded.
    pub ledger_error: Option<LedgerError>,
    /// The source failed (exit status 3). What was fetched before was still delivered.
    pub source_error: Option<SourceError>,
    /// Entries that were not events (line numbers / page entries), the first few.
    pub malformed: Vec<String>,
    pub malformed_count: u64,
    /// Events not sent because `--created-before` / `--created-after` could not place them.
    pub undated: Undated,
    /// Events left pending because the run was interrupted mid-retry.
    pub pending: u64,
    /// The run stopped because the webhook was unreachable for `--give-up-after` (exit status 4):
    /// the cause, in words.
    pub gave_up: Option<String>,
    /// The run stopped early for a reason (`run::stop`): its exit status and advice.
    pub stopped: Option<crate::error::StopReason>,
    /// `--dry-run`: the human report (count, ETA, sample request).
    pub dry_run_text: Option<String>,
    /// Where events went, for the human summary.
    pub target: String,
    /// What the webhook lookup found and the run took from it (API source only).
    pub webhook: Option<String>,
}

impl Report {
    /// The source failed before anything was sent or skipped: the error says it all, and a
    /// "Done … delivered 0" summary ahead of it would only bury it.
    pub fn failed_before_sending(&self) -> bool {
        self.source_error.is_some() && self.summary.attempts == 0 && self.summary.skipped == 0
    }

    /// The exit status, from `crate::error::exit_code`'s table.
    pub fn exit_code(&self) -> u8 {
        exit_code(self.facts().ending())
    }

    /// What the report says, for its exit status.
    pub fn facts(&self) -> RunFacts<'_> {
        RunFacts {
            ledger_failed: self.ledger_error.is_some(),
            interrupted: self.summary.interrupted,
            stopped: self.stopped.as_ref(),
            gave_up: self.gave_up.is_some(),
            source_error: self.source_error.as_ref(),
            unreadable: self.malformed_count > 0 || self.undated.count > 0,
            failed: self.summary.failed,
        }
    }
}

/// Where a run's outcomes are kept, for the hints that point there.
pub struct Kept {
    pub ledger: std::path::PathBuf,
    /// The webhook URL as the ledger keys it (a password in it hashed).
    pub webhook_key: String,
    pub event_type: String,
}

/// Events a time filter could not place: how many, and the first few with what is wrong.
#[derive(Debug, Default)]
pub struct Undated {
    pub count: u64,
    pub first: Vec<String>,
}

/// The end of a run as the user sees it: dry-run report, human summary, hints, JSON.
///
/// `kept` is where the run's state is kept; `None` when it is not kept (the demo's ledger
/// lives in a temporary directory deleted on exit): then no hint says to rerun or to look at the
/// ledger, because that advice would not work.
pub fn print_report(report: &Report, json: bool, quiet: bool, kept: Option<&Kept>) {
    let ledger_path = kept.map(|k| k.ledger.as_path());
    let s = &report.summary;
    if let Some(text) = &report.dry_run_text {
        // The words are wrapped to the terminal; the sample request is shown byte for byte.
        let (words, request) = text.split_at(text.find(dry_run::SAMPLE_HEADING).unwrap_or(text.len()));
        if json {
            crate::output::print::stderr(words);
            crate::output::print::stderr_verbatim(request);
        } else {
            crate::output::print::stdout_message(words);
            crate::output::print::stdout(request);
        }
    } else if !quiet && !report.failed_before_sending() {
        let stopped = if report.ledger_error.is_some() {
            Some("the ledger could not be written")
        } else if let Some(stop) = &report.stopped {
            Some(stop.short())
        } else if report.gave_up.is_some() {
            Some("the webhook was unreachable")
        } else {
            None
        };
        crate::output::print::stderr(&s.human(&report.target, report.pending, stopped, kept.is_some()));
        if let Some(line) = &report.webhook {
            errln!("{line}");
        }
    }
    if report.malformed_count > 0 {
        errln!("Error: {} (everything else was processed):", crate::words::skipped_entries(report.malformed_count));
        for m in &report.malformed {
            errln!("  {m}");
        }
        if report.malformed_count as usize > report.malformed.len() {
            errln!("  … and {} more", report.malformed_count as usize - report.malformed.len());
        }
    }
    if let Some(e) = &report.ledger_error {
        errln!("Error: {e}");
    }
    print_undated(&report.undated);
    if let Some(e) = &report.source_error {
        errln!("Error: {e}");
        if s.delivered > 0 && ledger_path.is_some() {
            errln!("The events fetched before the failure were processed; run the same command again to continue.");
        }
    }
    if let Some(reason) = &report.stopped {
        errln!("Error: {}", reason.message());
    }
    if let Some(cause) = &report.gave_up {
        errln!("Error: {cause}.");
        if let Some(ledger_path) = ledger_path {
            errln!(
                "Outcomes so far are saved in {}; the rest stay pending: run the same command again once the webhook is back.",
                ledger_path.display()
            );
        }
    }
    if let Some(kept) = kept.filter(|_| !quiet && !s.dry_run && report.gave_up.is_none() && report.stopped.is_none()) {
        let ledger_path = kept.ledger.as_path();
        if s.interrupted {
            errln!(
                "Progress is saved in {}; run the same command again to continue where this run stopped.",
                ledger_path.display()
            );
        } else if s.failed > 0 {
            errln!(
                "{} for good: `{}` shows why; `{}` exports them, \
                 and the same command with --only-failed retries them.",
                crate::words::count(s.failed, "event failed", "events failed"),
                crate::output::hint::status(ledger_path),
                crate::output::hint::failed(ledger_path, Some((&kept.webhook_key, &kept.event_type)), false),
            );
        }
    }
    if json {
        match serde_json::to_string(s) {
            Ok(line) => crate::output::print::stdout(&format!("{line}\n")),
            Err(e) => errln!("Error: cannot write the JSON summary: {e}"),
        }
    }
}

/// The events a time filter could not place, named by id with what is wrong with their
/// `created_at`. Shared with `export`.
pub fn print_undated(undated: &Undated) {
    if undated.count == 0 {
        return;
    }
    let n = crate::words::count(undated.count, "event", "events");
    let were = if undated.count == 1 { "was" } else { "were" };
    errln!(
        "Error: {n} without a readable `created_at` cannot be placed in time for --created-before/--created-after and {were} not sent:"
    );
    for line in &undated.first {
        errln!("  {line}");
    }
    if undated.count > undated.first.len() as u64 {
        errln!("  … and {} more", HumanCount(undated.count - undated.first.len() as u64));
    }
    errln!(
        "  Fix them at the source, or run without --created-before/--created-after (--created-before none) to send them."
    );
}

/// Where `--out` goes: the file, or stdout for none or `-`.
pub fn open_out(path: Option<&PathBuf>) -> Result<Box<dyn Write + Send>, AppError> {
    Ok(match path {
        Some(p) if p.as_os_str() != "-" => Box::new(std::io::BufWriter::with_capacity(
            256 * 1024,
            crate::ledger::owner_only::create(p)
                .map_err(|error| AppError::CreateOut { path: p.display().to_string(), error })?,
        )),
        _ => Box::new(std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout())),
    })
}

/// A closed pipe (`| head`): the reader has all it wants, which is not an error.
pub fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

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
        c.record_error(crate::deliver::cause::Cause::Refused);
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
            "rate",
            "duplicates",
            "errors",
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
        assert_eq!(v["rate"], serde_json::json!({"mode": "fixed", "final_per_sec": null}));
        c.pace.set_rate(Some(187.54), RateMode::Auto);
        let s = Summary::from_counters(&c, Duration::from_secs(2), false, false);
        assert_eq!(serde_json::to_value(s.rate).unwrap(), serde_json::json!({"mode": "auto", "final_per_sec": 187.5}));
        assert!(s.human("t", 0, None, true).contains("settled on 188/s"), "{}", s.human("t", 0, None, true));
        assert!(s.human("t", 0, None, true).contains("the next auto run"));
        // The demo's ledger is deleted with it: no next run starts from there.
        let demo = s.human("t", 0, None, false);
        assert!(demo.contains("settled on 188/s") && !demo.contains("next"), "{demo}");
        assert_eq!(v["errors"], serde_json::json!({"connection refused": 1}));
        assert!(s.human("t", 0, None, true).contains("no answer: connection refused ×1"));
    }
}
