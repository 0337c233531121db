//! Errors as the user reads them at the end of a run: attempts without an HTTP answer counted by
//! cause (oha's "error distribution", SPEC §5 `errors`), and a source that fails before anything
//! was sent reported by its error alone.

use crate::util::*;
use savvy_replay::fake::{ApiFault, generate_bookings};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

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
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_counted_as_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = replay_file(dir.path(), 1, &format!("http://127.0.0.1:{port}/"), 1).await;
    assert!(matches!(out.status.code(), Some(1 | 4)), "{}", text(&out.stderr));
    let s = summary(&out);
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
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
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
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = replay_file(dir.path(), 8, &format!("http://127.0.0.1:{port}/hook"), 3).await;
    assert!(matches!(out.status.code(), Some(1 | 4)), "{}", text(&out.stderr));
    let s = summary(&out);
    let (tried, attempts) = tried_in_ledger(&dir.path().join("ledger.db"));
    assert!(tried >= 1, "{s}");
    assert_eq!(s["attempts"].as_u64(), Some(attempts), "{s}");
    assert_eq!(s["retries"].as_u64(), Some(attempts - tried), "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_requests_after_each_events_first_against_a_flaky_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let rcv = receiver(savvy_replay::fake::ReceiverConfig {
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
