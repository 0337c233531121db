//! Does `--rate auto` take a background of random errors for congestion? Used by
//! `scripts/bench-noise.sh`.
//!
//! A receiver with no limit at all, but which answers a random 2% of requests with an error
//! whatever the load, is not asking anyone to slow down: the errors cost retries, never the rate.
//! For each kind of noise (2% of connections reset; 2% answered 502 or 503 without `Retry-After`)
//! it runs the real pipeline (`--concurrency 32`, ledger on, in-process, loopback) into the
//! embedded receiver for a fixed time with `--rate 0` (no limit: what the machine reaches), then
//! with `--rate auto`, and reports the goodput of each from `--steady` seconds on (requests
//! accepted per second, counted by the receiver), their ratio, and the events that failed for good
//! in each run (the target: auto at least 0.8 of unlimited, and none failed).
//!
//! Usage: `cargo run --release --example bench_noise -- [--secs S] [--steady S] [--noise F]`
//! (defaults: 15 s per run, steady from 5 s, 2% noise).

use std::io::Write;
use std::time::Instant;

#[path = "support/mod.rs"]
mod support;

use savvy_replay_fake::{Receiver, ReceiverConfig, generate_bookings};

struct Args {
    secs: f64,
    steady: f64,
    noise: f64,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { secs: 15.0, steady: 5.0, noise: 0.02 };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = || -> Result<f64, String> {
            it.next().ok_or(format!("{a} needs a value"))?.parse().map_err(|_| format!("{a}: not a number"))
        };
        match a.as_str() {
            "--secs" => args.secs = number()?,
            "--steady" => args.steady = number()?,
            "--noise" => args.noise = number()?,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if args.secs <= args.steady {
        return Err("--secs must be longer than --steady".into());
    }
    Ok(args)
}

/// One timed run: (accepted per second from `steady` on, events failed for good).
async fn run_one(
    receiver: ReceiverConfig,
    rate: &str,
    args: &Args,
    input: &std::path::Path,
) -> Result<(f64, u64), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let receiver = Receiver::start(ReceiverConfig { record: true, ..receiver }).await?;
    let (cfg, cancel, _) = support::timed_run(input, &receiver.url(), dir.path(), rate.parse()?, args.secs)?;
    let report = savvy_replay::run(cfg, cancel).await?;
    let deliveries = receiver.deliveries();
    receiver.shutdown().await;
    let first = deliveries.iter().map(|d| d.at).min().unwrap_or_else(Instant::now);
    let accepted = deliveries
        .iter()
        .filter(|d| (200..300).contains(&d.status) && d.at.duration_since(first).as_secs_f64() >= args.steady)
        .count() as f64;
    let last = deliveries.iter().map(|d| d.at.duration_since(first).as_secs_f64()).fold(0.0, f64::max);
    let span = (last - args.steady).max(f64::MIN_POSITIVE);
    Ok((accepted / span, report.summary.failed))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| format!("{e}\nusage: bench_noise [--secs S] [--steady S] [--noise F]"))?;
    let dir = tempfile::tempdir()?;
    // More events than the fastest run can send in its time on a small machine.
    let input = dir.path().join("events.ndjson");
    let n = (12_000.0 * args.secs) as usize;
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input)?);
    for line in generate_bookings(n, 11) {
        writeln!(f, "{line}")?;
    }
    f.flush()?;
    drop(f);

    let pct = args.noise * 100.0;
    let kinds = [
        (format!("{pct}% of connections reset"), ReceiverConfig { drop_rate: args.noise, ..ReceiverConfig::default() }),
        (
            format!("{pct}% answered 502/503, no Retry-After"),
            ReceiverConfig { noise_rate: args.noise, ..ReceiverConfig::default() },
        ),
    ];
    println!("| noise | --rate 0: goodput/s | failed | --rate auto: goodput/s | failed | auto / unlimited |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, receiver) in kinds {
        let (unlimited, failed_unlimited) = run_one(receiver.clone(), "0", &args, &input).await?;
        let (auto, failed_auto) = run_one(receiver, "auto", &args, &input).await?;
        println!(
            "| {name} | {unlimited:.0} | {failed_unlimited} | {auto:.0} | {failed_auto} | {:.2} |",
            auto / unlimited.max(f64::MIN_POSITIVE)
        );
    }
    Ok(())
}
