//! The `--dry-run` report in words: where events come from, what the webhook lookup took, the
//! count, the ETA at the chosen pace, and one sample request exactly as it would go out.

use std::time::Duration;

use indicatif::HumanCount;

use crate::pacing::RateMode;

/// Where the sample request starts in the report: what follows is shown as it would be sent.
pub const SAMPLE_HEADING: &str = "\nThe first request, as it would be sent:\n\n";

/// What `--dry-run` found, for its human report.
pub struct DryRun<'a> {
    /// Where the events were read from (with the account the token belongs to, for the API).
    pub from: &'a str,
    /// What the webhook lookup found and the run took from it: it explains the counts below.
    pub webhook: Option<&'a str>,
    /// Where they would go.
    pub target: &'a str,
    pub selected: u64,
    /// Already delivered to this webhook.
    pub skipped: u64,
    pub to_send: u64,
    pub rate: RateMode,
    /// Where `--rate auto` would start (the rate the last run settled on), if known.
    pub auto_start: Option<f64>,
    pub concurrency: usize,
    /// The first request, as it would be sent.
    pub sample: Option<&'a str>,
}

impl DryRun<'_> {
    /// The dry-run report: counts, the ETA and the first request.
    pub fn text(&self) -> String {
        let mut text = format!("Dry run: nothing was sent.\nRead from {}.\n", self.from);
        if let Some(line) = self.webhook {
            text.push_str(line);
            text.push('\n');
        }
        text.push_str(&format!(
            "{} events selected; {} already delivered to this webhook; {} to send to {}.\n",
            HumanCount(self.selected),
            HumanCount(self.skipped),
            HumanCount(self.to_send),
            self.target,
        ));
        text.push_str(&self.eta_line());
        match self.sample {
            Some(s) => {
                text.push_str(SAMPLE_HEADING);
                text.push_str(s);
                text.push('\n');
            }
            None => text.push_str("\nNothing to send.\n"),
        }
        text
    }

    /// The ETA at `--rate` (requests may not all be first attempts, so this is a lower bound).
    fn eta_line(&self) -> String {
        let rate = match self.rate {
            RateMode::Auto => {
                let start = match self.auto_start {
                    Some(r) => format!("from {}, where the last run to this webhook settled", crate::words::per_sec(r)),
                    None => "gently".to_owned(),
                };
                return format!(
                    "--rate auto finds the receiver's capacity: the time depends on it.\n  it starts {start}, with \
                     --concurrency {} at most.\n",
                    self.concurrency
                );
            }
            RateMode::Fixed(rate) => rate,
        };
        match rate.get() {
            Some(r) => {
                let secs = (self.to_send as f64 / r).ceil();
                format!(
                    "At --rate {} with --concurrency {}: about {}.\n  longer if the receiver is slower or asks for retries.\n",
                    // As the user wrote it: 50/h read as 0.0139/s would be a riddle.
                    rate,
                    self.concurrency,
                    humantime::format_duration(Duration::from_secs(secs as u64))
                )
            }
            None => format!(
                "--rate is unlimited: with --concurrency {} the time depends on how fast the receiver answers.\n",
                self.concurrency
            ),
        }
    }
}
