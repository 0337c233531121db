//! The journal: two plain files beside the ledger where a run records each outcome first, one
//! `write` per commit batch, before they are folded into SQLite's `outcomes` table.
//!
//! Why files and not a table: a commit of a few outcomes into SQLite cost about 8 µs of WAL
//! frames, locks and checksums, and each row's insert about 0.7 µs more; one `write` of the same
//! outcomes costs a syscall. What a worker waits for is that `write`: once it returns, the bytes
//! are in the kernel's page cache, which a `kill -9` cannot take away, the same promise SQLite's
//! WAL with `synchronous=NORMAL` gave (neither survives a power cut without fsync; a torn tail is
//! found by its checksum and dropped).
//!
//! The two files take turns (`ledger.db.journal0`, `ledger.db.journal1`). When one holds
//! [`super::writer::FOLD_EVERY`] outcomes the writer starts the other and folds the full one into
//! `outcomes` on a blocking thread, in id order, in one transaction that also records the file's
//! generation in `journal_folded`. A generation at or below that number is already in
//! `outcomes`, so a file left behind after its fold committed is never folded twice; a file that
//! names another ledger (this one was deleted or replaced beside it) is never folded at all. A run
//! that finds files left by a crash folds them before anything else ([`recover`]); `status` and
//! `failed` lay the unfolded ones over `outcomes` ([`super::read`]).
//!
//! File: a 32-byte header (magic, the ledger's random id from `journal_folded`, generation, target
//! id), then records, each its payload's length (u32), the payload, and the payload's CRC-32.
//! Payload: status (u8), which optional fields follow (u8), attempts (u32), time in unix
//! milliseconds (i64), last HTTP status (u16, 0 when none), the event id, then the last error and
//! the body when present, each as a u32 length and its bytes. All integers little-endian.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension};

use super::{Outcome, Status, step};

const MAGIC: &[u8; 8] = b"svrjrnl1";
const HEADER: usize = 32;

const HAS_ERROR: u8 = 1;
const HAS_BODY: u8 = 2;

/// What the journal's folds have reached: the generation of the last file folded into `outcomes`;
/// and which ledger this is, a random number its journal files carry, so files left beside a
/// ledger that was since deleted or replaced are never folded into the new one. Created with
/// schema 4 (new ledgers and the migration).
pub(super) const FOLDED: &str = "
CREATE TABLE IF NOT EXISTS journal_folded (
    one         INTEGER PRIMARY KEY CHECK (one = 1),
    ledger      INTEGER NOT NULL,
    generation  INTEGER NOT NULL
);
INSERT OR IGNORE INTO journal_folded (one, ledger, generation) VALUES (1, random(), 0);
";

/// Which ledger this is and how far its folds have reached ([`FOLDED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Folds {
    pub(super) ledger: i64,
    pub(super) generation: u64,
}

/// The journal file of `generation` beside the ledger at `real` (its canonical path).
pub(super) fn file_of(real: &Path, generation: u64) -> PathBuf {
    let mut s = real.as_os_str().to_owned();
    s.push(format!(".journal{}", generation % 2));
    PathBuf::from(s)
}

/// This ledger's [`Folds`]: the generation of the last file folded (0 when none was).
pub(super) fn folded(conn: &Connection) -> rusqlite::Result<Folds> {
    let row: Option<(i64, i64)> = conn
        .query_row("SELECT ledger, generation FROM journal_folded WHERE one = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (ledger, generation) = row.unwrap_or((0, 0));
    Ok(Folds { ledger, generation: generation.max(0) as u64 })
}

/// The file a run appends to, and the outcomes encoded for the next `write`.
pub(super) struct Journal {
    real: PathBuf,
    file: File,
    ledger: i64,
    generation: u64,
    target_id: i64,
    buf: Vec<u8>,
    records: usize,
    bytes: u64,
}

impl Journal {
    /// Start the file of `generation`, replacing what its slot held (a generation already folded).
    pub(super) fn start(real: &Path, ledger: i64, generation: u64, target_id: i64) -> io::Result<Journal> {
        let mut file = crate::ledger::owner_only::create(&file_of(real, generation))?;
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&ledger.to_le_bytes());
        header.extend_from_slice(&generation.to_le_bytes());
        header.extend_from_slice(&target_id.to_le_bytes());
        file.write_all(&header)?;
        Ok(Journal {
            real: real.to_owned(),
            file,
            ledger,
            generation,
            target_id,
            buf: Vec::with_capacity(4096),
            records: 0,
            bytes: HEADER as u64,
        })
    }

    /// Encode one outcome for the next [`Journal::write`].
    pub(super) fn push(&mut self, o: &Outcome, at: i64) {
        let b = &mut self.buf;
        let start = b.len();
        b.extend_from_slice(&[0; 4]);
        let flags = if o.last_error.is_some() { HAS_ERROR } else { 0 } | if o.body.is_some() { HAS_BODY } else { 0 };
        b.extend_from_slice(&[o.status as u8, flags]);
        b.extend_from_slice(&o.attempts.to_le_bytes());
        b.extend_from_slice(&at.to_le_bytes());
        b.extend_from_slice(&o.last_status.unwrap_or(0).to_le_bytes());
        put_bytes(b, o.event_id.as_bytes());
        if let Some(e) = &o.last_error {
            put_bytes(b, e.as_bytes());
        }
        if let Some(body) = &o.body {
            put_bytes(b, body);
        }
        let len = (b.len() - start - 4) as u32;
        b[start..start + 4].copy_from_slice(&len.to_le_bytes());
        let crc = crc32fast::hash(&b[start + 4..]);
        b.extend_from_slice(&crc.to_le_bytes());
        self.records += 1;
    }

    /// Hand what was pushed to the kernel in one `write`: from then on a `kill -9` cannot lose it.
    pub(super) fn write(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.file.write_all(&self.buf) {
            // A write cut short (a full disk, a size limit) may have left whole records of this
            // batch behind: take them back, so what the journal holds is what was acknowledged.
            let _ = self.file.set_len(self.bytes);
            let _ = self.file.seek(io::SeekFrom::Start(self.bytes));
            return Err(e);
        }
        self.bytes += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Outcomes in this file, and its size.
    pub(super) fn size(&self) -> (usize, u64) {
        (self.records, self.bytes)
    }

    /// Start the next generation's file; returns the path of this one, to be folded. The next
    /// file's slot held the generation before this one: fold that first.
    pub(super) fn rotate(&mut self) -> io::Result<PathBuf> {
        self.write()?;
        let next = Journal::start(&self.real, self.ledger, self.generation + 1, self.target_id)?;
        let done = file_of(&self.real, self.generation);
        *self = next;
        Ok(done)
    }

    /// The ledger's canonical path the files are beside.
    pub(super) fn real(&self) -> &Path {
        &self.real
    }

    /// This file's path, for the last fold.
    pub(super) fn path(&self) -> PathBuf {
        file_of(&self.real, self.generation)
    }
}

fn put_bytes(b: &mut Vec<u8>, bytes: &[u8]) {
    b.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    b.extend_from_slice(bytes);
}

/// One journal file as read back: its header and its bytes.
pub(super) struct JournalFile {
    pub(super) ledger: i64,
    pub(super) generation: u64,
    pub(super) target_id: i64,
    bytes: Vec<u8>,
}

/// One outcome as the journal holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry<'a> {
    pub(super) event_id: &'a str,
    pub(super) status: Status,
    pub(super) attempts: u32,
    pub(super) last_status: Option<u16>,
    pub(super) last_error: Option<&'a str>,
    pub(super) at: i64,
    pub(super) body: Option<&'a [u8]>,
}

/// Read the journal file at `path`; `None` when there is none, or it is not one (a file cut short
/// before its header was whole holds no outcome).
pub(super) fn read(path: &Path) -> io::Result<Option<JournalFile>> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => f.read_to_end(&mut bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Ok(None);
    }
    let word = |at: usize| <[u8; 8]>::try_from(&bytes[at..at + 8]).unwrap_or_default();
    let ledger = i64::from_le_bytes(word(8));
    let generation = u64::from_le_bytes(word(16));
    let target_id = i64::from_le_bytes(word(24));
    Ok(Some(JournalFile { ledger, generation, target_id, bytes }))
}

impl JournalFile {
    /// The outcomes in the order they were recorded, up to the first record that is not whole or
    /// fails its checksum: the tail a power cut can tear. Nothing after it was acknowledged.
    pub(super) fn entries(&self) -> Vec<Entry<'_>> {
        self.records().map(|(_, e)| e).collect()
    }

    /// Where each whole record starts, in the order they were recorded ([`JournalFile::entries`]).
    fn offsets(&self) -> Vec<usize> {
        self.records().map(|(at, _)| at).collect()
    }

    /// Each whole record's start and outcome, its checksum checked once, up to the first that is
    /// torn or damaged.
    fn records(&self) -> impl Iterator<Item = (usize, Entry<'_>)> {
        let mut at = HEADER;
        std::iter::from_fn(move || {
            let rest = self.bytes.get(at..)?;
            let (payload, after) = checked(rest)?;
            let entry = parse(payload)?;
            let start = at;
            at = self.bytes.len() - after.len();
            Some((start, entry))
        })
    }

    /// The outcome of the record at `at`, one [`JournalFile::offsets`] found whole: its checksum
    /// is not checked again.
    fn entry(&self, at: usize) -> Option<Entry<'_>> {
        let len = u32::from_le_bytes(self.bytes.get(at..at + 4)?.try_into().ok()?) as usize;
        parse(self.bytes.get(at + 4..at + 4 + len)?)
    }

    /// The event id of the record at `at` (one [`JournalFile::offsets`] found whole), without
    /// checking it again: what sorting compares.
    fn id_at(&self, at: usize) -> &[u8] {
        // Length, then status, flags, attempts, time and last status: 4 + 16 bytes.
        let start = at + 4 + 16;
        let len = self.bytes.get(start..start + 4).map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
        self.bytes.get(start + 4..start + 4 + len).unwrap_or_default()
    }
}

/// The payload of the first record of `b` and what follows it; `None` if it is torn or fails its
/// checksum.
fn checked(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let len = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
    let payload = b.get(4..4 + len)?;
    let crc = u32::from_le_bytes(b.get(4 + len..8 + len)?.try_into().ok()?);
    (crc32fast::hash(payload) == crc).then(|| (payload, &b[8 + len..]))
}

/// A record's payload as an outcome; `None` if it does not read as one.
fn parse(payload: &[u8]) -> Option<Entry<'_>> {
    let mut p = Cursor(payload);
    let status = Status::from_i64(i64::from(p.take(1)?[0]))?;
    let flags = p.take(1)?[0];
    let attempts = u32::from_le_bytes(p.take(4)?.try_into().ok()?);
    let at = i64::from_le_bytes(p.take(8)?.try_into().ok()?);
    let last_status = u16::from_le_bytes(p.take(2)?.try_into().ok()?);
    let event_id = std::str::from_utf8(p.sized()?).ok()?;
    let last_error = if flags & HAS_ERROR != 0 { Some(std::str::from_utf8(p.sized()?).ok()?) } else { None };
    let body = if flags & HAS_BODY != 0 { Some(p.sized()?) } else { None };
    let last_status = (last_status != 0).then_some(last_status);
    Some(Entry { event_id, status, attempts, last_status, last_error, at, body })
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    fn sized(&mut self) -> Option<&'a [u8]> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        self.take(n)
    }
}

/// Fold one journal file into `outcomes`, as recording its outcomes there one by one would have:
/// attempts add up, the first try is kept, the latest outcome wins. In id order, so each page of
/// `outcomes` is written once; one transaction, which also marks the file's generation folded.
pub(super) fn fold(conn: &Connection, file: &JournalFile) -> rusqlite::Result<()> {
    // Where the records start, not the records: a fold's memory is the file and 8 bytes per outcome.
    let mut order = file.offsets();
    // Stable: the outcomes of one event stay in the order they came. (UTF-8 bytes sort as the
    // text does.)
    order.sort_by(|&a, &b| file.id_at(a).cmp(file.id_at(b)));
    step(conn, "BEGIN IMMEDIATE")?;
    {
        // Many rows per statement: each statement's start and end were a fifth of a fold.
        let mut many = conn.prepare_cached(&upsert(ROWS_PER_UPSERT))?;
        let mut one = conn.prepare_cached(&upsert(1))?;
        let mut rows = Vec::with_capacity(ROWS_PER_UPSERT);
        for e in order.iter().filter_map(|&at| file.entry(at)) {
            rows.push(e);
            if rows.len() == ROWS_PER_UPSERT {
                bind_rows(&mut many, file.target_id, &rows)?;
                many.raw_execute()?;
                rows.clear();
            }
        }
        for row in &rows {
            bind_rows(&mut one, file.target_id, std::slice::from_ref(row))?;
            one.raw_execute()?;
        }
    }
    conn.prepare_cached("UPDATE journal_folded SET generation = max(generation, ?1) WHERE one = 1")?
        .execute([file.generation as i64])?;
    step(conn, "COMMIT")?;
    Ok(())
}

const ROWS_PER_UPSERT: usize = 32;

/// How an outcome folded into `outcomes` meets what is there for its event: attempts add up, the
/// first try is kept (`first_at` is only set on insert), the latest outcome wins. The end of every
/// fold's insert, this one's and a schema-3 journal table's ([`super::open::fold_journal`]).
pub(super) const ADD_UP: &str = "
ON CONFLICT (target_id, event_id) DO UPDATE SET
  status = excluded.status,
  attempts = attempts + excluded.attempts,
  last_status = excluded.last_status,
  last_error = excluded.last_error,
  updated_at = excluded.updated_at,
  body = excluded.body";

/// The fold's statement for `rows` outcomes: attempts add up, the first try is kept, the latest
/// outcome wins (rows of one statement are applied in order, a repeat within it included).
fn upsert(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let p = |i: usize| r * 8 + i;
            format!(
                "(?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{}, ?{})",
                p(1),
                p(2),
                p(3),
                p(4),
                p(5),
                p(6),
                p(7),
                p(7),
                p(8)
            )
        })
        .collect();
    format!(
        "INSERT INTO outcomes
           (target_id, event_id, status, attempts, last_status, last_error, first_at, updated_at, body)
         VALUES {} {ADD_UP}",
        values.join(", ")
    )
}

fn bind_rows(stmt: &mut rusqlite::CachedStatement<'_>, target_id: i64, rows: &[Entry<'_>]) -> rusqlite::Result<()> {
    for (r, e) in rows.iter().enumerate() {
        let p = |i: usize| r * 8 + i;
        stmt.raw_bind_parameter(p(1), target_id)?;
        stmt.raw_bind_parameter(p(2), e.event_id)?;
        stmt.raw_bind_parameter(p(3), e.status as i64)?;
        stmt.raw_bind_parameter(p(4), e.attempts)?;
        stmt.raw_bind_parameter(p(5), e.last_status)?;
        stmt.raw_bind_parameter(p(6), e.last_error)?;
        stmt.raw_bind_parameter(p(7), e.at)?;
        stmt.raw_bind_parameter(p(8), e.body)?;
    }
    Ok(())
}

/// The journal files beside the ledger at `real`, oldest first, whichever ledger wrote them.
pub(super) fn files(real: &Path) -> io::Result<Vec<JournalFile>> {
    let mut files = Vec::new();
    for slot in 0..2 {
        files.extend(read(&file_of(real, slot))?);
    }
    files.sort_by_key(|f| f.generation);
    Ok(files)
}

impl JournalFile {
    /// Written by this ledger and not folded into it yet.
    pub(super) fn unfolded(&self, folds: Folds) -> bool {
        self.ledger == folds.ledger && self.generation > folds.generation
    }
}

/// Remove both journal files (all they held is folded).
pub(super) fn remove(real: &Path) -> io::Result<()> {
    for slot in 0..2 {
        match std::fs::remove_file(file_of(real, slot)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// What went wrong recovering or folding: a file that could not be read, or SQLite.
#[derive(Debug)]
pub(super) enum Failure {
    Io(io::Error),
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Failure::Sqlite(e)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

/// Fold what a run that crashed left in the journal, then remove the files (those of another
/// ledger too); returns this ledger and the generation the new run starts at.
pub(super) fn recover(conn: &Connection, real: &Path) -> Result<Folds, Failure> {
    let before = folded(conn)?;
    let mut done = before;
    for f in files(real)?.into_iter().filter(|f| f.unfolded(before)) {
        fold(conn, &f)?;
        done.generation = f.generation;
    }
    remove(real)?;
    Ok(Folds { generation: done.generation + 1, ..done })
}

/// Fold the file at `path` (a run's own, once it is full or the run ends).
pub(super) fn fold_path(conn: &Connection, path: &Path) -> Result<(), Failure> {
    match read(path)? {
        Some(f) => Ok(fold(conn, &f)?),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn outcome(id: &str, status: Status, body: Option<&str>) -> Outcome {
        Outcome {
            event_id: id.into(),
            status,
            attempts: 3,
            last_status: (status != Status::Pending).then_some(422),
            last_error: body.map(|_| "HTTP 422: nope".to_owned()),
            body: body.map(|b| Bytes::from(b.to_owned())),
        }
    }

    #[test]
    fn outcomes_read_back_as_written_in_their_order() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("ledger.db");
        let mut j = Journal::start(&real, 9, 7, 42).unwrap();
        j.push(&outcome("b", Status::Failed, Some("{\"id\":\"b\"}")), 1000);
        j.push(&outcome("a", Status::Pending, None), 1001);
        j.write().unwrap();
        j.push(&outcome("é", Status::Delivered, None), 1002);
        j.write().unwrap();
        assert_eq!(j.size().0, 3);
        let f = read(&file_of(&real, 7)).unwrap().unwrap();
        assert_eq!((f.ledger, f.generation, f.target_id), (9, 7, 42));
        let got = f.entries();
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0],
            Entry {
                event_id: "b",
                status: Status::Failed,
                attempts: 3,
                last_status: Some(422),
                last_error: Some("HTTP 422: nope"),
                at: 1000,
                body: Some(b"{\"id\":\"b\"}"),
            }
        );
        assert_eq!((got[1].event_id, got[1].last_status, got[1].body), ("a", None, None));
        assert_eq!((got[2].event_id, got[2].status, got[2].at), ("é", Status::Delivered, 1002));
    }

    /// A record cut short or with a flipped byte ends the file there: what came before is kept.
    #[test]
    fn a_torn_or_damaged_tail_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("ledger.db");
        let mut j = Journal::start(&real, 9, 1, 1).unwrap();
        for id in ["a", "b", "c"] {
            j.push(&outcome(id, Status::Delivered, None), 5);
        }
        j.write().unwrap();
        let path = file_of(&real, 1);
        let whole = std::fs::read(&path).unwrap();
        for cut in 1..30 {
            std::fs::write(&path, &whole[..whole.len() - cut]).unwrap();
            let ids: Vec<_> = read(&path).unwrap().unwrap().entries().iter().map(|e| e.event_id.to_owned()).collect();
            assert_eq!(ids, ["a", "b"], "cut {cut}");
        }
        let mut flipped = whole.clone();
        let at = whole.len() - 10;
        flipped[at] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert_eq!(read(&path).unwrap().unwrap().entries().len(), 2);
        // Not a journal at all, or cut inside its header: nothing.
        std::fs::write(&path, b"something else entirely, long enough").unwrap();
        assert!(read(&path).unwrap().is_none());
        std::fs::write(&path, &whole[..HEADER - 1]).unwrap();
        assert!(read(&path).unwrap().is_none());
    }

    /// More outcomes than one statement takes, with one event's outcomes on both sides of a
    /// statement's end: each event ends with its latest outcome and all its attempts.
    #[test]
    fn a_fold_applies_every_outcome_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("ledger.db");
        let conn = Connection::open(&real).unwrap();
        conn.execute_batch(&format!(
            "{} {FOLDED} INSERT INTO targets VALUES (1, 'u', 'e', 0);",
            super::super::open::SCHEMA
        ))
        .unwrap();
        let mut j = Journal::start(&real, 9, 1, 1).unwrap();
        let n = 3 * ROWS_PER_UPSERT + 5;
        for i in 0..n {
            j.push(&outcome(&format!("e{i:03}"), Status::Delivered, None), 100 + i as i64);
        }
        // Sorted, its first outcome is the last row of the first statement, this one the first of
        // the next.
        j.push(&outcome("e031", Status::Failed, Some("{}")), 999);
        j.write().unwrap();
        let file = read(&file_of(&real, 1)).unwrap().unwrap();
        fold(&conn, &file).unwrap();
        let count: i64 = conn.query_row("SELECT count(*) FROM outcomes", [], |r| r.get(0)).unwrap();
        let e031: (i64, i64, i64, i64) = conn
            .query_row("SELECT status, attempts, first_at, updated_at FROM outcomes WHERE event_id = 'e031'", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!((count as usize, e031), (n, (Status::Failed as i64, 6, 131, 999)));
        assert_eq!(folded(&conn).unwrap().generation, 1);
    }

    /// It holds failed events' bodies: bookers' personal data, the owner's only like the ledger.
    #[cfg(unix)]
    #[test]
    fn a_journal_file_is_the_owners_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("ledger.db");
        Journal::start(&real, 9, 1, 1).unwrap();
        let mode = std::fs::metadata(file_of(&real, 1)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn the_two_files_take_turns() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("ledger.db");
        let mut j = Journal::start(&real, 9, 4, 1).unwrap();
        j.push(&outcome("a", Status::Delivered, None), 5);
        let done = j.rotate().unwrap();
        assert_eq!(done, file_of(&real, 4));
        assert_ne!(j.path(), done);
        assert_eq!(j.size(), (0, HEADER as u64));
        let unfolded = |folds| -> Vec<u64> {
            files(&real).unwrap().iter().filter(|f| f.unfolded(folds)).map(|f| f.generation).collect()
        };
        assert_eq!(unfolded(Folds { ledger: 9, generation: 0 }), [4, 5]);
        assert_eq!(unfolded(Folds { ledger: 9, generation: 4 }), [5], "a generation already folded is left out");
        assert!(unfolded(Folds { ledger: 8, generation: 0 }).is_empty(), "another ledger's files are left out");
        remove(&real).unwrap();
        assert!(files(&real).unwrap().is_empty());
    }
}
