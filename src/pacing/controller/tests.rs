//! The controller's rules one at a time, fed by hand; `sim.rs` tests it against whole receivers.

use super::*;

fn at(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

const OK: Signal = Signal::Delivered;
const SLOW_DOWN: Signal = Signal::TooManyRequests { retry_after: None };

/// Feeds `n` outcomes evenly over `[from, to)`, each `latency` after its send.
fn feed(c: &mut Controller, from: f64, to: f64, n: u32, outcome: Signal, latency: f64) {
    for i in 0..n {
        let t = from + (to - from) * f64::from(i) / f64::from(n);
        c.record(at(t + latency), outcome, at(latency), 0);
    }
}

#[test]
fn starts_gently_and_doubles_until_the_first_throttle() {
    let mut c = Controller::new(ControllerSettings::default());
    assert_eq!(c.rate(), DEFAULT_START);
    feed(&mut c, 0.0, 1.0, 10, OK, 0.01);
    assert_eq!(c.rate(), 20.0);
    // Sent at the rate, each window of a quarter of a second (ten attempts at least) doubles it,
    // or nearly: never past twice what was sent.
    let mut t = 1.0;
    for _ in 0..4 {
        let rate = c.rate();
        let n = (rate * 0.25).ceil().max(10.0);
        feed(&mut c, t, t + n / rate, n as u32, OK, 0.001);
        t += n / rate;
        assert!((1.6 * rate..=2.0 * rate).contains(&c.rate()), "{rate} -> {}", c.rate());
    }
    assert!(t < 2.5, "{t}");
}

#[test]
fn a_burst_of_throttles_from_one_overshoot_is_one_decrease() {
    let mut c = Controller::new(ControllerSettings { start: Some(100.0), max_rate: None });
    feed(&mut c, 0.0, 1.0, 100, OK, 0.01);
    let rate = c.rate();
    // Fifty 429s answered within 20 ms of each other, all sent before the first came back.
    for i in 0..50 {
        c.record(at(1.05 + f64::from(i) * 0.0004), SLOW_DOWN, at(0.05), 0);
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
    feed(&mut c, 3.0, 3.01, 10, SLOW_DOWN, 0.005);
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
fn refusals_only_when_many_are_in_flight_cap_the_requests_in_flight_not_the_rate() {
    const BUSY: Signal = Signal::Unavailable { status: 503, retry_after: None };
    let mut c = Controller::new(ControllerSettings { start: Some(400.0), max_rate: None });
    // 400/s of 20 ms each: 8 in flight, give or take.
    for i in 0..800 {
        c.record(at(0.02 + f64::from(i) * 0.0025), OK, at(0.02), 6 + i % 5);
    }
    let rate = c.rate();
    assert_eq!(c.concurrency(), None);
    // One refusal in hundreds could be a background of random errors; one in ten is a pattern.
    for i in 0..20 {
        c.record(at(2.01 + f64::from(i) * 0.001), BUSY, at(0.001), 11);
        assert_eq!(c.concurrency(), None, "refusal {i}");
    }
    c.record(at(2.03), BUSY, at(0.001), 11);
    assert_eq!(c.concurrency(), Some(11), "refused only with more in flight than usual");
    assert!(c.rate() >= rate, "the rate is left alone: {rate} -> {}", c.rate());
    c.record(at(2.04), BUSY, at(0.001), 9);
    assert_eq!(c.concurrency(), Some(11), "one change a window");
    for i in 0..400 {
        c.record(at(2.05 + f64::from(i) * 0.0025), OK, at(0.02), 9);
    }
    c.record(at(3.1), BUSY, at(0.001), 8);
    assert_eq!(c.concurrency(), Some(10), "a refusal in the next window: one lower, not down to 8");
    // A window in which the cap held the run back and nothing was refused: one more is tried.
    for i in 0..800 {
        c.record(at(3.15 + f64::from(i) * 0.0025), OK, at(0.02), 9);
    }
    assert_eq!(c.concurrency(), Some(11));
    // A refusal with hardly anything in flight is a rate limit: the cap goes, the rate drops.
    let rate = c.rate();
    c.record(at(5.2), BUSY, at(0.001), 1);
    assert_eq!(c.concurrency(), None);
    for i in 0..20 {
        c.record(at(5.21 + f64::from(i) * 0.001), BUSY, at(0.001), 1);
    }
    assert!(c.rate() < rate, "{rate} -> {}", c.rate());
}

#[test]
fn a_429_teaches_no_cap() {
    let mut c = Controller::new(ControllerSettings { start: Some(300.0), max_rate: None });
    for i in 0..600 {
        c.record(at(0.005 + f64::from(i) / 300.0), OK, at(0.005), i % 3);
    }
    c.record(at(2.01), SLOW_DOWN, at(0.001), 6);
    assert_eq!(c.concurrency(), None, "a 429 is a rate limit by name");
    assert!(c.rate() < 300.0);
}

#[test]
fn rising_latency_drops_gently() {
    let mut c = Controller::new(ControllerSettings { start: Some(100.0), max_rate: None });
    feed(&mut c, 0.0, 1.0, 100, OK, 0.01);
    feed(&mut c, 1.0, 2.0, 100, OK, 0.01);
    let rate = c.rate();
    feed(&mut c, 2.0, 3.0, 100, OK, 0.08);
    c.record(at(3.2), OK, at(0.08), 0);
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
    c.record(at(1.02), Signal::TooManyRequests { retry_after: Some(at(1.0)) }, at(0.01), 0);
    assert_eq!(c.hold_until(), None, "one overshoot of a token bucket is answered by the rate alone");
    for i in 0..10 {
        c.record(at(1.1 + f64::from(i) * 0.01), Signal::TooManyRequests { retry_after: Some(at(1.0)) }, at(0.01), 0);
    }
    assert_eq!(c.hold_until(), Some(at(2.19)), "ten refusals in a row: hold");
    c.record(at(1.2), Signal::TooManyRequests { retry_after: Some(at(7.0)) }, at(0.01), 0);
    assert_eq!(c.hold_until(), Some(at(8.2)), "a quota used up for seconds: hold");
}

#[test]
fn a_decrease_that_missed_by_far_is_corrected_at_once() {
    let mut c = Controller::new(ControllerSettings { start: Some(300.0), max_rate: None });
    feed(&mut c, 0.0, 2.0, 600, OK, 0.005);
    // Capacity falls to 75/s: the first refusal drops the rate from the last second's 300.
    c.record(at(2.01), SLOW_DOWN, at(0.005), 0);
    let first = c.rate();
    assert!((200.0..=215.0).contains(&first), "{first}");
    // Of what was sent at that rate in the next 0.2 s, three in four are refused.
    for i in 0..40 {
        let outcome = if i % 4 == 0 { OK } else { SLOW_DOWN };
        c.record(at(2.015 + f64::from(i) * 0.005), outcome, at(0.005), 0);
    }
    assert!(c.rate() < 0.5 * first, "{first} -> {}", c.rate());
}
