//! `demo` and `sink`: the whole job on this machine, without a SavvyCal account or a real webhook.
//!
//! Both use the embedded servers in [`crate::fake`] — the same ones the integration tests use — and
//! `demo` drives the real pipeline against them, so what it shows is what a real run does.

use std::time::Duration;

use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::cli::{DemoArgs, GlobalArgs, SinkArgs};
use crate::config::{RunConfig, SourceConfig};
use crate::error::{AppError, exit};
use crate::fake::{FakeApi, FakeApiConfig, Receiver, ReceiverConfig, generate_bookings};
use crate::progress::thousands;
use crate::report::print_report;
use crate::retry::{Backoff, RetryPolicy};
use crate::signal::{spawn_signal_handler, wait_for_signal};
use crate::source::ApiQuery;

pub async fn demo(args: &DemoArgs, global: &GlobalArgs) -> Result<u8, AppError> {
    let token = format!("pt_secret_demo{:016x}", fastrand::u64(..));
    let secret = format!("whsec_demo{:016x}", fastrand::u64(..));
    let api = FakeApi::start(FakeApiConfig {
        token: token.clone(),
        events: generate_bookings(args.events, fastrand::u64(..)),
        faults: Vec::new(),
    })
    .await
    .map_err(|e| demo_failed(format!("cannot start the fake SavvyCal API on 127.0.0.1: {e}")))?;
    let receiver = Receiver::start(ReceiverConfig {
        secret: Some(secret.clone()),
        fail_rate: args.fail_rate,
        retry_after_secs: 1,
        ..ReceiverConfig::default()
    })
    .await
    .map_err(|e| demo_failed(format!("cannot start the demo receiver on 127.0.0.1: {e}")))?;
    let dir = tempfile::tempdir()
        .map_err(|e| demo_failed(format!("cannot create a temporary directory for the demo ledger: {e}")))?;
    let (base, webhook) = match (crate::config::api_base(&api.base_url()), url::Url::parse(&receiver.url())) {
        (Ok(b), Ok(w)) => (b, w),
        _ => return Err(demo_failed("the embedded servers gave unusable addresses")),
    };
    if !global.quiet {
        eprintln!(
            "Demo: a fake SavvyCal account with {} bookings at {}, replayed into a local receiver at {}{}.",
            thousands(args.events as u64),
            api.base_url(),
            receiver.url(),
            if args.fail_rate > 0.0 {
                format!(" that fails {:.0}% of requests with 503 or 429 + Retry-After", args.fail_rate * 100.0)
            } else {
                String::new()
            }
        );
    }
    let cfg = RunConfig {
        signing_secret: Some(SecretString::from(secret)),
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
    let ledger = cfg.ledger.clone();
    let report = crate::pipeline::run(cfg, cancel).await?;
    print_report(&report, args.json, global.quiet, &ledger);
    let got = receiver.stats();
    if !global.quiet {
        eprintln!(
            "Receiver saw {} requests: {} unique events, {} duplicates, {} signature failures, {} answered 503/429.",
            thousands(got.requests),
            thousands(got.unique_accepted),
            thousands(got.duplicates),
            thousands(got.signature_failures),
            thousands(got.transient),
        );
    }
    api.shutdown().await;
    receiver.shutdown().await;
    let code = report.exit_code();
    if code == exit::OK && (got.unique_accepted != args.events as u64 || got.signature_failures > 0) {
        return Err(demo_failed(format!(
            "the receiver got {} unique events of {} (signature failures: {})",
            got.unique_accepted, args.events, got.signature_failures
        )));
    }
    Ok(code)
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
            fail_rate: args.fail_rate,
            retry_after_secs: 1,
            ..ReceiverConfig::default()
        },
    )
    .await
    {
        Ok(r) => r,
        Err(error) => return Err(AppError::Listen { addr: args.listen, error }),
    };
    // One line per delivery, unless --quiet (benchmarks use the sink as a fast receiver).
    if !global.quiet {
        receiver.on_delivery(print_delivery);
    }
    eprintln!(
        "Listening on {} ({}); press Ctrl-C to stop.",
        receiver.url(),
        if args.secret.is_some() { "verifying signatures" } else { "no --secret: signatures not checked" }
    );
    wait_for_signal().await;
    let s = receiver.stats();
    eprintln!(
        "\nReceived {} requests: {} accepted ({} unique events, {} duplicates), {} signature failures, {} rejected, {} answered 503/429.",
        thousands(s.requests),
        thousands(s.accepted),
        thousands(s.unique_accepted),
        thousands(s.duplicates),
        thousands(s.signature_failures),
        thousands(s.rejected),
        thousands(s.transient)
    );
    receiver.shutdown().await;
    Ok(exit::OK)
}

fn print_delivery(d: &crate::fake::Delivery) {
    let sig = match d.signature_ok {
        Some(true) => "signature ok",
        Some(false) => "SIGNATURE INVALID",
        None => "unsigned",
    };
    let line = format!(
        "{} {} {} ({} bytes, {sig})\n",
        d.status,
        d.event_id.as_deref().unwrap_or("-"),
        d.envelope_id.as_deref().unwrap_or("-"),
        d.body.len()
    );
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), line.as_bytes());
}
