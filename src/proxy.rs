//! The webhook path's proxy: `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY` (either case), as curl
//! and reqwest read them.
//!
//! The API path gets this from reqwest. The webhook path speaks hyper directly
//! ([`crate::connection`]), so it asks the same library reqwest asks: hyper-util's proxy
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
use tokio::net::TcpStream;
use tower_service::Service;
use url::Url;

use crate::http::root_cause;

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
    pub async fn tunnel(&self, host: &str, port: u16, timeout: Duration) -> Result<TcpStream, ProxyError> {
        let mut tunnel = Tunnel::new(self.uri.clone(), connector(timeout));
        if let Some(auth) = &self.auth {
            tunnel = tunnel.with_auth(auth.clone());
        }
        let host = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
        let dst: Uri = format!("https://{host}:{port}/").parse().map_err(|e| ProxyError {
            message: format!("cannot ask the proxy for `{host}:{port}`: {e}"),
            transient: false,
        })?;
        let tunneling = async {
            std::future::poll_fn(|cx| tunnel.poll_ready(cx)).await?;
            tunnel.call(dst).await
        };
        let io = tokio::time::timeout(timeout, tunneling)
            .await
            .map_err(|_| ProxyError {
                message: format!("the proxy {} did not open a tunnel to {host}:{port} in time", self.address()),
                transient: true,
            })?
            .map_err(|e| self.tunnel_failed(&e, &host, port))?;
        Ok(io.into_inner())
    }

    fn unreachable(&self, e: &(dyn std::error::Error + 'static)) -> ProxyError {
        ProxyError { message: format!("cannot reach the proxy {}: {}", self.address(), root_cause(e)), transient: true }
    }

    fn tunnel_failed(&self, e: &TunnelError, host: &str, port: u16) -> ProxyError {
        use TunnelError as T;
        let proxy = self.address();
        match e {
            T::ConnectFailed(inner) => self.unreachable(&**inner),
            T::ProxyAuthRequired => ProxyError {
                message: format!(
                    "the proxy {proxy} wants credentials (407): put them in the proxy URL, \
                     HTTPS_PROXY=http://USER:PASSWORD@{proxy}"
                ),
                transient: false,
            },
            T::TunnelUnsuccessful => ProxyError {
                message: format!(
                    "the proxy {proxy} refused to open a tunnel to {host}:{port}: check that it allows CONNECT to \
                     that host and port, or list the host in NO_PROXY"
                ),
                // A proxy's 502/503 for an unreachable webhook may pass; we cannot tell which.
                transient: true,
            },
            other => ProxyError {
                message: format!("the proxy {proxy} broke off the tunnel to {host}:{port}: {}", root_cause(other)),
                transient: true,
            },
        }
    }
}

/// hyper-util's tunnel error: public, in a private module, so named through the connector.
type TunnelError = <Tunnel<HttpConnector> as Service<Uri>>::Error;

/// Why no connection through the proxy came about, in words (the proxy's credentials never
/// appear: only its host and port).
#[derive(Debug)]
pub struct ProxyError {
    pub message: String,
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
