//! A discrete-event simulation of a replay against modelled receivers, in virtual time.
//!
//! The client side is what the pipeline does, reduced to what pacing sees: an endless backlog, a
//! hard cap on requests in flight (and the controller's own, when it learned one), a limiter that
//! sends at most `rate` a second on a schedule each send leaves a little late from, the pool hold
//! of [`Controller::hold_until`] and the probes of the [`OutageDetector`]. The receivers (in
//! `receivers.rs`) model the ones `sink --capacity/--quota/--max-in-flight` serve, plus a latency
//! knee, a capacity step and a dead webhook. Everything is deterministic, so the targets
//! `--rate auto` is held to (docs/performance.md, "Adaptive pacing") are plain assertions here, and
//! a minute of traffic at 2,000/s runs in a fraction of a second.
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use super::{Controller, ControllerSettings, OutageDetector, OutageSettings, OutageState, Permit, Signal};

mod receivers;
use receivers::*;

/// What happened in one second of the run.
#[derive(Debug, Clone, Copy, Default)]
struct Second {
    /// Requests sent in it.
    sent: u32,
    /// Answers 2xx that came back in it, and their total latency.
    delivered: u32,
    latency: f64,
    /// Answers that were throttles or failures.
    refused: u32,
}

/// The record of a run.
#[derive(Debug, Default)]
struct Run {
    seconds: Vec<Second>,
    /// When each request was sent.
    sends: Vec<f64>,
    entered_outage: Option<f64>,
    left_outage: Option<f64>,
    gave_up: Option<f64>,
    /// What the controller says the run settled on.
    settled: Option<f64>,
}

impl Run {
    fn second(&mut self, t: f64) -> &mut Second {
        let i = t.max(0.0) as usize;
        if self.seconds.len() <= i {
            self.seconds.resize(i + 1, Second::default());
        }
        &mut self.seconds[i]
    }

    /// Delivered per second over `[from, to)` seconds.
    fn goodput(&self, from: usize, to: usize) -> f64 {
        let n: u32 = self.seconds[from..to].iter().map(|s| s.delivered).sum();
        f64::from(n) / (to - from) as f64
    }

    fn refused_share(&self) -> f64 {
        let refused: u32 = self.seconds.iter().map(|s| s.refused).sum();
        let sent: u32 = self.seconds.iter().map(|s| s.sent).sum();
        f64::from(refused) / f64::from(sent.max(1))
    }

    fn mean_latency(&self, from: usize, to: usize) -> f64 {
        let s = &self.seconds[from..to];
        s.iter().map(|s| s.latency).sum::<f64>() / f64::from(s.iter().map(|s| s.delivered).sum::<u32>().max(1))
    }

    fn sent(&self, from: usize, to: usize) -> u32 {
        self.seconds[from..to].iter().map(|s| s.sent).sum()
    }
}

/// How the simulated client paces.
enum Pacing {
    Auto(Box<Controller>),
    Fixed(f64),
}

/// Virtual nanoseconds: the event queue needs a total order.
fn nanos(t: f64) -> u64 {
    (t * 1e9).round() as u64
}

/// Replays into `receiver` for `duration` virtual seconds with at most `concurrency` in flight.
fn simulate(receiver: &mut impl Receive, mut pacing: Pacing, duration: f64, give_up_after: Option<f64>) -> Run {
    let concurrency = 32;
    let mut outage = OutageDetector::new(OutageSettings {
        probe_initial: Duration::from_millis(500),
        probe_max: Duration::from_secs(4),
        give_up_after: give_up_after.map(Duration::from_secs_f64),
    });
    let mut run = Run::default();
    // (finish time, sequence number), and per sequence number: sent at, outcome, probe.
    let mut queue: BinaryHeap<Reverse<(u64, usize)>> = BinaryHeap::new();
    let mut pending: Vec<(f64, f64, Signal, bool, usize)> = Vec::new();
    let (mut now, mut last_slot, mut in_flight) = (0.0_f64, f64::NEG_INFINITY, 0_usize);
    // Each send leaves a little after its slot; the limiter keeps to the slots (its catch-up).
    let mut dice = Dice(11);
    let mut late = 0.0;
    // Held until then by the outage detector (infinity: until the probe comes back).
    let mut not_before = 0.0_f64;
    loop {
        let rate = match &pacing {
            Pacing::Auto(c) => c.rate(),
            Pacing::Fixed(r) => *r,
        };
        let hold = match &pacing {
            Pacing::Auto(c) => c.hold_until().map_or(0.0, |d| d.as_secs_f64()),
            Pacing::Fixed(_) => 0.0,
        };
        // A slot missed by less than the limiter's catch-up (5 ms) is still taken: late sends bunch.
        let slot = (last_slot + 1.0 / rate).max(now - 0.005).max(hold).max(not_before);
        let cap = match &pacing {
            Pacing::Auto(c) => c.concurrency().map_or(concurrency, |k| (k as usize).min(concurrency)),
            Pacing::Fixed(_) => concurrency,
        };
        let send_at = (in_flight < cap).then_some((slot + late).max(now));
        let next_finish = queue.peek().map(|Reverse((t, _))| *t);
        let send_first = match (send_at, next_finish) {
            (Some(s), Some(f)) => s.is_finite() && nanos(s) < f,
            (Some(s), None) => s.is_finite(),
            (None, _) => false,
        };
        if send_first {
            // The slot, not the late moment, is what the next one is spaced from.
            (now, last_slot) = (send_at.unwrap_or(now), slot);
            if now >= duration {
                break;
            }
            let probe = match outage.permit(Duration::from_secs_f64(now)) {
                Permit::Send => false,
                Permit::Probe => true,
                Permit::Wait { until } => {
                    not_before = until.map_or(f64::INFINITY, |d| d.as_secs_f64());
                    continue;
                }
                Permit::GiveUp => {
                    run.gave_up = Some(now);
                    break;
                }
            };
            let (outcome, latency) = receiver.arrive(now);
            late = JITTER * dice.roll();
            in_flight += 1;
            run.second(now).sent += 1;
            run.sends.push(now);
            queue.push(Reverse((nanos(now + latency), pending.len())));
            pending.push((now, latency, outcome, probe, in_flight - 1));
            continue;
        }
        let Some(Reverse((_, id))) = queue.pop() else { break };
        let (sent, latency, outcome, probe, others) = pending[id];
        now = sent + latency;
        if now >= duration {
            break;
        }
        in_flight -= 1;
        not_before = 0.0;
        receiver.leave(now, outcome);
        let second = run.second(now);
        if outcome == Signal::Delivered {
            second.delivered += 1;
            second.latency += latency;
        } else {
            second.refused += 1;
        }
        let at = Duration::from_secs_f64(now);
        if let Pacing::Auto(c) = &mut pacing {
            c.record(at, outcome, Duration::from_secs_f64(latency), others as u32);
        }
        let was_out = outage.is_out();
        match outage.record(at, outcome, probe) {
            OutageState::Outage { .. } if !was_out => run.entered_outage = Some(now),
            OutageState::Up if was_out => run.left_outage = Some(now),
            _ => {}
        }
    }
    run.second(duration - 1.0);
    if let Pacing::Auto(c) = &pacing {
        run.settled = Some(c.settled());
    }
    run
}

fn auto(max_rate: Option<f64>) -> Pacing {
    Pacing::Auto(Box::new(Controller::new(ControllerSettings { start: None, max_rate })))
}

/// The targets of `--rate auto` (docs/performance.md) for a receiver of steady capacity `c`.
fn assert_finds_capacity(name: &str, run: &Run, c: f64) {
    let goodput = run.goodput(20, 60);
    assert!(goodput >= 0.9 * c, "{name}: steady goodput {goodput:.1} of {c}");
    let refused = run.refused_share();
    assert!(refused <= 0.03, "{name}: {:.1}% of attempts refused", refused * 100.0);
}

#[test]
fn token_buckets_of_50_300_and_2000() {
    for c in [50.0, 300.0, 2000.0] {
        let run = simulate(&mut token_bucket(c), auto(None), 60.0, None);
        assert_finds_capacity(&format!("token bucket {c}/s"), &run, c);
        // What the next run starts from: near the capacity, not above what the receiver takes.
        let settled = run.settled.unwrap_or_default();
        assert!((0.75 * c..=1.1 * c).contains(&settled), "settled on {settled:.1} of {c}");
    }
}

#[test]
fn quota_per_fixed_window() {
    let mut quota = Quota { n: 3000, window: 10.0, current: -1, used: 0 };
    let run = simulate(&mut quota, auto(None), 60.0, None);
    assert_finds_capacity("quota 3000/10s", &run, 300.0);
    let settled = run.settled.unwrap_or_default();
    assert!((270.0..=375.0).contains(&settled), "settled on {settled:.1}");
}

#[test]
fn quota_of_400_per_2s() {
    let mut quota = Quota { n: 400, window: 2.0, current: -1, used: 0 };
    let run = simulate(&mut quota, auto(None), 60.0, None);
    assert_finds_capacity("quota 400/2s", &run, 200.0);
    // What the next run starts from, and the summary says: what the quota gives, not the bursts.
    let settled = run.settled.unwrap_or_default();
    assert!((180.0..=250.0).contains(&settled), "settled on {settled:.1}");
}

/// The model is not kinder than the real receiver: with sends a little late now and then, no
/// fixed rate gets 0.9 of its capacity without more than 3% refused.
#[test]
fn no_rate_alone_meets_a_max_in_flight_receiver() {
    for r in [440.0, 460.0, 480.0, 500.0, 550.0, 650.0] {
        let run = simulate(&mut in_flight_limit(10, 0.02), Pacing::Fixed(r), 30.0, None);
        let (goodput, refused) = (run.goodput(5, 30) / 500.0, run.refused_share());
        assert!(goodput < 0.9 || refused > 0.03, "at {r}/s: goodput {goodput:.3}, {refused:.3} refused");
    }
}

#[test]
fn max_in_flight() {
    let mut receiver = in_flight_limit(10, 0.02);
    let run = simulate(&mut receiver, auto(None), 60.0, None);
    assert_finds_capacity("10 in flight of 20 ms", &run, 500.0);
    // The cap does it, not the rate: once it was learned, hardly a request is refused.
    let refused: u32 = run.seconds[20..60].iter().map(|s| s.refused).sum();
    assert!(refused <= 20, "{refused} refused in the last 40 s");
}

#[test]
fn latency_knee_keeps_the_queue_short() {
    let mut receiver = Knee { capacity: 300.0, base: 0.01, busy_until: 0.0 };
    let run = simulate(&mut receiver, auto(None), 60.0, None);
    let goodput = run.goodput(20, 60);
    assert!(goodput >= 0.85 * 300.0, "goodput {goodput:.1}");
    // Without pacing, 32 in flight would queue 32/300 s ≈ 107 ms on top of the 10 ms.
    let latency = run.mean_latency(20, 60);
    assert!(latency < 0.05, "mean latency {latency:.3}");
}

#[test]
fn never_above_max_rate_in_any_second() {
    let run = simulate(&mut token_bucket(2000.0), auto(Some(150.0)), 30.0, None);
    // Any 151 requests in a row span at least a second: no one-second window, wherever it
    // starts, holds more than 150. (Less the timer's lateness: the rate's slots keep to it, and a
    // send leaves up to `JITTER` after its slot — the limiter's own burstiness, not the rate's.)
    for (i, pair) in run.sends.iter().zip(&run.sends[150..]).enumerate() {
        assert!(pair.1 - pair.0 >= 1.0 - JITTER, "151 requests from {:.3} s on (#{i}) within a second", pair.0);
    }
    assert!(run.goodput(10, 30) >= 0.9 * 150.0);
}

#[test]
fn capacity_steps_300_75_300() {
    let capacity = |t: f64| if (20.0..40.0).contains(&t) { 75.0 } else { 300.0 };
    let run = simulate(&mut stepped(capacity), auto(None), 60.0, None);
    for (step, until, c) in [(20, 40, 75.0), (40, 60, 300.0)] {
        let settled = (step + 1..until)
            .find(|&s| (0.8 * c..=1.05 * c).contains(&f64::from(run.seconds[s - 1].delivered)))
            .unwrap_or(until);
        assert!(settled - step <= 5, "after the step to {c}: {} s to settle", settled - step);
        let goodput = run.goodput(step + 5, until);
        assert!((0.8 * c..=1.05 * c).contains(&goodput), "after the step to {c}: goodput {goodput:.1}");
    }
    assert!(run.refused_share() <= 0.03, "{:.3}", run.refused_share());
}

#[test]
fn dead_receiver_pauses_probes_and_gives_up() {
    for pacing in [auto(None), Pacing::Fixed(20.0)] {
        let mut dead = Down { from: 0.0, to: f64::INFINITY, up: token_bucket(1.0) };
        let run = simulate(&mut dead, pacing, 120.0, Some(10.0));
        let entered = run.entered_outage.expect("an outage");
        assert!(entered <= 2.1, "entered at {entered}");
        let gave_up = run.gave_up.expect("gave up");
        assert!((10.0..11.0).contains(&gave_up), "gave up at {gave_up}");
        // One probe at a time at growing intervals: a handful of requests in the outage.
        let during = run.sent(entered.ceil() as usize, run.seconds.len());
        assert!(during <= 12, "{during} requests during the outage");
    }
}

#[test]
fn a_six_second_outage_pauses_and_resumes() {
    let mut receiver = Down { from: 20.0, to: 26.0, up: token_bucket(300.0) };
    let run = simulate(&mut receiver, auto(None), 40.0, Some(600.0));
    let (entered, left) = (run.entered_outage.expect("an outage"), run.left_outage.expect("it ended"));
    assert!(entered < 21.0 && (26.0..30.0).contains(&left), "{entered}..{left}");
    assert!(run.gave_up.is_none());
    // A few dozen requests in all while it lasts: the failures that reveal it, then the probes.
    let during = run.sent(20, 26);
    assert!(during <= 60, "{during} requests during the outage");
    let after = run.goodput(32, 40);
    assert!(after >= 0.8 * 300.0, "goodput after the outage: {after:.1}");
}

/// A background of random errors is not congestion: the rate must not fall for it.
#[test]
fn a_background_of_random_errors_is_not_congestion() {
    let fails = [
        Signal::Unavailable { status: 503, retry_after: None },
        Signal::Unavailable { status: 502, retry_after: None },
        Signal::Connection,
    ];
    for fail in fails {
        let noisy = || Noisy { share: 0.02, fail, dice: Dice(3) };
        let unlimited = simulate(&mut noisy(), Pacing::Fixed(f64::INFINITY), 30.0, None).goodput(10, 30);
        let run = simulate(&mut noisy(), auto(None), 30.0, None);
        let goodput = run.goodput(10, 30);
        assert!(goodput >= 0.8 * unlimited, "{fail:?}: {goodput:.0}/s of the {unlimited:.0}/s unpaced");
        assert!(run.entered_outage.is_none(), "{fail:?}: an outage at {:?}", run.entered_outage);
    }
}
