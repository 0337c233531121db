//! Paths no other test takes, through the real binary: the API still failing
//! after its retries, events left pending by an interrupt mid-retry and the rerun, `--input -`,
//! more than 1,000 malformed lines, `-H` replacing a default header, and HTTPS to the API.
//! (Retries exhausted on the webhook: `tests/it/hostile.rs`, `status_says_how_many_attempts_once`.)

use std::process::Stdio;
use std::time::Duration;

use crate::util::*;
use savvy_replay_fake::{ApiFault, ReceiverConfig, generate_bookings};
use tokio::io::AsyncWriteExt;

fn command(args: &[String]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(bin());
    c.args(args)
        .env("SAVVYCAL_TOKEN", TOKEN)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// Replace the value of `flag` in `args` (the common run arguments set the retry timings).
fn set_flag(args: &mut [String], flag: &str, value: &str) {
    let at = args.iter().position(|a| a == flag).unwrap_or_else(|| panic!("{flag} in {args:?}")) + 1;
    args[at] = value.to_owned();
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_that_keeps_failing_exhausts_its_retries_and_the_run_exits_3() {
    let faults = (0..20).map(|i| (i, ApiFault::Status { code: 500, retry_after: None, text_plain: false })).collect();
    let api = api(generate_bookings(3, 32), faults).await;
    let rcv = receiver(ReceiverConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = run_args(&api, &rcv, &dir.path().join("l.db"));
    args.extend(strings(&["--max-retries", "2"]));
    let out = run_bin(&args).await;

    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(api.events_requests(), 3, "1 try + 2 retries");
    assert!(text(&out.stderr).contains("500"), "{}", text(&out.stderr));
    assert_eq!(rcv.stats().requests, 0);
}

/// Ctrl-C while every event waits for its retry: each is recorded pending (with its attempt),
/// the run exits 130, and the rerun delivers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_pending_after_an_interrupt_mid_retry_are_delivered_by_the_rerun() {
    const N: u64 = 3;
    let api = api(generate_bookings(N as usize, 33), vec![]).await;
    let rcv = receiver(ReceiverConfig { fail_rate: 1.0, ..ReceiverConfig::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("l.db");
    let mut args = run_args(&api, &rcv, &ledger);
    // Retries far apart: after its first answer, each event waits (or is in flight again).
    set_flag(&mut args, "--retry-initial", "60s");
    set_flag(&mut args, "--retry-max", "60s");
    args.extend(strings(&["--json", "--rate", "0"]));
    let child = command(&args).spawn().unwrap();
    wait_for(20, || rcv.stats().requests >= N).await;
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) };
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("recorded as pending"), "{}", text(&out.stderr));
    let status = command(&strings(&["status", "--ledger", ledger.to_str().unwrap()])).output().await.unwrap();
    assert!(text(&status.stdout).contains("pending 3"), "{}", text(&status.stdout));

    rcv.set_fail_rate(0.0);
    set_flag(&mut args, "--retry-initial", "10ms");
    set_flag(&mut args, "--retry-max", "10ms");
    let out = run_bin(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["delivered"], N);
    assert_eq!(rcv.stats().unique_accepted, N);
    let status = command(&strings(&["status", "--ledger", ledger.to_str().unwrap()])).output().await.unwrap();
    assert!(text(&status.stdout).contains("delivered 3   failed 0   pending 0"), "{}", text(&status.stdout));
}

/// `--input -` reads the events from stdin; `-H` replaces a default header instead of adding a
/// second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_from_stdin_is_delivered_and_h_replaces_a_default_header() {
    let rcv = receiver(ReceiverConfig { user_agent: Some("acme-replay/2".into()), ..ReceiverConfig::default() }).await;
    let dir = tempfile::tempdir().unwrap();
    let events = generate_bookings(5, 34);
    let mut args = input_run_args(dir.path(), &[], &rcv);
    set_flag(&mut args, "--input", "-");
    args.extend(strings(&[
        "--json",
        "-H",
        "User-Agent: acme-replay/2",
        "-H",
        "Content-Type: application/json; charset=utf-8",
    ]));
    let mut child = command(&args).stdin(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all((events.join("\n") + "\n").as_bytes()).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["delivered"], 5);
    assert_eq!(rcv.stats().unique_accepted, 5);
    for d in rcv.deliveries() {
        let ua: Vec<_> = d.headers.get_all("user-agent").iter().collect();
        assert_eq!(ua, ["acme-replay/2"]);
        let ct: Vec<_> = d.headers.get_all("content-type").iter().collect();
        assert_eq!(ct, ["application/json; charset=utf-8"]);
    }
}

/// More than 1,000 malformed lines: the input is clearly not NDJSON events; the run stops with
/// exit 3, naming the first bad line, after delivering the events read before (they used to be
/// lost with the batch they were in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_a_thousand_malformed_lines_stop_the_run_with_exit_3() {
    let rcv = receiver(ReceiverConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut lines = generate_bookings(5, 35);
    lines.extend((0..1_001).map(|i| format!("not json {i}")));
    let args = input_run_args(dir.path(), &lines, &rcv);
    let out = command(&args).output().await.unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("line 6"), "the first bad line is named: {stderr}");
    assert_eq!(rcv.stats().unique_accepted, 5);

    // 1,000 are still reported one by one, and the rest delivered.
    lines.pop();
    lines.extend(generate_bookings(8, 36).into_iter().skip(5));
    input_run_args(dir.path(), &lines, &rcv);
    let out = command(&args).output().await.unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("1,000"), "{}", text(&out.stderr));
}

/// HTTPS to the API: paging through a TLS front whose certificate the machine trusts
/// (`SSL_CERT_FILE`) replays everything. Failures of TLS are `tests/it/tls.rs`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_over_https_with_a_trusted_certificate_replays_everything() {
    const N: usize = 150;
    let api = api(generate_bookings(N, 37), vec![]).await;
    let rcv = receiver(ReceiverConfig::default()).await;
    let (pem, acceptor) = certificate(&["localhost"]);
    let api_port = url::Url::parse(&api.base_url()).unwrap().port().unwrap();
    let https = format!("https://localhost:{}", tls_front(acceptor, api_port).await);
    let dir = tempfile::tempdir().unwrap();
    let trusted = dir.path().join("trusted.pem");
    std::fs::write(&trusted, pem).unwrap();
    let mut args = run_args(&api, &rcv, &dir.path().join("l.db"));
    set_flag(&mut args, "--api-base", &https);
    args.extend(strings(&["--json", "--rate", "0"]));
    let out = command(&args)
        .env("SSL_CERT_FILE", &trusted)
        .env_remove("SSL_CERT_DIR")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["delivered"], N as u64);
    assert_eq!(rcv.stats().unique_accepted, N as u64);
    assert!(api.events_requests() >= 2, "more than one page went through TLS");
}
