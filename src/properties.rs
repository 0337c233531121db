//! Property tests (proptest): the parsers of what users and servers type never panic and
//! round-trip, the NDJSON reader does not depend on how its input is cut into reads, and every
//! JSON object survives the envelope byte for byte, signed.
//!
//! One test-only module inside the crate, so the properties reach the parsers whatever their
//! visibility.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;

use crate::event::{Envelope, Event};
use crate::rate::Rate;
use crate::retry::parse_retry_after;
use crate::signature;
use crate::source::NdjsonReader;
use savvy_replay_fake::HexCase;
use savvy_replay_fake::receiver::expected_signature;

/// A fixed "now" on a whole second, so HTTP dates (whole seconds) round-trip exactly.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_780_000_000)
}

proptest! {
    #[test]
    fn retry_after_never_panics(s in ".*") {
        let _ = parse_retry_after(&s, now());
    }

    #[test]
    fn retry_after_seconds_round_trip(n in any::<u64>(), pad in "[ \t]{0,2}") {
        prop_assert_eq!(parse_retry_after(&format!("{pad}{n}{pad}"), now()), Some(Duration::from_secs(n)));
    }

    #[test]
    fn retry_after_dates_round_trip(n in 0u64..10_000_000) {
        let date = httpdate::fmt_http_date(now() + Duration::from_secs(n));
        prop_assert_eq!(parse_retry_after(&date, now()), Some(Duration::from_secs(n)));
        // A date in the past means "now".
        let past = httpdate::fmt_http_date(now() - Duration::from_secs(n));
        prop_assert_eq!(parse_retry_after(&past, now()), Some(Duration::ZERO));
    }

    #[test]
    fn rate_never_panics(s in ".*") {
        let _ = s.parse::<Rate>();
        let _ = s.parse::<crate::pacing::RateSetting>();
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

/// Lines of an NDJSON input: events, blank lines, broken lines, with `\n` or `\r\n`, maybe a BOM.
fn ndjson_input() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        4 => "[a-z0-9]{1,12}".prop_map(|id| format!(r#"{{"id":"event_{id}","n":[1,{{"k":"v"}}]}}"#).into_bytes()),
        1 => Just(Vec::new()),
        1 => Just(b"{broken".to_vec()),
        1 => Just(b"{\"id\":\"bad\",\"s\":\"\xff\"}".to_vec()),
    ];
    (any::<bool>(), prop::collection::vec((line, any::<bool>()), 0..40), any::<bool>()).prop_map(
        |(bom, lines, final_newline)| {
            let mut out = if bom { b"\xEF\xBB\xBF".to_vec() } else { Vec::new() };
            let n = lines.len();
            for (i, (line, crlf)) in lines.into_iter().enumerate() {
                out.extend_from_slice(&line);
                if i + 1 < n || final_newline {
                    out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                }
            }
            out
        },
    )
}

/// An async reader that hands out its input in the given pieces, one per read.
struct Pieces(std::collections::VecDeque<Vec<u8>>);

impl tokio::io::AsyncRead for Pieces {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(mut piece) = self.0.pop_front() {
            let n = piece.len().min(buf.remaining());
            buf.put_slice(&piece[..n]);
            if n < piece.len() {
                self.0.push_front(piece.split_off(n));
            }
        }
        std::task::Poll::Ready(Ok(()))
    }
}

/// Everything the reader makes of `pieces`: each event's id and bytes, and each malformed line.
fn read_all(pieces: Vec<Vec<u8>>) -> (Vec<(String, Vec<u8>)>, Vec<String>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime");
    rt.block_on(async {
        let mut r = NdjsonReader::from_reader(Box::new(Pieces(pieces.into())), "in".into());
        let (mut events, mut malformed) = (Vec::new(), Vec::new());
        while let Some(b) = r.next_batch().await.expect("no read error") {
            events.extend(b.events.into_iter().map(|e| (e.id.to_string(), e.raw.to_vec())));
            malformed.extend(b.malformed);
        }
        (events, malformed)
    })
}

/// Cut `input` at the given points (taken modulo its length).
fn cut(input: &[u8], mut at: Vec<usize>) -> Vec<Vec<u8>> {
    if input.is_empty() {
        return vec![];
    }
    at.iter_mut().for_each(|a| *a %= input.len());
    at.sort_unstable();
    at.dedup();
    let mut pieces = Vec::new();
    let mut from = 0;
    for a in at.into_iter().chain([input.len()]) {
        if a > from {
            pieces.push(input[from..a].to_vec());
            from = a;
        }
    }
    pieces
}

/// Any JSON value, nested a few levels.
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn ndjson_reads_the_same_however_the_input_is_cut(input in ndjson_input(), at in prop::collection::vec(any::<usize>(), 0..12)) {
        let whole = read_all(vec![input.clone()]);
        let bytewise = read_all(input.iter().map(|b| vec![*b]).collect());
        let pieces = read_all(cut(&input, at));
        prop_assert_eq!(&pieces, &whole);
        prop_assert_eq!(&bytewise, &whole);
    }

    #[test]
    fn any_json_object_is_the_envelope_payload_byte_for_byte_and_signed(
        mut fields in prop::collection::btree_map(any::<String>(), json(), 0..8),
        id in any::<String>().prop_filter("an id is not empty", |s| !s.is_empty()),
        pretty in any::<bool>(),
        secret in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        fields.insert("id".to_owned(), serde_json::Value::from(id.clone()));
        let object = serde_json::Value::Object(fields.into_iter().collect());
        let raw = if pretty { serde_json::to_vec_pretty(&object) } else { serde_json::to_vec(&object) }.expect("JSON");
        let event = Event::from_raw(bytes::Bytes::from(raw.clone())).expect("an object with a string id is an event");
        prop_assert_eq!(&*event.id, id.as_str());

        let envelope = Envelope::build("event.created", &event, || "2026-01-01T00:00:00Z".to_owned());
        #[derive(serde::Deserialize)]
        struct Parsed<'a> {
            #[serde(rename = "type")]
            kind: String,
            id: String,
            #[serde(borrow)]
            payload: &'a serde_json::value::RawValue,
        }
        let parsed: Parsed<'_> = serde_json::from_slice(&envelope.body).expect("the envelope is JSON");
        prop_assert_eq!(parsed.kind, "event.created");
        prop_assert_eq!(parsed.id, envelope.id.clone());
        prop_assert_eq!(parsed.payload.get().as_bytes(), &raw[..]);
        prop_assert_eq!(&envelope.payload()[..], &raw[..]);
        // Verified the way SavvyCal's docs say a receiver does (the fake receiver's own code).
        let sig = signature::sign(&secret, &envelope.body);
        prop_assert_eq!(&sig, &expected_signature(&secret, &envelope.body, HexCase::Upper));
        let mut tampered = envelope.body.to_vec();
        tampered.push(b' ');
        prop_assert_ne!(&sig, &expected_signature(&secret, &tampered, HexCase::Upper));
    }
}
