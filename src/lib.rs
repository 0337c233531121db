//! savvy-replay: replay SavvyCal booking history into a webhook, exactly as SavvyCal would have sent
//! it — signed, rate-limited, retried, and resumable after any interruption.
//!
//! The pipeline, in the order a reader meets it, one folder a stage: `source` pages the API (or
//! reads NDJSON) → `run`'s producer selects, drops repeats, skips what the `ledger` says is done, and
//! feeds a bounded channel → `run`'s workers take their turn from `pacing` (the rate gate, `--rate
//! auto`, the outage pause) and `deliver` each `event` in its envelope, deciding retries with
//! `deliver::retry` → the `ledger` records every outcome → `output` shows the run live and `report`
//! the end of it. `cli` and `config` turn what the user typed into a validated [`RunConfig`]; `app`
//! runs the subcommands and `error` maps their failures to exit statuses. The embedded SavvyCal API
//! and receiver for `demo`, `sink` and the tests are the workspace's other crate,
//! `savvy_replay_fake` (crates/fake). ARCHITECTURE.md has the layers and the decisions behind them.
//!
//! The modules are private to the crate; what `main`, the integration tests and the examples need
//! is re-exported here, so the compiler can point out code nothing uses.

// Printing goes through `output::print`, which never panics on a closed pipe or a full disk.
#![cfg_attr(not(test), deny(clippy::print_stdout, clippy::print_stderr))]

pub(crate) mod app;
pub(crate) mod cli;
pub(crate) mod config;
pub(crate) mod deliver;
pub(crate) mod demo;
pub(crate) mod error;
pub(crate) mod event;
pub(crate) mod ledger;
pub(crate) mod output;
pub(crate) mod pacing;
pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod source;
pub(crate) mod words;

pub use app::main;
pub use cli::Cli;
pub use config::{Resume, RunConfig, SourceConfig, api_base};
pub use deliver::retry::{Backoff, RetryPolicy};
pub use deliver::shared::install_crypto_provider;
pub use deliver::signature;
pub use event::envelope_id;
pub use ledger::read_status;
pub use pacing::RateMode;
pub use pacing::gate::Rate;
pub use report::{Report, Summary};
pub use run::run;
pub use source::ApiQuery;
