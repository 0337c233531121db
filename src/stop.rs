//! Stopping a run early for a reason that is not the webhook being down: something a rerun
//! cannot get past until the user changes the setup. The first worker to meet it records the
//! reason and stops the pool; in-flight outcomes are recorded, the rest stays pending, and the
//! run exits with the reason's status.
//!
//! Giving up on an unreachable webhook (exit 4) is the pacer's ([`crate::pacing::Pacer`]) and
//! Ctrl-C is the signal handler's; this is for everything else, one [`Stop`] variant per reason.

use std::sync::{Mutex, PoisonError};

use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::error::exit;

/// Why a run stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// The proxy in front of the webhook refused us (CONNECT answered 4xx, or a 407): the
    /// message names the proxy and its answer, never its credentials.
    ProxyRefused(String),
}

impl Stop {
    /// The exit status (SPEC §3): a proxy's refusal is configuration.
    pub fn exit_code(&self) -> u8 {
        match self {
            Stop::ProxyRefused(_) => exit::USAGE,
        }
    }

    /// Why, in a few words, for the summary's first line.
    pub fn headline(&self) -> &'static str {
        match self {
            Stop::ProxyRefused(_) => "the proxy refused",
        }
    }

    /// What to do so that a rerun continues.
    pub fn what_to_do(&self) -> &'static str {
        match self {
            Stop::ProxyRefused(_) => "run the same command again once the proxy lets the requests through",
        }
    }
}

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stop::ProxyRefused(message) => f.write_str(message),
        }
    }
}

/// The run's early stop: the first reason wins, and cancelling `token` stops the pool and the
/// producer.
pub struct Stopper {
    reason: Mutex<Option<Stop>>,
    token: CancellationToken,
}

impl Stopper {
    pub fn new(token: CancellationToken) -> Stopper {
        Stopper { reason: Mutex::new(None), token }
    }

    /// Stop the run for `reason` (a later reason does not replace the first).
    pub fn stop(&self, reason: Stop) {
        let mut held = self.reason.lock().unwrap_or_else(PoisonError::into_inner);
        if held.is_none() {
            warn!("{reason}; stopping (the events not delivered stay pending for the next run)");
            *held = Some(reason);
        }
        drop(held);
        self.token.cancel();
    }

    /// Why the run stopped, if it did.
    pub fn reason(&self) -> Option<Stop> {
        self.reason.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_wins_and_stops_the_pool() {
        let token = CancellationToken::new();
        let s = Stopper::new(token.clone());
        assert_eq!(s.reason(), None);
        s.stop(Stop::ProxyRefused("first".into()));
        s.stop(Stop::ProxyRefused("second".into()));
        assert!(token.is_cancelled());
        assert_eq!(s.reason(), Some(Stop::ProxyRefused("first".into())));
        assert_eq!(s.reason().map(|r| r.exit_code()), Some(exit::USAGE));
    }
}
