//! Errors that end a command, and the exit statuses they map to.
//!
//! [`exit_code`] is the one table from how a command ended ([`Ending`]) to the process's exit
//! status: an error, a run's report ([`RunFacts`]), an export, a second Ctrl-C. Subcommands
//! return `Result<u8, AppError>` and use `?`; the error is printed once, as `Error: …`, where the
//! process ends ([`crate::app::main`]).

use crate::config::ConfigError;
use crate::deliver::TargetError;
use crate::ledger::LedgerError;
use crate::source::SourceError;
use crate::source::client::ClientError;
use crate::source::webhooks::WebhookError;

/// Exit statuses, as README.md ("Exit status") lists them; which one a command ends with is
/// [`exit_code`]'s to say.
mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    /// Also a ledger that cannot be opened, or written mid-run: its location is configuration.
    pub const USAGE: u8 = 2;
    pub const SOURCE: u8 = 3;
    /// The webhook was unreachable for `--give-up-after`; the rest is pending.
    pub const UNREACHABLE: u8 = 4;
    pub const INTERRUPTED: u8 = 130;
}

/// Errors that stop a run before or while it starts (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot read --input {path}: {error}")]
    Input { path: String, error: std::io::Error },
    #[error(transparent)]
    ApiClient(#[from] ClientError),
    #[error("cannot set up the HTTP client: {url}: {error}")]
    Endpoint { url: String, error: TargetError },
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Looking up the webhook the replay stands in for ([`crate::run::defaults`]).
    #[error(transparent)]
    Webhook(#[from] WebhookError),
}

/// Why a command ended without doing its job.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The command line or the config file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A run could not start or its source failed.
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The source failed after some events were handled (`export`).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Entries that were not events were skipped (`export`).
    #[error("{}", crate::words::skipped_entries(*.0))]
    Malformed(u64),
    #[error("cannot create --out {path}: {error}")]
    CreateOut { path: String, error: std::io::Error },
    #[error("cannot write the {what}: {error}")]
    Write { what: &'static str, error: std::io::Error },
    #[error("cannot write the status as JSON: {0}")]
    Json(serde_json::Error),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot listen on {addr}: {error}; pick another address with --listen")]
    Listen { addr: std::net::SocketAddr, error: std::io::Error },
    /// `demo` could not set itself up, or its receiver did not get every event.
    #[error("{0}")]
    Demo(String),
}

/// How a command ended, as far as its exit status goes.
#[derive(Debug, Clone, Copy)]
pub enum Ending<'a> {
    /// It did its job.
    Done,
    /// A run finished, and some events failed for good.
    EventsFailed,
    /// Entries that were not events, or events without a date, were skipped.
    Unreadable,
    /// Ctrl-C (or SIGTERM).
    Interrupted,
    /// The webhook was unreachable for `--give-up-after`; the rest is pending.
    Unreachable,
    /// A run stopped early for a reason.
    Stopped(&'a StopReason),
    /// The source failed.
    Source(&'a SourceError),
    /// The ledger could not be written mid-run: its location is configuration, like a ledger that
    /// cannot be opened.
    LedgerFailed,
    /// An error ended the command before its end.
    Error(&'a AppError),
}

/// The one table from how a command ended to its exit status: 0 done, 1 some events failed (or
/// the demo did not deliver), 2 usage or configuration, 3 the source failed, 4 the webhook was
/// unreachable, 130 interrupted.
pub fn exit_code(ending: Ending<'_>) -> u8 {
    use Ending as E;
    match ending {
        E::Done => exit::OK,
        E::EventsFailed | E::Error(AppError::Demo(_)) => exit::FAILED,
        E::Interrupted | E::Source(SourceError::Interrupted) => exit::INTERRUPTED,
        E::Unreachable => exit::UNREACHABLE,
        // A proxy's refusal is configuration, whichever path met it.
        E::Source(SourceError::ProxyRefused(_)) => exit::USAGE,
        E::Source(_) | E::Unreadable | E::Error(AppError::Malformed(_)) => exit::SOURCE,
        E::Error(
            AppError::Run(RunError::Source(e))
            | AppError::Run(RunError::Webhook(WebhookError::Source(e)))
            | AppError::Source(e),
        ) => exit_code(E::Source(e)),
        // A wrong --webhook-id is a usage error; the API failing during the lookup is a source error.
        E::Error(AppError::Run(RunError::Webhook(WebhookError::UnknownId { .. } | WebhookError::NoBound { .. }))) => {
            exit::USAGE
        }
        E::Error(AppError::Run(RunError::Webhook(_))) => exit::SOURCE,
        E::Stopped(StopReason::Rejected { .. } | StopReason::ProxyRefused(_))
        | E::LedgerFailed
        | E::Error(
            AppError::Config(_)
            | AppError::Run(_)
            | AppError::Ledger(_)
            | AppError::CreateOut { .. }
            | AppError::Write { .. }
            | AppError::Json(_)
            | AppError::Runtime(_)
            | AppError::Listen { .. },
        ) => exit::USAGE,
    }
}

/// What a run's report says, for its exit status.
#[derive(Debug, Clone, Copy)]
pub struct RunFacts<'a> {
    pub ledger_failed: bool,
    pub interrupted: bool,
    pub stopped: Option<&'a StopReason>,
    pub gave_up: bool,
    pub source_error: Option<&'a SourceError>,
    /// Entries were skipped as not events, or as undated.
    pub unreadable: bool,
    pub failed: u64,
}

impl<'a> RunFacts<'a> {
    /// Which of the facts decides, when several hold: the first of a failed ledger, an interrupt,
    /// a stop, giving up, the source, skipped entries, failed events.
    pub fn ending(self) -> Ending<'a> {
        if self.ledger_failed {
            Ending::LedgerFailed
        } else if self.interrupted {
            Ending::Interrupted
        } else if let Some(reason) = self.stopped {
            Ending::Stopped(reason)
        } else if self.gave_up {
            Ending::Unreachable
        } else if let Some(e) = self.source_error {
            Ending::Source(e)
        } else if self.unreadable {
            Ending::Unreadable
        } else if self.failed > 0 {
            Ending::EventsFailed
        } else {
            Ending::Done
        }
    }
}

/// Why a run stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// Every first answer of the run was 401/403: the signature or the credentials are wrong,
    /// and every other event would fail the same way.
    Rejected {
        /// The status of the last of those answers.
        status: u16,
        answers: u32,
        /// What the run authenticated with, to name in the advice.
        auth: AuthUsed,
    },
    /// The proxy in front of the webhook refused us (CONNECT answered 4xx, or a 407): the
    /// message names the proxy and its answer, never its credentials.
    ProxyRefused(String),
}

/// How the requests were authenticated, for the advice after a rejection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AuthUsed {
    /// Requests were signed (`--signing-secret`, `SAVVYCAL_WEBHOOK_SECRET` or the webhook's).
    pub signed: bool,
    /// The webhook URL carries Basic auth.
    pub basic: bool,
    /// `-H` headers were given.
    pub headers: bool,
}

impl StopReason {
    /// Why, in a few words, for the summary's head ("Stopped after 1.2s (…)").
    pub fn short(&self) -> &'static str {
        match self {
            StopReason::Rejected { .. } => "the receiver rejected the signature or credentials",
            StopReason::ProxyRefused(_) => "the proxy refused",
        }
    }

    /// The error line and what to do, for the end of the summary.
    pub fn message(&self) -> String {
        match self {
            StopReason::ProxyRefused(answer) => format!(
                "{answer}.\n  Nothing was marked failed: run the same command again once the proxy lets the \
                 requests through."
            ),
            StopReason::Rejected { status, answers, auth } => {
                let secret = if auth.signed {
                    "Check --signing-secret / SAVVYCAL_WEBHOOK_SECRET: it must be the receiver's"
                } else {
                    "Requests went unsigned: set --signing-secret or SAVVYCAL_WEBHOOK_SECRET"
                };
                let mut also = Vec::new();
                if auth.basic {
                    also.push("the user and password in --webhook-url");
                }
                if auth.headers {
                    also.push("the -H headers");
                }
                let also = if also.is_empty() { String::new() } else { format!(", and {}", also.join(" and ")) };
                let statuses = if *status == 401 { "401" } else { "401/403" };
                format!(
                    "the receiver rejects the signature or credentials ({answers} answers: {statuses}).\n  \
                     {secret}{also}.\n  Nothing was marked failed: rerun with the right secret to send the events."
                )
            }
        }
    }
}
