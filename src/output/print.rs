//! Printing that never panics, and fits the terminal. `println!`/`eprintln!` panic when the write
//! fails — a pipe to `head` that has closed, `2>/dev/full` — and a panic in the signal handler's
//! task used to leave Ctrl-C ignored. Everything the program prints goes through here instead, and
//! a failed write is dropped: the reader has gone, so the run carries on silently.
//!
//! Messages for people are written the way cargo writes them: the fact on one short line, detail
//! on indented lines below. A line longer than the terminal is wrapped here, at spaces, to the
//! terminal's width, continuing two columns further in than it started, so it never breaks
//! mid-word and never pushes the progress bar around. Nothing is wrapped when the stream is not a
//! terminal: a log file or a pipe gets each message on its one line, for `grep`.
//!
//! The crate denies `clippy::print_stdout` / `clippy::print_stderr` outside tests, so a new
//! `println!` cannot slip back in.

use std::io::Write;

/// Write the message `text` to stderr around the progress bar, wrapped to the terminal; a failed
/// write is ignored.
pub fn stderr(text: &str) {
    let text = wrap(text, width(&console::Term::stderr()));
    let _ = crate::output::progress::write_stderr(text.as_bytes());
}

/// Write `text` to stderr as it is (a request shown byte for byte); a failed write is ignored.
pub fn stderr_verbatim(text: &str) {
    let _ = crate::output::progress::write_stderr(text.as_bytes());
}

/// Write `text` to stdout as it is and flush it (JSON, a completion script, an exported request); a
/// failed write (a closed pipe, a full disk) is ignored.
pub fn stdout(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Write the message `text` to stdout, wrapped when stdout is a terminal.
pub fn stdout_message(text: &str) {
    stdout(&wrap(text, width(&console::Term::stdout())));
}

/// The width of `term` in columns, or `None` when it is not a terminal (nothing is wrapped then).
pub fn width(term: &console::Term) -> Option<usize> {
    if !term.is_term() {
        return None;
    }
    term.size_checked().map(|(_, cols)| usize::from(cols)).filter(|w| *w >= 20)
}

/// `text` with every line wider than `width` columns broken at spaces. The pieces after the first
/// are indented two columns more than the line was, so they read as its continuation. A word wider
/// than the line (a long URL) is kept whole on a line of its own: broken, it could not be copied.
/// Display width is measured as the terminal shows it: escape sequences take no room, and wide
/// characters take two columns.
pub fn wrap(text: &str, width: Option<usize>) -> String {
    let Some(width) = width else { return text.to_owned() };
    let mut out = String::with_capacity(text.len() + text.len() / 40);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if console::measure_text_width(line) <= width {
            out.push_str(line);
            continue;
        }
        let indent = line.len() - line.trim_start_matches(' ').len();
        let hang = " ".repeat((indent + 2).min(width / 2));
        let mut used = 0usize;
        out.push_str(&line[..indent]);
        used += indent;
        let mut first = true;
        for word in line[indent..].split(' ').filter(|w| !w.is_empty()) {
            let w = console::measure_text_width(word);
            if !first && used + 1 + w > width {
                out.push('\n');
                out.push_str(&hang);
                used = hang.len();
            } else if !first {
                out.push(' ');
                used += 1;
            }
            out.push_str(word);
            used += w;
            first = false;
        }
    }
    out
}

/// `eprintln!` that never panics: a message line on stderr, wrapped to the terminal, dropped when
/// stderr cannot be written.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::output::print::stderr(&format!("{}\n", format_args!($($arg)*)))
    };
}

/// `println!` that never panics: a message line on stdout, wrapped to the terminal, dropped when
/// stdout cannot be written.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::output::print::stdout_message(&format!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {errln, outln};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_break_at_spaces_and_continue_indented() {
        let line = "  no signing secret: the API returned none, so requests go unsigned unless one is given";
        let wrapped = wrap(line, Some(40));
        for l in wrapped.lines() {
            assert!(console::measure_text_width(l) <= 40, "{l:?} in {wrapped:?}");
        }
        let lines: Vec<&str> = wrapped.lines().collect();
        assert!(lines[0].starts_with("  no ") && lines[1].starts_with("    ") && !lines[1].starts_with("     "));
        // Nothing is lost or broken inside a word.
        let words = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(words(&wrapped), words(line));
    }

    #[test]
    fn short_lines_words_too_long_and_no_terminal_are_left_alone() {
        assert_eq!(wrap("short\n  also short\n", Some(40)), "short\n  also short\n");
        let url = format!("see https://example.com/{}", "x".repeat(60));
        assert_eq!(wrap(&url, Some(40)), format!("see\n  https://example.com/{}", "x".repeat(60)));
        let long = "word ".repeat(40);
        assert_eq!(wrap(&long, None), long);
        // Colours take no room.
        let red = format!("\u{1b}[31m{}\u{1b}[0m", "a".repeat(39));
        assert_eq!(wrap(&red, Some(40)), red);
    }
}
