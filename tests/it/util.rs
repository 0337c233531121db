//! Shared by the integration tests: real loopback servers (the crate's own fake SavvyCal API and
//! webhook receiver), a fast run configuration, and a way to run the real binary.

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
use savvy_replay::{ApiQuery, Backoff, Rate, RateMode, RetryPolicy, RunConfig, SourceConfig};
use savvy_replay_fake::{ApiFault, Delivery, FakeApi, FakeApiConfig, FakeWebhook, Receiver, ReceiverConfig};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

pub const TOKEN: &str = "pt_secret_test_7f3a9c1e5b";
pub const SECRET: &str = "whsec_test_c0ffee1234";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_savvy-replay")
}

pub async fn api(events: Vec<String>, faults: Vec<(u64, ApiFault)>) -> FakeApi {
    FakeApi::start(FakeApiConfig { token: TOKEN.into(), events, faults, webhooks: None }).await.expect("start fake API")
}

/// A fake API whose account has these webhooks.
pub async fn api_with_webhooks(events: Vec<String>, webhooks: Vec<FakeWebhook>) -> FakeApi {
    FakeApi::start(FakeApiConfig { token: TOKEN.into(), events, faults: vec![], webhooks: Some(webhooks) })
        .await
        .expect("start fake API")
}

/// The signature header as SavvyCal's docs verify it: `"sha256=" + HMAC-SHA256(secret, raw
/// body).hex().toUpperCase()`, compared whole. The embedded receiver's own check, written from the
/// docs and pinned to RFC 4231's vector, not the crate's signing code, so the two cannot share a
/// mistake.
pub fn documented_signature(secret: &str, body: &[u8]) -> String {
    savvy_replay_fake::receiver::expected_signature(secret.as_bytes(), body, savvy_replay_fake::HexCase::Upper)
}

/// The usual scene: a fake account with these events (and faults), a receiver that checks
/// signatures, and a temporary directory for ledgers and files.
pub async fn scene(events: Vec<String>, faults: Vec<(u64, ApiFault)>) -> (FakeApi, Receiver, tempfile::TempDir) {
    (api(events, faults).await, receiver(signed_receiver()).await, tempfile::tempdir().expect("temporary directory"))
}

pub async fn receiver(cfg: ReceiverConfig) -> Receiver {
    Receiver::start(ReceiverConfig { record: true, ..cfg }).await.expect("start receiver")
}

pub fn signed_receiver() -> ReceiverConfig {
    ReceiverConfig { secret: Some(SECRET.into()), record: true, ..ReceiverConfig::default() }
}

/// A run against the fakes that does not wait long for anything.
pub fn config(api: &FakeApi, rcv: &Receiver, ledger: &Path) -> RunConfig {
    config_to(api, &rcv.url(), ledger)
}

/// [`config`], delivering to any webhook URL (a hand-written test server).
pub fn config_to(api: &FakeApi, webhook_url: &str, ledger: &Path) -> RunConfig {
    RunConfig {
        signing_secret: Some(SecretString::from(SECRET)),
        timeout: Duration::from_secs(5),
        rate: RateMode::Fixed(Rate::UNLIMITED),
        retry: RetryPolicy {
            backoff: Backoff { initial: Duration::from_millis(10), max: Duration::from_secs(2) },
            max_retries: 10,
        },
        ledger: ledger.to_path_buf(),
        quiet: true,
        ..RunConfig::new(
            SourceConfig::Api {
                base: savvy_replay::api_base(&api.base_url()).unwrap(),
                token: SecretString::from(TOKEN),
                query: ApiQuery::default(),
            },
            webhook_url.parse().unwrap(),
        )
    }
}

#[derive(Deserialize)]
pub struct Body<'a> {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub version: String,
    pub occurred_at: String,
    #[serde(borrow)]
    pub payload: &'a RawValue,
}

/// The event id inside a delivery.
pub fn event_id(d: &Delivery) -> String {
    d.event_id.clone().expect("delivery with a payload id")
}

/// How many accepted (2xx) deliveries each event got.
pub fn accepted_per_event(deliveries: &[Delivery]) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for d in deliveries.iter().filter(|d| (200..300).contains(&d.status)) {
        *m.entry(event_id(d)).or_insert(0) += 1;
    }
    m
}

/// The id of a raw event JSON string.
pub fn id_of(raw: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(raw).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

/// Common flags for running the binary against the fakes.
pub fn run_args(api: &FakeApi, rcv: &Receiver, ledger: &Path) -> Vec<String> {
    run_args_to(&api.base_url(), &rcv.url(), ledger)
}

/// [`run_args`] for any API base and webhook URL (a hand-written server, a host only a proxy knows).
pub fn run_args_to(api_base: &str, webhook_url: &str, ledger: &Path) -> Vec<String> {
    let ledger = ledger.display().to_string();
    let args = ["run", "--api-base", api_base, "--webhook-url", webhook_url, "--ledger", &ledger];
    strings(&[&args[..], &["--retry-initial", "10ms", "--retry-max", "1s"]].concat())
}

pub fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// `args` with `flag` set to `value`, replacing the value it had.
pub fn set(mut args: Vec<String>, flag: &str, value: &str) -> Vec<String> {
    match args.iter().position(|a| a == flag) {
        Some(i) => args[i + 1] = value.to_owned(),
        None => args.extend(strings(&[flag, value])),
    }
    args
}

/// Flags for running the binary from an NDJSON file into `rcv`, unthrottled.
pub fn input_args(file: &Path, rcv: &Receiver, ledger: &Path) -> Vec<String> {
    let (file, ledger) = (file.display().to_string(), ledger.display().to_string());
    ["run", "--input", &file, "--webhook-url", &rcv.url(), "--rate", "0", "--ledger", &ledger].map(String::from).into()
}

/// Run the binary to completion with the token and secret in the environment.
pub async fn run_bin(args: &[String]) -> Output {
    tokio::process::Command::new(bin())
        .args(args)
        .env("SAVVYCAL_TOKEN", TOKEN)
        .env("SAVVYCAL_WEBHOOK_SECRET", SECRET)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run savvy-replay")
}

/// [`run_bin`] with borrowed arguments.
pub async fn bin_output(args: &[&str]) -> std::process::Output {
    run_bin(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).await
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The JSON summary: the last line of stdout.
pub fn summary(out: &Output) -> serde_json::Value {
    let stdout = text(&out.stdout);
    let last = stdout.lines().last().unwrap_or_else(|| panic!("no stdout; stderr: {}", text(&out.stderr)));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {last}"))
}

/// Wait until `cond` holds, polling, for at most `secs` seconds.
pub async fn wait_for(secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "condition not reached in {secs}s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A self-signed certificate for these names: its PEM (to trust through `SSL_CERT_FILE`) and an
/// acceptor serving it.
pub fn certificate(names: &[&str]) -> (String, TlsAcceptor) {
    let ck = rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    tls_acceptor(&ck.cert, &ck.signing_key)
}

/// An acceptor serving `cert`, and its PEM.
pub fn tls_acceptor(cert: &rcgen::Certificate, key: &rcgen::KeyPair) -> (String, TlsAcceptor) {
    let der: CertificateDer<'static> = cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(key.serialize_der());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der], key.into())
        .unwrap();
    (cert.pem(), TlsAcceptor::from(Arc::new(config)))
}

/// TLS on 127.0.0.1 in front of a plain-HTTP server on `upstream`; the port.
pub async fn tls_front(acceptor: TlsAcceptor, upstream: u16) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
            });
        }
    });
    port
}

/// `lines` written to `dir/events.ndjson`, and the `run --input` arguments that deliver them to
/// `rcv` with the ledger `dir/l.db`.
pub fn input_run_args(dir: &Path, lines: &[String], rcv: &Receiver) -> Vec<String> {
    let path = dir.join("events.ndjson");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let ledger = dir.join("l.db");
    [
        "run",
        "--input",
        &path.display().to_string(),
        "--webhook-url",
        &rcv.url(),
        "--ledger",
        &ledger.display().to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// A server that accepts connections and never answers, so requests stay in flight: its base URL
/// (`http://127.0.0.1:PORT`) and how many connections have sent a request so far.
pub async fn silent_server() -> (String, Arc<std::sync::atomic::AtomicU64>) {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = requests.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut sock, _)) = listener.accept().await {
            let seen = seen.clone();
            held.push(tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let mut counted = false;
                while let Ok(n) = sock.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    if !counted {
                        counted = true;
                        seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            }));
        }
    });
    (base, requests)
}

/// The variable that tells a child process of this test binary which test it runs alone.
const ALONE: &str = "SAVVY_REPLAY_TEST_ALONE";

/// Whether the test `test` (`module::name`) runs here: yes in the child process that runs it
/// alone; anywhere else this runs that child (this binary, filtered to `test`), asserts that it
/// passed, and says no. For tests that change what the whole process shares (the global log
/// subscriber, the umask), which would otherwise reach every other test of this binary.
pub async fn alone(test: &str) -> bool {
    if std::env::var_os(ALONE).is_some_and(|t| t == test) {
        return true;
    }
    let out = tokio::process::Command::new(std::env::current_exe().expect("the test binary's path"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ALONE, test)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run the test binary");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{test}, alone in a child process, failed:\n{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains(" 1 passed"), "{test} did not run in the child process:\n{stdout}");
    false
}
