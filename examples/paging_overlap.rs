//! How much a slow API adds to a replay: N events (default 5,000) paged 100 at a time from the fake
//! SavvyCal API, each `/v1/events` answer delayed by D ms (default 100), delivered at `--rate 0`,
//! concurrency 32, ledger on, into the embedded receiver. It prints the run's wall time against the
//! pages' delay alone (pages × D): 1.00 would be delivery hidden entirely behind paging.
//!
//! Usage: `cargo run --release --example paging_overlap -- [N] [D]`. All traffic is on 127.0.0.1.

use std::time::{Duration, Instant};

use savvy_replay::{ApiQuery, Rate, RateMode, RunConfig, SourceConfig, api_base};
use savvy_replay_fake::{FakeApi, FakeApiConfig, Receiver, ReceiverConfig, generate_bookings};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "pt_secret_paging_overlap";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().map_or(Ok(5_000), |a| a.parse())?;
    let delay = Duration::from_millis(args.next().map_or(Ok(100), |a| a.parse())?);
    let api = FakeApi::start(FakeApiConfig {
        token: TOKEN.into(),
        events: generate_bookings(n, 1),
        ..FakeApiConfig::default()
    })
    .await?;
    api.delay_pages(delay);
    let receiver = Receiver::start(ReceiverConfig::default()).await?;
    let dir = tempfile::tempdir()?;
    let cfg = RunConfig {
        rate: RateMode::Fixed(Rate::UNLIMITED),
        concurrency: 32,
        ledger: dir.path().join("ledger.db"),
        quiet: true,
        ..RunConfig::new(
            SourceConfig::Api {
                base: api_base(&api.base_url())?,
                token: SecretString::from(TOKEN),
                query: ApiQuery::default(),
            },
            receiver.url().parse()?,
        )
    };
    let started = Instant::now();
    let report = savvy_replay::run(cfg, CancellationToken::new()).await?;
    let took = started.elapsed();
    let pages = api.events_requests();
    let paging = delay * u32::try_from(pages)?;
    println!(
        "{} of {n} events delivered in {:.2} s; {pages} pages × {} ms = {:.2} s of paging alone: {:.3}×",
        report.summary.delivered,
        took.as_secs_f64(),
        delay.as_millis(),
        paging.as_secs_f64(),
        took.as_secs_f64() / paging.as_secs_f64()
    );
    Ok(())
}
