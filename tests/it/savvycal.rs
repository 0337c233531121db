//! Exactly as SavvyCal sends it: signatures a receiver written from SavvyCal's docs
//! accepts, SavvyCal's headers, and the webhook's own id, secret, version and start date taken
//! from the account — through the real binary where the user would see it.

use std::collections::HashSet;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};

use crate::util::*;
use savvy_replay::signature::HexCase;
use savvy_replay_fake::{FakeWebhook, ReceiverConfig, generate_bookings};
use tokio_util::sync::CancellationToken;

/// The account's own secret for the webhook under test: it must never be printed or stored.
const ACCOUNT_SECRET: &str = "acct_whsec_9d41f07be2c35a68";

/// Run the binary with the token in the environment and no signing secret anywhere.
async fn run_with_token_only(args: &[String]) -> Output {
    tokio::process::Command::new(bin())
        .args(args)
        .env("SAVVYCAL_TOKEN", TOKEN)
        .env_remove("SAVVYCAL_WEBHOOK_SECRET")
        .env_remove("SAVVY_REPLAY_WEBHOOK_URL")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run savvy-replay")
}

fn base_args(api_base: &str, webhook_url: &str, ledger: &Path) -> Vec<String> {
    ["run", "--api-base", api_base, "--webhook-url", webhook_url, "--ledger", &ledger.display().to_string()]
        .map(String::from)
        .to_vec()
}

/// `n` webhooks of other receivers, one disabled, each with its own secret.
fn other_webhooks(n: usize) -> Vec<FakeWebhook> {
    (0..n)
        .map(|i| {
            let mut w = FakeWebhook::active(
                &format!("wh_OTHER{i:02}"),
                &format!("https://hooks{i}.example.com/savvycal"),
                "2025-01-01T00:00:00Z",
                Some(&format!("other_secret_{i}")),
            );
            if i == 3 {
                w.state = "disabled".into();
            }
            w
        })
        .collect()
}

fn created_at(raw: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(raw).unwrap();
    v["created_at"].as_str().unwrap().to_owned()
}

/// Every file byte of the ledger directory (the database and any journal), for secret checks.
fn ledger_bytes(dir: &Path) -> Vec<u8> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            all.extend(std::fs::read(&path).unwrap());
        }
    }
    all
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_url_alone_find_the_webhook_on_page_two_and_replay_what_it_missed() {
    let events = generate_bookings(150, 71);
    // The webhook went live when booking 100 was made: SavvyCal delivered that one and the rest.
    let went_live = created_at(&events[100]);
    let before: HashSet<String> = events[..100].iter().map(|e| id_of(e)).collect();
    let rcv = receiver(ReceiverConfig { secret: Some(ACCOUNT_SECRET.into()), ..ReceiverConfig::default() }).await;
    // 21 other webhooks first: with SavvyCal's default page of 20, ours is on the second page.
    // Registered with a trailing slash and an upper-case scheme: still the same URL to a user.
    let mut hooks = other_webhooks(21);
    let mut ours = FakeWebhook::active(
        "wh_01ED74HMFGVZ92YVCWTD8Y8H6X",
        &format!("HTTP://{}/webhook/", rcv.addr()),
        &went_live,
        Some(ACCOUNT_SECRET),
    );
    ours.version = "2020-11-18".into();
    hooks.push(ours);
    hooks.push(FakeWebhook::active("wh_LAST", "https://last.example.com/", "2026-01-01T00:00:00Z", Some("x")));
    let api = api_with_webhooks(events.clone(), hooks).await;
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger.db");
    let args = base_args(&api.base_url(), &rcv.url(), &ledger);

    // The dry run names the webhook and what it took, and sends nothing.
    let mut dry = args.clone();
    dry.push("--dry-run".into());
    let out = run_with_token_only(&dry).await;
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(stdout.contains("100 to send"), "{stdout}");
    // The fact on its line, what was taken on the indented lines below it.
    let at = stdout.find("Webhook wh_01ED74HMFGVZ92YVCWTD8Y8H6X").expect("webhook line");
    let mut block = stdout[at..].lines();
    let first = block.next().unwrap_or_default();
    let line = std::iter::once(first).chain(block.take_while(|l| l.starts_with("  "))).collect::<Vec<_>>().join(" ");
    for part in ["matches --webhook-url", "its signing secret (masked)", &format!("--created-before {went_live}")] {
        assert!(line.contains(part), "{line}");
    }
    assert!(stdout.contains("x-savvycal-webhook-id: wh_01ED74HMFGVZ92YVCWTD8Y8H6X"), "{stdout}");
    assert_eq!(rcv.stats().requests, 0);
    let pages = api.webhook_requests();
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(pages[1].starts_with("/v1/webhooks?after="), "{pages:?}");

    // The real run, with every log line there is.
    let mut real = args.clone();
    real.extend(["--rate", "0", "--json", "-vv"].map(String::from));
    let out = run_with_token_only(&real).await;
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(summary(&out)["delivered"], 100);
    assert_eq!(stderr.matches("Webhook wh_01ED74HMFGVZ92YVCWTD8Y8H6X").count(), 1, "{stderr}");

    let deliveries = rcv.deliveries();
    let got: HashSet<String> = deliveries.iter().map(event_id).collect();
    assert_eq!(got, before, "exactly the events created before the webhook's created_at");
    for d in &deliveries {
        assert_eq!(d.status, 200);
        assert_eq!(d.headers["x-savvycal-signature"], documented_signature(ACCOUNT_SECRET, &d.body).as_str());
        assert_eq!(d.headers["x-savvycal-webhook-id"], "wh_01ED74HMFGVZ92YVCWTD8Y8H6X");
        assert_eq!(d.headers["user-agent"], "SavvyCal Webhooks (https://savvycal.com)");
    }

    let dry_vv = text(&dry_output_for_leaks(&dry).await);
    assert!(dry_vv.contains("Webhook wh_01ED74HMFGVZ92YVCWTD8Y8H6X"), "{dry_vv}");
    for secret in [ACCOUNT_SECRET, TOKEN, "other_secret_"] {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "{secret} printed");
        assert!(!dry_vv.contains(secret), "{secret} printed in the dry run");
    }
    assert!(!contains(&ledger_bytes(dir.path()), ACCOUNT_SECRET), "the secret is in the ledger");
    // A second run finds everything delivered: the lookup does not change the ledger's target.
    let out = run_with_token_only(&real).await;
    assert_eq!(summary(&out)["skipped"], 100, "{}", text(&out.stderr));
}

/// The dry run's stdout and stderr together, at -vv.
async fn dry_output_for_leaks(dry: &[String]) -> Vec<u8> {
    let mut args = dry.to_vec();
    args.push("-vv".into());
    let out = run_with_token_only(&args).await;
    [out.stdout, out.stderr].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_id_picks_a_webhook_whose_url_differs_and_none_lifts_its_date() {
    let events = generate_bookings(40, 72);
    let rcv = receiver(ReceiverConfig { secret: Some(ACCOUNT_SECRET.into()), ..ReceiverConfig::default() }).await;
    let mut production = FakeWebhook::active(
        "wh_PROD",
        "https://hooks.example.com/savvycal",
        &created_at(&events[10]),
        Some(ACCOUNT_SECRET),
    );
    production.state = "disabled".into();
    let mut hooks = other_webhooks(2);
    hooks.push(production);
    let api = api_with_webhooks(events.clone(), hooks).await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = base_args(&api.base_url(), &rcv.url(), &dir.path().join("l.db"));
    args.extend(["--webhook-id", "wh_PROD", "--created-before", "none", "--rate", "0", "--json"].map(String::from));

    let out = run_with_token_only(&args).await;

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(summary(&out)["delivered"], 40, "--created-before none: everything");
    assert_eq!(api.webhook_requests(), ["/v1/webhooks/wh_PROD"]);
    assert!(stderr.contains("wh_PROD is disabled"), "a disabled webhook is a warning: {stderr}");
    assert!(stderr.contains("its URL is https://hooks.example.com/savvycal"), "{stderr}");
    for d in rcv.deliveries() {
        assert_eq!(d.status, 200);
        assert_eq!(d.headers["x-savvycal-webhook-id"], "wh_PROD");
        assert_eq!(d.headers["x-savvycal-signature"], documented_signature(ACCOUNT_SECRET, &d.body).as_str());
    }
    assert!(!stderr.contains(ACCOUNT_SECRET));

    // Without --webhook-id no webhook has the receiver's URL: said once, and the run goes on.
    let mut args = base_args(&api.base_url(), &rcv.url(), &dir.path().join("l3.db"));
    args.extend(["--signing-secret", ACCOUNT_SECRET, "--rate", "0"].map(String::from));
    let out = run_with_token_only(&args).await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("No webhook of this SavvyCal account (3 checked) has the URL").count(), 1, "{stderr}");
    assert!(stderr.contains("delivered 40"), "{stderr}");
    assert!(!stderr.contains(ACCOUNT_SECRET));

    // An id the account does not have is a usage error, not a silent replay of everything.
    let mut args = base_args(&api.base_url(), &rcv.url(), &dir.path().join("l2.db"));
    args.extend(["--webhook-id", "wh_NOPE"].map(String::from));
    let out = run_with_token_only(&args).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--webhook-id wh_NOPE"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_without_webhooks_still_replays_with_a_one_line_notice() {
    let (api, rcv, dir) = scene(generate_bookings(30, 73), vec![]).await;
    let mut args = run_args(&api, &rcv, &dir.path().join("l.db"));
    args.extend(["--rate", "0", "--json"].map(String::from));

    let out = run_bin(&args).await;

    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(summary(&out)["delivered"], 30);
    let notices: Vec<&str> = stderr.lines().filter(|l| l.contains("/v1/webhooks")).collect();
    assert_eq!(notices.len(), 1, "{stderr}");
    assert!(notices[0].contains("HTTP 404"), "{stderr}");
    assert_eq!(stderr.matches("without the webhook's defaults").count(), 1, "{stderr}");
    for d in rcv.deliveries() {
        assert_eq!(d.signature_ok, Some(true), "signed with --signing-secret (from the environment)");
        assert!(d.headers.get("x-savvycal-webhook-id").is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_verifying_as_savvycal_documents_rejects_lowercase_signatures() {
    let events = generate_bookings(25, 74);
    let api = api(events.clone(), vec![]).await;
    let strict = receiver(signed_receiver()).await;
    let dir = tempfile::tempdir().unwrap();

    // Uppercase (the default): every request verifies.
    let report =
        savvy_replay::run(config(&api, &strict, &dir.path().join("a.db")), CancellationToken::new()).await.unwrap();
    assert_eq!(report.summary.delivered, 25);
    assert!(strict.deliveries().iter().all(|d| d.signature_ok == Some(true) && d.status == 200));

    // Lowercase: the same HMAC, and every request is refused: the run stops at its first answers
    // (exit 2), with nothing marked failed.
    let strict = receiver(signed_receiver()).await;
    let mut cfg = config(&api, &strict, &dir.path().join("b.db"));
    cfg.signature_hex = HexCase::Lower;
    cfg.retry.max_retries = 0;
    let report = savvy_replay::run(cfg, CancellationToken::new()).await.unwrap();
    assert_eq!((report.summary.delivered, report.summary.failed, report.exit_code()), (0, 0, 2));
    assert!(!strict.deliveries().is_empty());
    for d in strict.deliveries() {
        assert_eq!((d.status, d.signature_ok), (401, Some(false)));
        let sig = d.headers["x-savvycal-signature"].to_str().unwrap();
        assert_eq!(sig, documented_signature(SECRET, &d.body).to_lowercase());
    }

    // A receiver written against lowercase takes `--signature-hex lower`.
    let lower =
        receiver(ReceiverConfig { signature_hex: savvy_replay_fake::HexCase::Lower, ..signed_receiver() }).await;
    let mut cfg = config(&api, &lower, &dir.path().join("c.db"));
    cfg.signature_hex = HexCase::Lower;
    let report = savvy_replay::run(cfg, CancellationToken::new()).await.unwrap();
    assert_eq!(report.summary.delivered, 25);
}

/// What a receiver in the wild does with SavvyCal's User-Agent: a route constrained on
/// `request.user_agent == "SavvyCal Webhooks (https://savvycal.com)"` (or another expected value),
/// anything else unrouted (404). Written here from SavvyCal's documented header, not from our
/// sender or our fake receiver. Its URL, and per request the User-Agent(s) got and the status.
async fn user_agent_route(expected: &'static str) -> (String, Arc<Mutex<Vec<(Vec<String>, u16)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/webhooks/savvycal", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let got: Vec<String> = req
                        .headers()
                        .get_all("user-agent")
                        .iter()
                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                        .collect();
                    let status = if got == [expected] { 200 } else { 404 };
                    log.lock().unwrap().push((got, status));
                    let answer =
                        hyper::Response::builder().status(status).body(http_body_util::Full::new(bytes::Bytes::new()));
                    async move { answer }
                });
                let io = hyper_util::rt::TokioIo::new(tcp);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    });
    (url, seen)
}

fn input_file_args(dir: &Path, n: usize, webhook_url: &str) -> Vec<String> {
    let path = dir.join("events.ndjson");
    std::fs::write(&path, generate_bookings(n, 91).join("\n") + "\n").unwrap();
    let ledger = dir.join("l.db").display().to_string();
    ["run", "--input", &path.display().to_string(), "--webhook-url", webhook_url, "--ledger", &ledger]
        .into_iter()
        .chain(["--rate", "0", "--json"])
        .map(String::from)
        .collect()
}

/// SavvyCal's User-Agent exactly, with nothing after it: a receiver that compares it with `==`
/// takes every replay (it used to reject them all for a ` savvy-replay/…` suffix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_comparing_the_user_agent_exactly_takes_every_replay() {
    const SAVVYCAL: &str = "SavvyCal Webhooks (https://savvycal.com)";
    let (url, seen) = user_agent_route(SAVVYCAL).await;
    let dir = tempfile::tempdir().unwrap();
    let out = run_bin(&input_file_args(dir.path(), 20, &url)).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["delivered"], 20);
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 20);
    assert!(seen.iter().all(|(ua, status)| ua == &[SAVVYCAL] && *status == 200), "{seen:?}");
}

/// `--user-agent` (or its environment variable) replaces SavvyCal's, for a receiver that wants to
/// tell replays apart; the dry run shows the one that will be sent; an empty or unsendable value is
/// a usage error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_agent_flag_replaces_savvycals_and_bad_values_are_refused() {
    const MARKED: &str = "SavvyCal Webhooks (https://savvycal.com) replay";
    let (url, seen) = user_agent_route(MARKED).await;
    let dir = tempfile::tempdir().unwrap();
    let mut args = input_file_args(dir.path(), 10, &url);
    args.extend(["--user-agent".into(), MARKED.into()]);

    let mut dry = args.clone();
    dry.push("--dry-run".into());
    let out = run_bin(&dry).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let shown = [text(&out.stdout), text(&out.stderr)].concat();
    assert!(shown.contains(&format!("\nuser-agent: {MARKED}\n")), "{shown}");
    assert_eq!(shown.matches("user-agent:").count(), 1, "{shown}");

    let out = run_bin(&args).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["delivered"], 10);

    // The same from the environment, into a fresh ledger.
    let env_dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(bin())
        .args(input_file_args(env_dir.path(), 10, &url))
        .env("SAVVY_REPLAY_USER_AGENT", MARKED)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 20);
    assert!(seen.iter().all(|(ua, status)| ua == &[MARKED] && *status == 200), "{seen:?}");

    for (bad, says) in [("", "empty"), ("  ", "empty"), ("replay\u{7}bell", "characters HTTP does not allow")] {
        let mut args = input_file_args(dir.path(), 1, &url);
        args.extend(["--user-agent".into(), bad.into()]);
        let out = run_bin(&args).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains("--user-agent") && stderr.contains(says), "{bad:?}: {stderr}");
    }
}

/// A webhook whose `created_at` cannot be read gives no bound: rather than re-send what SavvyCal
/// already delivered, the run (and the dry run) stops before sending and says how to give one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_webhook_created_at_stops_before_sending_unless_created_before_is_given() {
    let events = generate_bookings(30, 75);
    let rcv = receiver(ReceiverConfig { secret: Some(ACCOUNT_SECRET.into()), ..ReceiverConfig::default() }).await;
    let hook = FakeWebhook::active("wh_ODD", &rcv.url(), "2025-10-31 14:22:12", Some(ACCOUNT_SECRET));
    let api = api_with_webhooks(events.clone(), vec![hook]).await;
    let dir = tempfile::tempdir().unwrap();
    let args = |ledger: &str, extra: &[&str]| {
        let mut a = base_args(&api.base_url(), &rcv.url(), &dir.path().join(ledger));
        a.extend(["--rate", "0"].iter().chain(extra).map(|s| s.to_string()));
        a
    };

    for dry in [&["--dry-run"][..], &[]] {
        let out = run_with_token_only(&args("l.db", dry)).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{dry:?}: {stderr}");
        assert!(stderr.contains("`2025-10-31 14:22:12` is not an RFC 3339 timestamp"), "{stderr}");
        assert!(stderr.contains("--created-before <RFC 3339 timestamp>"), "{stderr}");
        assert!(stderr.contains("--created-before none"), "{stderr}");
        assert!(rcv.deliveries().is_empty(), "nothing sent: {stderr}");
    }

    // Given either way, the run goes on.
    let bound = created_at(&events[10]);
    let out = run_with_token_only(&args("l2.db", &["--created-before", &bound, "--json"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["delivered"], 10);
    let out = run_with_token_only(&args("l3.db", &["--created-before", "none", "--json"])).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(summary(&out)["delivered"], 30);
}
