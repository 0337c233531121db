//! The ledger's writer task: it owns the SQLite connection, commits whatever outcomes have queued
//! up in one transaction (group commit), answers lookups in the same order as records, and only
//! then tells each worker its outcome is durable.
//!
//! It runs on the runtime, and its SQLite calls block the thread it runs on while a batch
//! commits (tens of microseconds; a checkpoint's fsync longer). It used to be a thread of its
//! own, and the hand-off to it and back cost a context switch every few events: on two cores,
//! more CPU than SQLite itself (`docs/performance.md`, "Where the time goes").

use bytestring::ByteString;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::{LedgerError, Outcome, Recorded, Status, now_ms};

/// Most outcomes committed in one transaction.
const MAX_BATCH: usize = 4096;

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
            let mut upsert = conn
                .prepare_cached(
                    "INSERT INTO outcomes
                       (target_id, event_id, status, attempts, last_status, last_error, first_at, updated_at, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)
                     ON CONFLICT (target_id, event_id) DO UPDATE SET
                       status = excluded.status,
                       attempts = attempts + excluded.attempts,
                       last_status = excluded.last_status,
                       last_error = excluded.last_error,
                       updated_at = excluded.updated_at,
                       body = excluded.body",
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
                        upsert
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
                        acks.push(ack);
                    }
                    Msg::Lookup(ids, reply) => {
                        let mut out = Vec::with_capacity(ids.len());
                        for id in &ids {
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
    }
    // Fold the WAL back into the database so the file is whole on its own.
    let _ = conn.pragma_update(None, "wal_checkpoint", "TRUNCATE");
    Ok(())
}
