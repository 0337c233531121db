//! The producer: read the source a batch at a time, keep what the selection asks for, drop what
//! the ledger says is done, and feed the rest into a bounded channel. `run` delivers from that
//! channel; `export` writes it out.
//!
//! Cancellation stops fetching at once; whatever is still in the channel was never attempted and
//! is fetched again by the next run.

use bytestring::ByteString;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::{Resume, Selection, SourceConfig};
use crate::deliver::retry::RetryPolicy;
use crate::error::RunError;
use crate::event::{Event, created_at_problem};
use crate::ledger::{LedgerError, LedgerHandle, Status};
use crate::output::estimate::{TimeProgress, to_ppm};
use crate::output::progress::Counters;
use crate::report::Undated;
use crate::run::dedupe::InFlight;
use crate::source::{ApiClient, ApiPager, NdjsonReader, Source, SourceError};

/// Open the configured source.
pub async fn open_source(
    source: &SourceConfig,
    retry: RetryPolicy,
    timeout: Duration,
    cancel: &CancellationToken,
    show_waits: bool,
) -> Result<Source, RunError> {
    Ok(match source {
        SourceConfig::File(path) => Source::Ndjson(Box::new(
            NdjsonReader::open(path)
                .await
                .map_err(|error| RunError::Input { path: path.display().to_string(), error })?,
        )),
        SourceConfig::Api { base, token, query } => {
            let api =
                ApiClient::new(base.clone(), token.clone(), retry, timeout, cancel.clone())?.show_waits(show_waits);
            Source::Api(Box::new(ApiPager::new(api, *query)))
        }
    })
}

/// What `--created-before` / `--created-after` make of an event.
#[derive(Debug, PartialEq, Eq)]
pub enum Placed {
    Selected,
    Outside,
    /// A time filter is set and the event has no readable `created_at`: it cannot be placed in
    /// time, so it is not sent, and it is reported: nothing is dropped silently.
    Undated,
}

/// Where an event falls for `--created-before` / `--created-after`.
pub fn place(sel: &Selection, ev: &Event) -> Placed {
    if sel.created_before.is_none() && sel.created_after.is_none() {
        return Placed::Selected;
    }
    let Some(t) = ev.created_at() else { return Placed::Undated };
    if sel.created_before.is_none_or(|b| t < b) && sel.created_after.is_none_or(|a| t > a) {
        Placed::Selected
    } else {
        Placed::Outside
    }
}

/// How reading the source ended.
#[derive(Debug, Default)]
pub struct Produced {
    /// The source failed (exit status 3).
    pub source_error: Option<SourceError>,
    /// The first few entries that were not events.
    pub malformed: Vec<String>,
    pub malformed_count: u64,
    /// Events not sent because a time filter could not place them.
    pub undated: Undated,
    pub ledger_error: Option<LedgerError>,
}

/// Start reading `source` on a thread of its own: selected events (minus what the ledger says to
/// skip) come out of the returned bounded channel; the task's result says how reading ended. `run`
/// delivers from the channel; `export` writes it out.
///
/// Why a thread: reading, checking each event's JSON and the dedupe were a tenth of the one
/// thread that also does all the HTTP, while the second core had room. The producer hands its
/// events over a source batch at a time (a few hundred), to a relay task on the caller's runtime
/// that feeds the channel, so the two threads wake each other once per batch, not per event
/// (`docs/performance.md`, "The producer on a thread of its own").
pub fn spawn_producer(
    source: Source,
    sel: Selection,
    resume: Resume,
    ledger: Option<(LedgerHandle, Arc<InFlight>)>,
    counters: Arc<Counters>,
    capacity: usize,
    cancel: CancellationToken,
) -> (async_channel::Receiver<Event>, tokio::task::JoinHandle<Produced>) {
    let (tx, rx) = async_channel::bounded::<Event>(capacity.max(1));
    // One batch ahead of the channel: the next page is fetched while this one is delivered.
    let (batches, mut handed) = tokio::sync::mpsc::channel::<Vec<Event>>(1);
    let (done, ended) = tokio::sync::oneshot::channel::<Produced>();
    let reading = std::thread::Builder::new().name("producer".into()).spawn(move || {
        let produced = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => {
                let p = rt.block_on(produce(source, sel, resume, ledger, counters, batches, cancel));
                // Do not wait for a blocked read of stdin.
                rt.shutdown_background();
                p
            }
            Err(e) => stopped(format!("cannot start the reader: {e}")),
        };
        let _ = done.send(produced);
    });
    let relay = tokio::spawn(async move {
        if let Err(e) = reading {
            return stopped(format!("cannot start the reader: {e}"));
        }
        'handing: while let Some(batch) = handed.recv().await {
            for ev in batch {
                if tx.send(ev).await.is_err() {
                    // Nobody takes events any more: dropping `handed` stops the producer.
                    break 'handing;
                }
            }
        }
        drop(handed);
        ended.await.unwrap_or_else(|_| stopped("the reader stopped".into()))
    });
    (rx, relay)
}

fn stopped(why: String) -> Produced {
    Produced { source_error: Some(SourceError::Malformed(why)), ..Produced::default() }
}

/// The producer's result, also when its task died.
pub async fn produced(task: tokio::task::JoinHandle<Produced>) -> Produced {
    task.await.unwrap_or_else(|e| stopped(format!("the reader stopped: {e}")))
}

const MALFORMED_KEEP: usize = 20;

/// Read the source batch by batch, select, skip what the ledger says is done, and queue the rest.
async fn produce(
    mut source: Source,
    sel: Selection,
    resume: Resume,
    ledger: Option<(LedgerHandle, Arc<InFlight>)>,
    counters: Arc<Counters>,
    out: tokio::sync::mpsc::Sender<Vec<Event>>,
    cancel: CancellationToken,
) -> Produced {
    let mut p = Produced::default();
    // The events of this batch to hand over.
    let mut queued = Vec::new();
    let limit = sel.limit.unwrap_or(u64::MAX);
    // How far through the source we are, for the bar's total and ETA ([`crate::output::estimate`]): a
    // file by its bytes, the API by `created_at` towards the end of the selection.
    let mut clock = matches!(source, Source::Api(_)).then(|| match sel.created_before {
        Some(end) => TimeProgress::new(end),
        None => TimeProgress::until_now(jiff::Timestamp::now()),
    });
    let mut read_before = 0.0;
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
        let mut events = Vec::with_capacity(batch.events.len());
        for ev in batch.events {
            match place(&sel, &ev) {
                Placed::Selected => events.push(ev),
                Placed::Outside => {}
                Placed::Undated => {
                    p.undated.count += 1;
                    if p.undated.first.len() < MALFORMED_KEEP {
                        p.undated.first.push(format!("{}: {}", ev.id, created_at_problem(&ev)));
                    }
                }
            }
        }
        // A file's fraction is known per batch: spread it over the batch's events, so the total
        // estimated from (selected so far / fraction) does not jump ahead of the count.
        let read_after = source.read_fraction();
        let per_event = read_after.map(|after| (after - read_before) / events.len().max(1) as f64);
        let mut read_at = read_before;
        read_before = read_after.unwrap_or(read_before);
        // In flight first, then the ledger: see `crate::run::dedupe` for why this order.
        let (in_flight_before, recorded) = match &ledger {
            Some((l, in_flight)) if !events.is_empty() => {
                let before = in_flight.snapshot(events.iter().map(|e| &*e.id));
                match l.lookup(events.iter().map(|e| e.id.clone()).collect()).await {
                    Ok(r) => (before, r),
                    Err(e) => {
                        p.ledger_error = Some(e);
                        break;
                    }
                }
            }
            _ => (vec![false; events.len()], vec![None; events.len()]),
        };
        // Ids this batch queued: both checks above ran before the batch, so a repeat within it is
        // found here, even when a worker has already committed the first copy and taken it out
        // of the in-flight set. At most one batch of ids.
        let mut queued_here: HashSet<ByteString, foldhash::fast::RandomState> = HashSet::default();
        for ((ev, was_in_flight), recorded) in events.drain(..).zip(in_flight_before).zip(recorded) {
            let repeat = was_in_flight || recorded.is_some_and(|r| r.this_run) || queued_here.contains(&ev.id);
            if repeat {
                counters.duplicates.fetch_add(1, Relaxed);
                continue;
            }
            // What earlier runs did (`--fresh` ignores it).
            let earlier = recorded.filter(|_| resume != Resume::Fresh).map(|r| r.status);
            if resume == Resume::OnlyFailed && earlier != Some(Status::Failed) {
                continue;
            }
            if counters.selected.load(Relaxed) >= limit {
                break 'pages;
            }
            if let Some(step) = per_event {
                read_at += step;
                counters.source_read_ppm.store(to_ppm(read_at), Relaxed);
            }
            if let Some(clock) = &mut clock
                && let Some(t) = ev.created_at()
            {
                clock.see(t);
                counters.source_read_ppm.store(clock.fraction().map_or(0, to_ppm), Relaxed);
            }
            counters.selected.fetch_add(1, Relaxed);
            if resume == Resume::Skip && earlier == Some(Status::Delivered) {
                counters.skipped.fetch_add(1, Relaxed);
                continue;
            }
            if ledger.is_some() {
                queued_here.insert(ev.id.clone());
            }
            queued.push(ev);
        }
        if !hand_over(&out, &mut queued, ledger.as_ref().map(|(_, f)| &**f), &cancel).await {
            break;
        }
    }
    // What a `--limit` stopped in the middle of a batch: counted as selected, so it goes out.
    hand_over(&out, &mut queued, ledger.as_ref().map(|(_, f)| &**f), &cancel).await;
    counters.source_done.store(true, Relaxed);
    p
}

/// Hand the batch's events over (none is a no-op); false once nobody takes them or the run is
/// cancelled (then they were never attempted, and the next run fetches them again). Their ids go
/// in flight first, before a worker can take them (and take them out again): one lock for the
/// batch, which the workers' thread shares.
async fn hand_over(
    out: &tokio::sync::mpsc::Sender<Vec<Event>>,
    queued: &mut Vec<Event>,
    in_flight: Option<&InFlight>,
    cancel: &CancellationToken,
) -> bool {
    if queued.is_empty() {
        return true;
    }
    if let Some(in_flight) = in_flight {
        in_flight.insert_all(queued.iter().map(|e| &e.id));
    }
    let batch = std::mem::take(queued);
    tokio::select! {
        r = out.send(batch) => r.is_ok(),
        () = cancel.cancelled() => false,
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
        assert_eq!(place(&sel, &ev(Some("2026-02-28T23:59:59Z"))), Placed::Selected);
        assert_eq!(place(&sel, &ev(Some("2026-03-01T00:00:00Z"))), Placed::Outside);
        assert_eq!(place(&sel, &ev(None)), Placed::Undated);
        assert_eq!(place(&sel, &ev(Some("soon"))), Placed::Undated);
        let sel = Selection { created_before: None, created_after: t("2026-03-01T00:00:00Z"), limit: None };
        assert_eq!(place(&sel, &ev(Some("2026-03-01T01:00:00+00:30"))), Placed::Selected);
        assert_eq!(place(&sel, &ev(Some("2026-02-01T00:00:00Z"))), Placed::Outside);
        assert_eq!(place(&Selection::default(), &ev(None)), Placed::Selected);
    }
}
