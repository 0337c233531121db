//! Reading an API answer's body: the cap on its size, the deadline for the whole answer, and
//! whether a successful answer is JSON at all, with the start of it quoted for the message.

use std::time::Duration;

use bytes::Bytes;

use crate::deliver::shared::root_cause;

/// How much of a non-JSON body an error message quotes.
const QUOTED_BYTES: usize = 80;

/// Whether a successful answer is plainly not JSON (every answer we read is an object): HTML, or
/// anything else not starting with `{` or `[`. What it is, and its content type, for the message.
pub(super) fn not_json(headers: &http::HeaderMap, body: &[u8]) -> Option<(&'static str, String)> {
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .map_or_else(|| "none".to_owned(), |v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let first = body.strip_prefix("\u{feff}".as_bytes()).unwrap_or(body).iter().find(|b| !b.is_ascii_whitespace());
    match first {
        Some(b'{' | b'[') => None,
        Some(b'<') => Some(("HTML", content_type)),
        _ if content_type.to_ascii_lowercase().contains("html") => Some(("HTML", content_type)),
        None => Some(("an empty body", content_type)),
        Some(_) => Some(("a body that is not JSON", content_type)),
    }
}

/// The first [`QUOTED_BYTES`] of a body as one printable line: control characters and runs of
/// white space become one space.
pub(super) fn body_start(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(QUOTED_BYTES)]);
    let printable: String = text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
    let mut line = printable.split_whitespace().collect::<Vec<_>>().join(" ");
    if body.len() > QUOTED_BYTES {
        line.push('…');
    }
    line
}

/// Most of a page body we hold: SavvyCal pages of 100 events are a few hundred KiB, so this only
/// stops an answer that never ends from taking all memory.
pub const MAX_PAGE_BYTES: usize = 64 << 20;

/// Why a response body was not read to its end.
pub(super) enum BodyError {
    TooLarge,
    TimedOut,
    Broken(String),
}

impl BodyError {
    pub(super) fn describe(&self, timeout: Duration) -> String {
        match self {
            BodyError::TooLarge => "the response body is too large".to_owned(),
            BodyError::TimedOut => format!(
                "timed out after {} reading the response body (--timeout bounds the whole answer)",
                humantime::format_duration(timeout)
            ),
            BodyError::Broken(e) => format!("connection broken while reading the response body: {e}"),
        }
    }
}

/// Read a body up to `cap` bytes and until `deadline`. On failure, what was read so far comes
/// with the reason (enough for an error message).
pub(super) async fn read_body(
    mut resp: reqwest::Response,
    cap: usize,
    deadline: tokio::time::Instant,
) -> Result<Bytes, (BodyError, Bytes)> {
    if resp.content_length().is_some_and(|n| n > cap as u64) && cap == MAX_PAGE_BYTES {
        return Err((BodyError::TooLarge, Bytes::new()));
    }
    let mut first: Option<Bytes> = None;
    let mut rest = bytes::BytesMut::new();
    let mut len = 0usize;
    let result = loop {
        match tokio::time::timeout_at(deadline, resp.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                len += chunk.len();
                if len > cap {
                    break Err(BodyError::TooLarge);
                }
                // One chunk is the common case for a small page: keep it without a copy.
                match &first {
                    None => first = Some(chunk),
                    Some(f) => {
                        if rest.is_empty() {
                            rest.extend_from_slice(f);
                        }
                        rest.extend_from_slice(&chunk);
                    }
                }
            }
            Ok(Ok(None)) => break Ok(()),
            Ok(Err(e)) if e.is_timeout() => break Err(BodyError::TimedOut),
            Ok(Err(e)) => break Err(BodyError::Broken(root_cause(&e))),
            Err(_) => break Err(BodyError::TimedOut),
        }
    };
    let body = if rest.is_empty() { first.unwrap_or_default() } else { rest.freeze() };
    match result {
        Ok(()) => Ok(body),
        Err(e) => Err((e, body)),
    }
}
