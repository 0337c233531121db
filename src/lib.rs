//! savvy-replay: replay SavvyCal booking history into a webhook, exactly as SavvyCal would have sent
//! it — signed, rate-limited, retried, and resumable after any interruption.
//!
//! The pipeline, in the order a reader meets it: [`source`] pages the API (or reads NDJSON) →
//! [`pipeline`] selects, skips what the [`ledger`] says is done, and feeds a bounded channel →
//! workers pass the [`rate`] gate and [`deliver`] each [`event`] envelope, deciding retries with
//! [`retry`] → the [`ledger`] records every outcome → [`report`] shows progress and the summary.
//! [`cli`] and [`config`] turn what the user typed into a validated [`config::RunConfig`];
//! [`app`] runs the subcommands; [`fake`] is the embedded SavvyCal API and receiver for `demo`,
//! `sink` and the tests.

pub mod app;
pub mod cli;
pub mod config;
pub mod connection;
pub mod deliver;
pub mod demo;
pub mod event;
pub mod fake;
pub mod ledger;
pub mod pipeline;
pub mod rate;
pub mod report;
pub mod retry;
pub mod signature;
pub mod source;
pub mod webhook_defaults;

pub use config::RunConfig;
pub use pipeline::{Report, run};
pub use report::Summary;
