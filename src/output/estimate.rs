//! The total and the ETA, estimated from the start of a run.
//!
//! A run does not know how many events it will send until the source is exhausted: the API pages
//! through a history whose size it never states, and a file is read as it goes. Waiting for the
//! last page put the ETA in a run's final half-second. Instead the producer reports how far
//! through the source it is, as a fraction:
//!
//! * a file: the bytes read against the file's size ([`byte_fraction`]);
//! * the API: how far `created_at` has advanced from the first event towards the end of the
//!   selection, `--created-before` or now ([`time_fraction`]).
//!
//! The API's fraction assumes bookings were created at a steady pace up to the end of the
//! selection. `--created-before` (given, or the webhook's `created_at`) is taken as that end. Now is
//! only an upper bound: a history may have ended months ago, and extrapolating to now overstated a
//! run's total threefold. With no bound, the end is assumed to lie, on a log scale, halfway between
//! now and where the history would end if it went on as long again as what has been read
//! ([`toward_now`]); once half of the span to now has been read, now is taken as the end.
//!
//! The events selected so far over that fraction is the estimated total; the remaining events over
//! the recent delivery speed is the ETA ([`Estimator`]). Both are pure: the progress bar feeds
//! them readings with their time and shows what they say, so they are unit-tested without a clock.

use std::collections::VecDeque;
use std::time::Duration;

use jiff::Timestamp;

/// How much of a file has been read: `read` bytes of `size`. `None` when the size is unknown
/// (stdin, a pipe) or empty.
pub fn byte_fraction(read: u64, size: Option<u64>) -> Option<f64> {
    let size = size.filter(|s| *s > 0)?;
    Some((read as f64 / size as f64).clamp(0.0, 1.0))
}

/// How far the API's history has been read: `created_at` has advanced from `first` (the first
/// selected event's) to `latest` (the furthest seen), out of the span from `first` to `end`
/// (`--created-before`, or now). `None` until that span is known and positive.
pub fn time_fraction(first: Timestamp, latest: Timestamp, end: Timestamp) -> Option<f64> {
    let span = end.as_millisecond().checked_sub(first.as_millisecond())?;
    if span <= 0 {
        return None;
    }
    let done = latest.as_millisecond().saturating_sub(first.as_millisecond());
    Some((done as f64 / span as f64).clamp(0.0, 1.0))
}

/// The fraction read of a history bounded only by now, from `f`, the fraction of the span up to
/// now: the geometric mean of `f` (the history goes on until now) and `f / 2` (it goes on as long
/// again as what has been read), and `f` itself past half of the span.
pub fn toward_now(f: f64) -> f64 {
    (f * f.max(0.5)).sqrt()
}

/// The API's progress through time: the first selected event's `created_at`, the furthest seen
/// since, and the end of the selection. Pages come ordered by start time, not creation, so the
/// furthest `created_at` is kept (progress never runs backwards).
#[derive(Debug, Clone, Copy)]
pub struct TimeProgress {
    first: Option<Timestamp>,
    latest: Option<Timestamp>,
    end: Timestamp,
    /// `end` is now, an upper bound rather than the end of the history.
    open: bool,
}

impl TimeProgress {
    /// Up to `--created-before` (given, or the webhook's `created_at`): the history's end.
    pub fn new(end: Timestamp) -> TimeProgress {
        TimeProgress { first: None, latest: None, end, open: false }
    }

    /// With no bound but `now`, which the history may have ended long before.
    pub fn until_now(now: Timestamp) -> TimeProgress {
        TimeProgress { open: true, ..TimeProgress::new(now) }
    }

    /// A selected event created at `t`.
    pub fn see(&mut self, t: Timestamp) {
        self.first.get_or_insert(t);
        self.latest = Some(self.latest.map_or(t, |l| l.max(t)));
    }

    pub fn fraction(&self) -> Option<f64> {
        let f = time_fraction(self.first?, self.latest?, self.end)?;
        Some(if self.open { toward_now(f) } else { f })
    }
}

/// A fraction in millionths, as the counters hold it (0 there means "not known").
pub fn to_ppm(f: f64) -> u64 {
    if f.is_finite() { (f.clamp(0.0, 1.0) * 1e6).round() as u64 } else { 0 }
}

/// What the bar knows at one moment, read from one snapshot of the counters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Time since the run started.
    pub at: Duration,
    /// Events finished: delivered, failed or skipped (delivered earlier).
    pub done: u64,
    /// Events selected so far.
    pub selected: u64,
    /// How much of the source has been read, if that can be told (see the module docs).
    pub fraction: Option<f64>,
    /// The source is exhausted: `selected` is the total.
    pub exhausted: bool,
    /// `--limit`.
    pub limit: Option<u64>,
    /// The pace requests are held to (requests per second), if any: the speed to assume before
    /// enough deliveries have been seen to measure one.
    pub paced: Option<f64>,
}

/// The estimated total and time left.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub total: u64,
    /// `false` while the total is an estimate (shown with a `~`).
    pub exact: bool,
    /// Time left, when a speed is known.
    pub eta: Option<Duration>,
}

/// Turns readings into estimates. Keeps the last [`Estimator::WINDOW`] of readings to measure
/// the current delivery speed, so a run that speeds up or slows down is followed within seconds.
#[derive(Debug, Default)]
pub struct Estimator {
    samples: VecDeque<(Duration, u64)>,
}

impl Estimator {
    /// How far back the speed is measured.
    pub const WINDOW: Duration = Duration::from_secs(10);
    /// A speed measured over less than this is too noisy to use (the paced rate stands in).
    pub const MIN_SPAN: Duration = Duration::from_secs(1);
    /// No total is extrapolated from less of the source than this…
    pub const MIN_FRACTION: f64 = 0.001;
    /// …or from fewer events.
    pub const MIN_SELECTED: u64 = 10;

    /// The estimate at this reading, or `None` before anything can be said.
    pub fn observe(&mut self, r: Reading) -> Option<Estimate> {
        self.samples.push_back((r.at, r.done));
        while self.samples.len() > 2
            && self.samples.front().is_some_and(|(t, _)| r.at.saturating_sub(*t) > Self::WINDOW)
        {
            self.samples.pop_front();
        }
        // Time before anything finished (connecting, the first page) says nothing about speed.
        while self.samples.len() > 2 && self.samples.get(1).is_some_and(|(_, n)| *n == self.samples[0].1) {
            self.samples.pop_front();
        }
        let (total, exact) = if r.exhausted {
            (r.selected, true)
        } else {
            // Too little read to extrapolate from: a handful of events, or a sliver of the source.
            let f = r.fraction.filter(|f| *f >= Self::MIN_FRACTION && f.is_finite())?;
            if r.selected < Self::MIN_SELECTED {
                return None;
            }
            // Never below what is already known to be there.
            ((r.selected as f64 / f).round() as u64, false)
        };
        let total = match r.limit {
            // Reaching the limit ends the selection: the limit is then the total.
            Some(limit) if total >= limit => return Some(self.finish(r, limit, true)),
            _ => total.max(r.selected).max(r.done),
        };
        Some(self.finish(r, total, exact))
    }

    fn finish(&self, r: Reading, total: u64, exact: bool) -> Estimate {
        let remaining = total.saturating_sub(r.done);
        let eta = if remaining == 0 {
            Some(Duration::ZERO)
        } else {
            self.speed()
                .or(r.paced)
                .filter(|s| *s > 0.0 && s.is_finite())
                .map(|speed| Duration::from_secs_f64((remaining as f64 / speed).min(1e9)))
        };
        Estimate { total, exact, eta }
    }

    /// Events finished per second over the window, when it spans long enough and something finished.
    fn speed(&self) -> Option<f64> {
        let ((t0, n0), (t1, n1)) = (self.samples.front()?, self.samples.back()?);
        let span = t1.saturating_sub(*t0);
        if span < Self::MIN_SPAN || n1 <= n0 {
            return None;
        }
        Some((n1 - n0) as f64 / span.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(at_ms: u64, done: u64, selected: u64, fraction: Option<f64>) -> Reading {
        Reading {
            at: Duration::from_millis(at_ms),
            done,
            selected,
            fraction,
            exhausted: false,
            limit: None,
            paced: None,
        }
    }

    #[test]
    fn fractions_from_bytes_and_from_time() {
        assert_eq!(byte_fraction(250, Some(1000)), Some(0.25));
        assert_eq!(byte_fraction(2000, Some(1000)), Some(1.0));
        assert_eq!(byte_fraction(10, None), None);
        assert_eq!(byte_fraction(10, Some(0)), None);
        let t = |s: &str| s.parse::<Timestamp>().unwrap();
        let f = time_fraction(t("2026-01-01T00:00:00Z"), t("2026-01-04T00:00:00Z"), t("2026-01-11T00:00:00Z"));
        assert!((f.unwrap() - 0.3).abs() < 1e-9);
        // An event older than the first (pages are ordered by start time, not creation): no
        // negative progress; past the end: all of it.
        assert_eq!(
            time_fraction(t("2026-01-02T00:00:00Z"), t("2026-01-01T00:00:00Z"), t("2026-01-03T00:00:00Z")),
            Some(0.0)
        );
        assert_eq!(
            time_fraction(t("2026-01-01T00:00:00Z"), t("2026-02-01T00:00:00Z"), t("2026-01-03T00:00:00Z")),
            Some(1.0)
        );
        // The end at or before the first event: no span to measure against.
        assert_eq!(
            time_fraction(t("2026-01-03T00:00:00Z"), t("2026-01-03T00:00:00Z"), t("2026-01-03T00:00:00Z")),
            None
        );
    }

    #[test]
    fn nothing_to_say_before_the_source_has_advanced() {
        let mut e = Estimator::default();
        assert_eq!(e.observe(reading(0, 0, 0, None)), None);
        assert_eq!(e.observe(reading(100, 0, 5, Some(0.0))), None);
        assert_eq!(e.observe(reading(100, 0, 5, Some(0.5))), None);
        assert_eq!(e.observe(reading(100, 0, 50, Some(0.0001))), None);
        assert_eq!(e.observe(reading(200, 0, 5, None)), None);
    }

    #[test]
    fn the_total_is_an_estimate_until_the_source_is_exhausted() {
        let mut e = Estimator::default();
        let est = e.observe(reading(100, 10, 250, Some(0.25))).unwrap();
        assert_eq!((est.total, est.exact), (1000, false));
        let est = e.observe(Reading { exhausted: true, ..reading(200, 20, 980, Some(1.0)) }).unwrap();
        assert_eq!((est.total, est.exact), (980, true));
        // Never below what has been selected or done.
        let est = Estimator::default().observe(reading(100, 300, 200, Some(1.0))).unwrap();
        assert_eq!(to_ppm(0.25), 250_000);
        assert_eq!(to_ppm(f64::NAN), 0);
        assert_eq!(est.total, 300);
    }

    #[test]
    fn the_limit_caps_the_total_and_makes_it_exact() {
        let mut e = Estimator::default();
        let est = e.observe(Reading { limit: Some(500), ..reading(100, 0, 250, Some(0.1)) }).unwrap();
        assert_eq!((est.total, est.exact), (500, true));
        let est = e.observe(Reading { limit: Some(5000), ..reading(100, 0, 250, Some(0.1)) }).unwrap();
        assert_eq!((est.total, est.exact), (2500, false));
    }

    #[test]
    fn the_paced_rate_stands_in_until_a_speed_is_measured() {
        let mut e = Estimator::default();
        let est = e.observe(Reading { paced: Some(100.0), ..reading(0, 0, 100, Some(0.1)) }).unwrap();
        assert_eq!(est.eta, Some(Duration::from_secs(10)));
        let mut e = Estimator::default();
        assert_eq!(e.observe(reading(0, 0, 100, Some(0.1))).unwrap().eta, None);
    }

    /// The bar an ETA must clear: shown a third of the way into a steady run, it is within 2× of
    /// the real remaining time. Simulated: 3,000 events at 50/s (60 s) behind a reader that runs
    /// ahead of delivery, with a slow first second (connecting, the webhook lookup).
    #[test]
    fn a_steady_run_gets_an_eta_within_twice_the_truth_a_third_of_the_way_in() {
        for (total, speed) in [(3000u64, 50.0f64), (900, 300.0), (20_000, 500.0)] {
            let mut e = Estimator::default();
            let run_secs = total as f64 / speed + 1.0;
            let mut shown_at_third = None;
            let mut t = 0.0;
            while t < run_secs {
                let done = if t < 1.0 { 0 } else { (((t - 1.0) * speed) as u64).min(total) };
                // The reader is up to 200 events ahead of delivery, a page at a time.
                let selected = ((done + 200) / 100 * 100).min(total);
                let fraction = selected as f64 / total as f64;
                let r = Reading {
                    paced: Some(speed),
                    exhausted: selected == total,
                    ..reading((t * 1000.0) as u64, done, selected, Some(fraction))
                };
                let est = e.observe(r).unwrap();
                if shown_at_third.is_none() && done * 3 >= total {
                    shown_at_third = Some((est, run_secs - t));
                }
                t += 0.1;
            }
            let (est, truth) = shown_at_third.unwrap();
            let eta = est.eta.unwrap().as_secs_f64();
            assert!(eta <= 2.0 * truth && eta >= truth / 2.0, "{total} at {speed}/s: ETA {eta} for {truth}");
        }
    }

    /// Replays a synthetic history (each event's `created_at`, in page order) at a steady speed
    /// through [`TimeProgress`] and the [`Estimator`], with the reader a page or two ahead of
    /// delivery. Returns the ETA shown a third of the way in against the real time left, and the
    /// last estimate (source exhausted, everything done).
    fn replay_history(created: &[Timestamp], mut clock: TimeProgress) -> ((f64, f64), Estimate) {
        let total = created.len() as u64;
        let speed = 100.0;
        let mut e = Estimator::default();
        let mut seen = 0u64;
        let mut at_third = None;
        let mut tenth = 0u64;
        loop {
            let t = tenth as f64 / 10.0;
            let done = ((t * speed) as u64).min(total);
            let selected = ((done + 200) / 100 * 100).min(total);
            while seen < selected {
                clock.see(created[seen as usize]);
                seen += 1;
            }
            let r = Reading {
                paced: Some(speed),
                exhausted: selected == total,
                ..reading(tenth * 100, done, selected, clock.fraction().filter(|f| *f > 0.0))
            };
            let est = e.observe(r);
            if at_third.is_none() && done * 3 >= total {
                let eta = est.and_then(|e| e.eta).map_or(f64::INFINITY, |d| d.as_secs_f64());
                at_third = Some((eta, (total - done) as f64 / speed));
            }
            if done == total {
                return (at_third.unwrap(), est.unwrap());
            }
            tenth += 1;
        }
    }

    /// `n` events created from `from` to `to`, evenly or (`jitter`) at uneven intervals and out of
    /// order by up to a day, as pages ordered by start time give them.
    fn history(n: u64, from: &str, to: &str, jitter: bool) -> Vec<Timestamp> {
        let (from, to) = (from.parse::<Timestamp>().unwrap(), to.parse::<Timestamp>().unwrap());
        let span = (to.as_millisecond() - from.as_millisecond()) as f64;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % 1000) as f64 / 1000.0
        };
        (0..n)
            .map(|i| {
                let x = if jitter { (i as f64 + rand()) / n as f64 } else { i as f64 / n as f64 };
                let ms = from.as_millisecond() + (x * span) as i64;
                let back = if jitter { (rand() * 86_400_000.0) as i64 } else { 0 };
                Timestamp::from_millisecond((ms - back).max(from.as_millisecond())).unwrap()
            })
            .collect()
    }

    #[test]
    fn eta_is_within_twice_the_truth_a_third_of_the_way_in_whenever_the_history_ended() {
        let now: Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let cases = [
            // Ended nine months before now, with no bound: extrapolating to now tripled the total.
            (
                "ended months ago",
                history(6000, "2024-09-01T00:00:00Z", "2025-09-01T00:00:00Z", true),
                TimeProgress::until_now(now),
            ),
            (
                "runs until now",
                history(6000, "2024-12-01T00:00:00Z", "2026-12-01T00:00:00Z", true),
                TimeProgress::until_now(now),
            ),
            (
                "uniform, bounded",
                history(6000, "2025-01-01T00:00:00Z", "2026-01-01T00:00:00Z", false),
                TimeProgress::new("2026-01-01T00:00:00Z".parse().unwrap()),
            ),
        ];
        for (name, created, clock) in cases {
            let ((eta, truth), last) = replay_history(&created, clock);
            assert!(eta <= 2.0 * truth && eta >= truth / 2.0, "{name}: ETA {eta:.1}s for {truth:.1}s");
            // At the end the total is exact and all of it is done: the line shows 100%.
            assert_eq!(
                (last.total, last.exact, last.eta),
                (created.len() as u64, true, Some(Duration::ZERO)),
                "{name}"
            );
        }
    }

    #[test]
    fn a_history_bounded_by_now_is_read_at_least_as_far_as_its_span_says() {
        assert!((toward_now(0.75) - 0.75).abs() < 1e-9);
        assert!((toward_now(0.5) - 0.5).abs() < 1e-9);
        assert!((toward_now(0.02) - 0.1).abs() < 1e-9);
        assert!(toward_now(0.1) > 0.1);
    }

    #[test]
    fn speed_follows_the_last_seconds() {
        let mut e = Estimator::default();
        // 20 s at 10/s, then 20 s at 100/s: the ETA uses the new speed.
        let mut done = 0;
        for tenth in 0..400u64 {
            done += if tenth < 200 { 1 } else { 10 };
            e.observe(reading(tenth * 100, done, 100_000, Some(0.5)));
        }
        let est = e.observe(reading(40_000, done, 100_000, Some(0.5))).unwrap();
        let eta = est.eta.unwrap().as_secs_f64();
        let want = (200_000 - done) as f64 / 100.0;
        assert!((eta - want).abs() / want < 0.05, "{eta} vs {want}");
    }
}
