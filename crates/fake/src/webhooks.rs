//! The fake SavvyCal API's webhooks: cursor-paged `GET /v1/webhooks` and `GET /v1/webhooks/:id`.
//!
//! Shaped like SavvyCal's (`../shared/examples/webhooks-page.json`): entries with `id`, `state`,
//! `url`, `version`, `created_at` and `secret`, paged like events with `limit` (default 20) and an
//! opaque `after` cursor. `demo` registers its receiver here, so the run finds it the way a real
//! run finds the user's webhook; tests register many, to make the lookup page.

use std::fmt::Write as _;

use serde::Serialize;

use super::api::{decode_cursor, encode_cursor};

/// Page size when the request gives none (SavvyCal's list default).
const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

/// One webhook of the fake account.
#[derive(Clone, Serialize)]
pub struct FakeWebhook {
    pub id: String,
    pub state: String,
    pub url: String,
    pub version: String,
    pub created_at: String,
    /// Left out of the JSON when `None` (an API that does not return secrets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl std::fmt::Debug for FakeWebhook {
    // Not derived: the secret stays out of test output too.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeWebhook").field("id", &self.id).field("url", &self.url).finish_non_exhaustive()
    }
}

impl FakeWebhook {
    /// An active webhook with the current payload version.
    pub fn active(id: &str, url: &str, created_at: &str, secret: Option<&str>) -> FakeWebhook {
        FakeWebhook {
            id: id.to_owned(),
            state: "active".to_owned(),
            url: url.to_owned(),
            // SavvyCal's documented payload version, written out: taken from our own constant, the
            // fake would follow it if it drifted.
            version: "2020-11-18".to_owned(),
            created_at: created_at.to_owned(),
            secret: secret.map(str::to_owned),
        }
    }
}

/// The account's webhooks, serialized once.
pub(crate) struct Webhooks {
    /// `(id, JSON object)`, in list order.
    entries: Vec<(String, String)>,
}

impl Webhooks {
    pub(crate) fn new(webhooks: &[FakeWebhook]) -> Webhooks {
        let entries = webhooks
            .iter()
            .map(|w| (w.id.clone(), serde_json::to_string(w).unwrap_or_else(|_| "{}".to_owned())))
            .collect();
        Webhooks { entries }
    }

    /// `GET /v1/webhooks/:id`: the object itself.
    pub(crate) fn one(&self, id: &str) -> Option<&str> {
        self.entries.iter().find(|(i, _)| i == id).map(|(_, json)| json.as_str())
    }

    /// `GET /v1/webhooks?…`: a page as JSON, or the message of a 422.
    pub(crate) fn page(&self, query: &str) -> Result<String, String> {
        let n = self.entries.len();
        let mut limit = DEFAULT_LIMIT;
        let (mut after, mut before) = (None, None);
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            match &*key {
                "limit" => {
                    limit = value
                        .parse()
                        .ok()
                        .filter(|l| (1..=MAX_LIMIT).contains(l))
                        .ok_or_else(|| format!("limit must be between 1 and {MAX_LIMIT}"))?;
                }
                // A cursor names an entry: `after` pages on past it, `before` back to just before it.
                "after" => after = Some(decode_cursor(&value, n).ok_or("invalid cursor")?),
                "before" => before = Some(decode_cursor(&value, n).ok_or("invalid cursor")?),
                _ => {}
            }
        }
        let (first, last) = match (after, before) {
            (Some(_), Some(_)) => return Err("after and before cannot be combined".to_owned()),
            (_, Some(before)) => (before.saturating_sub(limit), before),
            (after, None) => {
                let first = after.map_or(0, |a| a + 1);
                (first, (first + limit).min(n))
            }
        };
        let mut body = String::from(r#"{"entries":["#);
        for (k, (_, json)) in self.entries[first.min(n)..last].iter().enumerate() {
            if k > 0 {
                body.push(',');
            }
            body.push_str(json);
        }
        let after = (last < n && last > 0).then(|| encode_cursor(last - 1));
        let before = (first > 0 && first <= n).then(|| encode_cursor(first));
        let cursor = |c: Option<String>| c.map_or("null".to_owned(), |c| format!("\"{c}\""));
        // Writing to a String cannot fail.
        let _ =
            write!(body, r#"],"metadata":{{"after":{},"before":{},"limit":{limit}}}}}"#, cursor(after), cursor(before));
        Ok(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 45 active webhooks, `wh_0` to `wh_44`: two full pages of 20 and one of 5.
    fn forty_five() -> Vec<FakeWebhook> {
        (0..45)
            .map(|i| FakeWebhook::active(&format!("wh_{i}"), "https://h.example.com", "2026-01-01T00:00:00Z", None))
            .collect()
    }

    /// `before=` pages back like `/v1/events` does (it used to be ignored: the first page again).
    #[test]
    fn the_before_cursor_pages_back() {
        let list = Webhooks::new(&forty_five());
        let page = |query: &str| serde_json::from_str::<serde_json::Value>(&list.page(query).unwrap()).unwrap();
        let ids = |page: &serde_json::Value| -> Vec<String> {
            page["entries"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
        };
        let first = page("");
        assert!(first["metadata"]["before"].is_null());
        let second = page(&format!("after={}", first["metadata"]["after"].as_str().unwrap()));
        let third = page(&format!("after={}", second["metadata"]["after"].as_str().unwrap()));
        assert_eq!(ids(&third).len(), 5);
        let back = page(&format!("before={}", third["metadata"]["before"].as_str().unwrap()));
        assert_eq!(ids(&back), ids(&second));
        let back = page(&format!("before={}", back["metadata"]["before"].as_str().unwrap()));
        assert_eq!(ids(&back), ids(&first));
        assert!(back["metadata"]["before"].is_null());
        let short = page(&format!("limit=3&before={}", second["metadata"]["before"].as_str().unwrap()));
        assert_eq!(ids(&short), ["wh_17", "wh_18", "wh_19"]);
        let cursor = first["metadata"]["after"].as_str().unwrap();
        assert!(list.page(&format!("after={cursor}&before={cursor}")).is_err());
    }

    #[test]
    fn pages_follow_the_after_cursor_to_the_end() {
        let list = Webhooks::new(&forty_five());
        let mut ids = Vec::new();
        let mut query = String::new();
        let mut pages = 0;
        loop {
            let page: serde_json::Value = serde_json::from_str(&list.page(&query).unwrap()).unwrap();
            pages += 1;
            for e in page["entries"].as_array().unwrap() {
                ids.push(e["id"].as_str().unwrap().to_owned());
                assert!(e.get("secret").is_none());
            }
            match page["metadata"]["after"].as_str() {
                Some(after) => query = format!("after={after}"),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(ids, (0..45).map(|i| format!("wh_{i}")).collect::<Vec<_>>());
        assert!(list.one("wh_44").unwrap().contains(r#""created_at":"2026-01-01T00:00:00Z""#));
        assert!(list.one("wh_45").is_none());
        assert!(list.page("after=zz").is_err());
        assert!(list.page("before=zz").is_err());
        assert_eq!(
            Webhooks::new(&[]).page("").unwrap(),
            r#"{"entries":[],"metadata":{"after":null,"before":null,"limit":20}}"#
        );
    }
}
