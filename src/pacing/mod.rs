//! Receiver-aware pacing: the adaptive rate of `--rate auto` and the outage pause.
//!
//! Both parts are pure state machines. They are fed *(time, outcome, latency)* for every finished
//! attempt and answer with a rate, a hold or a probe schedule; they read no clock, open no socket
//! and never sleep. The wiring (workers, the [`crate::pacing::gate`] gate) owns time and does the waiting.
//! That keeps every decision reproducible: the simulation tests in `sim.rs` drive them in virtual
//! time against modelled receivers, tens of thousands of attempts in milliseconds.
//!
//! * [`controller`]: finds the receiver's capacity (rate-based, CUBIC recovery, at most one
//!   decrease per measurement window); the design and its reasoning are in `docs/pacing.md`.
//! * [`outage`]: notices that the webhook stopped answering as a whole, stops events from spending
//!   their retries, sends one probe at a time, and says when to give up (exit 4).
//! * [`pacer`]: both at run time — the clock, the waiting, and the [`crate::pacing::gate::Gate`] they steer.
//!
//! [`Outcome`] is the one vocabulary both share: what an attempt's result means for pacing.
//!
//! # How the pipeline uses them (through [`Pacer`])
//! * Before an attempt: [`OutageDetector::permit`] (send, be the one probe, wait, or give up with
//!   exit 4), then the rate gate.
//! * After it: [`Outcome::from_attempt`], then [`Controller::record`] (with `--rate auto`) and
//!   [`OutageDetector::record`]; [`OutageDetector::spends_retry`] says whether the event's retry
//!   counter moves. A new rate from `record` rebuilds the gate's limiter (at most ten times a
//!   second); [`Controller::hold_until`] becomes a pool-wide pause. An event's own `Retry-After`
//!   still holds that event back in every mode.
//! * At the end: [`Controller::settled`] is the summary's `rate.final_per_sec` and what the
//!   ledger remembers for the target.

pub mod gate;

pub mod controller;
pub mod outage;
pub mod pacer;
#[cfg(test)]
mod sim;
pub mod status;

pub use controller::{Controller, ControllerSettings};
pub use outage::{OutageDetector, OutageSettings, OutageState, Permit};
pub use pacer::{Mode, Pacer, Turn};
pub use status::PaceStatus;

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use crate::deliver::retry::{AttemptResult, TransportError, parse_retry_after};
use crate::pacing::gate::Rate;

/// A `--rate` value: a fixed rate, or `auto` (the controller finds it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateSetting {
    Fixed(Rate),
    Auto,
}

impl FromStr for RateSetting {
    type Err = String;

    fn from_str(s: &str) -> Result<RateSetting, String> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(RateSetting::Auto);
        }
        s.parse().map(RateSetting::Fixed).map_err(|e| format!("{e}; or auto to find the receiver's capacity"))
    }
}

/// What one finished attempt says about the receiver's capacity and health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx.
    Delivered,
    /// An answer that says nothing about capacity (another 4xx, a 500, an unreadable response):
    /// the receiver is alive and not asking us to slow down.
    Other,
    /// 429, with its `Retry-After` (already capped) if it sent one.
    TooManyRequests { retry_after: Option<Duration> },
    /// 502, 503 or 504 (503 may carry a `Retry-After`).
    Unavailable { status: u16, retry_after: Option<Duration> },
    /// The attempt ran over `--timeout` (or the receiver answered 408).
    Timeout,
    /// Refused or reset connection: nothing answered.
    Connection,
}

impl Outcome {
    /// Reads an attempt's result; `Retry-After` is capped at `cap` (`--retry-max`), as for retries.
    pub fn from_attempt(result: AttemptResult<'_>, now: SystemTime, cap: Duration) -> Outcome {
        let after = |value: Option<&str>| value.and_then(|v| parse_retry_after(v, now)).map(|d| d.min(cap));
        match result {
            AttemptResult::Status { code: 200..=299, .. } => Outcome::Delivered,
            AttemptResult::Status { code: 429, retry_after } => {
                Outcome::TooManyRequests { retry_after: after(retry_after) }
            }
            AttemptResult::Status { code: 503, retry_after } => {
                Outcome::Unavailable { status: 503, retry_after: after(retry_after) }
            }
            AttemptResult::Status { code: status @ (502 | 504), .. } => {
                Outcome::Unavailable { status, retry_after: None }
            }
            AttemptResult::Status { code: 408, .. } | AttemptResult::Transport(TransportError::Timeout) => {
                Outcome::Timeout
            }
            AttemptResult::Transport(TransportError::Connection) => Outcome::Connection,
            AttemptResult::Status { .. } | AttemptResult::Transport(TransportError::Other) => Outcome::Other,
        }
    }

    /// The receiver asked us (in words or by struggling) to send less.
    pub fn is_throttle(self) -> bool {
        !matches!(self, Outcome::Delivered | Outcome::Other)
    }

    /// The kind of failure an outage is made of: nobody there, or a gateway saying so. A 429 is not
    /// one — a receiver that counts our requests is very much alive.
    pub fn is_outage_failure(self) -> bool {
        matches!(self, Outcome::Unavailable { .. } | Outcome::Timeout | Outcome::Connection)
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            Outcome::TooManyRequests { retry_after } | Outcome::Unavailable { retry_after, .. } => retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_settings_parse_auto_and_every_fixed_form() {
        assert_eq!("auto".parse(), Ok(RateSetting::Auto));
        assert_eq!(" Auto ".parse(), Ok(RateSetting::Auto));
        assert_eq!("3000/m".parse(), Ok(RateSetting::Fixed(Rate::per_second(50.0))));
        assert_eq!("0".parse(), Ok(RateSetting::Fixed(Rate::UNLIMITED)));
        let err = "fast".parse::<RateSetting>().unwrap_err();
        assert!(err.contains("`fast`") && err.contains("3000/m") && err.contains("auto"), "{err}");
    }

    #[test]
    fn attempt_results_map_to_outcomes() {
        let now = SystemTime::UNIX_EPOCH;
        let cap = Duration::from_secs(30);
        let status = |code, retry_after| AttemptResult::Status { code, retry_after };
        let cases = [
            (status(200, None), Outcome::Delivered),
            (status(204, Some("5")), Outcome::Delivered),
            (status(429, Some("2")), Outcome::TooManyRequests { retry_after: Some(Duration::from_secs(2)) }),
            (status(429, Some("3600")), Outcome::TooManyRequests { retry_after: Some(cap) }),
            (status(503, Some("1")), Outcome::Unavailable { status: 503, retry_after: Some(Duration::from_secs(1)) }),
            (status(502, Some("1")), Outcome::Unavailable { status: 502, retry_after: None }),
            (status(504, None), Outcome::Unavailable { status: 504, retry_after: None }),
            (status(408, None), Outcome::Timeout),
            (status(500, None), Outcome::Other),
            (status(404, None), Outcome::Other),
            (AttemptResult::Transport(TransportError::Timeout), Outcome::Timeout),
            (AttemptResult::Transport(TransportError::Connection), Outcome::Connection),
            (AttemptResult::Transport(TransportError::Other), Outcome::Other),
        ];
        for (result, want) in cases {
            assert_eq!(Outcome::from_attempt(result, now, cap), want, "{result:?}");
        }
        assert!(!Outcome::TooManyRequests { retry_after: None }.is_outage_failure());
        assert!(Outcome::TooManyRequests { retry_after: None }.is_throttle());
        assert!(Outcome::Connection.is_outage_failure() && Outcome::Connection.is_throttle());
        assert!(!Outcome::Other.is_throttle() && !Outcome::Delivered.is_outage_failure());
    }
}
