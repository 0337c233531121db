//! The ledger's writer task: it owns the SQLite connection, commits whatever outcomes have queued
//! up in one transaction (group commit), answers lookups in the same order as records, and only
//! then tells each worker its outcome is durable.
//!
//! Outcomes go into the journal ([`super::open::JOURNAL`]), in the order they come, and are
//! folded into `outcomes` every [`FOLD_EVERY`] and at the end. Until folded, the writer knows
//! their ids and statuses in memory, so a lookup finds them without a query: that set is the
//! price of the journal, bounded by [`FOLD_EVERY`].
//!
//! It runs on the runtime, and its SQLite calls block the thread it runs on while a batch
//! commits (tens of microseconds; a checkpoint's fsync longer). It used to be a thread of its
//! own, and the hand-off to it and back cost a context switch every few events: on two cores,
//! more CPU than SQLite itself (`docs/performance.md`, "Where the time goes").

use bytestring::ByteString;
use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::open::fold_journal;
use super::{LedgerError, Outcome, Recorded, Status, now_ms};

/// Most outcomes committed in one transaction.
const MAX_BATCH: usize = 4096;

/// Outcomes journaled before they are folded into `outcomes`. More makes a fold touch each page of
/// `outcomes` for more outcomes at once, at about 80 bytes of memory per outcome for the set of
/// their ids. Measured (400,000 events with ids in no order, CPU per event): 21.5 µs written
/// straight into `outcomes`, 17.6 µs folding every 8,192, 16.7 µs every 12,288, 15.5 µs every
/// 16,384; the last put a million-event run at 15.6 MiB, too near `bench-memory.sh`'s 16.
/// A fold holds the runtime for a few milliseconds.
pub(super) const FOLD_EVERY: usize = 12_288;

/// What the workers and the producer ask the writer.
pub(super) enum Msg {
    Record(Outcome, oneshot::Sender<()>),
    Lookup(Vec<ByteString>, oneshot::Sender<Vec<Option<Recorded>>>),
    /// The rate a `--rate auto` run settled on, per second.
    Rate(f64),
    /// Commit and stop.
    Close,
}

pub(super) async fn writer(
    conn: Connection,
    target_id: i64,
    run_floor: i64,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    path: &Path,
) -> Result<(), LedgerError> {
    let mut batch = Vec::with_capacity(64);
    let mut acks = Vec::with_capacity(64);
    // The journal's outcomes, by id: what a lookup finds before they are folded. All of this run.
    // Owned copies of the ids, so the set does not keep the input's read buffers alive.
    let mut journaled: HashMap<Box<str>, Status> = HashMap::new();
    let mut closing = false;
    while !closing {
        let Some(first) = rx.recv().await else { break };
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        // BEGIN and COMMIT as cached statements: `Connection::transaction` parses them anew each
        // time, which at a few outcomes per batch was a visible share of the writer's work.
        // Should anything below fail, the writer stops and dropping the connection rolls back.
        conn.prepare_cached("BEGIN").and_then(|mut s| s.execute([])).map_err(|e| LedgerError::writing(path, e))?;
        {
            let mut append = conn
                .prepare_cached(
                    "INSERT INTO journal (target_id, event_id, status, attempts, last_status, last_error, at, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(|e| LedgerError::writing(path, e))?;
            let mut lookup = conn
                .prepare_cached("SELECT status, updated_at >= ?3 FROM outcomes WHERE target_id = ?1 AND event_id = ?2")
                .map_err(|e| LedgerError::writing(path, e))?;
            // Never below the run's floor, so a clock that stepped back cannot make this run's
            // outcomes look like an earlier run's.
            let now = now_ms().max(run_floor);
            for msg in batch.drain(..) {
                match msg {
                    Msg::Record(o, ack) => {
                        append
                            .execute(params![
                                target_id,
                                &*o.event_id,
                                o.status as i64,
                                o.attempts,
                                o.last_status,
                                o.last_error,
                                now,
                                o.body.as_deref(),
                            ])
                            .map_err(|e| LedgerError::writing(path, e))?;
                        journaled.insert(Box::from(&*o.event_id), o.status);
                        acks.push(ack);
                    }
                    Msg::Lookup(ids, reply) => {
                        let mut out = Vec::with_capacity(ids.len());
                        for id in &ids {
                            if let Some(&status) = journaled.get(&**id) {
                                out.push(Some(Recorded { status, this_run: true }));
                                continue;
                            }
                            let s: Option<(i64, bool)> = lookup
                                .query_row(params![target_id, &**id, run_floor], |r| Ok((r.get(0)?, r.get(1)?)))
                                .optional()
                                .map_err(|e| LedgerError::writing(path, e))?;
                            out.push(s.and_then(|(status, this_run)| {
                                Status::from_i64(status).map(|status| Recorded { status, this_run })
                            }));
                        }
                        let _ = reply.send(out);
                    }
                    Msg::Rate(per_sec) => {
                        conn.execute(
                            "INSERT INTO target_rates (target_id, per_sec, updated_at) VALUES (?1, ?2, ?3)
                             ON CONFLICT (target_id) DO UPDATE SET per_sec = excluded.per_sec, updated_at = excluded.updated_at",
                            params![target_id, per_sec, now],
                        )
                        .map_err(|e| LedgerError::sqlite(path, e))?;
                    }
                    Msg::Close => closing = true,
                }
            }
        }
        conn.prepare_cached("COMMIT").and_then(|mut s| s.execute([])).map_err(|e| LedgerError::writing(path, e))?;
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
        if journaled.len() >= FOLD_EVERY {
            fold_journal(&conn).map_err(|e| LedgerError::writing(path, e))?;
            journaled.clear();
        }
    }
    // After a Close, or once every sender is gone (a crash leaves it to the next run's open).
    if !journaled.is_empty() {
        fold_journal(&conn).map_err(|e| LedgerError::writing(path, e))?;
    }
    // Fold the WAL back into the database so the file is whole on its own.
    let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
    Ok(())
}
