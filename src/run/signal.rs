//! Ctrl-C and SIGTERM: the first asks the run to stop gracefully, the second ends the process.
//!
//! Its own small module so that every subcommand (`run`, `export`, `demo`, `sink`) can use it
//! without importing the module that dispatches subcommands.

use tokio_util::sync::CancellationToken;

use crate::error::{Ending, exit_code};
use crate::output::print::errln;

/// Ctrl-C or SIGTERM once: cancel gracefully. Twice: exit at once (the ledger's transactions keep
/// it consistent either way).
pub fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        // Cancel before saying so: nothing the message does may stand between Ctrl-C and the stop.
        cancel.cancel();
        errln!(
            "\nInterrupted: finishing the requests in flight and saving progress (press Ctrl-C again to quit at once)"
        );
        wait_for_signal().await;
        errln!("Quit at once; the ledger is consistent, run the same command again to continue.");
        std::process::exit(i32::from(exit_code(Ending::Interrupted)));
    });
}

/// Wait for Ctrl-C or (on Unix) SIGTERM.
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
