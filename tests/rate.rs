//! The rate limit as the receiver sees it. In a file of its own so no other test competes for the
//! CPU while it measures arrival times.

mod common;

use std::time::Duration;

use common::*;
use savvy_replay::fake::{ReceiverConfig, generate_bookings};
use savvy_replay::{Rate, RateSetting};
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_spreads_requests_and_never_exceeds_it() {
    let events = generate_bookings(300, 11);
    let api = api(events, vec![]).await;
    let rcv = receiver(ReceiverConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&api, &rcv, &dir.path().join("l.db"));
    cfg.rate = RateSetting::Fixed(Rate::per_second(200.0));
    cfg.burst = 1;

    let report = savvy_replay::run(cfg, CancellationToken::new()).await.unwrap();
    assert_eq!(report.summary.delivered, 300);

    let mut at: Vec<_> = rcv.deliveries().iter().map(|d| d.at).collect();
    at.sort();
    let span = at[at.len() - 1] - at[0];
    // 299 gaps of 5 ms: ~1.5 s, never faster. No upper bound: a busy machine may make it slower,
    // and a wall-clock cap would fail for that rather than for anything the limiter did.
    assert!(span >= Duration::from_millis(1400), "300 requests at 200/s took only {span:?}");
    let max_window =
        (0..at.len()).map(|i| at[i..].iter().take_while(|t| **t - at[i] < Duration::from_secs(1)).count()).max();
    assert!(max_window.unwrap() <= 201, "{max_window:?} requests in one second");
}
