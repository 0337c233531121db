//! TLS failures in words, for the webhook and the SavvyCal API alike.
//!
//! rustls reports a refused certificate as an enum (`invalid peer certificate: UnknownIssuer`,
//! `Other(OtherError(CaUsedAsEndEntity))`), which tells a user neither what is wrong nor what to
//! do. Both HTTP paths end in rustls, wrapped in `io::Error`s and client errors, so we look for a
//! `rustls::Error` along the error's source chain and say what it means.

use std::error::Error as StdError;
use std::io;

use rustls::CertificateError as Cert;

/// The TLS failure somewhere in `err`'s chain, in words, or `None` when there is none (or none we
/// can say better than the library). `what` names the server: "the webhook", "the SavvyCal API".
pub fn explain(err: &(dyn StdError + 'static), what: &str) -> Option<String> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(tls) = as_rustls(e) {
            return in_words(tls, what);
        }
        next = e.source();
    }
    None
}

/// `io::Error` hides its payload from `source()` (it returns the payload's source), so look inside,
/// through as many layers as there are (reqwest's connector wraps tokio-rustls's `io::Error` in
/// another).
fn as_rustls<'a>(mut e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    loop {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        e = e.downcast_ref::<io::Error>()?.get_ref()?;
    }
}

const TRUST: &str = "use a certificate from a public certificate authority, or add the authority that issued it \
                     to this computer's trust store (or point SSL_CERT_FILE at it)";

fn in_words(err: &rustls::Error, what: &str) -> Option<String> {
    let cert = match err {
        rustls::Error::InvalidCertificate(c) => c,
        rustls::Error::InvalidMessage(_) => {
            return Some(format!(
                "{what} did not answer in TLS: if it serves plain HTTP, write the URL with http:// \
                 (or check the port)"
            ));
        }
        rustls::Error::PeerIncompatible(_) => {
            return Some(format!(
                "{what} and savvy-replay have no TLS version or cipher in common (TLS 1.2 or 1.3 is needed): \
                 update the server's TLS settings"
            ));
        }
        rustls::Error::AlertReceived(alert) => {
            return Some(format!(
                "{what} ended the TLS handshake (alert: {alert:?}): check its TLS settings and that the URL names \
                 the right host"
            ));
        }
        _ => return None,
    };
    Some(match cert {
        Cert::UnknownIssuer | Cert::BadSignature => format!(
            "{what}'s certificate is not trusted (self-signed, or issued by an authority this computer does not \
             know): {TRUST}"
        ),
        // webpki's own reasons, e.g. a CA certificate served as the server's (as a self-signed CA
        // often is): the chain cannot be trusted as presented.
        Cert::Other(_) | Cert::UnhandledCriticalExtension => format!(
            "{what}'s certificate is not trusted (it is self-signed, or a certificate authority's own certificate \
             served as the server's): {TRUST}"
        ),
        Cert::NotValidForNameContext { expected, presented } => {
            let names = if presented.is_empty() {
                "no host name".to_owned()
            } else {
                presented.iter().map(|p| bare_name(p)).collect::<Vec<_>>().join(", ")
            };
            format!(
                "{what}'s certificate is for {names}, not for `{}` (wrong host name): use the host name the \
                 certificate was issued for in the URL, or a certificate that names this host",
                expected.to_str()
            )
        }
        Cert::NotValidForName => format!(
            "{what}'s certificate is not valid for the host name in the URL (wrong host name): use the name it \
             was issued for, or a certificate that names this host"
        ),
        Cert::ExpiredContext { not_after, .. } => format!(
            "{what}'s certificate expired on {}: the server must renew it (or, if that date is in the \
             future, this computer's clock is wrong)",
            date(not_after.as_secs())
        ),
        Cert::Expired => format!("{what}'s certificate has expired: the server must renew it"),
        Cert::NotValidYetContext { not_before, .. } => format!(
            "{what}'s certificate is not valid before {}: check this computer's clock",
            date(not_before.as_secs())
        ),
        Cert::NotValidYet => format!("{what}'s certificate is not valid yet: check this computer's clock"),
        Cert::Revoked => format!("{what}'s certificate has been revoked by its issuer: the server needs a new one"),
        Cert::InvalidPurpose | Cert::InvalidPurposeContext { .. } => format!(
            "{what}'s certificate is not meant for a web server (its key usage does not allow it): the server \
             needs a server certificate"
        ),
        Cert::BadEncoding => format!("{what}'s certificate is malformed: the server must be given a valid one"),
        other => format!("{what}'s certificate was refused ({other})"),
    })
}

/// webpki lists the names a certificate presents as `DnsName("a.example")`; show `a.example`.
fn bare_name(presented: &str) -> &str {
    presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .map(|inner| inner.trim_matches('"'))
        .unwrap_or(presented)
}

fn date(unix_secs: u64) -> String {
    i64::try_from(unix_secs)
        .ok()
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .map(|t| t.strftime("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "an unreadable date".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{ServerName, UnixTime};

    fn wrapped(e: rustls::Error) -> io::Error {
        // As tokio-rustls hands it over: an io::Error of kind InvalidData around the rustls error.
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn certificate_problems_are_said_in_words_without_enum_names() {
        let cases = [
            (Cert::UnknownIssuer, "is not trusted (self-signed"),
            (Cert::BadSignature, "is not trusted"),
            (
                Cert::Other(rustls::OtherError(std::sync::Arc::new(io::Error::other("CaUsedAsEndEntity")))),
                "self-signed",
            ),
            (
                Cert::NotValidForNameContext {
                    expected: ServerName::try_from("hooks.example.com").unwrap(),
                    presented: vec!["DnsName(\"other.example\")".into()],
                },
                "is for other.example, not for `hooks.example.com` (wrong host name)",
            ),
            (
                Cert::ExpiredContext {
                    time: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_800_000_000)),
                    not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(1_700_000_000)),
                },
                "expired on 2023-11-14 22:13 UTC: the server must renew it",
            ),
        ];
        for (cert, want) in cases {
            let e = wrapped(rustls::Error::InvalidCertificate(cert));
            let said = explain(&e, "the webhook").expect("explained");
            assert!(said.starts_with("the webhook's certificate"), "{said}");
            assert!(said.contains(want), "{said}");
            for name in ["UnknownIssuer", "BadSignature", "CaUsedAsEndEntity", "NotValidForName", "Expired"] {
                assert!(!said.contains(name), "{said}");
            }
        }
    }

    #[test]
    fn found_deep_in_a_chain_and_absent_when_not_tls() {
        #[derive(Debug)]
        struct Outer(io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        // As reqwest hands it over: an io::Error around tokio-rustls's io::Error.
        let e = Outer(io::Error::other(wrapped(rustls::Error::InvalidCertificate(Cert::UnknownIssuer))));
        assert!(explain(&e, "the SavvyCal API").unwrap().starts_with("the SavvyCal API's certificate is not trusted"));
        let plain = Outer(io::Error::new(io::ErrorKind::ConnectionRefused, "refused"));
        assert_eq!(explain(&plain, "the webhook"), None);
    }
}
