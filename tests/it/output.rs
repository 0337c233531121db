//! Output never panics, and signals always work: a closed stderr (a
//! pipe to `head`), a full disk behind stdout or stderr, Ctrl-C after the reader of stderr has
//! gone, and the second Ctrl-C that quits at once. All through the real binary.

use std::process::Stdio;
use std::time::Duration;

use crate::util::*;
use savvy_replay_fake::{ReceiverConfig, generate_bookings};
use tokio::io::AsyncBufReadExt;

fn signal(child: &tokio::process::Child, sig: i32) {
    let pid = child.id().expect("child still running") as i32;
    // SAFETY: plain kill(2) on our own child's pid.
    unsafe { libc::kill(pid, sig) };
}

fn command(args: &[String]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(bin());
    c.args(args)
        .env("SAVVYCAL_TOKEN", TOKEN)
        .env("SAVVYCAL_WEBHOOK_SECRET", SECRET)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    c
}

/// `n` generated events in an NDJSON file, and the `run --input` arguments that deliver them.
fn input_run(dir: &std::path::Path, n: usize, rcv: &savvy_replay_fake::Receiver) -> Vec<String> {
    let mut args = input_run_args(dir, &generate_bookings(n, 81), rcv);
    args.extend(["--retry-initial", "10ms"].map(String::from));
    args
}

/// A receiver, a ledger directory and the `run` arguments for `n` events from a file into it,
/// with `extra` flags after them.
async fn scene(n: usize, extra: &[&str]) -> (savvy_replay_fake::Receiver, tempfile::TempDir, Vec<String>) {
    let rcv = receiver(ReceiverConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = input_run(dir.path(), n, &rcv);
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    (rcv, dir, args)
}

/// Wait for the child, but not forever: a run that ignores its signal would hang the suite.
async fn wait_at_most(secs: u64, child: tokio::process::Child) -> std::process::Output {
    tokio::time::timeout(Duration::from_secs(secs), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("the run was still going after {secs}s"))
        .unwrap()
}

/// `run -vv 2>&1 | head -1`: once the first log line is read, stderr is closed. The run used to
/// panic (exit 101) at its next log line; now it carries on silently and delivers everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verbose_logs_into_a_closed_pipe_do_not_stop_the_run() {
    const N: usize = 50;
    let (rcv, _dir, args) = scene(N, &["-vv"]).await;
    let mut child = command(&args).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut first = String::new();
    tokio::io::BufReader::new(stderr).read_line(&mut first).await.unwrap();
    assert!(!first.is_empty(), "a first log line");
    // `stderr` is dropped here: `head -1` has exited.
    let out = wait_at_most(60, child).await;
    assert_eq!(out.status.code(), Some(0), "stdout: {}", text(&out.stdout));
    assert_eq!(rcv.stats().unique_accepted, N as u64);
    assert_eq!(rcv.stats().duplicates, 0);
}

/// A fully successful run with `2>/dev/full` used to exit 101 at the summary; with `>/dev/full`
/// the JSON summary is lost but the run is still a success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_behind_stderr_or_stdout_still_ends_cleanly() {
    const N: usize = 5;
    let (rcv, dir, mut args) = scene(N, &["--json"]).await;

    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    // spawn, not `output()`: tokio's `output()` replaces stdout and stderr with pipes.
    let out = command(&args).stderr(full).spawn().unwrap().wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(summary(&out)["delivered"], N as u64);

    args.push("--fresh".into());
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let out = command(&args).stdout(full).spawn().unwrap().wait_with_output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("delivered 5"), "{}", text(&out.stderr));
    assert_eq!(rcv.stats().accepted, 2 * N as u64);

    // The other subcommands that print: status, completions.
    let ledger = dir.path().join("l.db").display().to_string();
    for cmd in [vec!["status", "--ledger", &ledger], vec!["completions", "bash"]] {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
        let args: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        let out = command(&args).stdout(full).spawn().unwrap().wait_with_output().await.unwrap();
        assert_eq!(out.status.code(), Some(0), "{cmd:?}: {}", text(&out.stderr));
    }
}

/// Ctrl-C after the reader of stderr has gone: the signal handler's message used to panic before
/// it cancelled, and the run then went on ignoring Ctrl-C and SIGTERM. Now it stops, saves, exits
/// 130, and the rerun finishes the job without re-sending anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_and_sigterm_work_after_stderr_is_closed() {
    const N: usize = 400;
    // Slow enough that the run is still going when the signal comes (it would take 40 s).
    let (rcv, _dir, mut args) = scene(N, &["--rate", "10", "--json"]).await;

    for sig in [libc::SIGINT, libc::SIGTERM] {
        let mut child = command(&args).spawn().unwrap();
        drop(child.stderr.take());
        let before = rcv.stats().unique_accepted;
        wait_for(20, || rcv.stats().unique_accepted > before).await;
        signal(&child, sig);
        let out = wait_at_most(20, child).await;
        assert_eq!(out.status.code(), Some(130), "signal {sig}");
        let s = summary(&out);
        assert_eq!(s["interrupted"], true);
        assert!(rcv.stats().unique_accepted < N as u64, "stopped before the end");
    }

    args.retain(|a| a != "10" && a != "--rate");
    let out = command(&args).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(rcv.stats().unique_accepted, N as u64);
    assert_eq!(rcv.stats().duplicates, 0, "graceful stops re-send nothing");
}

/// The first Ctrl-C waits for the requests in flight (here: up to a 60 s `--timeout`); the second
/// quits at once with 130, and the ledger is left consistent: `status` reads it and a rerun
/// delivers everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_quits_at_once_and_the_ledger_stays_consistent() {
    const N: usize = 10;
    let (base, requests) = silent_server().await;
    let url = format!("{base}/hook");
    let dir = tempfile::tempdir().unwrap();
    let rcv = receiver(ReceiverConfig::default()).await;
    let mut args = input_run(dir.path(), N, &rcv);
    let at = args.iter().position(|a| a == "--webhook-url").unwrap() + 1;
    args[at] = url;
    args.extend(["--timeout", "60s", "--concurrency", "2"].map(String::from));

    let mut child = command(&args).spawn().unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    wait_for(20, || requests.load(std::sync::atomic::Ordering::SeqCst) >= 2).await;
    signal(&child, libc::SIGINT);
    // The second signal only after the first was taken in (its message says so).
    loop {
        let line = tokio::time::timeout(Duration::from_secs(20), stderr.next_line()).await.unwrap().unwrap();
        let line = line.expect("stderr ended before the first Ctrl-C was acknowledged");
        if line.contains("Interrupted") {
            break;
        }
    }
    signal(&child, libc::SIGINT);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.expect("quit at once").unwrap();
    assert_eq!(status.code(), Some(130));
    let mut rest = String::new();
    while let Ok(Some(line)) = stderr.next_line().await {
        rest.push_str(&line);
    }
    assert!(rest.contains("Quit at once"), "{rest}");

    let ledger = dir.path().join("l.db").display().to_string();
    let out = command(&["status".into(), "--ledger".into(), ledger]).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    args[at] = rcv.url();
    let out = command(&args).output().await.unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(rcv.stats().unique_accepted, N as u64);
}
