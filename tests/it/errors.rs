//! Errors as the user reads them at the end of a run: attempts without an HTTP answer counted by
//! cause (oha's "error distribution", the summary's `errors`), and a source that fails before
//! anything was sent reported by its error alone.

use crate::util::*;
use savvy_replay_fake::{ApiFault, generate_bookings};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// Read a request's head, through its blank line; false if the client went away first.
async fn read_head(stream: &mut tokio::net::TcpStream) -> bool {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    true
}

/// A webhook that reads each request's head and then resets the connection (`SO_LINGER` 0, so
/// closing sends RST): no attempt ever gets an HTTP answer.
async fn resetting_receiver() -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(async move {
                read_head(&mut stream).await;
                stream.set_zero_linger().unwrap();
                drop(stream);
            });
        }
    });
    (url, accepted)
}

/// Replay `n` generated events from a file to `url` with `retries` quick retries each; the JSON
/// summary is on stdout.
async fn replay_file(dir: &std::path::Path, n: usize, url: &str, retries: u32) -> std::process::Output {
    let input = dir.join("events.ndjson");
    std::fs::write(&input, generate_bookings(n, 3).join("\n") + "\n").unwrap();
    let args: Vec<String> = [
        "run",
        "--input",
        &input.display().to_string(),
        "--webhook-url",
        url,
        "--ledger",
        &dir.join("ledger.db").display().to_string(),
        "--rate",
        "0",
        "--max-retries",
        &retries.to_string(),
        "--retry-initial",
        "10ms",
        "--retry-max",
        "20ms",
        // A webhook that never answers is an outage: give up on it soon (exit 4).
        "--give-up-after",
        "1s",
        "--json",
    ]
    .map(String::from)
    .into();
    run_bin(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_resets_connections_shows_up_in_errors_by_cause() {
    let dir = tempfile::tempdir().unwrap();
    let (url, accepted) = resetting_receiver().await;
    let out = replay_file(dir.path(), 4, &url, 2).await;
    // Failed for good (1), or held as an outage until --give-up-after (4): either way no attempt
    // got an answer, and every one is counted under its cause.
    assert!(matches!(out.status.code(), Some(1 | 4)), "{}", text(&out.stderr));
    let s = summary(&out);
    let attempts = s["attempts"].as_u64().unwrap();
    assert!(attempts >= 4, "{s}");
    assert_eq!(s["delivered"], 0);
    assert_eq!(s["status_codes"], serde_json::json!({}));
    assert_eq!(s["errors"], serde_json::json!({"connection reset": attempts}), "{}", text(&out.stderr));
    assert!(accepted.load(std::sync::atomic::Ordering::Relaxed) >= attempts);
    let stderr = text(&out.stderr);
    let line = format!("no answer: connection reset ×{}", indicatif::HumanCount(attempts));
    assert!(stderr.contains(&line), "{stderr}");
}

/// [`replay_file`] to `path` on a port where nothing listens: the run fails (1) or gives up on
/// the webhook (4); its summary.
async fn replay_to_a_closed_port(dir: &std::path::Path, n: usize, path: &str, retries: u32) -> serde_json::Value {
    let out = replay_file(dir, n, &format!("http://127.0.0.1:{}{path}", closed_port()), retries).await;
    assert!(matches!(out.status.code(), Some(1 | 4)), "{}", text(&out.stderr));
    summary(&out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_counted_as_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = replay_to_a_closed_port(dir.path(), 1, "/", 1).await;
    assert_eq!(s["errors"], serde_json::json!({"connection refused": s["attempts"]}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_fails_before_anything_is_sent_prints_the_error_alone() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(generate_bookings(5, 5), vec![(0, ApiFault::Malformed)]).await;
    let rcv = receiver(signed_receiver()).await;
    let out = run_bin(&run_args(&api, &rcv, &dir.path().join("ledger.db"))).await;
    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(stderr.trim_start().starts_with("Error: "), "{stderr}");
    assert!(!stderr.contains("Done in") && !stderr.contains("delivered 0"), "{stderr}");
    assert!(rcv.deliveries().is_empty());
}

/// An "API" that answers every request with the same raw bytes (head and body), then closes.
async fn canned_api(answer: &'static [u8]) -> String {
    use tokio::io::AsyncWriteExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                if !read_head(&mut stream).await {
                    return;
                }
                let _ = stream.write_all(answer).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    base
}

async fn export_from(base: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["export", "--api-base", base];
    args.extend_from_slice(extra);
    let args: Vec<String> = args.into_iter().map(String::from).collect();
    run_bin(&args).await
}

/// A 200 with an HTML page (a captive portal, a wrong --api-base) is said to be HTML, from which
/// endpoint, with its content type and first bytes; it used to be only serde's "expected value at
/// line 1 column 1".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_html_answer_from_the_api_is_said_to_be_html() {
    let base = canned_api(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nConnection: close\r\n\r\n\
          <!DOCTYPE html>\n<html><head><title>Sign in to the guest Wi-Fi</title></head><body>Welcome, please accept the terms of use to continue</body></html>",
    )
    .await;
    let out = export_from(&base, &[]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("with HTML (content type text/html; charset=utf-8), not JSON"), "{stderr}");
    assert!(stderr.contains("page 1 of /v1/events") && stderr.contains(&format!("{base}/v1/events?")), "{stderr}");
    assert!(
        stderr.contains("`<!DOCTYPE html> <html><head><title>Sign in to the guest Wi-Fi</title></head><bod…`"),
        "{stderr}"
    );
    assert!(!stderr.contains("expected value") && !stderr.contains(TOKEN), "{stderr}");
}

/// A page over the 64 MiB cap suggests a smaller --page-size, naming the one in use; with a page
/// size of 1 there is nothing smaller to suggest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_over_the_cap_suggests_a_smaller_page_size() {
    let base = canned_api(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 70000000\r\nConnection: close\r\n\r\n{\"entries\":[",
    )
    .await;
    let out = export_from(&base, &["--page-size", "40"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("larger than 64 MiB"), "{stderr}");
    assert!(stderr.contains("--page-size is 40, try --page-size 10"), "{stderr}");

    let out = export_from(&base, &["--page-size", "1"]).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("larger than 64 MiB") && !stderr.contains("try --page-size"), "{stderr}");
}

/// Events that got at least one request, and the requests they got, as the ledger records them.
fn tried_in_ledger(ledger: &std::path::Path) -> (u64, u64) {
    let db = rusqlite::Connection::open(ledger).unwrap();
    let (n, sum): (i64, i64) = db
        .query_row("SELECT count(*), coalesce(sum(attempts), 0) FROM outcomes WHERE attempts > 0", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    (n as u64, sum as u64)
}

/// A first attempt is not a retry: retries = requests − events that got at least one. Against a
/// closed port the run waits out an outage and gives up (exit 4); a retry whose wait ended there
/// sent nothing and was once counted all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_requests_after_each_events_first_on_a_closed_port() {
    let dir = tempfile::tempdir().unwrap();
    let s = replay_to_a_closed_port(dir.path(), 8, "/hook", 3).await;
    let (tried, attempts) = tried_in_ledger(&dir.path().join("ledger.db"));
    assert!(tried >= 1, "{s}");
    assert_eq!(s["attempts"].as_u64(), Some(attempts), "{s}");
    assert_eq!(s["retries"].as_u64(), Some(attempts - tried), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_requests_after_each_events_first_against_a_flaky_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let rcv = receiver(savvy_replay_fake::ReceiverConfig {
        fail_rate: 0.5,
        retry_after_secs: 0,
        seed: 7,
        ..signed_receiver()
    })
    .await;
    let out = replay_file(dir.path(), 20, &rcv.url(), 10).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = summary(&out);
    let attempts = s["attempts"].as_u64().unwrap();
    assert!(attempts > 20, "the receiver failed some: {s}");
    assert_eq!(s["retries"].as_u64(), Some(attempts - 20), "{s}");
    let db = rusqlite::Connection::open(dir.path().join("ledger.db")).unwrap();
    let sum: i64 = db.query_row("SELECT sum(attempts) FROM outcomes", [], |r| r.get(0)).unwrap();
    assert_eq!(sum as u64, attempts);
}

/// Out of file descriptors (`ulimit -n` below `--concurrency`): said as ours to fix, counted under
/// its own key, and not taken for the webhook being down.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_is_named_as_a_local_limit() {
    let rcv = receiver(signed_receiver()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = input_run_args(dir.path(), &generate_bookings(300, 81), &rcv);
    args.extend(
        ["--concurrency", "64", "--rate", "0", "--max-retries", "2", "--retry-initial", "10ms", "--retry-max", "20ms"]
            .map(String::from),
    );
    args.extend(["--give-up-after", "10m", "--json"].map(String::from));
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(&args).env("SAVVYCAL_WEBHOOK_SECRET", SECRET).stdin(std::process::Stdio::null()).kill_on_drop(true);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit { rlim_cur: 40, rlim_max: 40 };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let out = tokio::time::timeout(std::time::Duration::from_secs(60), cmd.output())
        .await
        .expect("the run should not wait for an outage to end")
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(matches!(out.status.code(), Some(0 | 1)), "delivered or failed, not unreachable: {stderr}");
    let s = summary(&out);
    assert!(s["errors"]["too many open files"].as_u64().unwrap_or(0) > 0, "{s}");
    assert!(s["delivered"].as_u64().unwrap_or(0) > 0, "the workers with a connection deliver: {s}");
    assert!(!stderr.contains("unreachable"), "{stderr}");
    if out.status.code() == Some(1) {
        let ledger = dir.path().join("l.db");
        let status = savvy_replay::read_status(&ledger, 1).unwrap().unwrap();
        let said = status[0].open[0].last_error.clone().unwrap_or_default();
        assert!(said.contains("too many open files: raise `ulimit -n` or lower `--concurrency`"), "{said}");
    }
}

/// Run the binary with stderr piped and read it as it comes: (when the first line came, relative
/// to the start; everything; exit status). Killed after 30 s, so a run that waits out its retries
/// fails instead of hanging.
fn watch_stderr(args: &[&str]) -> (std::time::Duration, String, Option<i32>) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let started = Instant::now();
    let mut child = Command::new(bin())
        .args(args)
        .env("SAVVYCAL_TOKEN", TOKEN)
        .env_remove("SAVVYCAL_WEBHOOK_SECRET")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start savvy-replay");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = started + Duration::from_secs(30);
    let first = rx.recv_timeout(Duration::from_secs(30));
    let first_at = started.elapsed();
    let code = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after 30 s; stderr so far: {first:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut all = first.map(|l| l + "\n").unwrap_or_default();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        all.push_str(&line);
        all.push('\n');
    }
    (first_at, all, code)
}

/// A port that was just free: nothing listens there.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `run --limit 10` from the API at `base`, watched: stderr and the exit status, after checking
/// that the first line came at once. Generous bounds on a loaded machine: the point is not
/// silence until the retries run out (9 attempts, 82 s before).
fn said_at_once(base: &str) -> (String, Option<i32>) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("l.db").display().to_string();
    let args =
        ["run", "--api-base", base, "--webhook-url", "http://127.0.0.1:9/h", "--limit", "10", "--ledger", &ledger];
    let (first_at, stderr, code) = watch_stderr(&args);
    assert!(first_at < std::time::Duration::from_secs(5), "first line after {first_at:?}: {stderr}");
    (stderr, code)
}

#[test]
fn an_api_base_where_nothing_listens_is_said_at_once_and_ends_the_run_with_3() {
    let base = format!("http://127.0.0.1:{}", closed_port());
    let (stderr, code) = said_at_once(&base);
    assert_eq!(code, Some(3), "the source failed: {stderr}");
    for part in [base.as_str(), "connection refused", "--api-base", "proxy"] {
        assert!(stderr.contains(part), "{part:?} missing: {stderr}");
    }
    assert!(!stderr.contains("after 9 attempts"), "{stderr}");
}

#[test]
fn an_api_host_that_does_not_resolve_is_said_at_once_and_ends_the_run_with_3() {
    // RFC 6761: names under .invalid never resolve, with or without a network.
    let base = "https://api.savvy-replay-test.invalid";
    let (stderr, code) = said_at_once(base);
    assert_eq!(code, Some(3), "{stderr}");
    for part in [base, "unknown host", "--api-base"] {
        assert!(stderr.contains(part), "{part:?} missing: {stderr}");
    }
}
