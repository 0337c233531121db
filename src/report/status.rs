//! The `status` subcommand's text: what the ledger holds per target, with the events still open
//! and how to export the failed ones.

use std::path::Path;

use indicatif::HumanCount;

use crate::error::AppError;
use crate::ledger::{Status, TargetStatus};
use crate::output::hint;
use crate::output::print::{errln, outln};
use crate::words;

/// Print what the ledger at `path` holds (`None`: there is no ledger yet), as text or as JSON
/// lines.
pub fn print(path: &Path, targets: Option<&[TargetStatus]>, json: bool) -> Result<(), AppError> {
    let targets = match targets {
        Some(t) => t,
        None => {
            let msg = format!("No ledger at {} yet: nothing has been replayed with it.", path.display());
            if json {
                errln!("{msg}")
            } else {
                outln!("{msg}")
            }
            return Ok(());
        }
    };
    if json {
        let mut text = String::new();
        for t in targets {
            text.push_str(&serde_json::to_string(t).map_err(AppError::Json)?);
            text.push('\n');
        }
        crate::output::print::stdout(&text);
        return Ok(());
    }
    if targets.is_empty() {
        outln!("The ledger {} holds no outcomes yet.", path.display());
        return Ok(());
    }
    let mut text = String::new();
    for t in targets {
        let url = url::Url::parse(&t.webhook_url).map_or(t.webhook_url.clone(), |u| crate::deliver::display_url(&u));
        text.push_str(&format!("{url} ({})\n", t.event_type));
        text.push_str(&format!(
            "  delivered {}   failed {}   pending {}\n",
            HumanCount(t.delivered),
            HumanCount(t.failed),
            HumanCount(t.pending)
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
            // Older runs stored the count in the error too; the line says it once.
            let last = strip_gave_up(&last);
            let attempts = words::count(u64::from(o.attempts), "attempt", "attempts");
            text.push_str(&format!("    {what} {}  after {attempts}: {last}\n", o.event_id));
        }
        let open = t.failed + t.pending;
        if open > t.open.len() as u64 {
            text.push_str(&format!("    … and {} more\n", HumanCount(open - t.open.len() as u64)));
        }
        if t.failed > 0 {
            // With more than one target, `failed` needs to be told which one.
            let target = (targets.len() > 1).then_some((t.webhook_url.as_str(), t.event_type.as_str()));
            text.push_str(&format!("  export the failed events: {}\n", hint::failed(path, target, true)));
        }
    }
    crate::output::print::stdout_message(&text);
    Ok(())
}

/// `last_error` without a trailing "(gave up after N attempts)": `status` says how many attempts.
fn strip_gave_up(last: &str) -> &str {
    match last.rfind(" (gave up after ") {
        Some(i) if last.ends_with(')') => &last[..i],
        _ => last,
    }
}
