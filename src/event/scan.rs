//! One pass over an event's bytes that checks they are a single JSON object, and reads its top-level
//! `id` and `created_at` on the way.
//!
//! Why not serde_json: reading two fields through a derived struct made serde_json walk every
//! value it skips token by token, and with the UTF-8 check before it, that was about a third of
//! the user-space instructions of a whole replay (callgrind, 5,000 events of 2 KB). Here strings,
//! which are most of an event's bytes, are skipped eight bytes at a time, and UTF-8 is checked
//! only where a byte is not ASCII. Nothing is copied or allocated unless `id` has an escape.
//!
//! It accepts what serde_json accepted for the same two fields, plus a UTF-8 check, minus a
//! top-level array (serde reads a struct from a sequence too; an event is an object):
//! `scan/properties.rs` holds both to that on mutated input. Like serde_json, values that are
//! skipped have their `\u` escapes checked for four hex digits but not for lone surrogates, and
//! nesting has no depth limit (the stack is a bit per level, on the heap past 64).

use std::borrow::Cow;

/// The two fields of an event we read.
#[derive(Debug, PartialEq, Eq)]
pub struct Head<'a> {
    pub id: Cow<'a, str>,
    /// The `created_at` value's bytes as written (any JSON value; `None` when missing or null).
    pub created_at: Option<&'a [u8]>,
}

/// Why the bytes are not an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// Not UTF-8 from this byte offset (0-based) on.
    #[error("not valid UTF-8 (at byte {})", .at + 1)]
    Utf8 { at: usize },
    /// Not one JSON object.
    #[error("{what} at line {line} column {column}")]
    Syntax { what: &'static str, line: usize, column: usize },
    /// JSON, but its `id` is missing, repeated, or not a string (or `created_at` is repeated).
    #[error("{0}")]
    Field(String),
}

/// Check `bytes` and read the event's head.
pub fn scan(bytes: &[u8]) -> Result<Head<'_>, ScanError> {
    Scanner { b: bytes, i: 0 }.object().map_err(|e| match std::str::from_utf8(bytes) {
        // Whatever else is wrong, bytes that are not text are reported as such.
        Err(u) => ScanError::Utf8 { at: u.valid_up_to() },
        Ok(_) => e,
    })
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

/// Which top-level key a key is.
enum Field {
    Id,
    CreatedAt,
    Other,
}

impl<'a> Scanner<'a> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline(always)]
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A syntax error here, worded as serde_json words it, at its line and column (1-based).
    #[cold]
    fn syntax(&self, what: &'static str) -> ScanError {
        let before = &self.b[..self.i.min(self.b.len())];
        let line = 1 + memchr::memchr_iter(b'\n', before).count();
        let column = before.len() - memchr::memrchr(b'\n', before).map_or(0, |nl| nl + 1) + 1;
        ScanError::Syntax { what, line, column }
    }

    /// The same error, or the end of the input when there is nothing left.
    #[cold]
    fn unexpected(&self, what: &'static str, eof: &'static str) -> ScanError {
        self.syntax(if self.i >= self.b.len() { eof } else { what })
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), ScanError> {
        if self.peek() == Some(byte) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.unexpected(what, "EOF while parsing an object"))
        }
    }

    /// The whole input: one object, only whitespace around it.
    fn object(&mut self) -> Result<Head<'a>, ScanError> {
        self.skip_whitespace();
        match self.peek() {
            Some(b'{') => self.i += 1,
            None => return Err(self.syntax("EOF while parsing a value")),
            Some(_) => return Err(self.syntax("expected a JSON object")),
        }
        let mut id = None;
        let mut created_at = None;
        self.skip_whitespace();
        if self.peek() == Some(b'}') {
            self.i += 1;
        } else {
            loop {
                if self.peek() != Some(b'"') {
                    return Err(self.unexpected("key must be a string", "EOF while parsing an object"));
                }
                let start = self.i;
                let escaped = self.string()?;
                let key = &self.b[start + 1..self.i - 1];
                let field = match (escaped, key) {
                    (false, b"id") => Field::Id,
                    (false, b"created_at") => Field::CreatedAt,
                    (false, _) => Field::Other,
                    (true, _) => match decode(&self.b[start..self.i]).map_err(ScanError::Field)?.as_ref() {
                        "id" => Field::Id,
                        "created_at" => Field::CreatedAt,
                        _ => Field::Other,
                    },
                };
                self.skip_whitespace();
                self.expect(b':', "expected `:`")?;
                self.skip_whitespace();
                let start = self.i;
                match field {
                    Field::Id if id.is_some() => return Err(ScanError::Field("duplicate field `id`".into())),
                    Field::CreatedAt if created_at.is_some() => {
                        return Err(ScanError::Field("duplicate field `created_at`".into()));
                    }
                    Field::Id if self.peek() == Some(b'"') => {
                        self.string()?;
                        id = Some(unquote(&self.b[start..self.i]).map_err(ScanError::Field)?);
                    }
                    Field::Id => {
                        self.value()?;
                        return Err(ScanError::Field("`id` is not a string".into()));
                    }
                    Field::CreatedAt => {
                        self.value()?;
                        let value = &self.b[start..self.i];
                        created_at = Some((value != b"null").then_some(value));
                    }
                    Field::Other => self.value()?,
                }
                self.skip_whitespace();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        self.skip_whitespace();
                    }
                    Some(b'}') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(self.unexpected("expected `,` or `}`", "EOF while parsing an object")),
                }
            }
        }
        self.skip_whitespace();
        if self.i < self.b.len() {
            return Err(self.syntax("trailing characters"));
        }
        let id = id.ok_or_else(|| ScanError::Field("missing field `id`".into()))?;
        Ok(Head { id, created_at: created_at.flatten() })
    }

    /// Any JSON value, nested to any depth, without recursion.
    fn value(&mut self) -> Result<(), ScanError> {
        let mut nest = Nest::default();
        loop {
            // At the start of a value.
            match self.peek() {
                Some(b'{') => {
                    self.i += 1;
                    self.skip_whitespace();
                    if self.peek() == Some(b'}') {
                        self.i += 1;
                    } else {
                        nest.push(true);
                        self.key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    self.i += 1;
                    self.skip_whitespace();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                    } else {
                        nest.push(false);
                        continue;
                    }
                }
                Some(b'"') => {
                    self.string()?;
                }
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                None => return Err(self.syntax("EOF while parsing a value")),
                Some(_) => return Err(self.syntax("expected value")),
            }
            // After a value: close what it ends, until a `,` asks for the next one.
            loop {
                let Some(in_object) = nest.top() else { return Ok(()) };
                self.skip_whitespace();
                match self.peek() {
                    Some(b',') => {
                        self.i += 1;
                        self.skip_whitespace();
                        if in_object {
                            self.key()?;
                        }
                        break;
                    }
                    Some(b'}') if in_object => {
                        self.i += 1;
                        nest.pop();
                    }
                    Some(b']') if !in_object => {
                        self.i += 1;
                        nest.pop();
                    }
                    _ if in_object => {
                        return Err(self.unexpected("expected `,` or `}`", "EOF while parsing an object"));
                    }
                    _ => return Err(self.unexpected("expected `,` or `]`", "EOF while parsing a list")),
                }
            }
        }
    }

    /// A key inside a nested object, its `:`, and the whitespace before its value.
    #[inline(always)]
    fn key(&mut self) -> Result<(), ScanError> {
        if self.peek() != Some(b'"') {
            return Err(self.unexpected("key must be a string", "EOF while parsing an object"));
        }
        self.string()?;
        self.skip_whitespace();
        self.expect(b':', "expected `:`")?;
        self.skip_whitespace();
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), ScanError> {
        if self.b[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(self.unexpected("expected ident", "EOF while parsing a value"))
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, of any length.
    fn number(&mut self) -> Result<(), ScanError> {
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => {
                self.i += 1;
                if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return Err(self.syntax("invalid number"));
                }
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.unexpected("invalid number", "EOF while parsing a value")),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Result<(), ScanError> {
        if !self.peek().is_some_and(|c| c.is_ascii_digit()) {
            return Err(self.unexpected("invalid number", "EOF while parsing a value"));
        }
        self.digits();
        Ok(())
    }

    /// A string, from its opening quote to past its closing one. Says whether it has escapes.
    #[inline(always)]
    fn string(&mut self) -> Result<bool, ScanError> {
        self.i += 1;
        let mut escaped = false;
        loop {
            // Eight bytes at a time up to the first that needs a look.
            while let Some(word) = self.b.get(self.i..self.i + 8) {
                let word = u64::from_le_bytes(word.try_into().unwrap_or_default());
                let special = needs_a_look(word);
                if special != 0 {
                    self.i += (special.trailing_zeros() / 8) as usize;
                    break;
                }
                self.i += 8;
            }
            match self.peek() {
                None => return Err(self.syntax("EOF while parsing a string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.i += 1;
                    match self.peek() {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 1,
                        Some(b'u') => {
                            self.i += 1;
                            for _ in 0..4 {
                                match self.peek() {
                                    Some(c) if c.is_ascii_hexdigit() => self.i += 1,
                                    None => return Err(self.syntax("EOF while parsing a string")),
                                    Some(_) => return Err(self.syntax("invalid escape")),
                                }
                            }
                        }
                        None => return Err(self.syntax("EOF while parsing a string")),
                        Some(_) => return Err(self.syntax("invalid escape")),
                    }
                }
                Some(0..=0x1f) => {
                    return Err(self.syntax("control character (\\u0000-\\u001F) found while parsing a string"));
                }
                Some(0x80..) => {
                    // A run of non-ASCII bytes: UTF-8 never has an ASCII byte inside a character.
                    let run = self.b[self.i..].iter().position(|c| c.is_ascii()).unwrap_or(self.b.len() - self.i);
                    if let Err(e) = std::str::from_utf8(&self.b[self.i..self.i + run]) {
                        return Err(ScanError::Utf8 { at: self.i + e.valid_up_to() });
                    }
                    self.i += run;
                }
                Some(_) => self.i += 1,
            }
        }
    }
}

/// A mask with the high bit set in each byte of `word` that is `"`, `\`, a control character or
/// not ASCII. Above the first such byte there can be false alarms (a borrow carries up); the
/// lowest one is exact, and it is the only one used.
fn needs_a_look(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |v: u64| v.wrapping_sub(ONES) & !v & HIGH;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    quote | backslash | control | (word & HIGH)
}

/// The text of a string token (quotes included): borrowed when it has no escape, else decoded as
/// serde_json decodes it.
pub fn unquote(token: &[u8]) -> Result<Cow<'_, str>, String> {
    match token {
        [b'"', inner @ .., b'"'] if !inner.contains(&b'\\') => {
            std::str::from_utf8(inner).map(Cow::Borrowed).map_err(|e| e.to_string())
        }
        _ => decode(token),
    }
}

/// A string token with escapes, decoded as serde_json decodes it (rare: ids are plain).
#[cold]
fn decode(token: &[u8]) -> Result<Cow<'_, str>, String> {
    serde_json::from_slice::<Cow<'_, str>>(token).map_err(|e| e.to_string())
}

/// Whether each open container is an object, a bit per level (on the heap past 64 levels).
#[derive(Default)]
struct Nest {
    depth: usize,
    bits: u64,
    deep: Vec<bool>,
}

impl Nest {
    fn push(&mut self, object: bool) {
        if self.depth < 64 {
            self.bits = (self.bits & !(1 << self.depth)) | (u64::from(object) << self.depth);
        } else {
            self.deep.push(object);
        }
        self.depth += 1;
    }

    fn pop(&mut self) {
        self.depth -= 1;
        if self.depth >= 64 {
            self.deep.pop();
        }
    }

    /// Whether the innermost open container is an object; `None` when none is open.
    fn top(&self) -> Option<bool> {
        match self.depth {
            0 => None,
            d if d <= 64 => Some(self.bits >> (d - 1) & 1 == 1),
            _ => self.deep.last().copied(),
        }
    }
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    fn head(s: &str) -> Result<Head<'_>, ScanError> {
        scan(s.as_bytes())
    }

    #[test]
    fn reads_id_and_created_at_at_the_top_level_only() {
        let h =
            head(r#" {"x":{"id":"inner","created_at":1},"id":"e_1","created_at":"2020-01-01T00:00:00Z"} "#).unwrap();
        assert_eq!(h.id, "e_1");
        assert_eq!(h.created_at, Some(&br#""2020-01-01T00:00:00Z""#[..]));
        assert!(matches!(head(r#"{"id":"a"}"#).unwrap().id, Cow::Borrowed("a")));
        assert_eq!(head(r#"{"id":"a","created_at":null}"#).unwrap().created_at, None);
        assert_eq!(head(r#"{"id":"a","created_at":[1, {"t":2}]}"#).unwrap().created_at, Some(&b"[1, {\"t\":2}]"[..]));
        // Escaped keys and ids are decoded.
        assert_eq!(head(r#"{"i\u0064":"\u00e9v\"t"}"#).unwrap().id, "év\"t");
    }

    #[test]
    fn says_what_is_wrong_and_where() {
        let err = |s: &[u8]| scan(s).unwrap_err().to_string();
        assert_eq!(err(b"{\"id\":\"a\" \"b\":1}"), "expected `,` or `}` at line 1 column 11");
        assert_eq!(err(b"{\n  \"id\": \"a\",\n  \"n\": 01\n}"), "invalid number at line 3 column 9");
        assert_eq!(err(b"[1]"), "expected a JSON object at line 1 column 1");
        assert_eq!(err(b"{\"id\":\"a\"} x"), "trailing characters at line 1 column 12");
        assert_eq!(err(b"{\"id\":\"a\",\"s\":\"\xff\"}"), "not valid UTF-8 (at byte 16)");
        assert_eq!(
            err(b"{\"id\":\"a\",\"s\":\"\x01\"}"),
            "control character (\\u0000-\\u001F) found while parsing a string at line 1 column 16"
        );
        assert_eq!(err(b"{\"id\":5}"), "`id` is not a string");
        assert_eq!(err(b"{\"x\":5}"), "missing field `id`");
        assert_eq!(err(b"{\"id\":\"a\",\"id\":\"b\"}"), "duplicate field `id`");
        assert_eq!(err(b"{\"id\":\"a\",\"created_at\":null,\"created_at\":1}"), "duplicate field `created_at`");
        assert_eq!(err(b"{\"id\":\"a\",\"s\":\"\\x\"}"), "invalid escape at line 1 column 17");
        assert_eq!(err(b"{\"id\":\"a\",\"s\":[1,2"), "EOF while parsing a list at line 1 column 19");
    }

    #[test]
    fn deep_nesting_needs_no_stack() {
        let depth = 100_000;
        let deep = format!(r#"{{"id":"a","x":{}{}}}"#, "[".repeat(depth), "]".repeat(depth));
        assert_eq!(head(&deep).unwrap().id, "a");
        let mixed = format!(r#"{{"id":"a","x":{}1{}}}"#, "[{\"k\":".repeat(70), "}]".repeat(70));
        assert_eq!(head(&mixed).unwrap().id, "a");
        let crossed = format!(r#"{{"id":"a","x":{}1{}}}"#, "[{\"k\":".repeat(70), "]}".repeat(70));
        assert!(head(&crossed).is_err());
    }
}
