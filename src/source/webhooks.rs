//! Which SavvyCal webhook this replay stands in for, and what the run takes from it.
//!
//! A replay should look like the webhook's own deliveries, and the account knows that webhook:
//! `GET /v1/webhooks` lists it with its id (the `x-savvycal-webhook-id` header), its payload
//! `version`, its signing secret, and its `created_at` — the moment SavvyCal started delivering to
//! it, so everything created before is what is missing. With a token the run looks
//! `--webhook-url` up in that list (every page), or fetches `--webhook-id` directly, so the usual
//! call needs neither a secret nor a date. When the account has no such webhook, or the API has no
//! webhooks endpoint, the run goes on without those defaults and says so once.
//!
//! The secret is held as a [`SecretString`] from the moment it is parsed: never printed, logged,
//! shown by `Debug`, or stored in the ledger. Parse errors are reported by position only, because
//! serde's messages can quote the offending value.

use jiff::Timestamp;
use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use super::paging::PagingGuard;
use super::{ApiClient, SourceError};
use crate::deliver::display_url;

/// One webhook of the account, as far as a replay uses it.
#[derive(Debug, Deserialize)]
pub struct Webhook {
    pub id: String,
    #[serde(default)]
    pub url: String,
    /// `active`, `disabled` or `deleted`.
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub version: Option<String>,
    #[serde(default)]
    pub created_at: Option<String>,
    /// Returned by SavvyCal's current API; older answers may leave it out.
    #[serde(default)]
    pub secret: Option<SecretString>,
}

#[derive(Deserialize)]
struct Page {
    entries: Vec<Webhook>,
    #[serde(default)]
    metadata: Metadata,
}

#[derive(Default, Deserialize)]
struct Metadata {
    #[serde(default)]
    after: Option<String>,
}

/// How to find the webhook.
#[derive(Debug, Clone, Copy)]
pub enum Lookup<'a> {
    /// Among the account's webhooks, the one whose URL is `--webhook-url`.
    ByUrl(&'a Url),
    /// `--webhook-id wh_…`, whatever its URL.
    ById(&'a str),
}

/// What the lookup came to.
#[derive(Debug)]
pub enum Found {
    /// By URL: the webhook, and how many others had the same URL.
    ByUrl {
        webhook: Webhook,
        others: usize,
    },
    ById {
        webhook: Webhook,
    },
    /// No webhook of the account has this URL (`checked` webhooks looked at).
    NoMatch {
        checked: usize,
    },
    /// The API answered 404 for `/v1/webhooks`: it has no such endpoint.
    NoEndpoint,
}

/// The lookup failed in a way the run cannot simply go on from.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(
        "--webhook-id {id}: the SavvyCal API has no webhook with this id (HTTP 404); check the id \
         (it looks like wh_…), or leave --webhook-id out to look the webhook up by --webhook-url"
    )]
    UnknownId { id: String },
    #[error("looking up the webhook: {0}")]
    Source(#[from] SourceError),
    #[error("the SavvyCal API sent {what} that cannot be read as webhooks ({detail})")]
    Malformed { what: String, detail: String },
    /// The webhook was found but its `created_at` gives no bound, and the user gave none: going
    /// on would re-send every booking SavvyCal already delivered to it.
    #[error(
        "webhook {id}: {why}, so which bookings SavvyCal already delivered to it is unknown; nothing was sent. \
         Give the bound yourself: --created-before <RFC 3339 timestamp> (e.g. 2025-10-31T14:22:12Z) replays only \
         the bookings made before it, --created-before none replays them all"
    )]
    NoBound { id: String, why: String },
}

/// Find the webhook: page through `/v1/webhooks` for the URL, or fetch `/v1/webhooks/:id`.
pub async fn find(api: &ApiClient, lookup: Lookup<'_>) -> Result<Found, WebhookError> {
    match lookup {
        Lookup::ById(id) => {
            let what = format!("/v1/webhooks/{id}");
            let body = match api.get_json(&format!("v1/webhooks/{id}"), &[], &what).await {
                Err(SourceError::Http { status: 404, .. }) => {
                    return Err(WebhookError::UnknownId { id: id.to_owned() });
                }
                other => other?,
            };
            let webhook = parse::<Webhook>(&body, &what)?;
            Ok(Found::ById { webhook })
        }
        Lookup::ByUrl(url) => {
            let mut matches: Vec<Webhook> = Vec::new();
            let mut checked = 0usize;
            let mut after: Option<String> = None;
            let mut paging = PagingGuard::new("/v1/webhooks");
            for page_no in 1u64.. {
                let what = format!("page {page_no} of /v1/webhooks");
                let query: Vec<(&str, &str)> = after.iter().map(|a| ("after", a.as_str())).collect();
                let body = match api.get_json("v1/webhooks", &query, &what).await {
                    Err(SourceError::Http { status: 404, .. }) if page_no == 1 => return Ok(Found::NoEndpoint),
                    other => other?,
                };
                let page = parse::<Page>(&body, &what)?;
                let empty = page.entries.is_empty();
                checked += page.entries.len();
                matches.extend(page.entries.into_iter().filter(|w| same_url(url, &w.url)));
                match page.metadata.after {
                    None => break,
                    Some(next) => {
                        paging.check(page_no, &next, empty)?;
                        after = Some(next);
                    }
                }
            }
            let others = matches.len().saturating_sub(1);
            match pick(matches) {
                Some(webhook) => Ok(Found::ByUrl { webhook, others }),
                None => Ok(Found::NoMatch { checked }),
            }
        }
    }
}

fn parse<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T, WebhookError> {
    serde_json::from_slice(body).map_err(|e| WebhookError::Malformed {
        what: what.to_owned(),
        // Position and kind only: serde's message may quote a value, and a value may be a secret.
        detail: format!("{:?} error at line {} column {}", e.classify(), e.line(), e.column()),
    })
}

/// Of several webhooks with the same URL, the one the receiver has been getting events from:
/// active before disabled before deleted, then the oldest (it has delivered since it was made).
fn pick(mut matches: Vec<Webhook>) -> Option<Webhook> {
    let rank = |w: &Webhook| match w.state.as_str() {
        "active" => 0,
        "disabled" => 1,
        "deleted" => 3,
        _ => 2,
    };
    let created = |w: &Webhook| w.created_at.as_deref().and_then(crate::event::parse_rfc3339);
    matches.sort_by_key(|w| (rank(w), created(w).is_none(), created(w)));
    matches.into_iter().next()
}

/// Whether a webhook's URL is `--webhook-url`: the same target ([`crate::ledger::target_url`]).
pub fn same_url(ours: &Url, theirs: &str) -> bool {
    Url::parse(theirs.trim()).is_ok_and(|theirs| crate::ledger::target_url::same(ours, &theirs))
}

/// What the run takes from the webhook, given what the user set themselves, and the message that
/// says so (dry run and summary).
#[derive(Debug, Default)]
pub struct Taken {
    pub webhook_id: Option<String>,
    pub version: Option<String>,
    pub secret: Option<SecretString>,
    pub created_before: Option<Timestamp>,
    /// The webhook's `created_at` is missing or unreadable and `--created-before` was not given:
    /// what is wrong with it, in words.
    pub no_bound: Option<String>,
    /// The webhook is disabled or deleted: the fact, then its detail on an indented line.
    pub warning: Option<String>,
    /// The fact on its first line (short enough for 80 columns), detail on indented lines below.
    pub line: String,
}

/// Decide what to take from `found`: the secret only when the user gave none (`secret_from` names
/// where theirs came from: `--signing-secret`, `SAVVYCAL_WEBHOOK_SECRET`, the config file), the
/// date only when `--created-before` was not given (`none` counts as given).
pub fn take(found: Found, webhook_url: &Url, secret_from: Option<&str>, created_before_given: bool) -> Taken {
    let without = |fact: String, detail: Option<String>| {
        let mut missing = vec!["no x-savvycal-webhook-id"];
        if !created_before_given {
            missing.push("no default --created-before");
        }
        if secret_from.is_none() {
            missing.push("unsigned unless --signing-secret or SAVVYCAL_WEBHOOK_SECRET is given");
        }
        let mut line = fact;
        if let Some(d) = detail {
            line.push_str(&format!("\n  {d}"));
        }
        line.push_str(&format!("\n  replaying without the webhook's defaults: {}.", missing.join(", ")));
        Taken { line, ..Taken::default() }
    };
    let (webhook, how, note) = match found {
        Found::NoEndpoint => {
            return without("The SavvyCal API has no /v1/webhooks (HTTP 404).".to_owned(), None);
        }
        Found::NoMatch { checked } => {
            return without(
                format!("No webhook of this SavvyCal account ({checked} checked) has the URL of --webhook-url."),
                Some(format!(
                    "--webhook-url is {}; if the webhook's URL differs, name it with --webhook-id wh_…",
                    display_url(webhook_url)
                )),
            );
        }
        Found::ByUrl { webhook, others: 0 } => (webhook, "matches --webhook-url", None),
        Found::ByUrl { webhook, others } => (
            webhook,
            "matches --webhook-url",
            Some(format!("{others} more have this URL; pick another with --webhook-id")),
        ),
        Found::ById { webhook } if same_url(webhook_url, &webhook.url) => (webhook, "named by --webhook-id", None),
        Found::ById { webhook } => {
            let url = Url::parse(&webhook.url).map_or_else(|_| webhook.url.clone(), |u| display_url(&u));
            (webhook, "named by --webhook-id", Some(format!("its URL is {url}; replaying into --webhook-url as it")))
        }
    };
    let version = webhook.version.clone().filter(|v| !v.trim().is_empty());
    let created = webhook.created_at.as_deref().and_then(crate::event::parse_rfc3339);
    let mut from_it = vec!["x-savvycal-webhook-id".to_owned()];
    if let Some(v) = &version {
        from_it.push(format!("version {v}"));
    }
    // Said on a line of its own when the requests go unsigned: the one thing to act on.
    let mut unsigned = None;
    let secret = match (secret_from, webhook.secret) {
        (Some(from), _) => {
            from_it.push(format!("not its secret ({from} is used)"));
            None
        }
        (None, Some(s)) => {
            from_it.push("its signing secret (masked)".to_owned());
            Some(s)
        }
        (None, None) => {
            unsigned = Some(
                "no signing secret: the API returned none, so requests go unsigned unless --signing-secret or \
                 SAVVYCAL_WEBHOOK_SECRET is given",
            );
            None
        }
    };
    let mut no_bound = None;
    let created_before = match (created_before_given, created) {
        (true, _) => None,
        (false, Some(t)) => {
            from_it.push(format!("--created-before {t} (its created_at)"));
            Some(t)
        }
        (false, None) => {
            no_bound = Some(match webhook.created_at.as_deref() {
                None => "it has no created_at".to_owned(),
                Some(raw) => {
                    let shown: String = raw.chars().filter(|c| !c.is_control()).take(60).collect();
                    format!("its created_at `{shown}` is not an RFC 3339 timestamp")
                }
            });
            None
        }
    };
    let warning = matches!(webhook.state.as_str(), "disabled" | "deleted").then(|| {
        format!(
            "webhook {} is {} in SavvyCal\n  it gets no new events there, but the replay goes to --webhook-url anyway",
            webhook.id, webhook.state
        )
    });
    let state = if webhook.state.is_empty() { "state unknown" } else { webhook.state.as_str() };
    let mut line = format!("Webhook {} {how}.", webhook.id);
    if warning.is_some() {
        line.push_str(&format!("\n  warning: it is {state} in SavvyCal"));
    }
    line.push_str(&format!(
        "\n  {state}, created {}; from it: {}.",
        webhook.created_at.as_deref().unwrap_or("at an unknown time"),
        from_it.join(", ")
    ));
    for detail in note.iter().map(String::as_str).chain(unsigned) {
        line.push_str(&format!("\n  {detail}"));
    }
    Taken { webhook_id: Some(webhook.id), version, secret, created_before, no_bound, warning, line }
}

/// Whether `s` can be a webhook id: `wh_` and letters, digits or `_` (it goes into a URL path).
pub fn valid_id(s: &str) -> bool {
    s.len() > 3 && s.starts_with("wh_") && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::target_url::spellings::{OTHER, PLAIN, SAME, url};
    use secrecy::ExposeSecret;

    #[test]
    fn urls_match_as_a_user_would_expect() {
        let ours = url("https://Hooks.Example.com/savvycal");
        // The lookup compares what SavvyCal stores, trimmed, and credentials aside.
        for same in SAME.into_iter().chain([PLAIN, " https://user:pw@hooks.example.com/savvycal#x "]) {
            assert!(same_url(&ours, same), "{same}");
        }
        for other in OTHER.into_iter().chain(["not a url", ""]) {
            assert!(!same_url(&ours, other), "{other}");
        }
        assert!(same_url(&url("https://h.example.com"), "https://h.example.com/"));
    }

    fn hook(id: &str, state: &str, created: &str) -> Webhook {
        Webhook {
            id: id.into(),
            url: "https://h.example.com/x".into(),
            state: state.into(),
            version: Some("2020-11-18".into()),
            created_at: Some(created.into()),
            secret: Some(SecretString::from(format!("secret_of_{id}"))),
        }
    }

    #[test]
    fn of_several_matches_the_active_oldest_is_picked() {
        let picked = pick(vec![
            hook("wh_deleted", "deleted", "2020-01-01T00:00:00Z"),
            hook("wh_new", "active", "2026-01-01T00:00:00Z"),
            hook("wh_old", "active", "2025-01-01T00:00:00Z"),
            hook("wh_off", "disabled", "2019-01-01T00:00:00Z"),
        ]);
        assert_eq!(picked.unwrap().id, "wh_old");
        assert!(pick(Vec::new()).is_none());
    }

    #[test]
    fn the_webhook_gives_what_the_user_did_not_set() {
        let u = url("https://h.example.com/x");
        let t =
            take(Found::ByUrl { webhook: hook("wh_A", "active", "2026-03-01T09:00:00Z"), others: 0 }, &u, None, false);
        assert_eq!(t.webhook_id.as_deref(), Some("wh_A"));
        assert_eq!(t.version.as_deref(), Some("2020-11-18"));
        assert_eq!(t.secret.as_ref().unwrap().expose_secret(), "secret_of_wh_A");
        assert_eq!(t.created_before.unwrap().to_string(), "2026-03-01T09:00:00Z");
        assert!(t.warning.is_none());
        let mut lines = t.line.lines();
        assert_eq!(lines.next(), Some("Webhook wh_A matches --webhook-url."), "{}", t.line);
        assert!(lines.all(|l| l.starts_with("  ")), "detail is indented: {}", t.line);
        assert!(t.line.contains("active, created 2026-03-01T09:00:00Z"), "{}", t.line);
        assert!(t.line.contains("signing secret (masked)") && !t.line.contains("secret_of"), "{}", t.line);
        assert!(!format!("{t:?}").contains("secret_of"));

        let t = take(
            Found::ById { webhook: hook("wh_B", "disabled", "2026-03-01T09:00:00Z") },
            &url("https://s.example.com/"),
            Some("SAVVYCAL_WEBHOOK_SECRET"),
            true,
        );
        assert!(t.secret.is_none() && t.created_before.is_none());
        assert!(t.warning.unwrap().starts_with("webhook wh_B is disabled in SavvyCal\n  "));
        assert!(t.line.contains("warning: it is disabled") && t.line.contains("its URL is https://h.example.com/x"));
        // Where the user's secret came from, as they gave it.
        assert!(t.line.contains("not its secret (SAVVYCAL_WEBHOOK_SECRET is used)"), "{}", t.line);

        // An unreadable created_at is no bound: the caller stops unless --created-before is given.
        let t =
            take(Found::ByUrl { webhook: hook("wh_C", "active", "2025-10-31 14:22:12"), others: 0 }, &u, None, false);
        assert!(t.created_before.is_none());
        assert_eq!(t.no_bound.as_deref(), Some("its created_at `2025-10-31 14:22:12` is not an RFC 3339 timestamp"));
        let t =
            take(Found::ByUrl { webhook: hook("wh_C", "active", "2025-10-31 14:22:12"), others: 0 }, &u, None, true);
        assert!(t.no_bound.is_none() && t.created_before.is_none());

        let mut no_secret = hook("wh_C", "active", "2026-03-01T09:00:00Z");
        no_secret.secret = None;
        let t = take(Found::ByUrl { webhook: no_secret, others: 0 }, &u, None, true);
        assert!(t.line.lines().any(|l| l.starts_with("  no signing secret: ")), "{}", t.line);

        let t = take(Found::NoEndpoint, &u, Some("--signing-secret"), true);
        assert!(t.webhook_id.is_none() && t.secret.is_none());
        assert_eq!(t.line.lines().next(), Some("The SavvyCal API has no /v1/webhooks (HTTP 404)."));
        assert!(!t.line.contains("--created-before") && !t.line.contains("unsigned"), "{}", t.line);
    }

    /// The webhook's `created_at` with twelve fractional digits (valid RFC 3339) still becomes
    /// the default --created-before, to the nanosecond.
    #[test]
    fn a_webhook_created_at_with_twelve_fractional_digits_is_read() {
        let u = url("https://h.example.com/x");
        let webhook = hook("wh_A", "active", "2026-03-01T09:00:00.123456789012Z");
        let t = take(Found::ByUrl { webhook, others: 0 }, &u, None, false);
        assert_eq!(t.created_before.unwrap().to_string(), "2026-03-01T09:00:00.123456789Z");
    }

    #[test]
    fn ids_are_checked_before_they_go_into_a_path() {
        assert!(valid_id("wh_01ED74HMFGVZ92YVCWTD8Y8H6X"));
        for bad in ["", "wh_", "01ED74", "wh_../x", "wh_a/b", "wh_a?b"] {
            assert!(!valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn parse_errors_never_quote_values() {
        let body = br#"{"entries":[{"id":"wh_1","secret":12345678901234}],"metadata":{"after":null}}"#;
        let e = parse::<Page>(body, "page 1").err().unwrap().to_string();
        assert!(!e.contains("12345678901234"), "{e}");
        assert!(e.contains("line 1"), "{e}");
    }
}
