//! How fast requests may go: the `--rate` value and the gate every attempt passes through.
//!
//! The gate is one `governor` limiter shared by all workers, with two decisions written down here:
//!
//! * **Late wake-ups must not lose time.** Timers and the scheduler wake a waiter late (a fraction of
//!   a millisecond when idle, several when the machine is busy); with a burst of 1 a GCRA limiter
//!   restarts its schedule from the late moment, so at 5,000/s (0.2 ms apart) the achieved rate
//!   sags by more than half. The limiter therefore gets catch-up capacity — 5 ms worth of requests,
//!   at least one — that lets a late waiter get back onto the absolute schedule. It is the price in
//!   burstiness: no one-second window holds more than 0.5% (or one request) above `--rate`. After
//!   an idle spell (the start, a `Retry-After` pause) that capacity is taken out again, so the
//!   first burst is exactly `--burst`.
//! * **One waiter at a time.** Workers queue in FIFO order on an async mutex and only the head of
//!   the queue waits on the limiter: one wake-up per request instead of a thundering herd of
//!   `--concurrency` tasks racing for every permit.
//!
//! [`Quota`] is the other shape a rate comes in, `N/DURATION` per fixed window: the embedded
//! receiver's `--quota`.
//!
//! The gate also holds the pool-wide pause set by a `Retry-After`: the receiver asked everyone to
//! slow down, not just the one request that got the 429.

use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota as GovernorQuota, RateLimiter};
use tokio::time::Instant;

/// Requests per second; `None` is unlimited. It remembers how it was written (`50/h`), so
/// messages show it that way rather than as `0.013888888888888888/s`.
#[derive(Debug, Clone, Copy)]
pub struct Rate(Option<Written>);

/// A rate as the user wrote it: `n` per `unit`.
#[derive(Debug, Clone, Copy)]
struct Written {
    n: f64,
    unit: Unit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Second,
    Minute,
    Hour,
}

impl Unit {
    fn seconds(self) -> f64 {
        match self {
            Unit::Second => 1.0,
            Unit::Minute => 60.0,
            Unit::Hour => 3600.0,
        }
    }
}

impl Rate {
    pub const UNLIMITED: Rate = Rate(None);

    pub fn per_second(r: f64) -> Rate {
        if r > 0.0 { Rate(Some(Written { n: r, unit: Unit::Second })) } else { Rate(None) }
    }

    /// Requests per second, or `None` for unlimited.
    pub fn get(self) -> Option<f64> {
        self.0.map(|w| w.n / w.unit.seconds())
    }
}

/// Equal when they allow the same number of requests per second, however written.
impl PartialEq for Rate {
    fn eq(&self, other: &Rate) -> bool {
        self.get() == other.get()
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("unlimited"),
            Some(Written { n, unit: Unit::Second }) => write!(f, "{n}/s"),
            Some(Written { n, unit: Unit::Minute }) => write!(f, "{n}/m"),
            Some(Written { n, unit: Unit::Hour }) => write!(f, "{n}/h"),
        }
    }
}

impl FromStr for Rate {
    type Err = String;

    /// `50`, `50/s`, `3000/m`, `7200/h`, `0.5`, and `0` or `unlimited` for no limit.
    fn from_str(s: &str) -> Result<Rate, String> {
        let bad = || {
            format!(
                "`{s}` is not a rate; write requests per second like 50, 50/s, 3000/m or 0.5, or 0/unlimited for no limit"
            )
        };
        let t = s.trim().to_ascii_lowercase();
        if t == "unlimited" || t == "none" {
            return Ok(Rate::UNLIMITED);
        }
        let (num, unit) = match t.split_once('/') {
            None => (t.as_str(), Unit::Second),
            Some((n, unit)) => {
                let unit = match unit.trim() {
                    "s" | "sec" | "second" => Unit::Second,
                    "m" | "min" | "minute" => Unit::Minute,
                    "h" | "hour" => Unit::Hour,
                    _ => return Err(bad()),
                };
                (n, unit)
            }
        };
        let n: f64 = num.trim().parse().map_err(|_| bad())?;
        if n < 0.0 {
            return Err(format!(
                "`{s}`: a rate cannot be negative; give requests per second like 50, or 0 for no limit"
            ));
        }
        if !n.is_finite() {
            return Err(bad());
        }
        let per_sec = n / unit.seconds();
        if per_sec > 1_000_000.0 {
            return Err(format!("`{s}` is more than 1,000,000 requests/s; use 0 or unlimited for no limit"));
        }
        if n > 0.0 && per_sec < 1.0 / 86_400.0 {
            return Err(format!("`{s}` is less than one request a day; give a faster rate"));
        }
        Ok(if n > 0.0 { Rate(Some(Written { n, unit })) } else { Rate::UNLIMITED })
    }
}

/// `--quota N/DURATION`: at most `n` requests per fixed window of `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub n: u32,
    pub per: Duration,
}

impl FromStr for Quota {
    type Err = String;

    /// `600/1m`, `100/10s`, `50/s` (a bare unit means one of it).
    fn from_str(s: &str) -> Result<Quota, String> {
        let bad = || format!("`{s}` is not a quota; write requests per window like 600/1m or 100/10s");
        let (n, per) = s.trim().split_once('/').ok_or_else(bad)?;
        let n: u32 = n.trim().parse().map_err(|_| bad())?;
        let per = per.trim();
        let per = if per.starts_with(|c: char| c.is_ascii_digit()) { per.to_owned() } else { format!("1{per}") };
        let per = humantime::parse_duration(&per).map_err(|_| bad())?;
        if n == 0 || per.is_zero() {
            return Err(format!("`{s}` allows nothing; give at least one request per a non-zero window"));
        }
        Ok(Quota { n, per })
    }
}

/// Extra limiter capacity, in time, that absorbs late wake-ups (see the module docs).
const CATCH_UP: Duration = Duration::from_millis(5);

/// An adaptive gate rebuilds its limiter only for a change larger than this (a fraction of the
/// rate): the controller's cubic moves the rate a little every 100 ms, and each rebuild costs
/// the catch-up credit.
const REBUILD_ABOVE: f64 = 0.02;

/// The shared entrance every attempt passes: pool-wide pause, then the rate limit.
pub struct Gate {
    limiter: Option<Limiter>,
    origin: Instant,
    /// Nanoseconds after `origin` before which nobody may send (a `Retry-After`).
    paused_until: AtomicU64,
    /// With `--rate auto`: the rate the limiter should have (`f64` bits). `None` for a fixed rate,
    /// whose hot path then never looks at it.
    wanted: Option<AtomicU64>,
    /// Wakes the head of the queue when `wanted` changes, so a rise is not waited out at the old pace.
    changed: tokio::sync::Notify,
}

struct Limiter {
    burst: u32,
    /// The FIFO queue of waiters; its holder alone talks to the lane's `governor`.
    queue: tokio::sync::Mutex<Lane>,
}

/// The limiter proper, rebuilt (under the queue's lock) when an adaptive rate moves.
struct Lane {
    governor: DefaultDirectRateLimiter,
    per_sec: f64,
    period: Duration,
    /// Burst plus catch-up cells.
    capacity: u32,
    /// Catch-up cells on top of `--burst`.
    catch_up: u32,
    /// Idle this long and the bucket is full again: burst plus catch-up.
    refill: Duration,
    last_grant: Option<Instant>,
}

impl Lane {
    fn new(per_sec: f64, burst: u32, last_grant: Option<Instant>) -> Lane {
        let period = Duration::from_secs_f64(1.0 / per_sec).max(Duration::from_nanos(1));
        let catch_up = ((CATCH_UP.as_secs_f64() * per_sec).floor() as u32).max(1);
        let capacity = burst.max(1).saturating_add(catch_up);
        let quota = GovernorQuota::with_period(period)
            .unwrap_or_else(|| GovernorQuota::per_second(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(capacity).unwrap_or(NonZeroU32::MIN));
        Lane {
            governor: RateLimiter::direct(quota),
            per_sec,
            period,
            capacity,
            catch_up,
            refill: period.saturating_mul(capacity),
            last_grant,
        }
    }

    /// A new lane for `per_sec` that carries on the schedule instead of opening with a burst: its
    /// bucket is emptied but for one cell when a period has passed since the last grant.
    fn rebuilt(&self, per_sec: f64, burst: u32) -> Lane {
        let lane = Lane::new(per_sec, burst, self.last_grant);
        // Idle for a refill: the idle rule in `acquire` takes out the catch-up cells as usual.
        if lane.last_grant.is_some_and(|t| t.elapsed() < lane.refill) {
            let keep = u32::from(lane.last_grant.is_some_and(|t| t.elapsed() >= lane.period));
            for _ in keep..lane.capacity {
                let _ = lane.governor.check();
            }
        }
        lane
    }
}

impl Gate {
    /// A gate at the fixed `rate`.
    pub fn new(rate: Rate, burst: u32) -> Gate {
        let limiter = rate
            .get()
            .map(|per_sec| Limiter { burst, queue: tokio::sync::Mutex::new(Lane::new(per_sec, burst, None)) });
        Gate {
            limiter,
            origin: Instant::now(),
            paused_until: AtomicU64::new(0),
            wanted: None,
            changed: tokio::sync::Notify::new(),
        }
    }

    /// A gate whose rate moves ([`Gate::set_rate`]), starting at `per_sec`.
    pub fn adaptive(per_sec: f64, burst: u32) -> Gate {
        let per_sec = if per_sec.is_finite() && per_sec > 0.0 { per_sec } else { 1.0 };
        Gate { wanted: Some(AtomicU64::new(per_sec.to_bits())), ..Gate::new(Rate::per_second(per_sec), burst) }
    }

    /// The adaptive rate moved; the head of the queue rebuilds the limiter. No-op on a fixed gate.
    pub fn set_rate(&self, per_sec: f64) {
        if let Some(wanted) = &self.wanted
            && per_sec.is_finite()
            && per_sec > 0.0
        {
            wanted.store(per_sec.to_bits(), Ordering::Release);
            self.changed.notify_waiters();
        }
    }

    /// Wait for the right to send one request.
    pub async fn acquire(&self) {
        let Some(limiter) = &self.limiter else {
            self.wait_out_pause().await;
            return;
        };
        let mut lane = limiter.queue.lock().await;
        let mut drained = false;
        loop {
            self.wait_out_pause().await;
            if let Some(wanted) = &self.wanted {
                let per_sec = f64::from_bits(wanted.load(Ordering::Acquire));
                if (per_sec - lane.per_sec).abs() > REBUILD_ABOVE * lane.per_sec {
                    *lane = lane.rebuilt(per_sec, limiter.burst);
                }
            }
            // After an idle spell (the start, a Retry-After pause) the bucket is full: take the
            // catch-up cells out so exactly `--burst` requests go at once.
            if !drained && lane.last_grant.is_none_or(|t| t.elapsed() >= lane.refill) {
                drained = true;
                for _ in 0..lane.catch_up {
                    let _ = lane.governor.check();
                }
            }
            if self.wanted.is_some() {
                // Register before waiting, so a change made meanwhile is not missed.
                let changed = self.changed.notified();
                tokio::select! {
                    () = lane.governor.until_ready() => {}
                    // Nothing was granted: look at the new rate, then wait again.
                    () = changed => continue,
                }
            } else {
                lane.governor.until_ready().await;
            }
            lane.last_grant = Some(Instant::now());
            // A Retry-After may have arrived while we waited for the rate: honour it too.
            if self.pause_deadline().is_none() {
                return;
            }
        }
    }

    /// Nobody sends before `until`. Pauses only ever extend.
    pub fn pause_until(&self, until: Instant) {
        let nanos = until.saturating_duration_since(self.origin).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        self.paused_until.fetch_max(nanos, Ordering::AcqRel);
    }

    /// When the current pool-wide pause ends, if one is on.
    fn pause_deadline(&self) -> Option<Instant> {
        let nanos = self.paused_until.load(Ordering::Acquire);
        let until = self.origin + Duration::from_nanos(nanos);
        (until > Instant::now()).then_some(until)
    }

    async fn wait_out_pause(&self) {
        while let Some(until) = self.pause_deadline() {
            tokio::time::sleep_until(until).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        let cases = [
            ("50", Some(50.0)),
            ("50/s", Some(50.0)),
            ("3000/m", Some(50.0)),
            ("7200/h", Some(2.0)),
            ("0.5", Some(0.5)),
            (" 20 ", Some(20.0)),
            ("0", None),
            ("unlimited", None),
            ("Unlimited", None),
        ];
        for (input, want) in cases {
            assert_eq!(input.parse::<Rate>().unwrap().get(), want, "{input}");
        }
    }

    #[test]
    fn rejects_nonsense_with_a_hint() {
        for bad in ["fast", "-5", "5/d", "", "NaN", "inf", "1/x", "2000000"] {
            let err = bad.parse::<Rate>().unwrap_err();
            assert!(err.contains(bad.trim()), "{err}");
        }
        assert!("fast".parse::<Rate>().unwrap_err().contains("3000/m"));
        assert!("-3".parse::<Rate>().unwrap_err().contains("cannot be negative"));
        assert!("-50/h".parse::<Rate>().unwrap_err().contains("cannot be negative"));
    }

    #[test]
    fn a_rate_is_shown_as_written() {
        let shown = |s: &str| s.parse::<Rate>().unwrap().to_string();
        assert_eq!(shown("50/h"), "50/h");
        assert_eq!(shown("3000/m"), "3000/m");
        assert_eq!(shown("50"), "50/s");
        assert_eq!(shown("0.5/s"), "0.5/s");
        assert_eq!(shown("0"), "unlimited");
        // However written, the same rate is the same rate.
        assert_eq!("3000/m".parse::<Rate>().unwrap(), Rate::per_second(50.0));
        assert_eq!(Rate::per_second(20.0).to_string(), "20/s");
    }

    #[test]
    fn quotas_parse_and_reject_nonsense() {
        let q = |n, secs| Ok(Quota { n, per: Duration::from_secs(secs) });
        assert_eq!("600/1m".parse(), q(600, 60));
        assert_eq!(" 100 / 10s ".parse(), q(100, 10));
        assert_eq!("50/s".parse(), q(50, 1));
        assert_eq!("3000/h".parse(), q(3000, 3600));
        for bad in ["600", "x/1m", "600/soon", "0/1m", "5/0s", "-1/1m"] {
            let err = bad.parse::<Quota>().unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[tokio::test]
    async fn the_burst_after_an_idle_spell_is_exactly_the_configured_burst() {
        // governor keeps real time, so this test does too (~0.7 s). "At once" is judged without
        // a clock: a grant that needs no waiting is ready the first time it is polled (a zero
        // timeout polls once), however slow the machine; the 4th is not.
        async fn at_once(gate: &Gate) -> bool {
            tokio::time::timeout(Duration::ZERO, gate.acquire()).await.is_ok()
        }
        let gate = Gate::new(Rate::per_second(10.0), 3);
        // Idle since creation, at the start, and again after a spell longer than the refill.
        for idle in [Duration::from_millis(300), Duration::from_millis(450)] {
            tokio::time::sleep(idle).await;
            let start = std::time::Instant::now();
            for i in 0..3 {
                assert!(at_once(&gate).await, "burst grant {i} goes at once");
            }
            assert!(!at_once(&gate).await, "the 4th waits for the rate");
            gate.acquire().await;
            // A lower bound only: a slow machine can make it later, never earlier.
            assert!(start.elapsed() >= Duration::from_millis(90), "{:?}", start.elapsed());
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_everyone_back() {
        let gate = Gate::new(Rate::UNLIMITED, 1);
        let start = Instant::now();
        gate.pause_until(start + Duration::from_secs(2));
        gate.pause_until(start + Duration::from_secs(1)); // never shortens
        gate.acquire().await;
        assert!(Instant::now() >= start + Duration::from_secs(2));
    }
}

#[cfg(test)]
mod properties;
