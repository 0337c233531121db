//! How well `--rate auto` finds a receiver's capacity, used by
//! `scripts/bench-adaptive.sh`.
//!
//! For each receiver it starts the embedded webhook receiver with a capacity of its own (recording
//! every request's arrival and answer), runs the real pipeline into it from a generated NDJSON
//! file for a fixed time, and stops the run (as Ctrl-C would). It does so with `--rate auto` and,
//! beside it, with a fixed rate of 1.25·C and 0.8·C. From the receiver's record it reports:
//!
//! * goodput/C: requests accepted from `--steady` seconds on until the run was stopped, over what
//!   the receiver could take in that time (C × the time; for the capacity step, the capacity
//!   integrated over it). A quota is measured over the whole run instead: a fixed window lets its N
//!   through at any moment of the window, so a span that cuts windows could count more than N per
//!   window; from the first request on, the windows fall where the receiver counts them (it counts
//!   from the first request too) and the last, cut by the stop, is credited pro rata;
//! * rejected: the share of all requests the receiver refused (429/503);
//! * settled in (auto only): when the sending rate first stays within [0.8·C, 1.05·C] for a whole
//!   second, counted from the first request (for the capacity step: from each step, the slower of
//!   the two; not for a quota, which is best used in bursts).
//!
//! Times are seconds since the receiver's first request, which is when its capacity steps and
//! quota windows start; a run ends when it is stopped, not at its last request (a pool held by a
//! quota's `Retry-After` sends nothing for a while, and that time counts).
//!
//! It also draws the capacity step (requests sent and accepted per second against the capacity)
//! as an SVG with `plotters`, a dev-dependency only: the product binary does not carry it.
//!
//! Usage: `cargo run --release --example bench_adaptive -- [--secs S] [--steady S] [--svg PATH]
//! [--only NAME] [--trace]` (defaults: 20 s per run, steady from 5 s, docs/adaptive-step.svg).

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[path = "support/mod.rs"]
mod support;

use plotters::prelude::*;
use savvy_replay::{Rate, RateMode};
use savvy_replay_fake::{Delivery, Quota, Receiver, ReceiverConfig, generate_bookings};

struct Args {
    secs: f64,
    steady: f64,
    svg: PathBuf,
    only: Option<String>,
    /// Print each run's requests sent and accepted per second (stderr), to see what the rate did.
    trace: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args =
        Args { secs: 20.0, steady: 5.0, svg: PathBuf::from("docs/adaptive-step.svg"), only: None, trace: false };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--secs" => args.secs = value()?.parse().map_err(|_| "--secs: not a number")?,
            "--steady" => args.steady = value()?.parse().map_err(|_| "--steady: not a number")?,
            "--svg" => args.svg = PathBuf::from(value()?),
            "--only" => args.only = Some(value()?),
            "--trace" => args.trace = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if args.secs <= args.steady {
        return Err("--secs must be longer than --steady".into());
    }
    Ok(args)
}

/// One receiver to try: its name, its capacity C (requests/s) and its configuration.
struct Scenario {
    name: &'static str,
    capacity: f64,
    receiver: ReceiverConfig,
    /// For the capacity step: `(from, capacity)` over the run.
    steps: Vec<(f64, f64)>,
    /// For a quota: the window, seconds.
    window: Option<f64>,
}

fn scenarios(secs: f64) -> Vec<Scenario> {
    let bucket = |name, c: f64| Scenario {
        name,
        capacity: c,
        receiver: ReceiverConfig { capacity: Some(c), ..ReceiverConfig::default() },
        steps: Vec::new(),
        window: None,
    };
    let third = secs / 3.0;
    vec![
        bucket("token bucket", 50.0),
        bucket("token bucket", 300.0),
        bucket("token bucket", 2000.0),
        Scenario {
            name: "quota 1,000 per 10 s",
            capacity: 100.0,
            receiver: ReceiverConfig {
                quota: Some(Quota { n: 1000, per: Duration::from_secs(10) }),
                ..ReceiverConfig::default()
            },
            steps: Vec::new(),
            window: Some(10.0),
        },
        Scenario {
            name: "quota 400 per 2 s",
            capacity: 200.0,
            receiver: ReceiverConfig {
                quota: Some(Quota { n: 400, per: Duration::from_secs(2) }),
                ..ReceiverConfig::default()
            },
            steps: Vec::new(),
            window: Some(2.0),
        },
        Scenario {
            name: "10 in flight × 20 ms",
            capacity: 500.0,
            receiver: ReceiverConfig {
                max_in_flight: Some(10),
                latency: Some(Duration::from_millis(20)),
                ..ReceiverConfig::default()
            },
            steps: Vec::new(),
            window: None,
        },
        Scenario {
            name: "latency knee",
            capacity: 300.0,
            receiver: ReceiverConfig { latency_knee: Some(300.0), ..ReceiverConfig::default() },
            steps: Vec::new(),
            window: None,
        },
        Scenario {
            name: "capacity step 300→75→300",
            capacity: 300.0,
            receiver: ReceiverConfig {
                capacity: Some(300.0),
                capacity_steps: vec![
                    (Duration::from_secs_f64(third), 75.0),
                    (Duration::from_secs_f64(2.0 * third), 300.0),
                ],
                ..ReceiverConfig::default()
            },
            steps: vec![(0.0, 300.0), (third, 75.0), (2.0 * third, 300.0)],
            window: None,
        },
    ]
}

/// What a run looked like from the receiver: (seconds since the first request, accepted), and
/// that first request.
fn timeline(deliveries: &[Delivery]) -> (Vec<(f64, bool)>, Option<Instant>) {
    let Some(first) = deliveries.iter().map(|d| d.at).min() else { return (Vec::new(), None) };
    let mut t: Vec<(f64, bool)> =
        deliveries.iter().map(|d| (d.at.duration_since(first).as_secs_f64(), (200..300).contains(&d.status))).collect();
    t.sort_by(|a, b| a.0.total_cmp(&b.0));
    (t, Some(first))
}

struct Measured {
    goodput: f64,
    rejected: f64,
    settled: Option<f64>,
    timeline: Vec<(f64, bool)>,
}

/// Requests in `[from, from + 1 s)`.
fn sent_in_second(t: &[(f64, bool)], from: f64) -> usize {
    t.iter().filter(|(at, _)| *at >= from && *at < from + 1.0).count()
}

/// The first time from `after` on when a whole second's requests are within [0.8·C, 1.05·C],
/// counted from `after`.
fn settle_time(t: &[(f64, bool)], after: f64, until: f64, c: f64) -> Option<f64> {
    let mut at = after;
    while at + 1.0 <= until {
        let n = sent_in_second(t, at) as f64;
        if n >= 0.8 * c && n <= 1.05 * c {
            return Some(at + 1.0 - after);
        }
        at += 0.1;
    }
    None
}

async fn run_one(
    s: &Scenario,
    rate: RateMode,
    args: &Args,
    input: &std::path::Path,
) -> Result<Measured, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let receiver = Receiver::start(ReceiverConfig { record: true, ..s.receiver.clone() }).await?;
    let (cfg, cancel, stopped) = support::timed_run(input, &receiver.url(), dir.path(), rate, args.secs)?;
    savvy_replay::run(cfg, cancel).await?;
    let (t, first) = timeline(&receiver.deliveries());
    receiver.shutdown().await;
    // The run's end in the timeline's time: when it was stopped (there are events enough that no
    // run runs dry).
    let end = first.map_or(0.0, |first| stopped.saturating_duration_since(first).as_secs_f64());
    let from = if s.window.is_some() { 0.0 } else { args.steady };
    let accepted = t.iter().filter(|(at, ok)| *ok && *at >= from && *at < end).count() as f64;
    let goodput = if end > from { accepted / capacity_between(s, from, end) } else { f64::NAN };
    let rejected = t.iter().filter(|(_, ok)| !*ok).count() as f64 / (t.len().max(1) as f64);
    let settled = if s.window.is_some() {
        None
    } else if s.steps.len() > 1 {
        // After each step, until the next: the slower of the two (a step that never settles wins).
        s.steps[1..]
            .iter()
            .enumerate()
            .map(|(i, &(step, c))| {
                let until = s.steps.get(i + 2).map_or(end, |(t, _)| *t);
                settle_time(&t, step, until, c).unwrap_or(f64::INFINITY)
            })
            .reduce(f64::max)
    } else {
        Some(settle_time(&t, 0.0, end, s.capacity).unwrap_or(f64::INFINITY))
    };
    if args.trace {
        let per_second: Vec<String> = (0..end.ceil() as usize)
            .map(|i| {
                let second = t.iter().filter(|(at, _)| *at >= i as f64 && *at < i as f64 + 1.0);
                let (sent, ok) = second.fold((0, 0), |(n, ok), (_, accepted)| (n + 1, ok + usize::from(*accepted)));
                format!("{sent}/{ok}")
            })
            .collect();
        eprintln!("{} at {rate:?}, sent/accepted per second: {}", s.name, per_second.join(" "));
    }
    Ok(Measured { goodput, rejected, settled, timeline: t })
}

/// Requests the receiver could take in `[from, to)`: C × the time, or the integral of its steps.
/// For a quota from 0 on that is N per whole window and pro rata for the window cut by `to`.
fn capacity_between(s: &Scenario, from: f64, to: f64) -> f64 {
    if s.steps.is_empty() {
        return s.capacity * (to - from);
    }
    s.steps
        .iter()
        .enumerate()
        .map(|(i, &(start, c))| {
            let end = s.steps.get(i + 1).map_or(f64::INFINITY, |(t, _)| *t);
            c * (end.min(to) - start.max(from)).max(0.0)
        })
        .sum()
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// Requests sent and accepted per second in bins of 0.25 s, against the capacity: the chart.
fn draw_step(
    path: &std::path::Path,
    s: &Scenario,
    t: &[(f64, bool)],
    secs: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let bin = 0.25;
    let bins = (secs / bin).ceil() as usize;
    let mut sent = vec![0.0; bins];
    let mut ok = vec![0.0; bins];
    for (at, accepted) in t {
        let i = (at / bin) as usize;
        if i < bins {
            sent[i] += 1.0 / bin;
            if *accepted {
                ok[i] += 1.0 / bin;
            }
        }
    }
    let top = sent.iter().copied().fold(s.capacity, f64::max) * 1.1;
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("--rate auto against a capacity step 300 → 75 → 300 requests/s", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..secs, 0.0..top)?;
    chart.configure_mesh().x_desc("seconds").y_desc("requests per second").draw()?;
    let mut capacity = Vec::new();
    for (i, &(from, c)) in s.steps.iter().enumerate() {
        let to = s.steps.get(i + 1).map_or(secs, |(t, _)| *t);
        capacity.push((from, c));
        capacity.push((to, c));
    }
    chart
        .draw_series(LineSeries::new(capacity, BLACK.stroke_width(2)))?
        .label("receiver capacity")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    let series = |v: &[f64]| v.iter().enumerate().map(|(i, r)| ((i as f64 + 0.5) * bin, *r)).collect::<Vec<_>>();
    chart
        .draw_series(LineSeries::new(series(&sent), BLUE))?
        .label("sent")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    chart
        .draw_series(LineSeries::new(series(&ok), GREEN))?
        .label("accepted")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw()?;
    root.present()?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args().map_err(|e| {
        format!("{e}\nusage: bench_adaptive [--secs S] [--steady S] [--svg PATH] [--only NAME] [--trace]")
    })?;
    let dir = tempfile::tempdir()?;
    // Enough events that no run ends before its time: 1.5 × the fastest rate tried (2,000/s).
    let input = dir.path().join("events.ndjson");
    let n = (2000.0 * 1.5 * args.secs) as usize;
    let mut f = std::io::BufWriter::new(std::fs::File::create(&input)?);
    for line in generate_bookings(n, 7) {
        writeln!(f, "{line}")?;
    }
    f.flush()?;
    drop(f);

    println!(
        "| receiver | C | auto: goodput/C | rejected | settled in | 1.25·C: goodput/C | rejected | 0.8·C: goodput/C | rejected |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in scenarios(args.secs) {
        if args.only.as_deref().is_some_and(|o| !s.name.contains(o)) {
            continue;
        }
        let auto = run_one(&s, RateMode::Auto, &args, &input).await?;
        let over = run_one(&s, RateMode::Fixed(Rate::per_second(1.25 * s.capacity)), &args, &input).await?;
        let under = run_one(&s, RateMode::Fixed(Rate::per_second(0.8 * s.capacity)), &args, &input).await?;
        let settled = match auto.settled {
            None => "—".to_owned(),
            Some(t) if t.is_finite() => format!("{t:.1} s"),
            Some(_) => "not within the run".to_owned(),
        };
        println!(
            "| {} | {} | {:.2} | {} | {settled} | {:.2} | {} | {:.2} | {} |",
            s.name,
            s.capacity,
            auto.goodput,
            pct(auto.rejected),
            over.goodput,
            pct(over.rejected),
            under.goodput,
            pct(under.rejected)
        );
        if !s.steps.is_empty() {
            draw_step(&args.svg, &s, &auto.timeline, args.secs)?;
            eprintln!("chart of the capacity step: {}", args.svg.display());
        }
    }
    Ok(())
}
