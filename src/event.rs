//! One booking as it travels through the pipeline, and the webhook envelope it is wrapped in.
//!
//! The event is opaque JSON: we read only `id` and `created_at` (once, where it enters) and forward
//! the original bytes untouched — never through a struct or `Value` round trip, which would lose
//! numbers wider than 64 bits, key order and unknown fields.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use serde::Deserialize;
use sha2::{Digest, Sha256};

mod scan;

/// The envelope's `type` unless `--event-type` says otherwise: what SavvyCal sends for a booking.
pub const DEFAULT_EVENT_TYPE: &str = "event.created";

/// The envelope `version` SavvyCal sends.
pub const ENVELOPE_VERSION: &str = "2020-11-18";

/// A booking: its id, its creation time (as the source wrote it), and its exact JSON bytes.
///
/// `id` and `created_at` are slices of `raw` (copies only when the JSON escaped a character), so
/// the copies of the id the run keeps (the in-flight set's, the ledger's) cost a reference
/// count, not an allocation.
#[derive(Clone)]
pub struct Event {
    pub id: ByteString,
    pub created_at: Option<ByteString>,
    pub raw: Bytes,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event").field("id", &self.id).field("bytes", &self.raw.len()).finish()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EventError {
    #[error("not a JSON object with a string `id` ({0})")]
    Shape(String),
    /// Not UTF-8 from this byte offset (0-based) on.
    #[error("not valid UTF-8 (at byte {})", .at + 1)]
    NotUtf8 { at: usize },
}

impl Event {
    /// Read an event from its exact JSON bytes (an API page entry or an NDJSON line), checking
    /// that they are one JSON object in UTF-8 ([`scan`]). `raw` is kept as is, so a slice of a
    /// page buffer costs no copy.
    ///
    /// `created_at` is taken as any JSON value: one that is not a string (a number, an object)
    /// leaves the event without a time, which a time filter then reports by name
    /// ([`created_at_problem`]), instead of the whole event being called "not an event".
    pub fn from_raw(raw: Bytes) -> Result<Event, EventError> {
        let head = scan::scan(&raw).map_err(|e| match e {
            scan::ScanError::Utf8 { at } => EventError::NotUtf8 { at },
            e => EventError::Shape(e.to_string()),
        })?;
        if head.id.is_empty() {
            return Err(EventError::Shape("`id` is empty".into()));
        }
        let id = shared(&raw, head.id);
        let created_at = head.created_at.and_then(text).map(|t| shared(&raw, t));
        Ok(Event { id, created_at, raw })
    }

    /// `created_at` as a timestamp, when present and readable.
    pub fn created_at(&self) -> Option<jiff::Timestamp> {
        parse_rfc3339(self.created_at.as_deref()?)
    }
}

/// Text read from `raw`: a slice of it when the text is there as it is, else (it was escaped) a copy.
fn shared(raw: &Bytes, text: Cow<'_, str>) -> ByteString {
    match text {
        Cow::Borrowed(s) => ByteString::try_from(raw.slice_ref(s.as_bytes())).unwrap_or_else(|_| s.into()),
        Cow::Owned(s) => s.into(),
    }
}

/// A JSON value's text, when the value is a string.
fn text(value: &[u8]) -> Option<Cow<'_, str>> {
    value.starts_with(b"\"").then(|| scan::unquote(value).ok()).flatten()
}

/// An RFC 3339 time, with any number of fractional digits: RFC 3339 sets no limit, jiff reads at
/// most nine (nanoseconds), so the digits past the ninth are dropped (truncated, never rounded
/// up into the next second).
pub fn parse_rfc3339(s: &str) -> Option<jiff::Timestamp> {
    if let Ok(t) = s.parse() {
        return Some(t);
    }
    let dot = s.find(['.', ','])?;
    let digits = s[dot + 1..].bytes().take_while(u8::is_ascii_digit).count();
    if digits <= 9 {
        return None;
    }
    format!("{}{}", &s[..dot + 10], &s[dot + 1 + digits..]).parse().ok()
}

/// Why [`Event::created_at`] has no time for this event, naming the field: `created_at is
/// missing`, `is null`, `is 1700000000, not an RFC 3339 time`. Only called for the few events a
/// time filter cannot place, so re-reading the bytes costs nothing that matters.
pub fn created_at_problem(ev: &Event) -> String {
    #[derive(Deserialize)]
    struct Only<'a> {
        #[serde(default, borrow)]
        created_at: Option<&'a serde_json::value::RawValue>,
    }
    let value = serde_json::from_slice::<Only<'_>>(&ev.raw).ok().and_then(|o| o.created_at);
    match value.map(|v| v.get()) {
        None => "`created_at` is missing or null".to_owned(),
        Some(v) => {
            let shown: String = v.chars().take(60).collect();
            let more = if shown.len() < v.len() { "…" } else { "" };
            format!("`created_at` is {shown}{more}, not an RFC 3339 time")
        }
    }
}

/// Envelope id: deterministic from (event type, event id), the same on every run, so receivers
/// that dedupe on `id` stay idempotent across reruns.
pub fn envelope_id(event_type: &str, event_id: &str) -> String {
    let id = EnvelopeId::of(event_type, event_id);
    // Only ASCII goes in (the prefix and hex digits).
    String::from_utf8_lossy(id.as_bytes()).into_owned()
}

const PREFIX: &str = "payload_";

/// Room planned behind an envelope's body for its trailer: a signature header's value
/// (`sha256=` and 64 hex digits) fits.
const TRAILER_ROOM: usize = 80;

/// An envelope id on the stack: `payload_` and 32 hex digits.
struct EnvelopeId([u8; PREFIX.len() + 32]);

impl EnvelopeId {
    fn of(event_type: &str, event_id: &str) -> EnvelopeId {
        let mut h = Sha256::new();
        h.update(event_type.as_bytes());
        h.update([0u8]);
        h.update(event_id.as_bytes());
        let digest = h.finalize();
        let mut id = [0u8; PREFIX.len() + 32];
        id[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
        // 16 bytes always fit 32 hex digits.
        let _ = hex::encode_to_slice(&digest[..16], &mut id[PREFIX.len()..]);
        EnvelopeId(id)
    }

    fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// The body SavvyCal would have POSTed, built once per event:
/// `{"type":…,"id":…,"version":"2020-11-18","occurred_at":…,"payload":<the event's bytes>}`.
///
/// One buffer holds it all: the body, the id inside it, and whatever the builder was asked to
/// append after it (the signature header's value). The parts are slices of that buffer, so a
/// request's body and headers are made of reference counts, not copies.
pub struct Envelope {
    pub body: Bytes,
    /// What the builder's `trailer` returned, behind the body in the same buffer (empty when it
    /// returned nothing).
    pub trailer: Bytes,
    /// Where the envelope id sits inside `body`.
    id: std::ops::Range<usize>,
    /// Where the event's own bytes sit inside `body`.
    payload_start: usize,
}

impl Envelope {
    /// [`Envelope::build_versioned`] with the default [`ENVELOPE_VERSION`]; runs always pass the
    /// webhook's version (or this default) explicitly, so only tests use it.
    #[cfg(test)]
    pub fn build(event_type: &str, event: &Event, now: impl FnOnce() -> String) -> Envelope {
        Envelope::build_versioned(event_type, ENVELOPE_VERSION, event, now, |_| None::<[u8; 0]>)
    }

    /// The envelope with the webhook's own payload `version` (from `GET /v1/webhooks`). `now` is
    /// used for `occurred_at` when the event has no `created_at`. `trailer` is given the finished
    /// body, and what it returns, if anything, goes behind it in the buffer, as
    /// [`Envelope::trailer`].
    pub fn build_versioned<T: AsRef<[u8]>>(
        event_type: &str,
        version: &str,
        event: &Event,
        now: impl FnOnce() -> String,
        trailer: impl FnOnce(&[u8]) -> Option<T>,
    ) -> Envelope {
        let id = EnvelopeId::of(event_type, &event.id);
        let occurred_at = match &event.created_at {
            Some(t) => Cow::Borrowed(&**t),
            None => Cow::Owned(now()),
        };
        let mut buf = BytesMut::with_capacity(event.raw.len() + event_type.len() + 160 + TRAILER_ROOM);
        buf.put_slice(b"{\"type\":");
        put_json_string(&mut buf, event_type);
        // The id is ASCII (prefix and hex digits): no escaping, so its bytes are the header's.
        buf.put_slice(b",\"id\":\"");
        let id_start = buf.len();
        buf.put_slice(id.as_bytes());
        let id = id_start..buf.len();
        buf.put_slice(b"\",\"version\":");
        put_json_string(&mut buf, version);
        buf.put_slice(b",\"occurred_at\":");
        put_json_string(&mut buf, &occurred_at);
        buf.put_slice(b",\"payload\":");
        let payload_start = buf.len();
        buf.put_slice(&event.raw);
        buf.put_u8(b'}');
        let body_len = buf.len();
        if let Some(trailer) = trailer(&buf) {
            buf.put_slice(trailer.as_ref());
        }
        let all = buf.freeze();
        Envelope { body: all.slice(..body_len), trailer: all.slice(body_len..), id, payload_start }
    }

    /// The envelope id (`payload_…`), as it is in the body.
    #[cfg(test)]
    pub fn id(&self) -> &str {
        std::str::from_utf8(&self.body[self.id.clone()]).unwrap_or_default()
    }

    /// The envelope id's bytes, a slice of the body.
    pub fn id_bytes(&self) -> Bytes {
        self.body.slice(self.id.clone())
    }

    /// The event's exact bytes, without a copy.
    pub fn payload(&self) -> Bytes {
        self.body.slice(self.payload_start..self.body.len() - 1)
    }
}

fn put_json_string(buf: &mut BytesMut, s: &str) {
    // serde_json's escaping, written straight into the body (writing to memory cannot fail).
    let _ = serde_json::to_writer(buf.writer(), s);
}

/// Now, in the second-precision RFC 3339 form SavvyCal uses (`2020-11-20T19:53:47Z`).
pub fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ODD: &str = r#"{"zeta":1,"id":"event_X1","big":123456789012345678901234567890,"name":"Zoë 李雷","created_at":"2020-11-20T19:53:46Z","alpha":{"unknown":[1.50,true,null]}}"#;

    #[test]
    fn envelope_wraps_the_event_bytes_untouched() {
        let ev = Event::from_raw(Bytes::from_static(ODD.as_bytes())).unwrap();
        assert_eq!(&*ev.id, "event_X1");
        let env = Envelope::build("event.created", &ev, || unreachable!("has created_at"));
        let body = std::str::from_utf8(&env.body).unwrap();
        let expected = format!(
            r#"{{"type":"event.created","id":"{}","version":"2020-11-18","occurred_at":"2020-11-20T19:53:46Z","payload":{ODD}}}"#,
            env.id()
        );
        assert_eq!(body, expected);
        assert_eq!(&env.payload()[..], ODD.as_bytes());
        // And it is valid JSON.
        let v: serde_json::Value = serde_json::from_slice(&env.body).unwrap();
        assert_eq!(v["payload"]["id"], "event_X1");
    }

    #[test]
    fn occurred_at_falls_back_to_now() {
        let ev = Event::from_raw(Bytes::from_static(br#"{"id":"event_1","created_at":null}"#)).unwrap();
        let env = Envelope::build("event.created", &ev, || "2026-01-02T03:04:05Z".into());
        let v: serde_json::Value = serde_json::from_slice(&env.body).unwrap();
        assert_eq!(v["occurred_at"], "2026-01-02T03:04:05Z");
        assert_eq!(now_rfc3339().len(), 20);
    }

    #[test]
    fn envelope_id_is_deterministic_per_type_and_event() {
        let a = envelope_id("event.created", "event_1");
        assert_eq!(a, envelope_id("event.created", "event_1"));
        assert_ne!(a, envelope_id("event.created", "event_2"));
        assert_ne!(a, envelope_id("event.canceled", "event_1"));
        assert!(a.starts_with("payload_") && a.len() == "payload_".len() + 32);
    }

    #[test]
    fn rejects_what_is_not_an_event() {
        for bad in [&b"[1,2]"[..], b"{\"id\":5}", b"{\"id\":\"\"}", b"{\"id\":\"e\"", b"{} x", b"nope"] {
            assert!(Event::from_raw(Bytes::copy_from_slice(bad)).is_err(), "{:?}", std::str::from_utf8(bad));
        }
    }

    #[test]
    fn a_created_at_that_is_not_a_time_is_named_not_the_whole_event() {
        for (raw, problem) in [
            (r#"{"id":"e"}"#, "`created_at` is missing or null"),
            (r#"{"id":"e","created_at":null}"#, "`created_at` is missing or null"),
            (r#"{"id":"e","created_at":1700000000}"#, "`created_at` is 1700000000, not an RFC 3339 time"),
            (r#"{"id":"e","created_at":"yesterday"}"#, "`created_at` is \"yesterday\", not an RFC 3339 time"),
            (r#"{"id":"e","created_at":{"t":1}}"#, "`created_at` is {\"t\":1}, not an RFC 3339 time"),
        ] {
            let ev = Event::from_raw(Bytes::from(raw)).unwrap();
            assert_eq!(ev.created_at(), None, "{raw}");
            assert_eq!(created_at_problem(&ev), problem);
        }
    }

    /// RFC 3339 allows more than nine fractional digits; they used to make the time unreadable.
    #[test]
    fn created_at_with_more_than_nine_fractional_digits_is_read_to_the_nanosecond() {
        let ev = Event::from_raw(Bytes::from_static(br#"{"id":"e","created_at":"2025-01-01T10:00:00.123456789012Z"}"#))
            .unwrap();
        let nanos: jiff::Timestamp = "2025-01-01T10:00:00.123456789Z".parse().unwrap();
        assert_eq!(ev.created_at(), Some(nanos));
        assert_eq!(
            parse_rfc3339("2025-01-01T11:00:00.999999999999+01:00"),
            "2025-01-01T10:00:00.999999999Z".parse().ok()
        );
        assert_eq!(parse_rfc3339("2025-01-01T10:00:00.5Z"), "2025-01-01T10:00:00.5Z".parse().ok());
        for bad in [
            "2025-01-01T10:00:00.1234567890123",
            "2025-01-01T10:00:00.Z",
            "yesterday",
            "2025-13-01T10:00:00.1234567890Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn event_type_is_escaped() {
        let ev = Event::from_raw(Bytes::from_static(br#"{"id":"e"}"#)).unwrap();
        let env = Envelope::build("weird\"type", &ev, || "t".into());
        let v: serde_json::Value = serde_json::from_slice(&env.body).unwrap();
        assert_eq!(v["type"], "weird\"type");
        let env = Envelope::build_versioned("event.created", "2024-01-01", &ev, || "t".into(), |_| None::<[u8; 0]>);
        let v: serde_json::Value = serde_json::from_slice(&env.body).unwrap();
        assert_eq!(v["version"], "2024-01-01");
    }
}

/// Property tests (proptest): every JSON object survives the envelope byte for byte.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::{Envelope, Event};

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
        fn any_json_object_is_the_envelope_payload_byte_for_byte(
            mut fields in prop::collection::btree_map(any::<String>(), json(), 0..8),
            id in any::<String>().prop_filter("an id is not empty", |s| !s.is_empty()),
            pretty in any::<bool>(),
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
            prop_assert_eq!(parsed.id, envelope.id());
            prop_assert_eq!(parsed.payload.get().as_bytes(), &raw[..]);
            prop_assert_eq!(&envelope.payload()[..], &raw[..]);
        }
    }
}
