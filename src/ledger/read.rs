//! The read side of the ledger, for `status` and `failed`: a read-only connection, without the
//! lock a run takes.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, params};

use super::journal;
use super::open::open_checked;
use super::{LedgerError, Status};

/// One failed or pending event, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OpenEvent {
    pub event_id: String,
    pub status: Status,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TargetStatus {
    pub webhook_url: String,
    pub event_type: String,
    pub delivered: u64,
    pub failed: u64,
    pub pending: u64,
    /// The first few failed and pending events.
    pub open: Vec<OpenEvent>,
}

/// Outcomes in a run's journal (`{source}`) laid over `outcomes`, as folding them would leave it:
/// the latest outcome per event wins, attempts add up, the first try is kept
/// ([`super::journal::fold`]). Built in the reader's own temporary schema, from one snapshot.
const OVERLAY: &str = "
CREATE TEMP TABLE journaled AS
  SELECT target_id, event_id, status, attempts, last_status, last_error, first_at, at, body FROM (
    SELECT target_id, event_id, status, last_status, last_error, at, body,
           sum(attempts) OVER per_event AS attempts,
           min(at) OVER per_event AS first_at,
           row_number() OVER (PARTITION BY target_id, event_id ORDER BY seq DESC) AS nth
      FROM {source} WINDOW per_event AS (PARTITION BY target_id, event_id)
  ) WHERE nth = 1;
CREATE UNIQUE INDEX temp.journaled_key ON journaled (target_id, event_id);
CREATE TEMP VIEW current AS
  SELECT target_id, event_id, status, attempts, last_status, last_error, first_at, updated_at, body
    FROM main.outcomes o
   WHERE NOT EXISTS (SELECT 1 FROM journaled j WHERE j.target_id = o.target_id AND j.event_id = o.event_id)
  UNION ALL
  SELECT j.target_id, j.event_id, j.status, j.attempts + coalesce(o.attempts, 0), j.last_status, j.last_error,
         coalesce(o.first_at, j.first_at), j.at, j.body
    FROM journaled j LEFT JOIN main.outcomes o ON o.target_id = j.target_id AND o.event_id = j.event_id;
";

/// The journal files beside the ledger at `path`, read before the snapshot the reads use: a
/// file folded since is then left out by the generation the snapshot has folded (never counted
/// twice), and one not yet folded then is whole up to when it was read.
fn journal_files(path: &Path, version: i64) -> Result<Vec<journal::JournalFile>, LedgerError> {
    // The journal went to files with schema 4.
    if version < 4 {
        return Ok(Vec::new());
    }
    let io = |error| LedgerError::Io { action: "read the journal beside", path: path.to_owned(), error };
    let real = std::fs::canonicalize(path).map_err(io)?;
    journal::files(&real).map_err(io)
}

/// Where to read outcomes from: `outcomes`, or while a journal holds outcomes not yet folded (a run
/// going on, or one that crashed) the [`OVERLAY`] of the two. Call it inside the read transaction
/// the reads that follow use, so the overlay and they see the same snapshot.
fn outcomes_table(conn: &Connection, version: i64, files: &[journal::JournalFile]) -> rusqlite::Result<&'static str> {
    let source = match version {
        ..3 => return Ok("outcomes"),
        3 => {
            let unfolded: bool = conn.query_row("SELECT EXISTS (SELECT 1 FROM journal)", [], |r| r.get(0))?;
            if !unfolded {
                return Ok("outcomes");
            }
            "main.journal"
        }
        _ => {
            let folds = journal::folded(conn)?;
            let rows: Vec<_> = files
                .iter()
                .filter(|f| f.unfolded(folds))
                .flat_map(|f| f.entries().into_iter().map(move |e| (f.target_id, e)))
                .collect();
            if rows.is_empty() {
                return Ok("outcomes");
            }
            conn.execute_batch(
                "CREATE TEMP TABLE journal_rows (
                   seq INTEGER PRIMARY KEY, target_id INTEGER, event_id TEXT, status INTEGER, attempts INTEGER,
                   last_status INTEGER, last_error TEXT, at INTEGER, body BLOB)",
            )?;
            let mut insert = conn.prepare(
                "INSERT INTO temp.journal_rows
                   (target_id, event_id, status, attempts, last_status, last_error, at, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for (target_id, e) in rows {
                insert.execute(params![
                    target_id,
                    e.event_id,
                    e.status as i64,
                    e.attempts,
                    e.last_status,
                    e.last_error,
                    e.at,
                    e.body
                ])?;
            }
            "temp.journal_rows"
        }
    };
    conn.execute_batch(&OVERLAY.replace("{source}", source))?;
    Ok("temp.current")
}

/// Open an existing ledger for reading; `Ok(None)` when there is none at `path`.
fn open_read(path: &Path) -> Result<Option<Connection>, LedgerError> {
    if !path.exists() {
        return Ok(None);
    }
    open_checked(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX).map(Some)
}

/// Per target: counts, and up to `show` failed/pending events. `Ok(None)`: no ledger at `path`.
pub fn read_status(path: &Path, show: usize) -> Result<Option<Vec<TargetStatus>>, LedgerError> {
    let Some(conn) = open_read(path)? else { return Ok(None) };
    let sq = |e| LedgerError::sqlite(path, e);
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sq)?;
    if version == 0 {
        return Ok(Some(Vec::new()));
    }
    let files = journal_files(path, version)?;
    // One snapshot for every read below, even while a run writes.
    conn.execute_batch("BEGIN").map_err(sq)?;
    let outcomes = outcomes_table(&conn, version, &files).map_err(sq)?;
    let mut targets = conn.prepare("SELECT id, webhook_url, event_type FROM targets ORDER BY id").map_err(sq)?;
    let rows: Vec<(i64, String, String)> = targets
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(sq)?
        .collect::<Result<_, _>>()
        .map_err(sq)?;
    let mut out = Vec::new();
    for (id, webhook_url, event_type) in rows {
        // A schema-1 ledger (read-only here, so not migrated yet) keys targets by the URL as
        // given, password and all: show the schema-2 key instead, which never holds it.
        let webhook_url = if version == 1 { super::target::key_of_text(&webhook_url) } else { webhook_url };
        let mut counts = [0u64; 3];
        let mut stmt = conn
            .prepare_cached(&format!("SELECT status, count(*) FROM {outcomes} WHERE target_id = ?1 GROUP BY status"))
            .map_err(sq)?;
        let mut q = stmt.query([id]).map_err(sq)?;
        while let Some(r) = q.next().map_err(sq)? {
            let (s, n): (i64, i64) = (r.get(0).map_err(sq)?, r.get(1).map_err(sq)?);
            if let Some(slot) = usize::try_from(s).ok().and_then(|s| counts.get_mut(s)) {
                *slot = n.max(0) as u64;
            }
        }
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT event_id, status, attempts, last_status, last_error FROM {outcomes}
                 WHERE target_id = ?1 AND status != 1 ORDER BY status DESC, updated_at LIMIT ?2"
            ))
            .map_err(sq)?;
        let open = stmt
            .query_map(params![id, show as i64], |r| {
                Ok(OpenEvent {
                    event_id: r.get(0)?,
                    status: Status::from_i64(r.get(1)?).unwrap_or(Status::Pending),
                    attempts: r.get(2)?,
                    last_status: r.get(3)?,
                    last_error: r.get(4)?,
                })
            })
            .map_err(sq)?
            .collect::<Result<_, _>>()
            .map_err(sq)?;
        if counts.iter().all(|n| *n == 0) {
            // Nothing recorded for it (a dry run, or a run that sent nothing): not a target to show.
            continue;
        }
        out.push(TargetStatus {
            webhook_url,
            event_type,
            pending: counts[0],
            delivered: counts[1],
            failed: counts[2],
            open,
        });
    }
    Ok(Some(out))
}

/// Write the failed events (optionally of one webhook / event type) as NDJSON; returns how many.
/// An event that failed for several targets is written once.
pub fn write_failed(
    path: &Path,
    webhook_url: Option<&str>,
    event_type: Option<&str>,
    out: &mut dyn std::io::Write,
) -> Result<u64, LedgerError> {
    let Some(conn) = open_read(path)? else { return Ok(0) };
    let sq = |e| LedgerError::sqlite(path, e);
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(sq)?;
    if version == 0 {
        return Ok(0);
    }
    let files = journal_files(path, version)?;
    conn.execute_batch("BEGIN").map_err(sq)?;
    let outcomes = outcomes_table(&conn, version, &files).map_err(sq)?;
    let mut stmt = conn
        .prepare(&format!(
            "SELECT o.event_id, min(o.body) FROM {outcomes} o JOIN targets t ON t.id = o.target_id
             WHERE o.status = 2 AND o.body IS NOT NULL
               AND (?1 IS NULL OR t.webhook_url IN (?1, ?3, ?4)) AND (?2 IS NULL OR t.event_type = ?2)
             GROUP BY o.event_id ORDER BY min(o.first_at), o.event_id"
        ))
        .map_err(sq)?;
    // The URL as a run keys it ([`super::target`]), or as given, for a ledger not yet migrated.
    let key = webhook_url.map(super::target::key_of_text);
    // A target an earlier version keyed with a trailing slash, not yet folded by a run.
    let earlier = key.as_deref().and_then(super::target::earlier_keys);
    let mut rows = stmt.query(params![webhook_url, event_type, key, earlier]).map_err(sq)?;
    let mut n = 0;
    let write_err = |error| LedgerError::Io { action: "write failed events from", path: path.to_owned(), error };
    while let Some(r) = rows.next().map_err(sq)? {
        let body: Vec<u8> = r.get(1).map_err(sq)?;
        out.write_all(&body).map_err(write_err)?;
        out.write_all(b"\n").map_err(write_err)?;
        n += 1;
    }
    out.flush().map_err(write_err)?;
    Ok(n)
}
