//! TLS failures said in words, on the webhook path (hyper + tokio-rustls) and the
//! API path (reqwest): an untrusted (self-signed) certificate, a wrong host name, an expired
//! certificate. Certificates are made with rcgen; the binary trusts exactly `SSL_CERT_FILE`.

use crate::util::*;
use savvy_replay_fake::generate_bookings;

/// What a run against a bad certificate looks like: the exit status, stderr, and the ledger's
/// last error of each failed event.
struct Outcome {
    code: Option<i32>,
    stderr: String,
    event_errors: Vec<String>,
}

/// Serve `served` (an acceptor) in front of the webhook, or of the API when `api_side`; trust
/// only `trusted_pem`.
async fn run_against(served: tokio_rustls::TlsAcceptor, trusted_pem: &str, api_side: bool) -> Outcome {
    let api = api(generate_bookings(3, 41), vec![]).await;
    let rcv = receiver(signed_receiver()).await;
    let port = |u: &str| url::Url::parse(u).unwrap().port().unwrap();
    let (api_base, hook) = if api_side {
        (format!("https://localhost:{}", tls_front(served, port(&api.base_url())).await), rcv.url())
    } else {
        (api.base_url(), format!("https://localhost:{}/webhook", tls_front(served, port(&rcv.url())).await))
    };
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("trusted.pem");
    std::fs::write(&pem, trusted_pem).unwrap();
    let ledger = dir.path().join("l.db");
    let out = tokio::process::Command::new(bin())
        .args(["run", "--api-base", &api_base, "--webhook-url", &hook, "--ledger", &ledger.display().to_string()])
        .args(["--rate", "0", "--retry-initial", "10ms", "--retry-max", "20ms"])
        .env("SAVVYCAL_TOKEN", TOKEN)
        .env("SAVVYCAL_WEBHOOK_SECRET", SECRET)
        .env("SSL_CERT_FILE", &pem)
        .env_remove("SSL_CERT_DIR")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(rcv.deliveries().is_empty(), "nothing may be delivered over a refused certificate");
    let event_errors = match savvy_replay::read_status(&ledger, 10) {
        Ok(Some(status)) => status[0].open.iter().filter_map(|o| o.last_error.clone()).collect(),
        _ => vec![],
    };
    Outcome { code: out.status.code(), stderr: text(&out.stderr), event_errors }
}

/// Both paths say `want` about their server, and neither shows a library's enum name.
async fn assert_said(served: impl Fn() -> tokio_rustls::TlsAcceptor, trusted_pem: &str, want: &str) {
    let hook = run_against(served(), trusted_pem, false).await;
    assert_eq!(hook.code, Some(1), "{}", hook.stderr);
    assert_eq!(hook.event_errors.len(), 3, "each event failed: {}", hook.stderr);
    for e in &hook.event_errors {
        assert!(e.contains(&format!("the webhook's certificate {want}")), "{e}");
        // Not retried: a certificate does not fix itself.
        assert!(!e.contains("gave up after"), "{e}");
    }
    let api = run_against(served(), trusted_pem, true).await;
    assert_eq!(api.code, Some(3), "{}", api.stderr);
    assert!(api.stderr.contains(&format!("the SavvyCal API's certificate {want}")), "{}", api.stderr);
    for said in hook.event_errors.iter().chain([&api.stderr]) {
        for name in ["UnknownIssuer", "BadSignature", "CaUsedAsEndEntity", "NotValidForName", "Expired", "Other("] {
            assert!(!said.contains(name), "an enum name in: {said}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_certificate_is_said_to_be_untrusted_with_what_to_do() {
    let (_, acceptor) = certificate(&["localhost"]);
    // Trust some other certificate: the one served is unknown, as a self-signed one would be.
    let (other_pem, _) = certificate(&["localhost"]);
    assert_said(|| acceptor.clone(), &other_pem, "is not trusted (self-signed").await;
    let run = run_against(acceptor.clone(), &other_pem, false).await;
    assert!(run.event_errors[0].contains("add the authority that issued it to this computer's trust store"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_is_said_to_be_the_wrong_host_name() {
    let (pem, acceptor) = certificate(&["elsewhere.test"]);
    assert_said(|| acceptor.clone(), &pem, "is for elsewhere.test, not for `localhost` (wrong host name)").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_said_to_have_expired_and_when() {
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (pem, acceptor) = tls_acceptor(&cert, &key);
    assert_said(|| acceptor.clone(), &pem, "expired on 2021-01-01 00:00 UTC: the server must renew it").await;
}
