//! How exactly `--rate` is kept, measured at the receiver (used by `scripts/bench-rate.sh`).
//!
//! For each rate R and concurrency C it starts the embedded webhook receiver (recording arrival
//! times), writes R × secs generated events to a temporary NDJSON file, runs the real pipeline
//! (`--rate R --burst 1 --concurrency C`, ledger in a temporary directory) and reports, from the
//! receiver's arrival times:
//!
//! * achieved rate = (n − 1) / (last arrival − first arrival), and its error against R;
//! * the most requests that arrived within any 1-second window (burst check: at most R + `--burst`
//!   + the limiter's ~2 ms of catch-up capacity, e.g. R + 3 at 1,000/s, R + 11 at 5,000/s).
//!
//! Usage: `cargo run --release --example rate_probe -- [--secs S] [--concurrency 32,8] [RATE…]`
//! (defaults: 3 s per rate, 5 s for rates under 50/s; concurrency 32 and 8; rates 10 100 1000 5000).

use std::io::Write;
use std::time::{Duration, Instant};

use savvy_replay::{Backoff, Resume, RetryPolicy, RunConfig, SourceConfig};
use savvy_replay_fake::{Receiver, ReceiverConfig};
use tokio_util::sync::CancellationToken;

struct Args {
    secs: Option<f64>,
    concurrency: Vec<usize>,
    rates: Vec<f64>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args { secs: None, concurrency: vec![32, 8], rates: Vec::new() };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--secs" => {
                let v = it.next().ok_or("--secs needs a value")?;
                args.secs = Some(v.parse().map_err(|_| format!("--secs: `{v}` is not a number"))?);
            }
            "--concurrency" => {
                let v = it.next().ok_or("--concurrency needs a value")?;
                args.concurrency = v
                    .split(',')
                    .map(|c| c.trim().parse().map_err(|_| format!("--concurrency: `{c}` is not a whole number")))
                    .collect::<Result<_, _>>()?;
            }
            r => args.rates.push(r.parse().map_err(|_| format!("`{r}` is not a rate (requests per second)"))?),
        }
    }
    if args.rates.is_empty() {
        args.rates = vec![10.0, 100.0, 1000.0, 5000.0];
    }
    Ok(args)
}

/// A small realistic event (about 500 bytes), unique id `event_<n>`.
fn event_line(n: usize) -> String {
    format!(
        r#"{{"id":"event_{n}","state":"confirmed","summary":"Chat with Guest {n}","created_at":"2024-01-01T00:00:00Z","start_at":"2024-01-02T10:00:00Z","end_at":"2024-01-02T10:30:00Z","duration":30,"canceled_at":null,"link":{{"id":"link_01ED74HMFGVZ92YVCWTD8Y8H6X","slug":"chat"}},"attendees":[{{"id":"attendee_{n:026}","display_name":"Guest {n}","email":"guest.{n}@example.com","time_zone":"America/Chicago","is_organizer":false}}],"url":"https://savvycal.com/events/{n:026}"}}"#
    )
}

/// Most arrivals within any window of `width` (times sorted).
fn max_in_window(times: &[Instant], width: Duration) -> usize {
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..times.len() {
        while times[hi].duration_since(times[lo]) >= width {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

struct Probe {
    sent: usize,
    arrived: usize,
    achieved: f64,
    max_1s: usize,
}

async fn probe(rate: f64, concurrency: usize, secs: f64) -> Result<Probe, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let n = ((rate * secs).round() as usize).max(2);
    let input = dir.path().join("events.ndjson");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input)?);
    for i in 1..=n {
        writeln!(f, "{}", event_line(i))?;
    }
    f.flush()?;
    drop(f);

    let receiver = Receiver::start(ReceiverConfig { record: true, ..ReceiverConfig::default() }).await?;
    let cfg = RunConfig {
        timeout: Duration::from_secs(10),
        concurrency,
        rate: rate.to_string().parse()?,
        retry: RetryPolicy {
            backoff: Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) },
            max_retries: 3,
        },
        ledger: dir.path().join("ledger.db"),
        resume: Resume::Fresh,
        quiet: true,
        ..RunConfig::new(SourceConfig::File(input), receiver.url().parse()?)
    };
    let report = savvy_replay::run(cfg, CancellationToken::new()).await?;
    let mut times: Vec<Instant> = receiver.deliveries().iter().map(|d| d.at).collect();
    receiver.shutdown().await;
    times.sort();
    let span = times.last().zip(times.first()).map(|(l, f)| l.duration_since(*f).as_secs_f64()).unwrap_or(0.0);
    let achieved = if span > 0.0 { (times.len() - 1) as f64 / span } else { f64::NAN };
    if report.summary.delivered != n as u64 {
        eprintln!("warning: rate {rate}: delivered {} of {n}", report.summary.delivered);
    }
    Ok(Probe { sent: n, arrived: times.len(), achieved, max_1s: max_in_window(&times, Duration::from_secs(1)) })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| format!("{e}\nusage: rate_probe [--secs S] [--concurrency 32,8] [RATE…]"))?;
    println!(
        "| --rate (req/s) | concurrency | requests | achieved at receiver (req/s) | error | max in any 1 s window |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let mut worst: f64 = 0.0;
    for &c in &args.concurrency {
        for &rate in &args.rates {
            let secs = args.secs.unwrap_or(if rate < 50.0 { 5.0 } else { 3.0 });
            let p = probe(rate, c, secs).await?;
            let err = (p.achieved - rate) / rate * 100.0;
            worst = worst.max(err.abs());
            let arrived = if p.arrived == p.sent { p.sent.to_string() } else { format!("{} of {}", p.arrived, p.sent) };
            println!("| {rate} | {c} | {arrived} | {:.1} | {err:+.2}% | {} |", p.achieved, p.max_1s);
        }
    }
    println!("\nworst |error|: {worst:.2}% (target: within 1%) -> {}", if worst <= 1.0 { "PASS" } else { "FAIL" });
    Ok(())
}
