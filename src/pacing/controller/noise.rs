//! Telling a background of random errors from congestion: a receiver that fails a few percent of
//! requests whatever the rate must cost retries, never the rate.

use std::collections::VecDeque;

use crate::pacing::Signal;

/// The last attempts over which the share of soft failures is taken.
const NOISE_WINDOW: usize = 200;
/// Soft failures (see [`Noise`]) count as congestion past this share of the last attempts.
const NOISE_SHARE: f64 = 0.1;

/// Soft failures among the last attempts: a 502, 503 or 504 without `Retry-After`, a reset
/// connection, a timeout. Unlike a 429 they do not say "too fast" by name, and many receivers
/// answer a few percent of requests that way whatever the rate (a flaky gateway, a pod being
/// replaced). Taking each as a throttle held such a receiver to a small fraction of what it took
/// unpaced, since every window had one. They count only while they are more than a background:
/// one in ten of the last attempts, which a receiver that really is overloaded reaches within a
/// window of its overshoot, and a background of a few percent does not reach by chance.
#[derive(Debug, Clone, Default)]
pub(super) struct Noise {
    last: VecDeque<bool>,
    soft: u32,
}

impl Noise {
    pub(super) fn record(&mut self, soft: bool) {
        if self.last.len() == NOISE_WINDOW && self.last.pop_front() == Some(true) {
            self.soft -= 1;
        }
        self.last.push_back(soft);
        self.soft += u32::from(soft);
    }

    /// Whether the soft failures are more than a background. Over fewer than fifty attempts, as
    /// many as one in ten of fifty are needed: a few early ones are no pattern yet.
    pub(super) fn is_congestion(&self) -> bool {
        f64::from(self.soft) > NOISE_SHARE * self.last.len().max(50) as f64
    }
}

/// Whether `outcome` is a soft failure: one that says "too fast" only when there are many.
pub(super) fn is_soft(outcome: Signal) -> bool {
    matches!(outcome, Signal::Unavailable { retry_after: None, .. } | Signal::Connection | Signal::Timeout)
}
