//! The outage pause: when the webhook stops answering as a whole, hold the pool and probe.
//!
//! Without it a dead receiver costs every event its full retry budget — 16 events took 150 s and
//! ended in exit 1, and 3,000 would have taken hours — and a six-second hiccup marks events failed
//! that a minute later would have gone through. With it (docs/GUIDE.md, "Retries and outages"):
//!
//! * **Entering.** Every attempt finished for at least [`QUIET`] failed the way outages fail
//!   (refused or reset connections, timeouts, 502/503/504; see [`Signal::is_outage_failure`]),
//!   at least [`MIN_FAILURES`] of them (or [`MANY_FAILURES`] however quickly), with no answer of any
//!   other kind in between. A 429, a 404 or a 500 is an answer: someone is there.
//! * **While it lasts.** Events stop spending retries ([`OutageDetector::spends_retry`]). One
//!   probe at a time goes out, at intervals growing from `--retry-initial` to `--retry-max`.
//! * **Leaving.** Any answer that is not an outage failure — normally the probe's — ends it, and
//!   delivery resumes at full speed.
//! * **Giving up.** After `--give-up-after` of unbroken outage failures the run stops (exit 4) with
//!   the last failure as the cause. `None` never gives up.
//!
//! Like the rate controller this is pure: time is a [`Duration`] since a fixed origin, supplied by
//! the caller, which also does the waiting. It applies with a fixed `--rate` as well as `auto`.

use std::time::Duration;

use super::Signal;

/// How long nothing but outage failures must come back before the pool holds.
pub const QUIET: Duration = Duration::from_secs(2);
/// Fewest outage failures in a row before the pool holds (one refused connection is not an outage).
pub const MIN_FAILURES: u32 = 3;
/// So many outage failures in a row are an outage without waiting out [`QUIET`]: at hundreds of
/// requests a second, two seconds of refused connections would be hundreds of wasted requests.
pub const MANY_FAILURES: u32 = 50;

/// How an [`OutageDetector`] probes and when it gives up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutageSettings {
    /// First interval between probes (`--retry-initial`).
    pub probe_initial: Duration,
    /// Longest interval between probes (`--retry-max`).
    pub probe_max: Duration,
    /// `--give-up-after`; `None` (`0`) never gives up.
    pub give_up_after: Option<Duration>,
}

/// Where the webhook stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageState {
    /// Answering (or not failing long enough to call it an outage).
    Up,
    /// Unreachable since `since`; `cause` is the latest failure.
    Outage { since: Duration, cause: Signal },
    /// Unreachable for `--give-up-after`: stop the run (exit 4).
    GaveUp { since: Duration, cause: Signal },
}

/// What the pool may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permit {
    /// Send as usual.
    Send,
    /// Send exactly one request now, as the probe; report its result with `probe = true`.
    Probe,
    /// Hold until then (`None`: until the probe in flight comes back).
    Wait { until: Option<Duration> },
    /// Stop the run.
    GiveUp,
}

/// The outage state machine. Feed it every finished attempt; ask it before every send.
#[derive(Debug, Clone)]
pub struct OutageDetector {
    settings: OutageSettings,
    state: OutageState,
    /// Outage failures since the last answer, and when the first of them came back.
    streak: u32,
    down_since: Duration,
    interval: Duration,
    next_probe: Duration,
    probe_in_flight: bool,
}

impl OutageDetector {
    pub fn new(settings: OutageSettings) -> OutageDetector {
        OutageDetector {
            settings,
            state: OutageState::Up,
            streak: 0,
            down_since: Duration::ZERO,
            interval: settings.probe_initial,
            next_probe: Duration::ZERO,
            probe_in_flight: false,
        }
    }

    pub fn state(&self) -> OutageState {
        self.state
    }

    /// Whether the pool is held (an outage, or given up).
    pub fn is_out(&self) -> bool {
        self.state != OutageState::Up
    }

    /// Whether outage failures are coming back (a streak, or an outage): successes then matter.
    pub fn is_failing(&self) -> bool {
        self.streak > 0 || self.is_out()
    }

    /// Whether `outcome`, just recorded, costs its event one of its retries. Outage failures do not
    /// once the failures look like an outage (a streak of [`MIN_FAILURES`]), or during one: an
    /// event must not fail because the whole receiver is down.
    pub fn spends_retry(&self, outcome: Signal) -> bool {
        !(outcome.is_outage_failure() && (self.is_out() || self.streak >= MIN_FAILURES))
    }

    /// One attempt finished at `now`; `probe` if it was the one [`Permit::Probe`] allowed.
    pub fn record(&mut self, now: Duration, outcome: Signal, probe: bool) -> OutageState {
        if probe {
            self.probe_in_flight = false;
        }
        if let OutageState::GaveUp { .. } = self.state {
            return self.state;
        }
        if !outcome.is_outage_failure() {
            self.streak = 0;
            self.state = OutageState::Up;
            self.interval = self.settings.probe_initial;
            return self.state;
        }
        if self.streak == 0 {
            self.down_since = now;
        }
        self.streak = self.streak.saturating_add(1);
        match self.state {
            OutageState::Up => {
                let quiet = now.saturating_sub(self.down_since) >= QUIET;
                if self.streak >= MANY_FAILURES || (self.streak >= MIN_FAILURES && quiet) {
                    self.state = OutageState::Outage { since: self.down_since, cause: outcome };
                    self.interval = self.settings.probe_initial;
                    self.next_probe = now.saturating_add(self.interval);
                }
            }
            OutageState::Outage { since, .. } => {
                self.state = OutageState::Outage { since, cause: outcome };
                if probe {
                    self.interval =
                        self.interval.saturating_mul(2).min(self.settings.probe_max.max(self.settings.probe_initial));
                    self.next_probe = now.saturating_add(self.interval);
                }
            }
            OutageState::GaveUp { .. } => {}
        }
        self.check_give_up(now);
        self.state
    }

    /// May the pool send at `now`? A [`Permit::Probe`] answer claims the one probe slot.
    pub fn permit(&mut self, now: Duration) -> Permit {
        self.check_give_up(now);
        match self.state {
            OutageState::Up => Permit::Send,
            OutageState::GaveUp { .. } => Permit::GiveUp,
            OutageState::Outage { .. } if self.probe_in_flight => Permit::Wait { until: None },
            OutageState::Outage { .. } if now >= self.next_probe => {
                self.probe_in_flight = true;
                Permit::Probe
            }
            // Wake up to give up on time, not at the next probe after the limit.
            OutageState::Outage { since, .. } => {
                let give_up = self.settings.give_up_after.map_or(self.next_probe, |limit| since.saturating_add(limit));
                Permit::Wait { until: Some(self.next_probe.min(give_up)) }
            }
        }
    }

    fn check_give_up(&mut self, now: Duration) {
        if let (OutageState::Outage { since, cause }, Some(limit)) = (self.state, self.settings.give_up_after)
            && now.saturating_sub(since) >= limit
        {
            self.state = OutageState::GaveUp { since, cause };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn detector(give_up_after: Option<Duration>) -> OutageDetector {
        OutageDetector::new(OutageSettings { probe_initial: secs(0.5), probe_max: secs(4.0), give_up_after })
    }

    #[test]
    fn failures_become_an_outage_only_after_a_quiet_spell() {
        let mut d = detector(None);
        for i in 0..20 {
            d.record(secs(f64::from(i) * 0.05), Signal::Connection, false);
        }
        assert_eq!(d.state(), OutageState::Up, "one second of failures is not yet an outage");
        assert!(!d.spends_retry(Signal::Connection), "but retries already stop being spent");
        assert!(d.spends_retry(Signal::TooManyRequests { retry_after: None }));
        d.record(secs(2.5), Signal::Timeout, false);
        assert_eq!(d.state(), OutageState::Outage { since: secs(0.0), cause: Signal::Timeout });
        // An answer of any other kind, even a 429, ends it.
        d.record(secs(2.6), Signal::TooManyRequests { retry_after: None }, false);
        assert_eq!(d.state(), OutageState::Up);
        assert!(d.spends_retry(Signal::Connection));
    }

    #[test]
    fn one_probe_at_a_time_at_growing_intervals_until_one_succeeds() {
        let mut d = detector(None);
        for i in 0..=20 {
            d.record(secs(f64::from(i) * 0.1), Signal::Connection, false);
        }
        assert!(d.is_out());
        assert_eq!(d.permit(secs(2.1)), Permit::Wait { until: Some(secs(2.5)) });
        let mut probes = Vec::new();
        let mut now = secs(2.1);
        while now < secs(30.0) {
            match d.permit(now) {
                Permit::Probe => {
                    probes.push(now);
                    assert_eq!(d.permit(now), Permit::Wait { until: None }, "only one probe at a time");
                    now += secs(0.01);
                    d.record(now, Signal::Unavailable { status: 503, retry_after: None }, true);
                }
                Permit::Wait { until: Some(t) } => now = t,
                other => panic!("{other:?}"),
            }
        }
        let gaps: Vec<f64> = probes.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()).collect();
        assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
        assert!(gaps.iter().all(|g| *g <= 4.02) && gaps.last().is_some_and(|g| *g > 3.9), "{gaps:?}");
        assert_eq!(d.permit(now), Permit::Probe);
        d.record(now + secs(0.01), Signal::Delivered, true);
        assert_eq!(d.permit(now + secs(0.01)), Permit::Send);
    }

    #[test]
    fn gives_up_after_the_limit_and_zero_never_does() {
        for (limit, gives_up) in [(Some(secs(10.0)), true), (None, false)] {
            let mut d = detector(limit);
            let mut now = secs(0.0);
            let mut last = Permit::Send;
            while now < secs(60.0) && last != Permit::GiveUp {
                last = d.permit(now);
                match last {
                    Permit::Send | Permit::Probe => {
                        d.record(now, Signal::Connection, last == Permit::Probe);
                        now += secs(0.1);
                    }
                    Permit::Wait { until } => now = until.unwrap_or(now + secs(0.1)),
                    Permit::GiveUp => {}
                }
            }
            assert_eq!(last == Permit::GiveUp, gives_up);
            if gives_up {
                assert!(now >= secs(10.0) && now < secs(11.0), "{now:?}");
                assert_eq!(d.state(), OutageState::GaveUp { since: secs(0.0), cause: Signal::Connection });
            }
        }
    }
}
