//! The `x-savvycal-signature` header: `sha256=<hex HMAC-SHA256 of the raw body>`.
//!
//! Kept apart from delivery so the embedded receiver (demo, sink, tests) verifies with the very
//! same code the sender signs with — and so both are tested without a network.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header SavvyCal signs its webhooks with.
pub const HEADER: &str = "x-savvycal-signature";

/// `sha256=<lowercase hex>` of HMAC-SHA256 over `body`, keyed with `secret`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    out.push_str(&hex::encode(tag));
    out
}

/// Whether `header` is a valid signature of `body`. The hex is compared case-insensitively
/// (SavvyCal's docs show uppercase, common receivers lowercase) and in constant time.
pub fn verify(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Some(hex_part) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(tag) = hex::decode(hex_part.to_ascii_lowercase()) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_known_hmac_sha256_vector() {
        // RFC 4231 test case 2.
        let sig = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn verify_accepts_either_case_and_rejects_tampering() {
        let body = br#"{"type":"event.created"}"#;
        let sig = sign(b"s3cret", body);
        assert!(verify(b"s3cret", body, &sig));
        assert!(verify(b"s3cret", body, &sig.to_ascii_uppercase().replace("SHA256=", "sha256=")));
        assert!(!verify(b"other", body, &sig));
        assert!(!verify(b"s3cret", b"{}", &sig));
        assert!(!verify(b"s3cret", body, "sha1=abc"));
        assert!(!verify(b"s3cret", body, "sha256=zz"));
    }
}
