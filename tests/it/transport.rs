//! The webhook transport's edge cases against small hand-written loopback servers: TLS trust (an
//! untrusted certificate fails for good; a trusted one via `SSL_CERT_FILE` works), and servers that
//! close connections after every answer, when idle, or without answering, or answer too slowly.
//! The servers speak through [`crate::wire`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::util::*;
use crate::wire::{Log, Wire, answer_all, serve};
use savvy_replay::signature;
use savvy_replay::{Rate, RateMode, Report, RunConfig};
use savvy_replay_fake::{FakeApi, generate_bookings};
use tokio::io::AsyncWriteExt;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// A self-signed certificate for `localhost`: its PEM, and a TLS acceptor serving it.
fn self_signed() -> (String, TlsAcceptor) {
    certificate(&["localhost"])
}

async fn fake_api(n: usize, seed: u64) -> FakeApi {
    api(generate_bookings(n, seed), vec![]).await
}

/// Replay `n` generated bookings (`seed`) into `webhook_url` with a new ledger, the config
/// adjusted by `tweak`: the report, the ledger's path, and the directory that holds it.
async fn replay(
    n: usize,
    seed: u64,
    webhook_url: &str,
    tweak: impl FnOnce(&mut RunConfig),
) -> (Report, PathBuf, tempfile::TempDir) {
    let api = fake_api(n, seed).await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("l.db");
    let mut cfg = config_to(&api, webhook_url, &ledger);
    tweak(&mut cfg);
    (savvy_replay::run(cfg, CancellationToken::new()).await.unwrap(), ledger, dir)
}

/// Every event was delivered, each at its second attempt (the first went wrong), as the ledger says.
fn assert_each_delivered_at_the_second_try(report: &Report, log: &Log, ledger: &Path, n: usize) {
    assert_eq!(report.exit_code(), 0, "{:?}", report.summary);
    assert_eq!((report.summary.delivered, report.summary.failed), (n as u64, 0));
    assert_eq!((report.summary.attempts, report.summary.retries), (2 * n as u64, n as u64));
    let per_event = log.per_event();
    assert_eq!(per_event.len(), n);
    assert!(per_event.values().all(|c| *c == 2), "{per_event:?}");
    let status = savvy_replay::read_status(ledger, 10).unwrap().unwrap();
    assert_eq!((status[0].delivered, status[0].failed, status[0].pending), (n as u64, 0, 0));
}

fn assert_each_once(log: &Log, n: usize) {
    let per_event = log.per_event();
    assert_eq!(per_event.len(), n, "every event arrived");
    let twice: Vec<_> = per_event.iter().filter(|(_, c)| **c != 1).collect();
    assert!(twice.is_empty(), "events that arrived more than once: {twice:?}");
}

// ---- TLS ----

/// A TLS server that answers every request 200; failed handshakes are counted.
async fn serve_tls(acceptor: TlsAcceptor) -> (u16, Arc<Log>) {
    serve(move |tcp, log| {
        let acceptor = acceptor.clone();
        async move {
            match acceptor.accept(tcp).await {
                Ok(tls) => answer_all(tls, &log).await,
                Err(_) => log.count("failed handshakes"),
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_fails_each_event_once_without_retrying() {
    const N: usize = 5;
    let (_, acceptor) = self_signed();
    let (port, log) = serve_tls(acceptor).await;
    let url = format!("https://localhost:{port}/hook");
    let (report, ledger, _dir) = replay(N, 21, &url, |cfg| cfg.concurrency = 2).await;

    assert_eq!(report.exit_code(), 1, "{:?}", report.summary);
    assert_eq!((report.summary.delivered, report.summary.failed), (0, N as u64));
    assert_eq!((report.summary.attempts, report.summary.retries), (N as u64, 0));
    // One TLS handshake per event, every one refused by the client, nothing sent over HTTP.
    assert_eq!(log.get("connections"), N);
    wait_for(2, || log.get("failed handshakes") == N).await;
    assert!(log.requests.lock().unwrap().is_empty());
    let status = savvy_replay::read_status(&ledger, 10).unwrap().unwrap();
    assert_eq!((status[0].delivered, status[0].failed, status[0].pending), (0, N as u64, 0));
    assert_eq!(status[0].open.len(), N);
    for open in &status[0].open {
        assert_eq!((open.attempts, open.last_status), (1, None), "{open:?}");
        let err = open.last_error.as_deref().unwrap_or_default();
        assert!(err.contains("TLS") && err.contains("certificate"), "last_error: {err}");
    }
}

/// rustls-platform-verifier on Linux reads its roots through rustls-native-certs, which honours
/// `SSL_CERT_FILE`: with the test certificate as the only root, the real binary delivers over TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_trusted_through_ssl_cert_file_delivers_over_https() {
    const N: usize = 20;
    let (pem, acceptor) = self_signed();
    let (port, log) = serve_tls(acceptor).await;
    let api = fake_api(N, 22).await;
    let dir = tempfile::tempdir().unwrap();
    let pem_path = dir.path().join("root.pem");
    std::fs::write(&pem_path, pem).unwrap();
    let ledger = dir.path().join("l.db");
    let args = run_args_to(&api.base_url(), &format!("https://localhost:{port}/hook"), &ledger);
    let args = [args, strings(&["--rate", "0", "--concurrency", "4", "--json"])].concat();

    let out = tokio::process::Command::new(bin())
        .args(args)
        .env("SAVVYCAL_TOKEN", TOKEN)
        .env("SAVVYCAL_WEBHOOK_SECRET", SECRET)
        .env("SSL_CERT_FILE", &pem_path)
        .env_remove("SSL_CERT_DIR")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = summary(&out);
    assert_eq!((s["delivered"].as_u64(), s["failed"].as_u64(), s["retries"].as_u64()), (Some(20), Some(0), Some(0)));
    assert_eq!(log.get("failed handshakes"), 0);
    assert_each_once(&log, N);
    for (id, r) in log.requests.lock().unwrap().iter() {
        let sig = r.header(signature::HEADER).expect("a signature header");
        assert_eq!(sig, documented_signature(SECRET, &r.body), "bad signature on {id}");
        assert_eq!(r.header("host"), Some(format!("localhost:{port}").as_str()));
    }
}

// ---- connections that end ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_close_on_every_answer_costs_no_retries() {
    const N: usize = 200;
    let (port, log) = serve(|tcp, log| async move {
        let mut w = Wire::new(tcp);
        if let Ok(Some(req)) = w.next().await {
            log.arrive(req);
            let _ = w.ok(true).await;
        }
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let (report, _, _dir) = replay(N, 23, &url, |cfg| cfg.concurrency = 4).await;

    assert_eq!(report.exit_code(), 0, "{:?}", report.summary);
    assert_eq!((report.summary.delivered, report.summary.failed, report.summary.retries), (N as u64, 0, 0));
    assert_each_once(&log, N);
    assert_eq!(log.get("connections"), N, "one connection per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_closed_by_the_server_are_replaced_without_retries() {
    const N: usize = 50;
    /// How long the server keeps a connection that has no request to read.
    const IDLE: Duration = Duration::from_millis(20);
    let (port, log) = serve(|tcp, log| async move {
        let mut w = Wire::new(tcp);
        let mut served = 0;
        loop {
            if w.buf.is_empty() {
                match tokio::time::timeout(IDLE, w.fill()).await {
                    Err(_) => {
                        log.count(if served > 0 { "idle closes" } else { "unused closes" });
                        // Close our side, then see whether a request was already on its way:
                        // that race is inherent to keep-alive (the client cannot know), and it
                        // is the only thing that may cost a retry. Counted, not timed.
                        let _ = w.io.shutdown().await;
                        if matches!(w.fill().await, Ok(n) if n > 0) {
                            log.count("raced");
                        }
                        return;
                    }
                    Ok(Ok(0) | Err(_)) => return,
                    Ok(Ok(_)) => {}
                }
            }
            match w.next().await {
                Ok(Some(req)) => {
                    log.arrive(req);
                    if w.ok(false).await.is_err() {
                        return;
                    }
                    served += 1;
                }
                _ => return,
            }
        }
    })
    .await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let (report, _, _dir) = replay(N, 24, &url, |cfg| {
        // Each worker sends at most every 40 ms (usually 80): the connection it used last has been
        // closed by then, and so has a fresh one that waited long for its turn at the rate gate.
        cfg.concurrency = 2;
        cfg.rate = RateMode::Fixed(Rate::per_second(25.0));
    })
    .await;

    assert_eq!(report.exit_code(), 0, "{:?}", report.summary);
    assert_eq!((report.summary.delivered, report.summary.failed), (N as u64, 0));
    assert_each_once(&log, N);
    // The run is over and its connections closed: every server side has seen the end, so the
    // counts below are final.
    wait_for(10, || log.get("connections ended") == log.get("connections")).await;
    // The server really closed connections between requests (nearly every one; at least half even
    // on a stalled machine)...
    let closed = log.get("idle closes") + log.get("unused closes");
    assert!(closed >= N / 2, "{closed} idle closes");
    // ...and a request that found its connection closed went on a fresh one, not as a retry. Only
    // a request already sent when the server closed (counted as raced) may have been retried.
    let (attempts, retries) = (report.summary.attempts, report.summary.retries);
    assert_eq!(attempts, N as u64 + retries);
    assert!(retries <= log.get("raced") as u64, "{retries} retries, {} raced", log.get("raced"));
}

/// What the first attempt of each event gets from [`serve_second_tries`].
#[derive(Clone, Copy)]
enum FirstAttempt {
    /// Read in full, then the connection is closed without a word.
    HangUp,
    /// An answer a second later, unless the client gives up on the connection first.
    Slow,
}

/// A server that mistreats the first attempt of each event as `first` says, and answers every
/// other request 200.
async fn serve_second_tries(first: FirstAttempt) -> (u16, Arc<Log>) {
    serve(move |tcp, log| async move {
        let mut w = Wire::new(tcp);
        while let Ok(Some(req)) = w.next().await {
            if log.arrive(req) == 0 {
                match first {
                    FirstAttempt::HangUp => return,
                    FirstAttempt::Slow => tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => log.count("slow answers"),
                        r = w.fill() => {
                            if matches!(r, Ok(0) | Err(_)) {
                                log.count("closed by the client while waiting");
                                return;
                            }
                        }
                    },
                }
            }
            if w.ok(false).await.is_err() {
                return;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_closed_without_an_answer_is_retried() {
    const N: usize = 40;
    let (port, log) = serve_second_tries(FirstAttempt::HangUp).await;
    let (report, ledger, _dir) = replay(N, 25, &format!("http://127.0.0.1:{port}/hook"), |_| {}).await;

    assert_each_delivered_at_the_second_try(&report, &log, &ledger, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_slower_than_the_timeout_is_retried_and_the_connection_dropped() {
    const N: usize = 16;
    let (port, log) = serve_second_tries(FirstAttempt::Slow).await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let (report, ledger, _dir) = replay(N, 26, &url, |cfg| cfg.timeout = Duration::from_millis(200)).await;

    assert_each_delivered_at_the_second_try(&report, &log, &ledger, N);
    // A timed-out request's connection is abandoned: the client closes it rather than leave it
    // open waiting for an answer nobody reads.
    wait_for(2, || log.get("closed by the client while waiting") == N).await;
    assert_eq!(log.get("slow answers"), 0);
}
