//! The flags' value parsers: every value that has a shape is checked here, at the boundary, and
//! the config file's values go through the same functions (by way of clap), so a bad `--rate` and a
//! bad `rate = …` fail with the same message saying what to write instead.

use std::time::Duration;

use crate::deliver::Header;
use crate::pacing::RateMode;
use crate::pacing::gate::Rate;

pub fn parse_rate(s: &str) -> Result<Rate, String> {
    s.parse()
}

pub fn parse_rate_mode(s: &str) -> Result<RateMode, String> {
    s.parse()
}

/// `--capacity-steps`: `(after the first request, requests/s)`, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacitySteps(pub Vec<(Duration, f64)>);

pub fn parse_capacity_steps(s: &str) -> Result<CapacitySteps, String> {
    let bad = || format!("`{s}` is not a list of capacity steps; write it like 10s=75,20s=300");
    let steps = s
        .split(',')
        .map(|step| {
            let (at, rate) = step.split_once('=').ok_or_else(bad)?;
            let at = humantime::parse_duration(at.trim()).map_err(|_| bad())?;
            Ok((at, parse_capacity(rate.trim())?))
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(CapacitySteps(steps))
}

/// `--give-up-after`: a duration, or `0` for never ([`Duration::ZERO`]).
pub fn parse_give_up_after(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t == "0" || t.eq_ignore_ascii_case("never") {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("`{s}` is not a duration ({e}); write it like 30s, 10m or 1h, or 0 to never give up"))
}

/// `--capacity`: the same forms as `--rate`, but it must be a limit.
pub fn parse_capacity(s: &str) -> Result<f64, String> {
    parse_rate(s)?.get().ok_or_else(|| format!("`{s}` is no capacity; give requests per second like 300 or 300/s"))
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("`{s}` is not a duration ({e}); write it like 500ms, 30s or 1m30s"))?;
    if d.is_zero() {
        return Err(format!("`{s}` is zero; give a positive duration like 500ms or 30s"));
    }
    Ok(d)
}

pub fn parse_timestamp(s: &str) -> Result<jiff::Timestamp, String> {
    crate::event::parse_rfc3339(s.trim()).ok_or_else(|| {
        format!("`{s}` is not an RFC 3339 time; write it like 2026-03-01T00:00:00Z or 2026-03-01T09:00:00+01:00")
    })
}

/// `--created-before`: a time, or `none` to replay everything whatever the webhook's date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreatedBefore {
    None,
    At(jiff::Timestamp),
}

pub fn parse_created_before(s: &str) -> Result<CreatedBefore, String> {
    if s.trim().eq_ignore_ascii_case("none") {
        return Ok(CreatedBefore::None);
    }
    parse_timestamp(s).map(CreatedBefore::At).map_err(|e| format!("{e}, or `none` for no bound"))
}

/// `s` as a number within `range`, or "`s` is not {what}".
fn bounded<T: std::str::FromStr + PartialOrd>(
    s: &str,
    range: std::ops::RangeInclusive<T>,
    what: &str,
) -> Result<T, String> {
    match s.trim().parse::<T>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!("`{s}` is not {what}")),
    }
}

pub fn parse_page_size(s: &str) -> Result<u32, String> {
    bounded(s, 1..=100, "a page size; the SavvyCal API accepts 1 to 100")
}

pub fn parse_concurrency(s: &str) -> Result<usize, String> {
    bounded(s, 1..=10_000, "a concurrency; give a whole number from 1 to 10000")
}

pub fn parse_burst(s: &str) -> Result<u32, String> {
    bounded(s, 1..=100_000, "a burst size; give a whole number from 1 to 100000")
}

pub fn parse_fraction(s: &str) -> Result<f64, String> {
    bounded(s, 0.0..=1.0, "a fraction; give a number from 0 to 1, e.g. 0.2")
}

pub fn parse_header(s: &str) -> Result<Header, String> {
    s.parse()
}

/// `--user-agent`: a non-empty header value (surrounding spaces dropped, as HTTP would).
pub fn parse_user_agent(s: &str) -> Result<http::HeaderValue, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(format!(
            "the User-Agent is empty; leave --user-agent out to send SavvyCal's ({})",
            crate::deliver::WEBHOOK_USER_AGENT
        ));
    }
    // HTTP would take bytes above ASCII (obs-text), but receivers read them differently.
    let printable = t.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
    match http::HeaderValue::from_str(t) {
        Ok(value) if printable => Ok(value),
        _ => Err(format!("`{}` has characters HTTP does not allow in a header; use printable ASCII", t.escape_debug())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_reject_garbage() {
        let h = parse_header("X-Team:  growth ").unwrap();
        assert_eq!(h.name.as_str(), "x-team");
        assert_eq!(h.value, "growth");
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: v").is_err());
        assert!(format!("{h:?}").contains("redacted"));
    }

    #[test]
    fn user_agents_must_be_non_empty_header_values() {
        assert_eq!(parse_user_agent(" acme-replay/2 ").unwrap(), "acme-replay/2");
        assert!(parse_user_agent("  ").unwrap_err().contains("empty"));
        assert!(parse_user_agent("a\nb").unwrap_err().contains("characters HTTP does not allow"));
        assert!(parse_user_agent("caf\u{e9}").is_err());
    }

    #[test]
    fn durations_and_bounds() {
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_page_size("101").is_err());
        assert_eq!(parse_page_size("100").unwrap(), 100);
        assert!(parse_concurrency("0").is_err());
        assert!(parse_fraction("1.5").is_err());
        assert_eq!(parse_capacity("300/s").unwrap(), 300.0);
        assert!(parse_capacity("0").is_err() && parse_capacity("unlimited").is_err());
        assert_eq!(
            parse_capacity_steps("10s=75, 20s=300/s").unwrap().0,
            [(Duration::from_secs(10), 75.0), (Duration::from_secs(20), 300.0)]
        );
        assert!(parse_capacity_steps("10s:75").unwrap_err().contains("10s=75,20s=300"));
        assert_eq!(parse_give_up_after("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_give_up_after("0").unwrap(), Duration::ZERO);
        assert!(parse_give_up_after("soon").unwrap_err().contains("0 to never"));
        assert!(parse_timestamp("2026-03-01").is_err());
        assert!(parse_timestamp("2026-03-01T09:00:00+01:00").is_ok());
    }
}
