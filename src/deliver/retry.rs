//! Whether to retry, and when: one pure decision over an attempt's result, plus the backoff policy.
//!
//! Both the webhook workers and the SavvyCal pager use these, so "what is transient" is decided in
//! exactly one place and table-tested without a network. We write this small policy ourselves
//! instead of using the `backoff` crate (unmaintained, RUSTSEC-2025-0012, and its `retry_after`
//! path ignores the policy's limits): `Retry-After` here is always capped at `--retry-max`.

use std::time::{Duration, SystemTime};

use crate::pacing::Signal;

/// What came back from one attempt, reduced to what the decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult<'a> {
    /// The server answered with this status; `retry_after` is the raw `Retry-After` header, if any.
    Status { code: u16, retry_after: Option<&'a str> },
    /// No answer.
    Transport(TransportError),
}

/// Why no answer came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportError {
    /// Could not connect, or the connection broke before a response arrived.
    Connection,
    /// The attempt ran over `--timeout`.
    Timeout,
    /// Anything else (bad redirect, unreadable response): retrying would not help.
    Other,
}

/// What one attempt's result means, decided once: for its event, and for the pool's pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// Whether this event is done, tried again, or failed for good.
    pub decision: Decision,
    /// What the result says about the receiver's capacity and health (the pacer's input).
    pub signal: Signal,
}

/// What happens to the event after one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// 2xx: done.
    Delivered,
    /// Transient: try again. `after` is the server's `Retry-After` (already capped), if it sent one.
    Retry { after: Option<Duration> },
    /// Permanent: record the failure and move on.
    Fail,
}

/// The one decision: delivered, retry (maybe after a server-given delay), or fail for good, and
/// what that tells pacing. A new retryable status is one arm here, with its signal beside it.
///
/// Transient: connection errors, timeouts, 408, 425, 429, 500, 502, 503, 504. `Retry-After` counts
/// only on 429 and 503, is capped at `cap`, and is read relative to `now` when it is an HTTP date.
pub fn classify(result: AttemptResult<'_>, now: SystemTime, cap: Duration) -> Verdict {
    let after = |value: Option<&str>| value.and_then(|v| parse_retry_after(v, now)).map(|d| d.min(cap));
    let retry = Decision::Retry { after: None };
    let (decision, signal) = match result {
        AttemptResult::Status { code: 200..=299, .. } => (Decision::Delivered, Signal::Delivered),
        AttemptResult::Status { code: 429, retry_after } => {
            let after = after(retry_after);
            (Decision::Retry { after }, Signal::TooManyRequests { retry_after: after })
        }
        AttemptResult::Status { code: 503, retry_after } => {
            let after = after(retry_after);
            (Decision::Retry { after }, Signal::Unavailable { status: 503, retry_after: after })
        }
        AttemptResult::Status { code: status @ (502 | 504), .. } => {
            (retry, Signal::Unavailable { status, retry_after: None })
        }
        AttemptResult::Status { code: 408, .. } => (retry, Signal::Timeout),
        AttemptResult::Status { code: 425 | 500, .. } => (retry, Signal::Other),
        AttemptResult::Status { .. } => (Decision::Fail, Signal::Other),
        AttemptResult::Transport(TransportError::Timeout) => (retry, Signal::Timeout),
        AttemptResult::Transport(TransportError::Connection) => (retry, Signal::Connection),
        AttemptResult::Transport(TransportError::Other) => (Decision::Fail, Signal::Other),
    };
    Verdict { decision, signal }
}

/// `Retry-After` as delta-seconds (`120`) or an HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`).
/// A date in the past means "now" (zero); anything unreadable is ignored.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = value.parse::<f64>() {
        // Not allowed by RFC 9110, but seen in the wild.
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// How often and how patiently to retry one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub backoff: Backoff,
    /// Retries after the first attempt.
    pub max_retries: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff: Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(30) },
            max_retries: 8,
        }
    }
}

impl RetryPolicy {
    /// After a transient failure, with `retries` retries already made: the wait before the next
    /// attempt (the server's `Retry-After`, already capped by `classify`, else the backoff), or
    /// `None` when the retries are used up. The pager's loop asks this; the workers' loop decides
    /// the same way but keeps its own steps, because outages and the pacer change what counts.
    pub fn wait_before_retry(&self, retries: u32, retry_after: Option<Duration>) -> Option<Duration> {
        (retries < self.max_retries).then(|| self.wait(retries, retry_after, fastrand::f64()))
    }

    /// The wait before retry number `retry` (0 = the first), given the server's `Retry-After` and
    /// a uniform `jitter`: the later of the two. A `Retry-After` of zero (or a date already past)
    /// means "now", and a receiver that says so while it keeps refusing would otherwise burn every
    /// retry within milliseconds: the server may ask for more patience than the policy, never less.
    pub fn wait(&self, retry: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
        self.backoff.delay(retry, jitter).max(retry_after.unwrap_or(Duration::ZERO))
    }
}

/// The `-v` line for a retry of an API request.
pub fn log_retry(what: &str, error: &str, retry: u32, max: u32, delay: Duration) {
    let delay = Duration::from_millis(delay.as_millis().min(u128::from(u64::MAX)) as u64);
    tracing::info!("{what}: {error}; retry {retry}/{max} in {}", humantime::format_duration(delay));
}

/// Exponential backoff with jitter, bounded by `--retry-initial` and `--retry-max`.
///
/// "Equal jitter" (as in AWS's backoff write-up): retry `n` waits a uniform draw from the upper
/// half of a ceiling that starts at twice `--retry-initial` and doubles up to `--retry-max`, so
/// the first retry waits between `initial` and `2 × initial`, the next between `2 ×` and `4 ×`,
/// and so on. Every retry, the first included, is jittered: workers that failed together (a
/// receiver restart) do not come back together. We keep the floor rather than use full jitter
/// (uniform from zero) because `--retry-initial` reads as "wait at least this long", and a
/// receiver that just failed should not see a retry within microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry number `retry` (0 = the first retry), given a uniform `jitter` in
    /// `[0, 1]`: from the upper half below the ceiling `min(initial × 2^(retry+1), max)`, never below
    /// `initial` nor above `max`. Only when `max` is `initial` are all delays the same.
    pub fn delay(&self, retry: u32, jitter: f64) -> Duration {
        let initial = self.initial.as_secs_f64();
        let max = self.max.as_secs_f64().max(initial);
        let ceiling = (initial * 2f64.powi(retry.min(62) as i32 + 1)).min(max);
        let jitter = if jitter.is_finite() { jitter.clamp(0.0, 1.0) } else { 0.0 };
        let d = ceiling / 2.0 + jitter * (ceiling / 2.0);
        Duration::from_secs_f64(d.clamp(initial, max))
    }

    /// [`Backoff::delay`] with a jitter drawn from `rng` (seeded in tests).
    pub fn delay_with(&self, retry: u32, rng: &mut fastrand::Rng) -> Duration {
        self.delay(retry, rng.f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_secs(30);

    fn status(code: u16, retry_after: Option<&str>) -> AttemptResult<'_> {
        AttemptResult::Status { code, retry_after }
    }

    #[test]
    fn retries_run_out_and_retry_after_wins_over_the_backoff() {
        let p = RetryPolicy { max_retries: 2, ..RetryPolicy::default() };
        assert_eq!(p.wait_before_retry(0, Some(Duration::from_secs(7))), Some(Duration::from_secs(7)));
        let d = p.wait_before_retry(1, None).unwrap();
        assert!(d >= p.backoff.initial && d <= p.backoff.max, "{d:?}");
        assert_eq!(p.wait_before_retry(2, Some(Duration::from_secs(1))), None);
    }

    #[test]
    fn retry_after_never_shortens_the_backoff() {
        let p = RetryPolicy::default();
        let s = Duration::from_secs;
        let ms = Duration::from_millis;
        // (retry, Retry-After, jitter, wait)
        let cases = [
            (0, None, 0.0, ms(500)),
            (0, Some(Duration::ZERO), 0.0, ms(500)),
            (0, Some(Duration::ZERO), 1.0, s(1)),
            (3, Some(Duration::ZERO), 0.0, s(4)),
            (0, Some(ms(100)), 0.0, ms(500)),
            (2, Some(s(1)), 0.0, s(2)),
            (0, Some(s(1)), 0.0, s(1)),
            (0, Some(s(7)), 1.0, s(7)),
            (9, Some(s(30)), 0.0, s(30)),
        ];
        for (retry, after, jitter, want) in cases {
            assert_eq!(p.wait(retry, after, jitter), want, "retry {retry}, Retry-After {after:?}");
        }
        // A date in the past reads as zero, and still waits the policy's delay.
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let Decision::Retry { after } = classify(status(429, Some("Tue, 14 Nov 2023 22:00:00 GMT")), now, CAP).decision
        else {
            panic!("a 429 is retried");
        };
        for retry in 0..p.max_retries {
            let d = p.wait_before_retry(retry, after).unwrap();
            assert!(d >= p.backoff.delay(retry, 0.0), "retry {retry}: {d:?}");
        }
    }

    #[test]
    fn classification_table() {
        use Decision::{Delivered, Fail};
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let retry = Decision::Retry { after: None };
        let s = Duration::from_secs;
        let after = |d| Decision::Retry { after: Some(d) };
        let busy = |status, retry_after| Signal::Unavailable { status, retry_after };
        let many = |retry_after| Signal::TooManyRequests { retry_after };
        let cases: Vec<(AttemptResult<'_>, Decision, Signal)> = vec![
            (status(200, None), Delivered, Signal::Delivered),
            (status(201, None), Delivered, Signal::Delivered),
            (status(204, None), Delivered, Signal::Delivered),
            (status(204, Some("5")), Delivered, Signal::Delivered),
            (status(301, None), Fail, Signal::Other),
            (status(400, None), Fail, Signal::Other),
            (status(401, None), Fail, Signal::Other),
            (status(404, None), Fail, Signal::Other),
            (status(408, None), retry, Signal::Timeout),
            (status(410, None), Fail, Signal::Other),
            (status(422, None), Fail, Signal::Other),
            (status(425, None), retry, Signal::Other),
            (status(429, None), retry, many(None)),
            (status(500, None), retry, Signal::Other),
            (status(501, None), Fail, Signal::Other),
            (status(502, None), retry, busy(502, None)),
            (status(503, None), retry, busy(503, None)),
            (status(504, None), retry, busy(504, None)),
            (status(505, None), Fail, Signal::Other),
            (status(429, Some("2")), after(s(2)), many(Some(s(2)))),
            (status(429, Some("3")), after(s(3)), many(Some(s(3)))),
            (status(503, Some("1")), after(s(1)), busy(503, Some(s(1)))),
            (status(503, Some("7")), after(s(7)), busy(503, Some(s(7)))),
            // Capped at --retry-max.
            (status(429, Some("3600")), after(CAP), many(Some(CAP))),
            // Only 429 and 503 carry a meaningful Retry-After.
            (status(500, Some("5")), retry, Signal::Other),
            (status(502, Some("1")), retry, busy(502, None)),
            // Unreadable: fall back to backoff.
            (status(429, Some("soon")), retry, many(None)),
            (status(429, Some("Tue, 14 Nov 2023 22:13:30 GMT")), after(s(10)), many(Some(s(10)))),
            (
                status(503, Some("Tue, 14 Nov 2023 22:00:00 GMT")),
                after(Duration::ZERO),
                busy(503, Some(Duration::ZERO)),
            ),
            (AttemptResult::Transport(TransportError::Connection), retry, Signal::Connection),
            (AttemptResult::Transport(TransportError::Timeout), retry, Signal::Timeout),
            (AttemptResult::Transport(TransportError::Other), Fail, Signal::Other),
        ];
        for (input, decision, signal) in cases {
            assert_eq!(classify(input, now, CAP), Verdict { decision, signal }, "{input:?}");
        }
    }

    #[test]
    fn signals_say_what_pacing_reads() {
        assert!(!Signal::TooManyRequests { retry_after: None }.is_outage_failure());
        assert!(Signal::TooManyRequests { retry_after: None }.is_throttle());
        assert!(Signal::Connection.is_outage_failure() && Signal::Connection.is_throttle());
        assert!(!Signal::Other.is_throttle() && !Signal::Delivered.is_outage_failure());
    }

    #[test]
    fn backoff_grows_and_stays_within_bounds() {
        let b = Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(30) };
        // The first retry is jittered too: anywhere from --retry-initial to twice that.
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(500));
        assert_eq!(b.delay(0, 0.5), Duration::from_millis(750));
        assert_eq!(b.delay(0, 1.0), Duration::from_secs(1));
        assert_eq!(b.delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(b.delay(1, 1.0), Duration::from_secs(2));
        assert_eq!(b.delay(3, 0.0), Duration::from_secs(4));
        assert_eq!(b.delay(3, 1.0), Duration::from_secs(8));
        for retry in 0..100 {
            for j in [0.0, 0.3, 0.7, 1.0, f64::NAN, -1.0, 2.0] {
                let d = b.delay(retry, j);
                assert!(d >= b.initial && d <= b.max, "retry {retry} jitter {j}: {d:?}");
            }
        }
        assert_eq!(b.delay(99, 1.0), Duration::from_secs(30));
        assert_eq!(b.delay(99, 0.0), Duration::from_secs(15));
        // A cap below twice the floor still leaves room to spread; a cap equal to it does not.
        let tight = Backoff { initial: Duration::from_millis(500), max: Duration::from_millis(800) };
        assert_eq!(tight.delay(0, 1.0), Duration::from_millis(800));
        assert_eq!(tight.delay(0, 0.0), Duration::from_millis(500));
        let flat = Backoff { initial: Duration::from_millis(500), max: Duration::from_millis(500) };
        assert_eq!(flat.delay(0, 1.0), Duration::from_millis(500));
    }

    /// What this pins down: once, 123 of 123 first retries waited exactly `--retry-initial`, so
    /// workers that failed together retried together.
    #[test]
    fn every_retry_is_jittered_the_first_included() {
        let b = Backoff { initial: Duration::from_millis(500), max: Duration::from_secs(30) };
        let mut rng = fastrand::Rng::with_seed(11);
        for retry in 0..8 {
            let delays: Vec<Duration> = (0..1000).map(|_| b.delay_with(retry, &mut rng)).collect();
            let lo = b.initial * 2u32.pow(retry);
            let hi = (lo * 2).min(b.max);
            let lo = lo.min(b.max / 2);
            assert!(delays.iter().all(|d| *d >= lo && *d <= hi), "retry {retry}: outside [{lo:?}, {hi:?}]");
            let distinct: std::collections::HashSet<_> = delays.iter().collect();
            assert!(distinct.len() > 900, "retry {retry}: only {} distinct delays", distinct.len());
            // Spread over the whole range, not bunched at one end.
            let (min, max) = (delays.iter().min().unwrap(), delays.iter().max().unwrap());
            let span = hi - lo;
            assert!(*min < lo + span / 20 && *max > hi - span / 20, "retry {retry}: {min:?}..{max:?}");
            let below_middle = delays.iter().filter(|d| **d < lo + span / 2).count();
            assert!((400..600).contains(&below_middle), "retry {retry}: {below_middle} of 1000 below the middle");
        }
    }
}

/// Property tests (proptest): Retry-After, as a server may write it, never panics and round-trips.
#[cfg(test)]
mod properties {
    use std::time::{Duration, SystemTime};

    use proptest::prelude::*;

    use super::parse_retry_after;

    /// A fixed "now" on a whole second, so HTTP dates (whole seconds) round-trip exactly.
    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000)
    }

    proptest! {
        #[test]
        fn retry_after_never_panics(s in ".*") {
            let _ = parse_retry_after(&s, now());
        }

        #[test]
        fn retry_after_seconds_round_trip(n in any::<u64>(), pad in "[ \t]{0,2}") {
            prop_assert_eq!(parse_retry_after(&format!("{pad}{n}{pad}"), now()), Some(Duration::from_secs(n)));
        }

        #[test]
        fn retry_after_dates_round_trip(n in 0u64..10_000_000) {
            let date = httpdate::fmt_http_date(now() + Duration::from_secs(n));
            prop_assert_eq!(parse_retry_after(&date, now()), Some(Duration::from_secs(n)));
            // A date in the past means "now".
            let past = httpdate::fmt_http_date(now() - Duration::from_secs(n));
            prop_assert_eq!(parse_retry_after(&past, now()), Some(Duration::ZERO));
        }
    }
}
