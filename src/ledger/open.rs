//! Opening the ledger file: the lock that keeps two runs off one ledger, the schema check every
//! reader and writer makes, creating a new ledger, migrating an old one, and registering the run's
//! target.
//!
//! Apart from [`super`] because it is everything that happens once, before the writer task
//! starts: the types and the per-outcome path stay small.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use url::Url;

use super::journal::{self, ADD_UP, FOLDED, Journal};
use super::writer::Parts;
use super::{LedgerError, now_ms, step, target};

/// The schema this version reads and writes. 2: targets keyed by [`target::target_key`]; 3: the
/// `journal` table a run appended outcomes to; 4: the journal in files beside the ledger
/// ([`super::journal`]) and the table of how far their folds reached. Older ledgers are migrated
/// when a run opens them; an older release refuses a newer ledger, which is what keeps it from
/// missing outcomes still in a journal.
pub(super) const SCHEMA_VERSION: i64 = 4;

pub(super) const SCHEMA: &str = "
CREATE TABLE targets (
    id          INTEGER PRIMARY KEY,
    webhook_url TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (webhook_url, event_type)
);
CREATE TABLE outcomes (
    target_id   INTEGER NOT NULL REFERENCES targets (id),
    event_id    TEXT NOT NULL,
    status      INTEGER NOT NULL,      -- 0 pending, 1 delivered, 2 failed
    attempts    INTEGER NOT NULL,      -- requests sent for this event, all runs together
    last_status INTEGER,               -- last HTTP status, if any
    last_error  TEXT,
    first_at    INTEGER NOT NULL,      -- unix milliseconds
    updated_at  INTEGER NOT NULL,
    body        BLOB,                  -- the event's JSON, kept while it is not delivered
    PRIMARY KEY (target_id, event_id)
) WITHOUT ROWID;
-- Small: only what still needs attention.
CREATE INDEX outcomes_open ON outcomes (target_id, status) WHERE status != 1;
";

/// The table where schema 3 recorded a run's outcomes first, before the journal moved to files. A
/// run migrating a schema-3 ledger folds it ([`fold_journal`]) and drops it; readers lay a
/// schema-3 one over `outcomes` ([`super::read`]). Only the tests create it now, to make a
/// schema-3 ledger.
#[cfg(test)]
pub(super) const JOURNAL: &str = "
CREATE TABLE IF NOT EXISTS journal (
    seq         INTEGER PRIMARY KEY,
    target_id   INTEGER NOT NULL REFERENCES targets (id),
    event_id    TEXT NOT NULL,
    status      INTEGER NOT NULL,
    attempts    INTEGER NOT NULL,
    last_status INTEGER,
    last_error  TEXT,
    at          INTEGER NOT NULL,      -- unix milliseconds
    body        BLOB
);
";

/// Move a schema-3 journal table's outcomes into `outcomes`, in id order (each page of `outcomes`
/// written once), as recording them there directly would have: attempts add up, the first try is
/// kept, the latest outcome wins. One transaction of its own, with the table's emptying.
pub(super) fn fold_journal(conn: &Connection) -> rusqlite::Result<()> {
    step(conn, "BEGIN IMMEDIATE")?;
    step(
        conn,
        &format!(
            "INSERT INTO outcomes
               (target_id, event_id, status, attempts, last_status, last_error, first_at, updated_at, body)
             SELECT target_id, event_id, status, attempts, last_status, last_error, at, at, body
               FROM journal WHERE true ORDER BY target_id, event_id, seq {ADD_UP}"
        ),
    )?;
    step(conn, "DELETE FROM journal")?;
    step(conn, "COMMIT")?;
    Ok(())
}

/// The rate a `--rate auto` run settled on, per target, for the next one to start from. A table of
/// its own, created when missing, so it needs no schema version: older ledgers gain it on open,
/// and readers that do not know it never look.
const RATES: &str = "
CREATE TABLE IF NOT EXISTS target_rates (
    target_id   INTEGER PRIMARY KEY REFERENCES targets (id),
    per_sec     REAL NOT NULL,
    updated_at  INTEGER NOT NULL
);
-- A target merged away (schema-1 migration) leaves its rate behind: drop it, so a new target that
-- gets its id does not start from it.
DELETE FROM target_rates WHERE target_id NOT IN (SELECT id FROM targets);
";

/// A ledger opened for a run, ready for its writer task.
pub(super) struct Opened {
    pub(super) parts: Parts,
    /// Held for the whole run: dropping it lets another run take the ledger.
    pub(super) lock: File,
    pub(super) settled_rate: Option<f64>,
}

/// Open the ledger at `path` for a run to the target (webhook URL, event type): take its lock,
/// create or migrate the file, and register the target.
pub(super) fn for_run(path: &Path, webhook_url: &Url, event_type: &str) -> Result<Opened, LedgerError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        // It holds bookers' personal data: the owner's only (see `owner_only`).
        crate::ledger::owner_only::create_dir_all(dir).map_err(|error| LedgerError::Io {
            action: "create the ledger directory",
            path: dir.to_owned(),
            error,
        })?;
    }
    crate::ledger::owner_only::touch(path).map_err(|error| LedgerError::Io {
        action: "create the ledger",
        path: path.to_owned(),
        error,
    })?;
    // The lock goes beside the real file, so a second run reaching it through a symlink (to the
    // file or to a directory on the way) finds the first run's lock.
    let real = std::fs::canonicalize(path).map_err(|error| LedgerError::Io {
        action: "find the ledger",
        path: path.to_owned(),
        error,
    })?;
    let lock = take_lock(&real, path)?;
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = open_checked(path, flags)?;
    let webhook_url = target::target_key(webhook_url);
    let mut setup = || -> rusqlite::Result<()> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "busy_timeout", 5000)?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version == 0 {
            conn.execute_batch(&format!("BEGIN; {SCHEMA} {FOLDED} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"))?;
        } else if version == 1 {
            target::migrate_v1(&mut conn)?;
        }
        if version == 3 {
            // What a schema-3 run left in its journal table, before the table goes.
            fold_journal(&conn)?;
        }
        if version != 0 && version < SCHEMA_VERSION {
            conn.execute_batch(&format!(
                "BEGIN; DROP TABLE IF EXISTS journal; {FOLDED} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))?;
        }
        Ok(())
    };
    setup().map_err(|e| LedgerError::sqlite(path, e))?;
    // What a crashed run left in the journal, before anything reads `outcomes`.
    let folds = journal::recover(&conn, &real).map_err(|e| match e {
        journal::Failure::Io(error) => {
            LedgerError::Io { action: "fold the journal beside", path: path.to_owned(), error }
        }
        journal::Failure::Sqlite(e) => LedgerError::sqlite(path, e),
    })?;
    let register = || -> rusqlite::Result<(i64, Option<f64>, i64, bool)> {
        target::fold_earlier_spelling(&conn, &webhook_url, event_type)?;
        conn.execute(
            "INSERT INTO targets (webhook_url, event_type, created_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (webhook_url, event_type) DO NOTHING",
            params![webhook_url, event_type, now_ms()],
        )?;
        let id = conn.query_row(
            "SELECT id FROM targets WHERE webhook_url = ?1 AND event_type = ?2",
            params![webhook_url, event_type],
            |r| r.get(0),
        )?;
        conn.execute_batch(RATES)?;
        let rate = conn
            .query_row("SELECT per_sec FROM target_rates WHERE target_id = ?1", [id], |r| r.get::<_, f64>(0))
            .optional()?;
        // This run stamps its outcomes at or after this, and every earlier one is before it,
        // whatever the clock did in between: that is how a lookup tells "this run" apart
        // without a list of the ids it handled.
        let (run_floor, earlier): (i64, i64) = conn.query_row(
            "SELECT coalesce(max(updated_at), 0) + 1, count(*) > 0 FROM outcomes WHERE target_id = ?1",
            params![id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((id, rate.filter(|r| r.is_finite() && *r > 0.0), run_floor, earlier != 0))
    };
    let (target_id, settled_rate, run_floor, earlier) = register().map_err(|e| LedgerError::sqlite(path, e))?;
    // The folds' own connection. A fold writes in id order, so it walks `outcomes` leaf after
    // leaf and needs few pages cached: 256 KiB instead of SQLite's 2 MiB, which a million-event
    // run's peak memory showed.
    let folder = Connection::open_with_flags(path, flags)
        .and_then(|c| c.pragma_update(None, "busy_timeout", 5000).map(|()| c))
        .and_then(|c| c.pragma_update(None, "cache_size", -256).map(|()| c))
        .map_err(|e| LedgerError::sqlite(path, e))?;
    let journal = Journal::start(&real, folds.ledger, folds.generation, target_id)
        .map_err(|error| LedgerError::Io { action: "create the journal beside", path: path.to_owned(), error })?;
    Ok(Opened { parts: Parts { conn, folder, journal, target_id, run_floor, fresh: !earlier }, lock, settled_rate })
}

fn lock_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Open (creating if needed) and check the schema. Shared by the writer and the readers.
pub(crate) fn open_checked(path: &Path, flags: OpenFlags) -> Result<Connection, LedgerError> {
    let conn = Connection::open_with_flags(path, flags).map_err(|e| LedgerError::sqlite(path, e))?;
    let version: i64 =
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(|e| LedgerError::sqlite(path, e))?;
    if version > SCHEMA_VERSION {
        return Err(LedgerError::TooNew { path: path.to_owned(), found: version });
    }
    if version == 0 {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(|e| LedgerError::sqlite(path, e))?;
        if tables > 0 {
            return Err(LedgerError::NotALedger {
                path: path.to_owned(),
                reason: "it is an SQLite database with other tables".into(),
            });
        }
    }
    Ok(conn)
}

/// Lock the ledger at `real` (its canonical path); `shown` is the path as the user gave it.
fn take_lock(real: &Path, shown: &Path) -> Result<File, LedgerError> {
    use std::io::{Read, Seek, Write};
    let lpath = lock_path(real);
    let mut f = crate::ledger::owner_only::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lpath)
        .map_err(|error| LedgerError::Io { action: "create the ledger lock", path: lpath.clone(), error })?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            let pid = pid.trim();
            let pid = if pid.is_empty() { String::new() } else { format!(" (pid {pid})") };
            return Err(LedgerError::Locked { path: shown.to_owned(), pid });
        }
        Err(std::fs::TryLockError::Error(error)) => {
            return Err(LedgerError::Io { action: "lock", path: lpath, error });
        }
    }
    let _ = f.set_len(0);
    let _ = f.rewind();
    let _ = write!(f, "{}", std::process::id());
    let _ = f.flush();
    Ok(f)
}
