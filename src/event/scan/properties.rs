//! Property tests (proptest): the scanner accepts exactly what serde_json accepts for an event's
//! head (plus a UTF-8 check, minus a top-level array), and reads the same `id` and `created_at`,
//! on JSON objects and on mutations of them that break them in every way a byte can.

use std::borrow::Cow;

use proptest::prelude::*;

use super::scan;

/// What the event's head was read with before: serde_json with a derived struct.
#[derive(serde::Deserialize)]
struct Reference<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
    #[serde(default, borrow)]
    created_at: Option<&'a serde_json::value::RawValue>,
}

/// serde_json's verdict: `None` where the scanner is meant to differ (a top-level array).
fn reference(bytes: &[u8]) -> Option<Result<(String, Option<String>), ()>> {
    if bytes.trim_ascii_start().starts_with(b"[") {
        return None;
    }
    if std::str::from_utf8(bytes).is_err() {
        return Some(Err(()));
    }
    Some(
        serde_json::from_slice::<Reference<'_>>(bytes)
            .map(|r| (r.id.into_owned(), r.created_at.map(|v| v.get().to_owned())))
            .map_err(|_| ()),
    )
}

fn value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(serde_json::Value::from),
        any::<String>().prop_map(serde_json::Value::from),
        "[a-z\"\\\\/\u{e9}\u{1F600}\t]{0,12}".prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::Array),
            prop::collection::btree_map("[a-z_]{0,10}|id|created_at", inner, 0..5)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A JSON object, often with an `id` and a `created_at`, compact or pretty.
fn object() -> impl Strategy<Value = Vec<u8>> {
    (prop::collection::btree_map("[a-z_]{0,10}|id|created_at", value(), 0..6), any::<Option<String>>(), any::<bool>())
        .prop_map(|(mut fields, id, pretty)| {
            if let Some(id) = id {
                fields.insert("id".into(), id.into());
            }
            let object = serde_json::Value::Object(fields.into_iter().collect());
            if pretty { serde_json::to_vec_pretty(&object) } else { serde_json::to_vec(&object) }.unwrap_or_default()
        })
}

/// A well-formed string token with every kind of escape.
fn string_token() -> impl Strategy<Value = String> {
    r#""([a-z \u{e9}\u{1F600}]|\\[\\"/bfnrt]|\\u[0-9a-fA-F]{4}|\\ud83d\\ude00|\\ud800){0,8}""#
}

/// A key beside the leading `id`: now and then `id` or `created_at` again, plain or escaped.
fn top_level_key() -> impl Strategy<Value = String> {
    prop_oneof![
        20 => r#""[a-z_]{0,6}""#,
        1 => r#""(id|created_at|i\\u0064|created\\u005fat)""#,
    ]
}

/// JSON text built from raw tokens, near-misses included: every escape (and bad ones), numbers
/// with and without their required digits, literals cut short, and any whitespace.
fn raw_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        16 => string_token(),
        1 => r#""([a-z]|\\[xu]|\\u[0-9a-gA-G]{0,4}|[\x00-\x1f])*"?"#,
        8 => r"-?(0|[1-9][0-9]{0,3})(\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
        1 => r"-?(0[0-9]|[0-9]{0,2})(\.[0-9]{0,1})?([eE][+-]?[0-9]{0,1})?",
        4 => "true|false|null",
        1 => "tru|nul|fals|True",
    ];
    let ws = "[ \t\r\n]{0,2}";
    leaf.prop_recursive(4, 30, 5, move |inner| {
        let member = (ws, r#""([a-z_]{0,3}|id|created_at|i\\u0064)""#, ws, inner.clone(), ws)
            .prop_map(|(a, k, b, v, c)| format!("{a}{k}{b}:{v}{c}"));
        prop_oneof![
            prop::collection::vec(inner, 0..4).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(member, 0..4).prop_map(|m| format!("{{{}}}", m.join(","))),
        ]
    })
}

/// Bytes that break JSON in interesting ways.
fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        prop::sample::select(b"{}[]\":,\\ \n\t0123456789-+.eEtrufalsn\x00\x1f/bu".to_vec()),
        prop::sample::select(vec![0x80u8, 0xbf, 0xc3, 0xe2, 0xf0, 0xff]),
        any::<u8>(),
    ]
}

#[derive(Debug, Clone)]
enum Edit {
    Insert(prop::sample::Index, u8),
    Delete(prop::sample::Index),
    Replace(prop::sample::Index, u8),
    Cut(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<prop::sample::Index>(), byte()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<prop::sample::Index>().prop_map(Edit::Delete),
        (any::<prop::sample::Index>(), byte()).prop_map(|(i, b)| Edit::Replace(i, b)),
        any::<prop::sample::Index>().prop_map(Edit::Cut),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = bytes.len();
        match *e {
            Edit::Insert(ref i, b) => bytes.insert(i.index(n + 1), b),
            Edit::Delete(ref i) if n > 0 => {
                bytes.remove(i.index(n));
            }
            Edit::Replace(ref i, b) if n > 0 => bytes[i.index(n)] = b,
            Edit::Cut(ref i) => bytes.truncate(i.index(n + 1)),
            _ => {}
        }
    }
    bytes
}

fn agree(bytes: &[u8]) -> Result<(), TestCaseError> {
    let ours = scan(bytes).map(|h| (h.id.into_owned(), h.created_at.map(|v| String::from_utf8_lossy(v).into_owned())));
    match reference(bytes) {
        None => prop_assert!(ours.is_err(), "a top-level array is not an event: {:?}", String::from_utf8_lossy(bytes)),
        Some(theirs) => prop_assert_eq!(
            ours.as_ref().map_err(|_| ()),
            theirs.as_ref().map_err(|_| ()),
            "{:?}: ours {:?}",
            String::from_utf8_lossy(bytes),
            ours
        ),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn agrees_with_serde_json_on_objects(bytes in object()) {
        agree(&bytes)?;
    }

    #[test]
    fn agrees_with_serde_json_on_broken_objects(bytes in object(), edits in prop::collection::vec(edit(), 1..4)) {
        agree(&apply(bytes, &edits))?;
    }

    #[test]
    fn agrees_with_serde_json_on_raw_tokens(
        members in prop::collection::vec((top_level_key(), raw_text()), 0..5),
        id in prop_oneof![9 => string_token(), 1 => raw_text()],
    ) {
        let mut text = format!(r#"{{"id":{id}"#);
        for (key, value) in members {
            text.push_str(&format!(",{key}:{value}"));
        }
        text.push('}');
        agree(text.as_bytes())?;
    }

    #[test]
    fn agrees_with_serde_json_on_noise(bytes in prop::collection::vec(byte(), 0..40)) {
        agree(&bytes)?;
    }
}
