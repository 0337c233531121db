//! The replay itself: wires a producer ([`crate::producer`]) to a pool of workers
//! ([`crate::worker`]), the ledger and the progress bar, and turns how they ended into a
//! [`Report`]. With `--dry-run`, the events are counted and the first request is rendered instead.
//!
//! Cancellation (Ctrl-C, SIGTERM): the producer stops fetching, workers finish the request they
//! have in flight (bounded by `--timeout`), record it, and start nothing new. Events still in the
//! channel were never attempted and are simply fetched again by the next run.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::RunConfig;
use crate::deliver::{self, Deliverer, Target};
use crate::error::RunError;
use crate::event::Event;
use crate::ledger::Ledger;
use crate::producer::{Produced, open_source, produced, spawn_producer};
use crate::progress::{Counters, Progress};
use crate::rate::Gate;
use crate::report::{DryRun, Report, Summary};
use crate::source::Source;
use crate::worker::{Shared, work};

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
        .map_err(|error| RunError::Endpoint { url: deliver::display_url(&cfg.webhook_url), error })?;
    let ledger = Ledger::open(&cfg.ledger, &cfg.webhook_url, &cfg.event_type)?;
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
    // The writer's own error says why it stopped; the others only saw it gone.
    let ledger_error = match ledger.close().await {
        Err(e) => Some(e),
        Ok(()) => ledger_error,
    };
    // A ledger failure stops the workers through `cancel` too; that is not an interrupt.
    let interrupted = cancel.is_cancelled() && ledger_error.is_none();
    let summary = Summary::from_counters(&counters, started.elapsed(), false, interrupted);
    Ok(Report {
        summary,
        ledger_error,
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
    let text = DryRun {
        from: &from,
        webhook: webhook.as_deref(),
        target: &target_name,
        selected: counters.selected.load(Relaxed),
        skipped: counters.skipped.load(Relaxed),
        to_send,
        rate: cfg.rate,
        concurrency: cfg.concurrency,
        sample: sample.as_deref(),
    }
    .text();
    let summary = Summary::from_counters(counters, started.elapsed(), true, cancel.is_cancelled());
    Ok(Report {
        summary,
        ledger_error: None,
        source_error: produced.source_error,
        malformed: produced.malformed,
        malformed_count: produced.malformed_count,
        pending: 0,
        dry_run_text: Some(text),
        target: target_name,
        webhook,
    })
}
