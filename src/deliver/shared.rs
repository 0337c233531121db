//! What both HTTP paths share — the webhook workers (hyper, [`crate::deliver::connection`]) and the
//! SavvyCal pager (reqwest, [`crate::source::api`]): who we say we are, the TLS crypto provider,
//! how an error response's body is read, and how URLs and redirects are shown in messages. A leaf:
//! it imports nothing from the crate.

use serde::Deserialize;
use url::Url;

/// Most of a response body we read for a message, on both HTTP paths (the status line decides,
/// the body only explains). A larger body is not an error: reading stops there and the connection
/// is dropped.
pub const BODY_READ_MAX: usize = 64 << 10;

/// `User-Agent: savvy-replay/<version>`.
pub const USER_AGENT: &str = concat!("savvy-replay/", env!("CARGO_PKG_VERSION"));

/// Make rustls use `ring` (reqwest is built without a default crypto provider). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
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

/// What a redirect said: where it pointed, as far as it can be shown.
pub fn redirect_message(headers: &http::HeaderMap) -> String {
    match headers.get(http::header::LOCATION).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()) {
        Some(to) => {
            let to: String = to.chars().filter(|c| !c.is_control()).take(300).collect();
            // A Location may carry credentials: mask them like ours.
            let shown = Url::parse(&to).map_or(to, |u| display_url(&u));
            format!("redirected to {shown} (redirects are not followed; use that URL if it is the right one)")
        }
        None => "a redirect without a Location (redirects are not followed)".to_owned(),
    }
}

/// An API error body, read defensively: `{"errors":[{"message":…}]}`, or plain text, or nothing.
pub fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Errors {
        errors: Vec<Msg>,
    }
    #[derive(Deserialize)]
    struct Msg {
        message: String,
    }
    if let Ok(e) = serde_json::from_slice::<Errors>(body) {
        let msgs: Vec<_> = e.errors.into_iter().map(|m| m.message).collect();
        if !msgs.is_empty() {
            return msgs.join("; ");
        }
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    let mut out: String = text.chars().take(200).filter(|c| !c.is_control()).collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// The innermost error of a chain, in words: what actually went wrong, without the layers that
/// wrap it (for both HTTP paths and the proxy).
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    chain(e).last().unwrap_or(e).to_string()
}

/// `e` and every error that caused it, outermost first.
pub fn chain<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_read_defensively() {
        assert_eq!(error_message(br#"{"errors":[{"message":"Unauthenticated"}]}"#), "Unauthenticated");
        assert_eq!(error_message(b"Unauthenticated\n"), "Unauthenticated");
        assert_eq!(error_message(b""), "");
        assert_eq!(error_message(br#"{"errors":[]}"#), r#"{"errors":[]}"#);
        let long = "x".repeat(500);
        assert_eq!(error_message(long.as_bytes()).chars().count(), 201);
    }
}
