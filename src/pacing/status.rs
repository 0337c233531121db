//! What pacing shows while a run goes: the current rate and why the pool is held. Atomics the
//! [`super::Pacer`] writes when something changes and the progress bar reads ten times a second
//! (its words are [`crate::output::progress::line`]'s).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::RateMode;

/// What pacing shows on the bar (see the module docs).
#[derive(Debug, Default)]
pub struct PaceStatus {
    /// Requests per second × 1000; 0 is unlimited.
    rate_milli: AtomicU64,
    /// What sets the rate (changed only when a run starts).
    mode: Mutex<RateMode>,
    /// Unix milliseconds until a pool-wide pause (`Retry-After`) ends; 0 for none.
    paused_until_ms: AtomicU64,
    /// Unix milliseconds since the webhook has been unreachable; 0 while it answers.
    outage_since_ms: AtomicU64,
}

fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl PaceStatus {
    /// The current rate (`None`: unlimited), and the mode that sets it.
    pub fn set_rate(&self, per_sec: Option<f64>, mode: RateMode) {
        let milli = per_sec.filter(|r| r.is_finite() && *r > 0.0).map_or(0, |r| ((r * 1000.0).round() as u64).max(1));
        self.rate_milli.store(milli, Relaxed);
        if let Ok(mut m) = self.mode.lock()
            && *m != mode
        {
            *m = mode;
        }
    }

    /// Requests per second now; `None` is unlimited.
    pub fn rate(&self) -> Option<f64> {
        let milli = self.rate_milli.load(Relaxed);
        (milli > 0).then(|| milli as f64 / 1000.0)
    }

    /// The mode that sets the rate.
    pub fn mode(&self) -> RateMode {
        self.mode.lock().map_or_else(|poisoned| *poisoned.into_inner(), |m| *m)
    }

    /// The pool is held for `d` from now (pauses only extend).
    pub fn pause_for(&self, d: Duration) {
        self.paused_until_ms.fetch_max(unix_ms().saturating_add(millis(d)), Relaxed);
    }

    /// How much longer the pool is held, if it is.
    pub fn paused_for(&self) -> Option<Duration> {
        let left = self.paused_until_ms.load(Relaxed).saturating_sub(unix_ms());
        (left > 0).then(|| Duration::from_millis(left))
    }

    /// The webhook has been unreachable for `for_` already (`None`: it answers again).
    pub fn outage(&self, for_: Option<Duration>) {
        let since = for_.map_or(0, |d| unix_ms().saturating_sub(millis(d)).max(1));
        self.outage_since_ms.store(since, Relaxed);
    }

    /// For how long the webhook has been unreachable, if it is.
    pub fn outage_for(&self) -> Option<Duration> {
        let since = self.outage_since_ms.load(Relaxed);
        (since > 0).then(|| Duration::from_millis(unix_ms().saturating_sub(since)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacing::gate::Rate;

    #[test]
    fn the_bar_reads_the_rate_and_why_the_pool_is_held() {
        let s = PaceStatus::default();
        s.set_rate(Some(20.0), RateMode::Fixed(Rate::per_second(20.0)));
        assert_eq!((s.rate(), s.mode()), (Some(20.0), RateMode::Fixed(Rate::per_second(20.0))));
        s.set_rate(Some(187.4), RateMode::Auto);
        assert_eq!((s.rate(), s.mode()), (Some(187.4), RateMode::Auto));
        s.pause_for(Duration::from_secs(3));
        assert!(s.paused_for().is_some_and(|d| d > Duration::from_secs(2)));
        s.outage(Some(Duration::from_secs(12)));
        assert!(s.outage_for().is_some_and(|d| d >= Duration::from_secs(12)));
        s.outage(None);
        assert!(s.outage_for().is_none() && s.paused_for().is_some());
        s.set_rate(None, RateMode::Fixed(Rate::UNLIMITED));
        assert_eq!((s.rate(), s.mode()), (None, RateMode::Fixed(Rate::UNLIMITED)));
    }
}
