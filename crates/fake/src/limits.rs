//! Capacity limits of the embedded receiver: what `sink` and `demo` do with `--capacity R`,
//! `--quota N/DURATION`, `--max-in-flight K` and `--latency DURATION`.
//!
//! They model the receivers `--rate auto` must find its way with — a token bucket that answers 429
//! with `Retry-After: 1` above R requests a second, a quota of N per fixed window that answers 429
//! with `Retry-After` = seconds to the window's end, a server that answers 503 above K concurrent
//! requests, and one whose every answer takes a while — so the adaptive rate can be tried and
//! tested against something real on loopback. Each limit costs nothing when it is not configured;
//! the ones that are configured take one short lock or one atomic per request.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http::header::{HeaderValue, RETRY_AFTER};

use super::{Body, json_response};
use crate::Quota;

/// The token bucket holds this much time's worth of requests: a short burst, as real rate
/// limiters allow, without letting a long idle spell buy a flood.
const BUCKET: Duration = Duration::from_millis(100);

/// How the limits answered a request they refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// 429 with this `Retry-After` (the token bucket or the quota).
    TooMany { retry_after_secs: u64 },
    /// 503 (too many requests in flight).
    Busy,
}

impl Refusal {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Refusal::TooMany { .. } => StatusCode::TOO_MANY_REQUESTS,
            Refusal::Busy => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub(crate) fn response(self) -> http::Response<Body> {
        match self {
            Refusal::TooMany { retry_after_secs } => {
                let mut response =
                    json_response(self.status(), Bytes::from_static(br#"{"ok":false,"error":"slow down"}"#));
                response.headers_mut().insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
                response
            }
            Refusal::Busy => json_response(self.status(), Bytes::from_static(br#"{"ok":false,"error":"busy"}"#)),
        }
    }
}

/// Holds one of the `--max-in-flight` places until dropped (after the answer is made).
#[derive(Debug)]
pub(crate) struct InFlight<'a>(Option<&'a AtomicU32>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(count) = self.0 {
            count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    size: f64,
    tokens: f64,
    last: Instant,
    /// When the first request came: capacity steps count from it.
    first: Option<Instant>,
    /// Capacity steps still to come, `(after the first request, rate)`, latest first.
    steps: Vec<(Duration, f64)>,
}

impl Bucket {
    fn new(rate: f64, now: Instant) -> Bucket {
        let size = (rate * BUCKET.as_secs_f64()).max(1.0);
        Bucket { rate, size, tokens: size, last: now, first: None, steps: Vec::new() }
    }

    /// Takes the capacity steps that are due at `now`.
    fn step(&mut self, now: Instant) {
        let first = *self.first.get_or_insert(now);
        while let Some(&(at, rate)) = self.steps.last() {
            if now.saturating_duration_since(first) < at {
                break;
            }
            self.steps.pop();
            self.rate = rate;
            self.size = (rate * BUCKET.as_secs_f64()).max(1.0);
            self.tokens = self.tokens.min(self.size);
        }
    }
}

/// A quota's fixed windows, counted from the first request (like capacity steps): a receiver
/// started long before the traffic then behaves the same, and a bench knows where windows fall.
#[derive(Debug)]
struct Window {
    quota: Quota,
    first: Option<Instant>,
    index: u128,
    used: u32,
}

/// A receiver that never refuses but serves at most `rate` requests a second: past it, requests
/// queue and every answer comes later (a latency knee).
#[derive(Debug)]
struct Knee {
    rate: f64,
    /// When the server is next free to start a request.
    next_free: Instant,
}

/// The configured limits of one receiver.
#[derive(Debug)]
pub(crate) struct Limits {
    origin: Instant,
    bucket: Option<Mutex<Bucket>>,
    knee: Option<Mutex<Knee>>,
    window: Option<Mutex<Window>>,
    max_in_flight: Option<(u32, AtomicU32)>,
    latency: Option<Duration>,
}

impl Limits {
    pub(crate) fn new(
        capacity: Option<f64>,
        quota: Option<Quota>,
        max_in_flight: Option<u32>,
        latency: Option<Duration>,
    ) -> Limits {
        let origin = Instant::now();
        let bucket = capacity.filter(|r| r.is_finite() && *r > 0.0).map(|rate| Mutex::new(Bucket::new(rate, origin)));
        Limits {
            origin,
            bucket,
            knee: None,
            window: quota.map(|quota| Mutex::new(Window { quota, first: None, index: 0, used: 0 })),
            max_in_flight: max_in_flight.map(|k| (k, AtomicU32::new(0))),
            latency: latency.filter(|d| !d.is_zero()),
        }
    }

    /// The token bucket's rate changes to R at each T after the first request (`(T, R)`); with no
    /// `--capacity` the first step's rate is where it starts.
    pub(crate) fn with_capacity_steps(mut self, mut steps: Vec<(Duration, f64)>) -> Limits {
        steps.retain(|(_, r)| r.is_finite() && *r > 0.0);
        if steps.is_empty() {
            return self;
        }
        steps.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        let bucket = self.bucket.get_or_insert_with(|| {
            let first = steps.last().map_or(1.0, |(_, r)| *r);
            Mutex::new(Bucket::new(first, self.origin))
        });
        bucket.get_mut().unwrap_or_else(PoisonError::into_inner).steps = steps;
        self
    }

    /// Past `rate` requests a second, answers queue instead of being refused (see [`Knee`]).
    pub(crate) fn with_latency_knee(mut self, rate: Option<f64>) -> Limits {
        self.knee =
            rate.filter(|r| r.is_finite() && *r > 0.0).map(|rate| Mutex::new(Knee { rate, next_free: self.origin }));
        self
    }

    /// How long this answer takes: `--latency`, plus the wait in the knee's queue.
    pub(crate) fn latency(&self) -> Option<Duration> {
        let queued = self.knee.as_ref().map(|knee| {
            let mut k = knee.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let start = k.next_free.max(now);
            k.next_free = start + Duration::from_secs_f64(1.0 / k.rate);
            start - now
        });
        match (self.latency, queued) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or_default() + b.unwrap_or_default()),
        }
    }

    /// Admits a request now, or says how it is refused. In-flight first (a 503 costs no token),
    /// then the token bucket, then the quota (only requests the bucket let through use it up).
    pub(crate) fn admit(&self) -> Result<InFlight<'_>, Refusal> {
        let guard = match &self.max_in_flight {
            Some((k, count)) => {
                if count.fetch_add(1, Ordering::AcqRel) >= *k {
                    count.fetch_sub(1, Ordering::AcqRel);
                    return Err(Refusal::Busy);
                }
                InFlight(Some(count))
            }
            None => InFlight(None),
        };
        let now = Instant::now();
        if let Some(bucket) = &self.bucket {
            let mut b = bucket.lock().unwrap_or_else(PoisonError::into_inner);
            b.step(now);
            let refill = now.saturating_duration_since(b.last).as_secs_f64() * b.rate;
            b.tokens = (b.tokens + refill).min(b.size);
            b.last = now;
            if b.tokens < 1.0 {
                return Err(Refusal::TooMany { retry_after_secs: 1 });
            }
            b.tokens -= 1.0;
        }
        if let Some(window) = &self.window {
            let mut w = window.lock().unwrap_or_else(PoisonError::into_inner);
            let per = w.quota.per.as_nanos().max(1);
            let first = *w.first.get_or_insert(now);
            let elapsed = now.saturating_duration_since(first).as_nanos();
            let index = elapsed / per;
            if index != w.index {
                (w.index, w.used) = (index, 0);
            }
            if w.used >= w.quota.n {
                let left = (index + 1) * per - elapsed;
                let secs = u64::try_from(left.div_ceil(1_000_000_000)).unwrap_or(u64::MAX).max(1);
                return Err(Refusal::TooMany { retry_after_secs: secs });
            }
            w.used += 1;
        }
        Ok(guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quota_refuses_until_its_window_ends() {
        let limits = Limits::new(None, Some(Quota { n: 3, per: Duration::from_secs(60) }), None, None);
        for _ in 0..3 {
            assert!(limits.admit().is_ok());
        }
        match limits.admit() {
            Err(Refusal::TooMany { retry_after_secs }) => assert!((59..=60).contains(&retry_after_secs)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_token_bucket_lets_its_burst_through_then_refuses() {
        let limits = Limits::new(Some(50.0), None, None, None);
        // 0.1 s worth of 50/s is 5; refills in this loop add well under one more.
        let admitted = (0..20).filter(|_| limits.admit().is_ok()).count();
        assert!((5..=8).contains(&admitted), "{admitted}");
        assert_eq!(limits.admit().err(), Some(Refusal::TooMany { retry_after_secs: 1 }));
    }

    #[test]
    fn capacity_steps_change_the_bucket_from_the_first_request_on() {
        let later = vec![(Duration::from_secs(3600), 5.0)];
        let limits = Limits::new(Some(1000.0), None, None, None).with_capacity_steps(later);
        let admitted = (0..300).filter(|_| limits.admit().is_ok()).count();
        assert!((100..=130).contains(&admitted), "a step not yet due changes nothing: {admitted}");
        // A step due at the first request shrinks the bucket at once: 5/s holds one request.
        let now = vec![(Duration::ZERO, 5.0), (Duration::from_secs(3600), 1000.0)];
        let limits = Limits::new(Some(1000.0), None, None, None).with_capacity_steps(now);
        let admitted = (0..300).filter(|_| limits.admit().is_ok()).count();
        assert!((1..=2).contains(&admitted), "{admitted}");
    }

    #[test]
    fn past_the_knee_answers_queue_instead_of_failing() {
        let limits = Limits::new(None, None, None, None).with_latency_knee(Some(100.0));
        let waits: Vec<Duration> = (0..5).map(|_| limits.latency().unwrap()).collect();
        // Five at once at 100/s: each waits 10 ms more than the one before.
        assert!(waits[0] < Duration::from_millis(5), "{waits:?}");
        assert!(waits[4] >= Duration::from_millis(35) && waits[4] <= Duration::from_millis(41), "{waits:?}");
    }

    #[test]
    fn max_in_flight_counts_places_until_they_are_given_back() {
        let limits = Limits::new(None, None, Some(2), None);
        let a = limits.admit().unwrap();
        let _b = limits.admit().unwrap();
        assert_eq!(limits.admit().err(), Some(Refusal::Busy));
        drop(a);
        assert!(limits.admit().is_ok());
    }

    // ---- against the real receiver on loopback ----

    use crate::{Receiver, ReceiverConfig};

    fn client() -> reqwest::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder().user_agent(crate::receiver::WEBHOOK_USER_AGENT).build().unwrap()
    }

    /// POSTs `n` bodies at once; the answers' statuses and `Retry-After` values, in no order.
    async fn post_all(receiver: &Receiver, n: usize) -> Vec<(u16, Option<String>)> {
        let client = client();
        let mut requests = tokio::task::JoinSet::new();
        for i in 0..n {
            let request = client.post(receiver.url()).body(format!(r#"{{"id":"e{i}","payload":{{"id":"{i}"}}}}"#));
            requests.spawn(async move {
                let response = request.send().await.unwrap();
                let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
                (response.status().as_u16(), retry_after)
            });
        }
        requests.join_all().await
    }

    fn count(answers: &[(u16, Option<String>)], status: u16) -> usize {
        answers.iter().filter(|(s, _)| *s == status).count()
    }

    #[tokio::test]
    async fn receiver_capacity_answers_429_with_retry_after_1_above_it() {
        let receiver =
            Receiver::start(ReceiverConfig { capacity: Some(20.0), ..ReceiverConfig::default() }).await.unwrap();
        let answers = post_all(&receiver, 30).await;
        // A bucket of 2 and a refill of 20/s: far fewer than 30 get through a burst of 30.
        assert!((2..15).contains(&count(&answers, 200)), "{answers:?}");
        assert_eq!(count(&answers, 200) + count(&answers, 429), 30, "{answers:?}");
        assert!(answers.iter().all(|(s, after)| *s != 429 || after.as_deref() == Some("1")), "{answers:?}");
        assert_eq!(receiver.stats().transient as usize, count(&answers, 429));
        receiver.shutdown().await;
    }

    #[tokio::test]
    async fn receiver_quota_refuses_until_the_window_ends() {
        let quota = Some(Quota { n: 3, per: Duration::from_secs(3600) });
        let receiver = Receiver::start(ReceiverConfig { quota, ..ReceiverConfig::default() }).await.unwrap();
        let mut answers = Vec::new();
        for _ in 0..5 {
            answers.extend(post_all(&receiver, 1).await);
        }
        assert_eq!(answers.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [200, 200, 200, 429, 429]);
        let after: u64 = answers[3].1.as_deref().unwrap().parse().unwrap();
        assert!((3000..=3600).contains(&after), "{after}");
        receiver.shutdown().await;
    }

    #[tokio::test]
    async fn receiver_max_in_flight_answers_503_above_it_and_latency_delays_every_answer() {
        let config = ReceiverConfig {
            max_in_flight: Some(2),
            latency: Some(Duration::from_millis(400)),
            ..ReceiverConfig::default()
        };
        let receiver = Receiver::start(config).await.unwrap();
        let start = Instant::now();
        let answers = post_all(&receiver, 6).await;
        assert!(start.elapsed() >= Duration::from_millis(400), "every answer takes the latency");
        assert!(count(&answers, 503) >= 1 && count(&answers, 200) >= 1, "{answers:?}");
        assert_eq!(count(&answers, 200) + count(&answers, 503), 6, "{answers:?}");
        // Once the places are given back, a request gets through again.
        assert_eq!(post_all(&receiver, 1).await[0].0, 200);
        receiver.shutdown().await;
    }
}
