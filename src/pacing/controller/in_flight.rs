//! The cap on requests in flight that `--rate auto` learns when a receiver limits requests at
//! once rather than per second: kept apart from the rate's CUBIC state machine it modulates.

use super::{MIN_ATTEMPTS, MIN_WINDOW};
use crate::pacing::Signal;

/// A receiver's limit on requests in flight, learned from where its refusals fall.
///
/// A rate cannot meet such a receiver: it refuses whenever sends bunch up, which timers and the
/// scheduler make them do now and then, long before the mean rate reaches its capacity (10 in
/// flight of 20 ms each is 500/s only if requests come exactly 2 ms apart). Answering each such
/// refusal with a 0.7× drop held real runs well short of capacity. Refusals that came only when more
/// were in flight than usual — at least `MIN_CAP` others, and more than the recent successes
/// had on average — say "too many at once": the cap becomes that many, the rate is
/// left alone, and a request waits for one in flight to finish instead. A token bucket's
/// refusals come at any number in flight, so the first one under a third of the cap removes it.
/// Like Vector's adaptive concurrency, the cap then probes upwards by one each window in which it
/// held the run back without a refusal, and goes one back on a refusal (once a window).
#[derive(Debug, Clone, Default)]
pub(super) struct InFlightCap {
    /// The learned cap; `None` while the receiver shows no limit on requests in flight.
    pub(super) cap: Option<u32>,
    /// Since when the statistics below run (they cover about a second).
    since: f64,
    /// Successes seen, and the moving mean of the in-flight counts they were sent with.
    ok: u32,
    mean_in_flight: f64,
    /// Whether a request was sent with the cap full but for itself (the cap held the run back).
    binding: bool,
    /// A refusal at the cap in the current second.
    refused_at_cap: bool,
    /// Requests sent in the current second with the cap full but for themselves, and refusals
    /// the cap would answer: a receiver at its limit refuses most sends at the cap, a receiver
    /// with a background of random errors only a few percent of them.
    sends_at_cap: u32,
    refusals: u32,
}

/// The cap comes down when more than one in this many sends at the cap were refused.
const AT_CAP_ONE_IN: u32 = 10;

/// The lowest cap on requests in flight ever learned: below it refusals say nothing certain.
const MIN_CAP: u32 = 4;

impl InFlightCap {
    /// Counts one attempt sent with `in_flight` others in flight; returns whether its refusal (if
    /// `counted`) is explained by the cap on requests in flight, so the rate should not drop.
    /// `congestion`: the refusals are more than a background of random errors; only then is a
    /// new cap learned (a random 503 that happened to come with many in flight once set a cap
    /// of 5 that took half a minute to climb back to the pool's size).
    pub(super) fn record(
        &mut self,
        now: f64,
        outcome: Signal,
        in_flight: u32,
        counted: bool,
        congestion: bool,
    ) -> bool {
        if now - self.since >= MIN_WINDOW {
            if let Some(cap) = self.cap
                && self.binding
                && !self.refused_at_cap
            {
                self.cap = Some(cap.saturating_add(1));
            }
            (self.since, self.binding, self.refused_at_cap) = (now, false, false);
            (self.sends_at_cap, self.refusals) = (0, 0);
        }
        if self.cap.is_some_and(|cap| in_flight.saturating_add(1) >= cap) {
            self.binding = true;
            self.sends_at_cap = self.sends_at_cap.saturating_add(1);
        }
        if outcome == Signal::Delivered {
            self.ok = self.ok.saturating_add(1);
            self.mean_in_flight += (f64::from(in_flight) - self.mean_in_flight) / f64::from(self.ok.min(100));
            return false;
        }
        // Only a 503 (or a gateway's 502 or 504) speaks of load: a 429 is a rate limit by name,
        // and a token bucket whose overshoot came with more in flight than usual must not be
        // taken for a cap (it was, in simulation, at 2,000/s of 5 ms each).
        if !counted || !matches!(outcome, Signal::Unavailable { .. }) {
            return false;
        }
        match self.cap {
            // Under a third of the cap: the receiver is refusing a rate, not a number in flight.
            Some(cap) if in_flight.saturating_mul(3) < cap => {
                self.cap = None;
                false
            }
            // Otherwise the cap was a little high (it was just raised, or the receiver got
            // smaller): one lower, once a window. Not down to the number this one was sent with:
            // requests sent after it can reach the receiver before it, so that number is often a
            // few short of what the receiver counted (real runs fell to a cap of 4 for a limit
            // of 10 that way).
            // A refusal that is one of a few percent of the sends at the cap is background noise
            // (it still costs a retry): lowering the cap for each would take it to the floor.
            Some(cap) => {
                self.refusals = self.refusals.saturating_add(1);
                if !self.refused_at_cap && self.refusals.saturating_mul(AT_CAP_ONE_IN) > self.sends_at_cap {
                    self.cap = Some(cap.saturating_sub(1).max(MIN_CAP));
                    self.refused_at_cap = true;
                }
                true
            }
            None => {
                let learned = congestion
                    && self.ok >= MIN_ATTEMPTS
                    && in_flight >= MIN_CAP
                    && f64::from(in_flight) > self.mean_in_flight;
                if learned {
                    self.cap = Some(in_flight);
                    self.refused_at_cap = true;
                }
                learned
            }
        }
    }
}
