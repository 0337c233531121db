//! The ledger's writer task: it records whatever outcomes have queued up with one `write` to the
//! journal (group commit), answers lookups in the same order as records, and only then tells
//! each worker its outcome is safe.
//!
//! Outcomes go to the journal ([`super::journal`]), in the order they come. Every
//! [`FOLD_EVERY`] the writer starts the journal's other file and folds the full one into
//! `outcomes` on a blocking thread, over a connection of its own, while the run goes on; the
//! last file is folded when the run ends. Until folded, the writer knows the outcomes' ids and
//! statuses in memory, so a lookup finds them without a query: two sets (the file being written
//! and the one being folded), each bounded by [`FOLD_EVERY`].
//!
//! It runs on the runtime. It used to be a thread of its own, and the hand-off to it and back
//! cost a context switch every few events: on two cores, more CPU than SQLite itself
//! (`docs/performance.md`, "Where the time goes"). A fold is a hand-off too, but one per
//! [`FOLD_EVERY`] outcomes.

use bytestring::ByteString;
use std::collections::HashMap;
use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::journal::{self, Failure, Journal};
use super::{LedgerError, Outcome, Recorded, Status, now_ms, step};

/// Most outcomes recorded in one `write`.
const MAX_BATCH: usize = 4096;

/// Outcomes in one journal file before it is folded into `outcomes`. More makes a fold touch each
/// page of `outcomes` for more outcomes at once, at about 80 bytes of memory per outcome for the
/// set of their ids, two sets while a fold runs. When folds ran on the writer's own thread,
/// every 12,288 was the measured best (400,000 events with ids in no order); on a thread of their
/// own their size costs the run less, and 8,192 keeps a million-event run at 14.3 MiB where
/// 12,288 took it to 15.4–15.9 MiB (`scripts/bench-memory.sh`, limit 16).
pub(super) const FOLD_EVERY: usize = 8_192;

/// A journal file is also folded once it holds this many bytes, so the bodies of failed events
/// (kept in the journal, read back whole by the fold) cannot make a fold's memory large.
const FOLD_BYTES: u64 = 4 << 20;

/// What the workers and the producer ask the writer.
pub(super) enum Msg {
    Record(Outcome, oneshot::Sender<()>),
    Lookup(Vec<ByteString>, oneshot::Sender<Vec<Option<Recorded>>>),
    /// The rate a `--rate auto` run settled on, per second.
    Rate(f64),
    /// Commit and stop.
    Close,
}

/// What the writer needs, from [`super::open::for_run`].
pub(super) struct Parts {
    /// For lookups and, at the end, the settled rate.
    pub(super) conn: Connection,
    /// For folds, on a blocking thread.
    pub(super) folder: Connection,
    pub(super) journal: Journal,
    pub(super) target_id: i64,
    pub(super) run_floor: i64,
    /// The target had no outcomes before this run: only this run's folds put any there.
    pub(super) fresh: bool,
}

/// Ids and statuses of journaled outcomes not yet folded. foldhash: SipHash's resistance to chosen
/// keys buys nothing for ids the user's own account supplied, and it was 2% of a run's CPU.
type Unfolded = HashMap<Box<str>, Status, foldhash::fast::RandomState>;

/// A fold on a blocking thread: the folder connection comes back with its result.
type Folding = JoinHandle<(Connection, Result<(), Failure>)>;

pub(super) async fn writer(parts: Parts, mut rx: mpsc::UnboundedReceiver<Msg>, path: &Path) -> Result<(), LedgerError> {
    let Parts { conn, folder, mut journal, target_id, run_floor, fresh } = parts;
    // For a target with no earlier outcomes, which ids this run's folds may have put in `outcomes`.
    let mut folded = fresh.then(Folded::default);
    let mut batch = Vec::with_capacity(64);
    let mut acks = Vec::with_capacity(64);
    // This run's outcomes in the file being written, and in the one being folded.
    let mut journaled = Unfolded::default();
    let mut folding_ids = Unfolded::default();
    // The folder connection while no fold runs; the fold holding it while one does.
    let mut folder = Ok::<Connection, Folding>(folder);
    let mut rate = None;
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
        {
            let mut lookup = conn
                .prepare_cached("SELECT status, updated_at >= ?3 FROM outcomes WHERE target_id = ?1 AND event_id = ?2")
                .map_err(|e| LedgerError::sqlite(path, e))?;
            // Never below the run's floor, so a clock that stepped back cannot make this run's
            // outcomes look like an earlier run's.
            let now = now_ms().max(run_floor);
            // The batch's lookups share one read transaction: each on its own took and released
            // SQLite's read lock.
            let mut reading = false;
            for msg in batch.drain(..) {
                match msg {
                    Msg::Record(o, ack) => {
                        journal.push(&o, now);
                        journaled.insert(Box::from(&*o.event_id), o.status);
                        acks.push(ack);
                    }
                    Msg::Lookup(ids, reply) => {
                        if !reading {
                            step(&conn, "BEGIN").map_err(|e| LedgerError::sqlite(path, e))?;
                            reading = true;
                        }
                        let mut out = Vec::with_capacity(ids.len());
                        for id in &ids {
                            if let Some(&status) = journaled.get(&**id).or_else(|| folding_ids.get(&**id)) {
                                out.push(Some(Recorded { status, this_run: true }));
                                continue;
                            }
                            if folded.as_ref().is_some_and(|f| !f.may_hold(id)) {
                                out.push(None);
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
                    Msg::Rate(per_sec) => rate = Some(per_sec),
                    Msg::Close => closing = true,
                }
            }
            if reading {
                step(&conn, "COMMIT").map_err(|e| LedgerError::sqlite(path, e))?;
            }
        }
        // Should this fail, the writer stops: what was written before is in the journal, and
        // the next run's open folds it.
        journal.write().map_err(|e| LedgerError::journaling(path, e))?;
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
        let (records, bytes) = journal.size();
        if records >= FOLD_EVERY || bytes >= FOLD_BYTES {
            // The other file's slot is free once the fold before has committed.
            let conn = finish(folder, path).await?;
            let full = journal.rotate().map_err(|e| LedgerError::journaling(path, e))?;
            if let Some(f) = &mut folded {
                journaled.keys().for_each(|id| f.insert(id));
            }
            // The folded file's set, emptied, takes the next file's ids: grown once, kept.
            folding_ids.clear();
            std::mem::swap(&mut journaled, &mut folding_ids);
            folder = Err(tokio::task::spawn_blocking(move || {
                let result = journal::fold_path(&conn, &full);
                (conn, result)
            }));
        }
    }
    // After a Close, or once every sender is gone (then as a crash would: the next run's open
    // folds the journal, as here).
    let folder = finish(folder, path).await?;
    let (last, real) = (journal.path(), journal.real().to_owned());
    journal.write().map_err(|e| LedgerError::journaling(path, e))?;
    drop(journal);
    journal::fold_path(&folder, &last).map_err(|e| failed(path, e))?;
    if let Some(per_sec) = rate {
        folder
            .execute(
                "INSERT INTO target_rates (target_id, per_sec, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (target_id) DO UPDATE SET per_sec = excluded.per_sec, updated_at = excluded.updated_at",
                params![target_id, per_sec, now_ms().max(run_floor)],
            )
            .map_err(|e| LedgerError::sqlite(path, e))?;
    }
    journal::remove(&real).map_err(|e| LedgerError::journaling(path, e))?;
    drop(conn);
    // Fold the WAL back into the database so the file is whole on its own.
    let _ = folder.pragma_update(None, "wal_checkpoint", "TRUNCATE");
    Ok(())
}

/// A Bloom filter of the ids this run folded into `outcomes`. For a target with no earlier
/// outcomes, an id it has never seen is in no set and not in `outcomes`, so its lookup needs no
/// query: on a first replay, every lookup. 1 MiB of bits, four per id: about 1% false "maybe"s
/// (a query, as without the filter) at a million ids, more beyond, never a wrong "no".
struct Folded {
    bits: Vec<u64>,
}

impl Default for Folded {
    fn default() -> Self {
        // Zeroed pages from the allocator cost no memory until a bit on them is set.
        Folded { bits: vec![0; (Folded::BITS / 64) as usize] }
    }
}

impl Folded {
    const BITS: u64 = 1 << 23;

    /// The four bit positions of `id` (double hashing from one 64-bit hash).
    fn positions(id: &str) -> impl Iterator<Item = usize> {
        use std::hash::BuildHasher;
        let h = foldhash::quality::FixedState::with_seed(0x5eed).hash_one(id);
        let (a, b) = (h, h.rotate_left(32) | 1);
        (0..4u64).map(move |i| (a.wrapping_add(i.wrapping_mul(b)) % Folded::BITS) as usize)
    }

    fn insert(&mut self, id: &str) {
        for p in Folded::positions(id) {
            if let Some(word) = self.bits.get_mut(p / 64) {
                *word |= 1 << (p % 64);
            }
        }
    }

    fn may_hold(&self, id: &str) -> bool {
        Folded::positions(id).all(|p| self.bits.get(p / 64).is_some_and(|w| w & (1 << (p % 64)) != 0))
    }
}

/// The folder connection, once the fold holding it (if any) has committed.
async fn finish(folder: Result<Connection, Folding>, path: &Path) -> Result<Connection, LedgerError> {
    match folder {
        Ok(conn) => Ok(conn),
        Err(fold) => {
            let (conn, result) = fold.await.map_err(|_| LedgerError::Gone)?;
            result.map_err(|e| failed(path, e))?;
            Ok(conn)
        }
    }
}

fn failed(path: &Path, e: Failure) -> LedgerError {
    match e {
        Failure::Io(e) => LedgerError::journaling(path, e),
        Failure::Sqlite(e) => LedgerError::writing(path, e),
    }
}

#[cfg(test)]
mod tests {
    use super::Folded;

    #[test]
    fn the_filter_of_folded_ids_never_says_no_to_one_it_holds() {
        let mut f = Folded::default();
        for i in 0..100_000 {
            f.insert(&format!("event_{i}"));
        }
        assert!((0..100_000).all(|i| f.may_hold(&format!("event_{i}"))));
        let false_maybes = (0..100_000).filter(|i| f.may_hold(&format!("other_{i}"))).count();
        assert!(false_maybes < 100, "{false_maybes} of 100,000");
    }
}
