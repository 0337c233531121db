//! Credentials in URLs, through the real binary: a token in `--api-base` is
//! refused and never repeated; a webhook URL's user and password arrive at the receiver as Basic
//! auth exactly as written, and never sit in the ledger file; spellings of one webhook URL are one
//! target; and a ledger written by the previous release (schema 1) keeps its outcomes.

use std::path::Path;

use crate::util::*;
use base64::Engine;
use savvy_replay_fake::ReceiverConfig;

/// `n` events, one NDJSON line each.
fn events_file(dir: &Path, n: usize) -> std::path::PathBuf {
    let path = dir.join("events.ndjson");
    let lines: String = (1..=n)
        .map(|i| format!("{{\"id\":\"evt_{i}\",\"created_at\":\"2026-01-0{i}T10:00:00Z\",\"note\":\"e{i}\"}}\n"))
        .collect();
    std::fs::write(&path, lines).unwrap();
    path
}

/// Everything SQLite keeps for the ledger at `path` (the database, its WAL and shared memory).
fn ledger_bytes(path: &Path) -> Vec<u8> {
    let name = path.file_name().unwrap().to_str().unwrap().to_owned();
    let mut all = Vec::new();
    for entry in std::fs::read_dir(path.parent().unwrap()).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_str().is_some_and(|n| n.starts_with(&name)) {
            all.extend(std::fs::read(entry.path()).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn fixtures() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A copy of `tests/fixtures/ledger-v1.db` (see the README there) in `dir`.
fn v1_ledger(dir: &Path) -> std::path::PathBuf {
    let ledger = dir.join("ledger.db");
    std::fs::copy(fixtures().join("ledger-v1.db"), &ledger).unwrap();
    ledger
}

fn file_run(input: &Path, webhook_url: &str, ledger: &Path) -> Vec<String> {
    [
        "run",
        "--input",
        input.to_str().unwrap(),
        "--webhook-url",
        webhook_url,
        "--ledger",
        ledger.to_str().unwrap(),
        "--json",
        "-v",
    ]
    .map(String::from)
    .to_vec()
}

#[tokio::test]
async fn a_token_in_the_api_base_is_refused_and_never_repeated() {
    let dir = tempfile::tempdir().unwrap();
    let rcv = receiver(ReceiverConfig::default()).await;
    let api = api(vec![], vec![]).await;
    let with_token = api.base_url().replacen("http://", &format!("http://me:{TOKEN}@"), 1);
    for args in [
        vec!["--api-base".to_owned(), with_token.clone()],
        vec!["--api-base".to_owned(), with_token.replacen("me:", "", 1)],
    ] {
        let mut all = vec!["run".to_owned(), "-v".to_owned(), "--webhook-url".to_owned(), rcv.url()];
        all.extend(args);
        all.extend(["--ledger".to_owned(), dir.path().join("l.db").display().to_string()]);
        let out = run_bin(&all).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("--api-base") && stderr.contains("user name or password"), "{stderr}");
        assert!(!stderr.contains(TOKEN) && !text(&out.stdout).contains(TOKEN), "{stderr}");
    }
    // The same through the environment.
    let out = tokio::process::Command::new(bin())
        .args(["run", "-v", "--webhook-url", &rcv.url(), "--ledger", dir.path().join("l.db").to_str().unwrap()])
        .env("SAVVYCAL_TOKEN", TOKEN)
        .env("SAVVYCAL_API_BASE", &with_token)
        .output()
        .await
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains(TOKEN), "{stderr}");
    assert_eq!(rcv.stats().requests, 0);
}

#[tokio::test]
async fn webhook_basic_auth_arrives_decoded_and_the_ledger_keeps_no_password() {
    let dir = tempfile::tempdir().unwrap();
    let input = events_file(dir.path(), 3);
    let ledger = dir.path().join("ledger.db");
    let rcv = receiver(ReceiverConfig::default()).await;
    // `+` is a plus and `%26` an `&` in URL userinfo; form decoding would send "p ss" and stop at `&`.
    let url = rcv.url().replacen("http://", "http://hook+user:p%2Bss+%26w%40rd@", 1);
    let out = run_bin(&file_run(&input, &url, &ledger)).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("p%2Bss") && !stderr.contains("w%40rd"), "{stderr}");
    let expected = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("hook+user:p+ss+&w@rd"));
    let deliveries = rcv.deliveries();
    assert_eq!(deliveries.len(), 3);
    for d in &deliveries {
        assert_eq!(d.headers["authorization"], expected.as_str());
    }
    let bytes = ledger_bytes(&ledger);
    assert!(contains(&bytes, "evt_1"), "the ledger holds the outcomes");
    for secret in ["p%2Bss", "p+ss", "w%40rd", "w@rd"] {
        assert!(!contains(&bytes, secret), "the ledger holds {secret:?}");
    }

    // The same webhook spelled differently is the same target: nothing is sent again.
    let mut same = url.replacen("http://", "HTTP://", 1);
    same.push_str("?#");
    let out = run_bin(&file_run(&input, &same, &ledger)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = summary(&out);
    assert_eq!((s["skipped"].as_u64(), s["delivered"].as_u64()), (Some(3), Some(0)), "{s}");
    assert_eq!(rcv.deliveries().len(), 3);

    // Another password is another target.
    let other = rcv.url().replacen("http://", "http://hook+user:other@", 1);
    let out = run_bin(&file_run(&input, &other, &ledger)).await;
    assert_eq!(summary(&out)["delivered"].as_u64(), Some(3));
    assert_eq!(rcv.deliveries().len(), 6);
}

/// `tests/fixtures/ledger-v1.db` was written by the release before schema 2 (commit eb0fa8a), by
/// `run --input` of `ledger-v1-events.ndjson` to `http://replay:s3cr%2Bet%26pw@127.0.0.1:47913/hook?`
/// (evt_1..3 delivered, then evt_4 failed with the receiver down) and to the same URL without the
/// `?` (evt_1 delivered): two targets where there is one, and the password in plain text.
#[tokio::test]
async fn a_ledger_from_the_previous_release_is_migrated_and_still_skips_what_was_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = v1_ledger(dir.path());
    assert!(contains(&ledger_bytes(&ledger), "s3cr%2Bet%26pw"), "the fixture holds the password");
    let events = std::fs::read_to_string(fixtures().join("ledger-v1-events.ndjson")).unwrap();
    let delivered: String = events.lines().take(3).map(|l| format!("{l}\n")).collect();
    let input = dir.path().join("delivered.ndjson");
    std::fs::write(&input, delivered).unwrap();

    // Nothing listens on that port now: a run that sent anything would fail.
    let url = "http://replay:s3cr%2Bet%26pw@127.0.0.1:47913/hook";
    let out = run_bin(&file_run(&input, url, &ledger)).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let s = summary(&out);
    assert_eq!(
        (s["events"].as_u64(), s["skipped"].as_u64(), s["attempts"].as_u64()),
        (Some(3), Some(3), Some(0)),
        "{s}"
    );
    assert!(!contains(&ledger_bytes(&ledger), "s3cr"), "the migrated ledger still holds the password");

    // One target now, with every outcome of both; the failed event is still there to export.
    let ledger_arg = ledger.display().to_string();
    let out = run_bin(&["status".into(), "--ledger".into(), ledger_arg.clone()]).await;
    let status = text(&out.stdout);
    assert_eq!(status.matches("(event.created)").count(), 1, "{status}");
    assert!(status.contains("replay:***@127.0.0.1:47913/hook (event.created)"), "{status}");
    assert!(status.contains("delivered 3   failed 1   pending 0") && status.contains("evt_4"), "{status}");
    let with_query = format!("{url}?");
    let out = run_bin(&["failed".into(), "--ledger".into(), ledger_arg, "--webhook-url".into(), with_query]).await;
    let failed = text(&out.stdout);
    assert_eq!(failed.lines().map(id_of).collect::<Vec<_>>(), ["evt_4"], "{}", text(&out.stderr));
}

/// `status` opens a ledger read-only and does not migrate it, so a schema-1 ledger still holds
/// the webhook URL's password: neither the human nor the JSON status may show it.
#[tokio::test]
async fn status_of_a_ledger_not_yet_migrated_never_shows_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = v1_ledger(dir.path());
    let ledger_arg = ledger.display().to_string();
    for json in [false, true] {
        let mut args = vec!["status".to_owned(), "--ledger".to_owned(), ledger_arg.clone()];
        if json {
            args.push("--json".to_owned());
        }
        let out = run_bin(&args).await;
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        assert!(stdout.contains("127.0.0.1:47913/hook") && stdout.contains("evt_4"), "{stdout}");
        for secret in ["s3cr", "%2Bet", "et%26pw", "s3cr+et&pw"] {
            assert!(!stdout.contains(secret) && !stderr.contains(secret), "json {json}: {stdout}{stderr}");
        }
    }
    assert!(contains(&ledger_bytes(&ledger), "s3cr%2Bet%26pw"), "status left the ledger as it was");
}

/// A caller that builds the config itself skips the `--api-base` check: the run still refuses a
/// base with a user name or password before sending anything, so the token can only ever go in
/// the Authorization header (reqwest would send the URL's credentials as Basic auth).
#[tokio::test]
async fn a_base_with_credentials_built_by_hand_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rcv = receiver(ReceiverConfig::default()).await;
    let api = api(vec![], vec![]).await;
    for userinfo in [format!("me:{TOKEN}@"), format!("{TOKEN}@")] {
        let mut cfg = config_to(&api, &rcv.url(), &dir.path().join("l.db"));
        let with_token = api.base_url().replacen("http://", &format!("http://{userinfo}"), 1);
        if let savvy_replay::SourceConfig::Api { base, .. } = &mut cfg.source {
            *base = with_token.parse().unwrap();
        }
        let error = match savvy_replay::run(cfg, tokio_util::sync::CancellationToken::new()).await {
            Ok(report) => panic!("the run went ahead: {:?}", report.summary),
            Err(e) => e.to_string(),
        };
        assert!(error.contains("user name or password"), "{error}");
        assert!(!error.contains(TOKEN), "{error}");
    }
    assert_eq!(api.events_requests(), 0);
    assert!(api.webhook_requests().is_empty(), "{:?}", api.webhook_requests());
    assert_eq!(rcv.stats().requests, 0);
}

/// A receiver that checks signatures with another secret answers 401 to everything: the run says
/// so after its first answers and stops with exit 2, naming the flags, with the events left
/// pending (none failed); the rerun with the right secret delivers them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_stops_the_run_early_and_the_rerun_with_the_right_one_delivers_all() {
    const RIGHT: &str = "whsec_the_receivers_own_secret";
    let dir = tempfile::tempdir().unwrap();
    let rcv = receiver(ReceiverConfig { secret: Some(RIGHT.into()), ..signed_receiver() }).await;
    let ledger = dir.path().join("ledger.db");
    let input = dir.path().join("events.ndjson");
    std::fs::write(&input, savvy_replay_fake::generate_bookings(40, 41).join("\n") + "\n").unwrap();
    let mut args = input_args(&input, &rcv, &ledger);
    args.extend(["--concurrency".into(), "4".into()]);
    // SAVVYCAL_WEBHOOK_SECRET (run_bin) is not the receiver's.
    let out = run_bin(&args).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("rejects the signature or credentials"), "{stderr}");
    assert!(stderr.contains("--signing-secret") && stderr.contains("SAVVYCAL_WEBHOOK_SECRET"), "{stderr}");
    assert!(!stderr.contains(SECRET) && !stderr.contains(RIGHT), "{stderr}");
    let sent = rcv.stats().requests;
    assert!(sent < 40, "stopped early, not after trying every event: {sent} requests");

    let status = run_bin(&["status".into(), "--ledger".into(), ledger.display().to_string()]).await;
    let status = text(&status.stdout);
    assert!(status.contains("failed 0") && !status.contains("pending 0"), "{status}");

    args.extend(["--signing-secret".into(), RIGHT.into()]);
    let out = run_bin(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(rcv.stats().unique_accepted, 40);
}
