//! The subcommands: each turns parsed arguments into work and an exit status.
//!
//! Errors surface here once, as `Error: …` on stderr with the exit status SPEC §3 gives them:
//! 0 all delivered, 1 some failed, 2 usage or configuration, 3 the source failed, 130 interrupted.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, ExportArgs, FailedArgs, StatusArgs};
use crate::config::{self, FileConfig};
use crate::ledger::{self, Status};
use crate::pipeline::{self, Report, RunError};
use crate::report::thousands;

/// Exit statuses (SPEC §3).
pub mod exit {
    pub const OK: u8 = 0;
    pub const FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const SOURCE: u8 = 3;
    pub const INTERRUPTED: u8 = 130;
}

/// Run the parsed command line; never panics on input, returns the process exit status.
pub fn main(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let code = runtime.block_on(dispatch(cli));
    // Do not wait for stray tasks (a blocked stdin reader, say).
    runtime.shutdown_background();
    ExitCode::from(code)
}

async fn dispatch(cli: Cli) -> u8 {
    let global = cli.global;
    let file = match FileConfig::from_global(&global) {
        Ok(f) => f,
        Err(e) => return fail(exit::USAGE, &e),
    };
    let verbosity = match config::verbosity(&global, &file) {
        Ok(v) => v,
        Err(e) => return fail(exit::USAGE, &e),
    };
    init_logging(verbosity, global.quiet);
    match cli.command {
        Command::Run(args) => match config::run_config(&args, &global, &file) {
            Ok(cfg) => run(cfg).await,
            Err(e) => fail(exit::USAGE, &e),
        },
        Command::Export(args) => export(&args, &file).await,
        Command::Status(args) => status(&args, &file),
        Command::Failed(args) => failed(&args, &file),
        Command::Demo(args) => crate::demo::demo(&args, &global).await,
        Command::Sink(args) => crate::demo::sink(&args, &global).await,
        Command::Completions { shell } => {
            let mut out = std::io::stdout();
            clap_complete::generate(shell, &mut Cli::command(), "savvy-replay", &mut out);
            exit::OK
        }
    }
}

fn fail(code: u8, e: &dyn std::fmt::Display) -> u8 {
    eprintln!("Error: {e}");
    code
}

/// Logs go to stderr around the progress bar. `-v` info, `-vv` debug; `-q` errors only.
fn init_logging(verbosity: u8, quiet: bool) {
    use tracing::Level;
    let level = match (quiet, verbosity) {
        (true, _) => Level::ERROR,
        (false, 0) => Level::WARN,
        (false, 1) => Level::INFO,
        (false, 2) => Level::DEBUG,
        _ => Level::TRACE,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_target(verbosity >= 3)
        .with_writer(|| BarAwareStderr)
        .try_init();
}

struct BarAwareStderr;

impl Write for BarAwareStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        crate::report::write_stderr(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Ctrl-C or SIGTERM once: cancel gracefully. Twice: exit at once (the ledger's transactions keep
/// it consistent either way).
pub fn spawn_signal_handler(cancel: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        eprintln!(
            "\nInterrupted: finishing the requests in flight and saving progress (press Ctrl-C again to quit at once)"
        );
        cancel.cancel();
        wait_for_signal().await;
        eprintln!("Quit at once; the ledger is consistent, run the same command again to continue.");
        std::process::exit(i32::from(exit::INTERRUPTED));
    });
}

pub(crate) async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Print a line on stdout; a closed pipe (`| head`) is not an error.
fn print_stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

async fn run(cfg: config::RunConfig) -> u8 {
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let json = cfg.json;
    let quiet = cfg.quiet;
    let ledger_path = cfg.ledger.clone();
    match pipeline::run(cfg, cancel).await {
        Ok(report) => {
            print_report(&report, json, quiet, &ledger_path);
            report.exit_code()
        }
        Err(e) => run_error(&e),
    }
}

pub(crate) fn run_error(e: &RunError) -> u8 {
    fail(e.exit_code(), e)
}

/// The end of a run as the user sees it: dry-run report, human summary, hints, JSON.
pub(crate) fn print_report(report: &Report, json: bool, quiet: bool, ledger_path: &Path) {
    let s = &report.summary;
    if let Some(text) = &report.dry_run_text {
        if json {
            eprint!("{text}");
        } else {
            print_stdout(text);
        }
    } else if !quiet {
        eprint!("{}", s.human(&report.target, report.pending));
        if let Some(line) = &report.webhook {
            eprintln!("{line}");
        }
    }
    if report.malformed_count > 0 {
        eprintln!(
            "Error: {} source entries were not events and were skipped (everything else was processed):",
            thousands(report.malformed_count)
        );
        for m in &report.malformed {
            eprintln!("  {m}");
        }
        if report.malformed_count as usize > report.malformed.len() {
            eprintln!("  … and {} more", report.malformed_count as usize - report.malformed.len());
        }
    }
    if let Some(e) = &report.source_error {
        eprintln!("Error: {e}");
        if s.delivered > 0 {
            eprintln!("The events fetched before the failure were processed; run the same command again to continue.");
        }
    }
    if !quiet && !s.dry_run {
        if s.interrupted {
            eprintln!(
                "Progress is saved in {}; run the same command again to continue where this run stopped.",
                ledger_path.display()
            );
        } else if s.failed > 0 {
            eprintln!(
                "{} events failed for good: `savvy-replay status` shows why; `savvy-replay failed --out failed.ndjson` exports them, \
                 and `run --only-failed` retries them.",
                thousands(s.failed)
            );
        }
    }
    if json {
        match serde_json::to_string(s) {
            Ok(line) => print_stdout(&format!("{line}\n")),
            Err(e) => eprintln!("Error: cannot write the JSON summary: {e}"),
        }
    }
}

fn open_out(path: Option<&PathBuf>) -> Result<Box<dyn Write>, String> {
    Ok(match path {
        Some(p) if p.as_os_str() != "-" => Box::new(std::io::BufWriter::with_capacity(
            256 * 1024,
            std::fs::File::create(p).map_err(|e| format!("cannot create --out {}: {e}", p.display()))?,
        )),
        _ => Box::new(std::io::BufWriter::with_capacity(256 * 1024, std::io::stdout().lock())),
    })
}

fn is_broken_pipe(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::BrokenPipe
}

async fn export(args: &ExportArgs, file: &FileConfig) -> u8 {
    let prepared =
        config::source_config(&args.source, file).and_then(|s| Ok((s, config::selection(&args.select, file)?)));
    let (source_cfg, sel) = match prepared {
        Ok(v) => v,
        Err(e) => return fail(exit::USAGE, &e),
    };
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let source =
        match pipeline::open_source(&source_cfg, Default::default(), std::time::Duration::from_secs(30), &cancel).await
        {
            Ok(s) => s,
            Err(e) => return run_error(&e),
        };
    let mut out = match open_out(args.out.as_ref()) {
        Ok(o) => o,
        Err(e) => return fail(exit::USAGE, &e),
    };
    let counters = std::sync::Arc::new(crate::report::Counters::default());
    let (events, producer) =
        pipeline::spawn_producer(source, sel, config::Resume::Fresh, None, counters, 256, cancel.clone());
    let mut written = 0u64;
    while let Ok(ev) = events.recv().await {
        if let Err(e) = out.write_all(&ev.raw).and_then(|()| out.write_all(b"\n")) {
            if is_broken_pipe(&e) {
                return exit::OK;
            }
            return fail(exit::USAGE, &format!("cannot write the export: {e}"));
        }
        written += 1;
    }
    if let Err(e) = out.flush()
        && !is_broken_pipe(&e)
    {
        return fail(exit::USAGE, &format!("cannot write the export: {e}"));
    }
    let ended = pipeline::produced(producer).await;
    let dest = args.out.as_ref().map_or("stdout".to_owned(), |p| p.display().to_string());
    eprintln!("Exported {} events to {dest}.", thousands(written));
    if let Some(e) = ended.source_error {
        return fail(exit::SOURCE, &e);
    }
    if ended.malformed_count > 0 {
        return fail(
            exit::SOURCE,
            &format!("{} source entries were not events and were skipped", ended.malformed_count),
        );
    }
    if cancel.is_cancelled() {
        return exit::INTERRUPTED;
    }
    exit::OK
}

fn status(args: &StatusArgs, file: &FileConfig) -> u8 {
    let path = match config::ledger_path(args.ledger.as_ref(), file) {
        Ok(p) => p,
        Err(e) => return fail(exit::USAGE, &e),
    };
    let targets = match ledger::read_status(&path, 20) {
        Ok(Some(t)) => t,
        Ok(None) => {
            let msg = format!("No ledger at {} yet: nothing has been replayed with it.", path.display());
            if args.json {
                eprintln!("{msg}")
            } else {
                println!("{msg}")
            }
            return exit::OK;
        }
        Err(e) => return fail(exit::USAGE, &e),
    };
    if args.json {
        let mut text = String::new();
        for t in &targets {
            match serde_json::to_string(t) {
                Ok(line) => {
                    text.push_str(&line);
                    text.push('\n');
                }
                Err(e) => return fail(exit::USAGE, &format!("cannot write the status as JSON: {e}")),
            }
        }
        print_stdout(&text);
        return exit::OK;
    }
    if targets.is_empty() {
        println!("The ledger {} holds no outcomes yet.", path.display());
        return exit::OK;
    }
    let mut text = String::new();
    for t in &targets {
        let url = url::Url::parse(&t.webhook_url).map_or(t.webhook_url.clone(), |u| crate::deliver::display_url(&u));
        text.push_str(&format!("{url} ({})\n", t.event_type));
        text.push_str(&format!(
            "  delivered {}   failed {}   pending {}\n",
            thousands(t.delivered),
            thousands(t.failed),
            thousands(t.pending)
        ));
        for o in &t.open {
            let what = match o.status {
                Status::Failed => "failed ",
                _ => "pending",
            };
            let last = match (o.last_status, &o.last_error) {
                (_, Some(e)) => e.clone(),
                (Some(s), None) => format!("HTTP {s}"),
                (None, None) => "no attempt finished".to_owned(),
            };
            text.push_str(&format!("    {what} {}  after {} attempts: {last}\n", o.event_id, o.attempts));
        }
        let open = t.failed + t.pending;
        if open > t.open.len() as u64 {
            text.push_str(&format!("    … and {} more\n", thousands(open - t.open.len() as u64)));
        }
        if t.failed > 0 {
            text.push_str("  export the failed events: savvy-replay failed --out failed.ndjson\n");
        }
    }
    print_stdout(&text);
    exit::OK
}

fn failed(args: &FailedArgs, file: &FileConfig) -> u8 {
    let path = match config::ledger_path(args.ledger.as_ref(), file) {
        Ok(p) => p,
        Err(e) => return fail(exit::USAGE, &e),
    };
    let mut out = match open_out(args.out.as_ref()) {
        Ok(o) => o,
        Err(e) => return fail(exit::USAGE, &e),
    };
    match ledger::write_failed(&path, args.webhook_url.as_deref(), args.event_type.as_deref(), &mut out) {
        Ok(n) => {
            let dest = args.out.as_ref().map_or("stdout".to_owned(), |p| p.display().to_string());
            eprintln!("Wrote {} failed events to {dest}.", thousands(n));
            exit::OK
        }
        Err(ledger::LedgerError::Io { error, .. }) if is_broken_pipe(&error) => exit::OK,
        Err(e) => fail(exit::USAGE, &e),
    }
}
