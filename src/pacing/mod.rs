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
//! [`Signal`] is the one vocabulary both share: what an attempt's result means for pacing.
//!
//! # How the pipeline uses them (through [`Pacer`])
//! * Before an attempt: [`OutageDetector::permit`] (send, be the one probe, wait, or give up with
//!   exit 4), then the rate gate.
//! * After it: the attempt's [`Signal`] (from `deliver::retry::classify`), then
//!   [`Controller::record`] (with `--rate auto`) and [`OutageDetector::record`];
//!   [`OutageDetector::spends_retry`] says whether the event's retry counter moves. A new rate
//!   from `record` rebuilds the gate's limiter (at most ten times a second);
//!   [`Controller::hold_until`] becomes a pool-wide pause. An event's own `Retry-After` still
//!   holds that event back in every mode.
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
pub use pacer::{Pacer, Turn};
pub use status::PaceStatus;

use std::str::FromStr;
use std::time::Duration;

use crate::pacing::gate::Rate;

/// How a run paces, the one type for it from `--rate` to the summary's `rate.mode`: a fixed
/// rate, or `auto` (the controller finds it, from its `ControllerSettings`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateMode {
    Fixed(Rate),
    Auto,
}

impl RateMode {
    /// The mode's name in the summary's JSON (`rate.mode`).
    pub fn name(self) -> &'static str {
        match self {
            RateMode::Fixed(_) => "fixed",
            RateMode::Auto => "auto",
        }
    }

    /// The mode [`RateMode::name`] names, read back with the rate the summary reports (`None`:
    /// unlimited); `None` for a name no mode has.
    pub fn from_name(name: &str, per_sec: Option<f64>) -> Option<RateMode> {
        match name {
            "fixed" => Some(RateMode::Fixed(per_sec.map_or(Rate::UNLIMITED, Rate::per_second))),
            "auto" => Some(RateMode::Auto),
            _ => None,
        }
    }
}

/// Unlimited, as `--rate 0`.
impl Default for RateMode {
    fn default() -> RateMode {
        RateMode::Fixed(Rate::UNLIMITED)
    }
}

impl FromStr for RateMode {
    type Err = String;

    fn from_str(s: &str) -> Result<RateMode, String> {
        if s.trim().eq_ignore_ascii_case("auto") {
            return Ok(RateMode::Auto);
        }
        s.parse().map(RateMode::Fixed).map_err(|e| format!("{e}; or auto to find the receiver's capacity"))
    }
}

/// What one finished attempt says about the receiver's capacity and health: the half of
/// [`crate::deliver::retry::classify`]'s verdict that pacing reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
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

impl Signal {
    /// The receiver asked us (in words or by struggling) to send less.
    pub fn is_throttle(self) -> bool {
        !matches!(self, Signal::Delivered | Signal::Other)
    }

    /// The kind of failure an outage is made of: nobody there, or a gateway saying so. A 429 is not
    /// one — a receiver that counts our requests is very much alive.
    pub fn is_outage_failure(self) -> bool {
        matches!(self, Signal::Unavailable { .. } | Signal::Timeout | Signal::Connection)
    }

    /// The server's `Retry-After`, if it sent one.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            Signal::TooManyRequests { retry_after } | Signal::Unavailable { retry_after, .. } => retry_after,
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_settings_parse_auto_and_every_fixed_form() {
        assert_eq!("auto".parse(), Ok(RateMode::Auto));
        assert_eq!(" Auto ".parse(), Ok(RateMode::Auto));
        assert_eq!("3000/m".parse(), Ok(RateMode::Fixed(Rate::per_second(50.0))));
        assert_eq!("0".parse(), Ok(RateMode::Fixed(Rate::UNLIMITED)));
        for mode in [RateMode::Fixed(Rate::per_second(20.0)), RateMode::Fixed(Rate::UNLIMITED), RateMode::Auto] {
            let per_sec = match mode {
                RateMode::Fixed(rate) => rate.get(),
                RateMode::Auto => None,
            };
            assert_eq!(RateMode::from_name(mode.name(), per_sec), Some(mode));
        }
        let err = "fast".parse::<RateMode>().unwrap_err();
        assert!(err.contains("`fast`") && err.contains("3000/m") && err.contains("auto"), "{err}");
    }
}
