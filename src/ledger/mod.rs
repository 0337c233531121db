//! The durable record of every event's outcome, per target (webhook URL + event type): what makes a
//! rerun resume instead of starting over.
//!
//! SQLite (WAL), with a journal of plain files beside it ([`journal`]), owned by one writer task
//! on the runtime (why, in [`mod@writer`]). The writer records whatever outcomes have queued up
//! with one `write` to the journal and only then tells each worker its outcome is safe; a worker
//! sends its next request only after that. So at any moment at most `--concurrency` events are
//! sent-but-unrecorded, and a crash (even `kill -9`) re-sends at most those. Batches form on their
//! own under load (group commit), so the ledger costs little. The journal is folded into SQLite's
//! `outcomes` table every few thousand outcomes, on a blocking thread, and when the run ends.
//!
//! A lock file next to the database keeps two replays off the same ledger. Reads for resuming go a
//! page of ids at a time; no list of ids is ever held in memory.
//!
//! This file holds the types and the handle a run holds; [`open`] opens, locks, creates or
//! migrates the file, [`mod@writer`] is the writer task, [`journal`] the journal's files and
//! folds, and [`read`] the read side for `status` and `failed`.

pub(crate) mod owner_only;
pub(crate) mod target_url;

use bytestring::ByteString;
use std::fs::File;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use rusqlite::ErrorCode;
use tokio::sync::{mpsc, oneshot};
use url::Url;

mod journal;
mod open;
mod read;
mod target;
mod writer;

use open::{Opened, SCHEMA_VERSION};
pub use read::{TargetStatus, read_status, write_failed};
pub(crate) use target::target_key;
use writer::{Msg, writer};

/// Where the ledger lives unless `--ledger` says otherwise: beside the command, in the current directory.
pub const DEFAULT_LEDGER: &str = ".savvy-replay/ledger.db";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending = 0,
    Delivered = 1,
    Failed = 2,
}

impl Status {
    pub(crate) fn from_i64(v: i64) -> Option<Status> {
        match v {
            0 => Some(Status::Pending),
            1 => Some(Status::Delivered),
            2 => Some(Status::Failed),
            _ => None,
        }
    }
}

/// What the ledger holds for an event: its status, and whether this very run recorded it — a
/// repeat of an event this run already handled is a duplicate, not something "delivered earlier".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    pub status: Status,
    pub this_run: bool,
}

/// The result of delivering one event in this run.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub event_id: ByteString,
    pub status: Status,
    /// Requests sent in this run.
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    /// The event's JSON; kept for failed and pending events (for `failed --out`).
    pub body: Option<Bytes>,
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "the ledger {path} is in use by another savvy-replay run{pid}; wait for it to finish, or pass --ledger PATH to use another ledger"
    )]
    Locked { path: PathBuf, pid: String },
    #[error(
        "{path} is not a savvy-replay ledger ({reason}); it was left untouched — move it aside or pass --ledger PATH"
    )]
    NotALedger { path: PathBuf, reason: String },
    #[error(
        "the ledger {path} was written by a newer savvy-replay (schema {found}, this version reads {SCHEMA_VERSION}); upgrade savvy-replay or pass --ledger PATH"
    )]
    TooNew { path: PathBuf, found: i64 },
    #[error("cannot {action} {path}: {error}; choose a writable location with --ledger PATH")]
    Io { action: &'static str, path: PathBuf, error: std::io::Error },
    #[error("the ledger {path} failed: {error}")]
    Sqlite { path: PathBuf, error: rusqlite::Error },
    /// Recording outcomes failed mid-run; `cause` says why in words ([`LedgerError::writing`]).
    #[error(
        "cannot record outcomes in the ledger {path}: {cause}. What was recorded before is safe: {hint}, then run the same command again (at most the events that were in flight are sent again)"
    )]
    Write { path: PathBuf, cause: String, hint: &'static str },
    #[error("the ledger writer stopped unexpectedly")]
    Gone,
}

impl LedgerError {
    pub(crate) fn sqlite(path: &Path, error: rusqlite::Error) -> LedgerError {
        let code = error.sqlite_error_code();
        match code {
            Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
                LedgerError::NotALedger { path: path.to_owned(), reason: error.to_string() }
            }
            Some(ErrorCode::ReadOnly) | Some(ErrorCode::CannotOpen) | Some(ErrorCode::PermissionDenied) => {
                LedgerError::Io {
                    action: "write the ledger",
                    path: path.to_owned(),
                    error: std::io::Error::new(std::io::ErrorKind::PermissionDenied, error.to_string()),
                }
            }
            _ => LedgerError::Sqlite { path: path.to_owned(), error },
        }
    }
}

impl LedgerError {
    /// A failure while recording outcomes, named by its cause: SQLite's code says what happened
    /// to the file (a full disk is `SQLITE_FULL`; a damaged page `SQLITE_CORRUPT`).
    pub(crate) fn writing(path: &Path, error: rusqlite::Error) -> LedgerError {
        let (what, hint) = match error.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => ("the disk is full", "free some space"),
            Some(ErrorCode::DatabaseCorrupt) | Some(ErrorCode::NotADatabase) => (
                "the ledger file is corrupted",
                "move it aside (a new ledger starts over and sends everything again) or restore it from a backup",
            ),
            Some(ErrorCode::SystemIoFailure) => ("the disk reported an I/O error", "check the disk"),
            Some(ErrorCode::ReadOnly) | Some(ErrorCode::PermissionDenied) => {
                ("the file is no longer writable", "make it writable again")
            }
            Some(ErrorCode::OutOfMemory) => ("out of memory", "free some memory"),
            _ => ("SQLite failed", "fix the cause"),
        };
        LedgerError::Write { path: path.to_owned(), cause: format!("{what} ({error})"), hint }
    }

    /// A failure writing or reading the journal beside the ledger ([`journal`]), named the same way.
    pub(crate) fn journaling(path: &Path, error: std::io::Error) -> LedgerError {
        use std::io::ErrorKind;
        let (what, hint) = match error.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => ("the disk is full", "free some space"),
            ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => {
                ("the journal beside it is no longer writable", "make its directory writable again")
            }
            ErrorKind::FileTooLarge => (
                "the journal beside it reached the largest file this process may write",
                "raise the file size limit (ulimit -f)",
            ),
            ErrorKind::OutOfMemory => ("out of memory", "free some memory"),
            _ => ("writing the journal beside it failed", "check the disk"),
        };
        LedgerError::Write { path: path.to_owned(), cause: format!("{what} ({error})"), hint }
    }
}

/// The ledger of one run: a writer task and the lock that keeps other runs out.
pub struct Ledger {
    tx: mpsc::UnboundedSender<Msg>,
    writer: tokio::task::JoinHandle<Result<(), LedgerError>>,
    _lock: File,
    settled_rate: Option<f64>,
}

/// What workers and the producer hold to talk to the writer.
#[derive(Clone)]
pub struct LedgerHandle {
    tx: mpsc::UnboundedSender<Msg>,
}

pub(crate) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Run one statement that returns no rows, cached: `BEGIN`, `COMMIT` and the like, which
/// `Connection::transaction` would parse anew each time.
fn step(conn: &rusqlite::Connection, sql: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached(sql).and_then(|mut s| s.execute([]))
}

impl Ledger {
    /// Open the ledger at `path` for the target (webhook URL, event type), taking its lock, and
    /// start its writer task: call it within a tokio runtime.
    pub fn open(path: &Path, webhook_url: &Url, event_type: &str) -> Result<Ledger, LedgerError> {
        let Opened { parts, lock, settled_rate } = open::for_run(path, webhook_url, event_type)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let path_owned = path.to_owned();
        let writer = tokio::spawn(async move { writer(parts, rx, &path_owned).await });
        Ok(Ledger { tx, writer, _lock: lock, settled_rate })
    }

    /// The rate the last `--rate auto` run for this target settled on, if one did.
    pub fn settled_rate(&self) -> Option<f64> {
        self.settled_rate
    }

    /// Remember the rate this run settled on, for the next `--rate auto` run; written with the
    /// outcomes, before [`Ledger::close`] returns.
    pub fn remember_rate(&self, per_sec: f64) {
        if per_sec.is_finite() && per_sec > 0.0 {
            let _ = self.tx.send(Msg::Rate(per_sec));
        }
    }

    pub fn handle(&self) -> LedgerHandle {
        LedgerHandle { tx: self.tx.clone() }
    }

    /// Commit what is queued and stop the writer. Handles still alive get `Gone` afterwards.
    pub async fn close(self) -> Result<(), LedgerError> {
        let Ledger { tx, writer, _lock, .. } = self;
        let _ = tx.send(Msg::Close);
        writer.await.unwrap_or(Err(LedgerError::Gone))
    }
}

impl LedgerHandle {
    /// Record an outcome; returns once it is committed (the tests' shorthand for submit + wait).
    #[cfg(test)]
    pub async fn record(&self, outcome: Outcome) -> Result<(), LedgerError> {
        self.submit(outcome)?.wait().await
    }

    /// Hand an outcome to the writer; [`Committed::wait`] returns once it is durable.
    pub fn submit(&self, outcome: Outcome) -> Result<Committed, LedgerError> {
        let (ack, done) = oneshot::channel();
        self.tx.send(Msg::Record(outcome, ack)).map_err(|_| LedgerError::Gone)?;
        Ok(Committed(done))
    }

    /// The recorded outcomes of these events for this target, in the same order: from earlier
    /// runs, and from this one once committed.
    pub async fn lookup(&self, ids: Vec<ByteString>) -> Result<Vec<Option<Recorded>>, LedgerError> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(Msg::Lookup(ids, reply)).map_err(|_| LedgerError::Gone)?;
        answer.await.map_err(|_| LedgerError::Gone)
    }
}

/// An outcome on its way into the ledger.
pub struct Committed(oneshot::Receiver<()>);

impl Committed {
    pub async fn wait(self) -> Result<(), LedgerError> {
        self.0.await.map_err(|_| LedgerError::Gone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    fn hook() -> Url {
        Url::parse("http://x/hook").unwrap()
    }

    fn outcome(id: &str, status: Status) -> Outcome {
        Outcome {
            event_id: id.into(),
            status,
            attempts: 1,
            last_status: Some(if status == Status::Delivered { 200 } else { 422 }),
            last_error: (status != Status::Delivered).then(|| "HTTP 422".to_owned()),
            body: (status != Status::Delivered).then(|| Bytes::from(format!("{{\"id\":\"{id}\"}}"))),
        }
    }

    /// The event ids in the journal files beside the ledger at `path`, folded or not.
    fn journaled_ids(path: &Path) -> Vec<String> {
        let real = std::fs::canonicalize(path).unwrap();
        let files = journal::files(&real).unwrap();
        files.iter().flat_map(|f| f.entries().into_iter().map(|e| e.event_id.to_owned()).collect::<Vec<_>>()).collect()
    }

    /// A journal file beside the ledger at `path` as a run killed before its fold leaves it.
    fn leave_journal(path: &Path, ledger: i64, generation: u64, target: i64, outcomes: &[(&Outcome, i64)]) {
        let real = std::fs::canonicalize(path).unwrap();
        let mut j = journal::Journal::start(&real, ledger, generation, target).unwrap();
        for (o, at) in outcomes {
            j.push(o, *at);
        }
        j.write().unwrap();
    }

    /// `a` delivered, `b` failed, `c` pending.
    async fn record_one_of_each(h: &LedgerHandle) {
        for (id, status) in [("a", Status::Delivered), ("b", Status::Failed), ("c", Status::Pending)] {
            h.record(outcome(id, status)).await.unwrap();
        }
    }

    #[tokio::test]
    async fn records_survive_a_reopen_and_lookups_see_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/ledger.db");
        let l = Ledger::open(&path, &hook(), "event.created").unwrap();
        let h = l.handle();
        record_one_of_each(&h).await;
        drop(h);
        l.close().await.unwrap();

        let l = Ledger::open(&path, &hook(), "event.created").unwrap();
        let h = l.handle();
        let got = h.lookup(vec!["a".into(), "b".into(), "c".into(), "zz".into()]).await.unwrap();
        let earlier = |status| Some(Recorded { status, this_run: false });
        assert_eq!(got, [earlier(Status::Delivered), earlier(Status::Failed), earlier(Status::Pending), None]);
        // What this run records is told apart from what earlier runs did.
        h.record(outcome("d", Status::Delivered)).await.unwrap();
        let got = h.lookup(vec!["a".into(), "d".into()]).await.unwrap();
        assert_eq!(got, [earlier(Status::Delivered), Some(Recorded { status: Status::Delivered, this_run: true })]);
        // The same ids for another target are unknown.
        drop(h);
        l.close().await.unwrap();
        let l = Ledger::open(&path, &hook(), "event.canceled").unwrap();
        assert_eq!(l.handle().lookup(vec!["a".into()]).await.unwrap(), [None]);
        l.close().await.unwrap();

        let st = read_status(&path, 10).unwrap().unwrap();
        let main = &st[0];
        assert_eq!((main.delivered, main.failed, main.pending), (2, 1, 1));
        assert_eq!(main.open[0].event_id, "b");
        let mut buf = Vec::new();
        assert_eq!(write_failed(&path, None, None, &mut buf).unwrap(), 1);
        assert_eq!(buf, b"{\"id\":\"b\"}\n");
    }

    /// While a run goes on its outcomes are in the journal, not yet folded: `status` and `failed`
    /// see them all the same, and closing the run folds them.
    #[tokio::test]
    async fn status_and_failed_see_outcomes_not_yet_folded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let l = Ledger::open(&path, &hook(), "event.created").unwrap();
        let h = l.handle();
        record_one_of_each(&h).await;
        let unfolded = |path: &Path| journaled_ids(path).len();
        assert_eq!(unfolded(&path), 3, "the run has not folded them yet");
        let st = read_status(&path, 10).unwrap().unwrap();
        assert_eq!((st[0].delivered, st[0].failed, st[0].pending), (1, 1, 1));
        assert_eq!(st[0].open.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["b", "c"]);
        let mut buf = Vec::new();
        assert_eq!(write_failed(&path, None, None, &mut buf).unwrap(), 1);
        assert_eq!(buf, b"{\"id\":\"b\"}\n");
        drop(h);
        l.close().await.unwrap();
        assert_eq!(unfolded(&path), 0);
        let st = read_status(&path, 10).unwrap().unwrap();
        assert_eq!((st[0].delivered, st[0].failed, st[0].pending), (1, 1, 1));
    }

    /// The journal goes beside the real file, so a run through a symlink and `status` through the
    /// real path (or the other way round) find the same journal.
    #[cfg(unix)]
    #[tokio::test]
    async fn the_journal_of_a_run_through_a_symlink_is_beside_the_real_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        let real = dir.path().join("real").join("ledger.db");
        std::os::unix::fs::symlink("real", dir.path().join("alias")).unwrap();
        let alias = dir.path().join("alias").join("ledger.db");
        let l = Ledger::open(&alias, &hook(), "event.created").unwrap();
        let h = l.handle();
        record_one_of_each(&h).await;
        assert_eq!(journaled_ids(&real), ["a", "b", "c"]);
        for path in [&real, &alias] {
            let st = read_status(path, 10).unwrap().unwrap();
            assert_eq!((st[0].delivered, st[0].failed, st[0].pending), (1, 1, 1), "{}", path.display());
        }
        drop(h);
        l.close().await.unwrap();
        assert!(journaled_ids(&real).is_empty());
    }

    /// What a crashed run left in the journal is laid over earlier outcomes by readers, and folded
    /// by the next run before it looks anything up: latest outcome wins, attempts add up, the
    /// first try is kept.
    #[tokio::test]
    async fn a_journal_left_by_a_crash_is_read_and_then_folded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let l = Ledger::open(&path, &hook(), "event.created").unwrap();
        l.handle().record(outcome("x", Status::Failed)).await.unwrap();
        l.close().await.unwrap();
        let db = Connection::open(&path).unwrap();
        let (target, first_at): (i64, i64) = db
            .query_row("SELECT target_id, first_at FROM outcomes WHERE event_id = 'x'", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        let folds = journal::folded(&db).unwrap();
        drop(db);
        // As a run killed before its fold leaves it: x delivered on a retry, y failed twice.
        let mut x = outcome("x", Status::Delivered);
        x.attempts = 2;
        let mut y = outcome("y", Status::Failed);
        y.body = Some(Bytes::from_static(b"{}"));
        let left = [(&x, first_at + 10), (&y, first_at + 10), (&y, first_at + 20)];
        leave_journal(&path, folds.ledger, folds.generation + 1, target, &left);
        let st = read_status(&path, 10).unwrap().unwrap();
        assert_eq!((st[0].delivered, st[0].failed, st[0].pending), (1, 1, 0));
        assert_eq!((st[0].open[0].event_id.as_str(), st[0].open[0].attempts), ("y", 2));
        let mut buf = Vec::new();
        assert_eq!(write_failed(&path, None, None, &mut buf).unwrap(), 1);
        assert_eq!(buf, b"{}\n");

        let l = Ledger::open(&path, &hook(), "event.created").unwrap();
        let got = l.handle().lookup(vec!["x".into(), "y".into()]).await.unwrap();
        let earlier = |status| Some(Recorded { status, this_run: false });
        assert_eq!(got, [earlier(Status::Delivered), earlier(Status::Failed)]);
        l.close().await.unwrap();
        let journal = journaled_ids(&path).len();
        let db = Connection::open(&path).unwrap();
        let x: (i64, i64, i64) = db
            .query_row("SELECT status, attempts, first_at FROM outcomes WHERE event_id = 'x'", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .unwrap();
        let y: i64 = db.query_row("SELECT attempts FROM outcomes WHERE event_id = 'y'", [], |r| r.get(0)).unwrap();
        assert_eq!((journal, x, y), (0, (1, 3, first_at), 2));
    }

    /// A crash after a fold committed but before its file was removed leaves a file already in
    /// `outcomes`: its generation says so, and neither readers nor the next run count it again.
    #[tokio::test]
    async fn a_journal_file_already_folded_is_not_folded_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let l = Ledger::open(&path, &hook(), "event.created").unwrap();
        l.handle().record(outcome("x", Status::Failed)).await.unwrap();
        l.close().await.unwrap();
        let folds = journal::folded(&Connection::open(&path).unwrap()).unwrap();
        leave_journal(&path, folds.ledger, folds.generation, 1, &[(&outcome("x", Status::Failed), 1)]);
        let attempts = || read_status(&path, 10).unwrap().unwrap()[0].open[0].attempts;
        assert_eq!(attempts(), 1);
        Ledger::open(&path, &hook(), "event.created").unwrap().close().await.unwrap();
        assert_eq!(attempts(), 1);
        assert!(journaled_ids(&path).is_empty(), "the stale file is removed");
    }

    /// A ledger deleted (or replaced) with its journal files left beside it: the new ledger is
    /// another one, and the old files' outcomes are not taken for its own (which would skip
    /// events nobody delivered to this ledger's knowledge). Readers ignore them; a run removes them.
    #[tokio::test]
    async fn journal_files_of_another_ledger_are_not_folded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        Ledger::open(&path, &hook(), "event.created").unwrap().close().await.unwrap();
        let folds = journal::folded(&Connection::open(&path).unwrap()).unwrap();
        let other = folds.ledger.wrapping_add(1);
        leave_journal(&path, other, folds.generation + 1, 1, &[(&outcome("x", Status::Delivered), 1)]);
        assert!(read_status(&path, 10).unwrap().unwrap().is_empty(), "nothing recorded in this ledger");
        let l = Ledger::open(&path, &hook(), "event.created").unwrap();
        assert_eq!(l.handle().lookup(vec!["x".into()]).await.unwrap(), [None]);
        l.close().await.unwrap();
        assert!(journaled_ids(&path).is_empty(), "the stray file is removed");
    }

    /// A schema-3 ledger kept a run's unfolded outcomes in a table: readers lay it over
    /// `outcomes`, and a run folds it, drops it and moves the ledger to schema 4.
    #[tokio::test]
    async fn a_schema_3_journal_table_is_read_then_folded_and_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        Ledger::open(&path, &hook(), "event.created").unwrap().close().await.unwrap();
        let db = Connection::open(&path).unwrap();
        db.execute_batch(&format!(
            "DROP TABLE journal_folded; {} PRAGMA user_version = 3;
             INSERT INTO journal (target_id, event_id, status, attempts, last_status, last_error, at, body) VALUES
               (1, 'y', 2, 1, 422, 'HTTP 422', 10, x'7b7d'),
               (1, 'y', 2, 1, 422, 'HTTP 422', 20, x'7b7d');",
            open::JOURNAL
        ))
        .unwrap();
        drop(db);
        let st = read_status(&path, 10).unwrap().unwrap();
        assert_eq!((st[0].failed, st[0].open[0].attempts), (1, 2));
        Ledger::open(&path, &hook(), "event.created").unwrap().close().await.unwrap();
        let db = Connection::open(&path).unwrap();
        let version: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        let tables: i64 =
            db.query_row("SELECT count(*) FROM sqlite_master WHERE name = 'journal'", [], |r| r.get(0)).unwrap();
        let y: i64 = db.query_row("SELECT attempts FROM outcomes WHERE event_id = 'y'", [], |r| r.get(0)).unwrap();
        assert_eq!((version, tables, y), (SCHEMA_VERSION, 0, 2));
    }

    /// More outcomes than two folds take: folded on the way, each found by a lookup throughout —
    /// the first ones only in `outcomes` by then, past the filter of folded ids on a first run.
    #[tokio::test]
    async fn lookups_find_outcomes_before_and_after_a_fold() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let l = Ledger::open(&path, &hook(), "event.created").unwrap();
        let h = l.handle();
        let n = 2 * writer::FOLD_EVERY + 10;
        for i in 0..n {
            h.record(outcome(&format!("e{i}"), Status::Delivered)).await.unwrap();
        }
        let real = std::fs::canonicalize(&path).unwrap();
        let files = journal::files(&real).unwrap();
        let newest = files.last().map(|f| (f.generation, f.entries().len()));
        assert_eq!(newest, Some((3, 10)), "full files were put aside for their folds");
        let ids: Vec<ByteString> =
            ["e0".into(), format!("e{}", writer::FOLD_EVERY + 1).into(), format!("e{}", n - 1).into()].into();
        let this_run = Some(Recorded { status: Status::Delivered, this_run: true });
        assert_eq!(h.lookup(ids).await.unwrap(), [this_run; 3]);
        let missing: Vec<ByteString> = (0..1000).map(|i| format!("m{i}").into()).collect();
        assert_eq!(h.lookup(missing).await.unwrap(), [None; 1000]);
        drop(h);
        l.close().await.unwrap();
        assert_eq!(read_status(&path, 0).unwrap().unwrap()[0].delivered, n as u64);
        let folded = journal::folded(&Connection::open(&path).unwrap()).unwrap().generation;
        assert_eq!(folded, 3, "two files folded on the way, the third at the end");
        assert!(journaled_ids(&path).is_empty(), "a run that ends leaves no journal behind");
    }

    /// Outcomes submitted from many tasks at once: when a wait returns, another connection (as a
    /// rerun after `kill -9` would) finds that outcome committed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_returns_only_once_its_own_outcome_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let l = Ledger::open(&path, &hook(), "event.created").unwrap();
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let (h, path) = (l.handle(), path.clone());
                tokio::spawn(async move {
                    let other = Connection::open(&path).unwrap();
                    for i in 0..20 {
                        let id = format!("evt_{t}_{i}");
                        h.submit(outcome(&id, Status::Delivered)).unwrap().wait().await.unwrap();
                        // In the journal until folded: where a rerun after `kill -9` finds it too.
                        let folded: i64 = other
                            .query_row("SELECT count(*) FROM outcomes WHERE event_id = ?1", [&id], |r| r.get(0))
                            .unwrap();
                        let journaled = journaled_ids(&path).iter().filter(|j| **j == id).count();
                        assert_eq!(folded as usize + journaled, 1, "{id} was not recorded when its wait returned");
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        l.close().await.unwrap();
    }

    #[tokio::test]
    async fn the_settled_rate_is_remembered_per_target() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let other = Url::parse("http://x/other").unwrap();
        let l = Ledger::open(&path, &hook(), "event.created").unwrap();
        assert_eq!(l.settled_rate(), None);
        l.remember_rate(187.5);
        l.close().await.unwrap();
        let l = Ledger::open(&path, &hook(), "event.created").unwrap();
        assert_eq!(l.settled_rate(), Some(187.5));
        l.remember_rate(90.0);
        l.close().await.unwrap();
        let l = Ledger::open(&path, &hook(), "event.created").unwrap();
        assert_eq!(l.settled_rate(), Some(90.0));
        l.close().await.unwrap();
        let l = Ledger::open(&path, &other, "event.created").unwrap();
        assert_eq!(l.settled_rate(), None, "another target starts afresh");
        l.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_second_run_on_the_same_ledger_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let l = Ledger::open(&path, &hook(), "event.created").unwrap();
        let err = Ledger::open(&path, &hook(), "event.created").err().unwrap();
        assert!(matches!(err, LedgerError::Locked { .. }), "{err}");
        assert!(err.to_string().contains(&std::process::id().to_string()), "{err}");
        l.close().await.unwrap();
        Ledger::open(&path, &hook(), "event.created").unwrap().close().await.unwrap();
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_second_run_through_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("l").join("ledger.db");
        let l = Ledger::open(&real, &hook(), "event.created").unwrap();
        // A symlink to the file, and one to its directory.
        std::os::unix::fs::symlink("ledger.db", dir.path().join("l").join("alias.db")).unwrap();
        std::os::unix::fs::symlink("l", dir.path().join("m")).unwrap();
        for alias in [dir.path().join("l").join("alias.db"), dir.path().join("m").join("ledger.db")] {
            let err = Ledger::open(&alias, &hook(), "event.created").err().expect("refused");
            assert!(matches!(err, LedgerError::Locked { .. }), "{err}");
            assert!(err.to_string().contains(&alias.display().to_string()), "names the path given: {err}");
        }
        l.close().await.unwrap();
        Ledger::open(&dir.path().join("l").join("alias.db"), &hook(), "event.created").unwrap().close().await.unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_ledger_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let junk = b"this is not sqlite at all, just some text that happens to be here\n".repeat(100);
        std::fs::write(&path, &junk).unwrap();
        let err = Ledger::open(&path, &hook(), "event.created").err().unwrap();
        assert!(matches!(err, LedgerError::NotALedger { .. }), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), junk);
        assert!(read_status(&path, 1).is_err());
    }

    /// SQLite's answer to a full disk is SQLITE_FULL; `max_page_count` makes the same answer
    /// come from a ledger that reached its page limit, mid-run.
    #[tokio::test]
    async fn a_full_disk_mid_run_is_named_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let Opened { parts, lock: _lock, .. } = open::for_run(&path, &hook(), "event.created").unwrap();
        let pages: i64 = parts.folder.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        parts.folder.query_row(&format!("PRAGMA max_page_count = {}", pages + 2), [], |_| Ok(())).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let writing = tokio::spawn({
            let path = path.clone();
            async move { writer(parts, rx, &path).await }
        });
        let h = LedgerHandle { tx };
        let mut recorded = 0;
        for i in 0..10_000 {
            let mut o = outcome(&format!("evt_{i}"), Status::Failed);
            o.body = Some(Bytes::from(vec![b'x'; 2000]));
            if h.record(o).await.is_err() {
                break;
            }
            recorded += 1;
        }
        assert!(recorded > 0 && recorded < 10_000, "{recorded}");
        let err = writing.await.unwrap().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("the disk is full") && msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("free some space") && msg.contains("run the same command again"), "{msg}");
    }

    #[test]
    fn a_corrupted_ledger_mid_run_says_so() {
        let corrupt = rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT), None);
        let msg = LedgerError::writing(Path::new("/x/ledger.db"), corrupt).to_string();
        assert!(msg.contains("the ledger file is corrupted") && msg.contains("/x/ledger.db"), "{msg}");
    }

    #[test]
    fn a_ledger_from_a_newer_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        Connection::open(&path).unwrap().pragma_update(None, "user_version", 99).unwrap();
        let err = Ledger::open(&path, &hook(), "event.created").err().unwrap();
        assert!(matches!(err, LedgerError::TooNew { found: 99, .. }), "{err}");
    }
}
