//! A delivery worker: take an event from the channel, deliver it through the shared gate with
//! retries, and hand its outcome to the ledger. A worker sends nothing more until its previous
//! outcome is durable — that is what keeps a crash from re-sending more than `--concurrency` events.

use bytestring::ByteString;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::deliver::connection::Connection;
use crate::deliver::retry::{AttemptResult, Decision, RetryPolicy, classify};
use crate::deliver::{Attempt, Deliverer, Prepared};
use crate::error::{AuthUsed, StopReason};
use crate::event::Event;
use crate::ledger::{Committed, LedgerError, LedgerHandle, Outcome, Status};
use crate::output::progress::Counters;
use crate::pacing::{Pacer, Signal, Turn};
use crate::run::dedupe::InFlight;
use crate::run::stop::{self, FirstAnswers, Stopper};

/// Everything a worker shares with the others.
pub struct Shared {
    pub deliverer: Deliverer,
    /// The rate gate, the adaptive rate and the outage pause.
    pub pacer: Pacer,
    pub retry: RetryPolicy,
    pub counters: Arc<Counters>,
    pub cancel: CancellationToken,
    /// Ids queued and not yet recorded; a worker clears an id once its outcome is committed.
    pub in_flight: Arc<InFlight>,
    /// Stops the run for a reason (its token is `cancel`).
    pub stopper: Arc<Stopper>,
    /// A receiver that rejects every first answer stops the run.
    pub first_answers: FirstAnswers,
    /// What the requests authenticate with, for the advice when they are rejected.
    pub auth: AuthUsed,
}

/// Deliver one event: attempts through the gate, retries per policy. Never returns early without
/// an outcome: when cancelled mid-way (or when the run gives up on an unreachable webhook) the
/// event is `Pending`.
async fn deliver_one(s: &Shared, conn: &mut Connection, ev: &Event, prepared: Prepared) -> Outcome {
    let mut attempts = 0u32;
    // Retries this event has spent: failures during an outage do not spend any.
    let mut spent = 0u32;
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
        // An outage holds the pool: wait, or go as its one probe.
        let probe = match s.pacer.permit().await {
            Turn::Send => false,
            Turn::Probe => true,
            Turn::Stop => return outcome(Status::Pending, attempts, last_status, last_error),
        };
        // Connect first (not a request: the rate gate does not count it), then take a turn.
        let connected = tokio::select! {
            biased;
            () = s.cancel.cancelled() => return outcome(Status::Pending, attempts, last_status, last_error),
            c = s.deliverer.connect(conn) => c,
        };
        let (a, sending) = match connected {
            Err(failed) => (failed, None),
            Ok(()) => {
                let sending = tokio::select! {
                    biased;
                    () = s.cancel.cancelled() => return outcome(Status::Pending, attempts, last_status, last_error),
                    sending = s.pacer.acquire() => sending,
                };
                (s.deliverer.attempt(conn, &prepared).await, Some(sending))
            }
        };
        attempts += 1;
        s.counters.record_attempt(a.status(), a.latency());
        // Counted when it goes out, not when its wait ends: a wait can end in an outage's give-up
        // or an interrupt with no request sent, and a first attempt is never a retry.
        if attempts > 1 {
            s.counters.retries.fetch_add(1, Relaxed);
        }
        // A failure of this machine's own (out of file descriptors), not the webhook's.
        let mut local = false;
        let result = match &a {
            Attempt::Answered { status, retry_after, .. } => {
                AttemptResult::Status { code: *status, retry_after: retry_after.as_deref() }
            }
            Attempt::NoAnswer { kind, cause, .. } => {
                s.counters.record_error(*cause);
                local = cause.is_local();
                AttemptResult::Transport(*kind)
            }
            Attempt::ProxyRefused { message, .. } => {
                s.counters.record_error(crate::deliver::cause::Cause::Proxy);
                // Neither the event's fault nor an outage: the event stays pending for the rerun.
                s.stopper.stop(StopReason::ProxyRefused(message.clone()));
                return outcome(Status::Pending, attempts, None, Some(message.clone()));
            }
        };
        let verdict = classify(result, SystemTime::now(), s.retry.backoff.max);
        let mut decision = verdict.decision;
        last_status = a.status();
        let latency = a.latency();
        last_error = match a {
            Attempt::Answered { status, .. } if (200..300).contains(&status) => None,
            Attempt::Answered { status, body_start, .. } if body_start.is_empty() => Some(format!("HTTP {status}")),
            Attempt::Answered { status, body_start, .. } => Some(format!("HTTP {status}: {body_start}")),
            Attempt::NoAnswer { message, .. } | Attempt::ProxyRefused { message, .. } => Some(message),
        };
        let spends = match (local, probe) {
            // Our own limit (out of file descriptors) says nothing about the webhook: not an
            // outage, not a reason to slow down. A probe must still come back, as an answer.
            (true, false) => true,
            (true, true) => s.pacer.record(Signal::Other, latency, probe, None, None),
            (false, _) => s.pacer.record(verdict.signal, latency, probe, last_error.as_deref(), sending.as_ref()),
        };
        // No longer in flight: a backoff is not a request.
        drop(sending);
        let mut held = false;
        if let Some(status) = last_status {
            match s.first_answers.observe(status) {
                stop::Verdict::Usual => {}
                // Not failed yet: the credentials may be what is wrong, not this event.
                stop::Verdict::Hold => {
                    decision = Decision::Retry { after: None };
                    held = true;
                }
                stop::Verdict::Stop { answers } => {
                    s.stopper.stop(StopReason::Rejected { status, answers, auth: s.auth });
                    return outcome(Status::Pending, attempts, last_status, last_error);
                }
            }
        }
        let spends = spends && !held;
        debug!(event = %ev.id, status = ?last_status, latency_ms = latency.as_secs_f64() * 1e3, probe, "attempt");
        match decision {
            Decision::Delivered => return outcome(Status::Delivered, attempts, last_status, None),
            Decision::Fail => return outcome(Status::Failed, attempts, last_status, last_error),
            Decision::Retry { after } => {
                if spends {
                    if spent >= s.retry.max_retries {
                        let tries = crate::words::count(u64::from(attempts), "attempt", "attempts");
                        let msg = last_error.map(|e| format!("{e} (gave up after {tries})"));
                        return outcome(Status::Failed, attempts, last_status, msg);
                    }
                    spent += 1;
                }
                if s.cancel.is_cancelled() {
                    return outcome(Status::Pending, attempts, last_status, last_error);
                }
                let retry = spent.saturating_sub(1);
                let delay = match after {
                    // The pool is held for an outage: the probe schedule is the wait.
                    None if s.pacer.is_out() => Duration::ZERO,
                    _ => {
                        // No request for this event goes before its Retry-After; the pacer says
                        // whether the rest of the pool waits too.
                        if let Some(d) = after {
                            s.pacer.retry_after(d);
                        }
                        s.retry.wait(retry, after, fastrand::f64())
                    }
                };
                let counted = if spends {
                    format!("retry {spent}/{}", s.retry.max_retries)
                } else if held {
                    "a rejection among the run's first answers is retried, not counted".to_owned()
                } else {
                    "the webhook looks unreachable, so this retry is not counted".to_owned()
                };
                info!(
                    "{}: {}; {counted}, in {}",
                    ev.id,
                    last_error.as_deref().unwrap_or("failed"),
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
            }
        }
    }
}

/// A worker: take an event, deliver it, hand its outcome to the ledger, repeat. The outcome's
/// commit overlaps taking and preparing the next event, but the worker sends nothing more until
/// it is durable — that is what keeps a crash from re-sending more than `--concurrency` events.
pub async fn work(s: Arc<Shared>, rx: async_channel::Receiver<Event>, ledger: LedgerHandle) -> Result<(), LedgerError> {
    let mut conn = Connection::default();
    let mut unsettled: Option<(Status, ByteString, Committed)> = None;
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
            // The event's own id, not a copy of the outcome's: one allocation fewer per event.
            unsettled = Some((status, ev.id, ledger.submit(o)?));
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
async fn settle(s: &Shared, (status, id, committed): (Status, ByteString, Committed)) -> Result<(), LedgerError> {
    committed.wait().await?;
    // Only now: a repeat of this id is found in the ledger from here on (see `crate::run::dedupe`).
    s.in_flight.remove(&id);
    match status {
        Status::Delivered => s.counters.delivered.fetch_add(1, Relaxed),
        Status::Failed => s.counters.failed.fetch_add(1, Relaxed),
        Status::Pending => s.counters.pending.fetch_add(1, Relaxed),
    };
    Ok(())
}
