//! Hostile peers, through the real binary: receivers whose answers are huge, slow, redirecting or
//! refusing; APIs whose paging cycles or never ends, whose page bodies never end, or that answer
//! 500 forever. Each server here is a few lines of hyper that misbehave on purpose.

use std::convert::Infallible;
use std::io::Write as _;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::util::*;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use savvy_replay_fake::{ApiFault, ReceiverConfig, generate_bookings};
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, Infallible>;

/// What a hostile server saw: each request's path and query, and each POSTed envelope's event id.
#[derive(Default)]
struct Seen {
    requests: Mutex<Vec<String>>,
    posted: Mutex<Vec<String>>,
}

impl Seen {
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
    fn posted(&self) -> Vec<String> {
        self.posted.lock().unwrap().clone()
    }
}

/// Serve `answer(path_and_query)` on loopback; the base URL and what was seen.
async fn serve(answer: impl Fn(&str) -> Response<Body> + Send + Sync + 'static) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Seen::default());
    let answer = Arc::new(answer);
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (seen, answer) = (s.clone(), answer.clone());
            let service = service_fn(move |req: Request<Incoming>| {
                let (seen, answer) = (seen.clone(), answer.clone());
                async move {
                    let target = req.uri().path_and_query().map_or("/".to_owned(), |p| p.to_string());
                    seen.requests.lock().unwrap().push(target.clone());
                    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                        && let Some(id) = v["payload"]["id"].as_str()
                    {
                        seen.posted.lock().unwrap().push(id.to_owned());
                    }
                    Ok::<_, Infallible>(answer(&target))
                }
            });
            tokio::spawn(async move {
                let _ = http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    (base, seen)
}

fn full(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}

/// A redirect to `location`, with no body.
fn redirect(status: u16, location: &'static str) -> Response<Body> {
    let mut r = full(status, "");
    r.headers_mut().insert(http::header::LOCATION, http::HeaderValue::from_static(location));
    r
}

/// A body that sends `chunk` every `every` and never ends.
fn endless(status: u16, chunk: &'static [u8], every: Duration) -> Response<Body> {
    let stream = futures_util::stream::unfold(0u64, move |n| async move {
        if n > 0 && !every.is_zero() {
            tokio::time::sleep(every).await;
        }
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from_static(chunk))), n + 1))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

/// A body that announces `len` bytes, sends a few, and then hangs.
fn stalled(status: u16, len: usize) -> Response<Body> {
    let stream = futures_util::stream::unfold(0u64, move |n| async move {
        if n > 0 {
            std::future::pending::<()>().await;
        }
        Some((Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"{\"ok\":"))), n + 1))
    });
    let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert(http::header::CONTENT_LENGTH, len.into());
    r
}

/// A file of `n` generated events, one per line.
fn events_file(dir: &Path, n: usize) -> (std::path::PathBuf, Vec<String>) {
    let events = generate_bookings(n, 8);
    let path = dir.join("events.ndjson");
    let mut f = std::fs::File::create(&path).unwrap();
    for e in &events {
        writeln!(f, "{e}").unwrap();
    }
    (path, events.iter().map(|e| id_of(e)).collect())
}

/// Run the binary with no token in the environment (nothing here should reach a real API), and
/// kill it if it has not finished in a minute: a run that never ends is the bug some tests catch.
async fn run(args: &[&str]) -> Output {
    let child = tokio::process::Command::new(bin())
        .args(args)
        .env_remove("SAVVYCAL_TOKEN")
        .env("SAVVYCAL_WEBHOOK_SECRET", SECRET)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(60), child.wait_with_output()).await {
        Ok(out) => out.unwrap(),
        Err(_) => panic!("savvy-replay {args:?} did not finish in 60s"),
    }
}

/// `run --input FILE` to `webhook` with a short timeout and two retries at most.
async fn replay_file(file: &Path, webhook: &str, ledger: &Path, extra: &[&str]) -> Output {
    let (file, ledger) = (file.display().to_string(), ledger.display().to_string());
    let mut args = vec![
        "run",
        "--input",
        &file,
        "--webhook-url",
        webhook,
        "--ledger",
        &ledger,
        "--rate",
        "0",
        "--timeout",
        "1s",
        "--max-retries",
        "2",
        "--retry-initial",
        "10ms",
        "--retry-max",
        "50ms",
        "--json",
    ];
    args.extend_from_slice(extra);
    run(&args).await
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

// ---- the receiver: the status line decides ----

/// Three events to a receiver that answers every POST with `answer`: each is delivered, once.
async fn delivered_once(answer: impl Fn(&str) -> Response<Body> + Send + Sync + 'static) {
    let (base, seen) = serve(answer).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, ids) = events_file(dir.path(), 3);

    let out = replay_file(&file, &format!("{base}/hook"), &dir.path().join("l.db"), &[]).await;

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["delivered"], 3);
    assert_eq!(sorted(seen.posted()), sorted(ids), "each event POSTed exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_with_a_huge_body_is_delivered_once() {
    delivered_once(|_| full(200, vec![b'x'; 2 << 20])).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2xx_whose_body_never_finishes_is_delivered_once() {
    delivered_once(|_| stalled(200, 1000)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_422_with_a_huge_body_fails_once_and_status_says_so_in_words() {
    let mut big = br#"{"errors":[{"message":"unprocessable"}],"pad":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 2 << 20));
    big.extend_from_slice(b"\"}");
    let big = Bytes::from(big);
    let (base, seen) = serve(move |_| full(422, big.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, ids) = events_file(dir.path(), 3);
    let ledger = dir.path().join("l.db");

    let out = replay_file(&file, &format!("{base}/hook"), &ledger, &[]).await;

    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["failed"], 3);
    assert_eq!(sorted(seen.posted()), sorted(ids), "each event POSTed exactly once: a 422 is not retried");
    let status = run(&["status", "--ledger", &ledger.display().to_string()]).await;
    let shown = text(&status.stdout);
    assert!(shown.contains("after 1 attempt: HTTP 422"), "{shown}");
    assert!(!shown.contains("1 attempts"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_says_how_many_attempts_once() {
    let (base, _seen) = serve(|_| full(500, r#"{"errors":[{"message":"boom"}]}"#)).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = events_file(dir.path(), 1);
    let ledger = dir.path().join("l.db");

    let out = replay_file(&file, &format!("{base}/hook"), &ledger, &[]).await;

    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("1 event failed for good"), "{}", text(&out.stderr));
    let status = run(&["status", "--ledger", &ledger.display().to_string()]).await;
    let shown = text(&status.stdout);
    assert!(shown.contains("after 3 attempts: HTTP 500: boom\n"), "{shown}");
    assert_eq!(shown.matches("3 attempts").count(), 1, "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_names_where_it_pointed() {
    let (base, seen) = serve(|_| redirect(301, "https://elsewhere.example/new-hook")).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = events_file(dir.path(), 1);
    let ledger = dir.path().join("l.db");

    let out = replay_file(&file, &format!("{base}/hook"), &ledger, &[]).await;

    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert_eq!(seen.posted().len(), 1, "a redirect is not followed nor retried");
    let status = run(&["status", "--ledger", &ledger.display().to_string()]).await;
    let shown = text(&status.stdout);
    assert!(shown.contains("HTTP 301: redirected to https://elsewhere.example/new-hook"), "{shown}");
}

// ---- the API: paging never loops, bodies are bounded ----

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
async fn export(base: &str, out: &Path) -> Output {
    run(&["export", "--api-base", base, "--token", TOKEN, "--out", &out.display().to_string()]).await
}

/// `run --dry-run` against the API at `base`, with a 1 s timeout and one retry.
async fn dry_run(base: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("l.db").display().to_string();
    run(&[
        "run",
        "--ledger",
        &ledger,
        "--dry-run",
        "--api-base",
        base,
        "--token",
        TOKEN,
        "--webhook-url",
        "https://hooks.example.com/in",
        "--timeout",
        "1s",
        "--max-retries",
        "1",
        "--retry-initial",
        "10ms",
        "--retry-max",
        "50ms",
    ])
    .await
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
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.ndjson");

    let out = export(&base, &file).await;

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("cursor \"A\" again"), "{stderr}");
    assert!(stderr.contains("page 1 already returned"), "{stderr}");
    assert_eq!(events_requests(&seen), 3);
    let written = std::fs::read_to_string(&file).unwrap();
    assert_eq!(written.lines().count(), 3, "each page exported once: {written}");
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
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.ndjson");

    let out = export(&base, &file).await;

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 2);
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

// ---- the input: malformed bytes, a BOM, a directory, a slow pipe ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_utf8_is_a_malformed_line_and_a_bom_is_ignored() {
    let rcv = receiver(signed_receiver()).await;
    let dir = tempfile::tempdir().unwrap();
    let events = generate_bookings(3, 9);
    let mut bytes = b"\xEF\xBB\xBF".to_vec();
    bytes.extend_from_slice(events[0].as_bytes());
    bytes.extend_from_slice(b"\n{\"id\":\"event_bad\",\"summary\":\"caf\xe9\"}\n");
    bytes.extend_from_slice(events[1].as_bytes());
    bytes.push(b'\n');
    let file = dir.path().join("events.ndjson");
    std::fs::write(&file, bytes).unwrap();

    let out = replay_file(&file, &rcv.url(), &dir.path().join("l.db"), &[]).await;

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("line 2: the line is not valid UTF-8"), "{stderr}");
    assert!(stderr.contains("1 source entry was not an event"), "{stderr}");
    let delivered = sorted(accepted_per_event(&rcv.deliveries()).into_keys().collect());
    assert_eq!(delivered, sorted(vec![id_of(&events[0]), id_of(&events[1])]), "line 1 despite its BOM; not line 2");
}

#[tokio::test]
async fn input_naming_a_directory_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().display().to_string();
    let ledger = dir.path().join("l.db").display().to_string();

    let out = run(&["run", "--input", &input, "--webhook-url", "http://127.0.0.1:9/hook", "--ledger", &ledger]).await;

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is a directory"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_lines_go_out_as_they_arrive() {
    use tokio::io::AsyncWriteExt;
    let rcv = receiver(signed_receiver()).await;
    let dir = tempfile::tempdir().unwrap();
    let events = generate_bookings(3, 10);
    let mut child = tokio::process::Command::new(bin())
        .args(["run", "--input", "-", "--webhook-url", &rcv.url(), "--rate", "0", "--json", "--ledger"])
        .arg(dir.path().join("l.db"))
        .env_remove("SAVVYCAL_TOKEN")
        .env("SAVVYCAL_WEBHOOK_SECRET", SECRET)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();

    // Two lines, and the writer goes quiet with the pipe still open.
    for e in &events[..2] {
        stdin.write_all(format!("{e}\n").as_bytes()).await.unwrap();
    }
    stdin.flush().await.unwrap();
    wait_for(30, || rcv.deliveries().len() >= 2).await;
    // Then one more, and the end of the input.
    stdin.write_all(format!("{}\n", events[2]).as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["delivered"], 3);
    let delivered: Vec<String> = rcv.deliveries().iter().map(event_id).collect();
    assert_eq!(sorted(delivered.clone()), sorted(events.iter().map(|e| id_of(e)).collect()));
    assert_eq!(delivered[2], id_of(&events[2]), "the first two went out before the third was written");
}

// ---- personal data at rest ----

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ledger_and_written_events_are_the_owners_only() {
    // The umask is the whole process's: alone, so no other test's files are made under it.
    if !alone("hostile::the_ledger_and_written_events_are_the_owners_only").await {
        return;
    }
    // The usual umask, under which files were world-readable; children inherit it.
    // SAFETY: umask has no memory-safety preconditions.
    unsafe { libc::umask(0o022) };
    let rcv = receiver(ReceiverConfig { reject_ids: vec![], ..signed_receiver() }).await;
    let dir = tempfile::tempdir().unwrap();
    let (file, ids) = events_file(dir.path(), 2);
    rcv.set_reject_ids(vec![ids[0].clone()]);
    let state = dir.path().join("state");
    let ledger = state.join("ledger.db");

    let out = replay_file(&file, &rcv.url(), &ledger, &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));

    assert_eq!(mode(&state), 0o700);
    let files: Vec<_> = std::fs::read_dir(&state).unwrap().map(|e| e.unwrap().path()).collect();
    assert!(files.contains(&ledger), "{files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o600, "{}", f.display());
    }

    let failed_out = dir.path().join("failed.ndjson");
    let out =
        run(&["failed", "--ledger", &ledger.display().to_string(), "--out", &failed_out.display().to_string()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("Wrote 1 failed event to"), "{}", text(&out.stderr));
    assert_eq!(mode(&failed_out), 0o600);

    let api = api(generate_bookings(2, 3), vec![]).await;
    let export_out = dir.path().join("export.ndjson");
    let out = export(&api.base_url(), &export_out).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(mode(&export_out), 0o600);

    // A file that already exists keeps the mode its owner gave it.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&export_out, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = export(&api.base_url(), &export_out).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(mode(&export_out), 0o640);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_webhook_lookup_says_each_retry_off_a_terminal_unless_quiet() {
    let (base, _seen) = serve(|target| match target {
        t if t.starts_with("/v1/webhooks") => full(503, r#"{"errors":[{"message":"Service Unavailable"}]}"#),
        _ => full(200, EMPTY_ME),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("l.db").display().to_string();
    let args = [
        "run",
        "--ledger",
        &ledger,
        "--api-base",
        &base,
        "--token",
        TOKEN,
        "--webhook-url",
        "https://hooks.example.com/in",
        "--max-retries",
        "2",
        "--retry-initial",
        "10ms",
        "--retry-max",
        "20ms",
    ];

    let out = run(&args).await;

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    // The API answered, so a 503 is waited out: each retry is a line, saying what is waited for.
    let retries: Vec<&str> = stderr.lines().filter(|l| l.starts_with("Looking up the webhook at ")).collect();
    assert_eq!(retries.len(), 2, "{stderr}");
    assert!(retries[0].contains(&base) && retries[0].contains("HTTP 503; attempt 2 of 3"), "{stderr}");
    assert!(stderr.contains("still answered HTTP 503 after 3 attempts"), "{stderr}");

    let quiet = run(&[&args[..], &["-q"]].concat()).await;
    let stderr = text(&quiet.stderr);
    assert_eq!(quiet.status.code(), Some(3), "{stderr}");
    assert!(!stderr.contains("Looking up the webhook at"), "-q: {stderr}");
}

// ---- Retry-After: 0 or a past date: "now", but never faster than the backoff ----

/// `status` with a `Retry-After` of `value`.
fn retry_after(status: u16, value: &'static str) -> Response<Body> {
    let mut r = full(status, r#"{"error":"busy"}"#);
    r.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static(value));
    r
}

/// A receiver briefly overloaded: 429 with `Retry-After: value` for 2 s from its first request,
/// then 200. With the default retries (8, from 500 ms) at `--rate 200`, no event is lost.
async fn brief_overload_loses_nothing(value: &'static str) {
    let first = Arc::new(Mutex::new(None::<std::time::Instant>));
    let (base, seen) = serve(move |_| {
        let start = *first.lock().unwrap().get_or_insert_with(std::time::Instant::now);
        if start.elapsed() < Duration::from_secs(2) { retry_after(429, value) } else { full(200, "{}") }
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (file, ids) = events_file(dir.path(), 100);
    let (file, ledger) = (file.display().to_string(), dir.path().join("l.db").display().to_string());
    let hook = format!("{base}/hook");

    let out =
        run(&["run", "--input", &file, "--webhook-url", &hook, "--ledger", &ledger, "--rate", "200", "--json"]).await;

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = summary(&out);
    assert_eq!((s["delivered"].as_u64(), s["failed"].as_u64()), (Some(100), Some(0)), "{s}");
    let posted: std::collections::BTreeSet<String> = seen.posted().into_iter().collect();
    assert_eq!(posted, ids.into_iter().collect(), "every event reached the receiver");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answering_retry_after_zero_for_a_while_loses_no_event() {
    brief_overload_loses_nothing("0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answering_a_past_retry_after_date_for_a_while_loses_no_event() {
    brief_overload_loses_nothing("Wed, 21 Oct 2015 07:28:00 GMT").await;
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
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("out.ndjson");

    let out = export(&base, &file).await;

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(std::fs::read_to_string(&file).unwrap().lines().count(), 3);
    assert!(events_requests(&seen) <= 3, "retried no faster than the backoff: {:?}", seen.requests());
}
