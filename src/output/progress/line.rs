//! One frame of the progress bar, laid out to fit: a pure function of a [`Snapshot`] of the counters.
//!
//! Every frame is drawn from one [`Snapshot`]: each counter is read once and every number on the
//! line derives from those reads, so a frame's counts always agree (done = delivered + failed +
//! skipped). The line is laid out by [`line()`], a pure function tested for width: it fits in 80
//! columns (less on a narrower terminal) by dropping its least useful parts first.

use std::time::Duration;

use indicatif::HumanCount;

use crate::output::estimate::Estimate;
use crate::pacing::RateMode;

/// The counters as one frame of the bar sees them: each read once.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Snapshot {
    pub selected: u64,
    pub skipped: u64,
    pub delivered: u64,
    pub failed: u64,
    pub retrying: u64,
    pub attempts: u64,
    /// The source is read to the end.
    pub exhausted: bool,
    /// How much of the source has been read, when that can be told.
    pub fraction: Option<f64>,
    /// The pace requests are held to (requests per second), when there is one.
    pub rate: Option<f64>,
    /// What sets that pace.
    pub mode: RateMode,
    pub pause: Option<Pause>,
}

impl Snapshot {
    /// Events finished: delivered, failed, or delivered in an earlier run.
    pub fn done(&self) -> u64 {
        self.delivered + self.failed + self.skipped
    }
}

/// Why the pool is holding.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pause {
    /// The receiver sent `Retry-After`; this much of it is left.
    RetryAfter(Duration),
    /// The receiver stopped answering as a whole, this long ago; one probe at a time until it is
    /// back.
    Outage(Duration),
}

/// The widest the line gets, whatever the terminal (it fits in 80 columns).
pub const MAX_WIDTH: usize = 80;
/// A bar narrower than this says nothing: leave it out.
const BAR_MIN: usize = 10;
const BAR_MAX: usize = 30;
const GAP: &str = "  ";

/// One part of the line; `rank` 0 is the last to go when the line is too long.
struct Part {
    text: String,
    rank: u8,
    style: Option<console::Style>,
}

/// The progress line for one frame, at most `width` columns. `measured` is the request rate seen
/// over the last seconds, shown when requests are not paced. With `color`, parts are styled (the
/// caller decides: only on a terminal that wants colours).
pub fn line(s: &Snapshot, est: Option<Estimate>, measured: f64, width: usize, color: bool) -> String {
    let width = width.min(MAX_WIDTH);
    let done = s.done();
    let tilde = |exact: bool| if exact { "" } else { "~" };
    let mut parts = Vec::new();
    let mut add = |text: String, rank: u8, style: Option<console::Style>| parts.push(Part { text, rank, style });
    match est {
        Some(e) => {
            add(format!("{}/{}{}", HumanCount(done), tilde(e.exact), HumanCount(e.total)), 0, None);
            if let Some(pct) = done.min(e.total).saturating_mul(100).checked_div(e.total) {
                add(format!("{pct}%"), 9, None);
            }
            if let Some(eta) = e.eta {
                add(format!("ETA {}{}", tilde(e.exact), short_duration(eta)), 2, None);
            }
        }
        None => add(format!("{} done", HumanCount(done)), 0, None),
    }
    add(format!("delivered {}", HumanCount(s.delivered)), 5, None);
    if s.failed > 0 {
        add(format!("failed {}", HumanCount(s.failed)), 3, Some(console::Style::new().red()));
    } else {
        add("failed 0".to_owned(), 8, None);
    }
    if s.retrying > 0 {
        add(format!("retrying {}", HumanCount(s.retrying)), 4, Some(console::Style::new().yellow()));
    }
    if s.skipped > 0 {
        add(format!("skipped {}", HumanCount(s.skipped)), 7, None);
    }
    match s.pause {
        Some(Pause::RetryAfter(left)) => {
            // Rounded up: a pause still on never reads "0s".
            let left = Duration::from_secs(left.as_secs() + u64::from(left.subsec_nanos() > 0));
            add(format!("paused: Retry-After {}", short_duration(left)), 1, Some(console::Style::new().yellow()))
        }
        Some(Pause::Outage(d)) => {
            add(format!("paused: outage {}", short_duration(d)), 1, Some(console::Style::new().yellow()))
        }
        None => {
            let rate = rate_text(s.rate.unwrap_or(measured));
            let rate = match s.mode {
                RateMode::Auto => format!("auto {rate}"),
                RateMode::Fixed(_) => rate,
            };
            add(rate, 3, None)
        }
    }
    // Drop the least useful parts until the rest fits.
    let fits = |parts: &[Part]| {
        let text: usize = parts.iter().map(|p| p.text.chars().count()).sum();
        text + GAP.len() * parts.len().saturating_sub(1) <= width
    };
    while !fits(&parts) && parts.len() > 1 {
        let worst = parts.iter().enumerate().max_by_key(|(i, p)| (p.rank, *i)).map_or(0, |(i, _)| i);
        parts.remove(worst);
    }
    let used: usize =
        parts.iter().map(|p| p.text.chars().count()).sum::<usize>() + GAP.len() * parts.len().saturating_sub(1);
    let mut out = String::new();
    // The bar takes the room that is left, when there is enough of it for a bar to mean something.
    if let Some(e) = est
        && e.total > 0
        && width.saturating_sub(used + GAP.len()) >= BAR_MIN
    {
        let cells = (width - used - GAP.len()).min(BAR_MAX);
        let filled = ((done.min(e.total) as f64 / e.total as f64) * cells as f64).floor() as usize;
        let (full, empty) = ("━".repeat(filled), "─".repeat(cells - filled));
        if color {
            out.push_str(&format!(
                "{}{}",
                console::Style::new().cyan().force_styling(true).apply_to(full),
                console::Style::new().blue().force_styling(true).apply_to(empty)
            ));
        } else {
            out.push_str(&full);
            out.push_str(&empty);
        }
        out.push_str(GAP);
    }
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(GAP);
        }
        match (&p.style, color) {
            (Some(style), true) => out.push_str(&style.clone().force_styling(true).apply_to(&p.text).to_string()),
            _ => out.push_str(&p.text),
        }
    }
    // A single part wider than the line (a huge count on a tiny terminal): cut it.
    if console::measure_text_width(&out) > width {
        return console::truncate_str(&console::strip_ansi_codes(&out), width, "").into_owned();
    }
    out
}

/// A rate for the line: `100 req/s`, `2.5 req/s`, `30 req/min`, `50 req/h`.
pub fn rate_text(per_sec: f64) -> String {
    let (n, unit) = if per_sec >= 1.0 || per_sec <= 0.0 {
        (per_sec.max(0.0), "s")
    } else if per_sec * 60.0 >= 1.0 {
        (per_sec * 60.0, "min")
    } else {
        (per_sec * 3600.0, "h")
    };
    if n < 10.0 && (n - n.round()).abs() >= 0.05 {
        format!("{n:.1} req/{unit}")
    } else {
        format!("{} req/{unit}", HumanCount(n.round() as u64))
    }
}

/// `41s`, `12m30s`, `3h05m`, `4d07h`: short enough for the line.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs() + u64::from(d.subsec_millis() >= 500);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn width(s: &str) -> usize {
        console::measure_text_width(s)
    }

    fn est(total: u64, exact: bool, eta_secs: Option<u64>) -> Option<Estimate> {
        Some(Estimate { total, exact, eta: eta_secs.map(Duration::from_secs) })
    }

    #[test]
    fn a_typical_frame_reads_at_a_glance() {
        let s = Snapshot { selected: 2000, delivered: 1696, failed: 51, rate: Some(100.0), ..Snapshot::default() };
        let l = line(&s, est(6000, false, Some(41)), 97.0, 79, false);
        assert!(l.contains("1,747/~6,000"), "{l}");
        assert!(l.contains("ETA ~41s") && l.contains("delivered 1,696") && l.contains("failed 51"), "{l}");
        assert!(l.contains("100 req/s"), "{l}");
        assert!(width(&l) <= 79, "{l}");
        // Exact once the source is read: no `~`.
        let l = line(&s, est(6000, true, Some(41)), 97.0, 79, false);
        assert!(l.contains("1,747/6,000") && l.contains("ETA 41s"), "{l}");
    }

    /// A frame once seen: `1,747 done` next to `delivered 1,696` with 0 failed. From one
    /// snapshot, done is delivered + failed + skipped, always.
    #[test]
    fn the_counts_on_a_frame_agree() {
        let s = Snapshot { delivered: 1696, failed: 0, skipped: 51, ..Snapshot::default() };
        let l = line(&s, None, 0.0, 200, false);
        assert!(l.starts_with("1,747 done") && l.contains("delivered 1,696") && l.contains("skipped 51"), "{l}");
    }

    #[test]
    fn a_paused_pool_says_why() {
        let s = Snapshot { pause: Some(Pause::RetryAfter(Duration::from_secs(12))), ..Snapshot::default() };
        assert!(line(&s, None, 0.0, 79, false).contains("paused: Retry-After 12s"));
        let s = Snapshot { pause: Some(Pause::Outage(Duration::from_secs(75))), retrying: 8, ..Snapshot::default() };
        assert!(line(&s, est(10, false, None), 0.0, 79, false).contains("paused: outage 1m15s"));
        let s = Snapshot { rate: Some(187.4), mode: RateMode::Auto, ..Snapshot::default() };
        assert!(line(&s, None, 0.0, 79, false).contains("auto 187 req/s"));
        let s = Snapshot { pause: Some(Pause::RetryAfter(Duration::from_millis(200))), ..Snapshot::default() };
        assert!(line(&s, None, 0.0, 79, false).contains("paused: Retry-After 1s"));
    }

    /// Every frame fits, whatever the counts, and on narrow terminals too; colours do not count.
    #[test]
    fn no_frame_is_wider_than_the_line() {
        let big = 123_456_789_012u64;
        for n in [0, 7, 1_747, 99_999, 1_234_567, big] {
            for pause in [
                None,
                Some(Pause::Outage(Duration::from_secs(600))),
                Some(Pause::RetryAfter(Duration::from_secs(3600))),
            ] {
                let s = Snapshot {
                    selected: n,
                    skipped: n,
                    delivered: n,
                    failed: n,
                    retrying: n,
                    attempts: n,
                    rate: Some(12_345.0),
                    mode: RateMode::Auto,
                    pause,
                    ..Snapshot::default()
                };
                for e in [None, est(n * 4, false, Some(n)), est(n * 4, true, Some(100 * 86_400))] {
                    for w in [20, 40, 79, 80, 200] {
                        for color in [false, true] {
                            let l = line(&s, e, 0.0, w, color);
                            assert!(width(&l) <= w.min(MAX_WIDTH), "{w}: {l}");
                            assert!(!l.contains('\n'));
                            if !color {
                                assert!(!l.contains('\u{1b}'), "{l}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn no_colour_codes_unless_asked() {
        let s = Snapshot { failed: 3, retrying: 2, ..Snapshot::default() };
        assert!(!line(&s, est(10, false, Some(5)), 0.0, 79, false).contains('\u{1b}'));
        assert!(line(&s, est(10, false, Some(5)), 0.0, 79, true).contains('\u{1b}'));
    }

    #[test]
    fn rates_and_durations_read_short() {
        assert_eq!(rate_text(100.0), "100 req/s");
        assert_eq!(rate_text(2.5), "2.5 req/s");
        assert_eq!(rate_text(1500.0), "1,500 req/s");
        assert_eq!(rate_text(0.5), "30 req/min");
        assert_eq!(rate_text(50.0 / 3600.0), "50 req/h");
        assert_eq!(rate_text(0.0), "0 req/s");
        assert_eq!(short_duration(Duration::from_millis(41_400)), "41s");
        assert_eq!(short_duration(Duration::from_secs(750)), "12m30s");
        assert_eq!(short_duration(Duration::from_secs(3 * 3600 + 300)), "3h05m");
        assert_eq!(short_duration(Duration::from_secs(4 * 86_400 + 7 * 3600)), "4d07h");
    }
}
