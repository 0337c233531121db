//! Printing that never panics. `println!`/`eprintln!` panic when the write fails — a pipe to
//! `head` that has closed, `2>/dev/full` — and a panic in the signal handler's task used to leave
//! Ctrl-C ignored. Everything the program prints goes through here instead, and a failed write is
//! dropped: the reader has gone, so the run carries on silently (SPEC §3, "Output never panics").
//!
//! The crate denies `clippy::print_stdout` / `clippy::print_stderr` outside tests, so a new
//! `println!` cannot slip back in.

use std::io::Write;

/// Write `text` to stderr around the progress bar; a failed write is ignored.
pub fn stderr(text: &str) {
    let _ = crate::progress::write_stderr(text.as_bytes());
}

/// Write `text` to stdout and flush it; a failed write (a closed pipe, a full disk) is ignored.
pub fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// `eprintln!` that never panics: a line on stderr, dropped when stderr cannot be written.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::console::stderr(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `println!` that never panics: a line on stdout, dropped when stdout cannot be written.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::console::stdout(&format!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, outln};
