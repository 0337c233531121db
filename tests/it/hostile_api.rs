//! Hostile SavvyCal APIs, through the real binary: paging that cycles or never ends, page bodies
//! that never end or trickle, an API that answers 500 forever, redirects, a webhook lookup that
//! keeps failing, and a `Retry-After: 0`. The servers are [`crate::hostile`]'s.

use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::hostile::{Body, Seen, endless, full, redirect, retry_after, run, serve};
use crate::util::*;
use http::Response;
use savvy_replay_fake::{ApiFault, generate_bookings};

const EMPTY_ME: &str = r#"{"id":"user_1","email":"a@example.com","display_name":"A"}"#;

/// A page of `entries` (raw JSON) pointing to `after`.
fn page(entries: &[String], after: Option<&str>) -> Response<Body> {
    let after = after.map_or("null".to_owned(), |a| format!("{a:?}"));
    full(
        200,
        format!(r#"{{"entries":[{}],"metadata":{{"after":{after},"before":null,"limit":100}}}}"#, entries.join(",")),
    )
}

/// An API: `/v1/me` and an empty `/v1/webhooks` answer as SavvyCal would; `/v1/events` requests go
/// to `events`; anything else is 404.
async fn serve_api(events: impl Fn(&str) -> Response<Body> + Send + Sync + 'static) -> (String, Arc<Seen>) {
    serve(move |target| match target {
        t if t.starts_with("/v1/events") => events(t),
        t if t.starts_with("/v1/me") => full(200, EMPTY_ME),
        t if t.starts_with("/v1/webhooks") => page(&[], None),
        _ => full(404, r#"{"errors":[{"message":"Not found"}]}"#),
    })
    .await
}

/// The `after` query parameter of a request target.
fn after_of(target: &str) -> Option<String> {
    let url = url::Url::parse(&format!("http://x{target}")).unwrap();
    url.query_pairs().find(|(k, _)| k == "after").map(|(_, v)| v.into_owned())
}

/// `export` (default timeout and retries) to `out`.
pub(crate) async fn export(base: &str, out: &Path) -> Output {
    run(&["export", "--api-base", base, "--token", TOKEN, "--out", &out.display().to_string()]).await
}

/// [`export`] to a new file: its output, and how many lines it wrote.
async fn export_lines(base: &str) -> (Output, usize) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.ndjson");
    let out = export(base, &file).await;
    (out, std::fs::read_to_string(&file).unwrap_or_default().lines().count())
}

/// `run --dry-run` against the API at `base`, with a 1 s timeout and one retry.
async fn dry_run(base: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let args = set(run_args_to(base, "https://hooks.example.com/in", &dir.path().join("l.db")), "--retry-max", "50ms");
    run_strings(&[args, strings(&["--dry-run", "--token", TOKEN, "--timeout", "1s", "--max-retries", "1"])].concat())
        .await
}

/// [`run`] with owned arguments.
async fn run_strings(args: &[String]) -> Output {
    run(&args.iter().map(String::as_str).collect::<Vec<_>>()).await
}

fn events_requests(seen: &Seen) -> usize {
    seen.requests().iter().filter(|r| r.starts_with("/v1/events")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_that_cycles_is_a_source_error_and_export_stops() {
    let events = generate_bookings(3, 5);
    let e = events.clone();
    // No cursor → A → B → A → …
    let (base, seen) = serve_api(move |t| match after_of(t).as_deref() {
        None => page(&e[0..1], Some("A")),
        Some("A") => page(&e[1..2], Some("B")),
        Some(_) => page(&e[2..3], Some("A")),
    })
    .await;

    let (out, written) = export_lines(&base).await;

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("cursor \"A\" again"), "{stderr}");
    assert!(stderr.contains("page 1 already returned"), "{stderr}");
    assert_eq!(events_requests(&seen), 3);
    assert_eq!(written, 3, "each page exported once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endless_empty_pages_are_a_source_error() {
    let n = Arc::new(AtomicU64::new(0));
    let (base, seen) = serve_api(move |_| page(&[], Some(&format!("c{}", n.fetch_add(1, Ordering::Relaxed))))).await;
    let dir = tempfile::tempdir().unwrap();

    let out = export(&base, &dir.path().join("out.ndjson")).await;

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("4 empty pages in a row (pages 1 to 4"), "{stderr}");
    assert_eq!(events_requests(&seen), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_few_empty_pages_then_events_are_fine() {
    let events = generate_bookings(2, 6);
    let e = events.clone();
    let (base, _seen) = serve_api(move |t| match after_of(t).as_deref() {
        None => page(&[], Some("c1")),
        Some("c1") => page(&[], Some("c2")),
        Some("c2") => page(&[], Some("c3")),
        Some("c3") => page(&e, None),
        Some(_) => full(404, ""),
    })
    .await;

    let (out, written) = export_lines(&base).await;

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(written, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_body_that_never_ends_is_capped() {
    let (base, _seen) = serve_api(|_| endless(200, &[b' '; 64 * 1024], Duration::ZERO)).await;
    let dir = tempfile::tempdir().unwrap();

    let out = export(&base, &dir.path().join("out.ndjson")).await;

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("larger than 64 MiB"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_body_that_trickles_is_bounded_by_the_timeout_which_says_so() {
    let (base, seen) = serve_api(|_| endless(200, b" ", Duration::from_millis(100))).await;

    let out = dry_run(&base).await;

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("timed out after 1s reading the response body"), "{stderr}");
    assert!(!stderr.contains("decoding"), "{stderr}");
    assert_eq!(events_requests(&seen), 2, "one retry, then the source error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_that_answers_500_is_said_to_answer_not_to_be_unreachable() {
    let faults = (0..10).map(|i| (i, ApiFault::Status { code: 500, retry_after: None, text_plain: false })).collect();
    let api = api(generate_bookings(3, 1), faults).await;

    let out = dry_run(&api.base_url()).await;

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("still answered HTTP 500 after 2 attempts"), "{stderr}");
    assert!(!stderr.contains("could not be reached"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_redirect_names_where_it_pointed() {
    let (base, _seen) = serve_api(|_| redirect(302, "https://api.elsewhere.example/v1/events")).await;
    let dir = tempfile::tempdir().unwrap();

    let out = export(&base, &dir.path().join("out.ndjson")).await;

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("HTTP 302") && stderr.contains("redirected to https://api.elsewhere.example/v1/events"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_webhook_lookup_says_each_retry_off_a_terminal_unless_quiet() {
    let (base, _seen) = serve(|target| match target {
        t if t.starts_with("/v1/webhooks") => full(503, r#"{"errors":[{"message":"Service Unavailable"}]}"#),
        _ => full(200, EMPTY_ME),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let args = set(run_args_to(&base, "https://hooks.example.com/in", &dir.path().join("l.db")), "--retry-max", "20ms");
    let args = [args, strings(&["--token", TOKEN, "--max-retries", "2"])].concat();

    let out = run_strings(&args).await;

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    // The API answered, so a 503 is waited out: each retry is a line, saying what is waited for.
    let retries: Vec<&str> = stderr.lines().filter(|l| l.starts_with("Looking up the webhook at ")).collect();
    assert_eq!(retries.len(), 2, "{stderr}");
    assert!(retries[0].contains(&base) && retries[0].contains("HTTP 503; attempt 2 of 3"), "{stderr}");
    assert!(stderr.contains("still answered HTTP 503 after 3 attempts"), "{stderr}");

    let quiet = run_strings(&[args, strings(&["-q"])].concat()).await;
    let stderr = text(&quiet.stderr);
    assert_eq!(quiet.status.code(), Some(3), "{stderr}");
    assert!(!stderr.contains("Looking up the webhook at"), "-q: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_answering_retry_after_zero_for_a_moment_does_not_end_the_run() {
    let events = generate_bookings(3, 4);
    let first = Arc::new(Mutex::new(None::<std::time::Instant>));
    let (base, seen) = serve_api(move |_| {
        let start = *first.lock().unwrap().get_or_insert_with(std::time::Instant::now);
        if start.elapsed() < Duration::from_millis(300) { retry_after(429, "0") } else { page(&events, None) }
    })
    .await;

    let (out, written) = export_lines(&base).await;

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(written, 3);
    assert!(events_requests(&seen) <= 3, "retried no faster than the backoff: {:?}", seen.requests());
}
