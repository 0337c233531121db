//! The `savvy-replay` binary: parse the command line and hand over to the library.

fn main() -> std::process::ExitCode {
    savvy_replay::main(std::env::args_os().collect())
}
