//! The configuration's tests: precedence, the config file through the real parser, `--no-…` forms,
//! messages that name the flag or the key, and the example file documenting every key.

use super::*;
use crate::source::api::{Attendance, Period, State};

/// `args` after `savvy-replay --config <file holding file_text>`.
fn parse(args: &[&str], file_text: &str) -> Result<RunConfig, ConfigError> {
    let cli = parse_cli(args, file_text)?;
    let cli::Command::Run(run) = cli.command else { panic!("not run") };
    run_config(&run, &cli.global)
}

fn parse_cli(args: &[&str], file_text: &str) -> Result<cli::Cli, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("test.toml");
    std::fs::write(&path, file_text).unwrap();
    let argv = ["savvy-replay", "--config", path.to_str().unwrap()].into_iter().chain(args.iter().copied());
    match super::parse(argv.map(Into::into).collect()) {
        Ok(cli) => Ok(cli),
        Err(ParseError::Config(e)) => Err(e),
        Err(ParseError::Usage(e)) => Err(ConfigError(e.to_string())),
    }
}

#[test]
fn the_file_feeds_status_and_failed_only_their_ledger_and_verbose_counts() {
    let file = "json = true\nledger = \"x.db\"\nwebhook_url = \"https://h.example.com/x\"\nverbose = 2";
    let cli = parse_cli(&["status"], file).unwrap();
    let cli::Command::Status(status) = cli.command else { panic!("not status") };
    assert_eq!((status.json, status.ledger, cli.global.verbose), (false, PathBuf::from("x.db"), 2));
    let cli = parse_cli(&["failed", "-v"], file).unwrap();
    let cli::Command::Failed(failed) = cli.command else { panic!("not failed") };
    assert_eq!((failed.webhook_url, cli.global.verbose), (None, 1));
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
    assert_eq!(c.rate, RateMode::Fixed(Rate::per_second(20.0)));
    assert_eq!((c.max_rate, c.give_up_after), (Rate::UNLIMITED, Some(Duration::from_secs(600))));
    assert_eq!(c.burst, 1);
    assert_eq!(c.retry, RetryPolicy::default());
    assert_eq!(c.timeout, Duration::from_secs(30));
    assert_eq!(c.event_type, "event.created");
    assert_eq!(c.ledger, PathBuf::from(cli::DEFAULT_LEDGER));
    assert_eq!(c.resume, Resume::Skip);
}

#[test]
fn flag_beats_file_and_file_beats_default() {
    let c = parse(&with(&["--rate", "5"]), "rate = \"3000/m\"\nconcurrency = 3\nheader = [\"X-A: 1\"]").unwrap();
    assert_eq!(c.rate, RateMode::Fixed(Rate::per_second(5.0)));
    assert_eq!(c.concurrency, 3);
    assert_eq!(c.headers.len(), 1);
    let c = parse(BASE, "rate = 0.5\ncreated_before = 2026-03-01T00:00:00Z").unwrap();
    assert_eq!(c.rate, RateMode::Fixed(Rate::per_second(0.5)));
    assert!(c.select.created_before.is_some());
    let c = parse(&with(&["--max-rate", "300"]), "rate = \"auto\"\ngive_up_after = \"0\"").unwrap();
    assert_eq!((c.rate, c.max_rate, c.give_up_after), (RateMode::Auto, Rate::per_second(300.0), None));
    let c = parse(&with(&["--rate", "auto", "--give-up-after", "30s"]), "").unwrap();
    assert_eq!((c.rate, c.give_up_after), (RateMode::Auto, Some(Duration::from_secs(30))));
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
    let e = parse(&with(&["--created-before", "2020-01-01T00:00:00Z", "--created-after", "2021-01-01T00:00:00Z"]), "")
        .unwrap_err()
        .0;
    assert!(e.contains("--created-before"), "{e}");
}

#[test]
fn webhook_flags_and_created_before_none() {
    let c = parse(BASE, "").unwrap();
    assert_eq!((c.signature_hex, c.created_before_none, c.webhook_id.as_deref()), (HexCase::Upper, false, None));
    let c =
        parse(&with(&["--created-before", "none", "--webhook-id", "wh_01ED74"]), "signature_hex = \"lower\"").unwrap();
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
fn every_on_off_flag_has_a_no_form_that_beats_the_file() {
    command().debug_assert();
    let on = "dry_run = true\nfresh = true\njson = true\nquiet = true\nverbose = 2";
    let c = parse(BASE, on).unwrap();
    assert!(
        c.dry_run && c.json && c.quiet && c.resume == Resume::Fresh,
        "{:?}",
        (c.dry_run, c.json, c.quiet, c.resume)
    );
    let off = with(&["--no-dry-run", "--no-fresh", "--no-json", "--no-quiet", "--only-failed"]);
    let c = parse(&off, on).unwrap();
    assert!(!c.dry_run && !c.json && !c.quiet && c.resume == Resume::OnlyFailed);
    // The last of a flag and its `--no-` form wins.
    assert!(parse(&with(&["--no-dry-run", "--dry-run"]), "").unwrap().dry_run);
    assert!(!parse(&with(&["--dry-run", "--no-dry-run"]), on).unwrap().dry_run);
    assert!(!parse(&with(&["--dry-run=false"]), "").is_ok_and(|c| c.dry_run), "a flag takes no value");
    let e = parse(BASE, "fresh = true\nonly_failed = true").unwrap_err().0;
    assert!(e.contains("contradict"), "{e}");
    for bool_flag in ["only-failed", "quiet", "json"] {
        let no = format!("--no-{bool_flag}");
        assert!(command().try_get_matches_from(["savvy-replay", "run", no.as_str()]).is_ok(), "{no}");
    }
    let m = command().try_get_matches_from(["savvy-replay", "status", "--no-json"]).unwrap();
    assert!(m.subcommand_matches("status").is_some_and(|s| !s.get_flag("json")));
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
    assert!(e.contains("like https://api.savvycal.com:8443;") || e.ends_with("https://api.savvycal.com:8443"), "{e}");
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
    let e = parse(BASE, "webhook-url = \"https://x\"\n").unwrap_err().0;
    assert!(e.contains("webhook-url") && e.contains("did you mean `webhook_url`"), "{e}");
    // A typo gets the keys closest to it, and where every key is listed for a `cargo install`
    // user (who has no example file from the repository).
    let e = parse(BASE, "max_retrys = 3\n").unwrap_err().0;
    assert!(e.contains("did you mean `max_retries`"), "{e}");
    assert!(e.contains("savvy-replay run --help") && !e.contains("example.toml"), "{e}");
    let e = parse(BASE, "quiet = true\nrate = [").unwrap_err().0;
    assert!(e.contains("not valid TOML") && e.contains("line 2, column"), "{e}");
    let e = parse(BASE, "dry_run = \"yes\"").unwrap_err().0;
    assert!(e.contains("`dry_run`") && e.contains("true or false"), "{e}");
    let e = parse(BASE, "period = \"soon\"").unwrap_err().0;
    assert!(e.contains("test.toml: `period`") && e.contains("all, past, upcoming"), "{e}");
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let c = parse(&with(&["--signing-secret", "whsec_zzz", "-H", "Authorization: Bearer rcv"]), "").unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("pt_secret_abc") && !dbg.contains("whsec_zzz") && !dbg.contains("Bearer rcv"), "{dbg}");
}

#[test]
fn the_example_config_documents_every_key_and_parses() {
    let text = include_str!("../../config/savvy-replay.example.toml");
    let keys = file::keys(&command());
    assert!(keys.len() >= 30 && keys.contains(&"verbose".to_owned()), "{keys:?}");
    let uncommented: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("# "))
        .filter(|l| l.split_once(" = ").is_some_and(|(k, _)| keys.iter().any(|known| known == k)))
        .map(|l| format!("{l}\n"))
        .collect();
    let table: toml::Table = uncommented.parse().unwrap();
    for key in &keys {
        assert!(table.contains_key(key), "the example config does not document `{key}`");
    }
    let cmd = file::FileConfig { path: "example.toml".into(), table: table.clone() };
    let (cmd, _) = cmd.feed(command()).unwrap();
    let m = cmd.try_get_matches_from(["savvy-replay", "run"]).unwrap();
    let cli = <cli::Cli as clap::FromArgMatches>::from_arg_matches(&m).unwrap();
    let cli::Command::Run(run) = cli.command else { panic!("not run") };
    let c = run_config(&run, &cli.global).unwrap();
    assert_eq!(c.webhook_url.as_str(), "https://hooks.example.com/savvycal");
    assert!(matches!(c.source, SourceConfig::File(_)));
}
