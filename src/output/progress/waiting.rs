//! A spinner for the waits before the progress bar: the token check and the webhook lookup can
//! take a while when the API is slow or retried, and a terminal that shows nothing reads as a hang.
//!
//! It shares the progress bar's slot ([`super::active_bar`]), so messages printed meanwhile go
//! around it, and it gives way to the bar: once the bar has started, a spinner's updates are
//! dropped and its line is already cleared.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::active_bar;

/// Which spinner owns the slot; bumped whenever the slot changes hands.
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// A spinner on stderr saying what is being waited for; cleared when dropped. Nothing is drawn
/// when stderr is not a terminal, or while the progress bar is on screen.
pub struct Waiting {
    generation: Option<u64>,
}

impl Waiting {
    pub fn start(message: String) -> Waiting {
        let target = ProgressDrawTarget::stderr_with_hz(10);
        if target.is_hidden() {
            return Waiting { generation: None };
        }
        let Ok(mut slot) = active_bar().lock() else { return Waiting { generation: None } };
        if slot.is_some() {
            return Waiting { generation: None };
        }
        let bar = ProgressBar::with_draw_target(None, target);
        bar.set_style(
            ProgressStyle::with_template("{spinner} {wide_msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(100));
        *slot = Some(bar);
        Waiting { generation: Some(GENERATION.fetch_add(1, Relaxed) + 1) }
    }

    /// Whether a spinner is on screen (else the caller says it in a line of its own).
    pub fn is_drawn(&self) -> bool {
        self.generation.is_some_and(|g| g == GENERATION.load(Relaxed))
    }

    pub fn set_message(&self, message: String) {
        if let Some(bar) = self.bar() {
            bar.set_message(message);
        }
    }

    fn bar(&self) -> Option<ProgressBar> {
        let slot = active_bar().lock().ok()?;
        if self.is_drawn() { slot.clone() } else { None }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if !self.is_drawn() {
            return;
        }
        if let Ok(mut slot) = active_bar().lock()
            && self.is_drawn()
        {
            GENERATION.fetch_add(1, Relaxed);
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
    }
}

/// The progress bar takes the slot: a spinner still in it is cleared and told it is gone.
pub(super) fn give_way() {
    GENERATION.fetch_add(1, Relaxed);
}
