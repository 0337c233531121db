//! Quotas per window: when a receiver's door is shut until its window ends, the pool is held
//! instead of sending what will be refused, and the rate is capped at what the quota delivers.

use super::{BUCKET, CUBIC_K, Controller, MIN_WINDOW, Phase};

/// Refusals in a row, with no success between, that say a quota is used up.
pub(super) const SHUT_DOOR: u32 = 10;
/// How far above a quota's rate (what it delivered per second, holds included) the rate may be
/// when its window is used up; see [`Controller::shut_door`].
const QUOTA_HEADROOM: f64 = 2.0;

impl Controller {
    pub(super) fn hold_for(&mut self, now: f64, secs: f64) {
        let until = now + secs;
        self.hold = match self.hold {
            Some((from, old)) if old >= now => Some((from, old.max(until))),
            _ => Some((now, until)),
        };
    }

    /// Successes per second over the history kept (about a minute), holds included.
    pub(super) fn quota_rate(&self, now: f64) -> Option<f64> {
        let first = self.successes.front()?.0;
        let from = (first as f64 * BUCKET).max(self.first_sent?);
        let span = now - from;
        let count: u32 = self.successes.iter().map(|(_, n)| n).sum();
        (span >= MIN_WINDOW).then(|| f64::from(count) / span)
    }

    /// A quota's window is used up (the pool is held until it ends). Twice what was delivered
    /// per second over the last cycle, holds included, spends the next window's quota in half of
    /// it at most: all of it even when the hold ends late (a `Retry-After` in whole seconds ends it
    /// up to a second after the window), without winding the rate up window after window to a
    /// burst of every worker at once. From there the cubic starts on its plateau.
    pub(super) fn shut_door(&mut self, now: f64) {
        let from = self.last_shut.or(self.first_sent).unwrap_or(0.0);
        self.last_shut = Some(now);
        // Windows close rarely once each share is spent early: the level is measured here.
        if let Some(q) = self.quota_rate(now) {
            self.settled = Some(q);
        }
        let first = (from / BUCKET).floor() as i64;
        let span = now - first as f64 * BUCKET;
        if span < MIN_WINDOW {
            return;
        }
        let count: u32 = self.successes.iter().filter(|(b, _)| *b >= first).map(|(_, n)| n).sum();
        let ceiling = self.clamp(QUOTA_HEADROOM * f64::from(count) / span);
        if self.rate > ceiling {
            self.rate = ceiling;
            self.phase = Phase::Recover { since: now - CUBIC_K, last_max: ceiling, k: CUBIC_K };
            self.last_update = now;
        }
    }
}
