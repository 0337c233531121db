//! Pacing with the real binary: `--rate auto` against a receiver with a capacity, an outage mid-run,
//! a dead webhook (exit 4), and the settled rate remembered across runs. Lenient on purpose: what
//! is asserted is counts and order, never how fast. Where a rate or a share is checked at all, the
//! floor is far below what a loaded machine does; the virtual-time simulation (`pacing::sim`)
//! holds the exact targets, deterministically.

use std::time::Duration;

use crate::util::*;
use savvy_replay_fake::{Receiver, ReceiverConfig, generate_bookings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_delivers_everything_to_a_receiver_with_a_capacity_and_remembers_where_it_settled() {
    let api = api(generate_bookings(250, 21), vec![]).await;
    let rcv = receiver(ReceiverConfig { capacity: Some(80.0), ..signed_receiver() }).await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("l.db");
    let mut args = run_args(&api, &rcv, &ledger);
    args.extend(strings(&["--rate", "auto", "--json", "-v", "--concurrency", "8"]));

    let out = run_bin(&args).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let s = summary(&out);
    assert_eq!((s["delivered"].as_u64(), s["failed"].as_u64()), (Some(250), Some(0)), "{stderr}");
    assert_eq!(accepted_per_event(&rcv.deliveries()).len(), 250);
    assert_eq!(s["rate"]["mode"], "auto");
    let settled = s["rate"]["final_per_sec"].as_f64().expect("an auto run says where it settled");
    assert!(settled > 0.0, "{s}");
    assert!(stderr.contains("--rate auto starts at 10.0/s"), "{stderr}");
    // Written like a count, as everywhere a person reads a rate.
    let shown = if settled < 10.0 {
        format!("{settled:.1}/s").replace(".0/s", "/s")
    } else {
        format!("{}/s", indicatif::HumanCount(settled.round() as u64))
    };
    assert!(stderr.contains(&format!("--rate auto settled on {shown}")), "{stderr}");

    // The next auto run to the same webhook starts where this one settled.
    args.push("--fresh".into());
    let out = run_bin(&args).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("--rate auto starts at {settled:.1}/s, where the last run for this target settled")),
        "{stderr}"
    );
    let dry = run_bin(&[args.clone(), strings(&["--dry-run"])].concat()).await;
    assert!(text(&dry.stderr).contains("starts from "), "{}", text(&dry.stderr));
    assert_eq!(summary(&dry)["rate"], serde_json::json!({"mode": "auto", "final_per_sec": null}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_mid_run_fails_no_event() {
    let api = api(generate_bookings(300, 22), vec![]).await;
    let rcv = receiver(signed_receiver()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = run_args(&api, &rcv, &dir.path().join("l.db"));
    // Two retries per event would not survive three seconds of 503s without the outage pause.
    args.extend(strings(&["--rate", "100", "--concurrency", "4", "--max-retries", "2", "--json"]));
    let args = set(set(args, "--retry-initial", "100ms"), "--retry-max", "500ms");
    let run = tokio::spawn(async move { run_bin(&args).await });
    // A whole-receiver outage of three seconds, once a third of the events are in.
    wait_for(30, || rcv.stats().accepted >= 100).await;
    rcv.set_down(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let during = rcv.stats().transient;
    rcv.set_down(false);

    let out = run.await.unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let s = summary(&out);
    assert_eq!((s["delivered"].as_u64(), s["failed"].as_u64()), (Some(300), Some(0)), "{stderr}");
    assert_eq!(accepted_per_event(&rcv.deliveries()).len(), 300);
    // The pool held and probed: the outage was noticed, then its end, in that order.
    let noticed = stderr.find("the webhook is unreachable (answering 503)").unwrap_or_else(|| panic!("{stderr}"));
    let ended = stderr.find("the webhook answers again").unwrap_or_else(|| panic!("{stderr}"));
    assert!(noticed < ended, "{stderr}");
    // At 100/s, three seconds of sending would be 300 requests; holding sends far fewer.
    assert!(during < 150, "{during} requests during the outage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_webhook_gives_up_with_exit_4_and_a_rerun_delivers_the_rest() {
    // A port with nothing listening on it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let url = format!("http://{addr}/webhook");
    let api = api(generate_bookings(30, 23), vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("l.db");
    let args =
        set(set(run_args_to(&api.base_url(), &url, &ledger), "--retry-initial", "100ms"), "--retry-max", "500ms");
    let args = [args, strings(&["--max-retries", "1", "--give-up-after", "3s", "--json"])].concat();

    let out = run_bin(&args).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("the webhook has been unreachable for 3s: connection refused"), "{stderr}");
    assert!(
        stderr.contains("Stopped after") && !stderr.contains("Done in"),
        "the summary says the run stopped: {stderr}"
    );
    let s = summary(&out);
    assert_eq!((s["delivered"].as_u64(), s["failed"].as_u64()), (Some(0), Some(0)), "no event failed: {stderr}");
    assert_eq!(s["interrupted"], false);
    let status = bin_status(&ledger).await;
    assert!(status["pending"].as_u64().unwrap() >= 1 && status["failed"] == 0, "{status}");

    // The webhook comes back: the same command delivers everything.
    let rcv = Receiver::start_on(addr, ReceiverConfig { record: true, ..signed_receiver() }).await.unwrap();
    let out = run_bin(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(accepted_per_event(&rcv.deliveries()).len(), 30);
}

/// `status --json` for the one target in `ledger`.
async fn bin_status(ledger: &std::path::Path) -> serde_json::Value {
    let out = run_bin(&strings(&["status", "--json", "--ledger", &ledger.display().to_string()])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_str(text(&out.stdout).lines().next().unwrap()).unwrap()
}

/// `run --rate auto` of `n` generated events into `rcv`; its summary and stderr, after checking it
/// lost none.
async fn auto_run_loses_nothing(rcv: &Receiver, n: usize, concurrency: &str) -> (serde_json::Value, String) {
    let api = api(generate_bookings(n, 23), vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = run_args(&api, rcv, &dir.path().join("l.db"));
    args.extend(strings(&["--rate", "auto", "--json", "--concurrency", concurrency]));
    let out = run_bin(&args).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let s = summary(&out);
    assert_eq!((s["delivered"].as_u64(), s["failed"].as_u64()), (Some(n as u64), Some(0)), "{stderr}");
    assert_eq!(accepted_per_event(&rcv.deliveries()).len(), n);
    (s, stderr)
}

/// A receiver with no limit that drops 2% of connections at random: retries, not a collapse.
/// What does not depend on the machine's speed: nothing lost, no retry but for a dropped
/// connection, and no outage pause. The rate it settles on is wall-clock, so its floor is
/// generous: a collapse settled at 30-40/s, a healthy run settles ten times above the floor even
/// on a loaded machine. `pacing::sim` holds the exact target (80% of the unpaced goodput), in
/// virtual time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_takes_a_background_of_random_resets_for_noise_not_congestion() {
    let rcv = receiver(ReceiverConfig { drop_rate: 0.02, seed: 9, ..signed_receiver() }).await;
    let (s, stderr) = auto_run_loses_nothing(&rcv, 1500, "16").await;
    let dropped = rcv.stats().dropped;
    assert!(dropped > 0, "the noise was there");
    let retries = s["retries"].as_u64().unwrap();
    assert!(retries <= dropped, "{retries} retries for {dropped} dropped connections: {s}");
    assert!(!stderr.contains("the webhook is unreachable"), "noise is not an outage: {stderr}");
    let settled = s["rate"]["final_per_sec"].as_f64().unwrap_or_default();
    assert!(settled >= 100.0, "settled on {settled:.1}/s: {s}");
}

/// A quota of 300 per fixed 2 s window: the receiver is not hammered once a window is used up,
/// and whole windows are spent. Counted on the receiver's own windows (from its first request).
///
/// The refusals do not depend on the machine's speed: once a window is used up the pool holds
/// instead of sending what will be refused (without the hold, the rest of each window would be
/// refused, about a third of all requests), and a slower machine sends less, so refuses less. How
/// much of each window is spent does depend on it: spending a window takes bursts of 300/s, which
/// a loaded 2-core machine running other tests beside this one does not always give; windows fall
/// short there with no refusal at all, the client and not the pacing falling behind. Running the
/// test alone in a child process would not help: the other tests keep running beside it. So the
/// floor on use is generous, well under the whole windows an idle machine spends; `pacing::sim`
/// (`quota_of_400_per_2s`) holds the exact use of a quota, deterministically, in virtual time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_spends_each_window_of_a_quota() {
    let quota = Some(savvy_replay_fake::Quota { n: 300, per: Duration::from_secs(2) });
    let rcv = receiver(ReceiverConfig { quota, ..signed_receiver() }).await;
    auto_run_loses_nothing(&rcv, 1200, "32").await;
    let deliveries = rcv.deliveries();
    let first = deliveries.iter().map(|d| d.at).min().unwrap();
    let mut per_window = std::collections::BTreeMap::<u64, (u32, u32)>::new();
    for d in &deliveries {
        let w = per_window.entry(d.at.duration_since(first).as_secs() / 2).or_default();
        if d.status == 200 { w.0 += 1 } else { w.1 += 1 }
    }
    let refused: u32 = per_window.values().map(|w| w.1).sum();
    assert!(f64::from(refused) <= 0.05 * deliveries.len() as f64, "{refused} refused: {per_window:?}");
    // Whole windows after the one slow start spends: all but the last, which the backlog ends.
    let full: Vec<u32> = per_window.values().skip(1).map(|w| w.0).collect();
    let full = &full[..full.len().saturating_sub(1)];
    let used = full.iter().sum::<u32>() as f64 / (300 * full.len().max(1)) as f64;
    assert!(used >= 0.6, "windows used {used:.2}: {per_window:?}");
}
