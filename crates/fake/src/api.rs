//! A fake SavvyCal API on loopback: `GET /v1/me`, cursor-paged `GET /v1/events`, and the
//! account's webhooks (`GET /v1/webhooks`, `GET /v1/webhooks/:id`, served by [`super::webhooks`]).
//!
//! It exists so `demo`, the integration tests and the benchmarks can exercise the real paging
//! client without an account. It is faithful to the parts of SavvyCal the tool depends on:
//! bearer auth with the documented 401 body, the query parameters and their *defaults that hide
//! past, canceled and not-attending bookings*, opaque `after`/`before` cursors and the
//! `{"entries":…,"metadata":…}` page shape. Entries are served byte-for-byte as configured, never
//! re-serialized, so tests can check that odd JSON (huge numbers, key order, unknown keys,
//! non-ASCII) survives the whole trip. Scripted [`ApiFault`]s make chosen requests fail.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use http::{HeaderMap, Method, Request, StatusCode};
use hyper::body::Incoming;
use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::webhooks::{FakeWebhook, Webhooks};
use super::{DropConnection, Reply, Server, json_response};

/// Page size when the request gives none.
const DEFAULT_LIMIT: usize = 20;
/// Largest page size SavvyCal accepts.
const MAX_LIMIT: usize = 100;
const SECS_PER_DAY: i64 = 86_400;

/// What `GET /v1/me` answers for the configured token.
const ME_BODY: &str = r#"{"id":"user_01ED74HMFGVZ92YVCWTD8Y8H6X","email":"demo@example.com","display_name":"Demo User","first_name":"Demo","last_name":"User","time_zone":"America/Chicago","avatar_url":null,"plan":"basic"}"#;

/// [`ApiFault::Malformed`] answers, alternating by request index: valid JSON of the wrong shape,
/// then JSON cut off mid-entry.
const MALFORMED_SHAPE: &str = r#"{"entries":5,"metadata":{"after":null,"before":null,"limit":20}}"#;
const MALFORMED_TRUNCATED: &str = r#"{"entries":[{"id":"event_01ED74HMFGVZ92"#;

/// A scripted failure for one `GET /v1/events` request.
#[derive(Clone, Debug)]
pub enum ApiFault {
    /// Respond with this status, optional Retry-After (seconds) and body (JSON `{"errors":[{"message":"..."}]}` unless `text_plain`).
    Status { code: u16, retry_after: Option<u64>, text_plain: bool },
    /// Drop the connection without answering.
    Drop,
    /// Answer 200 with a body that is not a valid page (e.g. `{"entries": 5}` or truncated JSON).
    Malformed,
}

/// How to run a [`FakeApi`].
#[derive(Clone, Debug, Default)]
pub struct FakeApiConfig {
    /// The accepted personal token; anything else is answered 401.
    pub token: String,
    /// Raw JSON event objects, served byte-for-byte.
    pub events: Vec<String>,
    /// `(0-based index of the /v1/events request, fault)`: that request gets the fault instead of
    /// its page. Faults apply before authentication, like a proxy in front of the API would.
    pub faults: Vec<(u64, ApiFault)>,
    /// The account's webhooks; `None` is an API without the webhooks endpoints (404).
    pub webhooks: Option<Vec<FakeWebhook>>,
}

/// A running fake SavvyCal API on `127.0.0.1`. Stops on [`FakeApi::shutdown`] or when dropped.
pub struct FakeApi {
    server: Server,
    state: Arc<ApiState>,
}

impl std::fmt::Debug for FakeApi {
    // Not derived: it would print the token and every event.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeApi")
            .field("addr", &self.server.addr())
            .field("events", &self.state.events.len())
            .field("events_requests", &self.events_requests())
            .finish_non_exhaustive()
    }
}

impl FakeApi {
    /// Indexes the events and starts serving on `127.0.0.1` at a free port.
    pub async fn start(config: FakeApiConfig) -> std::io::Result<FakeApi> {
        let state = Arc::new(ApiState::new(config));
        let handler_state = Arc::clone(&state);
        let handler = move |request: Request<Incoming>| {
            let state = Arc::clone(&handler_state);
            async move {
                let delay = state.page_delay_ms.load(Ordering::Relaxed);
                if delay > 0 && request.uri().path() == "/v1/events" {
                    tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                }
                state.handle(&request)
            }
        };
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let server = Server::start(addr, handler).await?;
        Ok(FakeApi { server, state })
    }

    /// `http://127.0.0.1:PORT`, to use as the API base.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// How many `/v1/events` requests arrived (faulted and unauthenticated ones included).
    pub fn events_requests(&self) -> u64 {
        self.state.events_requests.load(Ordering::Relaxed)
    }

    /// The raw query string of each `/v1/events` request, in arrival order (`""` for none).
    pub fn queries(&self) -> Vec<String> {
        self.state.queries.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The path and query of each `/v1/webhooks…` request, in arrival order.
    pub fn webhook_requests(&self) -> Vec<String> {
        self.state.webhook_requests.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// From now on, every `/v1/events` answer takes `delay` longer (a slow API, for benchmarks).
    pub fn delay_pages(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.state.page_delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Stops the server, letting in-flight requests finish.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// The fields filtering and ordering need, read once from an event's JSON.
struct Indexed {
    raw: String,
    id: Option<String>,
    start: Option<Timestamp>,
    state: EventState,
    /// `Some(false)` when the organizer declined; `None` when the organizer is unreadable.
    attending: Option<bool>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EventState {
    Confirmed,
    Canceled,
    Other,
}

#[derive(Deserialize)]
struct EventProbe<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    state: Option<&'a RawValue>,
    #[serde(borrow, default)]
    start_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    organizer: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct OrganizerProbe<'a> {
    #[serde(borrow, default)]
    response_status: Option<&'a RawValue>,
}

fn json_string(raw: &RawValue) -> Option<String> {
    serde_json::from_str(raw.get()).ok()
}

impl Indexed {
    fn new(raw: String) -> Indexed {
        let Ok(probe) = serde_json::from_str::<EventProbe<'_>>(&raw) else {
            return Indexed { id: None, start: None, state: EventState::Other, attending: None, raw };
        };
        let id = probe.id.and_then(json_string);
        let start = probe.start_at.and_then(json_string).and_then(|s| s.parse().ok());
        let state = match probe.state.and_then(json_string).as_deref() {
            Some("confirmed") => EventState::Confirmed,
            Some("canceled") => EventState::Canceled,
            _ => EventState::Other,
        };
        let attending = match probe.organizer {
            None => Some(true),
            Some(organizer) => {
                serde_json::from_str::<OrganizerProbe<'_>>(organizer.get()).ok().and_then(|o| match o.response_status {
                    None => Some(true),
                    Some(status) => json_string(status).map(|s| s != "declined"),
                })
            }
        };
        Indexed { raw, id, start, state, attending }
    }
}

struct ApiState {
    /// The personal token accepted as `Authorization: Bearer <token>`; when empty, none is.
    token: String,
    events: Vec<Indexed>,
    /// Indexes into `events`, ascending by (start_at, id); unreadable start times last.
    order: Vec<usize>,
    faults: HashMap<u64, ApiFault>,
    events_requests: AtomicU64,
    /// [`FakeApi::delay_pages`], in milliseconds.
    page_delay_ms: AtomicU64,
    queries: Mutex<Vec<String>>,
    webhooks: Option<Webhooks>,
    webhook_requests: Mutex<Vec<String>>,
}

impl ApiState {
    fn new(config: FakeApiConfig) -> ApiState {
        let events: Vec<Indexed> = config.events.into_iter().map(Indexed::new).collect();
        let mut order: Vec<usize> = (0..events.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (&events[a], &events[b]);
            (x.start.is_none(), x.start, &x.id, a).cmp(&(y.start.is_none(), y.start, &y.id, b))
        });
        let mut faults = HashMap::with_capacity(config.faults.len());
        for (index, fault) in config.faults {
            faults.entry(index).or_insert(fault);
        }
        ApiState {
            token: config.token,
            events,
            order,
            faults,
            events_requests: AtomicU64::new(0),
            page_delay_ms: AtomicU64::new(0),
            queries: Mutex::new(Vec::new()),
            webhooks: config.webhooks.as_deref().map(Webhooks::new),
            webhook_requests: Mutex::new(Vec::new()),
        }
    }

    fn handle(&self, request: &Request<Incoming>) -> Reply {
        let path = request.uri().path();
        if path == "/v1/events" {
            let index = {
                let mut queries = self.queries.lock().unwrap_or_else(PoisonError::into_inner);
                queries.push(request.uri().query().unwrap_or_default().to_owned());
                self.events_requests.fetch_add(1, Ordering::Relaxed)
            };
            if let Some(fault) = self.faults.get(&index) {
                return fault_reply(fault, index);
            }
        }
        if !self.authorized(request.headers()) {
            return Ok(error_response(StatusCode::UNAUTHORIZED, "Unauthenticated"));
        }
        let query = request.uri().query().unwrap_or_default();
        if let (Some(webhooks), Some(rest)) = (&self.webhooks, path.strip_prefix("/v1/webhooks")) {
            self.webhook_requests
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(request.uri().path_and_query().map_or(path, |pq| pq.as_str()).to_owned());
            let reply = match (request.method(), rest) {
                (&Method::GET, "" | "/") => match webhooks.page(query) {
                    Ok(body) => json_response(StatusCode::OK, body),
                    Err(message) => error_response(StatusCode::UNPROCESSABLE_ENTITY, &message),
                },
                // `/v1/webhooks/:id`, exactly one segment; `/v1/webhooksX` or `//id` is no route.
                (&Method::GET, id) => match id.strip_prefix('/').filter(|id| !id.is_empty() && !id.contains('/')) {
                    Some(id) => match webhooks.one(id) {
                        Some(json) => json_response(StatusCode::OK, json.to_owned()),
                        None => error_response(StatusCode::NOT_FOUND, "Not found"),
                    },
                    None => error_response(StatusCode::NOT_FOUND, "Not found"),
                },
                _ => error_response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
            };
            return Ok(reply);
        }
        let reply = match (request.method(), path) {
            (&Method::GET, "/v1/me") => json_response(StatusCode::OK, ME_BODY),
            (&Method::GET, "/v1/events") => {
                match self.page(request.uri().query().unwrap_or_default(), Timestamp::now()) {
                    Ok(body) => json_response(StatusCode::OK, body),
                    Err(message) => error_response(StatusCode::UNPROCESSABLE_ENTITY, &message),
                }
            }
            (_, "/v1/me" | "/v1/events") => error_response(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed"),
            _ => error_response(StatusCode::NOT_FOUND, "Not found"),
        };
        Ok(reply)
    }

    /// `Authorization: Bearer <the token>`, exactly. No header, no token after `Bearer` or an
    /// empty configured token is unauthenticated, as for the real API: an empty token is no token.
    fn authorized(&self, headers: &HeaderMap) -> bool {
        let presented = headers.get(http::header::AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        presented.is_some_and(|token| !token.trim_ascii().is_empty() && token == self.token.as_bytes())
    }

    /// The page `query` asks for, as JSON, or the message of a 422.
    fn page(&self, query: &str, now: Timestamp) -> Result<String, String> {
        let query = Query::parse(query, self.order.len())?;
        let n = self.order.len();
        // Walk positions `q` in the requested direction; cursors name positions in `order`.
        let to_q = |position: usize| {
            if query.desc { n - 1 - position } else { position }
        };
        let event_at = |q: usize| &self.events[self.order[to_q(q)]];
        let matching = |q: &usize| query.matches(event_at(*q), now);

        let page: Vec<usize> = match (query.after, query.before) {
            (Some(_), Some(_)) => return Err("after and before cannot be combined".to_owned()),
            (_, Some(before)) => {
                let mut page: Vec<usize> = (0..to_q(before)).rev().filter(matching).take(query.limit).collect();
                page.reverse();
                page
            }
            (after, None) => {
                let first = after.map_or(0, |after| to_q(after) + 1);
                (first..n).filter(matching).take(query.limit).collect()
            }
        };
        let (before, after) = match (page.first(), page.last()) {
            (Some(&first), Some(&last)) => (
                (0..first).rev().any(|q| matching(&q)).then(|| encode_cursor(to_q(first))),
                (last + 1..n).any(|q| matching(&q)).then(|| encode_cursor(to_q(last))),
            ),
            _ => (None, None),
        };

        let entries_len: usize = page.iter().map(|&q| event_at(q).raw.len() + 1).sum();
        let mut body = String::with_capacity(entries_len + 128);
        body.push_str(r#"{"entries":["#);
        for (k, &q) in page.iter().enumerate() {
            if k > 0 {
                body.push(',');
            }
            body.push_str(&event_at(q).raw);
        }
        body.push_str(r#"],"metadata":{"after":"#);
        push_cursor(&mut body, after.as_deref());
        body.push_str(r#","before":"#);
        push_cursor(&mut body, before.as_deref());
        // Writing to a String cannot fail.
        let _ = write!(body, r#","limit":{}}}}}"#, query.limit);
        Ok(body)
    }
}

fn push_cursor(body: &mut String, cursor: Option<&str>) {
    match cursor {
        Some(cursor) => {
            body.push('"');
            body.push_str(cursor);
            body.push('"');
        }
        None => body.push_str("null"),
    }
}

const CURSOR_PREFIX: &str = "pos:";

/// An opaque cursor for a position in the ascending order (hex, so it needs no escaping).
pub(super) fn encode_cursor(position: usize) -> String {
    hex::encode(format!("{CURSOR_PREFIX}{position}"))
}

pub(super) fn decode_cursor(cursor: &str, len: usize) -> Option<usize> {
    let bytes = hex::decode(cursor).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    let position: usize = text.strip_prefix(CURSOR_PREFIX)?.parse().ok()?;
    (position < len).then_some(position)
}

#[derive(Clone, Copy, Debug)]
enum Period {
    Upcoming,
    Past,
    All,
    /// Start dates between these days (days since the Unix epoch, inclusive).
    Fixed {
        from: Option<i64>,
        until: Option<i64>,
    },
}

#[derive(Clone, Copy, Debug)]
enum StateFilter {
    Confirmed,
    Canceled,
    All,
}

/// A validated `/v1/events` query.
struct Query {
    limit: usize,
    period: Period,
    state: StateFilter,
    attending_only: bool,
    desc: bool,
    after: Option<usize>,
    before: Option<usize>,
}

impl Query {
    fn parse(raw: &str, len: usize) -> Result<Query, String> {
        let mut query = Query {
            limit: DEFAULT_LIMIT,
            period: Period::Upcoming,
            state: StateFilter::Confirmed,
            attending_only: true,
            desc: false,
            after: None,
            before: None,
        };
        let (mut fixed, mut from, mut until) = (false, None, None);
        for (key, value) in url::form_urlencoded::parse(raw.as_bytes()) {
            let invalid = || format!("invalid value for {key}: {value:?}");
            match &*key {
                "limit" => {
                    query.limit = value
                        .parse()
                        .ok()
                        .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                        .ok_or_else(|| format!("limit must be between 1 and {MAX_LIMIT}"))?;
                }
                "period" => {
                    fixed = false;
                    query.period = match &*value {
                        "upcoming" => Period::Upcoming,
                        "past" => Period::Past,
                        "all" => Period::All,
                        "fixed" => {
                            fixed = true;
                            Period::All
                        }
                        _ => return Err(invalid()),
                    };
                }
                "state" => {
                    query.state = match &*value {
                        "confirmed" => StateFilter::Confirmed,
                        "canceled" => StateFilter::Canceled,
                        "all" => StateFilter::All,
                        _ => return Err(invalid()),
                    };
                }
                "attendance" => {
                    query.attending_only = match &*value {
                        "attending" => true,
                        "any" => false,
                        _ => return Err(invalid()),
                    };
                }
                "direction" => {
                    query.desc = match &*value {
                        "asc" => false,
                        "desc" => true,
                        _ => return Err(invalid()),
                    };
                }
                "after" => query.after = Some(decode_cursor(&value, len).ok_or("invalid cursor")?),
                "before" => {
                    query.before = Some(decode_cursor(&value, len).ok_or("invalid cursor")?);
                }
                "from" => from = Some(day_number(&value).ok_or_else(invalid)?),
                "until" => until = Some(day_number(&value).ok_or_else(invalid)?),
                _ => {}
            }
        }
        if fixed {
            query.period = Period::Fixed { from, until };
        }
        Ok(query)
    }

    fn matches(&self, event: &Indexed, now: Timestamp) -> bool {
        let period = match self.period {
            Period::All => true,
            Period::Upcoming => event.start.is_some_and(|start| start >= now),
            Period::Past => event.start.is_some_and(|start| start < now),
            Period::Fixed { from, until } => event.start.is_some_and(|start| {
                let day = start.as_second().div_euclid(SECS_PER_DAY);
                from.is_none_or(|from| day >= from) && until.is_none_or(|until| day <= until)
            }),
        };
        let state = match self.state {
            StateFilter::All => true,
            StateFilter::Confirmed => event.state == EventState::Confirmed,
            StateFilter::Canceled => event.state == EventState::Canceled,
        };
        let attendance = !self.attending_only || event.attending == Some(true);
        period && state && attendance
    }
}

/// Days since the Unix epoch of a `YYYY-MM-DD` date (UTC).
fn day_number(date: &str) -> Option<i64> {
    let date: Date = date.parse().ok()?;
    let midnight = date.to_zoned_datetime(TimeZone::UTC).ok()?;
    Some(midnight.timestamp().as_second().div_euclid(SECS_PER_DAY))
}

/// SavvyCal's error body: `{"errors":[{"message":…}]}`.
fn error_response(status: StatusCode, message: &str) -> http::Response<super::Body> {
    let body = serde_json::json!({ "errors": [{ "message": message }] }).to_string();
    json_response(status, body)
}

fn fault_reply(fault: &ApiFault, index: u64) -> Reply {
    match fault {
        ApiFault::Drop => Err(DropConnection),
        ApiFault::Malformed => {
            let body = if index.is_multiple_of(2) { MALFORMED_SHAPE } else { MALFORMED_TRUNCATED };
            Ok(json_response(StatusCode::OK, body))
        }
        &ApiFault::Status { code, retry_after, text_plain } => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = match status {
                StatusCode::UNAUTHORIZED => "Unauthenticated",
                _ => status.canonical_reason().unwrap_or("Error"),
            };
            let mut response = if text_plain {
                let mut response = json_response(status, Bytes::from_static(message.as_bytes()));
                response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
                response
            } else {
                error_response(status, message)
            };
            if let Some(seconds) = retry_after {
                response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(seconds));
            }
            Ok(response)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use serde_json::Value;

    use super::*;
    use crate::generate_bookings;

    const TOKEN: &str = "pt_secret_test";

    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder().build().unwrap()
    }

    /// A fake API with these events and the test token, nothing else.
    async fn start(events: Vec<String>) -> FakeApi {
        FakeApi::start(FakeApiConfig { token: TOKEN.to_owned(), events, ..FakeApiConfig::default() }).await.unwrap()
    }

    async fn get(client: &reqwest::Client, url: &str) -> (u16, String) {
        let response = client.get(url).bearer_auth(TOKEN).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Every event once, byte-identical, in entry order, following `after` cursors.
    async fn page_all(client: &reqwest::Client, base: &str, query: &str) -> (Vec<String>, usize) {
        let mut entries = Vec::new();
        let mut after: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut url = format!("{base}/v1/events?{query}");
            if let Some(cursor) = &after {
                url.push_str("&after=");
                url.push_str(cursor);
            }
            let (status, body) = get(client, &url).await;
            assert_eq!(status, 200, "{body}");
            pages += 1;
            // Entries as raw text (to compare byte for byte); the cursor read as plain JSON.
            #[derive(Deserialize)]
            struct Page<'a> {
                #[serde(borrow)]
                entries: Vec<&'a RawValue>,
                metadata: serde_json::Value,
            }
            let page: Page<'_> = serde_json::from_str(&body).unwrap();
            entries.extend(page.entries.iter().map(|raw| raw.get().to_owned()));
            match page.metadata["after"].as_str() {
                Some(cursor) => after = Some(cursor.to_owned()),
                None => return (entries, pages),
            }
        }
    }

    #[tokio::test]
    async fn pages_everything_byte_for_byte() {
        let mut events = generate_bookings(200, 42);
        // Odd JSON that must survive untouched: big numbers, key order, unknown keys, escapes.
        events.push(
            r#"{"zzz":1,"id":"event_ODD","start_at":"2021-01-01T00:00:00Z","state":"confirmed","n":123456789012345678901234567890,"name":"Zoë \u00e9\n"}"#
                .to_owned(),
        );
        events.push(r#"{"id":"event_NOSTART","state":42}"#.to_owned());
        let api = start(events.clone()).await;
        let client = client();
        let query = "period=all&state=all&attendance=any&direction=asc&limit=7";
        let (entries, pages) = page_all(&client, &api.base_url(), query).await;
        assert_eq!(entries.len(), events.len());
        assert_eq!(pages, events.len().div_ceil(7));
        let served: HashSet<&String> = entries.iter().collect();
        let expected: HashSet<&String> = events.iter().collect();
        assert_eq!(served.len(), entries.len(), "an entry came back twice");
        assert_eq!(served, expected);
        // Ordered by start_at; the event without a readable start comes last.
        assert_eq!(entries.last().unwrap(), &events[201]);
        let starts: Vec<Timestamp> = entries[..entries.len() - 1]
            .iter()
            .map(|e| {
                let v: Value = serde_json::from_str(e).unwrap();
                v["start_at"].as_str().unwrap().parse().unwrap()
            })
            .collect();
        assert!(starts.is_sorted());

        // Descending reverses the order.
        let (desc, _) =
            page_all(&client, &api.base_url(), "period=all&state=all&attendance=any&direction=desc&limit=100").await;
        assert_eq!(desc.iter().rev().collect::<Vec<_>>(), entries.iter().collect::<Vec<_>>());

        assert_eq!(api.events_requests(), u64::try_from(pages + 3).unwrap());
        let queries = api.queries();
        assert_eq!(queries[0], query);
        assert!(queries[1].starts_with(query) && queries[1].contains("&after="));
        api.shutdown().await;
    }

    #[tokio::test]
    async fn before_cursor_pages_back() {
        let events = generate_bookings(30, 3);
        let api = start(events).await;
        let client = client();
        let base = format!("{}/v1/events?period=all&state=all&attendance=any&limit=10", api.base_url());
        let (_, first) = get(&client, &base).await;
        let first: Value = serde_json::from_str(&first).unwrap();
        assert!(first["metadata"]["before"].is_null());
        let after = first["metadata"]["after"].as_str().unwrap();
        let (_, second) = get(&client, &format!("{base}&after={after}")).await;
        let second: Value = serde_json::from_str(&second).unwrap();
        let before = second["metadata"]["before"].as_str().unwrap();
        let (_, back) = get(&client, &format!("{base}&before={before}")).await;
        let back: Value = serde_json::from_str(&back).unwrap();
        assert_eq!(back["entries"], first["entries"]);
        api.shutdown().await;
    }

    #[tokio::test]
    async fn defaults_hide_past_canceled_and_declined() {
        let events = generate_bookings(2_000, 9);
        let api = start(events.clone()).await;
        let client = client();
        let (defaults, _) = page_all(&client, &api.base_url(), "limit=100").await;
        let now = Timestamp::now();
        let visible = |e: &Value| {
            e["state"] == "confirmed"
                && e["organizer"]["response_status"] != "declined"
                && e["start_at"].as_str().unwrap().parse::<Timestamp>().unwrap() >= now
        };
        let expected = events.iter().filter(|e| visible(&serde_json::from_str(e).unwrap())).count();
        assert!(expected > 0 && expected < 200, "{expected}");
        assert_eq!(defaults.len(), expected);

        let (past_canceled, _) =
            page_all(&client, &api.base_url(), "period=past&state=canceled&attendance=any&limit=100").await;
        assert!(!past_canceled.is_empty());
        for entry in &past_canceled {
            let e: Value = serde_json::from_str(entry).unwrap();
            assert_eq!(e["state"], "canceled");
            assert!(e["start_at"].as_str().unwrap().parse::<Timestamp>().unwrap() < now);
        }

        // The first page's `limit` default is 20.
        let (_, body) = get(&client, &format!("{}/v1/events?period=all", api.base_url())).await;
        let page: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(page["entries"].as_array().unwrap().len(), 20);
        assert_eq!(page["metadata"]["limit"], 20);
        api.shutdown().await;
    }

    #[tokio::test]
    async fn auth_validation_and_faults() {
        let api = FakeApi::start(FakeApiConfig {
            token: TOKEN.to_owned(),
            events: generate_bookings(10, 1),
            faults: vec![
                (1, ApiFault::Status { code: 429, retry_after: Some(3), text_plain: false }),
                (2, ApiFault::Status { code: 503, retry_after: None, text_plain: true }),
                (3, ApiFault::Drop),
                (4, ApiFault::Malformed),
                (5, ApiFault::Malformed),
            ],
            webhooks: None,
        })
        .await
        .unwrap();
        let client = client();
        let events = format!("{}/v1/events?period=all", api.base_url());

        // 401 with SavvyCal's body, on every route.
        for path in ["/v1/me", "/v1/events", "/nope"] {
            let response =
                client.get(format!("{}{path}", api.base_url())).bearer_auth("pt_secret_wrong").send().await.unwrap();
            assert_eq!(response.status(), 401);
            assert_eq!(response.headers()[CONTENT_TYPE], "application/json");
            assert_eq!(response.text().await.unwrap(), r#"{"errors":[{"message":"Unauthenticated"}]}"#);
        }
        // That was request 0 to /v1/events.
        let (status, body) = get(&client, &events).await;
        assert_eq!(status, 429);
        assert_eq!(body, r#"{"errors":[{"message":"Too Many Requests"}]}"#);
        let response = client.get(&events).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(response.status(), 503);
        assert!(response.headers().get(RETRY_AFTER).is_none());
        assert_eq!(response.text().await.unwrap(), "Service Unavailable");
        assert!(client.get(&events).bearer_auth(TOKEN).send().await.is_err());
        let (status, body) = get(&client, &events).await;
        assert_eq!(status, 200);
        assert!(serde_json::from_str::<Value>(&body).unwrap()["entries"].is_number());
        let (status, body) = get(&client, &events).await;
        assert_eq!(status, 200);
        assert!(serde_json::from_str::<Value>(&body).is_err());
        let (status, _) = get(&client, &events).await;
        assert_eq!(status, 200);
        assert_eq!(api.events_requests(), 7);

        let (status, body) = get(&client, &format!("{}/v1/me", api.base_url())).await;
        assert_eq!(status, 200);
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["email"], "demo@example.com");
        let (status, _) = get(&client, &format!("{}/v2/other", api.base_url())).await;
        assert_eq!(status, 404);
        for bad in ["limit=0", "limit=101", "limit=ten", "after=zz", "before=00", "period=soon", "state=x"] {
            let (status, body) = get(&client, &format!("{events}&{bad}")).await;
            assert_eq!(status, 422, "{bad}: {body}");
            assert!(body.starts_with(r#"{"errors":[{"message":"#), "{body}");
        }
        api.shutdown().await;
    }

    /// A missing or empty bearer token is unauthenticated, with SavvyCal's documented body, whatever
    /// the configured token (an empty one used to let `Bearer ` through).
    #[tokio::test]
    async fn a_missing_or_empty_bearer_token_is_401_unauthenticated() {
        let client = client();
        for token in ["", TOKEN] {
            let api = FakeApi::start(FakeApiConfig {
                token: token.to_owned(),
                webhooks: Some(Vec::new()),
                ..FakeApiConfig::default()
            })
            .await
            .unwrap();
            for path in ["/v1/me", "/v1/events", "/v1/webhooks"] {
                let url = format!("{}{path}", api.base_url());
                for authorization in [None, Some("Bearer "), Some("Bearer"), Some(""), Some("Bearer  ")] {
                    let mut request = client.get(&url);
                    if let Some(value) = authorization {
                        request = request.header(http::header::AUTHORIZATION, value);
                    }
                    let response = request.send().await.unwrap();
                    assert_eq!(response.status(), 401, "{token:?} {path} {authorization:?}");
                    assert_eq!(response.text().await.unwrap(), r#"{"errors":[{"message":"Unauthenticated"}]}"#);
                }
            }
            // Byte for byte, as a client that does not trim would send it.
            let raw = raw_status(
                &api,
                "GET /v1/me HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer \r\nConnection: close\r\n\r\n",
            );
            assert_eq!(raw.await, "HTTP/1.1 401 Unauthorized", "{token:?}");
            api.shutdown().await;
        }
    }

    /// The status line answered to `request`, sent as is.
    async fn raw_status(api: &FakeApi, request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = api.base_url().trim_start_matches("http://").to_owned();
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_owned()
    }

    #[tokio::test]
    async fn webhooks_are_listed_and_fetched_behind_the_token() {
        let hooks = vec![
            FakeWebhook::active("wh_A", "https://a.example.com/in", "2026-03-01T09:00:00Z", Some("s3cret")),
            FakeWebhook::active("wh_B", "https://b.example.com/in", "2026-03-02T09:00:00Z", None),
        ];
        let api = FakeApi::start(FakeApiConfig {
            token: TOKEN.to_owned(),
            events: Vec::new(),
            faults: Vec::new(),
            webhooks: Some(hooks),
        })
        .await
        .unwrap();
        let client = client();
        let (status, body) = get(&client, &format!("{}/v1/webhooks", api.base_url())).await;
        assert_eq!(status, 200);
        let page: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(page["entries"][0]["id"], "wh_A");
        assert_eq!(page["entries"][0]["secret"], "s3cret");
        assert_eq!(page["entries"][0]["state"], "active");
        assert_eq!(page["entries"][0]["version"], "2020-11-18");
        assert!(page["metadata"]["after"].is_null());
        let (status, body) = get(&client, &format!("{}/v1/webhooks/wh_B", api.base_url())).await;
        assert_eq!(status, 200);
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["url"], "https://b.example.com/in");
        let (status, _) = get(&client, &format!("{}/v1/webhooks/wh_C", api.base_url())).await;
        assert_eq!(status, 404);
        let response = client.get(format!("{}/v1/webhooks", api.base_url())).send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(api.webhook_requests(), ["/v1/webhooks", "/v1/webhooks/wh_B", "/v1/webhooks/wh_C"]);
        api.shutdown().await;

        // An API without the endpoints.
        let api = FakeApi::start(FakeApiConfig { token: TOKEN.to_owned(), ..FakeApiConfig::default() }).await.unwrap();
        assert_eq!(get(&client, &format!("{}/v1/webhooks", api.base_url())).await.0, 404);
        api.shutdown().await;
    }

    #[test]
    fn fixed_period_bounds_start_dates() {
        let state = ApiState::new(FakeApiConfig {
            token: TOKEN.to_owned(),
            events: vec![
                r#"{"id":"event_A","state":"confirmed","start_at":"2024-05-01T23:59:59Z"}"#.to_owned(),
                r#"{"id":"event_B","state":"confirmed","start_at":"2024-05-02T00:00:00Z"}"#.to_owned(),
                r#"{"id":"event_C","state":"confirmed","start_at":"2024-05-04T10:00:00Z"}"#.to_owned(),
            ],
            faults: Vec::new(),
            webhooks: None,
        });
        let body = state.page("period=fixed&from=2024-05-02&until=2024-05-03", Timestamp::now()).unwrap();
        let page: Value = serde_json::from_str(&body).unwrap();
        let ids: Vec<&str> = page["entries"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["event_B"]);
        assert!(page["metadata"]["after"].is_null());
        assert!(state.page("period=fixed&from=May", Timestamp::now()).is_err());
        let empty = state.page("period=upcoming", Timestamp::now()).unwrap();
        assert_eq!(empty, r#"{"entries":[],"metadata":{"after":null,"before":null,"limit":20}}"#);
    }
}
