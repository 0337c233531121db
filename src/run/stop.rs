//! Stopping a run early for a reason that is not Ctrl-C: one place for the reasons, their exit
//! status and what they tell the user, and the token that stops the producer and the workers.
//!
//! A worker that finds a reason calls [`Stopper::stop`]; the first reason is kept, the run ends
//! like an interrupt (events in flight are left pending, so a rerun sends them), and the report
//! prints [`StopReason::message`], with the exit status [`crate::error::exit_code`] gives it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering::Relaxed};

use tokio_util::sync::CancellationToken;

use crate::error::StopReason;

/// The run's stop token and the first reason it was stopped for.
#[derive(Debug, Default)]
pub struct Stopper {
    token: CancellationToken,
    reason: Mutex<Option<StopReason>>,
}

impl Stopper {
    /// Stops with `token` (a child of the run's Ctrl-C token, so Ctrl-C stops it too).
    pub fn new(token: CancellationToken) -> Stopper {
        Stopper { token, reason: Mutex::new(None) }
    }

    /// Stop the run for `reason`, unless it is stopping for another already.
    pub fn stop(&self, reason: StopReason) {
        if let Ok(mut slot) = self.reason.lock()
            && slot.is_none()
        {
            *slot = Some(reason);
        }
        self.token.cancel();
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }
}

/// Watches the first answers of a run for a receiver that rejects them all (401/403). Until a
/// decision, a rejected event is retried rather than failed: one 401 does not yet say whether the
/// event or the credentials are at fault, and failing it would leave it out of the rerun.
#[derive(Debug)]
pub struct FirstAnswers {
    /// Rejections that decide: `min(concurrency, 10)`, and at least [`FirstAnswers::MIN`].
    need: u32,
    rejected: AtomicU32,
    state: AtomicU8,
}

/// What a worker does with an answer, per [`FirstAnswers::observe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Decided: the answer is handled as any other.
    Usual,
    /// Undecided: retry the event, without spending one of its retries.
    Hold,
    /// Every first answer was a rejection: stop the run.
    Stop { answers: u32 },
}

const UNDECIDED: u8 = 0;
const ACCEPTED: u8 = 1;
const REJECTED: u8 = 2;

impl FirstAnswers {
    /// A handful: fewer rejections do not stop a run.
    pub const MIN: u32 = 3;

    pub fn new(concurrency: usize) -> FirstAnswers {
        let need = u32::try_from(concurrency.min(10)).unwrap_or(10).max(Self::MIN);
        FirstAnswers { need, rejected: AtomicU32::new(0), state: AtomicU8::new(UNDECIDED) }
    }

    /// An HTTP answer with `status`.
    pub fn observe(&self, status: u16) -> Verdict {
        let rejection = matches!(status, 401 | 403);
        match self.state.load(Relaxed) {
            ACCEPTED => return Verdict::Usual,
            REJECTED if rejection => return Verdict::Stop { answers: self.rejected.load(Relaxed) },
            // The run is stopping; an answer that came anyway is what it is.
            REJECTED => return Verdict::Usual,
            _ => {}
        }
        if !rejection {
            // Anything else (a 2xx above all) says the credentials are not the problem.
            let _ = self.state.compare_exchange(UNDECIDED, ACCEPTED, Relaxed, Relaxed);
            return Verdict::Usual;
        }
        let n = self.rejected.fetch_add(1, Relaxed) + 1;
        if n < self.need {
            return Verdict::Hold;
        }
        match self.state.compare_exchange(UNDECIDED, REJECTED, Relaxed, Relaxed) {
            Ok(_) => Verdict::Stop { answers: n },
            Err(REJECTED) => Verdict::Stop { answers: n },
            Err(_) => Verdict::Usual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{AuthUsed, Ending, exit_code};

    #[test]
    fn rejections_stop_the_run_only_while_nothing_else_was_answered() {
        let f = FirstAnswers::new(4);
        assert_eq!(f.observe(401), Verdict::Hold);
        assert_eq!(f.observe(403), Verdict::Hold);
        assert_eq!(f.observe(401), Verdict::Hold);
        assert_eq!(f.observe(401), Verdict::Stop { answers: 4 });
        assert_eq!(f.observe(403), Verdict::Stop { answers: 4 });
        assert_eq!(f.observe(200), Verdict::Usual, "delivered is delivered, stopping or not");

        // A 401 after a success is an ordinary failure.
        let f = FirstAnswers::new(4);
        assert_eq!(f.observe(401), Verdict::Hold);
        assert_eq!(f.observe(204), Verdict::Usual);
        for _ in 0..20 {
            assert_eq!(f.observe(401), Verdict::Usual);
        }

        // At least a handful, at most ten.
        assert_eq!(FirstAnswers::new(1).need, FirstAnswers::MIN);
        assert_eq!(FirstAnswers::new(64).need, 10);
    }

    #[test]
    fn a_proxys_refusal_is_configuration_and_names_the_answer() {
        let r = StopReason::ProxyRefused("the proxy refused to open a tunnel: 403 Forbidden".into());
        assert_eq!(exit_code(Ending::Stopped(&r)), 2);
        assert!(r.message().starts_with("the proxy refused to open a tunnel: 403 Forbidden."), "{}", r.message());
    }

    #[test]
    fn the_first_reason_is_kept_and_the_message_names_the_flags() {
        let token = CancellationToken::new();
        let s = Stopper::new(token.clone());
        let auth = AuthUsed { signed: true, basic: true, headers: false };
        s.stop(StopReason::Rejected { status: 401, answers: 3, auth });
        s.stop(StopReason::Rejected { status: 403, answers: 9, auth });
        assert!(token.is_cancelled());
        let r = s.reason().unwrap();
        assert_eq!(exit_code(Ending::Stopped(&r)), 2);
        let m = r.message();
        assert!(m.contains("--signing-secret") && m.contains("SAVVYCAL_WEBHOOK_SECRET"), "{m}");
        assert!(m.contains("--webhook-url") && m.contains("3 answers"), "{m}");
    }
}
