//! A ledger that cannot be written mid-run, through the real binary: the error
//! names what failed, where and why; the partial summary still comes out, `--json` included; the
//! exit status is 2; and a rerun loses nothing, re-sending at most the events in flight.
//!
//! The failure is real, made by the kernel: the run gets a file size limit (`RLIMIT_FSIZE`, with
//! `SIGXFSZ` ignored so a write past it fails with `EFBIG` instead of killing the process). The
//! ledger's journal grows with each commit until a write is refused, as on a full disk — no mount,
//! no root, no knob in the binary. Long ids make it grow fast: a record holds its event's id. (SQLite's own "disk is full" wording is tested on the writer in
//! `src/ledger/mod.rs`, with `max_page_count`.)

#![cfg(unix)]

use std::collections::HashMap;
use std::process::Stdio;

use crate::util::*;
use savvy_replay_fake::ReceiverConfig;

const EVENTS: usize = 200;
const CONCURRENCY: usize = 2;

#[tokio::test]
async fn a_ledger_that_cannot_be_written_mid_run_is_named_and_a_rerun_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let input = dir.path().join("events.ndjson");
    let pad = "x".repeat(1000);
    let lines: String = (0..EVENTS).map(|i| format!("{{\"id\":\"evt_{i:04}_{pad}\",\"n\":{i}}}\n")).collect();
    std::fs::write(&input, lines).unwrap();
    let rcv = receiver(ReceiverConfig::default()).await;
    let args: Vec<String> = [
        "run",
        "--input",
        input.to_str().unwrap(),
        "--webhook-url",
        &rcv.url(),
        "--ledger",
        ledger.to_str().unwrap(),
        "--rate",
        "unlimited",
        "--concurrency",
        &CONCURRENCY.to_string(),
        "--json",
    ]
    .map(String::from)
    .to_vec();

    // Room for the new ledger and for the journal of a few dozen events; far less than 200 need.
    let limit: libc::rlim_t = 96 * 1024;
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(&args).stdin(Stdio::null());
    // SAFETY: between fork and exec, only async-signal-safe calls (signal, setrlimit).
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let rl = libc::rlimit { rlim_cur: limit, rlim_max: limit };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().await.unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot record outcomes in the ledger"), "{stderr}");
    assert!(stderr.contains(&ledger.display().to_string()), "names the file: {stderr}");
    assert!(stderr.contains("the largest file this process may write"), "names the cause: {stderr}");
    assert!(stderr.contains("run the same command again"), "{stderr}");
    assert!(!stderr.contains("stopped unexpectedly"), "{stderr}");
    // The partial summary, in words and as JSON.
    assert!(stderr.contains("delivered "), "{stderr}");
    assert!(stderr.contains("Stopped after ") && stderr.contains("(the ledger could not be written)"), "{stderr}");
    assert!(!stderr.contains("Done in"), "{stderr}");
    let s = summary(&out);
    let delivered = s["delivered"].as_u64().unwrap() as usize;
    assert_eq!(s["interrupted"], false, "{s}");
    let sent_first = rcv.deliveries().len();
    assert!(delivered > 0 && sent_first < EVENTS, "the failure came mid-run: {delivered} recorded, {sent_first} sent");
    // Counted as delivered means recorded; at most the events in flight were sent unrecorded.
    assert!(
        sent_first >= delivered && sent_first - delivered <= CONCURRENCY,
        "{sent_first} sent, {delivered} recorded"
    );

    // Room again: the rerun delivers the rest, re-sending at most what was in flight.
    let out = run_bin(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = summary(&out);
    assert_eq!(s["skipped"].as_u64(), Some(delivered as u64), "{s}");
    let per_event: HashMap<String, usize> = accepted_per_event(&rcv.deliveries());
    assert_eq!(per_event.len(), EVENTS, "nothing lost");
    let again: usize = per_event.values().map(|n| n - 1).sum();
    assert!(again <= CONCURRENCY, "{again} events sent twice");
}
