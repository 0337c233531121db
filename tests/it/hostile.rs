//! Hostile peers, through the real binary: receivers whose answers are huge, slow, redirecting or
//! refusing, input that is malformed or slow, and files of personal data left readable. Each
//! server here is a few lines of hyper that misbehave on purpose; [`crate::hostile_api`] turns
//! them on the SavvyCal API.

use std::convert::Infallible;
use std::io::Write as _;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::hostile_api::export;
use crate::util::*;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use savvy_replay_fake::{ReceiverConfig, generate_bookings};
use tokio::net::TcpListener;

pub(crate) type Body = BoxBody<Bytes, Infallible>;

/// What a hostile server saw: each request's path and query, and each POSTed envelope's event id.
#[derive(Default)]
pub(crate) struct Seen {
    requests: Mutex<Vec<String>>,
    posted: Mutex<Vec<String>>,
}

impl Seen {
    pub(crate) fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
    pub(crate) fn posted(&self) -> Vec<String> {
        self.posted.lock().unwrap().clone()
    }
}

/// Serve `answer(path_and_query)` on loopback; the base URL and what was seen.
pub(crate) async fn serve(answer: impl Fn(&str) -> Response<Body> + Send + Sync + 'static) -> (String, Arc<Seen>) {
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

pub(crate) fn full(status: u16, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r
}

/// A redirect to `location`, with no body.
pub(crate) fn redirect(status: u16, location: &'static str) -> Response<Body> {
    let mut r = full(status, "");
    r.headers_mut().insert(http::header::LOCATION, http::HeaderValue::from_static(location));
    r
}

/// A body that sends `chunk` every `every` and never ends.
pub(crate) fn endless(status: u16, chunk: &'static [u8], every: Duration) -> Response<Body> {
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

/// The binary with no token in the environment (nothing here should reach a real API), its output
/// piped, killed when dropped.
fn command(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(args).env_remove("SAVVYCAL_TOKEN").env("SAVVYCAL_WEBHOOK_SECRET", SECRET);
    cmd.stdin(std::process::Stdio::null()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    cmd.kill_on_drop(true);
    cmd
}

/// Run [`command`], and kill it if it has not finished in a minute: a run that never ends is the
/// bug some tests catch.
pub(crate) async fn run(args: &[&str]) -> Output {
    let child = command(args).spawn().unwrap();
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
    let ledger = dir.path().join("l.db").display().to_string();
    let args = ["run", "--input", "-", "--webhook-url", &rcv.url(), "--rate", "0", "--json", "--ledger", &ledger];
    let mut child = command(&args).stdin(std::process::Stdio::piped()).spawn().unwrap();
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

// ---- Retry-After: 0 or a past date: "now", but never faster than the backoff (the API's in hostile_api) ----

/// `status` with a `Retry-After` of `value`.
pub(crate) fn retry_after(status: u16, value: &'static str) -> Response<Body> {
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
