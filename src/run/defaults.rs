//! The run's defaults from the SavvyCal webhook it stands in for (docs/GUIDE.md, "Where the
//! defaults come from").
//!
//! Between the source and the pipeline: with the API source, find the webhook
//! ([`crate::source::webhooks`]) and fill in what the user did not set — the
//! `x-savvycal-webhook-id`, the envelope version, the signing secret and `--created-before` — so
//! `run --token … --webhook-url …` alone replays exactly what the webhook missed. Kept out of
//! the pipeline so the lookup is one step with one result: the line that tells the user.

use crate::output::print::errln;

use crate::config::RunConfig;
use crate::source::Source;
use crate::source::webhooks::{self, Lookup, WebhookError};

/// Look the webhook up (API source only) and apply its defaults to `cfg`. Returns the one line
/// that says what was found and taken, for the dry run and the summary.
pub async fn apply(cfg: &mut RunConfig, source: &Source) -> Result<Option<String>, WebhookError> {
    let Source::Api(api) = source else {
        // A file has no API to ask; an id the user named is still the header SavvyCal would send.
        return Ok(cfg.webhook_id.as_ref().map(|id| {
            format!(
                "Webhook {id} (from --webhook-id) is not looked up: --input reads no API.\n  only its id header is sent; \
                 give --signing-secret and --created-before yourself."
            )
        }));
    };
    let lookup = match &cfg.webhook_id {
        Some(id) => Lookup::ById(id),
        None => Lookup::ByUrl(&cfg.webhook_url),
    };
    let found = webhooks::find(api.api(), lookup).await?;
    let created_before_given = cfg.select.created_before.is_some() || cfg.created_before_none;
    let secret_from = cfg.signing_secret.as_ref().map(|_| cfg.signing_secret_from.unwrap_or("--signing-secret"));
    let taken = webhooks::take(found, &cfg.webhook_url, secret_from, created_before_given);
    if let Some(why) = taken.no_bound {
        return Err(WebhookError::NoBound { id: taken.webhook_id.unwrap_or_default(), why });
    }
    if let Some(w) = taken.warning.as_ref().filter(|_| !cfg.quiet) {
        errln!("warning: {w}");
    }
    cfg.webhook_id = taken.webhook_id;
    if taken.version.is_some() {
        cfg.version = taken.version;
    }
    if taken.secret.is_some() {
        cfg.signing_secret = taken.secret;
    }
    if taken.created_before.is_some() {
        cfg.select.created_before = taken.created_before;
    }
    Ok(Some(taken.line))
}
