//! The modelled webhook receivers the simulation replays into: the ones `sink --capacity`,
//! `--quota` and `--max-in-flight` serve, plus a latency knee, a capacity step, an outage and a
//! background of random errors.

use std::time::Duration;

use super::Signal;

/// Service time of an answer that carries no work (a 429, a refused connection).
pub(super) const QUICK: f64 = 0.001;
/// How late a timer fires, at most, seconds: a send leaves up to this long after its slot (tokio's
/// timer wheel ticks every millisecond), so requests never come exactly evenly spaced.
pub(super) const JITTER: f64 = 0.001;

/// A modelled webhook receiver.
pub(super) trait Receive {
    /// A request arrives at `t`: what is answered, and after how long.
    fn arrive(&mut self, t: f64) -> (Signal, f64);
    /// The answer to a request that arrived earlier has left at `t`.
    fn leave(&mut self, _t: f64, _outcome: Signal) {}
}

/// `sink --capacity`: a token bucket of `rate(t)` a second holding 0.1 s worth, 429 +
/// `Retry-After: 1` when empty.
pub(super) struct TokenBucket<F: Fn(f64) -> f64> {
    pub(super) rate: F,
    pub(super) tokens: f64,
    pub(super) last: f64,
    pub(super) latency: f64,
}

pub(super) fn token_bucket(capacity: f64) -> TokenBucket<impl Fn(f64) -> f64> {
    stepped(move |_| capacity)
}

pub(super) fn stepped<F: Fn(f64) -> f64>(rate: F) -> TokenBucket<F> {
    TokenBucket { rate, tokens: 1.0, last: 0.0, latency: 0.005 }
}

impl<F: Fn(f64) -> f64> Receive for TokenBucket<F> {
    fn arrive(&mut self, t: f64) -> (Signal, f64) {
        let rate = (self.rate)(t);
        let size = (rate * 0.1).max(1.0);
        self.tokens = (self.tokens + (t - self.last) * rate).min(size);
        self.last = t;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            (Signal::Delivered, self.latency)
        } else {
            (Signal::TooManyRequests { retry_after: Some(Duration::from_secs(1)) }, QUICK)
        }
    }
}

/// `sink --quota N/W`: N per fixed window, then 429 with `Retry-After` = seconds to its end.
pub(super) struct Quota {
    pub(super) n: u32,
    pub(super) window: f64,
    pub(super) current: i64,
    pub(super) used: u32,
}

impl Receive for Quota {
    fn arrive(&mut self, t: f64) -> (Signal, f64) {
        let index = (t / self.window).floor() as i64;
        if index != self.current {
            (self.current, self.used) = (index, 0);
        }
        if self.used < self.n {
            self.used += 1;
            return (Signal::Delivered, 0.005);
        }
        let left = (index + 1) as f64 * self.window - t;
        (Signal::TooManyRequests { retry_after: Some(Duration::from_secs(left.ceil() as u64)) }, QUICK)
    }
}

/// A deterministic source of jitter in `[0, 1)` (an LCG: the simulation must replay exactly).
pub(super) struct Dice(pub(super) u64);

impl Dice {
    pub(super) fn roll(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1_u64 << 53) as f64
    }
}

/// `sink --max-in-flight K --latency L`: 503 above K concurrent requests. The real one holds a
/// place for L plus up to `JITTER` more (its timer wakes on a millisecond tick, then the answer
/// is written), so it takes a little less than K/L a second, and only if requests come evenly.
pub(super) struct MaxInFlight {
    pub(super) k: u32,
    pub(super) latency: f64,
    pub(super) in_flight: u32,
    pub(super) dice: Dice,
}

pub(super) fn in_flight_limit(k: u32, latency: f64) -> MaxInFlight {
    MaxInFlight { k, latency, in_flight: 0, dice: Dice(7) }
}

impl Receive for MaxInFlight {
    fn arrive(&mut self, _t: f64) -> (Signal, f64) {
        if self.in_flight >= self.k {
            return (Signal::Unavailable { status: 503, retry_after: None }, QUICK);
        }
        self.in_flight += 1;
        (Signal::Delivered, self.latency + 1.5 * JITTER * self.dice.roll())
    }

    fn leave(&mut self, _t: f64, outcome: Signal) {
        if outcome == Signal::Delivered {
            self.in_flight -= 1;
        }
    }
}

/// No errors ever, but one request at a time is worked on, `1/capacity` each: past the capacity
/// a queue builds and latency rises.
pub(super) struct Knee {
    pub(super) capacity: f64,
    pub(super) base: f64,
    pub(super) busy_until: f64,
}

impl Receive for Knee {
    fn arrive(&mut self, t: f64) -> (Signal, f64) {
        self.busy_until = self.busy_until.max(t) + 1.0 / self.capacity;
        (Signal::Delivered, self.base + self.busy_until - t)
    }
}

/// Down between `from` and `to` (refused connections); a token bucket of 300/s otherwise.
pub(super) struct Down<R> {
    pub(super) from: f64,
    pub(super) to: f64,
    pub(super) up: R,
}

impl<R: Receive> Receive for Down<R> {
    fn arrive(&mut self, t: f64) -> (Signal, f64) {
        if (self.from..self.to).contains(&t) { (Signal::Connection, QUICK) } else { self.up.arrive(t) }
    }
}

/// No limit at all, but a random `share` of the requests fail whatever the rate: `fail` says how
/// (a 503 without `Retry-After`, a reset connection).
pub(super) struct Noisy {
    pub(super) share: f64,
    pub(super) fail: Signal,
    pub(super) dice: Dice,
}

impl Receive for Noisy {
    fn arrive(&mut self, _t: f64) -> (Signal, f64) {
        if self.dice.roll() < self.share { (self.fail, QUICK) } else { (Signal::Delivered, 0.005) }
    }
}
