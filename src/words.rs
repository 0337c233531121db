//! Counted nouns for messages: "1 attempt", "9 attempts", "1,000 source entries".
//!
//! Messages are read by people, and "after 1 attempts" reads as a bug. Every count that is put
//! next to a noun in a message goes through [`count`].

/// `n` and the noun in the number `n` calls for, with thousands separators.
pub fn count(n: u64, singular: &str, plural: &str) -> String {
    format!("{} {}", indicatif::HumanCount(n), if n == 1 { singular } else { plural })
}

/// A rate in requests per second, written like a count: `2,900/s`, `187/s`, and one decimal
/// below 10 (`2.5/s`, `0.5/s`) where the fraction matters.
pub fn per_sec(rate: f64) -> String {
    let r = if rate.is_finite() { rate.max(0.0) } else { 0.0 };
    if r < 10.0 && (r - r.round()).abs() >= 0.05 {
        format!("{r:.1}/s")
    } else {
        format!("{}/s", indicatif::HumanCount(r.round() as u64))
    }
}

/// "1 source entry was not an event and was skipped", and the plural.
pub fn skipped_entries(n: u64) -> String {
    if n == 1 {
        "1 source entry was not an event and was skipped".to_owned()
    } else {
        format!("{} source entries were not events and were skipped", indicatif::HumanCount(n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_is_singular_and_everything_else_plural() {
        assert_eq!(count(1, "attempt", "attempts"), "1 attempt");
        assert_eq!(count(0, "attempt", "attempts"), "0 attempts");
        assert_eq!(count(2, "source entry", "source entries"), "2 source entries");
        assert_eq!(count(1000, "event", "events"), "1,000 events");
        assert_eq!(skipped_entries(1), "1 source entry was not an event and was skipped");
        assert_eq!(per_sec(2900.0), "2,900/s");
        assert_eq!(per_sec(187.54), "188/s");
        assert_eq!(per_sec(2.5), "2.5/s");
        assert_eq!(per_sec(5.0), "5/s");
        assert_eq!(per_sec(0.5), "0.5/s");
        assert_eq!(skipped_entries(2), "2 source entries were not events and were skipped");
    }
}
