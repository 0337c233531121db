//! The integration tests, one binary: each module is one area, run alone with
//! `cargo test --test it <area>::`. One binary links the crate once instead of once per file.
//!
//! Every module shares this process: a test that changes process-wide state (the log subscriber,
//! the umask, the environment, the current directory) runs alone in a child process
//! ([`util::alone`]).

mod advice;
mod cli;
mod credentials;
mod errors;
mod help;
mod hostile;
mod hostile_api;
mod ledger_failure;
mod output;
mod pacing;
mod paths;
mod proxy;
mod rate;
mod replay;
mod resume;
mod savvycal;
mod selection;
mod signature;
mod terminal;
mod tls;
mod transport;
mod util;
mod wire;
