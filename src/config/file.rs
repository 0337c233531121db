//! The `--config` file, fed into the one clap definition of the flags.
//!
//! Each key of the TOML file becomes the default of the flag it names (long flag, `-` → `_`), so
//! clap applies flag > env > file > default itself: a value from the environment beats the file
//! because clap prefers env over a default. The valid keys are the flags of `run` plus the global
//! ones, read off the definition, so a new flag is a new key with nothing to keep in sync.
//!
//! The `--no-…` twin of every on/off flag is generated here too ([`command`]): it exists so a
//! command line can turn off what the file turned on.
//!
//! Every value is checked here first, with the flag's own value parser, so a bad value is reported
//! as the file's (path and key), not as a flag the user never typed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};

use super::ConfigError;
use crate::cli;

/// The subcommand whose flags are the config file's keys.
const KEYED_BY: &str = "run";

/// A parsed `--config` file: its path and its TOML table.
#[derive(Debug, Default)]
pub struct FileConfig {
    pub(super) path: PathBuf,
    pub(super) table: toml::Table,
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("cannot read the config file {}: {e}", path.display())))?;
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let at = e.span().map(|s| line_column(&text, s.start)).unwrap_or_default();
            ConfigError(format!("the config file {}{at} is not valid TOML: {}", path.display(), e.message()))
        })?;
        Ok(FileConfig { path: path.to_owned(), table })
    }

    fn bad(&self, key: &str, what: impl std::fmt::Display) -> ConfigError {
        ConfigError(format!("the config file {}: `{key}`: {what}", self.path.display()))
    }

    /// A single value as the text a flag would take.
    fn scalar(&self, key: &str, v: &toml::Value) -> Result<String, ConfigError> {
        Ok(match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
            _ => return Err(self.bad(key, format!("must be a single value, not a {}", v.type_str()))),
        })
    }

    /// The file's values for the repeatable flag `key` (a string or a list of strings), each
    /// checked by the flag's parser.
    fn list(&self, key: &str, v: &toml::Value, arg: &Arg) -> Result<Vec<String>, ConfigError> {
        let items = match v {
            toml::Value::Array(items) => items.iter().collect(),
            _ => vec![v],
        };
        items
            .into_iter()
            .map(|v| match v {
                toml::Value::String(s) => self.check(key, arg, s).map(|()| s.clone()),
                _ => Err(self.bad(key, "must be a list of strings")),
            })
            .collect()
    }

    /// Run `value` through `arg`'s own value parser.
    fn check(&self, key: &str, arg: &Arg, value: &str) -> Result<(), ConfigError> {
        let probe = Command::new("config")
            .no_binary_name(true)
            .arg(Arg::new("v").long("v").action(ArgAction::Set).value_parser(arg.get_value_parser().clone()));
        let Err(e) = probe.try_get_matches_from([format!("--v={value}")]) else { return Ok(()) };
        let why = match std::error::Error::source(&e) {
            Some(source) => source.to_string(),
            None => {
                let names: Vec<String> = arg.get_possible_values().iter().map(|p| p.get_name().to_owned()).collect();
                format!("`{value}` is not one of {}", names.join(", "))
            }
        };
        Err(self.bad(key, why))
    }

    /// `cmd` with the file's values as its flags' defaults. Values for a repeatable flag (`header`)
    /// are returned instead: they add to the command line's rather than give way to them.
    pub fn feed(&self, mut cmd: Command) -> Result<(Command, Additions), ConfigError> {
        let mut lists = Vec::new();
        for (key, value) in &self.table {
            let Some(arg) = keyed_arg(&cmd, key) else {
                let hint = match closest_keys(&cmd, key).as_slice() {
                    [] => String::new(),
                    [one] => format!(" (did you mean `{one}`?)"),
                    some => format!(" (did you mean one of `{}`?)", some.join("`, `")),
                };
                return Err(ConfigError(format!(
                    "the config file {} has an unknown key `{key}`{hint}\n  keys are the long flags of \
                     `savvy-replay run --help` with `-` written `_` (--max-retries is max_retries)",
                    self.path.display()
                )));
            };
            let id = arg.get_id().to_string();
            let default = match (arg.get_action(), value) {
                (ArgAction::Append, _) => {
                    lists.push((id, self.list(key, value, &arg)?));
                    continue;
                }
                (ArgAction::SetTrue, toml::Value::Boolean(b)) => b.to_string(),
                (ArgAction::SetTrue, _) => return Err(self.bad(key, "must be true or false")),
                (ArgAction::Count, toml::Value::Integer(n)) if u8::try_from(*n).is_ok() => n.to_string(),
                (ArgAction::Count, _) => return Err(self.bad(key, "must be 0, 1 or 2")),
                _ => {
                    let s = self.scalar(key, value)?;
                    self.check(key, &arg, &s)?;
                    s
                }
            };
            cmd = set_default(cmd, &id, key, &default);
        }
        Ok((cmd, lists))
    }
}

/// The whole command line: [`cli::Cli`]'s definition plus a `--no-…` twin for every on/off flag
/// (`--no-json` beside `--json`), so a command line can turn off what the config file turned on.
///
/// The twin is generated rather than written next to each flag, so no flag can miss it. It makes
/// the flag's value `false` through a conditional default, and the two override each other, so
/// the last one typed wins.
pub fn command() -> clap::Command {
    fn with_negations(mut cmd: clap::Command) -> clap::Command {
        let flags: Vec<clap::Arg> =
            cmd.get_arguments().filter(|a| matches!(a.get_action(), clap::ArgAction::SetTrue)).cloned().collect();
        // Every flag's place in the help doubles, so its `--no-…` twin fits in right after it.
        cmd = cmd.mut_args(|a| {
            let order = a.get_display_order().saturating_mul(2);
            a.display_order(order)
        });
        for flag in flags {
            let (id, Some(long)) = (flag.get_id().to_string(), flag.get_long().map(str::to_owned)) else { continue };
            let no_id = format!("no_{id}");
            let mut no = clap::Arg::new(&no_id)
                .long(format!("no-{long}"))
                .action(clap::ArgAction::SetTrue)
                .overrides_with(&id)
                .global(flag.is_global_set())
                // Listed right after the flag it undoes, under the same heading.
                .display_order(flag.get_display_order().saturating_mul(2) + 1)
                .help(format!("Turn --{long} off (one from the config file, or given earlier)"));
            // Always set, also to "none": left unset, clap files the twin under whatever
            // heading the command last named (a flattened group's), not the flag's.
            no = match flag.get_help_heading() {
                Some(heading) => no.help_heading(heading.to_owned()),
                None => no.help_heading(None::<&'static str>),
            };
            cmd = cmd.mut_arg(&id, |a| a.overrides_with(&no_id).default_value_if(&no_id, "true", "false")).arg(no);
        }
        let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
        for name in names {
            cmd = cmd.mut_subcommand(name, with_negations);
        }
        // Wrapper scripts append flags: the last of a repeated flag wins, as in most CLIs
        // (repeatable ones such as -H still add up).
        cmd.args_override_self(true)
    }
    with_negations(<cli::Cli as clap::CommandFactory>::command())
}

/// Values of repeatable flags, by flag id: they add to the command line's.
pub type Additions = Vec<(String, Vec<String>)>;

/// The config file's keys: the long flags of `run` and the global ones, `-` written `_`.
pub fn keys(cmd: &Command) -> Vec<String> {
    let run = cmd.find_subcommand(KEYED_BY).into_iter().flat_map(|s| s.get_arguments());
    cmd.get_arguments()
        .chain(run)
        .filter(|a| !is_negation(a) && !matches!(a.get_id().as_str(), "config" | "help" | "version"))
        .filter_map(|a| a.get_long().map(|l| l.replace('-', "_")))
        .collect()
}

/// The valid keys nearest to `typo`, nearest first: the same words with `-` or no separator, else
/// the few within a small edit distance.
fn closest_keys(cmd: &Command, typo: &str) -> Vec<String> {
    let all = keys(cmd);
    let squashed = typo.replace(['-', '_'], "").to_ascii_lowercase();
    if let Some(same) = all.iter().find(|k| k.replace('_', "") == squashed) {
        return vec![same.clone()];
    }
    let typo = typo.replace('-', "_").to_ascii_lowercase();
    let mut near: Vec<(usize, String)> = all
        .into_iter()
        .map(|k| (strsim::damerau_levenshtein(&typo, &k), k))
        .filter(|(d, k)| *d <= 2.max(k.len() / 4))
        .collect();
    near.sort();
    near.into_iter().take(3).map(|(_, k)| k).collect()
}

/// Is this argument one of the generated `--no-…` twins?
fn is_negation(arg: &clap::Arg) -> bool {
    arg.get_id().as_str().starts_with("no_")
}

fn keyed_arg(cmd: &Command, key: &str) -> Option<Arg> {
    if !keys(cmd).iter().any(|k| k == key) {
        return None;
    }
    let long = key.replace('_', "-");
    let run = cmd.find_subcommand(KEYED_BY).into_iter().flat_map(|s| s.get_arguments());
    cmd.get_arguments().chain(run).find(|a| a.get_long() == Some(long.as_str())).cloned()
}

/// Which subcommands a key feeds: `run` and `export` take every key they have; `status` and
/// `failed` only `ledger` (their `--json`, `--webhook-url` and `--event-type` mean something
/// else there than in a replay file).
fn feeds(subcommand: &str, key: &str) -> bool {
    matches!(subcommand, "run" | "export") || (matches!(subcommand, "status" | "failed") && key == "ledger")
}

fn set_default(cmd: Command, id: &str, key: &str, value: &str) -> Command {
    let value = value.to_owned();
    if cmd.get_arguments().any(|a| a.get_id() == id) {
        return cmd.mut_arg(id, |a| a.default_value(value));
    }
    let subs: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
    subs.into_iter().filter(|s| feeds(s, key)).fold(cmd, |cmd, sub| {
        let value = value.clone();
        cmd.mut_subcommand(sub, |s| {
            let has = s.get_arguments().any(|a| a.get_id() == id);
            if has { s.mut_arg(id, |a| a.default_value(value)) } else { s }
        })
    })
}

/// " (line L, column C)" for a byte offset into `text`.
fn line_column(text: &str, offset: usize) -> String {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(" (line {line}, column {column})")
}

/// The command line with the `--config` file (if any) behind it: parse once to find the file,
/// then again with the file's values as defaults. A usage error is clap's (printed by the caller
/// with `exit()`); a bad file is a [`ConfigError`].
pub fn parse(argv: Vec<OsString>) -> Result<cli::Cli, ParseError> {
    use clap::FromArgMatches;
    let matches = command().try_get_matches_from(&argv)?;
    let first = with_sources(cli::Cli::from_arg_matches(&matches)?, &matches);
    let Some(path) = &first.global.config else { return Ok(first) };
    let file = FileConfig::load(path)?;
    let (cmd, lists) = file.feed(command())?;
    let matches = cmd.try_get_matches_from(&argv)?;
    let mut cli = with_sources(cli::Cli::from_arg_matches(&matches)?, &matches);
    // The file's headers go first, so the command line's win where a receiver reads the last one.
    if let cli::Command::Run(run) = &mut cli.command {
        for (_, values) in lists {
            let parsed: Result<Vec<_>, _> = values.iter().map(|h| cli::parse_header(h)).collect();
            run.headers.splice(0..0, parsed.map_err(|e| file.bad("header", e))?);
        }
    }
    Ok(cli)
}

/// `cli` with where the signing secret came from: the webhook line names it, so a user who set
/// `SAVVYCAL_WEBHOOK_SECRET` long ago is not told about a flag they never typed. The file's values
/// are clap's defaults, so a default is the file's.
fn with_sources(mut cli: cli::Cli, matches: &clap::ArgMatches) -> cli::Cli {
    use clap::parser::ValueSource;
    if let (cli::Command::Run(run), Some(("run", m))) = (&mut cli.command, matches.subcommand()) {
        run.signing_secret_from = m.value_source("signing_secret").map(|s| match s {
            ValueSource::EnvVariable => "SAVVYCAL_WEBHOOK_SECRET",
            ValueSource::DefaultValue => "signing_secret in the config file",
            _ => "--signing-secret",
        });
    }
    cli
}

/// Why the command line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error(transparent)]
    Usage(#[from] clap::Error),
    #[error(transparent)]
    Config(#[from] ConfigError),
}
