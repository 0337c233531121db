//! What the binary tells a user to do is right: the demo does not advise resuming from a ledger it
//! deletes, and the rough edges of a first try say what to type instead.

use std::process::Stdio;

use crate::util::*;
use savvy_replay_fake::generate_bookings;
use tokio::io::{AsyncBufReadExt, BufReader};

async fn bin_output(args: &[&str]) -> std::process::Output {
    run_bin(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).await
}

/// A demo stopped early used to say "Progress is saved in /tmp/…/ledger.db; run the same command
/// again", naming a directory deleted on exit. It now says nothing about resuming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_demo_gives_no_advice_that_cannot_work() {
    // -v: the "replaying from" log line says the run (and its Ctrl-C handler) has started.
    let mut child = tokio::process::Command::new(bin())
        .args(["-v", "demo", "--events", "2000", "--rate", "50"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the demo");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("replaying from") {
            break;
        }
    }
    assert!(seen.contains("replaying from"), "{seen}");
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGINT) };
    while let Some(line) = lines.next_line().await.unwrap() {
        seen.push_str(&line);
        seen.push('\n');
    }
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(seen.contains("Interrupted after"), "{seen}");
    for advice in ["run the same command again", "Progress is saved", "savvy-replay status", "--only-failed"] {
        assert!(!seen.contains(advice), "the demo advised `{advice}`:\n{seen}");
    }
}

#[tokio::test]
async fn rough_edges_say_what_to_type() {
    let hook = "https://h.example.com/hook";
    // An API base without a scheme: the example is the API's, not a webhook's.
    let out = bin_output(&["run", "--webhook-url", hook, "--token", "t", "--api-base", "api.savvycal.com"]).await;
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("https://api.savvycal.com") && !stderr.contains("hooks.example.com"), "{stderr}");
    // A negative rate reaches the parser instead of reading as a flag.
    for cmd in [&["run", "--webhook-url", hook, "--rate", "-3"][..], &["demo", "--rate", "-3"]] {
        let out = bin_output(cmd).await;
        assert_eq!(out.status.code(), Some(2));
        assert!(text(&out.stderr).contains("cannot be negative"), "{}", text(&out.stderr));
    }
    // --rate 50/h is documented, and shown as written.
    let out = bin_output(&["run", "--help"]).await;
    assert!(text(&out.stdout).contains("50/h"), "{}", text(&out.stdout));
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("e.ndjson");
    std::fs::write(&input, generate_bookings(2, 1).join("\n")).unwrap();
    let ledger = dir.path().join("l.db").display().to_string();
    let input = input.display().to_string();
    let out = bin_output(&[
        "run",
        "--input",
        &input,
        "--webhook-url",
        hook,
        "--ledger",
        &ledger,
        "--rate",
        "50/h",
        "--dry-run",
    ])
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("--rate 50/h") && !stdout.contains("0.0138"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_export_prints_nothing_on_stderr() {
    let api = api(generate_bookings(3, 2), vec![]).await;
    let out = bin_output(&["export", "-q", "--api-base", &api.base_url()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 3);
    assert_eq!(text(&out.stderr), "");
}

/// `-v` logs written to a file carry no colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_to_a_file_have_no_colour_codes() {
    let api = api(generate_bookings(3, 2), vec![]).await;
    let rcv = receiver(signed_receiver()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = vec!["-vv".to_owned()];
    args.extend(run_args(&api, &rcv, &dir.path().join("l.db")));
    let out = run_bin(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("DEBUG") || stderr.contains("INFO"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}
