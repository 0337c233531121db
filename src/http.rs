//! What both HTTP paths share — the webhook workers (hyper, [`crate::connection`]) and the
//! SavvyCal pager (reqwest, [`crate::source::api`]): who we say we are, the TLS crypto provider,
//! and how an error response's body is read. A leaf: it imports nothing from the crate.

use serde::Deserialize;

/// `User-Agent: savvy-replay/<version>`.
pub const USER_AGENT: &str = concat!("savvy-replay/", env!("CARGO_PKG_VERSION"));

/// Make rustls use `ring` (reqwest is built without a default crypto provider). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
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
