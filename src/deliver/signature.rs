//! The `x-savvycal-signature` header: `sha256=<UPPERCASE hex HMAC-SHA256 of the raw body>`.
//!
//! SavvyCal's documented example header is `sha256=6CAA4DEF…`, and its published verification
//! examples build `"sha256=" + hex.toUpperCase()` and compare the whole header exactly: a receiver
//! written from those docs rejects lowercase. So uppercase is the default, and `--signature-hex
//! lower` exists only for a receiver written against lowercase.
//!
//! Only the sending side lives here. The embedded receiver verifies with its own code, written
//! from SavvyCal's docs (`savvy_replay_fake::receiver`), so a mistake here cannot hide behind the same
//! mistake on the other end.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header SavvyCal signs its webhooks with.
pub const HEADER: &str = "x-savvycal-signature";

/// The case of the hex digest (`--signature-hex`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum HexCase {
    /// What SavvyCal sends, and what its verification examples expect.
    #[default]
    Upper,
    /// For a receiver written against lowercase.
    Lower,
}

/// `sha256=<UPPERCASE hex>` of HMAC-SHA256 over `body`, keyed with `secret`: SavvyCal's form.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    sign_with(secret, body, HexCase::Upper)
}

/// `sha256=<hex>` of HMAC-SHA256 over `body`, keyed with `secret`, in the given case.
pub fn sign_with(secret: &[u8], body: &[u8], case: HexCase) -> String {
    let value = Signer::new(secret, case).sign(body);
    // Only ASCII goes in (the prefix and hex digits).
    String::from_utf8_lossy(&value).into_owned()
}

/// Signs bodies with one key: the key is prepared once, not once per event.
#[derive(Clone)]
pub struct Signer {
    mac: Hmac<Sha256>,
    case: HexCase,
}

/// A signature header's value: `sha256=` and 64 hex digits.
pub type Signature = [u8; 7 + 64];

impl Signer {
    pub fn new(secret: &[u8], case: HexCase) -> Signer {
        let mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
        Signer { mac, case }
    }

    /// The header's value for `body`, on the stack.
    pub fn sign(&self, body: &[u8]) -> Signature {
        let mut mac = self.mac.clone();
        mac.update(body);
        let tag = mac.finalize().into_bytes();
        let mut value = [0u8; 7 + 64];
        value[..7].copy_from_slice(b"sha256=");
        // 32 bytes always fit 64 hex digits.
        let _ = hex::encode_to_slice(tag, &mut value[7..]);
        if self.case == HexCase::Upper {
            value[7..].make_ascii_uppercase();
        }
        value
    }
}

impl std::fmt::Debug for Signer {
    // The prepared key is the secret in another form: never print it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({:?}, <redacted>)", self.case)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_known_hmac_sha256_vector_in_uppercase() {
        // RFC 4231 test case 2.
        let sig = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(sig, "sha256=5BDCC146BF60754E6A042426089575C75A003F089D2739839DEC58B964EC3843");
        let lower = sign_with(b"Jefe", b"what do ya want for nothing?", HexCase::Lower);
        assert_eq!(lower, "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
