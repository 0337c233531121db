//! The command line as the user types it (the "raw" stage), and the one definition of every flag.
//!
//! Each flag is defined once, here: its name, its value parser, its environment variable and its
//! default. The config file feeds that same definition (`config/file.rs` turns the file's keys
//! into clap defaults), so a bad `--rate` and a bad `rate = …` in a file fail with the same parser
//! message, clap itself applies flag > env > file > default, and `--help` shows the real defaults.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

mod values;
pub use values::*;

use crate::deliver::signature::HexCase;
use crate::deliver::{Header, WEBHOOK_USER_AGENT};
use crate::pacing::RateMode;
use crate::pacing::gate::{Quota, Rate};
use crate::source::api::{Attendance, Period, State};

pub const DEFAULT_API_BASE: &str = "https://api.savvycal.com";
pub use crate::event::DEFAULT_EVENT_TYPE;
pub use crate::ledger::DEFAULT_LEDGER;

// Every line fits in 80 columns, so clap never wraps one: a command broken across lines by the
// help's wrapping could not be copied. Long commands continue with `\` like a shell script.
const RUN_EXAMPLES: &str = "\
Examples:
  # Replay every booking made before the webhook existed, signed like SavvyCal:
  # the webhook is found in the account, and its secret and created_at become
  # the defaults (see --dry-run)
  savvy-replay run --token pt_secret_… \\
    --webhook-url https://hooks.example.com/savvycal

  # Into a staging copy, as the production webhook, whatever the bookings' date
  savvy-replay run --webhook-url https://staging.example.com/hook \\
    --webhook-id wh_… --created-before none

  # Find how fast the receiver can take it (the next run starts from there)
  savvy-replay run --config replay.toml --rate auto

  # Gentle on a small receiver: 5 requests/s, 2 at a time
  savvy-replay run --config replay.toml --rate 5 --concurrency 2

  # See what would be sent, without sending anything
  savvy-replay run --config replay.toml --dry-run

  # Replay a file exported earlier (or the output of `savvy-replay failed`)
  savvy-replay run --input events.ndjson \\
    --webhook-url https://hooks.example.com/savvycal

Rerunning the same command resumes: events already delivered to that webhook
are skipped.

Exit status: 0 all delivered, 1 some failed, 2 usage/configuration error,
3 the source failed, 4 the webhook was unreachable for --give-up-after,
130 interrupted (progress saved).";

const EXPORT_EXAMPLE: &str = "Example:\n  savvy-replay export --token pt_secret_… \\\n    --created-before 2026-03-01T00:00:00Z --out events.ndjson";
const STATUS_EXAMPLES: &str =
    "Examples:\n  savvy-replay status --ledger .savvy-replay/ledger.db\n  savvy-replay status --json | jq '.failed'";
const FAILED_EXAMPLE: &str =
    "Example:\n  savvy-replay failed --out failed.ndjson\n  savvy-replay run --input failed.ndjson --webhook-url …";
const DEMO_EXAMPLES: &str =
    "Examples:\n  savvy-replay demo\n  savvy-replay demo --events 20000 --fail-rate 0.2 --rate 2000";
const SINK_EXAMPLE: &str = "Example:\n  savvy-replay sink --listen 127.0.0.1:8787 --secret whsec_test\n  savvy-replay run … --webhook-url http://127.0.0.1:8787/webhook --signing-secret whsec_test";
const COMPLETIONS_EXAMPLE: &str =
    "Example:\n  savvy-replay completions bash > ~/.local/share/bash-completion/completions/savvy-replay";

/// Replay SavvyCal booking history into a webhook, exactly as SavvyCal would have sent it.
#[derive(Debug, Parser)]
#[command(name = "savvy-replay", version, about, long_about = None)]
#[command(propagate_version = true, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args, Clone, Default)]
pub struct GlobalArgs {
    /// More logs on stderr: -v per-retry and per-page lines, -vv per-request lines.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// No progress bar and no human summary; errors are still printed.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// TOML file with default values for the flags (keys like the long flags, `-` → `_`).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fetch booking history and POST every event to the webhook (the main job).
    #[command(after_help = RUN_EXAMPLES)]
    Run(Box<RunArgs>),
    /// Write the selected events as NDJSON (one event per line), for `run --input`.
    #[command(after_help = EXPORT_EXAMPLE)]
    Export(ExportArgs),
    /// Show, per webhook, what the ledger holds: delivered, failed (with the last error), pending.
    #[command(after_help = STATUS_EXAMPLES)]
    Status(StatusArgs),
    /// Write the events that failed for good as NDJSON, ready for `run --input`.
    #[command(after_help = FAILED_EXAMPLE)]
    Failed(FailedArgs),
    /// The whole job on this machine, no account needed: a fake SavvyCal API and a local receiver.
    #[command(after_help = DEMO_EXAMPLES)]
    Demo(DemoArgs),
    /// A local webhook receiver that verifies signatures and prints what it receives.
    #[command(after_help = SINK_EXAMPLE)]
    Sink(SinkArgs),
    /// Print a shell completion script.
    #[command(after_help = COMPLETIONS_EXAMPLE)]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Where events come from: the SavvyCal API (default) or an NDJSON file.
#[derive(Debug, Args, Clone)]
pub struct SourceArgs {
    /// SavvyCal personal access token (pt_secret_…). Required unless --input is given.
    #[arg(long, env = "SAVVYCAL_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,
    /// SavvyCal API base URL.
    #[arg(long, env = "SAVVYCAL_API_BASE", hide_env_values = true, value_name = "URL", default_value = DEFAULT_API_BASE)]
    pub api_base: String,
    /// Which bookings by start date.
    #[arg(long, value_enum, default_value = "all")]
    pub period: Period,
    /// Which bookings by state.
    #[arg(long, value_enum, default_value = "all")]
    pub state: State,
    /// Include bookings the organizer declined (`any`) or not.
    #[arg(long, value_enum, default_value = "any")]
    pub attendance: Attendance,
    /// Events per API page, 1..=100.
    #[arg(long, value_name = "N", value_parser = parse_page_size, default_value = "100")]
    pub page_size: u32,
    /// Read events from an NDJSON file (`-` for stdin) instead of the API.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
}

/// Which of the fetched events to replay.
#[derive(Debug, Args, Clone)]
pub struct SelectArgs {
    /// Only events created before this moment (RFC 3339), or `none` for no bound. Default: the
    /// webhook's created_at when it is found in the account, else none.
    #[arg(long, value_name = "TIME|none", value_parser = parse_created_before)]
    pub created_before: Option<CreatedBefore>,
    /// Only events created after this moment (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_timestamp)]
    pub created_after: Option<jiff::Timestamp>,
    /// Stop after N selected events.
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub select: SelectArgs,

    /// The webhook to POST events to.
    #[arg(
        long,
        env = "SAVVY_REPLAY_WEBHOOK_URL",
        hide_env_values = true,
        value_name = "URL",
        help_heading = "Delivery"
    )]
    pub webhook_url: Option<String>,
    /// The envelope's `type`.
    #[arg(long, value_name = "TYPE", help_heading = "Delivery", default_value = DEFAULT_EVENT_TYPE)]
    pub event_type: String,
    /// Sign each body like SavvyCal: `x-savvycal-signature: sha256=<HEX HMAC-SHA256>`. Default: the
    /// webhook's own secret, when the account's webhook list returns it.
    #[arg(
        long,
        env = "SAVVYCAL_WEBHOOK_SECRET",
        hide_env_values = true,
        value_name = "SECRET",
        help_heading = "Delivery"
    )]
    pub signing_secret: Option<String>,
    /// Where `signing_secret` came from, in words for messages (filled in by
    /// [`crate::config::parse`], which sees the matches).
    #[arg(skip)]
    pub signing_secret_from: Option<&'static str>,
    /// The SavvyCal webhook this replay stands in for (wh_…), when its URL differs from
    /// --webhook-url. Default: looked up by --webhook-url among the account's webhooks.
    #[arg(long, value_name = "ID", help_heading = "Delivery")]
    pub webhook_id: Option<String>,
    /// Hex case of the signature: upper (SavvyCal's) or lower, for a receiver written against
    /// lowercase.
    #[arg(long, value_enum, value_name = "CASE", help_heading = "Delivery", default_value = "upper")]
    pub signature_hex: HexCase,
    /// The `User-Agent` header. Default: exactly SavvyCal's, as receivers compare it with `==`; set
    /// another only for a receiver that wants to tell replays apart.
    #[arg(
        long,
        env = "SAVVY_REPLAY_USER_AGENT",
        value_name = "STRING",
        value_parser = parse_user_agent,
        help_heading = "Delivery",
        default_value = WEBHOOK_USER_AGENT
    )]
    pub user_agent: http::HeaderValue,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE", value_parser = parse_header, help_heading = "Delivery")]
    pub headers: Vec<Header>,
    /// Time limit for one attempt, e.g. 500ms, 30s, 1m30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Delivery", default_value = "30s")]
    pub timeout: Duration,

    /// Requests in flight at most.
    #[arg(long, value_name = "N", value_parser = parse_concurrency, help_heading = "Throughput", default_value = "8")]
    pub concurrency: usize,
    /// Requests per second, retries included: 50, 50/s, 3000/m, 50/h, 0.5, 0/unlimited, or auto to find
    /// the receiver's capacity (remembered for the next run).
    // allow_negative_numbers: `--rate -3` reaches the parser, which says a rate cannot be negative.
    #[arg(long, value_name = "RATE|auto", value_parser = parse_rate_mode, help_heading = "Throughput", default_value = "20", allow_negative_numbers = true)]
    pub rate: RateMode,
    /// With --rate auto: a ceiling the rate never exceeds.
    #[arg(long, value_name = "RATE", value_parser = parse_rate, help_heading = "Throughput", default_value = "unlimited", allow_negative_numbers = true)]
    pub max_rate: Rate,
    /// Requests that may go at once after an idle spell.
    #[arg(long, value_name = "N", value_parser = parse_burst, help_heading = "Throughput", default_value = "1")]
    pub burst: u32,

    /// Retries per event after the first attempt.
    #[arg(long, value_name = "N", help_heading = "Retries", default_value = "8")]
    pub max_retries: u32,
    /// First retry delay.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Retries", default_value = "500ms")]
    pub retry_initial: Duration,
    /// Longest retry delay, and the cap on Retry-After.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, help_heading = "Retries", default_value = "30s")]
    pub retry_max: Duration,
    /// Stop the run (exit 4, the rest pending) when the webhook has been unreachable this long;
    /// 0 never gives up.
    #[arg(long, value_name = "DURATION", value_parser = parse_give_up_after, help_heading = "Retries", default_value = "10m")]
    pub give_up_after: Duration,

    /// Where outcomes are recorded for resuming.
    #[arg(long, value_name = "PATH", help_heading = "State", default_value = DEFAULT_LEDGER)]
    pub ledger: PathBuf,
    /// Ignore earlier outcomes for this webhook and event type: send everything again.
    #[arg(long, conflicts_with = "only_failed", help_heading = "State")]
    pub fresh: bool,
    /// Send only the events that failed in an earlier run.
    #[arg(long, help_heading = "State")]
    pub only_failed: bool,
    /// Fetch and select, send nothing: print the count, the ETA and one sample request.
    #[arg(long, help_heading = "State")]
    pub dry_run: bool,

    /// Also print the summary as one JSON object on stdout.
    #[arg(long, help_heading = "Output")]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct ExportArgs {
    #[command(flatten)]
    pub source: SourceArgs,
    #[command(flatten)]
    pub select: SelectArgs,
    /// Write to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    /// The ledger to read.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_LEDGER)]
    pub ledger: PathBuf,
    /// Print one JSON object per webhook and event type, one per line, instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args, Clone)]
pub struct FailedArgs {
    /// The ledger to read.
    #[arg(long, value_name = "PATH", default_value = DEFAULT_LEDGER)]
    pub ledger: PathBuf,
    /// Only events that failed for this webhook.
    #[arg(long, env = "SAVVY_REPLAY_WEBHOOK_URL", hide_env_values = true, value_name = "URL")]
    pub webhook_url: Option<String>,
    /// Only events that failed for this event type.
    #[arg(long, value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Write to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// Bookings in the fake SavvyCal account.
    #[arg(long, default_value_t = 2000, value_name = "N")]
    pub events: usize,
    /// Fraction of requests the receiver fails with 503 or 429 + Retry-After, 0..=1.
    #[arg(long, default_value_t = 0.0, value_name = "F", value_parser = parse_fraction)]
    pub fail_rate: f64,
    /// Requests per second (same forms as `run --rate`, auto included).
    #[arg(long, default_value = "500", value_name = "RATE|auto", value_parser = parse_rate_mode, allow_negative_numbers = true)]
    pub rate: RateMode,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 32, value_name = "N", value_parser = parse_concurrency)]
    pub concurrency: usize,
    /// Also print the summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub receiver: ReceiverArgs,
}

/// How the local receiver of `sink` and `demo` limits what it takes, so pacing can be
/// tried against something that pushes back.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Receiver limits")]
pub struct ReceiverArgs {
    /// A token bucket of R requests/s: 429 with `Retry-After: 1` above it.
    #[arg(long, value_name = "R", value_parser = parse_capacity)]
    pub capacity: Option<f64>,
    /// The --capacity changes over time, counted from the first request: 10s=75,20s=300 takes 75/s
    /// from 10 s on and 300/s from 20 s on.
    #[arg(long, value_name = "T=R,…", value_parser = parse_capacity_steps)]
    pub capacity_steps: Option<CapacitySteps>,
    /// At most N requests per fixed window, e.g. 600/1m: 429 with `Retry-After` = seconds to its end.
    #[arg(long, value_name = "N/DURATION", value_parser = clap::value_parser!(Quota))]
    pub quota: Option<Quota>,
    /// 503 above K requests in flight at once.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_in_flight: Option<u32>,
    /// Every answer takes this long, e.g. 20ms.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub latency: Option<Duration>,
    /// The only `User-Agent` taken, compared exactly (404 for any other, as a Rails route
    /// constraint answers). Default: SavvyCal's, `SavvyCal Webhooks (https://savvycal.com)`.
    #[arg(long, value_name = "STRING", value_parser = parse_user_agent, conflicts_with = "any_user_agent")]
    pub user_agent: Option<http::HeaderValue>,
    /// Take any `User-Agent`.
    #[arg(long)]
    pub any_user_agent: bool,
}

#[derive(Debug, Args, Clone)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8787", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Verify `x-savvycal-signature` with this secret (401 when it does not match).
    #[arg(long, env = "SAVVYCAL_WEBHOOK_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub secret: Option<String>,
    /// The hex case signatures must be in: upper, as SavvyCal sends them and its docs verify
    /// them, or lower (to try `run --signature-hex lower`). The whole header must match exactly.
    #[arg(long, value_enum, default_value_t = HexCase::Upper, value_name = "CASE")]
    pub signature_hex: HexCase,
    /// Fraction of requests to fail with 503 or 429 + Retry-After, 0..=1.
    #[arg(long, default_value_t = 0.0, value_name = "F", value_parser = parse_fraction)]
    pub fail_rate: f64,
    #[command(flatten)]
    pub receiver: ReceiverArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        <Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let a = Cli::try_parse_from(["savvy-replay", "-v", "--config", "c.toml", "status"]).unwrap();
        let b = Cli::try_parse_from(["savvy-replay", "status", "-v", "--config", "c.toml"]).unwrap();
        assert_eq!(a.global.verbose, 1);
        assert_eq!(b.global.verbose, 1);
        assert_eq!(a.global.config, b.global.config);
    }
}
