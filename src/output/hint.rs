//! Commands the tool suggests (in `status`, the summary, errors), written so they can be pasted
//! as they are: they name the ledger when it is not the default, the webhook and event type when
//! the command needs the target, and quote every word that a shell would otherwise split or expand.

use std::path::Path;

use crate::event::DEFAULT_EVENT_TYPE;
use crate::ledger::DEFAULT_LEDGER;

/// `savvy-replay` followed by `words`, each quoted for a POSIX shell where it needs it.
pub fn command<S: AsRef<str>>(words: &[S]) -> String {
    let mut line = String::from("savvy-replay");
    for w in words {
        let w = w.as_ref();
        line.push(' ');
        // Only a NUL cannot be quoted, and no path or URL given on a command line holds one.
        line.push_str(&shlex::try_quote(w).unwrap_or_else(|_| w.into()));
    }
    line
}

/// `--ledger PATH`, unless `path` is the default ledger.
fn ledger_words(path: &Path) -> Vec<String> {
    if path == Path::new(DEFAULT_LEDGER) {
        Vec::new()
    } else {
        vec!["--ledger".to_owned(), path.to_string_lossy().into_owned()]
    }
}

/// `savvy-replay status` for the ledger at `path`.
pub fn status(path: &Path) -> String {
    command(&[vec!["status".to_owned()], ledger_words(path)].concat())
}

/// `savvy-replay failed … --out failed.ndjson`: the failed events of the ledger at `path`, of
/// the target `(webhook_url, event_type)` when given (as the ledger keys it, so a password in the
/// URL is not repeated). The event type is named when it is not the default, or `always`.
pub fn failed(path: &Path, target: Option<(&str, &str)>, always_type: bool) -> String {
    let mut words = vec!["failed".to_owned()];
    words.extend(ledger_words(path));
    if let Some((url, event_type)) = target {
        words.extend(["--webhook-url".to_owned(), url.to_owned()]);
        if always_type || event_type != DEFAULT_EVENT_TYPE {
            words.extend(["--event-type".to_owned(), event_type.to_owned()]);
        }
    }
    words.extend(["--out".to_owned(), "failed.ndjson".to_owned()]);
    command(&words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_a_shell_would_split_or_expand_are_quoted() {
        assert_eq!(status(Path::new(DEFAULT_LEDGER)), "savvy-replay status");
        assert_eq!(status(Path::new("l2.db")), "savvy-replay status --ledger l2.db");
        let line =
            failed(Path::new("my ledgers/$HOME's.db"), Some(("https://h.example/a?b=1&c=2", "event.created")), false);
        let words = shlex::split(&line).unwrap();
        assert_eq!(
            words,
            [
                "savvy-replay",
                "failed",
                "--ledger",
                "my ledgers/$HOME's.db",
                "--webhook-url",
                "https://h.example/a?b=1&c=2",
                "--out",
                "failed.ndjson"
            ]
        );
        assert!(
            failed(Path::new(DEFAULT_LEDGER), Some(("u", "event.changed")), false)
                .contains("--event-type event.changed")
        );
    }
}
