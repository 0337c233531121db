//! `demo` and `sink`: the whole job on this machine, without a SavvyCal account or a real webhook.
//!
//! Both use the embedded servers in [`savvy_replay_fake`] — the same ones the integration tests use — and
//! `demo` drives the real pipeline against them, so what it shows is what a real run does.

use crate::output::print::errln;
use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::cli::{DemoArgs, GlobalArgs, ReceiverArgs, SinkArgs};
use crate::config::{RunConfig, SourceConfig};
use crate::deliver::WEBHOOK_USER_AGENT;
use crate::deliver::retry::{Backoff, RetryPolicy};
use crate::deliver::signature::HexCase;
use crate::error::{AppError, Ending, exit_code};
use crate::report::print_report;
use crate::run::signal::{spawn_signal_handler, wait_for_signal};
use crate::source::ApiQuery;
use indicatif::HumanCount;
use savvy_replay_fake::{FakeApi, FakeApiConfig, FakeWebhook, Quota, Receiver, ReceiverConfig, generate_bookings};

pub async fn demo(args: &DemoArgs, global: &GlobalArgs) -> Result<u8, AppError> {
    let token = format!("pt_secret_demo{:016x}", fastrand::u64(..));
    let secret = format!("whsec_demo{:016x}", fastrand::u64(..));
    // The receiver starts first: the fake account registers it as its webhook.
    let receiver = Receiver::start(ReceiverConfig {
        secret: Some(secret.clone()),
        fail_rate: args.fail_rate,
        retry_after_secs: 1,
        ..limited(&args.receiver)
    })
    .await
    .map_err(|e| demo_failed(format!("cannot start the demo receiver on 127.0.0.1: {e}")))?;
    // The account holds the bookings to replay and, like a real one, some made after its webhook
    // was created: SavvyCal delivered those itself, so the run (which takes the webhook's
    // created_at as --created-before) leaves them out.
    let later = args.events / 10;
    let mut bookings = generate_bookings(args.events + later, fastrand::u64(..));
    let webhook_created = match bookings.get(args.events) {
        Some(first_later) => created_at(first_later),
        None => None,
    }
    .unwrap_or_else(crate::event::now_rfc3339);
    let webhook = FakeWebhook::active(
        &format!("wh_DEMO{:016X}", fastrand::u64(..)),
        &receiver.url(),
        &webhook_created,
        Some(&secret),
    );
    let webhook_id = webhook.id.clone();
    let api = FakeApi::start(FakeApiConfig {
        token: token.clone(),
        events: std::mem::take(&mut bookings),
        faults: Vec::new(),
        webhooks: Some(vec![webhook]),
    })
    .await
    .map_err(|e| demo_failed(format!("cannot start the fake SavvyCal API on 127.0.0.1: {e}")))?;
    let dir = tempfile::tempdir()
        .map_err(|e| demo_failed(format!("cannot create a temporary directory for the demo ledger: {e}")))?;
    let (base, webhook) = match (crate::config::api_base(&api.base_url()), url::Url::parse(&receiver.url())) {
        (Ok(b), Ok(w)) => (b, w),
        _ => return Err(demo_failed("the embedded servers gave unusable addresses")),
    };
    if !global.quiet {
        errln!(
            "Demo: a fake SavvyCal account at {} with {} bookings, {} of them made before its webhook {webhook_id} \
             (created {webhook_created}), which posts to a local receiver at {}{}.",
            api.base_url(),
            HumanCount((args.events + later) as u64),
            HumanCount(args.events as u64),
            receiver.url(),
            if args.fail_rate > 0.0 {
                format!(" that fails {:.0}% of requests with 503 or 429 + Retry-After", args.fail_rate * 100.0)
            } else {
                String::new()
            }
        );
        if let Some(limits) = describe_limits(&args.receiver) {
            errln!("The receiver {limits}.");
        }
    }
    // No secret and no date here: the run takes both from the webhook it finds, as a real run does.
    let cfg = RunConfig {
        timeout: Duration::from_secs(10),
        concurrency: args.concurrency,
        rate: args.rate,
        retry: RetryPolicy {
            backoff: Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) },
            max_retries: 10,
        },
        ledger: dir.path().join("ledger.db"),
        json: args.json,
        quiet: global.quiet,
        ..RunConfig::new(
            SourceConfig::Api { base, token: SecretString::from(token), query: ApiQuery::default() },
            webhook,
        )
    };
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let report = crate::run::run(cfg, cancel).await?;
    // The demo's ledger is deleted on exit: no advice to rerun or to look at it.
    print_report(&report, args.json, global.quiet, None);
    let got = receiver.stats();
    if !global.quiet {
        errln!(
            "Receiver saw {} requests: {} unique events, {} duplicates, {} signature failures, {}{} answered 503/429.",
            HumanCount(got.requests),
            HumanCount(got.unique_accepted),
            HumanCount(got.duplicates),
            HumanCount(got.signature_failures),
            wrong_user_agent(got.user_agent_failures),
            HumanCount(got.transient),
        );
    }
    api.shutdown().await;
    receiver.shutdown().await;
    let code = report.exit_code();
    let refused = got.signature_failures + got.user_agent_failures;
    if code == exit_code(Ending::Done) && (got.unique_accepted != args.events as u64 || refused > 0) {
        return Err(demo_failed(format!(
            "the receiver got {} unique events of {} (signature failures: {}, wrong User-Agent: {})",
            got.unique_accepted, args.events, got.signature_failures, got.user_agent_failures
        )));
    }
    Ok(code)
}

/// A generated booking's `created_at`.
fn created_at(booking: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(booking).ok()?;
    v.get("created_at")?.as_str().map(str::to_owned)
}

/// `demo` failed (exit status 1: the demo did not show what it should).
fn demo_failed(msg: impl Into<String>) -> AppError {
    AppError::Demo(msg.into())
}

pub async fn sink(args: &SinkArgs, global: &GlobalArgs) -> Result<u8, AppError> {
    let receiver = match Receiver::start_on(
        args.listen,
        ReceiverConfig {
            secret: args.secret.clone(),
            signature_hex: match args.signature_hex {
                HexCase::Upper => savvy_replay_fake::HexCase::Upper,
                HexCase::Lower => savvy_replay_fake::HexCase::Lower,
            },
            fail_rate: args.fail_rate,
            retry_after_secs: 1,
            ..limited(&args.receiver)
        },
    )
    .await
    {
        Ok(r) => r,
        Err(error) => return Err(AppError::Listen { addr: args.listen, error }),
    };
    // One line per delivery, unless --quiet (benchmarks use the sink as a fast receiver). Lines are
    // written by a thread of their own: a slow terminal or pipe must not stall the server's tasks.
    let printer = (!global.quiet).then(|| {
        let (lines, printed) = std::sync::mpsc::channel::<Option<String>>();
        let handler_lines = lines.clone();
        receiver.on_delivery(move |d| {
            let _ = handler_lines.send(Some(delivery_line(d)));
        });
        let thread = std::thread::spawn(move || {
            let mut out = std::io::stdout();
            // `None` is the end: every line sent before it has been written.
            while let Ok(Some(line)) = printed.recv() {
                let _ = std::io::Write::write_all(&mut out, line.as_bytes());
            }
        });
        (lines, thread)
    });
    let checking = match (&args.secret, args.signature_hex) {
        (None, _) => "no --secret: signatures not checked",
        (Some(_), HexCase::Upper) => "verifying signatures as SavvyCal's docs do: sha256= and uppercase hex, exactly",
        (Some(_), HexCase::Lower) => "verifying signatures in lowercase hex (--signature-hex lower), exactly",
    };
    let user_agent = match &args.receiver.user_agent {
        _ if args.receiver.any_user_agent => "any User-Agent".to_owned(),
        Some(ua) => format!("only the User-Agent `{}`", String::from_utf8_lossy(ua.as_bytes())),
        None => format!("only SavvyCal's User-Agent `{WEBHOOK_USER_AGENT}`"),
    };
    errln!("Listening on {} ({checking}; taking {user_agent}); press Ctrl-C to stop.", receiver.url());
    if let Some(limits) = describe_limits(&args.receiver) {
        errln!("It {limits}.");
    }
    wait_for_signal().await;
    let s = receiver.stats();
    errln!(
        "\nReceived {} requests: {} accepted ({} unique events, {} duplicates), {} signature failures, {}{} rejected, \
         {} answered 503/429.",
        HumanCount(s.requests),
        HumanCount(s.accepted),
        HumanCount(s.unique_accepted),
        HumanCount(s.duplicates),
        HumanCount(s.signature_failures),
        wrong_user_agent(s.user_agent_failures),
        HumanCount(s.rejected),
        HumanCount(s.transient)
    );
    receiver.shutdown().await;
    if let Some((lines, thread)) = printer {
        let _ = lines.send(None);
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    Ok(exit_code(Ending::Done))
}

/// "N wrong User-Agent, " for the receiver's counts, when there were any (a replay sends the
/// expected one, so the usual line stays as it was).
fn wrong_user_agent(n: u64) -> String {
    if n == 0 { String::new() } else { format!("{} wrong User-Agent, ", HumanCount(n)) }
}

/// A receiver with the `--capacity`, `--quota`, `--max-in-flight` and `--latency` the user gave.
fn limited(args: &ReceiverArgs) -> ReceiverConfig {
    ReceiverConfig {
        capacity: args.capacity,
        capacity_steps: args.capacity_steps.clone().map(|s| s.0).unwrap_or_default(),
        quota: args.quota.map(|q| Quota { n: q.n, per: q.per }),
        max_in_flight: args.max_in_flight,
        latency: args.latency,
        user_agent: match &args.user_agent {
            _ if args.any_user_agent => None,
            // Checked by the flag's parser: printable ASCII.
            Some(ua) => Some(String::from_utf8_lossy(ua.as_bytes()).into_owned()),
            None => Some(WEBHOOK_USER_AGENT.to_owned()),
        },
        ..ReceiverConfig::default()
    }
}

/// The receiver limits in words ("takes at most 300 requests/s, …"), if any are set.
fn describe_limits(args: &ReceiverArgs) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(r) = args.capacity {
        parts.push(format!("takes at most {r} requests/s (429 above)"));
    }
    if let Some(steps) = &args.capacity_steps {
        let steps: Vec<String> =
            steps.0.iter().map(|(at, r)| format!("{r}/s after {}", humantime::format_duration(*at))).collect();
        parts.push(format!("changes its capacity to {}", steps.join(", then ")));
    }
    if let Some(q) = args.quota {
        parts.push(format!(
            "takes {} requests per {} (429 until the window ends)",
            q.n,
            humantime::format_duration(q.per)
        ));
    }
    if let Some(k) = args.max_in_flight {
        parts.push(format!("answers 503 above {k} requests in flight"));
    }
    if let Some(d) = args.latency {
        parts.push(format!("takes {} to answer", humantime::format_duration(d)));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn delivery_line(d: &savvy_replay_fake::Delivery) -> String {
    let sig = match d.signature_ok {
        Some(true) => "signature ok",
        Some(false) => "SIGNATURE INVALID",
        None => "unsigned",
    };
    let user_agent = match d.user_agent_ok {
        Some(false) => {
            let got: Vec<_> = d.headers.get_all(http::header::USER_AGENT).iter().map(|v| v.as_bytes()).collect();
            match got.as_slice() {
                [] => ", NO USER-AGENT".to_owned(),
                got => format!(
                    ", WRONG USER-AGENT `{}`",
                    got.iter().map(|v| String::from_utf8_lossy(v)).collect::<Vec<_>>().join("`, `")
                ),
            }
        }
        _ => String::new(),
    };
    format!(
        "{} {} {} ({} bytes, {sig}{user_agent})\n",
        d.status,
        d.event_id.as_deref().unwrap_or("-"),
        d.envelope_id.as_deref().unwrap_or("-"),
        d.body.len()
    )
}
