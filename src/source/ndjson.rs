//! NDJSON input (`--input FILE` or `-` for stdin): one event object per line.
//!
//! This is also what `export` and `failed` write. A malformed line (not JSON, not an event, not
//! UTF-8, or longer than 16 MiB) is reported with its line number and skipped, so every valid
//! event around it is still delivered; the run then ends with exit status 3 so the bad lines are
//! not silently forgotten.
//!
//! Lines are cut by a `tokio_util::codec` decoder ([`LineCodec`]) straight out of the read buffer:
//! each line is a `Bytes` slice of it, so an event's bytes are never copied on their way to the
//! envelope. A line longer than the limit is skipped as it streams past, never held whole. Lines
//! are handed on a batch at a time (the ledger is consulted per batch), but a batch does not wait
//! long for more: a slow writer on stdin does not hold back the lines it already wrote.

use std::io;
use std::path::Path;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::AsyncRead;
use tokio_util::codec::{Decoder, FramedRead};

use super::{Batch, SourceError};
use crate::event::{Event, EventError};

/// Lines per batch (the ledger is consulted a batch at a time).
const BATCH_LINES: usize = 100;
/// How long a started batch waits for more lines before it goes out anyway.
const BATCH_WAIT: Duration = Duration::from_millis(100);
/// Longest line we read as an event (SavvyCal events are a few KiB).
const MAX_LINE: usize = 16 << 20;
/// More malformed lines than this and the input is clearly not NDJSON events: stop.
const MAX_MALFORMED: u64 = 1000;
/// Read buffer size: large reads for files; lines are sliced out of it.
const READ_BUFFER: usize = 256 * 1024;
/// How much a file (or stdin) is read at a time. Every read of tokio's `File` and `Stdin` is a trip
/// to a blocking thread and back, and the line buffer alone asks for at most 64 KiB at a time
/// (`BytesMut` grows by its original capacity, capped there): a trip every 30 events of 2 KB,
/// and two context switches each. Reading through a buffer this large makes it one trip per 250.
const READ_CHUNK: usize = 512 * 1024;
/// A UTF-8 byte-order mark, which some editors put at the start of a file, and so at the start of
/// a line when such files are concatenated (`cat a.ndjson b.ndjson`).
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// One line of input, without its `\n`.
#[derive(Debug, PartialEq, Eq)]
pub enum Line {
    Text(Bytes),
    /// Longer than the limit: its bytes were skipped, not kept.
    TooLong,
}

/// Splits a byte stream at `\n` into [`Line`]s of at most `max` bytes (the `\n` not counted).
/// tokio-util's `LinesCodec` yields `String`s and ends the stream on an over-long line; this
/// yields `Bytes` slices of the read buffer and reports an over-long line as one more line.
#[derive(Debug)]
pub struct LineCodec {
    max: usize,
    /// Inside an over-long line: drop bytes up to the next `\n`.
    discarding: bool,
    /// How far the buffer was already searched for `\n`, so no byte is scanned twice.
    scanned: usize,
}

impl LineCodec {
    pub fn new(max: usize) -> LineCodec {
        LineCodec { max, discarding: false, scanned: 0 }
    }
}

impl Decoder for LineCodec {
    type Item = Line;
    type Error = io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<Line>> {
        // memchr looks at a word at a time; a byte-by-byte search was a visible share of the CPU.
        let newline = memchr::memchr(b'\n', &buf[self.scanned..]).map(|i| i + self.scanned);
        match newline {
            Some(i) => {
                self.scanned = 0;
                if self.discarding || i > self.max {
                    self.discarding = false;
                    buf.advance(i + 1);
                    return Ok(Some(Line::TooLong));
                }
                let line = buf.split_to(i + 1).freeze();
                Ok(Some(Line::Text(line.slice(..i))))
            }
            None if self.discarding || buf.len() > self.max => {
                // Too long already: forget what we have and skip to the end of the line.
                self.discarding = true;
                self.scanned = 0;
                buf.clear();
                Ok(None)
            }
            None => {
                self.scanned = buf.len();
                Ok(None)
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> io::Result<Option<Line>> {
        if let Some(line) = self.decode(buf)? {
            return Ok(Some(line));
        }
        self.scanned = 0;
        if std::mem::take(&mut self.discarding) {
            buf.clear();
            return Ok(Some(Line::TooLong));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        // The last line, without a final newline.
        Ok(Some(Line::Text(buf.split().freeze())))
    }
}

pub struct NdjsonReader {
    lines: FramedRead<Box<dyn AsyncRead + Send + Unpin>, LineCodec>,
    name: String,
    line_no: u64,
    malformed: u64,
    first_malformed: Option<String>,
    done: bool,
    /// The input failed while a batch was being filled: that batch goes out first (its events
    /// were read and are processed), the failure with the next call.
    failed: Option<SourceError>,
    /// The file's size, when it is a regular file (not stdin or a pipe): for the progress estimate.
    size: Option<u64>,
    /// Bytes of the lines read so far.
    consumed: u64,
}

impl NdjsonReader {
    /// Open `path` (`-` = stdin). Fails at once if the file cannot be opened or is a directory.
    pub async fn open(path: &Path) -> io::Result<NdjsonReader> {
        let (reader, name): (Box<dyn AsyncRead + Send + Unpin>, String) = if path == Path::new("-") {
            (Box::new(tokio::io::BufReader::with_capacity(READ_CHUNK, tokio::io::stdin())), "stdin".to_owned())
        } else {
            let file = tokio::fs::File::open(path).await?;
            // Opening a directory succeeds on Unix; reading it is what fails, too late to be
            // seen as the usage error it is.
            let meta = file.metadata().await?;
            if meta.is_dir() {
                return Err(io::Error::new(
                    io::ErrorKind::IsADirectory,
                    "it is a directory; --input takes an NDJSON file, or - for stdin",
                ));
            }
            let size = meta.is_file().then_some(meta.len());
            return Ok(NdjsonReader {
                size,
                ..NdjsonReader::from_reader(
                    Box::new(tokio::io::BufReader::with_capacity(READ_CHUNK, file)),
                    path.display().to_string(),
                )
            });
        };
        Ok(NdjsonReader::from_reader(reader, name))
    }

    /// How much of the file has been read (`None` for stdin or a pipe, whose size is unknown).
    pub fn read_fraction(&self) -> Option<f64> {
        crate::output::estimate::byte_fraction(self.consumed, self.size)
    }

    pub fn from_reader(reader: Box<dyn AsyncRead + Send + Unpin>, name: String) -> NdjsonReader {
        NdjsonReader {
            lines: FramedRead::with_capacity(reader, LineCodec::new(MAX_LINE), READ_BUFFER),
            name,
            line_no: 0,
            malformed: 0,
            first_malformed: None,
            done: false,
            failed: None,
            size: None,
            consumed: 0,
        }
    }

    pub fn describe(&self) -> String {
        self.name.clone()
    }

    /// The next line: `None` at the end of the input.
    async fn next_line(&mut self) -> Result<Option<Line>, SourceError> {
        match self.lines.next().await {
            None => Ok(None),
            Some(Ok(line)) => {
                // An over-long line's length is not kept; it is rare enough to leave out.
                if let Line::Text(text) = &line {
                    self.consumed += text.len() as u64 + 1;
                }
                Ok(Some(line))
            }
            Some(Err(error)) => Err(SourceError::Read { path: self.name.clone(), error }),
        }
    }

    /// Read one line as an event, or say why it is not one.
    fn parse(&self, line: Line) -> Result<Option<Event>, String> {
        let mut line = match line {
            Line::Text(b) => b,
            Line::TooLong => return Err(format!("the line is longer than {} MiB", MAX_LINE >> 20)),
        };
        if line.starts_with(BOM) {
            line.advance(BOM.len());
        }
        let trimmed = line.trim_ascii();
        if trimmed.is_empty() {
            return Ok(None);
        }
        let raw = line.slice_ref(trimmed);
        Event::from_raw(raw).map(Some).map_err(|e| match e {
            // Counted from the start of the line, not of the object on it.
            EventError::NotUtf8 { at } => {
                let lead = line.len() - line.trim_ascii_start().len();
                format!("the line is not valid UTF-8 (at byte {})", lead + at + 1)
            }
            e => e.to_string(),
        })
    }

    pub async fn next_batch(&mut self) -> Result<Option<Batch>, SourceError> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        if self.done {
            return Ok(None);
        }
        let mut batch = Batch::default();
        // Armed when the batch gets its first line: from then on it waits at most BATCH_WAIT.
        let mut flush_at: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
        while batch.events.len() < BATCH_LINES {
            let line = match &mut flush_at {
                None => self.next_line().await,
                Some(flush) => tokio::select! {
                    biased;
                    line = self.next_line() => line,
                    () = flush.as_mut() => break,
                },
            };
            let line = match line {
                Ok(line) => line,
                Err(e) => {
                    self.fail(e, &batch)?;
                    break;
                }
            };
            let Some(line) = line else {
                self.done = true;
                break;
            };
            self.line_no += 1;
            match self.parse(line) {
                Ok(None) => continue,
                Ok(Some(ev)) => batch.events.push(ev),
                Err(e) => {
                    let msg = format!("{} line {}: {e}", self.name, self.line_no);
                    self.malformed += 1;
                    if self.malformed > MAX_MALFORMED {
                        let first = self.first_malformed.clone().unwrap_or(msg);
                        self.fail(SourceError::TooManyMalformed { count: self.malformed, first }, &batch)?;
                        break;
                    }
                    self.first_malformed.get_or_insert_with(|| msg.clone());
                    batch.malformed.push(msg);
                }
            }
            if flush_at.is_none() {
                flush_at = Some(Box::pin(tokio::time::sleep(BATCH_WAIT)));
            }
        }
        if self.done && batch.events.is_empty() && batch.malformed.is_empty() {
            return Ok(None);
        }
        Ok(Some(batch))
    }

    /// The input failed: at once when the batch is empty, else after handing the batch out.
    fn fail(&mut self, e: SourceError, batch: &Batch) -> Result<(), SourceError> {
        if batch.events.is_empty() && batch.malformed.is_empty() {
            return Err(e);
        }
        self.failed = Some(e);
        self.done = true;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(text: &'static [u8]) -> NdjsonReader {
        NdjsonReader::from_reader(Box::new(text), "events.ndjson".into())
    }

    #[tokio::test]
    async fn reads_events_and_names_bad_lines() {
        let mut r = reader(b"{\"id\":\"a\"}\n\n{broken\r\n{\"id\":\"b\",\"n\":1}\r\n[1]\n{\"id\":\"c\"}");
        let b = r.next_batch().await.unwrap().unwrap();
        let ids: Vec<_> = b.events.iter().map(|e| e.id.to_string()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(&b.events[1].raw[..], b"{\"id\":\"b\",\"n\":1}");
        assert_eq!(b.malformed.len(), 2);
        assert!(b.malformed[0].starts_with("events.ndjson line 3:"), "{}", b.malformed[0]);
        assert!(b.malformed[1].starts_with("events.ndjson line 5:"), "{}", b.malformed[1]);
        assert!(r.next_batch().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn invalid_utf8_is_malformed_and_a_bom_at_the_start_of_any_line_is_ignored() {
        let mut r = reader(
            b"\xEF\xBB\xBF{\"id\":\"a\"}\n{\"id\":\"b\",\"x\":\"\xff\"}\n{\"id\":\"c\"}\n\xEF\xBB\xBF{\"id\":\"d\"}\n",
        );
        let b = r.next_batch().await.unwrap().unwrap();
        let ids: Vec<_> = b.events.iter().map(|e| e.id.to_string()).collect();
        // Line 4 starts the second of two files concatenated, each with its mark.
        assert_eq!(ids, ["a", "c", "d"]);
        assert_eq!(&b.events[0].raw[..], b"{\"id\":\"a\"}");
        assert_eq!(&b.events[2].raw[..], b"{\"id\":\"d\"}");
        assert_eq!(b.malformed.len(), 1, "{:?}", b.malformed);
        assert!(b.malformed[0].starts_with("events.ndjson line 2: the line is not valid UTF-8"), "{}", b.malformed[0]);
    }

    #[tokio::test]
    async fn a_runaway_line_is_refused_without_holding_it_in_memory() {
        let mut text = vec![b'x'; MAX_LINE + 10];
        text.extend_from_slice(b"\n{\"id\":\"after\"}\n");
        let mut r = NdjsonReader::from_reader(Box::new(std::io::Cursor::new(text)), "big".into());
        let b = r.next_batch().await.unwrap().unwrap();
        assert_eq!(b.malformed.len(), 1);
        assert!(
            b.malformed[0].contains("line 1") && b.malformed[0].contains("longer than 16 MiB"),
            "{}",
            b.malformed[0]
        );
        assert_eq!(&*b.events[0].id, "after");
        assert!(r.lines.read_buffer().capacity() <= MAX_LINE + 2 * READ_BUFFER);
    }

    #[test]
    fn the_codec_cuts_lines_and_skips_long_ones() {
        let mut c = LineCodec::new(4);
        let mut buf = BytesMut::from(&b"ab\nabcd\nabcde"[..]);
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Line::Text(Bytes::from_static(b"ab"))));
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Line::Text(Bytes::from_static(b"abcd"))));
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty(), "an over-long line is not kept");
        buf.extend_from_slice(b"fgh\nxy");
        assert_eq!(c.decode(&mut buf).unwrap(), Some(Line::TooLong));
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        assert_eq!(c.decode_eof(&mut buf).unwrap(), Some(Line::Text(Bytes::from_static(b"xy"))));
        assert_eq!(c.decode_eof(&mut buf).unwrap(), None);
        let mut buf = BytesMut::from(&b"abcdefgh"[..]);
        assert_eq!(c.decode(&mut buf).unwrap(), None);
        assert_eq!(c.decode_eof(&mut buf).unwrap(), Some(Line::TooLong));
        assert_eq!(c.decode_eof(&mut buf).unwrap(), None);
    }

    #[tokio::test]
    async fn a_directory_is_refused_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let e = NdjsonReader::open(dir.path()).await.err().unwrap();
        assert_eq!(e.kind(), io::ErrorKind::IsADirectory);
    }

    #[tokio::test]
    async fn batches_are_bounded() {
        let text: String = (0..250).map(|i| format!("{{\"id\":\"e{i}\"}}\n")).collect();
        let mut r = NdjsonReader::from_reader(Box::new(std::io::Cursor::new(text.into_bytes())), "x".into());
        let sizes: Vec<usize> = {
            let mut v = Vec::new();
            while let Some(b) = r.next_batch().await.unwrap() {
                v.push(b.events.len());
            }
            v
        };
        assert_eq!(sizes, [100, 100, 50]);
    }

    /// The progress estimate's input for a file: the bytes of the lines read against its size.
    #[tokio::test]
    async fn a_file_says_how_much_of_it_has_been_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("e.ndjson");
        let text: String = (0..250).map(|i| format!("{{\"id\":\"e{i:03}\"}}\n")).collect();
        std::fs::write(&path, &text).unwrap();
        let mut r = NdjsonReader::open(&path).await.unwrap();
        assert_eq!(r.read_fraction(), Some(0.0));
        r.next_batch().await.unwrap();
        assert!((r.read_fraction().unwrap() - 0.4).abs() < 1e-9, "{:?}", r.read_fraction());
        while r.next_batch().await.unwrap().is_some() {}
        assert_eq!(r.read_fraction(), Some(1.0));
        // A stream's size is unknown: no fraction.
        let r = NdjsonReader::from_reader(Box::new(std::io::Cursor::new(text.into_bytes())), "x".into());
        assert_eq!(r.read_fraction(), None);
    }
}

#[cfg(test)]
mod properties;
