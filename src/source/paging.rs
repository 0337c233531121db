//! The guard that keeps cursor paging finite, for every SavvyCal list this tool pages through
//! (`/v1/events` in [`super::api`], `/v1/webhooks` in [`super::webhooks`]).
//!
//! Both follow `metadata.after` until it is null, so both trust the API to end. A cursor is never
//! followed twice (that would fetch the same pages forever), and a run of empty pages that each
//! point to yet another page ends: one rule, in one place, whatever the endpoint.

use std::collections::HashMap;

use super::SourceError;

/// More empty pages in a row than this, each with a next cursor, and the API is not paging.
const MAX_EMPTY_PAGES: u64 = 3;

/// Checks each page's next cursor before it is followed.
pub(crate) struct PagingGuard {
    /// The endpoint, for messages: `/v1/events`.
    endpoint: &'static str,
    /// Every `after` cursor followed so far, with the page that returned it. A cursor is a few
    /// dozen bytes per page, so this stays small.
    seen: HashMap<String, u64>,
    empty_in_a_row: u64,
}

impl PagingGuard {
    pub(crate) fn new(endpoint: &'static str) -> PagingGuard {
        PagingGuard { endpoint, seen: HashMap::new(), empty_in_a_row: 0 }
    }

    /// Check page `page`'s next cursor `next` (`empty`: the page had no entries). `Err`: why
    /// following it would not end ([`SourceError::Paging`]).
    pub(crate) fn check(&mut self, page: u64, next: &str, empty: bool) -> Result<(), SourceError> {
        let endpoint = self.endpoint;
        if let Some(first) = self.seen.get(next) {
            return Err(SourceError::Paging(format!(
                "page {page} of {endpoint} pointed to the `after` cursor {} again, which page {first} \
                 already returned: following it would fetch the same pages forever",
                short_cursor(next)
            )));
        }
        self.seen.insert(next.to_owned(), page);
        self.empty_in_a_row = if empty { self.empty_in_a_row + 1 } else { 0 };
        if self.empty_in_a_row > MAX_EMPTY_PAGES {
            return Err(SourceError::Paging(format!(
                "returned {} empty pages in a row (pages {} to {page} of {endpoint}), each pointing to another page",
                self.empty_in_a_row,
                page + 1 - self.empty_in_a_row
            )));
        }
        Ok(())
    }
}

/// A cursor for a message: quoted, and cut short if long.
fn short_cursor(c: &str) -> String {
    let shown: String = c.chars().filter(|c| !c.is_control()).take(40).collect();
    if shown.len() < c.len() { format!("{shown:?}…") } else { format!("{shown:?}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_cursor_or_a_run_of_empty_pages_ends_paging() {
        let mut g = PagingGuard::new("/v1/things");
        assert!(g.check(1, "a", false).is_ok());
        let e = g.check(2, "a", false).unwrap_err().to_string();
        assert!(e.contains("page 2 of /v1/things") && e.contains("page 1 already returned"), "{e}");

        let mut g = PagingGuard::new("/v1/things");
        for page in 1..=3 {
            assert!(g.check(page, &format!("c{page}"), true).is_ok());
        }
        // A page with entries starts the count again.
        assert!(g.check(4, "c4", false).is_ok());
        for page in 5..=7 {
            assert!(g.check(page, &format!("c{page}"), true).is_ok());
        }
        let e = g.check(8, "c8", true).unwrap_err().to_string();
        assert!(e.contains("4 empty pages in a row (pages 5 to 8 of /v1/things)"), "{e}");
    }
}
