//! The replay itself: wires a producer ([`crate::run::producer`]) to a pool of workers
//! ([`crate::run::worker`]), the ledger and the progress bar, and turns how they ended into a
//! [`Report`]. With `--dry-run`, the events are counted and the first request is rendered instead.
//!
//! Pacing ([`crate::pacing::Pacer`]) is set up here: a fixed `--rate` or `auto` starting from the
//! rate the ledger remembers for the target, and the outage pause; what `auto` settled on goes
//! back into the ledger at the end.
//!
//! Cancellation (Ctrl-C, SIGTERM, or giving up on an unreachable webhook): the producer stops fetching, workers finish the request they
//! have in flight (bounded by `--timeout`), record it, and start nothing new. Events still in the
//! channel were never attempted and are simply fetched again by the next run.

pub(crate) mod dedupe;
pub(crate) mod defaults;
pub(crate) mod producer;
pub(crate) mod signal;
pub(crate) mod stop;
pub(crate) mod worker;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::RunConfig;
use crate::deliver::{self, Deliverer, Target};
use crate::error::AuthUsed;
use crate::error::RunError;
use crate::event::Event;
use crate::ledger::{Ledger, LedgerError};
use crate::output::progress::{Counters, Progress};
use crate::pacing::{ControllerSettings, OutageSettings, Pacer, RateMode};
use crate::report::{DryRun, RateSummary, Report, Summary};
use crate::run::dedupe::InFlight;
use crate::run::producer::{Produced, open_source, produced, spawn_producer};
use crate::run::stop::{FirstAnswers, Stopper};
use crate::run::worker::{Shared, work};
use crate::source::Source;

/// Run the replay described by `cfg` until done or `cancel`led.
pub async fn run(mut cfg: RunConfig, cancel: CancellationToken) -> Result<Report, RunError> {
    let started = Instant::now();
    let source = open_source(&cfg.source, cfg.retry, cfg.timeout, &cancel, !cfg.quiet).await?;
    let source_name = source.describe();
    // A dry run checks the token first and says whose account it reads.
    let account = match (&source, cfg.dry_run) {
        (Source::Api(pager), true) => {
            let me = pager.api().whoami().await?;
            Some(me.email.or(me.display_name).unwrap_or_else(|| "an account without an email".to_owned()))
        }
        _ => None,
    };
    let webhook = crate::run::defaults::apply(&mut cfg, &source).await?;
    let target = Target {
        url: cfg.webhook_url.clone(),
        event_type: cfg.event_type.clone(),
        signing_secret: cfg.signing_secret.clone(),
        signature_hex: cfg.signature_hex,
        webhook_id: cfg.webhook_id.clone(),
        version: cfg.version.clone().unwrap_or_else(|| crate::event::ENVELOPE_VERSION.to_owned()),
        user_agent: cfg.user_agent.clone(),
        headers: cfg.headers.clone(),
        timeout: cfg.timeout,
    };
    let deliverer = Deliverer::new(target)
        .map_err(|error| RunError::Endpoint { url: deliver::display_url(&cfg.webhook_url), error })?;
    // Directories, the lock file and SQLite are blocking work: off the async threads.
    let (path, url, kind) = (cfg.ledger.clone(), cfg.webhook_url.clone(), cfg.event_type.clone());
    let ledger = tokio::task::spawn_blocking(move || Ledger::open(&path, &url, &kind))
        .await
        .map_err(|_| LedgerError::Gone)??;
    let target_name = format!("{} ({})", deliver::display_url(&cfg.webhook_url), cfg.event_type);
    info!("replaying from {source_name} to {target_name}");

    let counters = Arc::new(Counters::default());
    let limit = cfg.select.limit;
    // Room for a couple of pages, so the next page is fetched while this one is delivered.
    let capacity = (2 * 100).max(2 * cfg.concurrency);
    // Stops the run like Ctrl-C does, but for giving up on an unreachable webhook (exit 4) or a
    // [`crate::run::stop::Stop`] reason.
    let stop = cancel.child_token();
    let in_flight = Arc::new(InFlight::default());
    let (rx, producer) = spawn_producer(
        source,
        cfg.select,
        cfg.resume,
        Some((ledger.handle(), in_flight.clone())),
        counters.clone(),
        capacity,
        stop.clone(),
    );

    if cfg.dry_run {
        let from = match account {
            Some(who) => format!("{source_name} (token accepted: {who})"),
            None => source_name,
        };
        let auto_start = ledger.settled_rate();
        let report = dry_run(
            &cfg,
            deliverer,
            (rx, producer, &in_flight),
            &counters,
            started,
            cancel,
            (target_name, from, webhook),
            auto_start,
        )
        .await;
        ledger.close().await?;
        return report;
    }

    let controller = ControllerSettings { start: ledger.settled_rate(), max_rate: cfg.max_rate.get() };
    let outage = OutageSettings {
        probe_initial: cfg.retry.backoff.initial,
        probe_max: cfg.retry.backoff.max,
        give_up_after: cfg.give_up_after,
    };
    let pacer = Pacer::new(cfg.rate, controller, cfg.burst, outage, stop.clone(), counters.pace.clone());
    pacer.log_start(ledger.settled_rate().is_some());
    let progress = Progress::start(counters.clone(), !cfg.quiet, limit);
    let auth = AuthUsed {
        signed: cfg.signing_secret.is_some(),
        basic: !cfg.webhook_url.username().is_empty() || cfg.webhook_url.password().is_some(),
        headers: !cfg.headers.is_empty(),
    };
    let shared = Arc::new(Shared {
        deliverer,
        pacer,
        retry: cfg.retry,
        counters: counters.clone(),
        stopper: Arc::new(Stopper::new(stop.clone())),
        cancel: stop,
        in_flight,
        first_answers: FirstAnswers::new(cfg.concurrency),
        auth,
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
    if let Some(rate) = shared.pacer.to_remember() {
        ledger.remember_rate(rate);
    }
    // The writer's own error says why it stopped; the others only saw it gone.
    let ledger_error = match ledger.close().await {
        Err(e) => Some(e),
        Ok(()) => ledger_error,
    };
    // A ledger failure stops the workers too; that is not an interrupt (nor is giving up, which
    // stops them through `stop`).
    let interrupted = cancel.is_cancelled() && ledger_error.is_none();
    let mut summary = Summary::from_counters(&counters, started.elapsed(), false, interrupted);
    let (mode, final_rate) = shared.pacer.final_rate();
    summary.rate = RateSummary::new(mode, final_rate);
    Ok(Report {
        summary,
        ledger_error,
        source_error: produced.source_error,
        malformed: produced.malformed,
        malformed_count: produced.malformed_count,
        undated: produced.undated,
        pending: counters.pending.load(Relaxed),
        gave_up: shared.pacer.gave_up(),
        stopped: shared.stopper.reason(),
        dry_run_text: None,
        target: target_name,
        webhook,
    })
}

/// `--dry-run`: count what would go and render the first request. `names` is (target, where the
/// events came from, what the webhook lookup found); `auto_start` where `--rate auto` would start.
#[allow(clippy::too_many_arguments)]
async fn dry_run(
    cfg: &RunConfig,
    deliverer: Deliverer,
    (rx, producer, in_flight): (async_channel::Receiver<Event>, tokio::task::JoinHandle<Produced>, &InFlight),
    counters: &Counters,
    started: Instant,
    cancel: CancellationToken,
    (target_name, from, webhook): (String, String, Option<String>),
    auto_start: Option<f64>,
) -> Result<Report, RunError> {
    let mut to_send = 0u64;
    let mut sample = None;
    while let Ok(ev) = rx.recv().await {
        // Nothing is recorded in a dry run, so a repeat is found only while its first copy is
        // still queued: near repeats are counted, far ones are counted as to send.
        in_flight.remove(&ev.id);
        to_send += 1;
        if sample.is_none() {
            sample = Some(deliverer.render(&deliverer.prepare(&ev)));
        }
    }
    let produced = produced(producer).await;
    if let Some(e) = produced.ledger_error {
        return Err(e.into());
    }
    let text = DryRun {
        from: &from,
        webhook: webhook.as_deref(),
        target: &target_name,
        selected: counters.selected.load(Relaxed),
        skipped: counters.skipped.load(Relaxed),
        to_send,
        rate: cfg.rate,
        auto_start,
        concurrency: cfg.concurrency,
        sample: sample.as_deref(),
    }
    .text();
    let mut summary = Summary::from_counters(counters, started.elapsed(), true, cancel.is_cancelled());
    summary.rate = match cfg.rate {
        RateMode::Fixed(rate) => RateSummary::new(cfg.rate, rate.get()),
        RateMode::Auto => RateSummary::new(cfg.rate, None),
    };
    Ok(Report {
        summary,
        ledger_error: None,
        source_error: produced.source_error,
        malformed: produced.malformed,
        malformed_count: produced.malformed_count,
        undated: produced.undated,
        pending: 0,
        gave_up: None,
        stopped: None,
        dry_run_text: Some(text),
        target: target_name,
        webhook,
    })
}
