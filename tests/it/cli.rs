//! The real binary: exit codes, error messages, the JSON summary, secrets kept out of output, the
//! config file, and the newcomer commands (demo, sink, export, dry-run). The command line itself
//! (help, completions, usage errors) is [`crate::help`]'s.

use std::time::Duration;

use crate::util::*;
use savvy_replay_fake::{ReceiverConfig, generate_bookings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_summary_is_the_last_line_and_complete() {
    let api = api(generate_bookings(120, 2), vec![]).await;
    let rcv = receiver(ReceiverConfig { reject_ids: vec![], ..signed_receiver() }).await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = run_args(&api, &rcv, &dir.path().join("l.db"));
    args.extend(
        ["--json", "--rate", "0", "-v", "-H", "X-Team: growth", "--event-type", "event.replayed"].map(String::from),
    );

    let out = run_bin(&args).await;

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = summary(&out);
    assert_eq!(s["events"], 120);
    assert_eq!(s["delivered"], 120);
    assert_eq!(s["failed"], 0);
    assert_eq!(s["skipped"], 0);
    assert_eq!(s["attempts"], 120);
    assert_eq!(s["retries"], 0);
    assert_eq!(s["status_codes"], serde_json::json!({"200": 120}));
    assert_eq!(s["dry_run"], false);
    assert_eq!(s["interrupted"], false);
    assert!(s["elapsed_secs"].as_f64().unwrap() > 0.0);
    assert!(s["throughput_per_sec"].as_f64().unwrap() > 0.0);
    for p in ["p50", "p90", "p99", "max"] {
        assert!(s["latency_ms"][p].as_f64().unwrap() > 0.0, "{p}");
    }
    assert_eq!(s["duplicates"], 0);
    assert_eq!(s.as_object().unwrap().len(), 15);
    assert_eq!(s["rate"], serde_json::json!({"mode": "fixed", "final_per_sec": null}));
    assert_eq!(s["errors"], serde_json::json!({}));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("delivered 120"), "human summary on stderr: {stderr}");
    assert_eq!(accepted_per_event(&rcv.deliveries()).len(), 120);
    for d in rcv.deliveries() {
        assert_eq!(d.headers["x-team"], "growth");
        let body: Body<'_> = serde_json::from_slice(&d.body).unwrap();
        assert_eq!(body.kind, "event.replayed");
        assert_eq!(body.id, savvy_replay::envelope_id("event.replayed", &event_id(&d)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_exits_3_and_is_never_printed() {
    let (api, rcv, dir) = scene(generate_bookings(10, 2), vec![]).await;
    let mut args = run_args(&api, &rcv, &dir.path().join("l.db"));
    args.extend(["--token".into(), "pt_secret_WRONG_do_not_print".into(), "-vv".into(), "--json".into()]);

    let out = run_bin(&args).await;

    assert_eq!(out.status.code(), Some(3));
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(stderr.contains("rejected the token"), "{stderr}");
    for secret in ["pt_secret_WRONG_do_not_print", TOKEN, SECRET] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "{secret} leaked:\n{stdout}\n{stderr}");
    }
    assert_eq!(rcv.stats().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_sends_nothing_and_masks_secrets() {
    let (api, rcv, dir) = scene(generate_bookings(40, 2), vec![]).await;
    let mut args = run_args(&api, &rcv, &dir.path().join("l.db"));
    args.extend(
        ["--dry-run", "--rate", "2", "-H", "Authorization: Bearer rcv_secret_123", "-H", "X-Team: growth"]
            .map(String::from),
    );

    let out = run_bin(&args).await;

    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(rcv.stats().requests, 0, "a dry run sends nothing");
    let stdout = text(&out.stdout);
    assert!(stdout.contains("40 to send"), "{stdout}");
    assert!(stdout.contains("token accepted: demo@example.com"), "{stdout}");
    assert!(stdout.contains("about 20s"), "ETA at 2/s: {stdout}");
    assert!(stdout.contains(&format!("POST {}", rcv.url())), "{stdout}");
    assert!(stdout.contains("authorization: <masked>") && stdout.contains("x-team: growth"));
    assert!(stdout.contains("x-savvycal-signature: sha256="));
    assert!(stdout.contains(r#"{"type":"event.created","id":"payload_"#));
    for secret in [TOKEN, SECRET, "rcv_secret_123"] {
        assert!(!stdout.contains(secret) && !text(&out.stderr).contains(secret), "{secret} leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_round_trips_byte_identical_into_run_input() {
    let events = generate_bookings(230, 4);
    let (api, rcv, dir) = scene(events.clone(), vec![]).await;
    let file = dir.path().join("events.ndjson");

    let out = bin_output(&["export", "--api-base", &api.base_url(), "--out", file.to_str().unwrap()]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let exported = std::fs::read_to_string(&file).unwrap();
    let mut lines: Vec<&str> = exported.lines().collect();
    let mut want: Vec<&str> = events.iter().map(String::as_str).collect();
    lines.sort_unstable();
    want.sort_unstable();
    assert_eq!(lines, want, "export is byte-identical to the API's entries");

    let mut args = input_args(&file, &rcv, &dir.path().join("l.db"));
    args.push("--json".into());
    let out = run_bin(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["delivered"], 230);
    for d in rcv.deliveries() {
        let body: Body<'_> = serde_json::from_slice(&d.body).unwrap();
        assert!(events.iter().any(|e| e == body.payload.get()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_input_line_is_named_and_the_rest_still_delivered() {
    let rcv = receiver(signed_receiver()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.ndjson");
    std::fs::write(&file, "{\"id\":\"event_a\"}\n{\"id\":\"event_b\",oops}\n\n{\"id\":\"event_c\"}\n").unwrap();

    let out = run_bin(&input_args(&file, &rcv, &dir.path().join("l.db"))).await;

    assert_eq!(out.status.code(), Some(3));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    let got: std::collections::HashSet<String> = rcv.deliveries().iter().map(event_id).collect();
    assert_eq!(got, ["event_a", "event_c"].map(String::from).into());
}

#[tokio::test]
async fn demo_replays_everything_even_with_failures() {
    for fail_rate in ["0", "0.2"] {
        let out = bin_output(&["demo", "--events", "300", "--rate", "0", "--fail-rate", fail_rate, "--json"]).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "fail rate {fail_rate}: {stderr}");
        let s = summary(&out);
        assert_eq!(s["delivered"], 300);
        assert!(stderr.contains("300 unique events, 0 duplicates, 0 signature failures"), "{stderr}");
        if fail_rate != "0" {
            assert!(s["retries"].as_u64().unwrap() > 0);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_verifies_signatures_and_the_user_agent_prints_and_counts() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut child = tokio::process::Command::new(bin())
        .args(["sink", "--listen", &format!("127.0.0.1:{port}"), "--secret", SECRET])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    savvy_replay::install_crypto_provider();
    let client = reqwest::Client::builder().user_agent("SavvyCal Webhooks (https://savvycal.com)").build().unwrap();
    let body = r#"{"type":"event.created","id":"payload_1","version":"2020-11-18","occurred_at":"2020-01-01T00:00:00Z","payload":{"id":"event_SINK1"}}"#;
    let url = format!("http://127.0.0.1:{port}/webhook");
    let mut status = None;
    for _ in 0..100 {
        let sent = client
            .post(&url)
            .header("x-savvycal-signature", savvy_replay::signature::sign(SECRET.as_bytes(), body.as_bytes()))
            .body(body)
            .send()
            .await;
        if let Ok(r) = sent {
            status = Some(r.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, Some(200));
    let bad = client.post(&url).header("x-savvycal-signature", "sha256=00").body(body).send().await.unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    // Like a receiver whose route is constrained on SavvyCal's User-Agent: anything else is a 404
    // that says why, even when correctly signed.
    let signature = savvy_replay::signature::sign(SECRET.as_bytes(), body.as_bytes());
    let wrong_ua =
        client.post(&url).header("user-agent", "curl/8.5").header("x-savvycal-signature", signature).body(body);
    let wrong_ua = wrong_ua.send().await.unwrap();
    assert_eq!(wrong_ua.status().as_u16(), 404);
    assert!(wrong_ua.text().await.unwrap().contains("User-Agent is not the one expected"));
    // SIGTERM: it prints its counts and exits 0.
    unsafe { libc::kill(child.id().unwrap() as i32, libc::SIGTERM) };
    let out = tokio::time::timeout(Duration::from_secs(10), async {
        let status = child.wait().await.unwrap();
        let mut stdout = String::new();
        let mut stderr = String::new();
        use tokio::io::AsyncReadExt;
        child.stdout.take().unwrap().read_to_string(&mut stdout).await.unwrap();
        child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
        (status, stdout, stderr)
    })
    .await
    .unwrap();
    assert_eq!(out.0.code(), Some(0));
    assert!(out.1.contains("200 event_SINK1 payload_1") && out.1.contains("signature ok"), "{}", out.1);
    assert!(out.1.contains("SIGNATURE INVALID"), "{}", out.1);
    assert!(out.1.contains("404 event_SINK1 payload_1") && out.1.contains("WRONG USER-AGENT `curl/8.5`"), "{}", out.1);
    assert!(out.2.contains("only SavvyCal's User-Agent"), "{}", out.2);
    assert!(out.2.contains("Received 3 requests") && out.2.contains("1 signature failures"), "{}", out.2);
    assert!(out.2.contains("1 wrong User-Agent"), "{}", out.2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_and_environment_follow_the_precedence() {
    let api = api(generate_bookings(20, 2), vec![]).await;
    let rcv = receiver(signed_receiver()).await;
    let other = receiver(signed_receiver()).await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("replay.toml");
    // The file names a receiver; the environment names another and wins; the flag's rate wins over
    // the file's.
    std::fs::write(
        &cfg,
        format!(
            "webhook_url = \"{}\"\napi_base = \"{}\"\nrate = \"1/m\"\nledger = \"{}\"\n",
            other.url(),
            api.base_url(),
            dir.path().join("l.db").display()
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(bin())
        .args(["--config", cfg.to_str().unwrap(), "run", "--rate", "unlimited"])
        .env("SAVVYCAL_TOKEN", TOKEN)
        .env("SAVVYCAL_WEBHOOK_SECRET", SECRET)
        .env("SAVVY_REPLAY_WEBHOOK_URL", rcv.url())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(rcv.stats().unique_accepted, 20);
    assert_eq!(other.stats().requests, 0);
}

#[tokio::test]
async fn demo_receiver_limits_push_back_and_everything_still_arrives() {
    // Quota 5 a second, one request at a time, 10 ms each: 12 events use up at least two windows,
    // so at least two requests are refused (429 + Retry-After), and every answer takes ≥ 10 ms.
    let args = ["demo", "--events", "12", "--rate", "0", "--concurrency", "1", "--json"];
    let limits = ["--quota", "5/1s", "--max-in-flight", "1", "--latency", "10ms"];
    let out = bin_output(&[&args[..], &limits[..]].concat()).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("takes 5 requests per 1s") && stderr.contains("503 above 1 requests in flight"),
        "{stderr}"
    );
    let s = summary(&out);
    assert_eq!(s["delivered"], 12);
    assert!(s["latency_ms"]["p50"].as_f64().unwrap() >= 10.0, "{s}");
    let refused: u64 = stderr
        .split("signature failures, ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no receiver line: {stderr}"));
    assert!(refused >= 2, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_line_turns_off_what_the_config_file_turned_on() {
    let (api, rcv, dir) = scene(generate_bookings(10, 2), vec![]).await;
    let cfg = dir.path().join("replay.toml");
    std::fs::write(&cfg, "dry_run = true\njson = true\nrate = 0\n").unwrap();
    let mut args = vec!["--config".to_owned(), cfg.display().to_string()];
    args.extend(run_args(&api, &rcv, &dir.path().join("l.db")));

    // The file's dry run, with the file's JSON summary: nothing sent.
    let out = run_bin(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["dry_run"], true);
    assert_eq!(rcv.stats().requests, 0);

    // `--no-dry-run` and `--no-json` undo it: everything is delivered, and stdout has no JSON.
    args.extend(["--no-dry-run", "--no-json", "-q"].map(String::from));
    let out = run_bin(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(rcv.stats().unique_accepted, 10);
    assert!(text(&out.stdout).trim().is_empty(), "{}", text(&out.stdout));

    // A bad value in the file names the file and the key, not a flag nobody typed.
    std::fs::write(&cfg, "dry_run = \"yes\"\n").unwrap();
    let out = run_bin(&args).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("replay.toml: `dry_run`: must be true or false"), "{}", text(&out.stderr));
}

/// Run a command the tool printed, split as a shell would, from `cwd`.
async fn run_printed(line: &str, cwd: &std::path::Path) -> std::process::Output {
    let start = line.find("savvy-replay ").unwrap_or_else(|| panic!("no command in {line:?}"));
    let words = shlex::split(&line[start..]).unwrap_or_else(|| panic!("not shell words: {line:?}"));
    assert_eq!(words[0], "savvy-replay");
    tokio::process::Command::new(bin()).args(&words[1..]).current_dir(cwd).output().await.unwrap()
}

fn ids_in(path: &std::path::Path) -> Vec<String> {
    let mut ids: Vec<String> = std::fs::read_to_string(path).unwrap().lines().map(id_of).collect();
    ids.sort();
    ids
}

/// The hints name the ledger (quoted: its path has a space) and, with two targets in it, the
/// target: pasted as printed, each writes its own failed events, not the default ledger's nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_failed_hints_of_status_and_the_summary_work_when_pasted() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("my ledgers")).unwrap();
    let ledger = dir.path().join("my ledgers/l2.db");
    let events = generate_bookings(6, 11);
    let ids: Vec<String> = events.iter().map(|e| id_of(e)).collect();
    let input = dir.path().join("events.ndjson");
    std::fs::write(&input, events.join("\n") + "\n").unwrap();
    let mut rejected = vec![vec![ids[1].clone(), ids[4].clone()], vec![ids[2].clone()]];
    for r in &mut rejected {
        r.sort();
    }
    let mut summaries = Vec::new();
    for reject in &rejected {
        let rcv = receiver(ReceiverConfig { reject_ids: reject.clone(), ..signed_receiver() }).await;
        let out = run_bin(&input_args(&input, &rcv, &ledger)).await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        summaries.push(text(&out.stderr));
    }
    let cwd = tempfile::tempdir().unwrap();
    // The summary's hint, between its backticks.
    for (stderr, reject) in summaries.iter().zip(&rejected) {
        let start = stderr.find("`savvy-replay failed").unwrap_or_else(|| panic!("{stderr}"));
        let line = &stderr[start + 1..];
        let line = &line[..line.find('`').unwrap()];
        let out = run_printed(line, cwd.path()).await;
        assert!(out.status.success(), "{line}: {}", text(&out.stderr));
        assert_eq!(&ids_in(&cwd.path().join("failed.ndjson")), reject, "{line}");
    }
    let out = bin_output(&["status", "--ledger", &ledger.display().to_string()]).await;
    let stdout = text(&out.stdout);
    let hints: Vec<&str> = stdout.lines().filter(|l| l.contains("savvy-replay failed")).collect();
    assert_eq!(hints.len(), 2, "{stdout}");
    let mut exported = Vec::new();
    for line in hints {
        let out = run_printed(line, cwd.path()).await;
        assert!(out.status.success(), "{line}: {}", text(&out.stderr));
        exported.push(ids_in(&cwd.path().join("failed.ndjson")));
    }
    exported.sort();
    rejected.sort();
    assert_eq!(exported, rejected, "{stdout}");
}
