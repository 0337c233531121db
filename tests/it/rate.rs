//! The rate limit as the receiver sees it. In a file of its own so no other test competes for the
//! CPU while it measures arrival times.

use std::time::Duration;

use crate::util::*;
use savvy_replay::{Rate, RateMode};
use savvy_replay_fake::{ReceiverConfig, generate_bookings};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_spreads_requests_and_never_exceeds_it() {
    let events = generate_bookings(300, 11);
    let api = api(events, vec![]).await;
    let rcv = receiver(ReceiverConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&api, &rcv, &dir.path().join("l.db"));
    cfg.rate = RateMode::Fixed(Rate::per_second(200.0));
    cfg.burst = 1;

    let report = savvy_replay::run(cfg, CancellationToken::new()).await.unwrap();
    assert_eq!(report.summary.delivered, 300);

    // The sender's side, free of delivery delays: the run cannot end before the gate granted the
    // 300th request, (300 - burst - 1 catch-up cell) / 200 s after the start. Lower bounds only: a
    // busy machine can make them larger, never smaller.
    assert!(report.summary.elapsed_secs >= 1.48, "300 requests at 200/s in {}s", report.summary.elapsed_secs);
    // The receiver's side: 299 gaps of 5 ms, ~1.5 s, never much faster (the first arrival may
    // have been delayed more than the last). Counting requests per 1 s window at the receiver is
    // not done: a stalled receiver reads delayed requests in a bunch, which says nothing about the
    // sender; bursts are checked at the gate itself (`src/pacing/gate.rs` unit tests).
    let mut at: Vec<_> = rcv.deliveries().iter().map(|d| d.at).collect();
    at.sort();
    let span = at[at.len() - 1] - at[0];
    assert!(span >= Duration::from_millis(1400), "300 requests at 200/s took only {span:?}");
}
