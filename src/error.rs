//! Errors that end a command, and the exit statuses they map to (SPEC §3).
//!
//! The table of exit statuses lives here and nowhere else, so that "which failure gives which
//! status" is answered in one place.

use crate::ledger::LedgerError;
use crate::source::SourceError;

/// Exit statuses (SPEC §3).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const SOURCE: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

/// Errors that stop a run before or while it starts (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot read --input {path}: {error}")]
    Input { path: String, error: std::io::Error },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error(transparent)]
    Source(#[from] SourceError),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Source(_) => exit::SOURCE,
            _ => exit::USAGE,
        }
    }
}
