//! Why an attempt got no HTTP answer, as a short stable key: oha's "error distribution".
//!
//! The summary counts attempts without an answer by cause (SPEC §5: `"errors": {"connection
//! refused": 12, "timeout": 3}`), so a user sees at once whether the receiver was down, resetting
//! connections, or slow, without `-v`. The keys are part of the JSON contract: never rename one.
//! A leaf module: the connection code decides the cause, the counters count it.

/// Why an attempt got no HTTP answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Cause {
    /// Nothing listens at the address (`ECONNREFUSED`).
    Refused,
    /// The peer reset the connection (`ECONNRESET`, or a write into a closed one).
    Reset,
    /// The connection closed cleanly before a whole answer came.
    Closed,
    /// No answer within `--timeout`.
    Timeout,
    /// Connecting took longer than the connect timeout.
    ConnectTimeout,
    /// The host name did not resolve.
    Dns,
    /// The host or network cannot be reached (no route).
    Unreachable,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The proxy from the environment refused or failed.
    Proxy,
    /// Something answered, but not in HTTP.
    InvalidResponse,
    /// Anything else.
    Other,
}

impl Cause {
    /// Every cause, in the order the summary lists them.
    pub const ALL: [Cause; 11] = [
        Cause::Refused,
        Cause::Reset,
        Cause::Closed,
        Cause::Timeout,
        Cause::ConnectTimeout,
        Cause::Dns,
        Cause::Unreachable,
        Cause::Tls,
        Cause::Proxy,
        Cause::InvalidResponse,
        Cause::Other,
    ];

    /// The stable key used in the summary and the JSON `errors` object.
    pub fn key(self) -> &'static str {
        match self {
            Cause::Refused => "connection refused",
            Cause::Reset => "connection reset",
            Cause::Closed => "closed before answer",
            Cause::Timeout => "timeout",
            Cause::ConnectTimeout => "connect timeout",
            Cause::Dns => "dns",
            Cause::Unreachable => "unreachable",
            Cause::Tls => "tls",
            Cause::Proxy => "proxy",
            Cause::InvalidResponse => "invalid response",
            Cause::Other => "other",
        }
    }

    /// The cause an I/O error names, when it names one.
    pub fn of_io(e: &std::io::Error) -> Option<Cause> {
        use std::io::ErrorKind as K;
        Some(match e.kind() {
            K::ConnectionRefused => Cause::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => Cause::Reset,
            K::UnexpectedEof => Cause::Closed,
            K::TimedOut => Cause::ConnectTimeout,
            K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => Cause::Unreachable,
            // std reports a failed name lookup as an uncategorized error whose text says so
            // (getaddrinfo's message follows); there is no kind to match.
            _ if e.to_string().starts_with("failed to lookup address") => Cause::Dns,
            _ => return None,
        })
    }

    /// The first cause named along `e`'s chain of sources (I/O errors inside hyper's, say).
    pub fn in_chain(e: &(dyn std::error::Error + 'static)) -> Option<Cause> {
        let mut next = Some(e);
        while let Some(err) = next {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                if let Some(cause) = Cause::of_io(io) {
                    return Some(cause);
                }
                // `io::Error::source` skips its own payload: look inside it.
                if let Some(inner) = io.get_ref() {
                    next = Some(inner);
                    continue;
                }
            }
            next = err.source();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn keys_are_distinct_and_short() {
        let keys: std::collections::HashSet<_> = Cause::ALL.iter().map(|c| c.key()).collect();
        assert_eq!(keys.len(), Cause::ALL.len());
        assert!(keys.iter().all(|k| k.len() <= 20 && !k.is_empty()));
    }

    #[test]
    fn io_errors_name_their_cause() {
        let e = |k| io::Error::new(k, "x");
        assert_eq!(Cause::of_io(&e(io::ErrorKind::ConnectionRefused)), Some(Cause::Refused));
        assert_eq!(Cause::of_io(&e(io::ErrorKind::ConnectionReset)), Some(Cause::Reset));
        assert_eq!(Cause::of_io(&e(io::ErrorKind::BrokenPipe)), Some(Cause::Reset));
        assert_eq!(Cause::of_io(&e(io::ErrorKind::UnexpectedEof)), Some(Cause::Closed));
        assert_eq!(Cause::of_io(&e(io::ErrorKind::TimedOut)), Some(Cause::ConnectTimeout));
        assert_eq!(Cause::of_io(&io::Error::other("failed to lookup address information: nope")), Some(Cause::Dns));
        assert_eq!(Cause::of_io(&e(io::ErrorKind::InvalidData)), None);
        // Wrapped in another error's chain.
        let wrapped = io::Error::other(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
        assert_eq!(Cause::in_chain(&wrapped), Some(Cause::Reset));
    }
}
