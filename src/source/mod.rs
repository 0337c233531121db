//! Where events come from: the SavvyCal API pager or an NDJSON file, behind one batch interface.
//!
//! Both yield events a batch (an API page, or a block of lines) at a time, so the pipeline can look
//! up a batch's ids in the ledger at once and memory stays flat in the number of events.

pub mod api;
pub mod client;
pub mod ndjson;
mod paging;
pub mod webhooks;

use crate::event::Event;

pub use api::{ApiPager, ApiQuery};
pub use client::ApiClient;
pub use ndjson::NdjsonReader;

/// A batch of events, plus entries that could not be read as events (with where they were).
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<Event>,
    pub malformed: Vec<String>,
}

/// The source failed: the run stops fetching (exit status 3).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error(
        "the SavvyCal API rejected the token (HTTP {status}{detail}); check --token or SAVVYCAL_TOKEN \
         (a personal access token looks like pt_secret_…)"
    )]
    Unauthorized { status: u16, detail: String },
    #[error("the SavvyCal API answered HTTP {status} for {what}: {message}")]
    Http { status: u16, what: String, message: String },
    #[error(
        "the SavvyCal API at {base} could not be reached after {}: {last_error}",
        crate::words::count(u64::from(*.attempts), "attempt", "attempts")
    )]
    Unreachable { base: String, attempts: u32, last_error: String },
    /// The very first contact found nothing there: a configuration error, said at once.
    #[error(
        "the SavvyCal API at {base} cannot be reached: {cause}\n  {last_error}\n  check --api-base (or \
         SAVVYCAL_API_BASE; the default is https://api.savvycal.com), and the network or proxy (HTTPS_PROXY)"
    )]
    NotThere { base: String, cause: &'static str, last_error: String },
    #[error(
        "the SavvyCal API at {base} still answered HTTP {status} after {}{}",
        crate::words::count(u64::from(*.attempts), "attempt", "attempts"),
        if .message.is_empty() { String::new() } else { format!(": {}", .message) }
    )]
    Answered { base: String, attempts: u32, status: u16, message: String },
    #[error("the SavvyCal API {0}; stopping instead of paging forever")]
    Paging(String),
    #[error("the SavvyCal API sent a response that is not a page of events ({0})")]
    Malformed(String),
    /// A 2xx whose body is not JSON at all: often a proxy's, a login page's or another site's.
    #[error(
        "the SavvyCal API answered {what} ({url}) with {kind} (content type {content_type}), not JSON: \
         `{start}`; check --api-base (the API is at https://api.savvycal.com), or whether a proxy or \
         login page answered instead"
    )]
    NotJson { what: String, url: String, kind: &'static str, content_type: String, start: String },
    #[error("the SavvyCal API answered {what} with a body larger than {max_mib} MiB{hint}")]
    TooLarge { what: String, max_mib: usize, hint: String },
    #[error("reading {path}: {error}")]
    Read { path: String, error: std::io::Error },
    /// The proxy in front of the API refused us (a 4xx to CONNECT, or a 407): a configuration
    /// error (exit status 2), not the API being unreachable.
    #[error("cannot reach the SavvyCal API through the proxy: {0}")]
    ProxyRefused(String),
    /// Ctrl-C or SIGTERM while waiting for the API (exit status 130, like any interruption).
    #[error("interrupted while waiting for the SavvyCal API; nothing was sent")]
    Interrupted,
    #[error("{count} input lines are not events (first: {first}); fix or remove them and rerun")]
    TooManyMalformed { count: u64, first: String },
}

pub enum Source {
    Api(Box<ApiPager>),
    // Boxed like the pager: the reader's buffers and progress make it the larger variant.
    Ndjson(Box<NdjsonReader>),
}

impl Source {
    /// The next batch, or `None` at the end.
    pub async fn next_batch(&mut self) -> Result<Option<Batch>, SourceError> {
        match self {
            Source::Api(p) => p.next_page().await,
            Source::Ndjson(r) => r.next_batch().await,
        }
    }

    /// How much of a file has been read, when its size is known. The API says nothing of the
    /// sort: the producer tells its progress from `created_at` ([`crate::output::estimate`]).
    pub fn read_fraction(&self) -> Option<f64> {
        match self {
            Source::Api(_) => None,
            Source::Ndjson(r) => r.read_fraction(),
        }
    }

    /// A human name for messages ("the SavvyCal API", "events.ndjson").
    pub fn describe(&self) -> String {
        match self {
            Source::Api(p) => p.describe(),
            Source::Ndjson(r) => r.describe(),
        }
    }
}
