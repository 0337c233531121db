//! What the receiver was measured to accept: successes per second over the time the pool was not
//! held, from a history of successes in buckets of a tenth of a second.

use super::{Controller, MIN_ATTEMPTS, Phase};

/// How far back the success history reaches, seconds: a window plus the longest hold.
const HISTORY: f64 = 64.0;
/// Granularity of the success history, seconds.
pub(super) const BUCKET: f64 = 0.1;

impl Controller {
    pub(super) fn add_success(&mut self, now: f64) {
        let bucket = (now / BUCKET).floor() as i64;
        match self.successes.back_mut() {
            Some((b, n)) if *b == bucket => *n = n.saturating_add(1),
            _ => self.successes.push_back((bucket, 1)),
        }
        let keep = ((self.window_len() + HISTORY) / BUCKET).ceil() as i64;
        while self.successes.front().is_some_and(|(b, _)| *b < bucket - keep) {
            self.successes.pop_front();
        }
    }

    /// Successes per second over the last window of time the pool was not held (a hold says
    /// nothing about capacity, so the window reaches back past it). In slow start the window is
    /// shorter — a quarter of a second, or ten attempts' time — because the rate doubles that often
    /// and a whole second would average over rates long left behind.
    pub(super) fn delivered_rate(&self, now: f64) -> Option<f64> {
        let len = match self.phase {
            Phase::SlowStart => self.close_after().max(f64::from(MIN_ATTEMPTS) / self.rate).min(self.window_len()),
            Phase::Recover { .. } => self.window_len(),
        };
        let from = now - len - (len - self.active(now - len, now));
        // From the start of the bucket it falls in, so the count and the time cover the same span.
        let first = (from.max(self.first_sent?) / BUCKET).floor() as i64;
        let active = self.active(first as f64 * BUCKET, now);
        if active < 2.0 * BUCKET {
            return None;
        }
        let count: u32 = self.successes.iter().filter(|(b, _)| *b >= first).map(|(_, n)| n).sum();
        Some(f64::from(count) / active)
    }

    /// Seconds in `[from, to]` the pool was not held.
    pub(super) fn active(&self, from: f64, to: f64) -> f64 {
        let held = self.hold.map_or(0.0, |(a, b)| (b.min(to) - a.max(from)).max(0.0));
        (to - from - held).max(0.0)
    }
}
