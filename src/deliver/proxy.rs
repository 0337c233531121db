//! The webhook path's proxy: `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` (either case), as curl
//! and reqwest read them.
//!
//! The API path gets this from reqwest. The webhook path speaks hyper directly
//! ([`crate::deliver::connection`]), so it asks the same library reqwest asks: hyper-util's proxy
//! [`Matcher`] reads the variables (also `ALL_PROXY`, and none of them in a CGI process) and applies
//! `NO_PROXY`, and its [`Tunnel`] connector opens CONNECT tunnels. Both paths thus agree on which
//! host goes through which proxy. What is left to us is the choice curl makes: an `http://` webhook
//! gets absolute-form requests sent to the proxy, an `https://` one a CONNECT tunnel with TLS to the
//! webhook inside it, so the proxy never sees the signed body.
//!
//! Only `http://` proxies are supported here: reqwest is built without SOCKS, and a TLS connection
//! to the proxy itself is rare enough that refusing it clearly beats half-supporting it.

use std::io;
use std::time::Duration;

use http::{HeaderValue, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::proxy::matcher::{Intercept, Matcher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower_service::Service;
use url::Url;

use crate::deliver::shared::root_cause;

/// How the webhook's connections are made.
pub enum Route {
    /// Straight to the webhook: no proxy variable set, or `NO_PROXY` names its host.
    Direct,
    /// `http://` webhook: connect to the proxy and send it absolute-form requests.
    Forward(Proxy),
    /// `https://` webhook: a CONNECT tunnel through the proxy to the webhook.
    Tunnel(Proxy),
}

/// A proxy to go through. Its credentials live only in `auth` (a sensitive header value); the
/// address we print carries none.
#[derive(Clone)]
pub struct Proxy {
    /// `http://host:port/`, without credentials.
    pub uri: Uri,
    /// `Proxy-Authorization: Basic …` from `user:pass@` in the proxy URL.
    pub auth: Option<HeaderValue>,
}

impl Route {
    /// The route to `target` as the environment says.
    pub fn from_env(target: &Url) -> Result<Route, String> {
        Route::with(&Matcher::from_env(), target)
    }

    /// The route to `target` under `matcher` (tests build one without touching the environment).
    pub fn with(matcher: &Matcher, target: &Url) -> Result<Route, String> {
        let authority = &target[url::Position::BeforeHost..url::Position::AfterPort];
        let dst: Uri = format!("{}://{authority}/", target.scheme())
            .parse()
            .map_err(|e| format!("the URL is not a valid request target: {e}"))?;
        let Some(intercept) = matcher.intercept(&dst) else {
            return Ok(Route::Direct);
        };
        let proxy = Proxy::from_intercept(&intercept)?;
        Ok(if target.scheme() == "https" { Route::Tunnel(proxy) } else { Route::Forward(proxy) })
    }

    pub fn proxy(&self) -> Option<&Proxy> {
        match self {
            Route::Direct => None,
            Route::Forward(p) | Route::Tunnel(p) => Some(p),
        }
    }
}

impl Proxy {
    fn from_intercept(intercept: &Intercept) -> Result<Proxy, String> {
        let uri = intercept.uri().clone();
        if uri.scheme_str() != Some("http") {
            let scheme = uri.scheme_str().unwrap_or("?");
            let host = uri.authority().map(|a| a.as_str()).unwrap_or("?");
            return Err(format!(
                "the proxy `{scheme}://{host}` (from HTTPS_PROXY, HTTP_PROXY or ALL_PROXY) is not supported for the \
                 webhook: only http:// proxies are; write it as http://{host}"
            ));
        }
        Ok(Proxy { uri, auth: intercept.basic_auth().cloned() })
    }

    /// `host:port` of the proxy, for messages.
    pub fn address(&self) -> String {
        let host = self.uri.host().unwrap_or("?");
        format!("{host}:{}", self.uri.port_u16().unwrap_or(80))
    }

    /// A TCP connection to the proxy, or a reason in words.
    pub async fn connect(&self, timeout: Duration) -> Result<TcpStream, ProxyError> {
        let mut dial = connector(timeout);
        std::future::poll_fn(|cx| dial.poll_ready(cx)).await.map_err(|e| self.unreachable(&e))?;
        let io = dial.call(self.uri.clone()).await.map_err(|e| self.unreachable(&e))?;
        Ok(io.into_inner())
    }

    /// A CONNECT tunnel through the proxy to `host:port`, ready for TLS.
    ///
    /// Written here rather than taken from hyper-util's `Tunnel`, which says only "unsuccessful"
    /// for every answer but 200 and 407: a 403 (the proxy's policy) and a 502 (the webhook is
    /// down behind it) must not look the same, the first being a configuration error and the
    /// second an outage.
    pub async fn tunnel(&self, host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ProxyError> {
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
        let tunneling = async {
            let mut tcp = self.connect(timeout).await?;
            let mut head = format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n").into_bytes();
            if let Some(auth) = &self.auth {
                head.extend_from_slice(b"Proxy-Authorization: ");
                head.extend_from_slice(auth.as_bytes());
                head.extend_from_slice(b"\r\n");
            }
            head.extend_from_slice(b"\r\n");
            tcp.write_all(&head).await.map_err(|e| self.broke_off(&e, &host, port))?;
            let status = read_connect_answer(&mut tcp).await.map_err(|e| self.broke_off(&e, &host, port))?;
            match status {
                ConnectAnswer { code: 200..=299, extra: false, .. } => Ok(tcp),
                ConnectAnswer { code: 200..=299, extra: true, .. } => Err(ProxyError {
                    message: format!(
                        "the proxy {} sent data before the tunnel to {host}:{port} was used",
                        self.address()
                    ),
                    transient: true,
                }),
                answer => Err(self.refused(&answer, &host, port)),
            }
        };
        tokio::time::timeout(timeout, tunneling).await.map_err(|_| ProxyError {
            message: format!("the proxy {} did not open a tunnel to {host}:{port} in time", self.address()),
            transient: true,
        })?
    }

    fn unreachable(&self, e: &(dyn std::error::Error + 'static)) -> ProxyError {
        ProxyError { message: format!("cannot reach the proxy {}: {}", self.address(), root_cause(e)), transient: true }
    }

    fn broke_off(&self, e: &io::Error, host: &str, port: u16) -> ProxyError {
        ProxyError {
            message: format!("the proxy {} broke off the tunnel to {host}:{port}: {e}", self.address()),
            transient: true,
        }
    }

    /// A CONNECT answered with something other than 2xx. A 4xx is the proxy's own refusal (its
    /// policy, its credentials): asking again cannot help, so it is a configuration error. A 5xx
    /// is the proxy failing to reach the webhook, which may pass.
    fn refused(&self, answer: &ConnectAnswer, host: &str, port: u16) -> ProxyError {
        let proxy = self.address();
        let said = answer.said();
        match answer.code {
            407 if self.auth.is_some() => ProxyError {
                message: format!(
                    "the proxy {proxy} did not accept the credentials in the proxy URL ({said}): check the user \
                     name and password in HTTPS_PROXY"
                ),
                transient: false,
            },
            407 => ProxyError {
                message: format!(
                    "the proxy {proxy} wants credentials ({said}): put them in the proxy URL, \
                     HTTPS_PROXY=http://USER:PASSWORD@{proxy}"
                ),
                transient: false,
            },
            400..=499 => ProxyError {
                message: format!(
                    "the proxy {proxy} refused to open a tunnel to {host}:{port} ({said}): check that it allows \
                     CONNECT to that host and port, or list the host in NO_PROXY"
                ),
                transient: false,
            },
            _ => ProxyError {
                message: format!("the proxy {proxy} could not open a tunnel to {host}:{port} ({said})"),
                transient: true,
            },
        }
    }

    /// The proxy answered a request forwarded to an `http://` webhook with 407: the answer is the
    /// proxy's own (a webhook has no business asking for proxy credentials).
    pub fn wants_credentials(&self) -> String {
        let proxy = self.address();
        if self.auth.is_some() {
            format!(
                "the proxy {proxy} did not accept the credentials in the proxy URL (407): check the user name and \
                 password in HTTP_PROXY"
            )
        } else {
            format!(
                "the proxy {proxy} wants credentials (407): put them in the proxy URL, \
                 HTTP_PROXY=http://USER:PASSWORD@{proxy}"
            )
        }
    }
}

/// The status line of a proxy's answer to CONNECT.
struct ConnectAnswer {
    code: u16,
    /// The reason phrase as the proxy wrote it (printable characters only, shortened).
    reason: String,
    /// Bytes came after the answer's head, before we sent anything through the tunnel.
    extra: bool,
}

impl ConnectAnswer {
    /// `403 Forbidden`: the proxy's answer as it gave it.
    fn said(&self) -> String {
        if self.reason.is_empty() { self.code.to_string() } else { format!("{} {}", self.code, self.reason) }
    }
}

/// Most of an answer's head to CONNECT we read before calling it garbled.
const CONNECT_HEAD_MAX: usize = 16 << 10;

/// Read the proxy's answer to CONNECT through its blank line.
async fn read_connect_answer(tcp: &mut TcpStream) -> io::Result<ConnectAnswer> {
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 1024];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > CONNECT_HEAD_MAX {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "its answer to CONNECT has no end"));
        }
        let n = tcp.read(&mut chunk).await?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "it closed the connection without an answer"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let line = buf.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().and_then(|c| c.parse::<u16>().ok()).filter(|c| (100..1000).contains(c));
    let (true, Some(code)) = (version.starts_with("HTTP/1."), code) else {
        let shown: String = line.chars().filter(|c| !c.is_control()).take(60).collect();
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("its answer to CONNECT is not HTTP: `{shown}`"),
        ));
    };
    let reason: String = parts.next().unwrap_or_default().trim().chars().filter(|c| !c.is_control()).take(60).collect();
    Ok(ConnectAnswer { code, reason, extra: buf.len() > end })
}

/// hyper-util's tunnel error, which reqwest's CONNECT (the API path) fails with: public, in a
/// private module, so named through the connector.
pub(crate) type TunnelError = <Tunnel<HttpConnector> as Service<Uri>>::Error;

/// Why no connection through the proxy came about, in words (the proxy's credentials never
/// appear: only its host and port).
#[derive(Debug)]
pub struct ProxyError {
    pub message: String,
    /// Whether asking again could help. A failure that cannot pass is the proxy refusing us (a
    /// 4xx to CONNECT): a configuration error that stops the run.
    pub transient: bool,
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ProxyError {}

impl From<ProxyError> for io::Error {
    fn from(e: ProxyError) -> io::Error {
        io::Error::other(e)
    }
}

fn connector(timeout: Duration) -> HttpConnector {
    let mut c = HttpConnector::new();
    c.set_connect_timeout(Some(timeout));
    c.set_nodelay(true);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(m: &Matcher, url: &str) -> Result<Route, String> {
        Route::with(m, &Url::parse(url).unwrap())
    }

    #[test]
    fn http_goes_forward_https_through_a_tunnel_and_no_proxy_goes_direct() {
        let m = Matcher::builder()
            .http("http://proxy.local:3128")
            .https("http://u%40x:p%3Aw@tunnel.local:8080")
            .no("internal.example, 10.0.0.0/8")
            .build();
        match route(&m, "http://hooks.example.com/in").unwrap() {
            Route::Forward(p) => {
                assert_eq!(p.address(), "proxy.local:3128");
                assert!(p.auth.is_none());
            }
            _ => panic!("http:// should go forward through HTTP_PROXY"),
        }
        match route(&m, "https://hooks.example.com/in").unwrap() {
            Route::Tunnel(p) => {
                assert_eq!(p.address(), "tunnel.local:8080");
                // base64("u@x:p:w"), and never in the address we print.
                assert_eq!(p.auth.as_ref().unwrap(), "Basic dUB4OnA6dw==");
                assert!(p.auth.as_ref().unwrap().is_sensitive());
                assert!(!p.uri.to_string().contains("p:w") && !p.uri.to_string().contains('@'));
            }
            _ => panic!("https:// should tunnel through HTTPS_PROXY"),
        }
        for direct in ["https://api.internal.example/x", "http://10.1.2.3:8080/", "https://internal.example"] {
            assert!(matches!(route(&m, direct).unwrap(), Route::Direct), "{direct}");
        }
        assert!(matches!(route(&Matcher::builder().build(), "https://x.example").unwrap(), Route::Direct));
    }

    #[test]
    fn a_socks_or_https_proxy_is_refused_in_words() {
        for proxy in ["socks5://127.0.0.1:1080", "https://proxy.local:443"] {
            let m = Matcher::builder().all(proxy).build();
            let err = route(&m, "https://hooks.example.com").err().expect("refused");
            assert!(err.contains("only http:// proxies"), "{err}");
        }
    }
}
