//! Property tests (proptest): a rate as a user types it never panics and means what it says.

use proptest::prelude::*;

use super::Rate;

proptest! {
    #[test]
    fn rate_never_panics(s in ".*") {
        let _ = s.parse::<Rate>();
        let _ = s.parse::<crate::pacing::RateMode>();
    }

    #[test]
    fn rate_round_trips_through_its_display(n in 0.0f64..1_000_000.0, unit in prop::sample::select(vec!["", "/s", "/m", "/h"])) {
        if let Ok(rate) = format!("{n}{unit}").parse::<Rate>() {
            prop_assert_eq!(rate.to_string().parse::<Rate>(), Ok(rate));
        }
    }

    #[test]
    fn rates_mean_what_they_say(n in 1u32..1_000_000) {
        prop_assert_eq!(format!("{n}").parse::<Rate>(), Ok(Rate::per_second(f64::from(n))));
        prop_assert_eq!(format!("{n}/m").parse::<Rate>(), Ok(Rate::per_second(f64::from(n) / 60.0)));
    }
}
