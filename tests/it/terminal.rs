//! What a user watches: the real binary on a pseudo-terminal 80 columns wide.
//!
//! The progress bar only draws on a terminal, so these tests give the binary's stderr one: a pty
//! from `openpty(3)` with its window set to 80×24, read to the end from the master side. Every
//! frame the binary drew is checked for width, and the frames are read for the first ETA: it must
//! come within the first third of the run. That is reasoned from the frames' own counts, not from
//! the wall clock.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Command, Stdio};

use crate::util::*;
use savvy_replay_fake::{FakeWebhook, ReceiverConfig, generate_bookings};

/// Run the binary with stderr on an 80-column pty; returns (everything drawn on the pty, stdout,
/// exit status).
fn run_on_pty(args: Vec<String>) -> (String, String, Option<i32>) {
    run_on_pty_with(args, Some(SECRET))
}

/// [`run_on_pty`] with `SAVVYCAL_WEBHOOK_SECRET` set to `secret`, or unset.
fn run_on_pty_with(args: Vec<String>, secret: Option<&str>) -> (String, String, Option<i32>) {
    let (mut master, mut slave) = (-1, -1);
    let size = libc::winsize { ws_row: 24, ws_col: 80, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: openpty writes the two descriptors it opens; the name and termios may be null.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), &size) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened by openpty and are owned here alone.
    let (mut master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    let mut command = Command::new(bin());
    command.env_remove("SAVVYCAL_WEBHOOK_SECRET");
    if let Some(secret) = secret {
        command.env("SAVVYCAL_WEBHOOK_SECRET", secret);
    }
    let child = command
        .args(&args)
        .env("SAVVYCAL_TOKEN", TOKEN)
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(slave))
        .spawn()
        .expect("start savvy-replay");
    // The command holds its copy of the pty's slave side: closed here, so the child's exit ends
    // the reader below.
    drop(command);
    // Read the master side until the child's end of the pty closes (EIO): nothing may block it.
    let reader = std::thread::spawn(move || {
        let mut drawn = Vec::new();
        let _ = master.read_to_end(&mut drawn);
        drawn
    });
    let out = child.wait_with_output().expect("wait for savvy-replay");
    let drawn = reader.join().expect("pty reader");
    (text(&drawn), text(&out.stdout), out.status.code())
}

/// The lines the binary drew, one per frame: the text between carriage returns, newlines and
/// cursor moves or clears, with colours (SGR sequences, `ESC [ … m`) removed.
fn frames(drawn: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = drawn.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' | '\n' => out.push(String::new()),
            '\u{1b}' => {
                // CSI: ESC [ parameters… final byte (@ to ~). Anything but a colour ends the piece.
                let mut end = None;
                if chars.peek() == Some(&'[') {
                    chars.next();
                    end = chars.by_ref().find(|f| ('@'..='~').contains(f));
                } else {
                    chars.next();
                }
                if end != Some('m') {
                    out.push(String::new());
                }
            }
            c => out.last_mut().expect("never empty").push(c),
        }
    }
    out.into_iter().map(|f| f.trim_end().to_owned()).filter(|f| !f.trim().is_empty()).collect()
}

/// The progress lines among the frames.
fn progress_lines(drawn: &str) -> Vec<String> {
    frames(drawn).into_iter().filter(|l| l.contains("delivered ")).collect()
}

/// `1,234/~5,000` → (1234, 5000).
fn counts(line: &str) -> Option<(u64, u64)> {
    let word = line.split_whitespace().find(|w| w.contains('/') && w.starts_with(|c: char| c.is_ascii_digit()))?;
    let (done, total) = word.split_once('/')?;
    let num = |s: &str| s.chars().filter(char::is_ascii_digit).collect::<String>().parse().ok();
    Some((num(done)?, num(total)?))
}

/// The checks both sources share: no frame over 80 columns; an ETA within the first third.
fn check(drawn: &str, stdout: &str, n: u64) {
    // What the bar drew comes before the summary.
    let bar = &drawn[..drawn.find("Done in ").unwrap_or_else(|| panic!("no summary: {drawn:?}"))];
    for f in frames(bar) {
        assert!(f.chars().count() <= 80, "a frame is {} columns wide: {f:?}", f.chars().count());
    }
    let lines = progress_lines(bar);
    assert!(!lines.is_empty(), "no progress line was drawn: {drawn:?}");
    let first_eta = lines.iter().find(|l| l.contains("ETA")).unwrap_or_else(|| panic!("no ETA in {lines:#?}"));
    let (done, total) = counts(first_eta).unwrap_or_else(|| panic!("no counts in {first_eta:?}"));
    assert!(done * 3 <= n, "the first ETA came after a third of the run: {first_eta:?}");
    // The estimated total is in the right region (steady bookings).
    assert!(total * 2 >= n && total <= n * 2, "estimated total {total} for {n}: {first_eta:?}");
    // Marked as an estimate while it is one; no frame's counts disagree with each other.
    for l in &lines {
        if let (Some((done, _)), Some(d)) = (counts(l), number_after(l, "delivered ")) {
            let failed = number_after(l, "failed ").unwrap_or(0);
            let skipped = number_after(l, "skipped ").unwrap_or(0);
            assert_eq!(done, d + failed + skipped, "{l:?}");
        }
    }
    let last = stdout.lines().last().expect("JSON summary");
    let summary: serde_json::Value = serde_json::from_str(last).expect("JSON");
    assert_eq!(summary["delivered"], n);
}

fn number_after(line: &str, label: &str) -> Option<u64> {
    let rest = &line[line.find(label)? + label.len()..];
    rest.split_whitespace().next()?.replace(',', "").parse().ok()
}

const N: usize = 300;
/// 300 events at 100/s: three seconds, thirty frames.
const RATE: &str = "100";

#[tokio::test(flavor = "multi_thread")]
async fn a_file_run_fits_80_columns_and_shows_an_eta_early() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.ndjson");
    std::fs::write(&input, generate_bookings(N, 11).join("\n") + "\n").unwrap();
    let rcv = receiver(signed_receiver()).await;
    let args: Vec<String> = [
        "run",
        "--input",
        &input.display().to_string(),
        "--webhook-url",
        &rcv.url(),
        "--ledger",
        &dir.path().join("ledger.db").display().to_string(),
        "--rate",
        RATE,
        "--json",
    ]
    .map(String::from)
    .into();
    let (drawn, stdout, code) = tokio::task::spawn_blocking(move || run_on_pty(args)).await.unwrap();
    assert_eq!(code, Some(0), "{drawn}");
    check(&drawn, &stdout, N as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_run_fits_80_columns_and_shows_an_eta_early() {
    let dir = tempfile::tempdir().unwrap();
    let api = api(generate_bookings(N, 12), vec![]).await;
    let rcv = receiver(signed_receiver()).await;
    let mut args = run_args(&api, &rcv, &dir.path().join("ledger.db"));
    args.extend(["--rate", RATE, "--json"].map(String::from));
    let (drawn, stdout, code) = tokio::task::spawn_blocking(move || run_on_pty(args)).await.unwrap();
    assert_eq!(code, Some(0), "{drawn}");
    check(&drawn, &stdout, N as u64);
}

/// The webhook lookup's messages, each way it can go, on an 80-column terminal: no line is wider
/// (they used to be one line of up to 231 columns, wrapped mid-word by the terminal), and what
/// each says is still there.
#[tokio::test(flavor = "multi_thread")]
async fn webhook_messages_fit_80_columns_whatever_the_lookup_found() {
    const ID: &str = "wh_01ED74HMFGVZ92YVCWTD8Y8H6X";
    const LONG_AGO: &str = "2030-01-01T00:00:00Z";
    let dir = tempfile::tempdir().unwrap();
    let events = generate_bookings(20, 13);
    let rcv = receiver(ReceiverConfig::default()).await;
    let hook = |state: &str, secret: Option<&str>| {
        let mut w = FakeWebhook::active(ID, &rcv.url(), LONG_AGO, secret);
        w.state = state.to_owned();
        w
    };
    let other = FakeWebhook::active("wh_01ED74HMFGVZ92YVCWTD8Y8H7Z", "https://elsewhere.example.com/h", LONG_AGO, None);
    // (what it is, the account's webhooks (None: no /v1/webhooks), SAVVYCAL_WEBHOOK_SECRET, words that must be there)
    type Case<'a> = (&'a str, Option<Vec<FakeWebhook>>, Option<&'a str>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "found",
            Some(vec![hook("active", Some("acct_whsec_1"))]),
            None,
            vec![ID, "matches --webhook-url", "signing secret (masked)"],
        ),
        (
            "found, secret from the environment",
            Some(vec![hook("active", Some("acct_whsec_1"))]),
            Some(SECRET),
            vec![ID, "SAVVYCAL_WEBHOOK_SECRET is used"],
        ),
        (
            "no secret",
            Some(vec![hook("active", None)]),
            None,
            vec![ID, "no signing secret", "unsigned", "--signing-secret"],
        ),
        (
            "disabled",
            Some(vec![hook("disabled", Some("acct_whsec_1"))]),
            None,
            vec!["warning:", "is disabled in SavvyCal", "--webhook-url anyway"],
        ),
        (
            "no match",
            Some(vec![other]),
            None,
            vec!["No webhook of this SavvyCal account (1 checked)", "--webhook-id", "without the webhook's defaults"],
        ),
        (
            "no /v1/webhooks",
            None,
            None,
            vec!["no /v1/webhooks (HTTP 404)", "without the webhook's defaults", "unsigned"],
        ),
    ];
    for (i, (what, webhooks, secret, words)) in cases.into_iter().enumerate() {
        let api = match webhooks {
            Some(w) => api_with_webhooks(events.clone(), w).await,
            None => api(events.clone(), vec![]).await,
        };
        let mut args = run_args(&api, &rcv, &dir.path().join(format!("l{i}.db")));
        args.extend(["--rate", "0"].map(String::from));
        // The run delivers everything, so the dry run after it has no sample request (shown byte
        // for byte, not wrapped); with --json its report is on stderr, the terminal.
        let mut dry = args.clone();
        dry.extend(["--dry-run", "--json"].map(String::from));
        for args in [args, dry] {
            let secret = secret.map(str::to_owned);
            let (drawn, stdout, code) =
                tokio::task::spawn_blocking(move || run_on_pty_with(args, secret.as_deref())).await.unwrap();
            assert_eq!(code, Some(0), "{what}: {drawn}");
            for f in frames(&drawn) {
                let width = console::measure_text_width(&f);
                assert!(width <= 80, "{what}: a line is {width} columns wide: {f:?}\n{drawn}");
            }
            assert!(!drawn.contains("The first request"), "{what}: {drawn}");
            let shown = frames(&drawn).join(" ") + &stdout;
            let shown = shown.split_whitespace().collect::<Vec<_>>().join(" ");
            for w in &words {
                assert!(shown.contains(w), "{what}: {w:?} missing from {shown}");
            }
        }
    }
}
