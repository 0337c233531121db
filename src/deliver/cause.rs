//! Why an attempt got no HTTP answer, as a short stable key: oha's "error distribution".
//!
//! The summary counts attempts without an answer by cause (in JSON, `"errors": {"connection
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
    /// This process ran out of file descriptors (`EMFILE`, `ENFILE`): a local limit, not the
    /// webhook's doing.
    TooManyFiles,
    /// Something answered, but not in HTTP.
    InvalidResponse,
    /// Anything else.
    Other,
}

impl Cause {
    /// Every cause, in the order the summary lists them.
    pub const ALL: [Cause; 12] = [
        Cause::Refused,
        Cause::Reset,
        Cause::Closed,
        Cause::Timeout,
        Cause::ConnectTimeout,
        Cause::Dns,
        Cause::Unreachable,
        Cause::Tls,
        Cause::Proxy,
        Cause::TooManyFiles,
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
            Cause::TooManyFiles => "too many open files",
            Cause::InvalidResponse => "invalid response",
            Cause::Other => "other",
        }
    }

    /// Whether the cause is on this machine, saying nothing about the webhook's health or
    /// capacity: neither an outage nor a reason to slow down.
    pub fn is_local(self) -> bool {
        self == Cause::TooManyFiles
    }

    /// The cause an I/O error names, when it names one.
    pub fn of_io(e: &std::io::Error) -> Option<Cause> {
        use std::io::ErrorKind as K;
        if is_out_of_files(e) {
            return Some(Cause::TooManyFiles);
        }
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

/// `EMFILE` (this process's `ulimit -n`) or `ENFILE` (the system's table). std has no stable
/// kind for them; the numbers are the same on Linux, macOS and the BSDs.
pub fn is_out_of_files(e: &std::io::Error) -> bool {
    #[cfg(unix)]
    const OUT_OF_FILES: [i32; 2] = [24, 23];
    // WSAEMFILE.
    #[cfg(windows)]
    const OUT_OF_FILES: [i32; 1] = [10024];
    #[cfg(not(any(unix, windows)))]
    const OUT_OF_FILES: [i32; 0] = [];
    e.raw_os_error().is_some_and(|code| OUT_OF_FILES.contains(&code))
}

/// What to say when [`is_out_of_files`].
pub const OUT_OF_FILES_HINT: &str = "too many open files: raise `ulimit -n` or lower `--concurrency`";

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn keys_are_distinct_and_short() {
        assert_eq!(Cause::TooManyFiles.key(), "too many open files");
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
        #[cfg(unix)]
        for code in [libc::EMFILE, libc::ENFILE] {
            let out = io::Error::from_raw_os_error(code);
            assert_eq!(Cause::of_io(&out), Some(Cause::TooManyFiles), "{out}");
            assert!(Cause::TooManyFiles.is_local() && !Cause::Refused.is_local());
        }
        // Wrapped in another error's chain.
        let wrapped = io::Error::other(io::Error::new(io::ErrorKind::ConnectionReset, "reset"));
        assert_eq!(Cause::in_chain(&wrapped), Some(Cause::Reset));
    }
}
