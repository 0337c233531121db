//! The `savvy-replay` binary: parse the command line and hand over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    savvy_replay::main(savvy_replay::Cli::parse())
}
