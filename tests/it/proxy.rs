//! Proxies from the environment, for the SavvyCal API and the webhook alike: through a small proxy
//! written here (absolute-form forwarding and CONNECT tunnels), over http and https, with
//! credentials, and with `NO_PROXY`. The variables are set on the real binary's process only.
//!
//! Hosts named `*.test` do not resolve: only the proxy knows they are this machine. So a delivery
//! to `webhook.test` that arrives at all went through the proxy.

use std::sync::{Arc, Mutex};

use crate::util::*;
use savvy_replay_fake::{FakeApi, Receiver, generate_bookings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const PROXY_VARS: [&str; 9] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "REQUEST_METHOD",
];

/// What the proxy saw on one client connection: its first line and `Proxy-Authorization`.
#[derive(Debug, Clone)]
struct Seen {
    line: String,
    auth: Option<String>,
}

#[derive(Default)]
struct ProxyLog {
    seen: Mutex<Vec<Seen>>,
}

impl ProxyLog {
    fn lines(&self) -> Vec<String> {
        self.seen.lock().unwrap().iter().map(|s| s.line.clone()).collect()
    }
}

/// Read a request head (through the blank line); `None` if the client went away first.
async fn read_head(tcp: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut chunk).await.ok()?;
        if n == 0 || buf.len() > 64 * 1024 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(buf)
}

/// Where `host:port` really is: `*.test` names are this machine.
async fn dial(authority: &str) -> Option<TcpStream> {
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = if host.ends_with(".test") { "127.0.0.1" } else { host.trim_matches(['[', ']']) };
    TcpStream::connect((host, port)).await.ok()
}

/// An HTTP proxy on 127.0.0.1: `CONNECT host:port` opens a tunnel; an absolute-form request
/// (`POST http://host:port/path`) is passed on with the rest of its connection. Each client
/// connection is logged by its first line. The proxy does not check credentials; it records them.
async fn start_proxy() -> (String, Arc<ProxyLog>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let log = Arc::new(ProxyLog::default());
    let l = log.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = l.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut client).await else { return };
                let text = String::from_utf8_lossy(&head).into_owned();
                let line = text.lines().next().unwrap_or_default().to_owned();
                let auth = text
                    .lines()
                    .find_map(|h| h.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("proxy-authorization")))
                    .map(|(_, v)| v.trim().to_owned());
                log.seen.lock().unwrap().push(Seen { line: line.clone(), auth });
                let mut parts = line.split(' ');
                let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
                if method == "CONNECT" {
                    let Some(mut upstream) = dial(target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n").await;
                        return;
                    };
                    if client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                } else {
                    let authority = target.strip_prefix("http://").and_then(|r| r.split('/').next());
                    let Some(mut upstream) = (match authority {
                        Some(a) => dial(a).await,
                        None => None,
                    }) else {
                        let _ = client.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n").await;
                        return;
                    };
                    // The origin accepts absolute-form (RFC 9112 §3.2.2), so the bytes go as they are.
                    if upstream.write_all(&head).await.is_ok() {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                }
            });
        }
    });
    (format!("127.0.0.1:{}", addr.port()), log)
}

/// The proxy, a fake API with `n` generated events (`seed`), a receiver, and a directory for
/// the ledgers.
async fn proxied(n: usize, seed: u64) -> (String, Arc<ProxyLog>, FakeApi, Receiver, tempfile::TempDir) {
    let (proxy, log) = start_proxy().await;
    let api = api(generate_bookings(n, seed), vec![]).await;
    (proxy, log, api, receiver(signed_receiver()).await, tempfile::tempdir().unwrap())
}

fn port_of(url: &str) -> u16 {
    url::Url::parse(url).unwrap().port().unwrap()
}

/// The binary with exactly these proxy variables (the ambient ones removed).
fn command(args: Vec<String>, env: &[(&str, String)]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin());
    cmd.args(args).env("SAVVYCAL_TOKEN", TOKEN).env("SAVVYCAL_WEBHOOK_SECRET", SECRET);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(std::process::Stdio::null());
    cmd
}

/// Run [`command`] to its end.
async fn run_with(args: Vec<String>, env: &[(&str, String)]) -> std::process::Output {
    command(args, env).output().await.expect("run savvy-replay")
}

fn args(api_base: &str, webhook: &str, ledger: &std::path::Path) -> Vec<String> {
    let args = run_args_to(api_base, webhook, ledger);
    [args, strings(&["--rate", "0", "--concurrency", "3", "--json"])].concat()
}

fn assert_all_delivered(out: &std::process::Output, rcv: &Receiver, n: usize) {
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let s = summary(out);
    assert_eq!((s["delivered"].as_u64(), s["failed"].as_u64()), (Some(n as u64), Some(0)), "{s}");
    let per_event = accepted_per_event(&rcv.deliveries());
    assert_eq!(per_event.len(), n, "every event arrived");
    assert!(per_event.values().all(|c| *c == 1), "each once: {per_event:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_api_and_webhook_go_through_http_proxy_in_absolute_form() {
    const N: usize = 12;
    let (proxy, log, api, rcv, dir) = proxied(N, 31).await;
    let hook = format!("http://webhook.test:{}/webhook", port_of(&rcv.url()));

    let out =
        run_with(args(&api.base_url(), &hook, &dir.path().join("l.db")), &[("HTTP_PROXY", format!("http://{proxy}"))])
            .await;

    assert_all_delivered(&out, &rcv, N);
    let lines = log.lines();
    assert!(lines.iter().all(|l| !l.starts_with("CONNECT")), "no tunnel for http://: {lines:?}");
    let api_target = format!("GET {}/v1/", api.base_url());
    assert!(lines.iter().any(|l| l.starts_with(&api_target)), "the API through the proxy: {lines:?}");
    let hook_target = format!("POST {hook} HTTP/1.1");
    assert!(lines.contains(&hook_target), "the webhook in absolute form: {lines:?}");
    // Every webhook request went through the proxy: webhook.test resolves nowhere else.
    assert!(rcv.deliveries().iter().all(|d| d.status == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_api_and_webhook_go_through_a_connect_tunnel_with_the_proxy_credentials() {
    const N: usize = 12;
    const PROXY_PASSWORD: &str = "pr0xy-s3cret";
    let (proxy, log, api, rcv, dir) = proxied(N, 32).await;
    let (pem, acceptor) = certificate(&["api.test", "webhook.test"]);
    let api_port = tls_front(acceptor.clone(), port_of(&api.base_url())).await;
    let hook_port = tls_front(acceptor, port_of(&rcv.url())).await;
    let pem_path = dir.path().join("root.pem");
    std::fs::write(&pem_path, pem).unwrap();

    // Lower-case, as curl prefers it.
    let out = run_with(
        args(
            &format!("https://api.test:{api_port}"),
            &format!("https://webhook.test:{hook_port}/webhook"),
            &dir.path().join("l.db"),
        ),
        &[
            ("https_proxy", format!("http://replay:{PROXY_PASSWORD}@{proxy}")),
            ("SSL_CERT_FILE", pem_path.display().to_string()),
        ],
    )
    .await;

    assert_all_delivered(&out, &rcv, N);
    let seen = log.seen.lock().unwrap().clone();
    assert!(!seen.is_empty());
    let tunnels = |target: String| seen.iter().filter(|s| s.line == format!("CONNECT {target} HTTP/1.1")).count();
    assert!(tunnels(format!("api.test:{api_port}")) >= 1, "{seen:?}");
    // One tunnel per worker connection, at most one per worker here (no failures).
    let hook_tunnels = tunnels(format!("webhook.test:{hook_port}"));
    assert!((1..=3).contains(&hook_tunnels), "{seen:?}");
    assert_eq!(tunnels(format!("api.test:{api_port}")) + hook_tunnels, seen.len(), "only tunnels: {seen:?}");
    // base64("replay:pr0xy-s3cret"), on every CONNECT, from both HTTP clients.
    let want = "Basic cmVwbGF5OnByMHh5LXMzY3JldA==";
    assert!(seen.iter().all(|s| s.auth.as_deref() == Some(want)), "{seen:?}");
    let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(!output.contains(PROXY_PASSWORD), "the proxy password leaked: {output}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_proxy_sends_the_hosts_it_names_direct_and_the_rest_through_the_proxy() {
    const N: usize = 8;
    let (proxy, log, api, rcv, dir) = proxied(N, 33).await;
    let hook = format!("http://localhost:{}/webhook", port_of(&rcv.url()));

    let out = run_with(
        args(&api.base_url(), &hook, &dir.path().join("l.db")),
        &[("http_proxy", format!("http://{proxy}")), ("no_proxy", "example.org, localhost".into())],
    )
    .await;

    assert_all_delivered(&out, &rcv, N);
    let lines = log.lines();
    assert!(!lines.is_empty() && lines.iter().all(|l| l.starts_with("GET http://127.0.0.1:")), "{lines:?}");

    // Upper-case NO_PROXY naming the API's address: nothing goes through the proxy.
    let rcv2 = receiver(signed_receiver()).await;
    let before = log.lines().len();
    let out = run_with(
        args(&api.base_url(), &rcv2.url(), &dir.path().join("l2.db")),
        &[("HTTP_PROXY", format!("http://{proxy}")), ("NO_PROXY", "127.0.0.1".into())],
    )
    .await;
    assert_all_delivered(&out, &rcv2, N);
    assert_eq!(log.lines().len(), before, "{:?}", log.lines());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dry_run_names_the_proxy_without_its_credentials() {
    let api = api(generate_bookings(2, 34), vec![]).await;
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: bind, note it, close.
    let dead = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let mut a = args(&api.base_url(), "https://webhook.test:9/webhook", &dir.path().join("l.db"));
    a.retain(|f| f != "--json");
    a.push("--dry-run".into());
    let out = run_with(a, &[("HTTPS_PROXY", format!("http://u:hidden@{dead}"))]).await;
    let output = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{output}");
    assert!(output.contains(&format!("(through the proxy {dead})\nPOST https://webhook.test:9/webhook")), "{output}");
    assert!(!output.contains("hidden"), "{output}");
}

/// A proxy that answers every request (CONNECT or forwarded) with `answer`, and counts them.
async fn refusing_proxy(answer: &'static [u8]) -> (String, Arc<std::sync::atomic::AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = listener.local_addr().unwrap().to_string();
    let asked = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let count = asked.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                if read_head(&mut tcp).await.is_some() {
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let _ = tcp.write_all(answer).await;
                }
            });
        }
    });
    (proxy, asked)
}

/// Run the binary, but give up on it (and fail the test) if it has not ended in a minute: a run
/// that takes a proxy's refusal for an outage would wait out `--give-up-after 10m`.
async fn run_bounded(args: Vec<String>, env: &[(&str, String)]) -> std::process::Output {
    let mut cmd = command([args, strings(&["--give-up-after", "10m"])].concat(), env);
    tokio::time::timeout(std::time::Duration::from_secs(60), cmd.kill_on_drop(true).output())
        .await
        .expect("the run should end promptly when the proxy refuses, not wait for --give-up-after")
        .expect("run savvy-replay")
}

/// A proxy that answers everything with `answer`, a fake API with `n` events (`seed`), and a
/// ledger in a directory of its own.
struct Refusing {
    proxy: String,
    asked: Arc<std::sync::atomic::AtomicU64>,
    api: FakeApi,
    ledger: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Refusing {
    async fn new(answer: &'static [u8], n: usize, seed: u64) -> Refusing {
        let (proxy, asked) = refusing_proxy(answer).await;
        let api = api(generate_bookings(n, seed), vec![]).await;
        let dir = tempfile::tempdir().unwrap();
        Refusing { proxy, asked, api, ledger: dir.path().join("l.db"), _dir: dir }
    }

    /// [`run_bounded`] to `webhook` with `var` naming the proxy as `http://{credentials}{proxy}`,
    /// and `more` variables.
    async fn run(&self, webhook: &str, var: &str, credentials: &str, more: &[(&str, String)]) -> std::process::Output {
        let env = [&[(var, format!("http://{credentials}{}", self.proxy))][..], more].concat();
        run_bounded(args(&self.api.base_url(), webhook, &self.ledger), &env).await
    }
}

/// A run stopped by a proxy's refusal: exit 2 naming the answer, no event failed for good, and
/// a rerun has them all to send.
fn assert_stopped_by_the_proxy(out: &std::process::Output, ledger: &std::path::Path, said: &[&str]) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for words in said {
        assert!(stderr.contains(words), "`{words}` not in: {stderr}");
    }
    assert!(!stderr.contains("unreachable") && !stderr.contains("connection refused"), "{stderr}");
    let s = summary(out);
    assert_eq!((s["delivered"].as_u64(), s["failed"].as_u64()), (Some(0), Some(0)), "{s}");
    if let Some(status) = savvy_replay::read_status(ledger, 10).unwrap() {
        assert!(status.iter().all(|t| t.failed == 0 && t.delivered == 0), "nothing failed for good: {status:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_refusing_connect_stops_the_run_with_its_answer() {
    let r = Refusing::new(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n", 20, 36).await;
    let out = r.run("https://webhook.test:9/webhook", "HTTPS_PROXY", "", &[]).await;
    let proxy = &r.proxy;
    assert_stopped_by_the_proxy(
        &out,
        &r.ledger,
        &[&format!("the proxy {proxy} refused to open a tunnel to webhook.test:9 (403 Forbidden)"), "Stopped after"],
    );
    // Not every event tried in turn: the first refusals stop the pool (3 workers).
    assert!(r.asked.load(std::sync::atomic::Ordering::Relaxed) <= 3, "{}", text(&out.stderr));
}

/// A proxy that wants credentials we do not have: the run stops at once, saying what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_asking_for_credentials_stops_the_run_in_words() {
    let r = Refusing::new(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n", 5, 35).await;
    let out = r.run("https://webhook.test:9/webhook", "HTTPS_PROXY", "", &[]).await;
    assert_stopped_by_the_proxy(
        &out,
        &r.ledger,
        &[
            &format!("the proxy {} wants credentials (407 Proxy Authentication Required)", r.proxy),
            "HTTPS_PROXY=http://USER:PASSWORD@",
        ],
    );
    // With credentials it does not take, no password is shown back.
    let out = r.run("https://webhook.test:9/webhook", "HTTPS_PROXY", "replay:pr0xy-s3cret@", &[]).await;
    assert_stopped_by_the_proxy(&out, &r.ledger, &["did not accept the credentials in the proxy URL (407"]);
    assert!(!format!("{}{}", text(&out.stdout), text(&out.stderr)).contains("pr0xy-s3cret"));
}

/// An `http://` webhook goes to the proxy in absolute form: its 407 is the proxy's, not the webhook's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarding_proxy_asking_for_credentials_stops_the_run() {
    let r = Refusing::new(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\n\r\n", 5, 37).await;
    let out = r.run("http://webhook.test:9/webhook", "HTTP_PROXY", "", &[("NO_PROXY", "127.0.0.1".into())]).await;
    assert_stopped_by_the_proxy(
        &out,
        &r.ledger,
        &[&format!("the proxy {} wants credentials (407)", r.proxy), "HTTP_PROXY=http://USER:PASSWORD@"],
    );
}

/// The API path (reqwest) too: a refusal is a configuration error, not "unreachable after 9 attempts".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_refusing_the_api_is_a_configuration_error() {
    let (proxy, asked) = refusing_proxy(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n").await;
    let dir = tempfile::tempdir().unwrap();
    let rcv = receiver(signed_receiver()).await;
    let out = run_bounded(
        args("https://api.test:9", &rcv.url(), &dir.path().join("l.db")),
        &[("HTTPS_PROXY", format!("http://{proxy}"))],
    )
    .await;
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("the proxy {proxy} refused to open a tunnel to api.test:9 (403 Forbidden)")),
        "{stderr}"
    );
    assert!(!stderr.contains("attempts"), "not retried: {stderr}");
    assert!(asked.load(std::sync::atomic::Ordering::Relaxed) <= 2, "{stderr}");
    assert!(rcv.deliveries().is_empty());
}
