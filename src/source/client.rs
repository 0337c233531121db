//! The SavvyCal API over HTTP: one authenticated `GET` with retries, for the event pages
//! ([`super::api`]), the token check (`/v1/me`) and the webhook lookup ([`super::webhooks`]).
//!
//! Apart from the pager because it is the part that talks to the network: the token (sent only in
//! the Authorization header), the retry policy, cancellation, the whole-answer timeout and the cap
//! on a body's size live here once for every endpoint. Transient failures (429, 5xx, timeouts,
//! connection errors) are retried with the same policy as webhook deliveries; 401/403 end the run
//! with a message about the token.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use url::Url;

use super::SourceError;
use crate::deliver::cause::Cause;
use crate::deliver::retry::{AttemptResult, Decision, RetryPolicy, TransportError, classify, log_retry};
use crate::deliver::shared::{BODY_READ_MAX, chain, error_message, root_cause};
use crate::output::print::errln;
use crate::output::progress::Waiting;

mod body;
use body::{BodyError, MAX_PAGE_BYTES, body_start, not_json, read_body};

/// `GET /v1/me`, as far as we use it.
#[derive(Debug, Deserialize)]
pub struct Me {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub display_name: Option<String>,
}

/// Why there is no [`ApiClient`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// reqwest would send a user name or password in the base URL as Basic auth: to wherever the
    /// base points, next to (or instead of) the token. The config check refuses such a base for
    /// `--api-base`; this refuses it for every other way of building a client. The URL is not
    /// repeated: its user name may be the token itself.
    #[error(
        "the SavvyCal API base URL carries a user name or password; the token goes only in the \
         Authorization header: give the base without them (--api-base https://api.savvycal.com)"
    )]
    CredentialsInBase,
    #[error("cannot set up the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

/// The SavvyCal API at `base`, asked with `token`.
pub struct ApiClient {
    http: reqwest::Client,
    base: Url,
    token: SecretString,
    retry: RetryPolicy,
    cancel: CancellationToken,
    /// Bounds each whole request, body included (the client's own timeout is the same).
    timeout: Duration,
    /// The API has answered at least once (any HTTP status): from then on a refused connection
    /// is an outage to wait out, not a wrong address.
    answered: AtomicBool,
    /// Say on stderr what a slow or retried request is waiting for (off with `--quiet`).
    show_waits: bool,
}

impl ApiClient {
    /// `timeout` bounds each whole request; `cancel` (Ctrl-C) ends any wait for the API. A
    /// `base` with a user name or password is refused, so the token is the only credential sent.
    pub fn new(
        base: Url,
        token: SecretString,
        retry: RetryPolicy,
        timeout: Duration,
        cancel: CancellationToken,
    ) -> Result<ApiClient, ClientError> {
        if !base.username().is_empty() || base.password().is_some() {
            return Err(ClientError::CredentialsInBase);
        }
        Ok(ApiClient {
            http: http_client(timeout)?,
            base,
            token,
            retry,
            cancel,
            timeout,
            answered: AtomicBool::new(false),
            show_waits: false,
        })
    }

    /// Show what a request waits for: a spinner on a terminal, a line per retry otherwise.
    pub fn show_waits(mut self, show: bool) -> ApiClient {
        self.show_waits = show;
        self
    }

    /// `Looking up the webhook at https://api.savvycal.com`: what `what` is for, in words.
    fn doing(&self, what: &str) -> String {
        let base = self.base.as_str().trim_end_matches('/');
        if what.contains("/v1/webhooks") {
            format!("Looking up the webhook at {base}")
        } else if what == "/v1/me" {
            format!("Checking the token at {base}")
        } else {
            format!("Fetching {what} from {base}")
        }
    }

    pub fn describe(&self) -> String {
        format!("the SavvyCal API at {}", self.base.as_str().trim_end_matches('/'))
    }

    pub(crate) fn endpoint(&self, path: &str) -> Url {
        let mut url = self.base.clone();
        let joined = format!("{}/{}", url.path().trim_end_matches('/'), path);
        url.set_path(&joined);
        url
    }

    /// Check the token: who it belongs to.
    pub async fn whoami(&self) -> Result<Me, SourceError> {
        let body = self.get(self.endpoint("v1/me"), "/v1/me").await?;
        serde_json::from_slice(&body).map_err(|e| SourceError::Malformed(format!("/v1/me: {e}")))
    }

    /// `GET <base>/<path>?<query>` with the same token, retries and cancellation as the event
    /// pages: for other parts of the API ([`super::webhooks`]).
    pub(crate) async fn get_json(&self, path: &str, query: &[(&str, &str)], what: &str) -> Result<Bytes, SourceError> {
        let mut url = self.endpoint(path);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        self.get(url, what).await
    }

    /// GET with the retry policy. The token goes only in the Authorization header. The whole
    /// answer, body included, must arrive within `--timeout`; a page body is capped at
    /// [`MAX_PAGE_BYTES`] and an error body is read only as far as [`BODY_READ_MAX`].
    pub(super) async fn get(&self, url: Url, what: &str) -> Result<Bytes, SourceError> {
        let mut retries = 0u32;
        let waiting = self.show_waits.then(|| Waiting::start(self.doing(what)));
        loop {
            debug!(%url, "GET");
            let req = self
                .http
                .get(url.clone())
                .bearer_auth(self.token.expose_secret())
                .header(http::header::ACCEPT, "application/json");
            let deadline = tokio::time::Instant::now() + self.timeout;
            let sent = tokio::select! {
                r = req.send() => r,
                () = self.cancel.cancelled() => return Err(SourceError::Interrupted),
            };
            let (after, last) = match sent {
                Ok(resp) => {
                    self.answered.store(true, Relaxed);
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    let retry_after =
                        headers.get(http::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_owned);
                    let success = resp.status().is_success();
                    let cap = if success { MAX_PAGE_BYTES } else { BODY_READ_MAX };
                    let body = tokio::select! {
                        b = read_body(resp, cap, deadline) => b,
                        () = self.cancel.cancelled() => return Err(SourceError::Interrupted),
                    };
                    let decision = classify(
                        AttemptResult::Status { code: status, retry_after: retry_after.as_deref() },
                        SystemTime::now(),
                        self.retry.backoff.max,
                    )
                    .decision;
                    match (decision, body) {
                        (Decision::Delivered, Ok(body)) => match not_json(&headers, &body) {
                            None => return Ok(body),
                            Some((kind, content_type)) => {
                                return Err(SourceError::NotJson {
                                    what: what.to_owned(),
                                    url: crate::deliver::shared::display_url(&url),
                                    kind,
                                    content_type,
                                    start: self.redact(&body_start(&body)),
                                });
                            }
                        },
                        (Decision::Delivered, Err((BodyError::TooLarge, _))) => {
                            return Err(SourceError::TooLarge {
                                what: what.to_owned(),
                                max_mib: MAX_PAGE_BYTES >> 20,
                                hint: "; check that --api-base is the SavvyCal API".to_owned(),
                            });
                        }
                        (Decision::Delivered, Err((e, _))) => (None, Failure::Transport(e.describe(self.timeout))),
                        (decision, body) => {
                            let body = body.unwrap_or_else(|(_, partial)| partial);
                            let message = if (300..400).contains(&status) {
                                crate::deliver::shared::redirect_message(&headers)
                            } else {
                                self.redact(&error_message(&body))
                            };
                            match decision {
                                // Only a proxy asks for proxy credentials (an `http://` base
                                // behind HTTP_PROXY: the request went to the proxy in full).
                                _ if status == 407
                                    && let Ok(crate::deliver::proxy::Route::Forward(proxy)) =
                                        crate::deliver::proxy::Route::from_env(&url) =>
                                {
                                    return Err(SourceError::ProxyRefused(proxy.wants_credentials()));
                                }
                                _ if matches!(status, 401 | 403) => {
                                    let detail =
                                        if message.is_empty() { String::new() } else { format!(": {message}") };
                                    return Err(SourceError::Unauthorized { status, detail });
                                }
                                Decision::Retry { after } => (after, Failure::Status { status, message }),
                                _ => {
                                    return Err(SourceError::Http { status, what: what.to_owned(), message });
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    let said = match self.ask_the_proxy(&e, &url).await {
                        Some(refusal) if !refusal.transient => return Err(SourceError::ProxyRefused(refusal.message)),
                        Some(failure) => Some(failure.message),
                        None => None,
                    };
                    // Nothing listens there, or the name does not resolve, before the API ever
                    // answered: a wrong --api-base or no network, which waiting will not fix.
                    if !self.answered.load(Relaxed)
                        && let Some(cause @ (Cause::Refused | Cause::Dns)) = Cause::in_chain(&e)
                    {
                        return Err(SourceError::NotThere {
                            base: self.base.as_str().trim_end_matches('/').to_owned(),
                            cause: match cause {
                                Cause::Refused => "connection refused",
                                _ => "unknown host",
                            },
                            last_error: describe_error(&e),
                        });
                    }
                    let kind = transport_error(&e);
                    match classify(AttemptResult::Transport(kind), SystemTime::now(), self.retry.backoff.max).decision {
                        Decision::Retry { after } => {
                            (after, Failure::Transport(said.unwrap_or_else(|| describe_error(&e))))
                        }
                        _ => {
                            return Err(SourceError::Unreachable {
                                base: self.base.to_string(),
                                attempts: retries + 1,
                                last_error: describe_error(&e),
                            });
                        }
                    }
                }
            };
            let Some(delay) = self.retry.wait_before_retry(retries, after) else {
                return Err(last.into_error(self.base.to_string(), retries + 1));
            };
            retries += 1;
            log_retry(what, &last.to_string(), retries, self.retry.max_retries, delay);
            if let Some(waiting) = &waiting {
                self.say_retry(waiting, what, &last, retries, delay);
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.cancel.cancelled() => return Err(SourceError::Interrupted),
            }
        }
    }

    /// reqwest's CONNECT says only "unsuccessful" for every answer but 200 and 407, and a 403
    /// (the proxy's policy: a configuration error) must not be retried like a 502 (the API down
    /// behind the proxy). So when its tunnel failed, ask the proxy once ourselves for its answer.
    async fn ask_the_proxy(&self, e: &reqwest::Error, url: &Url) -> Option<crate::deliver::proxy::ProxyError> {
        let tunnel_failed = chain(e).any(|e| e.downcast_ref::<crate::deliver::proxy::TunnelError>().is_some());
        if !tunnel_failed {
            return None;
        }
        let Ok(crate::deliver::proxy::Route::Tunnel(proxy)) = crate::deliver::proxy::Route::from_env(url) else {
            return None;
        };
        let host = url.host_str()?.trim_matches(['[', ']']);
        let port = url.port_or_known_default()?;
        let asked = tokio::select! {
            asked = proxy.tunnel(host, port, self.timeout.min(Duration::from_secs(10))) => asked,
            () = self.cancel.cancelled() => return None,
        };
        asked.err()
    }

    /// A retry, where the user sees it: on the spinner, or a line of its own when there is no
    /// spinner (stderr is not a terminal). `retries` retries so far; the next attempt is one more.
    fn say_retry(&self, waiting: &Waiting, what: &str, last: &Failure, retries: u32, delay: Duration) {
        let attempts = self.retry.max_retries + 1;
        let short = last.short();
        if waiting.is_drawn() {
            waiting.set_message(format!(
                "{} (retrying: {short}, attempt {} of {attempts})",
                self.doing(what),
                retries + 1
            ));
        } else {
            let delay = Duration::from_millis(delay.as_millis().min(u128::from(u64::MAX)) as u64);
            errln!(
                "{}: {short}; attempt {} of {attempts} in {}",
                self.doing(what),
                retries + 1,
                humantime::format_duration(delay)
            );
        }
    }

    fn redact(&self, s: &str) -> String {
        let token = self.token.expose_secret();
        if token.is_empty() { s.to_owned() } else { s.replace(token, "<redacted>") }
    }
}

/// The last failure of a request that is retried, for the message when retries run out.
enum Failure {
    /// No answer: connection trouble or a timeout.
    Transport(String),
    /// The API answered, with a status that is worth retrying.
    Status { status: u16, message: String },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Transport(e) => f.write_str(e),
            Failure::Status { status, message } if message.is_empty() => write!(f, "HTTP {status}"),
            Failure::Status { status, message } => write!(f, "HTTP {status}: {message}"),
        }
    }
}

impl Failure {
    /// A few words for the spinner: the cause without the chain.
    fn short(&self) -> String {
        match self {
            Failure::Transport(e) => e.rsplit(": ").next().unwrap_or(e).to_owned(),
            Failure::Status { status, .. } => format!("HTTP {status}"),
        }
    }

    fn into_error(self, base: String, attempts: u32) -> SourceError {
        match self {
            Failure::Transport(last_error) => SourceError::Unreachable { base, attempts, last_error },
            Failure::Status { status, message } => SourceError::Answered { base, attempts, status, message },
        }
    }
}

/// The HTTP client for the API; `timeout` bounds each whole request.
fn http_client(timeout: Duration) -> Result<reqwest::Client, reqwest::Error> {
    crate::deliver::shared::install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(crate::deliver::shared::USER_AGENT)
        .connect_timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// Sort a transport failure into what [`crate::deliver::retry::classify`] needs.
fn transport_error(e: &reqwest::Error) -> TransportError {
    if crate::deliver::tls::explain(e, "").is_some() {
        // A certificate or TLS protocol problem will not fix itself on retry.
        TransportError::Other
    } else if e.is_timeout() {
        TransportError::Timeout
    } else if e.is_connect() || e.is_request() || e.is_body() {
        TransportError::Connection
    } else {
        TransportError::Other
    }
}

/// A short, complete description of a transport failure: the root cause, without the URL.
fn describe_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_request() || e.is_body() {
        "connection broken"
    } else {
        "request failed"
    };
    if let Some(words) = crate::deliver::tls::explain(e, "the SavvyCal API") {
        return format!("TLS handshake failed: {words}");
    }
    match std::error::Error::source(e) {
        Some(source) => format!("{kind}: {}", root_cause(source)),
        None => kind.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_for(base: &str) -> Result<ApiClient, ClientError> {
        let base = Url::parse(base).unwrap();
        let (retry, cancel) = (RetryPolicy::default(), CancellationToken::new());
        ApiClient::new(base, SecretString::from("pt_secret_x"), retry, Duration::from_secs(5), cancel)
    }

    #[test]
    fn a_base_with_credentials_is_refused_without_repeating_them() {
        for base in
            ["https://me:pw_x@api.example.com", "https://pt_secret_y@api.example.com/", "https://:pw_x@a.example"]
        {
            let e = client_for(base).err().expect(base);
            assert!(matches!(e, ClientError::CredentialsInBase), "{base}: {e:?}");
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("pw_x") && !shown.contains("pt_secret"), "{shown}");
        }
        assert!(client_for("https://api.example.com/base/").is_ok());
    }
}
