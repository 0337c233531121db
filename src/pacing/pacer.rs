//! The pacing state machines at run time: the one object the workers ask before every attempt
//! and tell after it. It owns the clock the pure machines never read, the [`Gate`] they steer, and
//! the waiting.
//!
//! The hot path stays cheap when nothing is wrong: with a fixed `--rate` and a receiver that
//! answers, an attempt costs two atomic loads here and no lock. The rate controller (`--rate
//! auto` only) takes a short lock per attempt; the outage detector is locked only while outage
//! failures are coming back.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    Controller, ControllerSettings, OutageDetector, OutageSettings, OutageState, PaceStatus, Permit, RateMode, Signal,
};
use crate::pacing::gate::Gate;

/// What the pool may do before an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    Send,
    /// Send, as the one probe of an outage.
    Probe,
    /// Stop: the run was cancelled, or the webhook was unreachable for `--give-up-after`.
    Stop,
}

struct OutageInner {
    detector: OutageDetector,
    /// The latest outage failure, in words, for the summary's cause.
    cause: String,
}

/// Shared by all workers of a run.
pub struct Pacer {
    origin: Instant,
    gate: Gate,
    auto: Option<Mutex<Controller>>,
    outage: Mutex<OutageInner>,
    /// The detector is counting failures (or the webhook is out): successes must reach it too.
    failing: AtomicBool,
    /// The webhook is out: ask the detector before sending.
    out: AtomicBool,
    /// The outage changed (a probe came back, it ended, it gave up).
    changed: Notify,
    give_up_after: Option<Duration>,
    gave_up: Mutex<Option<String>>,
    stop: CancellationToken,
    /// The progress bar's view, kept up to date here.
    status: Arc<PaceStatus>,
    /// With `auto`: requests between [`Pacer::acquire`] and their answer, and the controller's cap
    /// on them (0: none); `slot_freed` wakes senders waiting for the cap.
    in_flight: AtomicU32,
    cap: AtomicU32,
    slot_freed: Notify,
}

/// One request on its way, from [`Pacer::acquire`] until dropped (after [`Pacer::record`]).
pub struct Sending<'a> {
    pacer: Option<&'a Pacer>,
    others: u32,
}

impl Sending<'_> {
    /// How many other requests were in flight when this one went (`auto` only; 0 otherwise).
    pub fn others(&self) -> u32 {
        self.others
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.pacer {
            p.in_flight.fetch_sub(1, Ordering::AcqRel);
            if p.cap.load(Ordering::Acquire) != 0 {
                p.slot_freed.notify_waiters();
            }
        }
    }
}

impl Pacer {
    /// `controller` is what `auto` starts from; `stop` is cancelled when the run gives up;
    /// `status` is what the progress bar shows.
    pub fn new(
        mode: RateMode,
        controller: ControllerSettings,
        burst: u32,
        outage: OutageSettings,
        stop: CancellationToken,
        status: Arc<PaceStatus>,
    ) -> Pacer {
        let (gate, auto) = match mode {
            RateMode::Fixed(rate) => {
                status.set_rate(rate.get(), mode);
                (Gate::new(rate, burst), None)
            }
            RateMode::Auto => {
                let controller = Controller::new(controller);
                status.set_rate(Some(controller.rate()), mode);
                (Gate::adaptive(controller.rate(), burst), Some(Mutex::new(controller)))
            }
        };
        Pacer {
            origin: Instant::now(),
            gate,
            auto,
            outage: Mutex::new(OutageInner { detector: OutageDetector::new(outage), cause: String::new() }),
            failing: AtomicBool::new(false),
            out: AtomicBool::new(false),
            changed: Notify::new(),
            give_up_after: outage.give_up_after,
            gave_up: Mutex::new(None),
            stop,
            status,
            in_flight: AtomicU32::new(0),
            cap: AtomicU32::new(0),
            slot_freed: Notify::new(),
        }
    }

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    /// Before an attempt (before connecting): send, be the probe, wait out an outage, or stop.
    pub async fn permit(&self) -> Turn {
        loop {
            if self.stop.is_cancelled() {
                return Turn::Stop;
            }
            if !self.out.load(Ordering::Acquire) {
                return Turn::Send;
            }
            // Registered before asking, so a probe's answer that comes back meanwhile wakes us.
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let permit = lock(&self.outage).detector.permit(self.now());
            let until = match permit {
                Permit::Send => return Turn::Send,
                Permit::Probe => return Turn::Probe,
                Permit::GiveUp => {
                    self.give_up();
                    return Turn::Stop;
                }
                Permit::Wait { until } => until,
            };
            // Without a time, wait for the probe; look again now and then all the same.
            let until = until.map_or(Instant::now() + Duration::from_secs(1), |t| self.origin + t);
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = &mut changed => {}
                () = self.stop.cancelled() => return Turn::Stop,
            }
        }
    }

    /// Wait for the rate gate (and any pool-wide pause), then, with `auto`, for a place under the
    /// controller's cap on requests in flight when it has learned one. Keep the result until the
    /// attempt's [`Pacer::record`].
    pub async fn acquire(&self) -> Sending<'_> {
        self.gate.acquire().await;
        if self.auto.is_none() {
            return Sending { pacer: None, others: 0 };
        }
        // No cap learned (the usual case): count the request without registering for `slot_freed`,
        // which takes the notifier's lock twice per request.
        if self.cap.load(Ordering::Acquire) == 0 {
            let n = self.in_flight.fetch_add(1, Ordering::AcqRel);
            return Sending { pacer: Some(self), others: n };
        }
        loop {
            // Registered before looking, so a place freed meanwhile is not missed.
            let freed = self.slot_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let n = self.in_flight.load(Ordering::Acquire);
            let cap = self.cap.load(Ordering::Acquire);
            if cap == 0 || n < cap {
                if self.in_flight.compare_exchange(n, n + 1, Ordering::AcqRel, Ordering::Acquire).is_ok() {
                    return Sending { pacer: Some(self), others: n };
                }
                continue;
            }
            freed.await;
        }
    }

    /// After an attempt: feed both machines. `error` is the attempt's failure in words. Returns
    /// whether the attempt spends one of its event's retries (outage failures do not).
    /// `sending` is what [`Pacer::acquire`] gave (`None` when the attempt failed to connect).
    pub fn record(
        &self,
        outcome: Signal,
        latency: Duration,
        probe: bool,
        error: Option<&str>,
        sending: Option<&Sending<'_>>,
    ) -> bool {
        let now = self.now();
        if let Some(auto) = &self.auto {
            let mut c = lock(auto);
            let others = sending.map_or_else(|| self.in_flight.load(Ordering::Acquire), Sending::others);
            if let Some(rate) = c.record(now, outcome, latency, others) {
                self.gate.set_rate(rate);
                self.status.set_rate(Some(rate), RateMode::Auto);
            }
            let cap = c.concurrency().unwrap_or(0);
            if self.cap.swap(cap, Ordering::AcqRel) != cap {
                self.slot_freed.notify_waiters();
            }
            if let Some(hold) = c.hold_until().filter(|h| *h > now) {
                let until = self.origin + hold;
                self.gate.pause_until(until);
                self.status.pause_for(until.saturating_duration_since(Instant::now()));
            }
        }
        if !probe && !outcome.is_outage_failure() && !self.failing.load(Ordering::Acquire) {
            return true;
        }
        let mut inner = lock(&self.outage);
        let before = inner.detector.state();
        if outcome.is_outage_failure() {
            inner.cause = cause(outcome, error);
        }
        let state = inner.detector.record(now, outcome, probe);
        let spends = inner.detector.spends_retry(outcome);
        self.failing.store(inner.detector.is_failing(), Ordering::Release);
        self.out.store(inner.detector.is_out(), Ordering::Release);
        match (before, state) {
            (OutageState::Up, OutageState::Outage { since, .. }) => {
                warn!("the webhook is unreachable ({}): holding the pool and sending one probe at a time", inner.cause);
                self.status.outage(Some(self.now().saturating_sub(since)));
            }
            (OutageState::Outage { since, .. }, OutageState::Up) => {
                warn!(
                    "the webhook answers again after {}: resuming",
                    humantime::format_duration(whole_seconds(now.saturating_sub(since)))
                );
                self.status.outage(None);
            }
            _ => {}
        }
        drop(inner);
        if probe || before != state {
            self.changed.notify_waiters();
        }
        spends
    }

    /// A `Retry-After` came back. With a fixed rate it pauses the whole pool; with
    /// `auto` the controller has already decided how the pool reacts. Either way the event itself
    /// waits it out (the caller does).
    pub fn retry_after(&self, after: Duration) {
        if self.auto.is_none() {
            self.gate.pause_until(Instant::now() + after);
            self.status.pause_for(after);
        }
    }

    /// Whether the pool is held for an outage (a failed attempt then waits for the probe, not
    /// for its backoff).
    pub fn is_out(&self) -> bool {
        self.out.load(Ordering::Acquire)
    }

    /// The outage lasted `--give-up-after`: say why, and stop the run.
    fn give_up(&self) {
        let cause = lock(&self.outage).cause.clone();
        let limit = self.give_up_after.unwrap_or_default();
        let message = format!("the webhook has been unreachable for {}: {cause}", humantime::format_duration(limit));
        let mut gave_up = lock(&self.gave_up);
        if gave_up.is_none() {
            warn!("{message}; stopping (the events not delivered stay pending for the next run)");
            *gave_up = Some(message);
        }
        drop(gave_up);
        self.stop.cancel();
        self.changed.notify_waiters();
    }

    /// Why the run stopped early, when it gave up on an unreachable webhook (exit status 4).
    pub fn gave_up(&self) -> Option<String> {
        lock(&self.gave_up).clone()
    }

    /// What the summary says about the rate: the mode, and requests per second (`None` is
    /// unlimited). An adaptive run reports where it settled.
    pub fn final_rate(&self) -> (RateMode, Option<f64>) {
        match &self.auto {
            Some(c) => (RateMode::Auto, Some(lock(c).settled())),
            None => (self.status.mode(), self.status.rate()),
        }
    }

    /// The settled rate to remember for the target, when the run measured one.
    pub fn to_remember(&self) -> Option<f64> {
        let c = lock(self.auto.as_ref()?);
        c.has_settled().then(|| c.settled()).filter(|r| r.is_finite() && *r > 0.0)
    }

    /// Log where an adaptive run starts.
    pub fn log_start(&self, remembered: bool) {
        if let Some(c) = &self.auto {
            let rate = lock(c).rate();
            if remembered {
                info!("--rate auto starts at {rate:.1}/s, where the last run for this target settled");
            } else {
                info!("--rate auto starts at {rate:.1}/s and speeds up while the receiver keeps up");
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// An outage failure in the summary's words: `connection refused`, `timeouts`, `answering 503`.
fn cause(outcome: Signal, error: Option<&str>) -> String {
    let error = error.unwrap_or_default();
    let lower = error.to_ascii_lowercase();
    match outcome {
        Signal::Connection if lower.contains("refused") => "connection refused".to_owned(),
        Signal::Connection if lower.contains("reset") => "connection reset".to_owned(),
        Signal::Connection if !error.is_empty() => error.to_owned(),
        Signal::Connection => "no connection".to_owned(),
        Signal::Timeout => "no answer within --timeout".to_owned(),
        Signal::Unavailable { status, .. } => format!("answering {status}"),
        _ => error.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacing::gate::Rate;

    #[test]
    fn causes_read_like_the_summary_says() {
        let refused = Some("connection failed: Connection refused (os error 111)");
        assert_eq!(cause(Signal::Connection, refused), "connection refused");
        assert_eq!(cause(Signal::Connection, Some("connection failed: Connection reset by peer")), "connection reset");
        assert_eq!(cause(Signal::Timeout, None), "no answer within --timeout");
        assert_eq!(
            cause(Signal::Unavailable { status: 503, retry_after: None }, Some("HTTP 503: busy")),
            "answering 503"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_holds_the_pool_lets_one_probe_out_and_gives_up() {
        let stop = CancellationToken::new();
        let settings = OutageSettings {
            probe_initial: Duration::from_millis(500),
            probe_max: Duration::from_secs(2),
            give_up_after: Some(Duration::from_secs(10)),
        };
        let status = Arc::new(PaceStatus::default());
        let p = Pacer::new(
            RateMode::Fixed(Rate::UNLIMITED),
            ControllerSettings::default(),
            1,
            settings,
            stop.clone(),
            status.clone(),
        );
        let refused = Some("Connection refused");
        assert_eq!(p.permit().await, Turn::Send);
        // Three refusals over more than two seconds are an outage; none after the second spends a retry.
        let mut spent = Vec::new();
        for _ in 0..3 {
            spent.push(p.record(Signal::Connection, Duration::ZERO, false, refused, None));
            tokio::time::advance(Duration::from_millis(1100)).await;
        }
        assert_eq!(spent, [true, true, false]);
        assert!(p.is_out() && status.outage_for().is_some());
        // One probe at a time.
        assert_eq!(p.permit().await, Turn::Probe);
        let waiting = tokio::time::timeout(Duration::from_millis(100), p.permit()).await;
        assert!(waiting.is_err(), "a second sender waits while the probe is out");
        assert!(!p.record(Signal::Connection, Duration::ZERO, true, refused, None));
        // Probes until the limit, then stop.
        let mut turns = 0;
        while p.permit().await == Turn::Probe {
            p.record(Signal::Connection, Duration::ZERO, true, refused, None);
            turns += 1;
        }
        assert!(turns >= 3, "{turns}");
        assert!(stop.is_cancelled());
        assert_eq!(p.gave_up().as_deref(), Some("the webhook has been unreachable for 10s: connection refused"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_gets_through_ends_the_outage() {
        let settings = OutageSettings {
            probe_initial: Duration::from_millis(500),
            probe_max: Duration::from_secs(2),
            give_up_after: None,
        };
        let status = Arc::new(PaceStatus::default());
        let p = Pacer::new(
            RateMode::Fixed(Rate::per_second(100.0)),
            ControllerSettings::default(),
            1,
            settings,
            CancellationToken::new(),
            status.clone(),
        );
        for _ in 0..60 {
            p.record(Signal::Unavailable { status: 503, retry_after: None }, Duration::ZERO, false, None, None);
        }
        assert!(p.is_out());
        assert_eq!(p.permit().await, Turn::Probe);
        assert!(p.record(Signal::Delivered, Duration::ZERO, true, None, None));
        assert!(!p.is_out() && status.outage_for().is_none());
        assert_eq!(p.permit().await, Turn::Send);
        assert_eq!(p.final_rate(), (RateMode::Fixed(Rate::per_second(100.0)), Some(100.0)));
    }
}
