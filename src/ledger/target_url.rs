//! When two spellings of a webhook URL are one target: one answer for the webhook lookup (is this
//! SavvyCal webhook `--webhook-url`?) and the ledger (which outcomes are this URL's?), so a URL the
//! lookup accepts as the webhook's never looks new to the ledger.
//!
//! The case of scheme and host, the scheme's default port, a fragment (never sent), an empty
//! query and trailing slashes of the path do not count. The rest of the path and the query do: a
//! receiver may route on either.

use url::Url;

/// `url` in its canonical spelling (credentials kept: the ledger keys a password, hashed).
pub fn canonical(url: &Url) -> Url {
    // The `url` crate already lower-cases scheme and host and drops a default port.
    let mut c = url.clone();
    c.set_fragment(None);
    if c.query() == Some("") {
        c.set_query(None);
    }
    let trimmed = c.path().trim_end_matches('/').to_owned();
    if trimmed.len() < c.path().len() {
        // A path of slashes alone is the root, which `set_path` keeps as `/` where it must.
        c.set_path(&trimmed);
    }
    c
}

/// Whether `a` and `b` name the same target, credentials aside (the webhook lookup compares a
/// URL that carries Basic auth with one that does not).
pub fn same(a: &Url, b: &Url) -> bool {
    let bare = |u: &Url| {
        let mut c = canonical(u);
        let _ = c.set_password(None);
        let _ = c.set_username("");
        c
    };
    bare(a) == bare(b)
}

/// Spellings of one webhook URL, and URLs that are other targets: one table for every test of
/// "the same target" (here, the ledger's key and the webhook lookup), as they must agree.
#[cfg(test)]
pub(crate) mod spellings {
    use url::Url;

    /// `s` parsed, for a test that knows it is a URL.
    pub(crate) fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    /// The URL the others are compared with.
    pub(crate) const PLAIN: &str = "https://hooks.example.com/savvycal";
    /// The same target as [`PLAIN`].
    pub(crate) const SAME: [&str; 7] = [
        "https://hooks.example.com/savvycal/",
        "https://hooks.example.com/savvycal//",
        "https://hooks.example.com/savvycal?",
        "https://hooks.example.com/savvycal#",
        "https://hooks.example.com/savvycal/?#frag",
        "HTTPS://Hooks.Example.COM:443/savvycal",
        "HTTPS://HOOKS.EXAMPLE.COM/savvycal/",
    ];
    /// Other targets than [`PLAIN`]: a receiver may route on the path and the query.
    pub(crate) const OTHER: [&str; 6] = [
        "http://hooks.example.com/savvycal",
        "https://hooks.example.com/SavvyCal",
        "https://hooks.example.com/savvycal?x=1",
        "https://hooks.example.com:8443/savvycal",
        "https://hooks.example.com/savvycal/x",
        "https://other.example.com/savvycal",
    ];
}

#[cfg(test)]
mod tests {
    use super::spellings::{OTHER, PLAIN, SAME, url};
    use super::*;

    #[test]
    fn spellings_that_do_not_count() {
        for same_one in SAME {
            assert_eq!(canonical(&url(same_one)), url(PLAIN), "{same_one}");
        }
        assert_eq!(canonical(&url("https://h.example.com")).as_str(), "https://h.example.com/");
        assert_eq!(canonical(&url("https://h.example.com//")).as_str(), "https://h.example.com/");
        assert!(same(&url("https://u:pw@h.example.com/x/"), &url("https://h.example.com/x")));
        for other in OTHER {
            assert!(!same(&url(other), &url(PLAIN)), "{other}");
        }
    }
}
