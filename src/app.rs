//! The subcommands: each turns parsed arguments into work and an exit status.
//!
//! Errors surface here once, as `Error: …` on stderr with their exit status
//! ([`crate::error::exit_code`]): 0 all delivered, 1 some failed, 2 usage or configuration, 3 the
//! source failed, 4 the webhook was unreachable, 130 interrupted.

use crate::output::print::errln;
use std::io::Write;
use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Command, ExportArgs, FailedArgs, StatusArgs};
use crate::config::{self, ParseError};
use crate::error::{AppError, Ending, exit_code};
use crate::ledger;
use crate::report::{Kept, is_broken_pipe, open_out, print_report};
use crate::run::signal::spawn_signal_handler;
use crate::words;

use crate::run::producer;

/// Run the command line `argv` (with the `--config` file it names); never panics on input,
/// returns the process exit status.
pub fn main(argv: Vec<std::ffi::OsString>) -> ExitCode {
    let cli = match config::parse(argv) {
        Ok(cli) => cli,
        // clap prints usage errors, --help and --version itself, with its own exit status (2 or 0).
        Err(ParseError::Usage(e)) => e.exit(),
        Err(ParseError::Config(e)) => return ExitCode::from(fail(&e.into())),
    };
    // A replay runs on one thread: its workers and the ledger writer hand work to each other
    // every event, and on another thread each hand-off is a context switch (measured in
    // `docs/performance.md`). Only the producer has a thread of its own, and hands over a batch
    // of events at a time; the journal's folds run on blocking threads. The other commands keep
    // a thread per core: `sink` and `demo` serve HTTP, and `demo` runs the fake servers beside
    // the replay.
    let mut builder = match cli.command {
        Command::Run(_) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    let code = match builder.enable_all().build() {
        Ok(runtime) => {
            let result = runtime.block_on(dispatch(cli));
            // Do not wait for stray tasks (a blocked stdin reader, say).
            runtime.shutdown_background();
            result
        }
        Err(e) => Err(AppError::Runtime(e)),
    };
    ExitCode::from(code.unwrap_or_else(|e| fail(&e)))
}

/// The one place an error ends the process: `Error: …` on stderr, and its exit status.
fn fail(e: &AppError) -> u8 {
    errln!("Error: {e}");
    exit_code(Ending::Error(e))
}

async fn dispatch(cli: Cli) -> Result<u8, AppError> {
    let global = cli.global;
    init_logging(global.verbose, global.quiet);
    match cli.command {
        Command::Run(args) => run(config::run_config(&args, &global)?).await,
        Command::Export(args) => export(&args, global.quiet).await,
        // Both read SQLite and write files: blocking work, off the async threads.
        Command::Status(args) => blocking(move || status(&args)).await?,
        Command::Failed(args) => blocking(move || failed(&args)).await?,
        Command::Demo(args) => crate::demo::demo(&args, &global).await,
        Command::Sink(args) => crate::demo::sink(&args, &global).await,
        Command::Completions { shell } => {
            // Built in a buffer first: `generate` panics when its writer fails (`| head`).
            crate::output::print::stdout(&completion_script(shell));
            Ok(exit_code(Ending::Done))
        }
    }
}

/// The completion script for `shell`, from the same definition as the parser.
fn completion_script(shell: clap_complete::Shell) -> String {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut config::command(), "savvy-replay", &mut out);
    let script = String::from_utf8_lossy(&out).into_owned();
    // Workaround for clap-rs/clap#6421 (also #6529): for a binary name with a hyphen, clap_complete's
    // bash script sets `cmd="savvy__replay__subcmd__run"` but matches `savvy__subcmd__replay__subcmd__run)`,
    // so no subcommand's flags complete. Rename the case labels to what `cmd` holds. Remove once the
    // upstream fix is released (the test `bash_completes_run_flags` will keep passing either way).
    match shell {
        clap_complete::Shell::Bash => script.replace("savvy__subcmd__replay", "savvy__replay"),
        _ => script,
    }
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
        // Colour codes only on a terminal that wants them: a log file (`2>run.log`) stays plain.
        .with_ansi(console::colors_enabled_stderr())
        .with_writer(|| BarAwareStderr)
        // Its internal errors go to `eprintln!`, which panics once stderr is closed.
        .log_internal_errors(false)
        .try_init();
}

/// stderr around the progress bar. A failed write is swallowed: the reader has gone (`| head`,
/// `2>/dev/full`) and the run carries on without its logs.
struct BarAwareStderr;

impl Write for BarAwareStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = crate::output::progress::write_stderr(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

/// `f` on tokio's blocking threads. A panic there (a bug) ends the command with an error.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, AppError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| AppError::Runtime(std::io::Error::other(e)))
}

async fn run(cfg: config::RunConfig) -> Result<u8, AppError> {
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let json = cfg.json;
    let quiet = cfg.quiet;
    let kept = Kept {
        ledger: cfg.ledger.clone(),
        webhook_key: ledger::target_key(&cfg.webhook_url),
        event_type: cfg.event_type.clone(),
    };
    let report = crate::run::run(cfg, cancel).await?;
    print_report(&report, json, quiet, Some(&kept));
    Ok(report.exit_code())
}

async fn export(args: &ExportArgs, quiet: bool) -> Result<u8, AppError> {
    let source_cfg = config::source_config(&args.source)?;
    let sel = config::selection(&args.select)?;
    let cancel = CancellationToken::new();
    spawn_signal_handler(cancel.clone());
    let source =
        producer::open_source(&source_cfg, Default::default(), std::time::Duration::from_secs(30), &cancel, !quiet)
            .await?;
    let out_path = args.out.clone();
    let mut out = blocking(move || open_out(out_path.as_ref())).await??;
    let counters = std::sync::Arc::new(crate::output::progress::Counters::default());
    let (events, producer) =
        producer::spawn_producer(source, sel, config::Resume::Fresh, None, counters, 256, cancel.clone());
    // The file (or stdout) is written on a blocking thread, fed by the producer's channel.
    let written = blocking(move || -> Result<Option<u64>, AppError> {
        let mut written = 0u64;
        while let Ok(ev) = events.recv_blocking() {
            if let Err(e) = out.write_all(&ev.raw).and_then(|()| out.write_all(b"\n")) {
                return if is_broken_pipe(&e) { Ok(None) } else { Err(AppError::Write { what: "export", error: e }) };
            }
            written += 1;
        }
        match out.flush() {
            Err(e) if !is_broken_pipe(&e) => Err(AppError::Write { what: "export", error: e }),
            _ => Ok(Some(written)),
        }
    })
    .await??;
    // A closed pipe (`| head`): the reader has all it wants.
    let Some(written) = written else { return Ok(exit_code(Ending::Done)) };
    let ended = producer::produced(producer).await;
    let dest = args.out.as_ref().map_or("stdout".to_owned(), |p| p.display().to_string());
    if !quiet {
        errln!("Exported {} to {dest}.", words::count(written, "event", "events"));
    }
    if let Some(e) = ended.source_error {
        return Err(e.into());
    }
    crate::report::print_undated(&ended.undated);
    if ended.malformed_count > 0 {
        return Err(AppError::Malformed(ended.malformed_count));
    }
    if ended.undated.count > 0 {
        return Ok(exit_code(Ending::Unreadable));
    }
    Ok(exit_code(if cancel.is_cancelled() { Ending::Interrupted } else { Ending::Done }))
}

fn status(args: &StatusArgs) -> Result<u8, AppError> {
    let targets = ledger::read_status(&args.ledger, 20)?;
    crate::report::status::print(&args.ledger, targets.as_deref(), args.json)?;
    Ok(exit_code(Ending::Done))
}

fn failed(args: &FailedArgs) -> Result<u8, AppError> {
    let path = &args.ledger;
    let mut out = open_out(args.out.as_ref())?;
    match ledger::write_failed(path, args.webhook_url.as_deref(), args.event_type.as_deref(), &mut out) {
        Ok(n) => {
            let dest = args.out.as_ref().map_or("stdout".to_owned(), |p| p.display().to_string());
            errln!("Wrote {} to {dest}.", words::count(n, "failed event", "failed events"));
            Ok(exit_code(Ending::Done))
        }
        Err(ledger::LedgerError::Io { error, .. }) if is_broken_pipe(&error) => Ok(exit_code(Ending::Done)),
        Err(e) => Err(e.into()),
    }
}
