//! NDJSON input (`--input FILE` or `-` for stdin): one event object per line.
//!
//! This is also what `export` and `failed` write. A malformed line is reported with its line number
//! and skipped, so every valid event around it is still delivered; the run then ends with exit
//! status 3 so the bad lines are not silently forgotten. Lines are read a block at a time.

use std::path::Path;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::{Batch, SourceError};
use crate::event::{Event, EventError};

/// Lines per batch (the ledger is consulted a batch at a time).
const BATCH_LINES: usize = 100;
/// Longest line we read as an event (SavvyCal events are a few KiB).
const MAX_LINE: usize = 16 << 20;
/// More malformed lines than this and the input is clearly not NDJSON events: stop.
const MAX_MALFORMED: u64 = 1000;

pub struct NdjsonReader {
    reader: BufReader<Box<dyn AsyncRead + Send + Unpin>>,
    name: String,
    line_no: u64,
    malformed: u64,
    first_malformed: Option<String>,
    buf: Vec<u8>,
    done: bool,
}

impl NdjsonReader {
    /// Open `path` (`-` = stdin). Fails at once if the file cannot be opened.
    pub async fn open(path: &Path) -> std::io::Result<NdjsonReader> {
        let (reader, name): (Box<dyn AsyncRead + Send + Unpin>, String) = if path == Path::new("-") {
            (Box::new(tokio::io::stdin()), "stdin".to_owned())
        } else {
            let file = tokio::fs::File::open(path).await?;
            (Box::new(file), path.display().to_string())
        };
        Ok(NdjsonReader::from_reader(reader, name))
    }

    pub fn from_reader(reader: Box<dyn AsyncRead + Send + Unpin>, name: String) -> NdjsonReader {
        NdjsonReader {
            reader: BufReader::with_capacity(256 * 1024, reader),
            name,
            line_no: 0,
            malformed: 0,
            first_malformed: None,
            buf: Vec::with_capacity(8 * 1024),
            done: false,
        }
    }

    pub fn describe(&self) -> String {
        self.name.clone()
    }

    /// Read one line into `buf`, keeping at most [`MAX_LINE`] bytes of it (the rest is skipped, so
    /// a runaway line cannot exhaust memory). Returns the bytes consumed and whether it all fit.
    async fn read_line(&mut self) -> Result<(usize, bool), SourceError> {
        self.buf.clear();
        let mut consumed = 0;
        let mut complete = true;
        loop {
            let chunk =
                self.reader.fill_buf().await.map_err(|error| SourceError::Read { path: self.name.clone(), error })?;
            if chunk.is_empty() {
                return Ok((consumed, complete));
            }
            let (take, end) = match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (chunk.len(), false),
            };
            let room = MAX_LINE.saturating_sub(self.buf.len());
            if take > room {
                complete = false;
            }
            self.buf.extend_from_slice(&chunk[..take.min(room)]);
            self.reader.consume(take);
            consumed += take;
            if end {
                return Ok((consumed, complete));
            }
        }
    }

    pub async fn next_batch(&mut self) -> Result<Option<Batch>, SourceError> {
        if self.done {
            return Ok(None);
        }
        let mut batch = Batch::default();
        while batch.events.len() < BATCH_LINES {
            let (n, complete) = self.read_line().await?;
            if n == 0 {
                self.done = true;
                break;
            }
            self.line_no += 1;
            let line = self.buf.trim_ascii();
            if line.is_empty() {
                continue;
            }
            let parsed = if complete {
                Event::from_raw(Bytes::copy_from_slice(line))
            } else {
                Err(EventError::Shape(format!("the line is longer than {} MiB", MAX_LINE >> 20)))
            };
            match parsed {
                Ok(ev) => batch.events.push(ev),
                Err(e) => {
                    let msg = format!("{} line {}: {e}", self.name, self.line_no);
                    self.malformed += 1;
                    if self.malformed > MAX_MALFORMED {
                        return Err(SourceError::TooManyMalformed {
                            count: self.malformed,
                            first: self.first_malformed.clone().unwrap_or(msg),
                        });
                    }
                    self.first_malformed.get_or_insert_with(|| msg.clone());
                    batch.malformed.push(msg);
                }
            }
        }
        if self.done && batch.events.is_empty() && batch.malformed.is_empty() {
            return Ok(None);
        }
        Ok(Some(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(text: &'static str) -> NdjsonReader {
        NdjsonReader::from_reader(Box::new(text.as_bytes()), "events.ndjson".into())
    }

    #[tokio::test]
    async fn reads_events_and_names_bad_lines() {
        let mut r = reader("{\"id\":\"a\"}\n\n{broken\r\n{\"id\":\"b\",\"n\":1}\r\n[1]\n{\"id\":\"c\"}");
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
        assert!(r.buf.capacity() <= MAX_LINE + 256 * 1024);
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
}
