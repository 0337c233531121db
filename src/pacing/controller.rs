//! The adaptive rate of `--rate auto`: a pure state machine that finds the receiver's capacity.
//!
//! It paces a rate rather than a number of requests in flight, because webhook receivers mostly
//! limit requests per second: slow start to the first throttle signal, a decrease to 0.7× the rate
//! the receiver was measured to accept (at most once per measurement window), then CUBIC back up.
//! It learns a cap on requests in flight ([`InFlightCap`]) for receivers that limit those instead,
//! holds the pool while a quota's window is used up ([`quota`]), and takes a background of random
//! errors for what it is ([`Noise`]). The design and the reasoning behind it are in
//! `docs/pacing.md`.
//!
//! Time is a [`Duration`] since any fixed origin (the run's start); the controller never reads a
//! clock, so the tests drive it in virtual time (`controller/tests.rs` rule by rule, `sim.rs`
//! against modelled receivers).

use std::collections::VecDeque;
use std::time::Duration;

use super::Signal;

mod in_flight;
mod measured;
mod noise;
mod quota;
use in_flight::InFlightCap;
use measured::BUCKET;
use noise::{Noise, is_soft};
use quota::SHUT_DOOR;

/// Where a run without a remembered rate starts, per second.
pub const DEFAULT_START: f64 = 10.0;
/// The floor: even a struggling receiver gets a request every two seconds.
const MIN_RATE: f64 = 0.5;
/// Multiplicative decrease on a throttle (AWS adaptive mode, CUBIC).
const BETA: f64 = 0.7;
/// Decrease on rising latency, and the level the cubic then aims at (× the measured rate): the
/// receiver is queueing, so the queue must drain and the rate settle just under where it began.
const LATENCY_BETA: f64 = 0.8;
const LATENCY_AIM: f64 = 0.9;
/// Congested windows in a row after which the latency is taken as the receiver's new normal.
const RELEARN_AFTER: u32 = 10;
/// Seconds the cubic takes to climb from `BETA·W` back to `W`.
const CUBIC_K: f64 = 1.5;
/// How often the rate follows the cubic, seconds (each change rebuilds the caller's limiter).
const UPDATE: f64 = 0.1;
/// Shortest measurement window, seconds.
const MIN_WINDOW: f64 = 1.0;
/// Shortest window of slow start, seconds. Doubling once a second took eight seconds to find a
/// receiver of 2,000/s from 10/s; a quarter of a second (with at least `MIN_ATTEMPTS` in it, so
/// the first doublings from 10/s still take their second or half) takes three.
const SLOW_START_WINDOW: f64 = 0.25;
/// Fewest attempts a window needs before it says anything.
const MIN_ATTEMPTS: u32 = 10;
/// Latency is "well above its baseline" past `LATENCY_FACTOR × baseline + LATENCY_SLACK`.
const LATENCY_FACTOR: f64 = 2.0;
const LATENCY_SLACK: f64 = 0.005;
/// How far a window's latency drags a lower baseline up: slowly, so congestion does not become the
/// new normal, but a receiver that is simply slower now is accepted in a few dozen windows.
const BASELINE_DRIFT: f64 = 0.02;

/// How to start a [`Controller`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ControllerSettings {
    /// The rate the last run for this target settled on; `None` starts at [`DEFAULT_START`].
    pub start: Option<f64>,
    /// `--max-rate`: never exceeded. `None` is unlimited.
    pub max_rate: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Doubling every window until the first throttle.
    SlowStart,
    /// On the cubic through `last_max`, which it reaches `k` seconds after `since`.
    Recover { since: f64, last_max: f64, k: f64 },
}

/// What finished since the current window opened.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Window {
    start: f64,
    attempts: u32,
    delivered: u32,
    latency_sum: f64,
}

impl Window {
    fn open(start: f64) -> Window {
        Window { start, attempts: 0, delivered: 0, latency_sum: 0.0 }
    }
}

/// The adaptive rate. Feed it every finished attempt with [`Controller::record`].
#[derive(Debug, Clone)]
pub struct Controller {
    max_rate: f64,
    min_rate: f64,
    rate: f64,
    phase: Phase,
    window: Window,
    /// When the last decrease happened (seconds), and attempts finished since.
    last_decrease: f64,
    /// When the rate last followed the cubic.
    last_update: f64,
    attempts_since_decrease: u32,
    /// Attempts sent since the last decrease that came back, and how many were refused or
    /// delivered: the answers to the decreased rate itself, no echoes.
    fresh: (u32, u32, u32),
    /// Throttles since the last success.
    refused_in_a_row: u32,
    /// A throttle that was not an echo arrived while a decrease was not yet allowed.
    pending_throttle: bool,
    /// EWMA of the windows' mean latency of delivered attempts, seconds.
    mean_latency: Option<f64>,
    baseline: Option<f64>,
    congested_windows: u32,
    /// Successes per `BUCKET`, oldest first: (bucket number, count).
    successes: VecDeque<(i64, u32)>,
    /// When the first attempt was sent: the measured rate never looks before it.
    first_sent: Option<f64>,
    /// The latest pool hold, (from, until), seconds.
    hold: Option<(f64, f64)>,
    settled: Option<f64>,
    in_flight: InFlightCap,
    noise: Noise,
    /// The rate and phase before the current run of refusals began.
    before_refusals: Option<(f64, Phase)>,
    /// When a quota's window was last used up.
    last_shut: Option<f64>,
}

impl Controller {
    /// The cubic's scale, so that from `BETA·W` it is back at `W` after `CUBIC_K` seconds.
    const CUBIC_C: f64 = (1.0 - BETA) / (CUBIC_K * CUBIC_K * CUBIC_K);

    pub fn new(settings: ControllerSettings) -> Controller {
        let max_rate = settings.max_rate.filter(|r| *r > 0.0).unwrap_or(f64::INFINITY);
        let min_rate = MIN_RATE.min(max_rate);
        let clamp = |r: f64| r.max(min_rate).min(max_rate);
        let (rate, phase) = match settings.start.filter(|r| r.is_finite() && *r > 0.0) {
            // A remembered rate is a known level: start on the plateau of the cubic through it.
            Some(r) => (clamp(r), Phase::Recover { since: -CUBIC_K, last_max: clamp(r), k: CUBIC_K }),
            None => (clamp(DEFAULT_START), Phase::SlowStart),
        };
        Controller {
            max_rate,
            min_rate,
            rate,
            phase,
            window: Window::open(0.0),
            last_decrease: f64::NEG_INFINITY,
            last_update: f64::NEG_INFINITY,
            attempts_since_decrease: 0,
            fresh: (0, 0, 0),
            pending_throttle: false,
            refused_in_a_row: 0,
            mean_latency: None,
            baseline: None,
            congested_windows: 0,
            successes: VecDeque::new(),
            first_sent: None,
            hold: None,
            settled: None,
            in_flight: InFlightCap::default(),
            noise: Noise::default(),
            before_refusals: None,
            last_shut: None,
        }
    }

    /// Requests per second to send at now.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// The rate the run settled on: a moving average of the rate over the last windows.
    pub fn settled(&self) -> f64 {
        self.settled.unwrap_or(self.rate)
    }

    /// Whether a measurement window has closed, so [`Controller::settled`] says something about
    /// the receiver (and not only where the run started).
    pub fn has_settled(&self) -> bool {
        self.settled.is_some()
    }

    /// Nobody should send before this (a receiver whose quota is used up); `None` if no hold.
    pub fn hold_until(&self) -> Option<Duration> {
        self.hold.map(|(_, until)| Duration::try_from_secs_f64(until).unwrap_or(Duration::MAX))
    }

    /// The most requests to have in flight at once, when the receiver showed it has such a limit.
    pub fn concurrency(&self) -> Option<u32> {
        self.in_flight.cap
    }

    /// One attempt finished at `now` with `outcome`, `latency` after it was sent, when `in_flight`
    /// other requests of the run were in flight. Returns the new rate when it changed.
    pub fn record(&mut self, now: Duration, outcome: Signal, latency: Duration, in_flight: u32) -> Option<f64> {
        let now = now.as_secs_f64();
        let latency = latency.as_secs_f64();
        let sent = now - latency;
        let before = self.rate;
        if self.first_sent.is_none_or(|first| sent < first) {
            self.first_sent = Some(sent.max(0.0));
        }
        self.window.attempts = self.window.attempts.saturating_add(1);
        self.attempts_since_decrease = self.attempts_since_decrease.saturating_add(1);
        if outcome == Signal::Delivered {
            self.window.delivered = self.window.delivered.saturating_add(1);
            self.window.latency_sum += latency;
            self.add_success(now);
            self.refused_in_a_row = 0;
            self.before_refusals = None;
        } else if outcome.is_throttle() {
            if self.refused_in_a_row == 0 {
                self.before_refusals = Some((self.rate, self.phase));
            }
            self.refused_in_a_row = self.refused_in_a_row.saturating_add(1);
        }

        // The door is shut until the receiver says: a long Retry-After, or one after a run of
        // refusals with no success between. Hold the pool rather than send what will be refused.
        // A token bucket's short Retry-After on an overshoot is answered by the rate alone: it
        // refuses only the excess, so successes keep breaking the run.
        if let Some(after) = outcome.retry_after().map(|d| d.as_secs_f64())
            && (after > self.window_len() || self.refused_in_a_row >= SHUT_DOOR)
        {
            self.hold_for(now, after);
            // A quota used up is not a rate too high: the hold answers it. Undo what the run of
            // refusals that led here did to the rate, or each window's end would cut it anew and
            // the next window's quota would go unused.
            if let Some((rate, phase)) = self.before_refusals.take() {
                (self.rate, self.phase, self.pending_throttle) = (self.rate.max(rate), phase, false);
                self.shut_door(now);
            }
        }

        // An answer to a request sent before the last decrease is an echo of that overshoot. And
        // refused connections with no success at all in the last window are not a capacity but an
        // outage — the outage detector's business; the rate is kept for when it ends.
        let down = outcome.is_outage_failure() && self.delivered_rate(now).is_some_and(|r| r == 0.0);
        let held = self.hold.is_some_and(|(from, until)| sent <= until && now >= from);
        let counted = outcome.is_throttle() && sent >= self.last_decrease && !down && !held;
        // A refusal that says "too many at once", not "too fast", moves the cap on requests in
        // flight and leaves the rate alone.
        self.noise.record(is_soft(outcome));
        let congestion = self.noise.is_congestion();
        let concurrency = self.in_flight.record(now, outcome, in_flight, counted, congestion);
        let counted = counted && (!is_soft(outcome) || congestion);
        if sent >= self.last_decrease {
            let (n, refused, delivered) = self.fresh;
            let (r, d) = (u32::from(counted && !concurrency), u32::from(outcome == Signal::Delivered));
            self.fresh = (n.saturating_add(1), refused.saturating_add(r), delivered.saturating_add(d));
        }
        if counted && !concurrency {
            if self.may_decrease(now) {
                self.decrease(now, BETA, 1.0);
            } else if let Some(delivered) = self.missed_by_far(now) {
                self.decrease_from(now, delivered, BETA, 1.0);
            } else {
                self.pending_throttle = true;
            }
        }

        if now - self.window.start >= self.close_after() && self.window.attempts >= MIN_ATTEMPTS {
            self.close_window(now);
        }
        self.follow_cubic(now);
        (self.rate != before).then_some(self.rate)
    }

    fn window_len(&self) -> f64 {
        MIN_WINDOW.max(2.0 * self.mean_latency.unwrap_or(0.0))
    }

    /// How long the current window lasts: shorter while slow start is finding the level.
    fn close_after(&self) -> f64 {
        match self.phase {
            Phase::SlowStart => SLOW_START_WINDOW.max(2.0 * self.mean_latency.unwrap_or(0.0)),
            Phase::Recover { .. } => self.window_len(),
        }
    }

    fn may_decrease(&self, now: f64) -> bool {
        now - self.last_decrease >= self.window_len() && self.attempts_since_decrease >= MIN_ATTEMPTS
    }

    fn clamp(&self, rate: f64) -> f64 {
        rate.max(self.min_rate).min(self.max_rate)
    }

    fn close_window(&mut self, now: f64) {
        let w = self.window;
        if w.delivered > 0 {
            let mean = w.latency_sum / f64::from(w.delivered);
            self.mean_latency = Some(self.mean_latency.map_or(mean, |m| 0.7 * m + 0.3 * mean));
            let baseline = self.baseline.unwrap_or(mean);
            let congested = mean > LATENCY_FACTOR * baseline + LATENCY_SLACK;
            self.congested_windows = if congested { self.congested_windows.saturating_add(1) } else { 0 };
            // Congestion must not become the new normal, so only calm windows move the baseline
            // up — unless decreasing has not helped for a while: then the receiver is just slower.
            self.baseline = Some(if mean < baseline || self.congested_windows >= RELEARN_AFTER {
                self.congested_windows = 0;
                mean
            } else if congested {
                baseline
            } else {
                baseline + BASELINE_DRIFT * (mean - baseline)
            });
            if congested && !self.pending_throttle {
                self.decrease(now, LATENCY_BETA, LATENCY_AIM);
                self.settle(now);
                return;
            }
        }
        if self.pending_throttle {
            self.decrease(now, BETA, 1.0);
        } else {
            if self.phase == Phase::SlowStart {
                let sent = f64::from(w.attempts) / self.active(w.start, now).max(BUCKET);
                self.raise(self.rate * 2.0, sent);
            }
            self.window = Window::open(now);
        }
        self.settle(now);
    }

    /// Moves the rate up to `target`, but never past twice what was actually `sent` per second: a
    /// run held back by `--concurrency` or a slow source must not wind its target up to a number
    /// it has never tried.
    fn raise(&mut self, target: f64, sent: f64) {
        let target = target.min(self.rate.max(2.0 * sent));
        self.rate = self.clamp(target.max(self.rate));
    }

    /// On the cubic the rate is a function of time: follow it every [`UPDATE`] seconds, so the
    /// climb back is smooth instead of a staircase of whole windows.
    fn follow_cubic(&mut self, now: f64) {
        let Phase::Recover { since, last_max, k } = self.phase else { return };
        if now - self.last_update < UPDATE {
            return;
        }
        self.last_update = now;
        let t = now - since;
        let target = last_max * (1.0 + Self::CUBIC_C * (t - k).powi(3));
        let w = self.window;
        let sent = f64::from(w.attempts) / self.active(w.start, now).max(UPDATE);
        self.raise(target, sent);
    }

    /// Under a cap on requests in flight the cap, not the rate, is what holds the run back (the
    /// rate floats up to twice what is sent): what was delivered is then the level.
    fn settle(&mut self, now: f64) {
        let rate = match (self.in_flight.cap, self.delivered_rate(now)) {
            (Some(_), Some(delivered)) if delivered > 0.0 => delivered.min(self.rate),
            // Under a quota the rate spends each window's share early and the pool then waits:
            // what it delivers per second, waits included, is the level.
            _ if self.last_shut.is_some() => self.quota_rate(now).map_or(self.rate, |q| q.min(self.rate)),
            _ => self.rate,
        };
        self.settled = Some(self.settled.map_or(rate, |s| 0.8 * s + 0.2 * rate));
    }

    /// Whether the last decrease missed by far — most of the requests sent at the decreased rate
    /// were refused — and if so, the rate delivered since. The measured rate a decrease starts
    /// from looks back a window, so after a capacity step (300 → 75) it still says 250; waiting a
    /// whole window to correct that had every worker sitting out a `Retry-After` and the pool
    /// all but stopped for a second. Not when nothing was delivered: a used-up quota or an outage
    /// is for the hold and the outage detector, and the rate is kept for when it is over.
    fn missed_by_far(&self, now: f64) -> Option<f64> {
        let (n, refused, delivered) = self.fresh;
        let elapsed = now - self.last_decrease;
        (n >= MIN_ATTEMPTS && 2 * refused >= n && delivered > 0 && elapsed >= 2.0 * BUCKET)
            .then(|| f64::from(delivered) / elapsed)
    }

    /// Drop to `factor` × the measured rate and recover on the cubic through `aim` × it.
    fn decrease(&mut self, now: f64, factor: f64, aim: f64) {
        let base = match self.delivered_rate(now) {
            Some(r) if r > 0.0 => r,
            _ => self.rate,
        };
        self.decrease_from(now, base, factor, aim);
    }

    fn decrease_from(&mut self, now: f64, base: f64, factor: f64, aim: f64) {
        let base = base.min(self.rate);
        let k = ((1.0 - factor / aim) / Self::CUBIC_C).cbrt();
        self.rate = self.clamp(base * factor);
        self.phase = Phase::Recover { since: now, last_max: base * aim, k };
        self.last_decrease = now;
        self.last_update = now;
        self.attempts_since_decrease = 0;
        self.fresh = (0, 0, 0);
        self.pending_throttle = false;
        self.window = Window::open(now);
    }
}

#[cfg(test)]
mod tests;
