//! The replay pipeline in-process against real loopback servers: paging, byte-exact payloads, the
//! envelope and signature, rate limiting, retries and API faults.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::util::*;
use savvy_replay::signature;
use savvy_replay_fake::{ApiFault, ReceiverConfig, generate_bookings};
use tokio_util::sync::CancellationToken;

/// Events with what lossy JSON handling would break: a 30-digit number, key order, unknown keys,
/// non-ASCII text and escapes.
fn odd_events() -> Vec<String> {
    vec![
        r#"{"zeta":true,"id":"event_ODD1","created_at":"2021-01-01T00:00:00Z","start_at":"2021-01-02T10:00:00Z","state":"confirmed","big":123456789012345678901234567890,"price":1.10}"#.into(),
        r#"{"id":"event_ODD2","start_at":"2030-05-05T10:00:00Z","created_at":"2021-01-01T00:00:01Z","state":"canceled","summary":"Zoë Åkesson × 李雷 \u00e9\n","x-unknown":{"nested":[1,{"k":null}]}}"#.into(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_once_byte_identical_and_signed() {
    let mut events = generate_bookings(2100, 7);
    events.extend(odd_events());
    // The generated history really mixes what the API hides by default.
    let all = events.join("\n");
    assert!(all.contains(r#""state":"canceled""#) && all.contains(r#""state":"confirmed""#));
    let (api, rcv, dir) = scene(events.clone(), vec![]).await;

    let report =
        savvy_replay::run(config(&api, &rcv, &dir.path().join("l.db")), CancellationToken::new()).await.unwrap();

    assert_eq!(report.exit_code(), 0);
    assert_eq!(report.summary.events, events.len() as u64);
    assert_eq!(report.summary.delivered, events.len() as u64);
    assert_eq!(report.summary.status_codes.get("200"), Some(&(events.len() as u64)));
    // 22 pages of 100, each asking for everything, oldest first.
    let queries = api.queries();
    assert!(queries.len() >= 22, "{} pages", queries.len());
    for q in &queries {
        for part in ["limit=100", "period=all", "state=all", "attendance=any", "direction=asc"] {
            assert!(q.contains(part), "{q} lacks {part}");
        }
    }
    assert!(queries[1].contains("after="));

    let deliveries = rcv.deliveries();
    assert_eq!(deliveries.len(), events.len(), "one request per event");
    let by_id: std::collections::HashMap<String, &String> = events.iter().map(|e| (id_of(e), e)).collect();
    let mut seen = HashSet::new();
    for d in &deliveries {
        assert_eq!(d.signature_ok, Some(true));
        // The signature header is over exactly the bytes received.
        let sig = d.headers[signature::HEADER].to_str().unwrap();
        assert_eq!(sig, documented_signature(SECRET, &d.body));
        let body: Body<'_> = serde_json::from_slice(&d.body).unwrap();
        let id = event_id(d);
        assert!(seen.insert(id.clone()), "{id} twice");
        assert_eq!(body.payload.get(), by_id[&id].as_str(), "payload of {id} changed");
        assert_eq!(body.kind, "event.created");
        assert_eq!(body.version, "2020-11-18");
        assert_eq!(body.id, savvy_replay::envelope_id("event.created", &id));
        assert_eq!(d.headers["idempotency-key"], body.id.as_str());
        assert_eq!(d.headers["content-type"], "application/json");
        assert_eq!(d.headers["user-agent"], "SavvyCal Webhooks (https://savvycal.com)");
        let created: serde_json::Value = serde_json::from_str(by_id[&id]).unwrap();
        assert_eq!(body.occurred_at, created["created_at"].as_str().unwrap());
    }
    assert_eq!(seen.len(), events.len());
}

/// The log lines the library wrote in this process, each with the moment it was written.
static LOG: Mutex<Vec<(Instant, String)>> = Mutex::new(Vec::new());

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().push((Instant::now(), String::from_utf8_lossy(buf).into_owned()));
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Capture the library's log (info and up) for this test process; once.
fn capture_log() {
    let _ = tracing_subscriber::fmt().with_max_level(tracing::Level::INFO).with_writer(|| Capture).try_init();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_and_retry_after_is_honoured() {
    // The log subscriber is global: alone, so only this run's lines are in the log.
    if !alone("replay::transient_failures_are_retried_and_retry_after_is_honoured").await {
        return;
    }
    capture_log();
    let events = generate_bookings(400, 3);
    let api = api(events, vec![]).await;
    let rcv = receiver(ReceiverConfig {
        fail_rate: 0.2,
        drop_rate: 0.05,
        retry_after_secs: 1,
        seed: 42,
        ..signed_receiver()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();

    let report =
        savvy_replay::run(config(&api, &rcv, &dir.path().join("l.db")), CancellationToken::new()).await.unwrap();

    assert_eq!(report.exit_code(), 0, "{:?}", report.summary);
    assert_eq!(report.summary.delivered, 400);
    assert!(report.summary.retries > 0);
    let deliveries = rcv.deliveries();
    let accepted = accepted_per_event(&deliveries);
    assert_eq!(accepted.len(), 400, "every event delivered");
    assert!(deliveries.iter().any(|d| d.status == 0), "some connections were dropped");
    let too_many: Vec<_> = deliveries.iter().filter(|d| d.status == 429).collect();
    assert!(!too_many.is_empty(), "some 429s were sent");
    assert!(deliveries.iter().any(|d| d.status == 503));
    // After a 429 + Retry-After: 1, that event is not tried again within the second — and the
    // whole pool held back: nothing at all arrives after the 429 within the pause but requests
    // that were already on the way. Judged by order, not by how fast the worker took the 429 in:
    // its worker logs the retry only after pausing the pool, and the pause lasts at least until a
    // second after the 429 arrived. Between the two, what arrives passed the gate before the
    // pause: at most one request from each of the other workers.
    let log = LOG.lock().unwrap().clone();
    let concurrency = 8;
    for t in &too_many {
        let id = event_id(t);
        for later in deliveries.iter().filter(|d| d.at > t.at && event_id(d) == id) {
            assert!(later.at - t.at >= Duration::from_secs(1), "{id} retried after {:?}", later.at - t.at);
        }
        let paused = log
            .iter()
            .find(|(at, line)| *at > t.at && line.contains(&format!("{id}: HTTP 429")))
            .map(|(at, _)| *at)
            .unwrap_or_else(|| panic!("no retry line for the 429 of {id}"));
        let pause_ends = t.at + Duration::from_secs(1);
        let during_pause = deliveries.iter().filter(|d| d.at > paused && d.at < pause_ends).count();
        assert!(
            during_pause < concurrency,
            "{during_pause} requests arrived while the pool was paused (after {id}'s 429 was taken in)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_422_is_not_retried_and_fails_the_run() {
    let events = generate_bookings(50, 5);
    let rejected: Vec<String> = events.iter().take(3).map(|e| id_of(e)).collect();
    let api = api(events, vec![]).await;
    let rcv = receiver(ReceiverConfig { reject_ids: rejected.clone(), ..signed_receiver() }).await;
    let dir = tempfile::tempdir().unwrap();

    let report =
        savvy_replay::run(config(&api, &rcv, &dir.path().join("l.db")), CancellationToken::new()).await.unwrap();

    assert_eq!(report.exit_code(), 1);
    assert_eq!((report.summary.delivered, report.summary.failed), (47, 3));
    assert_eq!(report.summary.status_codes.get("422"), Some(&3));
    for id in &rejected {
        let tries = rcv.deliveries().iter().filter(|d| &event_id(d) == id).count();
        assert_eq!(tries, 1, "{id} was retried");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_429_502_and_dropped_pages_are_retried() {
    let events = generate_bookings(450, 9);
    let faults = vec![
        (1, ApiFault::Status { code: 429, retry_after: Some(1), text_plain: false }),
        (3, ApiFault::Status { code: 502, retry_after: None, text_plain: true }),
        (4, ApiFault::Drop),
        (5, ApiFault::Status { code: 503, retry_after: None, text_plain: false }),
    ];
    let (api, rcv, dir) = scene(events, faults).await;

    let report =
        savvy_replay::run(config(&api, &rcv, &dir.path().join("l.db")), CancellationToken::new()).await.unwrap();

    assert_eq!(report.exit_code(), 0);
    assert!(report.source_error.is_none());
    assert_eq!(report.summary.delivered, 450);
    assert_eq!(api.events_requests(), 5 + 4, "five pages plus four retried faults");
    assert_eq!(accepted_per_event(&rcv.deliveries()).len(), 450);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_page_ends_with_source_error_after_delivering_what_came_before() {
    let events = generate_bookings(250, 9);
    let (api, rcv, dir) = scene(events, vec![(1, ApiFault::Malformed)]).await;

    let report =
        savvy_replay::run(config(&api, &rcv, &dir.path().join("l.db")), CancellationToken::new()).await.unwrap();

    assert_eq!(report.exit_code(), 3);
    assert_eq!(report.summary.delivered, 100, "the first page was delivered");
    assert!(report.source_error.unwrap().to_string().contains("not a page"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_signing_secret_is_caught_by_the_receiver() {
    let (api, rcv, dir) = scene(generate_bookings(5, 1), vec![]).await;
    let mut cfg = config(&api, &rcv, &dir.path().join("l.db"));
    cfg.signing_secret = Some("whsec_wrong".to_owned().into());

    let report = savvy_replay::run(cfg, CancellationToken::new()).await.unwrap();

    // Every first answer a 401: the run stops (exit 2) with the events pending, not failed.
    assert_eq!((report.summary.failed, report.summary.delivered, report.exit_code()), (0, 0, 2));
    assert!(!rcv.deliveries().is_empty());
    assert!(rcv.deliveries().iter().all(|d| d.signature_ok == Some(false)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selection_by_creation_time_and_limit() {
    let events: Vec<String> = (0..30)
        .map(|i| {
            format!(
                r#"{{"id":"event_{i:02}","created_at":"2025-01-{:02}T12:00:00Z","start_at":"2025-02-01T00:00:00Z"}}"#,
                i + 1
            )
        })
        .collect();
    let (api, rcv, dir) = scene(events, vec![]).await;
    let mut cfg = config(&api, &rcv, &dir.path().join("l.db"));
    cfg.select.created_after = Some("2025-01-05T00:00:00Z".parse().unwrap());
    cfg.select.created_before = Some("2025-01-20T00:00:00Z".parse().unwrap());

    let report = savvy_replay::run(cfg, CancellationToken::new()).await.unwrap();
    let got: HashSet<String> = rcv.deliveries().iter().map(event_id).collect();
    let want: HashSet<String> = (4..19).map(|i| format!("event_{i:02}")).collect();
    assert_eq!(got, want);
    assert_eq!(report.summary.events, 15);

    let mut cfg = config(&api, &rcv, &dir.path().join("l2.db"));
    cfg.select.limit = Some(7);
    let report = savvy_replay::run(cfg, CancellationToken::new()).await.unwrap();
    assert_eq!((report.summary.events, report.summary.delivered), (7, 7));
}
