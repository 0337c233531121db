//! Sending one event to the webhook: the request exactly as SavvyCal would send it, and one attempt.
//!
//! Everything that is the same for every request (Content-Type, User-Agent, `-H` headers) is set
//! once on the client; per event we build the envelope body, the signature and the
//! `Idempotency-Key` once, and every retry reuses them (the body is a cheap `Bytes` clone).

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::cli::Header;
use crate::event::{Envelope, Event, now_rfc3339};
use crate::retry::TransportError;
use crate::signature;

/// `User-Agent: savvy-replay/<version>`.
pub const USER_AGENT: &str = concat!("savvy-replay/", env!("CARGO_PKG_VERSION"));

/// Make rustls use `ring` (reqwest is built without a default crypto provider). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP client for the SavvyCal API or the webhook; `timeout` bounds each whole request.
pub fn client(
    default_headers: HeaderMap,
    pool_size: usize,
    timeout: Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(USER_AGENT)
        .default_headers(default_headers)
        .pool_max_idle_per_host(pool_size)
        .pool_idle_timeout(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// How the webhook is addressed, fixed for a run.
pub struct Target {
    pub url: Url,
    pub event_type: String,
    pub signing_secret: Option<SecretString>,
    pub headers: Vec<Header>,
    pub timeout: Duration,
}

/// One event, ready to send (and to re-send on retry).
pub struct Prepared {
    pub envelope: Envelope,
    signature: Option<HeaderValue>,
    idempotency_key: HeaderValue,
}

/// What one attempt came to.
#[derive(Debug)]
pub struct Attempt {
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    /// The transport failure, when there was no answer.
    pub error: Option<(TransportError, String)>,
    /// The first bytes of the answer's body (for failed-event records).
    pub body_start: String,
    pub latency: Duration,
}

pub struct Deliverer {
    client: reqwest::Client,
    target: Target,
}

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const SIGNATURE: HeaderName = HeaderName::from_static(signature::HEADER);
/// How much of an error response body we keep.
const BODY_KEEP: usize = 300;
/// How much of a response body we read at most (the rest is dropped with the connection).
const BODY_READ_MAX: usize = 1 << 20;

impl Deliverer {
    pub fn new(target: Target, pool_size: usize) -> Result<Deliverer, reqwest::Error> {
        let client = client(Self::fixed_headers(&target.headers), pool_size, target.timeout)?;
        Ok(Deliverer { client, target })
    }

    fn fixed_headers(extra: &[Header]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        for Header { name, value } in extra {
            h.append(name.clone(), value.clone());
        }
        h
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn prepare(&self, event: &Event) -> Prepared {
        let envelope = Envelope::build(&self.target.event_type, event, now_rfc3339);
        let signature = self.target.signing_secret.as_ref().map(|secret| {
            let sig = signature::sign(secret.expose_secret().as_bytes(), &envelope.body);
            HeaderValue::from_str(&sig).unwrap_or_else(|_| HeaderValue::from_static(""))
        });
        let idempotency_key = HeaderValue::from_str(&envelope.id).unwrap_or_else(|_| HeaderValue::from_static(""));
        Prepared { envelope, signature, idempotency_key }
    }

    /// One POST. Never fails: what went wrong is in the returned [`Attempt`].
    pub async fn attempt(&self, p: &Prepared) -> Attempt {
        let mut req = self
            .client
            .post(self.target.url.clone())
            .header(IDEMPOTENCY_KEY, p.idempotency_key.clone())
            .body(p.envelope.body.clone());
        if let Some(sig) = &p.signature {
            req = req.header(SIGNATURE, sig.clone());
        }
        let start = Instant::now();
        let result = async {
            let mut resp = req.send().await?;
            let status = resp.status();
            let retry_after =
                resp.headers().get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let mut kept = Vec::new();
            let mut read = 0usize;
            while read < BODY_READ_MAX {
                let Some(chunk) = resp.chunk().await? else { break };
                read += chunk.len();
                if !status.is_success() && kept.len() < BODY_KEEP {
                    kept.extend_from_slice(&chunk[..chunk.len().min(BODY_KEEP - kept.len())]);
                }
            }
            Ok::<_, reqwest::Error>((status.as_u16(), retry_after, kept))
        }
        .await;
        let latency = start.elapsed();
        match result {
            Ok((status, retry_after, kept)) => Attempt {
                status: Some(status),
                retry_after,
                error: None,
                body_start: crate::source::api::error_message(&kept),
                latency,
            },
            Err(e) => Attempt {
                status: None,
                retry_after: None,
                error: Some((transport_error(&e), describe_error_with_timeout(&e, self.target.timeout))),
                body_start: String::new(),
                latency,
            },
        }
    }

    /// The request as it would go out, for `--dry-run`: secrets masked.
    pub fn render(&self, p: &Prepared) -> String {
        let mut out = format!("POST {}\n", display_url(&self.target.url));
        let mut line = |name: &str, value: &str| {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push('\n');
        };
        line("content-type", "application/json");
        line("user-agent", USER_AGENT);
        for Header { name, value } in &self.target.headers {
            if looks_secret(name.as_str()) {
                line(name.as_str(), "<masked>");
            } else {
                line(name.as_str(), &String::from_utf8_lossy(value.as_bytes()));
            }
        }
        line("idempotency-key", &String::from_utf8_lossy(p.idempotency_key.as_bytes()));
        if let Some(sig) = &p.signature {
            // An HMAC of this body: what the receiver will see, and no secret (the key is not in it).
            line(signature::HEADER, &String::from_utf8_lossy(sig.as_bytes()));
        }
        out.push('\n');
        out.push_str(&String::from_utf8_lossy(&p.envelope.body));
        out
    }
}

/// A URL for messages: any password in it is masked.
pub fn display_url(url: &Url) -> String {
    if url.password().is_some() {
        let mut u = url.clone();
        let _ = u.set_password(Some("***"));
        u.to_string()
    } else {
        url.to_string()
    }
}

/// Header names whose values are credentials.
fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["auth", "cookie", "token", "secret", "key", "password", "signature", "session"].iter().any(|s| n.contains(s))
}

/// Sort a transport failure into what [`crate::retry::classify`] needs.
pub fn transport_error(e: &reqwest::Error) -> TransportError {
    if e.is_timeout() {
        TransportError::Timeout
    } else if e.is_connect() || e.is_request() || e.is_body() {
        TransportError::Connection
    } else {
        TransportError::Other
    }
}

/// A short, complete description of a transport failure: the root cause, without the URL (which
/// may carry a credential of the receiver's).
pub fn describe_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_request() || e.is_body() {
        "connection broken"
    } else {
        "request failed"
    };
    let mut root: Option<&dyn std::error::Error> = None;
    let mut next = std::error::Error::source(e);
    while let Some(err) = next {
        root = Some(err);
        next = err.source();
    }
    match root {
        Some(root) => format!("{kind}: {root}"),
        None => kind.to_owned(),
    }
}

fn describe_error_with_timeout(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() { format!("timed out after {}", humantime::format_duration(timeout)) } else { describe_error(e) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked_for_display() {
        let u = Url::parse("https://user:hunter2@hooks.example.com/x").unwrap();
        assert_eq!(display_url(&u), "https://user:***@hooks.example.com/x");
        let u = Url::parse("https://hooks.example.com/x?a=1").unwrap();
        assert_eq!(display_url(&u), "https://hooks.example.com/x?a=1");
    }

    #[test]
    fn secret_looking_headers_are_recognised() {
        for n in ["Authorization", "x-api-key", "X-Auth-Token", "cookie", "x-webhook-secret"] {
            assert!(looks_secret(n), "{n}");
        }
        for n in ["x-team", "accept", "x-source"] {
            assert!(!looks_secret(n), "{n}");
        }
    }

    #[test]
    fn dry_run_rendering_masks_secrets_and_shows_the_body() {
        let d = Deliverer::new(
            Target {
                url: Url::parse("https://hooks.example.com/in").unwrap(),
                event_type: "event.created".into(),
                signing_secret: Some(SecretString::from("whsec_topsecret")),
                headers: vec![
                    crate::cli::parse_header("Authorization: Bearer rcv_secret").unwrap(),
                    crate::cli::parse_header("X-Team: growth").unwrap(),
                ],
                timeout: Duration::from_secs(30),
            },
            1,
        )
        .unwrap();
        let ev = Event::from_raw(bytes::Bytes::from_static(br#"{"id":"event_1","created_at":"2020-01-01T00:00:00Z"}"#))
            .unwrap();
        let p = d.prepare(&ev);
        let shown = d.render(&p);
        assert!(shown.starts_with("POST https://hooks.example.com/in\n"), "{shown}");
        assert!(shown.contains("authorization: <masked>"));
        assert!(shown.contains("x-team: growth"));
        assert!(shown.contains("x-savvycal-signature: sha256="));
        assert!(!shown.contains("rcv_secret") && !shown.contains("whsec_topsecret"));
        assert!(shown.ends_with(std::str::from_utf8(&p.envelope.body).unwrap()));
        assert!(shown.contains(&format!("user-agent: {USER_AGENT}")));
    }
}
