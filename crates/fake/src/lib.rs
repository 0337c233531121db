//! Embedded fake SavvyCal API and webhook receiver (used by `demo`, `sink` and the tests).
//!
//! Both are small HTTP/1.1 servers built directly on hyper, bound on loopback and spawned on the
//! current tokio runtime, so the whole job can run on one machine with no account: the `demo`
//! command replays generated bookings from [`FakeApi`] into [`Receiver`], `sink` is a [`Receiver`]
//! on a chosen address, and the integration tests and benchmarks use both to exercise paging,
//! retries, signatures and throughput without a network.
//!
//! This file holds the plumbing the two servers share: the accept loop (one hyper connection task
//! per TCP connection, keep-alive on) and graceful shutdown.

pub mod api;
pub mod bookings;
pub mod limits;
pub mod receiver;
pub mod webhooks;

pub use api::{ApiFault, FakeApi, FakeApiConfig};
pub use bookings::generate_bookings;
pub use receiver::{Delivery, HexCase, Receiver, ReceiverConfig, ReceiverStats};
pub use webhooks::FakeWebhook;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

/// How long [`Server::shutdown`] lets in-flight requests finish before cutting connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Back-off after a failed `accept` (e.g. out of file descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(10);

/// Response body type of both servers: the whole body in one buffer.
pub(crate) type Body = Full<Bytes>;

/// What a handler returns: a response, or [`DropConnection`] to close the connection unanswered.
pub(crate) type Reply = Result<Response<Body>, DropConnection>;

/// Returned by a handler to make hyper drop the connection without writing a response — how the
/// fakes simulate a peer that vanishes mid-request.
#[derive(Debug)]
pub(crate) struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for DropConnection {}

/// A receiver's `--quota`: at most `n` requests per fixed window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub n: u32,
    pub per: Duration,
}

/// A response with a JSON content type and the given body.
pub(crate) fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A running loopback server: the accept-loop task and the token that stops it.
///
/// Dropping it without [`Server::shutdown`] still stops the server (without waiting for it).
#[derive(Debug)]
pub(crate) struct Server {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` and serves every connection with `handler` on the current tokio runtime.
    pub(crate) async fn start<H, F>(addr: SocketAddr, handler: H) -> io::Result<Server>
    where
        H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
        F: Future<Output = Reply> + Send + 'static,
    {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let task = tokio::spawn(accept_loop(listener, handler, cancel.clone()));
        Ok(Server { addr, cancel, task: Some(task) })
    }

    /// The address actually bound (with the real port when started on port 0).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets in-flight requests finish (for at most [`SHUTDOWN_GRACE`]) and closes
    /// idle keep-alive connections.
    pub(crate) async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(task) = self.task.take()
            && let Err(err) = task.await
        {
            tracing::debug!(%err, "fake server task ended abnormally");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop<H, F>(listener: TcpListener, handler: H, cancel: CancellationToken)
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => break,
            // Reap finished connection tasks so the set stays as small as the live connections.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(stream, handler.clone(), cancel.clone()));
                }
                Err(err) => {
                    tracing::debug!(%err, "fake server: accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                }
            },
        }
    }
    drop(listener);
    let drained =
        tokio::time::timeout(SHUTDOWN_GRACE, async { while connections.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::debug!("fake server: cutting connections still busy after the grace period");
    }
    connections.shutdown().await;
}

async fn serve_connection<H, F>(stream: TcpStream, handler: H, cancel: CancellationToken)
where
    H: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Reply> + Send + 'static,
{
    // Small request/response exchanges: do not let Nagle hold the response back.
    if let Err(err) = stream.set_nodelay(true) {
        tracing::debug!(%err, "fake server: could not set TCP_NODELAY");
    }
    let connection = http1::Builder::new().keep_alive(true).serve_connection(TokioIo::new(stream), service_fn(handler));
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = cancel.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        // Includes the connections a handler dropped on purpose.
        tracing::trace!(%err, "fake server: connection ended with an error");
    }
}
