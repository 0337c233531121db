//! Sending one event to the webhook: the request exactly as SavvyCal would send it, and one attempt.
//!
//! Everything that is the same for every request (Host, Content-Type, User-Agent, `-H` headers) is
//! built once per run; per event we build the envelope body, the signature and the
//! `Idempotency-Key` once, and every retry reuses them (the body is a cheap `Bytes` clone). The
//! bytes travel over the worker's own connection ([`crate::deliver::connection`]).

pub(crate) mod cause;
pub(crate) mod connection;
pub(crate) mod proxy;
pub(crate) mod retry;
pub(crate) mod shared;
pub mod signature;
pub(crate) mod tls;

use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderName, HeaderValue, Method, Request};
use http_body_util::Full;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::deliver::cause::Cause;
use crate::deliver::connection::{Connection, Endpoint, EndpointError, SendError};
use crate::deliver::retry::TransportError;
pub use crate::deliver::shared::display_url;
use crate::deliver::shared::{error_message, redirect_message};
use crate::event::{Envelope, Event, now_rfc3339};
use signature::HexCase;

/// One `-H 'Name: value'`, already checked to be a valid HTTP header.
#[derive(Clone, PartialEq, Eq)]
pub struct Header {
    pub name: http::HeaderName,
    pub value: http::HeaderValue,
}

impl std::fmt::Debug for Header {
    // Header values are often credentials for the receiver: never print them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: <redacted>", self.name)
    }
}

impl std::str::FromStr for Header {
    type Err = String;

    /// `Name: value`, checked to be a valid HTTP header.
    fn from_str(s: &str) -> Result<Header, String> {
        let Some((name, value)) = s.split_once(':') else {
            return Err(format!("`{s}` is not a header; write it as 'Name: value'"));
        };
        let name = http::HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("`{}` is not a valid header name", name.trim()))?;
        let value = http::HeaderValue::from_str(value.trim())
            .map_err(|_| format!("the value of header `{name}` has characters HTTP does not allow in a header"))?;
        Ok(Header { name, value })
    }
}

/// The webhook POSTs' default `User-Agent`: exactly SavvyCal's. Receivers compare it with `==`
/// (a Rails route constraint on `request.user_agent`, say), so even a suffix naming us would make
/// them reject every replay; `--user-agent` or a `-H` marker header is how a receiver that wants
/// to tell replays apart gets to.
pub const WEBHOOK_USER_AGENT: &str = "SavvyCal Webhooks (https://savvycal.com)";

/// The header naming the SavvyCal webhook a delivery belongs to.
pub const WEBHOOK_ID_HEADER: &str = "x-savvycal-webhook-id";

/// Why requests to the webhook cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    /// The id came from the account's webhook list or `--webhook-id`.
    #[error("the webhook id `{0}` is not a valid header value")]
    WebhookId(String),
}

/// How the webhook is addressed, fixed for a run.
pub struct Target {
    pub url: Url,
    pub event_type: String,
    pub signing_secret: Option<SecretString>,
    /// `--signature-hex`: uppercase (SavvyCal's) unless the receiver wants lowercase.
    pub signature_hex: HexCase,
    /// The SavvyCal webhook this replay stands in for (`x-savvycal-webhook-id`), when known.
    pub webhook_id: Option<String>,
    /// The envelope `version`: the webhook's own, else [`crate::event::ENVELOPE_VERSION`].
    pub version: String,
    /// `--user-agent`: [`WEBHOOK_USER_AGENT`] unless the user asked for another.
    pub user_agent: HeaderValue,
    pub headers: Vec<Header>,
    pub timeout: Duration,
}

/// One event, ready to send (and to re-send on retry).
pub struct Prepared {
    pub envelope: Envelope,
    signature: Option<HeaderValue>,
    idempotency_key: HeaderValue,
}

/// What one attempt came to: an answer, or none.
#[derive(Debug)]
pub enum Attempt {
    /// The receiver answered.
    Answered {
        status: u16,
        retry_after: Option<String>,
        /// The first bytes of the answer's body, for failed-event records (empty on success).
        body_start: String,
        latency: Duration,
    },
    /// No complete answer: the connection, TLS or the timeout failed.
    NoAnswer { kind: TransportError, cause: Cause, message: String, latency: Duration },
    /// The proxy in front of the webhook refused us: a configuration error, not an outage, and no
    /// answer from the webhook (`message` names the proxy's answer).
    ProxyRefused { message: String, latency: Duration },
}

impl Attempt {
    /// The HTTP status, when there was an answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            Attempt::Answered { status, .. } => Some(*status),
            Attempt::NoAnswer { .. } | Attempt::ProxyRefused { .. } => None,
        }
    }

    pub fn latency(&self) -> Duration {
        match self {
            Attempt::Answered { latency, .. }
            | Attempt::NoAnswer { latency, .. }
            | Attempt::ProxyRefused { latency, .. } => *latency,
        }
    }
}

pub struct Deliverer {
    endpoint: Endpoint,
    /// Host, Content-Type, User-Agent, URL credentials and `-H` headers: the same on every request.
    fixed: HeaderMap,
    /// Signs each body, when the run has a signing secret.
    signer: Option<signature::Signer>,
    target: Target,
}

const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
const SIGNATURE: HeaderName = HeaderName::from_static(signature::HEADER);
/// How much of an error response body we keep.
const BODY_KEEP: usize = 300;

impl Deliverer {
    pub fn new(target: Target) -> Result<Deliverer, TargetError> {
        let endpoint = Endpoint::new(&target.url, target.timeout.min(Duration::from_secs(10)))?;
        let mut fixed = HeaderMap::new();
        fixed.insert(http::header::HOST, endpoint.authority.clone());
        fixed.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        fixed.insert(http::header::USER_AGENT, target.user_agent.clone());
        if let Some(id) = &target.webhook_id {
            let value = HeaderValue::from_str(id).map_err(|_| TargetError::WebhookId(id.clone()))?;
            fixed.insert(HeaderName::from_static(WEBHOOK_ID_HEADER), value);
        }
        if let Some(auth) = &endpoint.basic_auth {
            fixed.insert(http::header::AUTHORIZATION, auth.clone());
        }
        if let Some(auth) = endpoint.proxy_auth() {
            fixed.insert(http::header::PROXY_AUTHORIZATION, auth.clone());
        }
        // A -H replaces a default of the same name; repeating a -H name sends it several times.
        let mut seen = std::collections::HashSet::new();
        for Header { name, value } in &target.headers {
            if seen.insert(name.clone()) {
                fixed.insert(name.clone(), value.clone());
            } else {
                fixed.append(name.clone(), value.clone());
            }
        }
        let signer = target
            .signing_secret
            .as_ref()
            .map(|s| signature::Signer::new(s.expose_secret().as_bytes(), target.signature_hex));
        Ok(Deliverer { endpoint, fixed, signer, target })
    }

    pub fn prepare(&self, event: &Event) -> Prepared {
        // The signature goes into the envelope's own buffer, behind the body it signs; it and the
        // idempotency key (the envelope id, inside the body) become header values without a copy.
        let envelope =
            Envelope::build_versioned(&self.target.event_type, &self.target.version, event, now_rfc3339, |body| {
                self.signer.as_ref().map(|s| s.sign(body))
            });
        let header =
            |bytes: bytes::Bytes| HeaderValue::from_maybe_shared(bytes).unwrap_or(HeaderValue::from_static(""));
        let signature = self.signer.is_some().then(|| header(envelope.trailer.clone()));
        let idempotency_key = header(envelope.id_bytes());
        Prepared { envelope, signature, idempotency_key }
    }

    /// Make sure the worker's connection is open. On failure, the failed attempt to record.
    pub async fn connect(&self, conn: &mut Connection) -> Result<(), Attempt> {
        let start = Instant::now();
        conn.connect(&self.endpoint).await.map_err(|e| no_answer(e, start.elapsed()))
    }

    /// One POST over the worker's connection. Never fails: what went wrong is in the [`Attempt`].
    pub async fn attempt(&self, conn: &mut Connection, p: &Prepared) -> Attempt {
        let make = || {
            let mut req = Request::new(Full::new(p.envelope.body.clone()));
            *req.method_mut() = Method::POST;
            *req.uri_mut() = self.endpoint.path.clone();
            // Sized for all of them at once: a clone of `fixed` would grow on the two inserts.
            let mut headers = HeaderMap::with_capacity(self.fixed.len() + 2);
            headers.extend(self.fixed.iter().map(|(name, value)| (name.clone(), value.clone())));
            headers.insert(IDEMPOTENCY_KEY, p.idempotency_key.clone());
            if let Some(sig) = &p.signature {
                headers.insert(SIGNATURE, sig.clone());
            }
            *req.headers_mut() = headers;
            req
        };
        let start = Instant::now();
        let deadline = tokio::time::Instant::now() + self.target.timeout;
        let result = conn.send(&self.endpoint, make, BODY_KEEP, deadline).await;
        let latency = start.elapsed();
        let failed = |kind, cause, message| Attempt::NoAnswer { kind, cause, message, latency };
        match result {
            // Only a proxy asks for proxy credentials: the webhook behind it never saw the request.
            Ok((resp, _))
                if resp.status() == http::StatusCode::PROXY_AUTHENTICATION_REQUIRED
                    && let Some(proxy) = self.endpoint.forward_proxy() =>
            {
                Attempt::ProxyRefused { message: proxy.wants_credentials(), latency }
            }
            Ok((resp, kept)) => {
                let status = resp.status();
                Attempt::Answered {
                    status: status.as_u16(),
                    retry_after: resp
                        .headers()
                        .get(http::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned),
                    body_start: if status.is_success() {
                        String::new()
                    } else if status.is_redirection() {
                        // Not followed: say where it pointed, so the user can fix the URL.
                        redirect_message(resp.headers())
                    } else {
                        error_message(&kept)
                    },
                    latency,
                }
            }
            // `send` has already dropped the connection: its state is unknown after a timeout.
            Err(SendError::Timeout) => failed(
                TransportError::Timeout,
                Cause::Timeout,
                format!("timed out after {}", humantime::format_duration(self.target.timeout)),
            ),
            Err(e) => no_answer(e, latency),
        }
    }

    /// The request as it would go out, for `--dry-run`: secrets masked.
    pub fn render(&self, p: &Prepared) -> String {
        let mut out = match self.endpoint.proxy_address() {
            // Said before the request, so the request itself stays what the receiver will see.
            Some(proxy) => format!("(through the proxy {proxy})\nPOST {}\n", display_url(&self.target.url)),
            None => format!("POST {}\n", display_url(&self.target.url)),
        };
        let mut line = |name: &str, value: &str| {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push('\n');
        };
        line("content-type", "application/json");
        // The value(s) actually sent: `--user-agent`, or what a `-H User-Agent: …` replaced it with.
        for value in self.fixed.get_all(http::header::USER_AGENT) {
            line("user-agent", &String::from_utf8_lossy(value.as_bytes()));
        }
        if let Some(id) = &self.target.webhook_id {
            line(WEBHOOK_ID_HEADER, id);
        }
        for Header { name, value } in &self.target.headers {
            if name == http::header::USER_AGENT {
                continue;
            } else if looks_secret(name.as_str()) {
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

/// What a failed connection or request comes to: no answer, or the proxy's refusal.
fn no_answer(e: SendError, latency: Duration) -> Attempt {
    if e.is_proxy_refusal() {
        return Attempt::ProxyRefused { message: e.to_string(), latency };
    }
    let kind = if e.is_transient() { TransportError::Connection } else { TransportError::Other };
    Attempt::NoAnswer { kind, cause: e.cause(), message: e.to_string(), latency }
}

/// Header names whose values are credentials.
fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ["auth", "cookie", "token", "secret", "key", "password", "signature", "session"].iter().any(|s| n.contains(s))
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
        let d = Deliverer::new(Target {
            url: Url::parse("https://hooks.example.com/in").unwrap(),
            event_type: "event.created".into(),
            signing_secret: Some(SecretString::from("whsec_topsecret")),
            signature_hex: HexCase::Upper,
            webhook_id: Some("wh_01ED74HMFGVZ92YVCWTD8Y8H6X".into()),
            version: "2020-11-18".into(),
            user_agent: HeaderValue::from_static(WEBHOOK_USER_AGENT),
            headers: vec!["Authorization: Bearer rcv_secret".parse().unwrap(), "X-Team: growth".parse().unwrap()],
            timeout: Duration::from_secs(30),
        })
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
        assert!(shown.contains("\nuser-agent: SavvyCal Webhooks (https://savvycal.com)\n"), "{shown}");
        assert!(shown.contains("x-savvycal-webhook-id: wh_01ED74HMFGVZ92YVCWTD8Y8H6X\n"));
        // The headers that share the envelope's buffer hold what they should: the signature of
        // exactly the body, and the id the body carries.
        let sig = p.signature.as_ref().unwrap();
        assert_eq!(sig, signature::sign(b"whsec_topsecret", &p.envelope.body).as_str());
        let body: serde_json::Value = serde_json::from_slice(&p.envelope.body).unwrap();
        assert_eq!(p.idempotency_key, body["id"].as_str().unwrap());
        assert_eq!(body["id"], crate::event::envelope_id("event.created", "event_1"));
    }

    /// The dry run shows the User-Agent that goes out: --user-agent's, or the -H that replaced it,
    /// once.
    #[test]
    fn dry_run_shows_the_user_agent_actually_sent() {
        let target = |headers: Vec<Header>| Target {
            url: Url::parse("https://hooks.example.com/in").unwrap(),
            event_type: "event.created".into(),
            signing_secret: None,
            signature_hex: HexCase::Upper,
            webhook_id: None,
            version: "2020-11-18".into(),
            user_agent: HeaderValue::from_static("acme-replay/1"),
            headers,
            timeout: Duration::from_secs(30),
        };
        let ev = Event::from_raw(bytes::Bytes::from_static(br#"{"id":"event_1"}"#)).unwrap();
        let d = Deliverer::new(target(Vec::new())).unwrap();
        let shown = d.render(&d.prepare(&ev));
        assert!(shown.contains("\nuser-agent: acme-replay/1\n"), "{shown}");
        let d = Deliverer::new(target(vec!["User-Agent: acme-replay/2".parse().unwrap()])).unwrap();
        let shown = d.render(&d.prepare(&ev));
        assert!(shown.contains("\nuser-agent: acme-replay/2\n"), "{shown}");
        assert_eq!(shown.matches("user-agent:").count(), 1, "{shown}");
    }
}
