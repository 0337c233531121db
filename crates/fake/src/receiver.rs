//! A webhook receiver on loopback that verifies, counts and optionally records deliveries.
//!
//! It is the other end of every local run: `demo` replays into it, `sink` prints what it gets, the
//! integration tests inspect exactly what arrived (headers, body, signature), and the benchmarks
//! use it as a fast target. It can misbehave on purpose — transient 503/429 (with `Retry-After`),
//! dropped connections, 422 for chosen events — with seeded dice, so retry logic is exercised
//! reproducibly. The per-request path is lock-free when recording is off, except for the short
//! critical section that tracks which event ids were already accepted (needed to count duplicates).

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ALLOW, HeaderValue, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use super::limits::{Limits, Refusal};
use super::{Body, DropConnection, Reply, Server, json_response};
use crate::Quota;

/// Largest body accepted (larger ones are answered 413).
const MAX_BODY: usize = 16 * 1024 * 1024;

const OK_BODY: &[u8] = br#"{"ok":true}"#;

/// The header SavvyCal signs its webhooks with.
pub const HEADER: &str = "x-savvycal-signature";

/// The `User-Agent` SavvyCal's webhook requests carry, which receivers compare exactly.
pub const WEBHOOK_USER_AGENT: &str = "SavvyCal Webhooks (https://savvycal.com)";

/// The case of the hex digest the receiver expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HexCase {
    /// What SavvyCal sends, and what its verification examples expect.
    #[default]
    Upper,
    /// For trying a sender's `--signature-hex lower`.
    Lower,
}

/// How to run a [`Receiver`].
#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    /// When set, `x-savvycal-signature` must be a valid signature of the raw body (else 401),
    /// checked the way SavvyCal's docs do it (see [`expected_signature`]).
    pub secret: Option<String>,
    /// The hex case the signature must be in: uppercase, as SavvyCal sends it (the default), or
    /// lowercase for trying `run --signature-hex lower`. The comparison is exact either way.
    pub signature_hex: HexCase,
    /// The `User-Agent` a request must carry, compared exactly (as receivers in the wild do with a
    /// route constraint `request.user_agent == "SavvyCal Webhooks (https://savvycal.com)"`), else
    /// 404; `None` takes any. Default: SavvyCal's.
    pub user_agent: Option<String>,
    /// Fraction (0..=1) of requests answered with a transient failure: half 503, half 429 with
    /// `Retry-After: {retry_after_secs}`. Like a real rate limiter, it answers 429 at most once per
    /// two `Retry-After` periods (a client that honours the pause would not be told again at
    /// once); the other failures in between are 503s.
    pub fail_rate: f64,
    /// `Retry-After` of the 429 answers, in seconds.
    pub retry_after_secs: u64,
    /// Fraction (0..=1) of requests whose connection is dropped without an answer.
    pub drop_rate: f64,
    /// Fraction (0..=1) of requests answered 502 or 503 without `Retry-After`, whatever the load:
    /// a background of random errors (a flaky proxy in front of the receiver), not congestion.
    pub noise_rate: f64,
    /// Event ids (`payload.id`) always answered 422.
    pub reject_ids: Vec<String>,
    /// Keep every [`Delivery`] (with its body) in memory, for tests.
    pub record: bool,
    /// Seed of the fail/drop dice.
    pub seed: u64,
    /// `--capacity R`: a token bucket of R requests/s; 429 + `Retry-After: 1` above it.
    pub capacity: Option<f64>,
    /// `--capacity-steps`: the token bucket's rate changes to R at each time T after the first
    /// request, `(T, R)` in order of time (capacity steps, for trying `--rate auto`).
    pub capacity_steps: Vec<(Duration, f64)>,
    /// `--quota N/DURATION`: N per fixed window; 429 + `Retry-After` = seconds to its end.
    pub quota: Option<Quota>,
    /// `--max-in-flight K`: 503 above K concurrent requests.
    pub max_in_flight: Option<u32>,
    /// `--latency DURATION`: every answer takes this long.
    pub latency: Option<Duration>,
    /// A latency knee at R requests/s: never refuses, but past R requests queue and every answer
    /// comes later (for the adaptive-pacing benchmark).
    pub latency_knee: Option<f64>,
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            secret: None,
            signature_hex: HexCase::Upper,
            user_agent: Some(WEBHOOK_USER_AGENT.to_owned()),
            fail_rate: 0.0,
            retry_after_secs: 1,
            drop_rate: 0.0,
            noise_rate: 0.0,
            reject_ids: Vec::new(),
            record: false,
            seed: 0,
            capacity: None,
            capacity_steps: Vec::new(),
            quota: None,
            max_in_flight: None,
            latency: None,
            latency_knee: None,
        }
    }
}

/// One request the receiver got, and what it answered.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// When the request (headers and body) had arrived.
    pub at: Instant,
    /// `payload.id`, if the body parsed.
    pub event_id: Option<String>,
    /// The envelope's top-level `id`, if the body parsed.
    pub envelope_id: Option<String>,
    /// The status answered; 0 when the connection was dropped instead.
    pub status: u16,
    /// Whether the signature was valid; `None` when no secret is configured.
    pub signature_ok: Option<bool>,
    /// Whether the `User-Agent` was the one expected; `None` when any is taken.
    pub user_agent_ok: Option<bool>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

/// Counters of a [`Receiver`] since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// POST requests whose body arrived.
    pub requests: u64,
    /// Answered 2xx.
    pub accepted: u64,
    /// Accepted for an event id not accepted before (a body without `payload.id` counts as new).
    pub unique_accepted: u64,
    /// Accepted again for an already-accepted event id.
    pub duplicates: u64,
    /// Answered 401 for a missing or invalid signature.
    pub signature_failures: u64,
    /// Answered 404 for a missing or unexpected `User-Agent`.
    pub user_agent_failures: u64,
    /// Answered 422 (event id in `reject_ids`).
    pub rejected: u64,
    /// Answered 503 or 429.
    pub transient: u64,
    /// Connection dropped without an answer.
    pub dropped: u64,
}

type Observer = Arc<dyn Fn(&Delivery) + Send + Sync>;

/// A running webhook receiver. Stops on [`Receiver::shutdown`] or when dropped.
pub struct Receiver {
    server: Server,
    state: Arc<ReceiverState>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("addr", &self.server.addr())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Receiver {
    /// Starts on `127.0.0.1` at a free port.
    pub async fn start(config: ReceiverConfig) -> std::io::Result<Receiver> {
        Receiver::start_on(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), config).await
    }

    /// Starts on `addr` (port 0 picks a free port).
    pub async fn start_on(addr: SocketAddr, config: ReceiverConfig) -> std::io::Result<Receiver> {
        let state = Arc::new(ReceiverState::new(config));
        let handler_state = Arc::clone(&state);
        let handler = move |request: Request<Incoming>| {
            let state = Arc::clone(&handler_state);
            async move { state.handle(request).await }
        };
        let server = Server::start(addr, handler).await?;
        Ok(Receiver { server, state })
    }

    /// `http://HOST:PORT/webhook` (a wildcard bind address is reached through loopback).
    pub fn url(&self) -> String {
        let mut addr = self.server.addr();
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        format!("http://{addr}/webhook")
    }

    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The counters so far.
    pub fn stats(&self) -> ReceiverStats {
        let c = &self.state.counters;
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ReceiverStats {
            requests: load(&c.requests),
            accepted: load(&c.accepted),
            unique_accepted: load(&c.unique_accepted),
            duplicates: load(&c.duplicates),
            signature_failures: load(&c.signature_failures),
            user_agent_failures: load(&c.user_agent_failures),
            rejected: load(&c.rejected),
            transient: load(&c.transient),
            dropped: load(&c.dropped),
        }
    }

    /// Every delivery so far, in arrival order (empty unless `record` is on).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.deliveries.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the event ids answered 422.
    pub fn set_reject_ids(&self, ids: Vec<String>) {
        let ids: HashSet<String> = ids.into_iter().collect();
        let empty = ids.is_empty();
        *self.state.reject_ids.write().unwrap_or_else(PoisonError::into_inner) = ids;
        self.state.rejecting.store(!empty, Ordering::Release);
    }

    /// Changes the fraction of requests answered 503/429 (clamped to 0..=1).
    pub fn set_fail_rate(&self, fail_rate: f64) {
        self.state.fail_rate.store(clamp_rate(fail_rate).to_bits(), Ordering::Relaxed);
    }

    /// While `down`, every request is answered 503 (an outage of the whole receiver).
    pub fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::Release);
    }

    /// Calls `f` for every delivery, after deciding the answer and before sending it. Replaces any
    /// earlier observer. Keep it quick: it runs on the request path.
    pub fn on_delivery(&self, f: impl Fn(&Delivery) + Send + Sync + 'static) {
        *self.state.observer.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(f));
        self.state.observing.store(true, Ordering::Release);
    }

    /// Stops the server, letting in-flight requests finish.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

fn clamp_rate(rate: f64) -> f64 {
    if rate.is_nan() { 0.0 } else { rate.clamp(0.0, 1.0) }
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    accepted: AtomicU64,
    unique_accepted: AtomicU64,
    duplicates: AtomicU64,
    signature_failures: AtomicU64,
    user_agent_failures: AtomicU64,
    rejected: AtomicU64,
    transient: AtomicU64,
    dropped: AtomicU64,
}

struct ReceiverState {
    secret: Option<Vec<u8>>,
    signature_hex: HexCase,
    user_agent: Option<String>,
    /// `f64` bits, so it can change while running.
    fail_rate: AtomicU64,
    drop_rate: f64,
    noise_rate: f64,
    retry_after: HeaderValue,
    /// Milliseconds between two 429 answers at least (twice the Retry-After).
    min_429_gap_ms: u64,
    /// When the next 429 may be given, in milliseconds after `origin`.
    next_429_ms: AtomicU64,
    origin: Instant,
    record: bool,
    seed: u64,
    /// Numbers the requests for the dice.
    dice: AtomicU64,
    counters: Counters,
    /// Whether `reject_ids` is non-empty, so the common case skips the lock.
    rejecting: AtomicBool,
    reject_ids: RwLock<HashSet<String>>,
    accepted_ids: Mutex<HashSet<String>>,
    deliveries: Mutex<Vec<Delivery>>,
    /// Answer 503 to everything (an outage), see [`Receiver::set_down`].
    down: AtomicBool,
    /// Whether `observer` is set, so the common case skips the lock.
    observing: AtomicBool,
    observer: RwLock<Option<Observer>>,
    limits: Limits,
}

/// The ids of a webhook body, borrowed from it when no unescaping is needed.
#[derive(Default, Deserialize)]
struct EnvelopeProbe<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    payload: Option<PayloadProbe<'a>>,
}

#[derive(Deserialize)]
struct PayloadProbe<'a> {
    #[serde(borrow, default)]
    id: Option<Cow<'a, str>>,
}

/// What the dice and checks decided for one request.
enum Verdict {
    Drop,
    Unavailable,
    BadGateway,
    TooManyRequests,
    BadSignature,
    WrongUserAgent,
    Rejected,
    Accepted,
    /// Refused by `--capacity`, `--quota` or `--max-in-flight`.
    Limited(Refusal),
}

impl ReceiverState {
    fn new(config: ReceiverConfig) -> ReceiverState {
        let rejecting = !config.reject_ids.is_empty();
        ReceiverState {
            secret: config.secret.map(String::into_bytes),
            signature_hex: config.signature_hex,
            user_agent: config.user_agent,
            fail_rate: AtomicU64::new(clamp_rate(config.fail_rate).to_bits()),
            drop_rate: clamp_rate(config.drop_rate),
            noise_rate: clamp_rate(config.noise_rate),
            retry_after: HeaderValue::from(config.retry_after_secs),
            min_429_gap_ms: config.retry_after_secs.saturating_mul(2000),
            next_429_ms: AtomicU64::new(0),
            origin: Instant::now(),
            record: config.record,
            seed: config.seed,
            dice: AtomicU64::new(0),
            counters: Counters::default(),
            rejecting: AtomicBool::new(rejecting),
            reject_ids: RwLock::new(config.reject_ids.into_iter().collect()),
            accepted_ids: Mutex::new(HashSet::new()),
            deliveries: Mutex::new(Vec::new()),
            down: AtomicBool::new(false),
            observing: AtomicBool::new(false),
            observer: RwLock::new(None),
            limits: Limits::new(config.capacity, config.quota, config.max_in_flight, config.latency)
                .with_capacity_steps(config.capacity_steps)
                .with_latency_knee(config.latency_knee),
        }
    }

    async fn handle(&self, request: Request<Incoming>) -> Reply {
        if request.method() != Method::POST {
            let mut response = json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                Bytes::from_static(br#"{"ok":false,"error":"method not allowed"}"#),
            );
            response.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
            return Ok(response);
        }
        let (parts, body) = request.into_parts();
        let body = match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) if err.is::<LengthLimitError>() => {
                return Ok(json_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    Bytes::from_static(br#"{"ok":false,"error":"body too large"}"#),
                ));
            }
            // The client went away mid-body: nothing to answer.
            Err(_) => return Err(DropConnection),
        };
        let at = Instant::now();
        let counters = &self.counters;
        counters.requests.fetch_add(1, Ordering::Relaxed);

        let probe = serde_json::from_slice::<EnvelopeProbe<'_>>(&body).unwrap_or_default();
        let event_id = probe.payload.and_then(|payload| payload.id);
        let signature_ok = self.secret.as_deref().map(|secret| {
            parts
                .headers
                .get(HEADER)
                .and_then(|value| value.to_str().ok())
                .is_some_and(|header| signature_matches(secret, &body, header.as_bytes(), self.signature_hex))
        });
        let user_agent_ok = self.user_agent.as_deref().map(|expected| {
            // One header, equal byte for byte: a second one or a suffix is another User-Agent.
            let mut values = parts.headers.get_all(USER_AGENT).iter();
            values.next().is_some_and(|v| v.as_bytes() == expected.as_bytes()) && values.next().is_none()
        });

        // The capacity limits come first, as a real receiver's rate limiter sits in front of it.
        // The in-flight place is held until the answer is made.
        let admission = self.limits.admit();
        let verdict = match &admission {
            _ if self.down.load(Ordering::Acquire) => Verdict::Unavailable,
            Err(refusal) => Verdict::Limited(*refusal),
            Ok(_) => self.decide(event_id.as_deref(), user_agent_ok, signature_ok),
        };
        let (status, counter) = match verdict {
            Verdict::Drop => (None, &counters.dropped),
            Verdict::Unavailable => (Some(StatusCode::SERVICE_UNAVAILABLE), &counters.transient),
            Verdict::BadGateway => (Some(StatusCode::BAD_GATEWAY), &counters.transient),
            Verdict::TooManyRequests => (Some(StatusCode::TOO_MANY_REQUESTS), &counters.transient),
            Verdict::BadSignature => (Some(StatusCode::UNAUTHORIZED), &counters.signature_failures),
            Verdict::WrongUserAgent => (Some(StatusCode::NOT_FOUND), &counters.user_agent_failures),
            Verdict::Rejected => (Some(StatusCode::UNPROCESSABLE_ENTITY), &counters.rejected),
            Verdict::Accepted => (Some(StatusCode::OK), &counters.accepted),
            Verdict::Limited(refusal) => (Some(refusal.status()), &counters.transient),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Verdict::Accepted = verdict {
            let fresh = match event_id.as_deref() {
                Some(id) => {
                    let mut accepted = self.accepted_ids.lock().unwrap_or_else(PoisonError::into_inner);
                    !accepted.contains(id) && accepted.insert(id.to_owned())
                }
                None => true,
            };
            let counter = if fresh { &counters.unique_accepted } else { &counters.duplicates };
            counter.fetch_add(1, Ordering::Relaxed);
        }

        let observing = self.observing.load(Ordering::Acquire);
        if self.record || observing {
            let delivery = Delivery {
                at,
                event_id: event_id.map(Cow::into_owned),
                envelope_id: probe.id.map(Cow::into_owned),
                status: status.map_or(0, |status| status.as_u16()),
                signature_ok,
                user_agent_ok,
                headers: parts.headers,
                body: body.clone(),
            };
            if observing {
                let observer = self.observer.read().unwrap_or_else(PoisonError::into_inner).clone();
                if let Some(observer) = observer {
                    observer(&delivery);
                }
            }
            if self.record {
                self.deliveries.lock().unwrap_or_else(PoisonError::into_inner).push(delivery);
            }
        }

        if let Some(latency) = self.limits.latency() {
            tokio::time::sleep(latency).await;
        }
        match verdict {
            Verdict::Limited(refusal) => Ok(refusal.response()),
            Verdict::Drop => Err(DropConnection),
            Verdict::Unavailable => {
                Ok(answer(StatusCode::SERVICE_UNAVAILABLE, br#"{"ok":false,"error":"unavailable"}"#))
            }
            Verdict::BadGateway => Ok(answer(StatusCode::BAD_GATEWAY, br#"{"ok":false,"error":"bad gateway"}"#)),
            Verdict::TooManyRequests => {
                let mut response = answer(StatusCode::TOO_MANY_REQUESTS, br#"{"ok":false,"error":"slow down"}"#);
                response.headers_mut().insert(RETRY_AFTER, self.retry_after.clone());
                Ok(response)
            }
            Verdict::BadSignature => {
                Ok(answer(StatusCode::UNAUTHORIZED, br#"{"ok":false,"error":"invalid signature"}"#))
            }
            // 404, what a Rails route constrained on the User-Agent answers (no route matches): the
            // receivers that check it do so in routing, before any code that could say 403.
            Verdict::WrongUserAgent => Ok(answer(
                StatusCode::NOT_FOUND,
                br#"{"ok":false,"error":"not found: the User-Agent is not the one expected (SavvyCal's: SavvyCal Webhooks (https://savvycal.com))"}"#,
            )),
            Verdict::Rejected => Ok(answer(StatusCode::UNPROCESSABLE_ENTITY, br#"{"ok":false,"error":"rejected"}"#)),
            Verdict::Accepted => Ok(answer(StatusCode::OK, OK_BODY)),
        }
    }

    /// Whether a 429 may be given now (at most one per `min_429_gap_ms`); claims it if so.
    fn may_answer_429(&self) -> bool {
        let now = u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_429_ms.load(Ordering::Acquire);
        now >= next
            && self
                .next_429_ms
                .compare_exchange(next, now.saturating_add(self.min_429_gap_ms), Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Dice first (drop, then fail), then the `User-Agent` (routing), then the signature, then
    /// `reject_ids`.
    fn decide(&self, event_id: Option<&str>, user_agent_ok: Option<bool>, signature_ok: Option<bool>) -> Verdict {
        let n = self.dice.fetch_add(1, Ordering::Relaxed);
        let mut rng = fastrand::Rng::with_seed(dice_seed(self.seed, n));
        let (drop_roll, fail_roll, as_429) = (rng.f64(), rng.f64(), rng.bool());
        if drop_roll < self.drop_rate {
            return Verdict::Drop;
        }
        // Rolled after the others, so adding it changed no other configuration's dice.
        if rng.f64() < self.noise_rate {
            return if as_429 { Verdict::BadGateway } else { Verdict::Unavailable };
        }
        if fail_roll < f64::from_bits(self.fail_rate.load(Ordering::Relaxed)) {
            return if as_429 && self.may_answer_429() { Verdict::TooManyRequests } else { Verdict::Unavailable };
        }
        if user_agent_ok == Some(false) {
            return Verdict::WrongUserAgent;
        }
        if signature_ok == Some(false) {
            return Verdict::BadSignature;
        }
        if let Some(id) = event_id
            && self.rejecting.load(Ordering::Acquire)
            && self.reject_ids.read().unwrap_or_else(PoisonError::into_inner).contains(id)
        {
            return Verdict::Rejected;
        }
        Verdict::Accepted
    }
}

/// What SavvyCal's docs say the header must be: `"sha256=" + HEX(HMAC-SHA256(secret, raw body))`,
/// in uppercase (their examples call `.toUpperCase()`). Written here with `hmac` and `sha2`
/// directly, not with the sender's signing code, so the sender cannot pass by sharing its own mistake.
pub fn expected_signature(secret: &[u8], body: &[u8], case: HexCase) -> String {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex = match case {
        HexCase::Upper => hex::encode_upper(digest),
        HexCase::Lower => hex::encode(digest),
    };
    format!("sha256={hex}")
}

/// The whole header compared with the expected one, byte for byte, in constant time — as the
/// docs' examples do (`secure_compare`, `hmac.compare_digest`): no trimming, no case folding.
fn signature_matches(secret: &[u8], body: &[u8], header: &[u8], case: HexCase) -> bool {
    use subtle::ConstantTimeEq;
    let expected = expected_signature(secret, body, case);
    // `ct_eq` on slices of different lengths is false (the length is not secret).
    bool::from(expected.as_bytes().ct_eq(header))
}

/// The seed of request `n`'s dice: splitmix64 of the pair, so no shared RNG is needed.
fn dice_seed(seed: u64, n: u64) -> u64 {
    let mut z = seed ^ n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn answer(status: StatusCode, body: &'static [u8]) -> Response<Body> {
    json_response(status, Bytes::from_static(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The check is pinned to a published vector (RFC 4231, test case 2), not to the sender.
    #[test]
    fn the_expected_signature_is_the_published_hmac_in_uppercase() {
        let sig = expected_signature(b"Jefe", b"what do ya want for nothing?", HexCase::Upper);
        assert_eq!(sig, "sha256=5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843");
    }

    /// Signed as SavvyCal signs: uppercase hex (pinned to RFC 4231 above).
    fn sign(secret: &[u8], body: &[u8]) -> String {
        expected_signature(secret, body, HexCase::Upper)
    }

    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder().user_agent(WEBHOOK_USER_AGENT).build().unwrap()
    }

    fn body(event_id: &str) -> String {
        format!(
            r#"{{"type":"event.created","id":"payload_{event_id}","version":"2020-11-18","occurred_at":"2024-01-01T00:00:00Z","payload":{{"id":"{event_id}","summary":"Zoë"}}}}"#
        )
    }

    #[tokio::test]
    async fn verifies_signatures_counts_duplicates_and_rejects() {
        let receiver = Receiver::start(ReceiverConfig {
            secret: Some("whsec".to_owned()),
            reject_ids: vec!["event_BAD".to_owned()],
            record: true,
            ..ReceiverConfig::default()
        })
        .await
        .unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        let seen_by_observer = Arc::clone(&seen);
        receiver.on_delivery(move |_| {
            seen_by_observer.fetch_add(1, Ordering::Relaxed);
        });
        let client = client();
        let post = |body: String, signature: Option<String>| {
            let mut request = client.post(receiver.url()).header("content-type", "application/json").body(body);
            if let Some(signature) = signature {
                request = request.header(HEADER, signature);
            }
            async move {
                let response = request.send().await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            }
        };

        let good = body("event_1");
        let signature = sign(b"whsec", good.as_bytes());
        assert_eq!(post(good.clone(), Some(signature.clone())).await, (200, r#"{"ok":true}"#.to_owned()));
        assert_eq!(post(good.clone(), Some(signature.clone())).await.0, 200, "a duplicate is still accepted");
        // SavvyCal's docs compare the whole header exactly: lowercase hex, a different prefix case
        // or anything more all fail.
        let lower = format!("sha256={}", signature["sha256=".len()..].to_ascii_lowercase());
        for wrong in [lower, signature.replace("sha256=", "SHA256="), format!("{signature}0")] {
            assert_eq!(post(good.clone(), Some(wrong.clone())).await.0, 401, "{wrong}");
        }
        assert_eq!(post(good.clone(), Some(sign(b"other", good.as_bytes()))).await.0, 401);
        assert_eq!(post(good.clone(), None).await.0, 401);
        let bad = body("event_BAD");
        assert_eq!(post(bad.clone(), Some(sign(b"whsec", bad.as_bytes()))).await.0, 422);
        receiver.set_reject_ids(Vec::new());
        assert_eq!(post(bad.clone(), Some(sign(b"whsec", bad.as_bytes()))).await.0, 200);
        assert_eq!(client.get(receiver.url()).send().await.unwrap().status(), 405);

        assert_eq!(
            receiver.stats(),
            ReceiverStats {
                requests: 9,
                accepted: 3,
                unique_accepted: 2,
                duplicates: 1,
                signature_failures: 5,
                user_agent_failures: 0,
                rejected: 1,
                transient: 0,
                dropped: 0,
            }
        );
        let deliveries = receiver.deliveries();
        assert_eq!(deliveries.len(), 9);
        assert_eq!(seen.load(Ordering::Relaxed), 9);
        let first = &deliveries[0];
        assert_eq!(first.event_id.as_deref(), Some("event_1"));
        assert_eq!(first.envelope_id.as_deref(), Some("payload_event_1"));
        assert_eq!(first.status, 200);
        assert_eq!(first.signature_ok, Some(true));
        assert_eq!(first.body, good.as_bytes());
        assert_eq!(first.headers[HEADER], signature.as_str());
        assert_eq!(deliveries[2].signature_ok, Some(false));
        assert_eq!(deliveries[2].status, 401);
        assert_eq!(deliveries[5].signature_ok, Some(false), "signed with another secret");
        receiver.shutdown().await;
    }

    /// Receivers in the wild compare the User-Agent with `==`: anything but exactly the expected
    /// one (missing, a suffix, a second header) is a 404 with the reason, counted apart.
    #[tokio::test]
    async fn only_the_exact_user_agent_is_taken_unless_any_is() {
        let receiver = Receiver::start(ReceiverConfig { record: true, ..ReceiverConfig::default() }).await.unwrap();
        let bare = reqwest::Client::new();
        let post = |ua: &[&str]| {
            let mut request = bare.post(receiver.url()).body(body("event_1"));
            for value in ua {
                request = request.header(reqwest::header::USER_AGENT, *value);
            }
            async move {
                let response = request.send().await.unwrap();
                (response.status().as_u16(), response.text().await.unwrap())
            }
        };
        assert_eq!(post(&[WEBHOOK_USER_AGENT]).await.0, 200);
        let suffixed = format!("{WEBHOOK_USER_AGENT} savvy-replay/0.1.0");
        for wrong in [&[][..], &["curl/8.5"], &[suffixed.as_str()], &[WEBHOOK_USER_AGENT, WEBHOOK_USER_AGENT]] {
            let (status, text) = post(wrong).await;
            assert_eq!(status, 404, "{wrong:?}");
            assert!(text.contains("User-Agent is not the one expected"), "{text}");
        }
        let stats = receiver.stats();
        assert_eq!((stats.accepted, stats.user_agent_failures), (1, 4));
        let deliveries = receiver.deliveries();
        assert_eq!(deliveries[0].user_agent_ok, Some(true));
        assert_eq!(deliveries[1].user_agent_ok, Some(false));
        receiver.shutdown().await;

        let any = Receiver::start(ReceiverConfig { user_agent: None, ..ReceiverConfig::default() }).await.unwrap();
        let response = bare.post(any.url()).header("user-agent", "curl/8.5").body(body("event_1")).send().await;
        assert_eq!(response.unwrap().status(), 200);
        any.shutdown().await;
    }

    #[tokio::test]
    async fn transient_failures_and_drops() {
        let receiver =
            Receiver::start(ReceiverConfig { fail_rate: 1.0, retry_after_secs: 7, ..ReceiverConfig::default() })
                .await
                .unwrap();
        let client = client();
        let mut statuses = HashSet::new();
        for i in 0..40 {
            let response = client.post(receiver.url()).body(body(&format!("event_{i}"))).send().await.unwrap();
            let status = response.status().as_u16();
            match status {
                429 => assert_eq!(response.headers()[RETRY_AFTER], "7"),
                503 => {}
                other => panic!("unexpected status {other}"),
            }
            statuses.insert(status);
        }
        assert_eq!(statuses.len(), 2, "both 503 and 429 expected");
        receiver.set_fail_rate(0.0);
        let response = client.post(receiver.url()).body(body("event_ok")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let stats = receiver.stats();
        assert_eq!((stats.requests, stats.transient, stats.accepted), (41, 40, 1));
        receiver.shutdown().await;

        let receiver = Receiver::start(ReceiverConfig { drop_rate: 1.0, record: true, ..ReceiverConfig::default() })
            .await
            .unwrap();
        assert!(client.post(receiver.url()).body(body("event_x")).send().await.is_err());
        let stats = receiver.stats();
        assert!(stats.dropped >= 1 && stats.accepted == 0, "{stats:?}");
        let deliveries = receiver.deliveries();
        assert_eq!(deliveries[0].status, 0);
        assert_eq!(deliveries[0].event_id.as_deref(), Some("event_x"));
        assert!(receiver.url().ends_with("/webhook"));
        receiver.shutdown().await;
    }

    #[test]
    fn noise_is_502_or_503_without_retry_after_at_its_rate() {
        let state = ReceiverState::new(ReceiverConfig { noise_rate: 0.02, seed: 3, ..ReceiverConfig::default() });
        let verdicts: Vec<Verdict> = (0..20_000).map(|_| state.decide(None, None, None)).collect();
        let bad_gateway = verdicts.iter().filter(|v| matches!(v, Verdict::BadGateway)).count();
        let unavailable = verdicts.iter().filter(|v| matches!(v, Verdict::Unavailable)).count();
        assert!((300..500).contains(&(bad_gateway + unavailable)), "{bad_gateway} + {unavailable}");
        assert!(bad_gateway > 100 && unavailable > 100, "both kinds: {bad_gateway} / {unavailable}");
        assert!(verdicts.iter().all(|v| matches!(v, Verdict::Accepted | Verdict::BadGateway | Verdict::Unavailable)));
    }

    #[test]
    fn dice_are_fair_and_seeded() {
        let state = ReceiverState::new(ReceiverConfig { fail_rate: 0.25, seed: 5, ..ReceiverConfig::default() });
        let failed = (0..10_000).filter(|_| !matches!(state.decide(None, None, None), Verdict::Accepted)).count();
        assert!((2_200..2_800).contains(&failed), "{failed}");
        assert_ne!(dice_seed(5, 0), dice_seed(6, 0));
    }
}
