//! From what the user typed to a validated configuration (the "high" stage).
//!
//! Precedence: flag > environment variable > config file (`--config FILE`) > default. clap applies
//! it, with the file's values as its defaults (`file.rs`); this module checks everything that needs
//! more than one value or the outside world (URLs, bounds between flags, required values).
//! Every later stage receives values that are already correct; anything wrong stops here with
//! exit status 2 and a message that names the flag and what to write instead.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::cli::{self, CreatedBefore, GlobalArgs, RunArgs, SelectArgs, SourceArgs};
use crate::deliver::Header;
use crate::deliver::retry::{Backoff, RetryPolicy};
use crate::deliver::signature::HexCase;
use crate::pacing::RateMode;
use crate::pacing::gate::Rate;
use crate::source::ApiQuery;

mod file;

pub use file::{ParseError, command, parse};

/// A usage or configuration error (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Which earlier outcomes count (`--fresh`, `--only-failed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Skip what was delivered; retry failed and pending (the default).
    Skip,
    /// Ignore earlier outcomes.
    Fresh,
    /// Send only what failed before.
    OnlyFailed,
}

#[derive(Debug)]
pub enum SourceConfig {
    Api { base: Url, token: SecretString, query: ApiQuery },
    File(PathBuf),
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Selection {
    pub created_before: Option<jiff::Timestamp>,
    pub created_after: Option<jiff::Timestamp>,
    pub limit: Option<u64>,
}

/// Everything `run` needs, validated.
#[derive(Debug)]
pub struct RunConfig {
    pub source: SourceConfig,
    pub select: Selection,
    pub webhook_url: Url,
    pub event_type: String,
    pub signing_secret: Option<SecretString>,
    /// Where `signing_secret` came from, for messages (`--signing-secret`, the variable, the file).
    pub signing_secret_from: Option<&'static str>,
    /// `--signature-hex`.
    pub signature_hex: HexCase,
    /// `--webhook-id`: the SavvyCal webhook to take defaults from, instead of looking
    /// `webhook_url` up (with the API source). Set from the lookup when it finds one.
    pub webhook_id: Option<String>,
    /// The envelope `version`, when the webhook names one.
    pub version: Option<String>,
    /// `--created-before none`: no upper bound, and the webhook's `created_at` does not become one.
    pub created_before_none: bool,
    /// `--user-agent`: SavvyCal's unless set.
    pub user_agent: http::HeaderValue,
    pub headers: Vec<Header>,
    pub timeout: Duration,
    pub concurrency: usize,
    pub rate: RateMode,
    /// `--max-rate`: the ceiling of `--rate auto`.
    pub max_rate: Rate,
    pub burst: u32,
    pub retry: RetryPolicy,
    /// `--give-up-after`; `None` never gives up.
    pub give_up_after: Option<Duration>,
    pub ledger: PathBuf,
    pub resume: Resume,
    pub dry_run: bool,
    pub json: bool,
    /// Show the progress bar and the human summary.
    pub quiet: bool,
}

impl RunConfig {
    /// A run from `source` to `webhook_url` with every other setting at its default: the defaults
    /// of the flags' one definition in `cli/mod.rs`, the environment left out.
    pub fn new(source: SourceConfig, webhook_url: Url) -> RunConfig {
        use clap::FromArgMatches;
        let no_env = |cmd: clap::Command| {
            let ids: Vec<String> =
                cmd.get_arguments().filter(|a| a.get_env().is_some()).map(|a| a.get_id().to_string()).collect();
            ids.iter().fold(cmd, |cmd, id| cmd.mut_arg(id, |a| a.env(None)))
        };
        let cmd = command().mut_subcommand("run", no_env);
        let defaults = cmd
            .try_get_matches_from(["savvy-replay", "run"])
            .and_then(|m| cli::Cli::from_arg_matches(&m))
            .ok()
            .and_then(|c| match c.command {
                cli::Command::Run(args) => settings(&args, source, webhook_url, false).ok(),
                _ => None,
            });
        // The built-in defaults are valid by construction (tested below); nothing from outside.
        defaults.expect("the flags' built-in defaults make a valid run")
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => {
            let d = d.to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost")
        }
        None => false,
    }
}

fn parse_http_url(flag: &str, s: &str) -> Result<Url, ConfigError> {
    // The example fits the flag: the API's base is not a webhook.
    let example = if flag == "--api-base" { "https://api.savvycal.com" } else { "https://hooks.example.com/savvycal" };
    let url = Url::parse(s.trim()).map_err(|e| {
        let s = without_userinfo(s);
        ConfigError(format!("{flag}: `{s}` is not a URL ({e}); write it like {example}"))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        let s = without_userinfo(s);
        return err(format!("{flag}: `{s}` is not an http(s) URL; write it like {example}"));
    }
    Ok(url)
}

/// A URL as typed, for an error message, with any `user:password@` masked: it may hold a secret,
/// and the text may not parse, so this works on the text.
fn without_userinfo(s: &str) -> String {
    let start = s.find("://").map_or(0, |i| i + 3);
    let rest = &s[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}***{}", &s[..start], &rest[at..]),
        None => s.to_owned(),
    }
}

/// The API base URL; plain http only to loopback, so the token never travels in clear text.
/// A user name or password in it is refused: the token goes only in the `Authorization` header,
/// and a credential in the URL would be printed with it and sent as Basic auth instead.
pub fn api_base(s: &str) -> Result<Url, ConfigError> {
    let url = parse_http_url("--api-base", s)?;
    if !url.username().is_empty() || url.password().is_some() {
        return err(format!(
            "--api-base: a user name or password in the URL is refused; pass the token with --token (or SAVVYCAL_TOKEN) \
             and give --api-base without it, like {}://{}",
            url.scheme(),
            &url[url::Position::BeforeHost..url::Position::AfterPort]
        ));
    }
    if url.scheme() == "http" && !is_loopback(&url) {
        return err(format!(
            "--api-base: refusing to send the token over plain http to {}; use https:// (plain http is allowed only for loopback hosts)",
            url.host_str().unwrap_or_default()
        ));
    }
    Ok(url)
}

pub fn source_config(args: &SourceArgs) -> Result<SourceConfig, ConfigError> {
    if let Some(path) = &args.input {
        return Ok(SourceConfig::File(path.clone()));
    }
    let token = match &args.token {
        Some(t) if !t.trim().is_empty() => SecretString::from(t.trim().to_owned()),
        _ => {
            return err(
                "--token is required to read from the SavvyCal API: pass --token, set SAVVYCAL_TOKEN, or put token in the \
                 config file (or read events from a file with --input FILE)",
            );
        }
    };
    let query =
        ApiQuery { period: args.period, state: args.state, attendance: args.attendance, page_size: args.page_size };
    Ok(SourceConfig::Api { base: api_base(&args.api_base)?, token, query })
}

pub fn selection(args: &SelectArgs) -> Result<Selection, ConfigError> {
    let sel = Selection {
        created_before: match args.created_before {
            Some(CreatedBefore::At(t)) => Some(t),
            _ => None,
        },
        created_after: args.created_after,
        limit: args.limit,
    };
    if let (Some(b), Some(a)) = (sel.created_before, sel.created_after)
        && b <= a
    {
        return err(format!(
            "--created-before ({b}) is not after --created-after ({a}): no event could match; check the two times"
        ));
    }
    Ok(sel)
}

pub fn run_config(args: &RunArgs, global: &GlobalArgs) -> Result<RunConfig, ConfigError> {
    let source = source_config(&args.source)?;
    let Some(webhook) = &args.webhook_url else {
        return err(
            "--webhook-url is required: the URL to POST events to (or set SAVVY_REPLAY_WEBHOOK_URL, or webhook_url in the config file)",
        );
    };
    let webhook_url = parse_http_url("--webhook-url", webhook)?;
    settings(args, source, webhook_url, global.quiet)
}

/// Everything but the source and the webhook, checked.
fn settings(args: &RunArgs, source: SourceConfig, webhook_url: Url, quiet: bool) -> Result<RunConfig, ConfigError> {
    if args.event_type.trim().is_empty() {
        return err("--event-type is empty; the default is event.created");
    }
    let webhook_id = args.webhook_id.as_ref().map(|id| id.trim().to_owned());
    if let Some(id) = &webhook_id
        && !crate::source::webhooks::valid_id(id)
    {
        return err(format!(
            "--webhook-id `{id}` is not a SavvyCal webhook id; they look like wh_01ED74HMFGVZ92YVCWTD8Y8H6X"
        ));
    }
    for h in &args.headers {
        if matches!(h.name.as_str(), "content-length" | "host" | "transfer-encoding") {
            return err(format!("-H {}: this header is set by the HTTP client and cannot be overridden", h.name));
        }
    }
    let backoff = Backoff { initial: args.retry_initial, max: args.retry_max };
    if backoff.initial > backoff.max {
        return err(format!(
            "--retry-initial ({}) is longer than --retry-max ({}); make the first delay the shorter one",
            humantime::format_duration(backoff.initial),
            humantime::format_duration(backoff.max)
        ));
    }
    let resume = match (args.fresh, args.only_failed) {
        (true, true) => return err("--fresh and --only-failed contradict each other; pick one"),
        (true, false) => Resume::Fresh,
        (false, true) => Resume::OnlyFailed,
        (false, false) => Resume::Skip,
    };
    Ok(RunConfig {
        source,
        select: selection(&args.select)?,
        webhook_url,
        event_type: args.event_type.clone(),
        signing_secret: args.signing_secret.clone().filter(|s| !s.is_empty()).map(SecretString::from),
        signing_secret_from: args.signing_secret_from,
        signature_hex: args.signature_hex,
        webhook_id,
        version: None,
        created_before_none: matches!(args.select.created_before, Some(CreatedBefore::None)),
        user_agent: args.user_agent.clone(),
        headers: args.headers.clone(),
        timeout: args.timeout,
        concurrency: args.concurrency,
        rate: args.rate,
        max_rate: args.max_rate,
        burst: args.burst,
        retry: RetryPolicy { backoff, max_retries: args.max_retries },
        give_up_after: (!args.give_up_after.is_zero()).then_some(args.give_up_after),
        ledger: args.ledger.clone(),
        resume,
        dry_run: args.dry_run,
        json: args.json,
        quiet,
    })
}
#[cfg(test)]
mod tests;
