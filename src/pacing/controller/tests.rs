//! The controller's rules one at a time, fed by hand; `sim.rs` tests it against whole receivers.

use super::*;

fn at(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

const OK: Outcome = Outcome::Delivered;
const SLOW_DOWN: Outcome = Outcome::TooManyRequests { retry_after: None };

/// Feeds `n` outcomes evenly over `[from, to)`, each `latency` after its send.
fn feed(c: &mut Controller, from: f64, to: f64, n: u32, outcome: Outcome, latency: f64) {
    for i in 0..n {
        let t = from + (to - from) * f64::from(i) / f64::from(n);
        c.record(at(t + latency), outcome, at(latency));
    }
}

#[test]
fn starts_gently_and_doubles_until_the_first_throttle() {
    let mut c = Controller::new(ControllerSettings::default());
    assert_eq!(c.rate(), DEFAULT_START);
    feed(&mut c, 0.0, 1.0, 10, OK, 0.01);
    feed(&mut c, 1.0, 2.0, 20, OK, 0.01);
    assert_eq!(c.rate(), 20.0);
    feed(&mut c, 2.0, 3.0, 40, OK, 0.01);
    assert_eq!(c.rate(), 40.0);
}

#[test]
fn a_burst_of_throttles_from_one_overshoot_is_one_decrease() {
    let mut c = Controller::new(ControllerSettings { start: Some(100.0), max_rate: None });
    feed(&mut c, 0.0, 1.0, 100, OK, 0.01);
    let rate = c.rate();
    // Fifty 429s answered within 20 ms of each other, all sent before the first came back.
    for i in 0..50 {
        c.record(at(1.05 + f64::from(i) * 0.0004), SLOW_DOWN, at(0.05));
    }
    let after = c.rate();
    assert!((after - 0.7 * rate).abs() < 0.1 * rate, "{rate} -> {after}");
    // And echoes arriving later, of requests sent before the decrease, change nothing either.
    feed(&mut c, 1.0, 1.04, 20, SLOW_DOWN, 0.5);
    assert!(c.rate() >= after);
}

#[test]
fn the_decrease_follows_the_measured_rate_not_the_target() {
    let mut c = Controller::new(ControllerSettings { start: Some(300.0), max_rate: None });
    feed(&mut c, 0.0, 2.0, 600, OK, 0.005);
    // Capacity falls to 75/s: 75 successes a second, the rest refused.
    feed(&mut c, 2.0, 3.0, 75, OK, 0.005);
    c.record(at(3.01), SLOW_DOWN, at(0.005));
    assert!(c.rate() < 0.7 * 300.0 * 0.75, "{}", c.rate());
}

#[test]
fn never_exceeds_max_rate_and_never_drops_below_the_floor() {
    let mut c = Controller::new(ControllerSettings { start: None, max_rate: Some(25.0) });
    for s in 0..10 {
        feed(&mut c, f64::from(s), f64::from(s + 1), 30, OK, 0.001);
        assert!(c.rate() <= 25.0);
    }
    assert_eq!(c.rate(), 25.0);
    let mut c = Controller::new(ControllerSettings { start: Some(1.0), max_rate: None });
    let mut lowest = f64::INFINITY;
    for s in 0..40 {
        feed(&mut c, f64::from(s), f64::from(s + 1), 12, SLOW_DOWN, 0.001);
        lowest = lowest.min(c.rate());
    }
    assert_eq!(lowest, MIN_RATE);
}

#[test]
fn rising_latency_drops_gently() {
    let mut c = Controller::new(ControllerSettings { start: Some(100.0), max_rate: None });
    feed(&mut c, 0.0, 1.0, 100, OK, 0.01);
    feed(&mut c, 1.0, 2.0, 100, OK, 0.01);
    let rate = c.rate();
    feed(&mut c, 2.0, 3.0, 100, OK, 0.08);
    c.record(at(3.2), OK, at(0.08));
    // 100/s were delivered: a throttle would drop to 70, rising latency to 80.
    let after = c.rate();
    assert!(after < rate && (78.0..81.0).contains(&after), "{rate} -> {after}");
    // A receiver that simply got slower for good is accepted as such, not pushed to the floor.
    for s in 3..30 {
        feed(&mut c, f64::from(s), f64::from(s + 1), 100, OK, 0.08);
    }
    assert!(c.rate() > after, "{}", c.rate());
}

#[test]
fn a_long_retry_after_or_a_shut_door_holds_the_pool_and_one_overshoot_does_not() {
    let mut c = Controller::new(ControllerSettings { start: Some(50.0), max_rate: None });
    feed(&mut c, 0.0, 1.0, 50, OK, 0.01);
    c.record(at(1.02), Outcome::TooManyRequests { retry_after: Some(at(1.0)) }, at(0.01));
    assert_eq!(c.hold_until(), None, "one overshoot of a token bucket is answered by the rate alone");
    for i in 0..10 {
        c.record(at(1.1 + f64::from(i) * 0.01), Outcome::TooManyRequests { retry_after: Some(at(1.0)) }, at(0.01));
    }
    assert_eq!(c.hold_until(), Some(at(2.19)), "ten refusals in a row: hold");
    c.record(at(1.2), Outcome::TooManyRequests { retry_after: Some(at(7.0)) }, at(0.01));
    assert_eq!(c.hold_until(), Some(at(8.2)), "a quota used up for seconds: hold");
}
