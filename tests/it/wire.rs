//! A minimal HTTP/1.1 server for the transport tests ([`crate::transport`]): requests read off
//! the wire by hand, so a test decides exactly when a connection answers, closes or hangs, and
//! counts what it saw.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// One request as read off the wire.
pub(crate) struct Request {
    pub(crate) line: String,
    /// Names lower-cased.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Request {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// `payload.id` of the envelope.
    fn event_id(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).expect("a JSON body");
        v["payload"]["id"].as_str().expect("payload.id").to_owned()
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Requests in, answers out, over one connection; bytes read past a request are kept.
pub(crate) struct Wire<S> {
    pub(crate) io: S,
    pub(crate) buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    pub(crate) fn new(io: S) -> Self {
        Wire { io, buf: Vec::new() }
    }

    /// Read more bytes into the buffer; 0 when the peer closed.
    pub(crate) async fn fill(&mut self) -> io::Result<usize> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.io.read(&mut chunk).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// The next request: headers up to `\r\n\r\n`, then a `Content-Length` body. `Ok(None)`: the
    /// peer closed cleanly between requests.
    pub(crate) async fn next(&mut self) -> io::Result<Option<Request>> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            if self.fill().await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed mid-request"))
                };
            }
        };
        let head = std::str::from_utf8(&self.buf[..head_end - 4]).map_err(|_| invalid("head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap_or_default().to_owned();
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').ok_or_else(|| invalid(format!("bad header line {l:?}")))?;
                Ok((n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            })
            .collect::<io::Result<Vec<_>>>()?;
        if headers.iter().any(|(n, _)| n == "transfer-encoding") {
            return Err(invalid("chunked bodies are not supported here"));
        }
        let len = match headers.iter().find(|(n, _)| n == "content-length") {
            Some((_, v)) => v.parse::<usize>().map_err(|_| invalid("bad content-length"))?,
            None => 0,
        };
        while self.buf.len() < head_end + len {
            if self.fill().await? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed mid-body"));
            }
        }
        let body = self.buf[head_end..head_end + len].to_vec();
        self.buf.drain(..head_end + len);
        Ok(Some(Request { line, headers, body }))
    }

    /// `200 OK` with a small JSON body; with `close`, `Connection: close` and the write side shut.
    pub(crate) async fn ok(&mut self, close: bool) -> io::Result<()> {
        let body = br#"{"ok":true}"#;
        let conn = if close { "connection: close\r\n" } else { "" };
        let mut answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{conn}\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(body);
        // In one write: head and body apart would meet Nagle and a delayed ACK (40 ms).
        self.io.write_all(&answer).await?;
        self.io.flush().await?;
        if close {
            self.io.shutdown().await?;
        }
        Ok(())
    }
}

/// What a test server saw.
#[derive(Default)]
pub(crate) struct Log {
    /// Every request read, answered or not, in order of arrival, with its event id.
    pub(crate) requests: Mutex<Vec<(String, Request)>>,
    /// How many requests each event got.
    per_event: Mutex<HashMap<String, usize>>,
    /// Named counters: connections, and whatever a test's handler counts.
    counts: Mutex<HashMap<&'static str, usize>>,
}

impl Log {
    /// Keep `req`; how many requests for the same event came before it.
    pub(crate) fn arrive(&self, req: Request) -> usize {
        assert!(req.line.starts_with("POST /hook "), "request line {:?}", req.line);
        let id = req.event_id();
        let before = {
            let mut per_event = self.per_event.lock().unwrap();
            let n = per_event.entry(id.clone()).or_insert(0);
            *n += 1;
            *n - 1
        };
        self.requests.lock().unwrap().push((id, req));
        before
    }

    pub(crate) fn per_event(&self) -> HashMap<String, usize> {
        self.per_event.lock().unwrap().clone()
    }

    pub(crate) fn count(&self, what: &'static str) {
        *self.counts.lock().unwrap().entry(what).or_insert(0) += 1;
    }

    pub(crate) fn get(&self, what: &'static str) -> usize {
        self.counts.lock().unwrap().get(what).copied().unwrap_or(0)
    }
}

/// Listen on 127.0.0.1 and run `handler` on every connection; the port and the log.
pub(crate) async fn serve<F, Fut>(handler: F) -> (u16, Arc<Log>)
where
    F: Fn(TcpStream, Arc<Log>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let log = Arc::new(Log::default());
    let l = log.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            l.count("connections");
            let served = handler(tcp, l.clone());
            let l = l.clone();
            tokio::spawn(async move {
                served.await;
                l.count("connections ended");
            });
        }
    });
    (port, log)
}

/// Answer every request `200` on a keep-alive connection until the client closes it.
pub(crate) async fn answer_all<S: AsyncRead + AsyncWrite + Unpin>(io: S, log: &Log) {
    let mut w = Wire::new(io);
    while let Ok(Some(req)) = w.next().await {
        log.arrive(req);
        if w.ok(false).await.is_err() {
            return;
        }
    }
}
