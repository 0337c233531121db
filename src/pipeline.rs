//! The replay itself: a paging producer feeds a bounded channel; a pool of workers delivers each
//! event through the shared gate (rate limit + pool-wide pause) with retries; the ledger records
//! every outcome before the worker sends its next request.
//!
//! Cancellation (Ctrl-C, SIGTERM): the producer stops fetching, workers finish the request they
//! have in flight (bounded by `--timeout`), record it, and start nothing new. Events still in the
//! channel were never attempted and are simply fetched again by the next run.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{Resume, RunConfig, Selection, SourceConfig};
use crate::connection::Connection;
use crate::deliver::{self, Deliverer, Prepared, Target};
use crate::event::Event;
use crate::ledger::{Committed, Ledger, LedgerError, LedgerHandle, Outcome, Status};
use crate::rate::Gate;
use crate::report::{Counters, Progress, Summary, thousands};
use crate::retry::{AttemptResult, RetryPolicy, Verdict, classify};
use crate::source::{ApiPager, NdjsonReader, Source, SourceError};

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
    /// What the webhook lookup found and the run took from it (API source only).
    pub webhook: Option<String>,
}

impl Report {
    /// SPEC §3: 130 interrupted, 3 source failed, 1 some failed, 0 all delivered.
    pub fn exit_code(&self) -> u8 {
        if self.summary.interrupted {
            130
        } else if self.source_error.is_some() || self.malformed_count > 0 {
            3
        } else if self.summary.failed > 0 {
            1
        } else {
            0
        }
    }
}

/// Errors that stop a run before or while it starts (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot read --input {path}: {error}")]
    Input { path: String, error: std::io::Error },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Webhook(#[from] crate::source::webhooks::WebhookError),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Source(_) => 3,
            RunError::Webhook(e) => e.exit_code(),
            _ => 2,
        }
    }
}

/// Open the configured source.
pub async fn open_source(
    source: &SourceConfig,
    retry: RetryPolicy,
    timeout: Duration,
    cancel: &CancellationToken,
) -> Result<Source, RunError> {
    Ok(match source {
        SourceConfig::File(path) => Source::Ndjson(
            NdjsonReader::open(path)
                .await
                .map_err(|error| RunError::Input { path: path.display().to_string(), error })?,
        ),
        SourceConfig::Api { base, token, query } => {
            let client = crate::source::api::client(timeout).map_err(|e| RunError::Client(e.to_string()))?;
            Source::Api(Box::new(ApiPager::new(client, base.clone(), token.clone(), *query, retry, cancel.clone())))
        }
    })
}

/// Whether an event passes `--created-before` / `--created-after`. An event without a readable
/// `created_at` cannot be placed in time, so it passes only when neither filter is set.
pub fn selected(sel: &Selection, ev: &Event) -> bool {
    if sel.created_before.is_none() && sel.created_after.is_none() {
        return true;
    }
    let Some(t) = ev.created_at() else { return false };
    sel.created_before.is_none_or(|b| t < b) && sel.created_after.is_none_or(|a| t > a)
}

/// How reading the source ended.
#[derive(Debug, Default)]
pub struct Produced {
    /// The source failed (exit status 3).
    pub source_error: Option<SourceError>,
    /// The first few entries that were not events.
    pub malformed: Vec<String>,
    pub malformed_count: u64,
    pub ledger_error: Option<LedgerError>,
}

/// Start reading `source`: selected events (minus what the ledger says to skip) come out of the
/// returned bounded channel; the task's result says how reading ended. `run` delivers from the
/// channel; `export` writes it out.
pub fn spawn_producer(
    source: Source,
    sel: Selection,
    resume: Resume,
    ledger: Option<LedgerHandle>,
    counters: Arc<Counters>,
    capacity: usize,
    cancel: CancellationToken,
) -> (async_channel::Receiver<Event>, tokio::task::JoinHandle<Produced>) {
    let (tx, rx) = async_channel::bounded::<Event>(capacity.max(1));
    let task = tokio::spawn(produce(source, sel, resume, ledger, counters, tx, cancel));
    (rx, task)
}

/// The producer's result, also when its task died.
pub async fn produced(task: tokio::task::JoinHandle<Produced>) -> Produced {
    task.await.unwrap_or_else(|e| Produced {
        source_error: Some(SourceError::Malformed(format!("the reader stopped: {e}"))),
        ..Produced::default()
    })
}

const MALFORMED_KEEP: usize = 20;

/// Read the source batch by batch, select, skip what the ledger says is done, and queue the rest.
async fn produce(
    mut source: Source,
    sel: Selection,
    resume: Resume,
    ledger: Option<LedgerHandle>,
    counters: Arc<Counters>,
    out: async_channel::Sender<Event>,
    cancel: CancellationToken,
) -> Produced {
    let mut p = Produced::default();
    let limit = sel.limit.unwrap_or(u64::MAX);
    'pages: while !cancel.is_cancelled() && counters.selected.load(Relaxed) < limit {
        let batch = tokio::select! {
            b = source.next_batch() => b,
            () = cancel.cancelled() => break,
        };
        let batch = match batch {
            Ok(Some(b)) => b,
            Ok(None) => break,
            Err(e) => {
                if !cancel.is_cancelled() {
                    p.source_error = Some(e);
                }
                break;
            }
        };
        counters.fetched.fetch_add(batch.events.len() as u64, Relaxed);
        p.malformed_count += batch.malformed.len() as u64;
        for m in batch.malformed {
            warn!("skipped: {m}");
            if p.malformed.len() < MALFORMED_KEEP {
                p.malformed.push(m);
            }
        }
        let mut events: Vec<Event> = batch.events.into_iter().filter(|e| selected(&sel, e)).collect();
        let statuses = match (&ledger, resume) {
            (Some(l), Resume::Skip | Resume::OnlyFailed) if !events.is_empty() => {
                match l.lookup(events.iter().map(|e| e.id.clone()).collect()).await {
                    Ok(s) => s,
                    Err(e) => {
                        p.ledger_error = Some(e);
                        break;
                    }
                }
            }
            _ => vec![None; events.len()],
        };
        for (ev, status) in events.drain(..).zip(statuses) {
            match (resume, status) {
                (Resume::OnlyFailed, Some(Status::Failed)) => {}
                (Resume::OnlyFailed, _) => continue,
                _ => {}
            }
            if counters.selected.load(Relaxed) >= limit {
                break 'pages;
            }
            counters.selected.fetch_add(1, Relaxed);
            if resume == Resume::Skip && status == Some(Status::Delivered) {
                counters.skipped.fetch_add(1, Relaxed);
                continue;
            }
            tokio::select! {
                r = out.send(ev) => if r.is_err() { break 'pages },
                () = cancel.cancelled() => break 'pages,
            }
        }
    }
    counters.source_done.store(true, Relaxed);
    p
}

/// Everything a worker shares with the others.
struct Shared {
    deliverer: Deliverer,
    gate: Gate,
    retry: RetryPolicy,
    counters: Arc<Counters>,
    cancel: CancellationToken,
}

/// Deliver one event: attempts through the gate, retries per policy. Never returns early without
/// an outcome: when cancelled mid-way the event is `Pending`.
async fn deliver_one(s: &Shared, conn: &mut Connection, ev: &Event, prepared: Prepared) -> Outcome {
    let mut attempts = 0u32;
    let mut last_status = None;
    let mut last_error: Option<String> = None;
    let outcome = |status, attempts, last_status, last_error: Option<String>| Outcome {
        event_id: ev.id.clone(),
        status,
        attempts,
        last_status,
        last_error,
        body: (status != Status::Delivered).then(|| prepared.envelope.payload()),
    };
    loop {
        // Connect first (not a request: the rate gate does not count it), then take a turn.
        let connected = tokio::select! {
            biased;
            () = s.cancel.cancelled() => return outcome(Status::Pending, attempts, last_status, last_error),
            c = s.deliverer.connect(conn) => c,
        };
        let a = match connected {
            Err(failed) => failed,
            Ok(()) => {
                tokio::select! {
                    biased;
                    () = s.cancel.cancelled() => return outcome(Status::Pending, attempts, last_status, last_error),
                    () = s.gate.acquire() => {}
                }
                s.deliverer.attempt(conn, &prepared).await
            }
        };
        attempts += 1;
        s.counters.record_attempt(a.status, a.latency);
        let result = match (&a.status, &a.error) {
            (Some(code), _) => AttemptResult::Status { code: *code, retry_after: a.retry_after.as_deref() },
            (None, Some((kind, _))) => AttemptResult::Transport(*kind),
            (None, None) => AttemptResult::Transport(crate::retry::TransportError::Other),
        };
        let verdict = classify(result, SystemTime::now(), s.retry.backoff.max);
        last_status = a.status;
        last_error = match (a.status, a.error) {
            (Some(code), _) if (200..300).contains(&code) => None,
            (Some(code), _) if a.body_start.is_empty() => Some(format!("HTTP {code}")),
            (Some(code), _) => Some(format!("HTTP {code}: {}", a.body_start)),
            (None, Some((_, msg))) => Some(msg),
            (None, None) => Some("no response".to_owned()),
        };
        debug!(event = %ev.id, status = ?a.status, latency_ms = a.latency.as_secs_f64() * 1e3, "attempt");
        match verdict {
            Verdict::Delivered => return outcome(Status::Delivered, attempts, last_status, None),
            Verdict::Fail => return outcome(Status::Failed, attempts, last_status, last_error),
            Verdict::Retry { after } => {
                let retries_so_far = attempts - 1;
                if retries_so_far >= s.retry.max_retries {
                    let msg = last_error.map(|e| format!("{e} (gave up after {attempts} attempts)"));
                    return outcome(Status::Failed, attempts, last_status, msg);
                }
                if s.cancel.is_cancelled() {
                    return outcome(Status::Pending, attempts, last_status, last_error);
                }
                let delay = match after {
                    Some(d) => {
                        // The receiver said "slow down": the whole pool waits, not just this event.
                        s.gate.pause_until(Instant::now() + d);
                        d
                    }
                    None => s.retry.backoff.next_delay(retries_so_far),
                };
                info!(
                    "{}: {}; retry {}/{} in {}",
                    ev.id,
                    last_error.as_deref().unwrap_or("failed"),
                    retries_so_far + 1,
                    s.retry.max_retries,
                    humantime::format_duration(Duration::from_millis(delay.as_millis() as u64))
                );
                s.counters.retrying.fetch_add(1, Relaxed);
                let cancelled = tokio::select! {
                    () = tokio::time::sleep(delay) => false,
                    () = s.cancel.cancelled() => true,
                };
                s.counters.retrying.fetch_sub(1, Relaxed);
                if cancelled {
                    return outcome(Status::Pending, attempts, last_status, last_error);
                }
                s.counters.retries.fetch_add(1, Relaxed);
            }
        }
    }
}

/// A worker: take an event, deliver it, hand its outcome to the ledger, repeat. The outcome's
/// commit overlaps taking and preparing the next event, but the worker sends nothing more until
/// it is durable — that is what keeps a crash from re-sending more than `--concurrency` events.
async fn work(s: Arc<Shared>, rx: async_channel::Receiver<Event>, ledger: LedgerHandle) -> Result<(), LedgerError> {
    let mut conn = Connection::default();
    let mut unsettled: Option<(Status, Committed)> = None;
    let result = async {
        loop {
            let ev = tokio::select! {
                biased;
                () = s.cancel.cancelled() => return Ok(()),
                ev = rx.recv() => match ev { Ok(ev) => ev, Err(_) => return Ok(()) },
            };
            let prepared = s.deliverer.prepare(&ev);
            if let Some(previous) = unsettled.take() {
                settle(&s, previous).await?;
            }
            let o = deliver_one(&s, &mut conn, &ev, prepared).await;
            let status = o.status;
            if status == Status::Pending && o.attempts == 0 {
                // Never sent: nothing to record, the next run fetches it again.
                return Ok(());
            }
            unsettled = Some((status, ledger.submit(o)?));
        }
    }
    .await;
    let result = match (result, unsettled) {
        (Ok(()), Some(last)) => settle(&s, last).await,
        (result, _) => result,
    };
    if result.is_err() {
        // An outcome that cannot be recorded: stop everyone rather than send more like it.
        s.cancel.cancel();
    }
    result
}

/// Wait for an outcome to be committed, then count it.
async fn settle(s: &Shared, (status, committed): (Status, Committed)) -> Result<(), LedgerError> {
    committed.wait().await?;
    match status {
        Status::Delivered => s.counters.delivered.fetch_add(1, Relaxed),
        Status::Failed => s.counters.failed.fetch_add(1, Relaxed),
        Status::Pending => s.counters.pending.fetch_add(1, Relaxed),
    };
    Ok(())
}

/// Run the replay described by `cfg` until done or `cancel`led.
pub async fn run(mut cfg: RunConfig, cancel: CancellationToken) -> Result<Report, RunError> {
    let started = Instant::now();
    let source = open_source(&cfg.source, cfg.retry, cfg.timeout, &cancel).await?;
    let source_name = source.describe();
    // A dry run checks the token first and says whose account it reads.
    let account = match (&source, cfg.dry_run) {
        (Source::Api(pager), true) => {
            let me = pager.whoami().await?;
            Some(me.email.or(me.display_name).unwrap_or_else(|| "an account without an email".to_owned()))
        }
        _ => None,
    };
    let webhook = crate::webhook_defaults::apply(&mut cfg, &source).await?;
    let target = Target {
        url: cfg.webhook_url.clone(),
        event_type: cfg.event_type.clone(),
        signing_secret: cfg.signing_secret.clone(),
        signature_hex: cfg.signature_hex,
        webhook_id: cfg.webhook_id.clone(),
        version: cfg.version.clone().unwrap_or_else(|| crate::event::ENVELOPE_VERSION.to_owned()),
        headers: cfg.headers.clone(),
        timeout: cfg.timeout,
    };
    let deliverer = Deliverer::new(target)
        .map_err(|e| RunError::Client(format!("{}: {e}", deliver::display_url(&cfg.webhook_url))))?;
    let ledger = Ledger::open(&cfg.ledger, cfg.webhook_url.as_str(), &cfg.event_type)?;
    let target_name = format!("{} ({})", deliver::display_url(&cfg.webhook_url), cfg.event_type);
    info!("replaying from {source_name} to {target_name}");

    let counters = Arc::new(Counters::default());
    // Room for a couple of pages, so the next page is fetched while this one is delivered.
    let capacity = (2 * 100).max(2 * cfg.concurrency);
    let (rx, producer) = spawn_producer(
        source,
        cfg.select,
        cfg.resume,
        Some(ledger.handle()),
        counters.clone(),
        capacity,
        cancel.clone(),
    );

    if cfg.dry_run {
        let from = match account {
            Some(who) => format!("{source_name} (token accepted: {who})"),
            None => source_name,
        };
        let report =
            dry_run(&cfg, deliverer, rx, producer, &counters, started, cancel, target_name, from, webhook).await;
        ledger.close().await?;
        return report;
    }

    let progress = Progress::start(counters.clone(), !cfg.quiet);
    let shared = Arc::new(Shared {
        deliverer,
        gate: Gate::new(cfg.rate, cfg.burst),
        retry: cfg.retry,
        counters: counters.clone(),
        cancel: cancel.clone(),
    });
    let workers: Vec<_> =
        (0..cfg.concurrency).map(|_| tokio::spawn(work(shared.clone(), rx.clone(), ledger.handle()))).collect();
    drop(rx);

    let produced = produced(producer).await;
    let mut ledger_error = produced.ledger_error;
    for w in workers {
        match w.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                ledger_error.get_or_insert(e);
            }
            Err(e) => warn!("a worker stopped unexpectedly: {e}"),
        }
    }
    progress.finish();
    let closed = ledger.close().await;
    if let Some(e) = ledger_error {
        return Err(e.into());
    }
    closed?;
    let interrupted = cancel.is_cancelled();
    let summary = Summary::from_counters(&counters, started.elapsed(), false, interrupted);
    Ok(Report {
        summary,
        source_error: produced.source_error,
        malformed: produced.malformed,
        malformed_count: produced.malformed_count,
        pending: counters.pending.load(Relaxed),
        dry_run_text: None,
        target: target_name,
        webhook,
    })
}

#[allow(clippy::too_many_arguments)]
async fn dry_run(
    cfg: &RunConfig,
    deliverer: Deliverer,
    rx: async_channel::Receiver<Event>,
    producer: tokio::task::JoinHandle<Produced>,
    counters: &Counters,
    started: Instant,
    cancel: CancellationToken,
    target_name: String,
    from: String,
    webhook: Option<String>,
) -> Result<Report, RunError> {
    let mut to_send = 0u64;
    let mut sample = None;
    while let Ok(ev) = rx.recv().await {
        to_send += 1;
        if sample.is_none() {
            sample = Some(deliverer.render(&deliverer.prepare(&ev)));
        }
    }
    let produced = produced(producer).await;
    if let Some(e) = produced.ledger_error {
        return Err(e.into());
    }
    let mut text = format!("Dry run: nothing was sent.\nRead from {from}.\n");
    if let Some(line) = &webhook {
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&format!(
        "{} events selected; {} already delivered to this webhook; {} to send to {target_name}.\n",
        thousands(counters.selected.load(Relaxed)),
        thousands(counters.skipped.load(Relaxed)),
        thousands(to_send),
    ));
    text.push_str(&eta_line(to_send, cfg));
    match sample {
        Some(s) => {
            text.push_str("\nThe first request, as it would be sent:\n\n");
            text.push_str(&s);
            text.push('\n');
        }
        None => text.push_str("\nNothing to send.\n"),
    }
    let summary = Summary::from_counters(counters, started.elapsed(), true, cancel.is_cancelled());
    Ok(Report {
        summary,
        source_error: produced.source_error,
        malformed: produced.malformed,
        malformed_count: produced.malformed_count,
        pending: 0,
        dry_run_text: Some(text),
        target: target_name,
        webhook,
    })
}

/// The ETA at `--rate` (requests may not all be first attempts, so this is a lower bound).
fn eta_line(n: u64, cfg: &RunConfig) -> String {
    match cfg.rate.get() {
        Some(r) => {
            let secs = (n as f64 / r).ceil();
            format!(
                "At --rate {} with --concurrency {}: about {} (longer if the receiver is slower or asks for retries).\n",
                cfg.rate,
                cfg.concurrency,
                humantime::format_duration(Duration::from_secs(secs as u64))
            )
        }
        None => format!(
            "--rate is unlimited: with --concurrency {} the time depends on how fast the receiver answers.\n",
            cfg.concurrency
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn ev(created: Option<&str>) -> Event {
        let raw = match created {
            Some(c) => format!(r#"{{"id":"e","created_at":"{c}"}}"#),
            None => r#"{"id":"e"}"#.to_owned(),
        };
        Event::from_raw(Bytes::from(raw)).unwrap()
    }

    #[test]
    fn created_filters_are_strict_and_need_a_time() {
        let t = |s: &str| Some(s.parse::<jiff::Timestamp>().unwrap());
        let sel = Selection { created_before: t("2026-03-01T00:00:00Z"), created_after: None, limit: None };
        assert!(selected(&sel, &ev(Some("2026-02-28T23:59:59Z"))));
        assert!(!selected(&sel, &ev(Some("2026-03-01T00:00:00Z"))));
        assert!(!selected(&sel, &ev(None)));
        let sel = Selection { created_before: None, created_after: t("2026-03-01T00:00:00Z"), limit: None };
        assert!(selected(&sel, &ev(Some("2026-03-01T01:00:00+00:30"))));
        assert!(!selected(&sel, &ev(Some("2026-02-01T00:00:00Z"))));
        assert!(selected(&Selection::default(), &ev(None)));
    }
}
