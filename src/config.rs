//! From what the user typed to a validated configuration (the "high" stage).
//!
//! Precedence: flag > environment variable > config file (`--config FILE`) > default. clap already
//! resolves flag > env; this module fills the gaps from the file and then the defaults, and checks
//! everything that needs more than one value or the outside world (URLs, bounds between flags).
//! Every later stage receives values that are already correct; anything wrong stops here with
//! exit status 2 and a message that names the flag and what to write instead.

use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::cli::{self, CreatedBefore, GlobalArgs, RunArgs, SelectArgs, SourceArgs};
use crate::deliver::Header;
use crate::pacing::RateSetting;
use crate::rate::Rate;
use crate::retry::RetryPolicy;
use crate::signature::HexCase;
use crate::source::ApiQuery;
use crate::source::api::{Attendance, Period, State};

pub const DEFAULT_API_BASE: &str = "https://api.savvycal.com";
pub const DEFAULT_LEDGER: &str = ".savvy-replay/ledger.db";
pub const DEFAULT_EVENT_TYPE: &str = "event.created";

/// A usage or configuration error (exit status 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// Every key the config file may hold: the long flags with `-` → `_`.
const KNOWN_KEYS: &[&str] = &[
    "token",
    "api_base",
    "period",
    "state",
    "attendance",
    "page_size",
    "input",
    "created_before",
    "created_after",
    "limit",
    "webhook_url",
    "event_type",
    "signing_secret",
    "webhook_id",
    "signature_hex",
    "header",
    "timeout",
    "concurrency",
    "rate",
    "max_rate",
    "burst",
    "max_retries",
    "retry_initial",
    "retry_max",
    "give_up_after",
    "ledger",
    "fresh",
    "only_failed",
    "dry_run",
    "json",
    "quiet",
    "verbose",
];

/// The `--config` file: a TOML table whose values go through the same parsers as the flags.
#[derive(Debug, Default)]
pub struct FileConfig {
    path: PathBuf,
    table: toml::Table,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read the config file {}: {e}", path.display())))?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            ConfigError(format!("the config file {} is not valid TOML: {}", path.display(), e.message()))
        })?;
        for key in table.keys() {
            if !KNOWN_KEYS.contains(&key.as_str()) {
                let hint = KNOWN_KEYS
                    .iter()
                    .find(|k| k.replace('_', "") == key.replace(['-', '_'], ""))
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                return err(format!(
                    "the config file {} has an unknown key `{key}`{hint}; keys are the long flags with `-` written `_`, \
                     see config/savvy-replay.example.toml",
                    path.display()
                ));
            }
        }
        Ok(FileConfig { path: path.to_owned(), table })
    }

    /// The optional file named by `--config`; an empty one when none was given.
    pub fn from_global(global: &GlobalArgs) -> Result<FileConfig, ConfigError> {
        match &global.config {
            Some(p) => FileConfig::load(p),
            None => Ok(FileConfig::default()),
        }
    }

    fn scalar(&self, key: &str) -> Result<Option<String>, ConfigError> {
        let Some(v) = self.table.get(key) else { return Ok(None) };
        let s = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            _ => {
                return err(format!(
                    "the config file {}: `{key}` must be a single value, not a {}",
                    self.path.display(),
                    v.type_str()
                ));
            }
        };
        Ok(Some(s))
    }

    /// `key` parsed with the flag's own parser.
    pub fn get<T>(&self, key: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, ConfigError> {
        match self.scalar(key)? {
            None => Ok(None),
            Some(s) => parse(&s)
                .map(Some)
                .map_err(|e| ConfigError(format!("the config file {}: `{key}`: {e}", self.path.display()))),
        }
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, ConfigError> {
        match self.table.get(key) {
            None => Ok(false),
            Some(toml::Value::Boolean(b)) => Ok(*b),
            Some(_) => err(format!("the config file {}: `{key}` must be true or false", self.path.display())),
        }
    }

    fn get_list(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        match self.table.get(key) {
            None => Ok(Vec::new()),
            Some(toml::Value::String(s)) => Ok(vec![s.clone()]),
            Some(toml::Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    _ => err(format!("the config file {}: `{key}` must be a list of strings", self.path.display())),
                })
                .collect(),
            Some(_) => err(format!("the config file {}: `{key}` must be a list of strings", self.path.display())),
        }
    }
}

fn parse_string(s: &str) -> Result<String, String> {
    Ok(s.to_owned())
}

fn parse_u64(s: &str) -> Result<u64, String> {
    s.trim().parse().map_err(|_| format!("`{s}` is not a whole number"))
}

fn parse_u32(s: &str) -> Result<u32, String> {
    s.trim().parse().map_err(|_| format!("`{s}` is not a whole number"))
}

fn parse_path(s: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(s))
}

fn parse_enum<T: clap::ValueEnum>(s: &str) -> Result<T, String> {
    T::from_str(s.trim(), true).map_err(|_| {
        let names: Vec<String> =
            T::value_variants().iter().filter_map(|v| v.to_possible_value()).map(|p| p.get_name().to_owned()).collect();
        format!("`{s}` is not one of {}", names.join(", "))
    })
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
    /// `--signature-hex`.
    pub signature_hex: HexCase,
    /// `--webhook-id`: the SavvyCal webhook to take defaults from, instead of looking
    /// `webhook_url` up (with the API source). Set from the lookup when it finds one.
    pub webhook_id: Option<String>,
    /// The envelope `version`, when the webhook names one.
    pub version: Option<String>,
    /// `--created-before none`: no upper bound, and the webhook's `created_at` does not become one.
    pub created_before_none: bool,
    pub headers: Vec<Header>,
    pub timeout: Duration,
    pub concurrency: usize,
    pub rate: RateSetting,
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
    /// A run from `source` to `webhook_url` with every other setting at its documented default —
    /// the one place those defaults live.
    pub fn new(source: SourceConfig, webhook_url: Url) -> RunConfig {
        RunConfig {
            source,
            select: Selection::default(),
            webhook_url,
            event_type: DEFAULT_EVENT_TYPE.to_owned(),
            signing_secret: None,
            signature_hex: HexCase::Upper,
            webhook_id: None,
            version: None,
            created_before_none: false,
            headers: Vec::new(),
            timeout: Duration::from_secs(30),
            concurrency: 8,
            rate: RateSetting::Fixed(Rate::per_second(20.0)),
            max_rate: Rate::UNLIMITED,
            burst: 1,
            retry: RetryPolicy::default(),
            give_up_after: Some(Duration::from_secs(600)),
            ledger: PathBuf::from(DEFAULT_LEDGER),
            resume: Resume::Skip,
            dry_run: false,
            json: false,
            quiet: false,
        }
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
    let url = Url::parse(s.trim()).map_err(|e| {
        let s = without_userinfo(s);
        ConfigError(format!("{flag}: `{s}` is not a URL ({e}); write it like https://hooks.example.com/savvycal"))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        let s = without_userinfo(s);
        return err(format!("{flag}: `{s}` is not an http(s) URL; write it like https://hooks.example.com/savvycal"));
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

pub fn source_config(args: &SourceArgs, file: &FileConfig) -> Result<SourceConfig, ConfigError> {
    let input = match &args.input {
        Some(p) => Some(p.clone()),
        None => file.get("input", parse_path)?,
    };
    if let Some(path) = input {
        return Ok(SourceConfig::File(path));
    }
    let token = match &args.token {
        Some(t) => Some(t.clone()),
        None => file.get("token", parse_string)?,
    };
    let token = match token {
        Some(t) if !t.trim().is_empty() => SecretString::from(t.trim().to_owned()),
        _ => {
            return err(
                "--token is required to read from the SavvyCal API: pass --token, set SAVVYCAL_TOKEN, or put token in the \
                 config file (or read events from a file with --input FILE)",
            );
        }
    };
    let base = match &args.api_base {
        Some(b) => b.clone(),
        None => file.get("api_base", parse_string)?.unwrap_or_else(|| DEFAULT_API_BASE.to_owned()),
    };
    let d = ApiQuery::default();
    let query = ApiQuery {
        period: or_file(args.period, file, "period", parse_enum::<Period>)?.unwrap_or(d.period),
        state: or_file(args.state, file, "state", parse_enum::<State>)?.unwrap_or(d.state),
        attendance: or_file(args.attendance, file, "attendance", parse_enum::<Attendance>)?.unwrap_or(d.attendance),
        page_size: or_file(args.page_size, file, "page_size", cli::parse_page_size)?.unwrap_or(d.page_size),
    };
    Ok(SourceConfig::Api { base: api_base(&base)?, token, query })
}

fn or_file<T>(
    flag: Option<T>,
    file: &FileConfig,
    key: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, ConfigError> {
    match flag {
        Some(v) => Ok(Some(v)),
        None => file.get(key, parse),
    }
}

pub fn selection(args: &SelectArgs, file: &FileConfig) -> Result<Selection, ConfigError> {
    let before = or_file(args.created_before, file, "created_before", cli::parse_created_before)?;
    let sel = Selection {
        created_before: match before {
            Some(CreatedBefore::At(t)) => Some(t),
            _ => None,
        },
        created_after: or_file(args.created_after, file, "created_after", cli::parse_timestamp)?,
        limit: or_file(args.limit, file, "limit", parse_u64)?,
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

pub fn ledger_path(flag: Option<&PathBuf>, file: &FileConfig) -> Result<PathBuf, ConfigError> {
    Ok(match flag {
        Some(p) => p.clone(),
        None => file.get("ledger", parse_path)?.unwrap_or_else(|| PathBuf::from(DEFAULT_LEDGER)),
    })
}

pub fn run_config(args: &RunArgs, global: &GlobalArgs, file: &FileConfig) -> Result<RunConfig, ConfigError> {
    let source = source_config(&args.source, file)?;
    let select = selection(&args.select, file)?;

    let webhook = match &args.webhook_url {
        Some(u) => Some(u.clone()),
        None => file.get("webhook_url", parse_string)?,
    };
    let Some(webhook) = webhook else {
        return err(
            "--webhook-url is required: the URL to POST events to (or set SAVVY_REPLAY_WEBHOOK_URL, or webhook_url in the config file)",
        );
    };
    let webhook_url = parse_http_url("--webhook-url", &webhook)?;

    let mut cfg = RunConfig::new(source, webhook_url);
    cfg.select = select;
    if let Some(t) = match &args.event_type {
        Some(t) => Some(t.clone()),
        None => file.get("event_type", parse_string)?,
    } {
        cfg.event_type = t;
    }
    if cfg.event_type.trim().is_empty() {
        return err("--event-type is empty; the default is event.created");
    }
    cfg.signing_secret = match &args.signing_secret {
        Some(s) => Some(s.clone()),
        None => file.get("signing_secret", parse_string)?,
    }
    .filter(|s| !s.is_empty())
    .map(SecretString::from);

    cfg.created_before_none = matches!(
        or_file(args.select.created_before, file, "created_before", cli::parse_created_before)?,
        Some(CreatedBefore::None)
    );
    cfg.signature_hex =
        or_file(args.signature_hex, file, "signature_hex", parse_enum::<HexCase>)?.unwrap_or(cfg.signature_hex);
    cfg.webhook_id = match &args.webhook_id {
        Some(id) => Some(id.clone()),
        None => file.get("webhook_id", parse_string)?,
    }
    .map(|id| id.trim().to_owned());
    if let Some(id) = &cfg.webhook_id
        && !crate::source::webhooks::valid_id(id)
    {
        return err(format!(
            "--webhook-id `{id}` is not a SavvyCal webhook id; they look like wh_01ED74HMFGVZ92YVCWTD8Y8H6X"
        ));
    }

    for h in file.get_list("header")? {
        cfg.headers.push(cli::parse_header(&h).map_err(|e| ConfigError(format!("the config file: `header`: {e}")))?);
    }
    // Flags come after the file's headers, so they win where a receiver reads the last value.
    cfg.headers.extend(args.headers.iter().cloned());
    for h in &cfg.headers {
        if matches!(h.name.as_str(), "content-length" | "host" | "transfer-encoding") {
            return err(format!("-H {}: this header is set by the HTTP client and cannot be overridden", h.name));
        }
    }

    cfg.timeout = or_file(args.timeout, file, "timeout", cli::parse_duration)?.unwrap_or(cfg.timeout);
    cfg.concurrency =
        or_file(args.concurrency, file, "concurrency", cli::parse_concurrency)?.unwrap_or(cfg.concurrency);
    cfg.rate = or_file(args.rate, file, "rate", cli::parse_rate_setting)?.unwrap_or(cfg.rate);
    cfg.max_rate = or_file(args.max_rate, file, "max_rate", cli::parse_rate)?.unwrap_or(cfg.max_rate);
    cfg.burst = or_file(args.burst, file, "burst", cli::parse_burst)?.unwrap_or(cfg.burst);
    let retry = &mut cfg.retry;
    retry.max_retries = or_file(args.max_retries, file, "max_retries", parse_u32)?.unwrap_or(retry.max_retries);
    let backoff = &mut retry.backoff;
    backoff.initial =
        or_file(args.retry_initial, file, "retry_initial", cli::parse_duration)?.unwrap_or(backoff.initial);
    backoff.max = or_file(args.retry_max, file, "retry_max", cli::parse_duration)?.unwrap_or(backoff.max);
    if backoff.initial > backoff.max {
        return err(format!(
            "--retry-initial ({}) is longer than --retry-max ({}); make the first delay the shorter one",
            humantime::format_duration(backoff.initial),
            humantime::format_duration(backoff.max)
        ));
    }
    if let Some(d) = or_file(args.give_up_after, file, "give_up_after", cli::parse_give_up_after)? {
        cfg.give_up_after = (!d.is_zero()).then_some(d);
    }
    let fresh = args.fresh || file.get_bool("fresh")?;
    let only_failed = args.only_failed || file.get_bool("only_failed")?;
    cfg.resume = match (fresh, only_failed) {
        (true, true) => return err("--fresh and --only-failed contradict each other; pick one"),
        (true, false) => Resume::Fresh,
        (false, true) => Resume::OnlyFailed,
        (false, false) => Resume::Skip,
    };
    cfg.ledger = ledger_path(args.ledger.as_ref(), file)?;
    cfg.dry_run = args.dry_run || file.get_bool("dry_run")?;
    cfg.json = args.json || file.get_bool("json")?;
    cfg.quiet = global.quiet || file.get_bool("quiet")?;
    Ok(cfg)
}

/// `-v` from the flag, or `verbose = N` in the file.
pub fn verbosity(global: &GlobalArgs, file: &FileConfig) -> Result<u8, ConfigError> {
    if global.verbose > 0 {
        return Ok(global.verbose);
    }
    Ok(file.get("verbose", |s| s.trim().parse::<u8>().map_err(|_| format!("`{s}` is not 0, 1 or 2")))?.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(args: &[&str], file: &str) -> Result<RunConfig, ConfigError> {
        let cli = cli::Cli::try_parse_from(std::iter::once("savvy-replay").chain(args.iter().copied()))
            .map_err(|e| ConfigError(e.to_string()))?;
        let cli::Command::Run(run) = cli.command else { panic!("not run") };
        let table: toml::Table = file.parse().unwrap();
        let fc = FileConfig { path: "test.toml".into(), table };
        run_config(&run, &cli.global, &fc)
    }

    const BASE: &[&str] = &["run", "--token", "pt_secret_abc", "--webhook-url", "https://h.example.com/x"];

    fn with(extra: &[&'static str]) -> Vec<&'static str> {
        BASE.iter().copied().chain(extra.iter().copied()).collect()
    }

    #[test]
    fn defaults_fetch_everything() {
        let c = parse(BASE, "").unwrap();
        let SourceConfig::Api { base, query, .. } = &c.source else { panic!() };
        assert_eq!(base.as_str(), "https://api.savvycal.com/");
        assert_eq!(
            (query.period, query.state, query.attendance, query.page_size),
            (Period::All, State::All, Attendance::Any, 100)
        );
        assert_eq!(c.concurrency, 8);
        assert_eq!(c.rate, RateSetting::Fixed(Rate::per_second(20.0)));
        assert_eq!((c.max_rate, c.give_up_after), (Rate::UNLIMITED, Some(Duration::from_secs(600))));
        assert_eq!(c.burst, 1);
        assert_eq!(c.retry, RetryPolicy::default());
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.event_type, "event.created");
        assert_eq!(c.ledger, PathBuf::from(DEFAULT_LEDGER));
        assert_eq!(c.resume, Resume::Skip);
    }

    #[test]
    fn flag_beats_file_and_file_beats_default() {
        let c = parse(&with(&["--rate", "5"]), "rate = \"3000/m\"\nconcurrency = 3\nheader = [\"X-A: 1\"]").unwrap();
        assert_eq!(c.rate, RateSetting::Fixed(Rate::per_second(5.0)));
        assert_eq!(c.concurrency, 3);
        assert_eq!(c.headers.len(), 1);
        let c = parse(BASE, "rate = 0.5\ncreated_before = 2026-03-01T00:00:00Z").unwrap();
        assert_eq!(c.rate, RateSetting::Fixed(Rate::per_second(0.5)));
        assert!(c.select.created_before.is_some());
        let c = parse(&with(&["--max-rate", "300"]), "rate = \"auto\"\ngive_up_after = \"0\"").unwrap();
        assert_eq!((c.rate, c.max_rate, c.give_up_after), (RateSetting::Auto, Rate::per_second(300.0), None));
        let c = parse(&with(&["--rate", "auto", "--give-up-after", "30s"]), "").unwrap();
        assert_eq!((c.rate, c.give_up_after), (RateSetting::Auto, Some(Duration::from_secs(30))));
    }

    #[test]
    fn bad_values_name_the_flag_or_key() {
        let e = parse(BASE, "rate = \"fast\"").unwrap_err().0;
        assert!(e.contains("`rate`") && e.contains("3000/m"), "{e}");
        let e = parse(&["run", "--token", "t", "--webhook-url", "ftp://x"], "").unwrap_err().0;
        assert!(e.contains("--webhook-url"), "{e}");
        let e = parse(&["run", "--token", "t"], "").unwrap_err().0;
        assert!(e.contains("--webhook-url is required"), "{e}");
        let e = parse(&["run", "--webhook-url", "https://x.example"], "").unwrap_err().0;
        assert!(e.contains("--token is required"), "{e}");
        let e = parse(&with(&["--retry-initial", "1m", "--retry-max", "1s"]), "").unwrap_err().0;
        assert!(e.contains("--retry-initial"), "{e}");
        let e =
            parse(&with(&["--created-before", "2020-01-01T00:00:00Z", "--created-after", "2021-01-01T00:00:00Z"]), "")
                .unwrap_err()
                .0;
        assert!(e.contains("--created-before"), "{e}");
    }

    #[test]
    fn webhook_flags_and_created_before_none() {
        let c = parse(BASE, "").unwrap();
        assert_eq!((c.signature_hex, c.created_before_none, c.webhook_id.as_deref()), (HexCase::Upper, false, None));
        let c = parse(&with(&["--created-before", "none", "--webhook-id", "wh_01ED74"]), "signature_hex = \"lower\"")
            .unwrap();
        assert!(c.created_before_none && c.select.created_before.is_none());
        assert_eq!((c.signature_hex, c.webhook_id.as_deref()), (HexCase::Lower, Some("wh_01ED74")));
        let c = parse(BASE, "created_before = \"none\"").unwrap();
        assert!(c.created_before_none);
        let c = parse(&with(&["--created-before", "2026-03-01T00:00:00Z"]), "created_before = \"none\"").unwrap();
        assert!(!c.created_before_none && c.select.created_before.is_some(), "the flag wins over the file");
        let e = parse(&with(&["--webhook-id", "wh_../../v1/me"]), "").unwrap_err().0;
        assert!(e.contains("--webhook-id") && e.contains("wh_01ED74HMFGVZ92YVCWTD8Y8H6X"), "{e}");
        let e = parse(&with(&["--created-before", "never"]), "").unwrap_err().0;
        assert!(e.contains("`none`"), "{e}");
    }

    #[test]
    fn plain_http_api_only_on_loopback() {
        assert!(api_base("http://127.0.0.1:9000").is_ok());
        assert!(api_base("http://localhost:9000").is_ok());
        assert!(api_base("http://[::1]:9000").is_ok());
        assert!(api_base("https://api.savvycal.com").is_ok());
        let e = api_base("http://api.savvycal.com").unwrap_err().0;
        assert!(e.contains("plain http"), "{e}");
    }

    #[test]
    fn credentials_in_the_api_base_are_refused_without_being_repeated() {
        for url in [
            "https://user:pt_secret_xyz@api.savvycal.com",
            "https://pt_secret_xyz@api.savvycal.com",
            "https://:pt_secret_xyz@h",
        ] {
            let e = api_base(url).unwrap_err().0;
            assert!(e.contains("user name or password") && !e.contains("pt_secret_xyz"), "{e}");
        }
        let e = api_base("https://user:pt_secret_xyz@api.savvycal.com:8443/").unwrap_err().0;
        assert!(
            e.contains("like https://api.savvycal.com:8443;") || e.ends_with("https://api.savvycal.com:8443"),
            "{e}"
        );
        // Text that does not parse is not repeated with its credentials either.
        for bad in ["https://user:pt_secret_xyz@exa mple.com/x", "ftp://u:pt_secret_xyz@h/x"] {
            let e = api_base(bad).unwrap_err().0;
            assert!(e.contains("***@") && !e.contains("pt_secret_xyz"), "{e}");
        }
    }

    #[test]
    fn unknown_config_keys_are_refused_with_a_hint() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "webhook-url = \"https://x\"\n").unwrap();
        let e = FileConfig::load(&p).unwrap_err().0;
        assert!(e.contains("webhook-url") && e.contains("did you mean `webhook_url`"), "{e}");
        std::fs::write(&p, "rate = [").unwrap();
        assert!(FileConfig::load(&p).unwrap_err().0.contains("not valid TOML"));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let c = parse(&with(&["--signing-secret", "whsec_zzz", "-H", "Authorization: Bearer rcv"]), "").unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("pt_secret_abc") && !dbg.contains("whsec_zzz") && !dbg.contains("Bearer rcv"), "{dbg}");
    }

    #[test]
    fn the_example_config_documents_every_key_and_parses() {
        let text = include_str!("../config/savvy-replay.example.toml");
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.split_once(" = ").is_some_and(|(k, _)| KNOWN_KEYS.contains(&k)))
            .map(|l| format!("{l}\n"))
            .collect();
        let table: toml::Table = uncommented.parse().unwrap();
        for key in KNOWN_KEYS {
            assert!(table.contains_key(*key), "the example config does not document `{key}`");
        }
        let fc = FileConfig { path: "example.toml".into(), table };
        let c = run_config(&RunArgs::default(), &GlobalArgs::default(), &fc).unwrap();
        assert_eq!(c.webhook_url.as_str(), "https://hooks.example.com/savvycal");
        assert!(matches!(c.source, SourceConfig::File(_)));
    }
}
