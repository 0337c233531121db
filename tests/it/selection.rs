//! Nothing dropped silently and one delivery per event id per run (docs/GUIDE.md, "Selection"),
//! through the real binary, from the fake API and from `--input`.

use crate::util::*;
use savvy_replay_fake::{ReceiverConfig, generate_bookings};
use serde_json::Value;

fn set(raw: &str, key: &str, value: Option<Value>) -> String {
    let mut v: Value = serde_json::from_str(raw).unwrap();
    let obj = v.as_object_mut().unwrap();
    match value {
        Some(value) => obj.insert(key.to_owned(), value),
        None => obj.remove(key),
    };
    v.to_string()
}

/// Generated events, in the order the API (and our NDJSON file) gives them: by `start_at`.
fn ordered(n: usize, seed: u64) -> Vec<String> {
    let mut events = generate_bookings(n, seed);
    let start = |raw: &String| {
        let v: Value = serde_json::from_str(raw).unwrap();
        v["start_at"].as_str().unwrap().parse::<jiff::Timestamp>().unwrap()
    };
    events.sort_by_key(start);
    events
}

/// Three of the events lose their `created_at`: missing, null, an integer.
fn with_undated(mut events: Vec<String>) -> (Vec<String>, Vec<String>) {
    events[2] = set(&events[2], "created_at", None);
    events[5] = set(&events[5], "created_at", Some(Value::Null));
    events[7] = set(&events[7], "created_at", Some(Value::from(1_700_000_000)));
    let ids = [2, 5, 7].map(|i| id_of(&events[i])).to_vec();
    (events, ids)
}

fn input_args(dir: &std::path::Path, lines: &[String], rcv: &savvy_replay_fake::Receiver) -> Vec<String> {
    let mut args = input_run_args(dir, lines, rcv);
    args.extend(["--json", "--rate", "0"].map(String::from));
    args
}

fn assert_undated_reported(stderr: &str, ids: &[String]) {
    assert!(stderr.contains("3 events without a readable `created_at`"), "{stderr}");
    for id in ids {
        assert!(stderr.contains(id.as_str()), "{id} named: {stderr}");
    }
    assert!(stderr.contains("`created_at` is missing or null"), "{stderr}");
    assert!(stderr.contains("`created_at` is 1700000000, not an RFC 3339 time"), "{stderr}");
    assert!(!stderr.contains("not a JSON object"), "the field is named, not the whole event: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_time_filter_cannot_place_are_reported_not_sent_and_exit_3() {
    let (events, ids) = with_undated(ordered(12, 5));
    let rcv = receiver(ReceiverConfig::default()).await;

    // From the API.
    let api = api(events.clone(), vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = run_args(&api, &rcv, &dir.path().join("l.db"));
    args.extend(["--created-after", "2000-01-01T00:00:00Z", "--json"].map(String::from));
    let out = run_bin(&args).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["events"], 9);
    assert_eq!(summary(&out)["delivered"], 9);
    assert_eq!(rcv.stats().unique_accepted, 9);
    for d in rcv.deliveries() {
        assert!(!ids.contains(&event_id(&d)), "an undated event was sent");
    }
    assert_undated_reported(&text(&out.stderr), &ids);

    // `export` with the same selection: the file holds the 9, and the 3 are named (exit 3).
    let exported = dir.path().join("out.ndjson");
    let export = [
        "export",
        "--api-base",
        &api.base_url(),
        "--created-after",
        "2000-01-01T00:00:00Z",
        "--out",
        exported.to_str().unwrap(),
    ]
    .map(String::from);
    let out = run_bin(&export).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&exported).unwrap().lines().count(), 9);
    assert_undated_reported(&text(&out.stderr), &ids);

    // From a file, as a dry run: not just "9 events selected".
    let dir = tempfile::tempdir().unwrap();
    let mut args = input_args(dir.path(), &events, &rcv);
    args.extend(["--created-before", "2100-01-01T00:00:00Z", "--dry-run"].map(String::from));
    let out = run_bin(&args).await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_undated_reported(&text(&out.stderr), &ids);
    assert_eq!(rcv.stats().requests, 9, "a dry run sends nothing");

    // Without a time filter they are events like any other.
    args.retain(|a| !a.starts_with("2100") && a != "--created-before" && a != "--dry-run");
    let out = run_bin(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["delivered"], 12);
}

/// `events` with repeats of earlier ids: for each distance `d`, a copy of the event `d` places
/// after the first copy, carrying the first copy's id (d = 0: the same event twice in a row).
fn with_repeats(events: &[String], distances: &[usize]) -> (Vec<String>, usize) {
    let mut out = events.to_vec();
    // Insert from the back so the earlier positions stay put.
    let mut inserts: Vec<(usize, String)> = distances
        .iter()
        .enumerate()
        .map(|(k, &d)| {
            let first = 10 + 40 * k;
            let copy = set(&events[first + d], "id", Some(Value::from(id_of(&events[first]))));
            (first + d + 1, copy)
        })
        .collect();
    inserts.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    for (at, copy) in inserts {
        out.insert(at, copy);
    }
    (out, distances.len())
}

async fn check_each_id_sent_once(rcv: &savvy_replay_fake::Receiver, args: &[String], n: usize, repeats: usize) {
    let out = run_bin(args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = summary(&out);
    assert_eq!((s["events"].as_u64(), s["delivered"].as_u64()), (Some(n as u64), Some(n as u64)));
    assert_eq!(s["duplicates"], repeats as u64);
    assert_eq!(rcv.stats().requests, n as u64, "one request per id");
    assert_eq!(rcv.stats().unique_accepted, n as u64);
    assert!(text(&out.stderr).contains(&format!("duplicates {repeats}")), "{}", text(&out.stderr));

    // A rerun: everything was delivered by the earlier run, repeats included.
    let out = run_bin(args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = summary(&out);
    assert_eq!((s["skipped"].as_u64(), s["duplicates"].as_u64()), (Some((n + repeats) as u64), Some(0)));
    assert_eq!(rcv.stats().requests, n as u64, "the rerun sends nothing");

    // --fresh sends everything again, each id once.
    let mut fresh = args.to_vec();
    fresh.push("--fresh".into());
    let out = run_bin(&fresh).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["duplicates"], repeats as u64);
    assert_eq!(rcv.stats().requests, 2 * n as u64);
}

/// Repeats at distance 0 (same page), 1 page and 10 pages of 100, from the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_id_from_the_api_is_sent_once_and_counted() {
    const N: usize = 1_300;
    let (events, repeats) = with_repeats(&ordered(N, 6), &[0, 100, 1_000]);
    let api = api(events, vec![]).await;
    let rcv = receiver(ReceiverConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = run_args(&api, &rcv, &dir.path().join("l.db"));
    args.extend(["--json", "--rate", "0"].map(String::from));
    check_each_id_sent_once(&rcv, &args, N, repeats).await;
}

/// The same from a file (batches of 100 lines), plus an exact copy of a line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_event_id_in_a_file_is_sent_once_and_counted() {
    const N: usize = 1_300;
    let events = ordered(N, 7);
    let (mut lines, repeats) = with_repeats(&events, &[0, 100, 1_000]);
    lines.push(events[3].clone());
    let rcv = receiver(ReceiverConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let args = input_args(dir.path(), &lines, &rcv);
    check_each_id_sent_once(&rcv, &args, N, repeats + 1).await;
}

/// RFC 3339 sets no limit on fractional digits: twelve of them in a file's `created_at` and in
/// `--created-before`/`--created-after` are read to the nanosecond (they used to make the event
/// undated, exit 3, and the flag a usage error).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn created_at_with_twelve_fractional_digits_is_read_and_selected() {
    let mut events = ordered(3, 9);
    for (event, at) in events.iter_mut().zip(["09:00:00.123456789012", "10:30:00.123456789012", "12:00:00.5"]) {
        *event = set(event, "created_at", Some(Value::from(format!("2025-01-01T{at}Z"))));
    }
    let rcv = receiver(ReceiverConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = input_args(dir.path(), &events, &rcv);
    args.extend(
        [
            "--created-after",
            "2025-01-01T09:00:00.123456789999Z",
            "--created-before",
            "2025-01-01T11:00:00.000000000001Z",
        ]
        .map(String::from),
    );
    let out = run_bin(&args).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(summary(&out)["events"], 1, "{stderr}");
    let got: Vec<String> = rcv.deliveries().iter().map(event_id).collect();
    assert_eq!(got, [id_of(&events[1])]);
    let body: Value = serde_json::from_slice(&rcv.deliveries()[0].body).unwrap();
    assert_eq!(body["occurred_at"], "2025-01-01T10:30:00.123456789012Z", "the envelope keeps the event's own text");
}
