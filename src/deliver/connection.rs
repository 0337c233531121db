//! One keep-alive HTTP/1.1 connection per worker to the webhook, on hyper directly.
//!
//! Why not reqwest on this path: profiling a 100k-event replay showed the pooled client's
//! per-request work (pool checkout, URL-to-URI conversion, default-header merging, per-request
//! timer wrappers) costing as much CPU as the whole rest of the pipeline. Each worker owning its
//! connection, as oha does, needs no pool and no locking. reqwest still fetches from the SavvyCal
//! API, where a few requests per hundred events make its conveniences free.
//!
//! The worker drives its connection itself, while it sends and reads an answer, instead of
//! spawning a task for it as hyper's examples do: with a task, every request cost two more
//! wake-ups (the worker waking the connection task to write, that task waking the worker with the
//! answer). Between requests nothing polls it; [`Connection::connect`] looks once for a close
//! that arrived meanwhile.
//!
//! TLS is rustls (ring) with the platform's certificate verifier, HTTP/1.1 only (ALPN
//! `http/1.1`). A connection is opened on first use and after any failure; a request found to be
//! unsent on a reused connection (the server closed it while idle) goes once more on a fresh one.
//! Proxies from the environment are honoured as [`crate::deliver::proxy`] decides.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;
use url::Url;

use crate::deliver::cause::Cause;
use crate::deliver::proxy::{ProxyError, Route};
use crate::deliver::shared::BODY_READ_MAX;

/// Where the webhook lives, resolved once per run.
pub struct Endpoint {
    host: String,
    /// The host when it is an IP literal: no name lookup needed.
    ip: Option<std::net::IpAddr>,
    port: u16,
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    /// Straight there, or through a proxy from the environment.
    route: Route,
    /// `Host` header value.
    pub authority: HeaderValue,
    /// The request target: origin-form (path and query), or absolute-form when an `http://`
    /// webhook is reached through a proxy.
    pub path: http::Uri,
    /// `Authorization: Basic …` from credentials in the URL, if any.
    pub basic_auth: Option<HeaderValue>,
}

/// A worker's connection; empty until first used, and again after a failure.
#[derive(Default)]
pub struct Connection {
    open: Option<Open>,
}

/// Plain TCP, or TLS over it.
type Stream = Either<TcpStream, TlsStream<TcpStream>>;

/// An open connection: where requests go in, and the state machine that moves their bytes.
struct Open {
    sender: SendRequest<Full<Bytes>>,
    /// `None` once it has finished (closed, or broken): the sender then reports itself closed.
    io: Io,
}

type Io = Option<Pin<Box<http1::Connection<TokioIo<Stream>, Full<Bytes>>>>>;

impl Open {
    /// Whether another request can go on it.
    fn is_usable(&self) -> bool {
        self.io.is_some() && !self.sender.is_closed()
    }

    /// Move the connection's bytes without waiting: notices a close that arrived while it was idle.
    fn look(&mut self) {
        poll_io(&mut self.io, &mut Context::from_waker(std::task::Waker::noop()));
    }
}

fn poll_io(io: &mut Io, cx: &mut Context<'_>) {
    if let Some(conn) = io
        && conn.as_mut().poll(cx).is_ready()
    {
        // Finished (its errors reach the request in flight): dropping it fails any request still
        // queued, so nothing waits on a connection that is gone.
        *io = None;
    }
}

/// Run `work` (a request, or reading its answer) while moving the connection's bytes.
async fn drive<F: Future>(io: &mut Io, work: F) -> F::Output {
    let mut work = pin!(work);
    std::future::poll_fn(|cx| {
        poll_io(io, cx);
        work.as_mut().poll(cx)
    })
    .await
}

/// Why a request got no complete answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("{}", connect_failure(.0))]
    Connect(io::Error),
    #[error("TLS handshake failed: {}", tls_failure(.0))]
    Tls(io::Error),
    #[error("{0}")]
    Proxy(ProxyError),
    #[error("{}", http_failure(.0))]
    Http(hyper::Error),
    /// No status line before the deadline.
    #[error("no answer in time")]
    Timeout,
}

/// A failed connection in words; running out of file descriptors is ours to fix, so say how.
fn connect_failure(e: &io::Error) -> String {
    if crate::deliver::cause::is_out_of_files(e) {
        crate::deliver::cause::OUT_OF_FILES_HINT.to_owned()
    } else {
        format!("connection failed: {e}")
    }
}

/// A TLS failure in words when we can say it better than rustls (a refused certificate).
fn tls_failure(e: &io::Error) -> String {
    crate::deliver::tls::explain(e, "the webhook").unwrap_or_else(|| e.to_string())
}

/// A hyper error in words: a garbled response, or the whole chain of why the connection broke.
fn http_failure(e: &hyper::Error) -> String {
    if e.is_parse() {
        return format!("invalid HTTP response: {e}");
    }
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    format!("connection broken: {msg}")
}

/// Why the webhook URL cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("unsupported scheme `{0}`")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("the URL has no port")]
    NoPort,
    #[error("cannot load the system's TLS roots: {0}")]
    TlsRoots(rustls::Error),
    #[error("the host is not a valid TLS server name")]
    ServerName,
    #[error("the host is not a valid Host header")]
    HostHeader,
    #[error("the path is not a valid request target: {0}")]
    Path(http::uri::InvalidUri),
    #[error("bad credentials in the URL")]
    Credentials,
    /// The proxy from the environment cannot be used.
    #[error("{0}")]
    Proxy(String),
}

impl SendError {
    /// Why no answer came, as the summary counts it ([`Cause`]).
    pub fn cause(&self) -> Cause {
        match self {
            SendError::Connect(e) => Cause::of_io(e).unwrap_or(Cause::Other),
            // A reset mid-handshake is a reset; anything else is the TLS layer's refusal.
            SendError::Tls(e) => match Cause::of_io(e) {
                Some(c @ (Cause::Reset | Cause::Closed | Cause::Refused)) => c,
                _ => Cause::Tls,
            },
            SendError::Proxy(_) => Cause::Proxy,
            SendError::Http(e) if e.is_parse() => Cause::InvalidResponse,
            SendError::Http(e) if e.is_timeout() => Cause::Timeout,
            SendError::Http(e) => Cause::in_chain(e).unwrap_or(if e.is_incomplete_message() || e.is_canceled() {
                Cause::Closed
            } else {
                Cause::Other
            }),
            SendError::Timeout => Cause::Timeout,
        }
    }

    /// The proxy refused us (a 4xx to CONNECT): asking again cannot help, and it is not the
    /// webhook being down.
    pub fn is_proxy_refusal(&self) -> bool {
        matches!(self, SendError::Proxy(e) if !e.transient)
    }

    /// Whether asking again could help: network trouble yes, a garbled response no.
    pub fn is_transient(&self) -> bool {
        match self {
            SendError::Connect(_) | SendError::Timeout => true,
            // A certificate or protocol problem will not fix itself; a reset mid-handshake may.
            SendError::Tls(e) => e.kind() != io::ErrorKind::InvalidData,
            SendError::Proxy(e) => e.transient,
            SendError::Http(e) => !e.is_parse() && !e.is_user(),
        }
    }
}

impl Endpoint {
    /// `Proxy-Authorization` for every request, when requests go to a proxy with credentials
    /// (a CONNECT tunnel sends it once, on the CONNECT).
    pub fn proxy_auth(&self) -> Option<&HeaderValue> {
        self.forward_proxy().and_then(|proxy| proxy.auth.as_ref())
    }

    pub fn new(url: &Url, connect_timeout: Duration) -> Result<Endpoint, EndpointError> {
        let https = match url.scheme() {
            "https" => true,
            "http" => false,
            other => return Err(EndpointError::Scheme(other.to_owned())),
        };
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        let (host, server_name) = match url.host() {
            Some(url::Host::Domain(d)) => (d.to_owned(), ServerName::try_from(d.to_owned()).ok()),
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), Some(ServerName::IpAddress(std::net::IpAddr::V4(ip).into()))),
            Some(url::Host::Ipv6(ip)) => (ip.to_string(), Some(ServerName::IpAddress(std::net::IpAddr::V6(ip).into()))),
            None => return Err(EndpointError::NoHost),
        };
        let port = url.port_or_known_default().ok_or(EndpointError::NoPort)?;
        let tls = if https {
            crate::deliver::shared::install_crypto_provider();
            let mut config =
                <rustls::ClientConfig as rustls_platform_verifier::ConfigVerifierExt>::with_platform_verifier()
                    .map_err(EndpointError::TlsRoots)?;
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let name = server_name.ok_or(EndpointError::ServerName)?;
            Some((TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        let authority = &url[url::Position::BeforeHost..url::Position::AfterPort];
        let authority = HeaderValue::from_str(authority).map_err(|_| EndpointError::HostHeader)?;
        let route = Route::from_env(url).map_err(EndpointError::Proxy)?;
        let path = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let path = if path.is_empty() { "/" } else { path };
        let path = match &route {
            // A proxy forwarding plain HTTP needs to be told where to: the whole URL, less its
            // credentials (they travel in `Authorization`, not in the proxy's logs).
            Route::Forward(_) => format!("{}://{}{path}", url.scheme(), authority.to_str().unwrap_or_default()),
            Route::Direct | Route::Tunnel(_) => path.to_owned(),
        };
        let path: http::Uri = path.parse().map_err(EndpointError::Path)?;
        let basic_auth = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            use base64::Engine;
            let mut credentials = percent_decode(url.username());
            credentials.push(b':');
            credentials.extend(url.password().map(percent_decode).unwrap_or_default());
            let token = base64::engine::general_purpose::STANDARD.encode(credentials);
            let mut v = HeaderValue::from_str(&format!("Basic {token}")).map_err(|_| EndpointError::Credentials)?;
            v.set_sensitive(true);
            Some(v)
        };
        Ok(Endpoint { host, ip, port, tls, connect_timeout, route, authority, path, basic_auth })
    }

    /// The proxy requests go to in absolute form (an `http://` webhook behind `HTTP_PROXY`).
    pub fn forward_proxy(&self) -> Option<&crate::deliver::proxy::Proxy> {
        match &self.route {
            Route::Forward(proxy) => Some(proxy),
            Route::Direct | Route::Tunnel(_) => None,
        }
    }

    /// `host:port` of the proxy the webhook is reached through, if any (no credentials).
    pub fn proxy_address(&self) -> Option<String> {
        self.route.proxy().map(|p| p.address())
    }

    async fn connect(&self) -> Result<Open, SendError> {
        let tcp = match &self.route {
            Route::Direct => self.connect_direct().await?,
            Route::Forward(proxy) => proxy.connect(self.connect_timeout).await.map_err(SendError::Proxy)?,
            Route::Tunnel(proxy) => {
                proxy.tunnel(&self.host, self.port, self.connect_timeout).await.map_err(SendError::Proxy)?
            }
        };
        let _ = tcp.set_nodelay(true);
        let stream = match &self.tls {
            None => Either::Left(tcp),
            Some((connector, name)) => {
                Either::Right(connector.connect(name.clone(), tcp).await.map_err(SendError::Tls)?)
            }
        };
        let (sender, io) = http1::handshake(TokioIo::new(stream)).await.map_err(SendError::Http)?;
        Ok(Open { sender, io: Some(Box::pin(io)) })
    }

    async fn connect_direct(&self) -> Result<TcpStream, SendError> {
        let connecting = async {
            match self.ip {
                Some(ip) => TcpStream::connect(std::net::SocketAddr::new(ip, self.port)).await,
                None => TcpStream::connect((self.host.as_str(), self.port)).await,
            }
        };
        tokio::time::timeout(self.connect_timeout, connecting)
            .await
            .map_err(|_| SendError::Connect(io::Error::new(io::ErrorKind::TimedOut, "connect timed out")))?
            .map_err(SendError::Connect)
    }
}

/// URL userinfo is percent-encoded, nothing more: `+` is a plus and `&` ends nothing (form
/// decoding, which reads `+` as a space and stops at `&`, would send the wrong password).
/// The bytes go into the header as they are (RFC 7617 leaves the charset to the parties).
fn percent_decode(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

impl Connection {
    /// Open the connection if there is none (or it was closed), so the request that follows is not
    /// delayed by connecting — the workers connect before they take their turn at the rate gate.
    pub async fn connect(&mut self, endpoint: &Endpoint) -> Result<(), SendError> {
        if let Some(open) = &mut self.open {
            open.look();
            if open.is_usable() {
                return Ok(());
            }
        }
        self.open = None;
        self.open = Some(endpoint.connect().await?);
        Ok(())
    }

    /// Send `make()`'s request and read the answer: status, headers, and the first `keep` bytes of
    /// the body. The status line must arrive by `deadline`. The body is read until it ends, until
    /// [`BODY_READ_MAX`] bytes, until `deadline` or until the connection breaks, whichever is first:
    /// the status line decides the outcome, so none of those turn an answer into a failure. A body
    /// not read to its end leaves the connection in an unknown state, so it is dropped.
    pub async fn send(
        &mut self,
        endpoint: &Endpoint,
        make: impl Fn() -> Request<Full<Bytes>>,
        keep: usize,
        deadline: tokio::time::Instant,
    ) -> Result<(Response<()>, Vec<u8>), SendError> {
        let head = tokio::time::timeout_at(deadline, self.send_inner(endpoint, make)).await;
        let response = match head {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                // Whatever state the connection is in, do not reuse it.
                self.open = None;
                return Err(e);
            }
            Err(_) => {
                self.open = None;
                return Err(SendError::Timeout);
            }
        };
        let (parts, body) = response.into_parts();
        let (kept, complete) = match &mut self.open {
            Some(open) => drive(&mut open.io, read_body(body, keep, deadline)).await,
            None => read_body(body, keep, deadline).await,
        };
        if !complete {
            self.open = None;
        }
        Ok((Response::from_parts(parts, ()), kept))
    }

    async fn send_inner(
        &mut self,
        endpoint: &Endpoint,
        make: impl Fn() -> Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, SendError> {
        let mut fresh_tries = 0;
        loop {
            let reused = self.open.is_some();
            let open = match &mut self.open {
                Some(open) => open,
                slot @ None => {
                    fresh_tries += 1;
                    slot.insert(endpoint.connect().await?)
                }
            };
            let Open { sender, io } = open;
            let sent = drive(io, async {
                // An idle connection the server has closed fails here or in `send_request` before
                // anything was written: that request was never sent.
                sender.ready().await.map_err(|_| None)?;
                sender.send_request(make()).await.map_err(Some)
            })
            .await;
            let retry_fresh = reused && fresh_tries == 0;
            return match sent {
                Ok(r) => Ok(r),
                // Never sent: send it on a fresh connection.
                Err(None) if retry_fresh => {
                    self.open = None;
                    continue;
                }
                Err(Some(e)) if retry_fresh && e.is_canceled() => {
                    self.open = None;
                    continue;
                }
                Err(None) => {
                    self.open = None;
                    Err(SendError::Connect(io::Error::new(io::ErrorKind::ConnectionReset, "connection closed")))
                }
                Err(Some(e)) => Err(SendError::Http(e)),
            };
        }
    }
}

/// Read a response body: the first `keep` bytes are returned, at most [`BODY_READ_MAX`] are read,
/// and reading stops at `deadline`. The flag says whether the body was read to its end.
async fn read_body(mut body: Incoming, keep: usize, deadline: tokio::time::Instant) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut read = 0usize;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => return (kept, true),
            // Broken mid-body, or too slow: what we have is all we get.
            Ok(Some(Err(_))) | Err(_) => return (kept, false),
        };
        if let Ok(data) = frame.into_data() {
            read += data.len();
            if kept.len() < keep {
                kept.extend_from_slice(&data[..data.len().min(keep - kept.len())]);
            }
            if read > BODY_READ_MAX {
                return (kept, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_parts_come_from_the_url() {
        let e =
            Endpoint::new(&Url::parse("http://127.0.0.1:8080/hooks/in?x=1").unwrap(), Duration::from_secs(1)).unwrap();
        assert_eq!(e.authority, "127.0.0.1:8080");
        assert_eq!(e.path, "/hooks/in?x=1");
        assert!(e.basic_auth.is_none());
        let e = Endpoint::new(&Url::parse("https://u%40x:p%3Aw@hooks.example.com").unwrap(), Duration::from_secs(1))
            .unwrap();
        assert_eq!(e.authority, "hooks.example.com");
        assert_eq!(e.path, "/");
        // base64("u@x:p:w")
        assert_eq!(e.basic_auth.unwrap(), "Basic dUB4OnA6dw==");
        let e = Endpoint::new(&Url::parse("http://[::1]:9/").unwrap(), Duration::from_secs(1)).unwrap();
        assert_eq!(e.host, "::1");
        assert_eq!(e.authority, "[::1]:9");
    }
}
