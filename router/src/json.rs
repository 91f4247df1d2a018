//! JSON as the executor holds subgraph answers: parsed without copying their strings, objects
//! as small vectors in the order they were written, and written back straight into a byte
//! buffer.
//!
//! A request's answers are kept whole in its [`Sources`]; a string or key is a [`Str`], a
//! small copyable range of one of them (escaped strings, the few the router makes, get a
//! buffer of their own). So parsing allocates only the vectors of arrays and objects, a value
//! is 32 bytes, and copying one costs no reference counting. (`serde_json::Value` allocates
//! every string and keeps every object in an `IndexMap` hashed with SipHash; for answers of
//! many small objects that was most of the router's work.)

use bytes::Bytes;
use serde_json::{Number, Value as Json};

/// A JSON string, without its quotes and escapes: a range of a buffer of its [`Sources`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Str {
    source: u32,
    start: u32,
    len: u32,
    /// Nothing in it needs escaping: written as it is. True of every string that was a range
    /// of an answer (JSON escapes quotes, backslashes and control characters, so a string
    /// without escapes has none).
    clean: bool,
}

const _: () = assert!(std::mem::size_of::<Str>() == 16);
const _: () = assert!(std::mem::size_of::<Value>() == 32);

/// The bytes a request's values live in: every answer, and the strings made along the way.
/// All of it is UTF-8 (answers are checked when parsed).
#[derive(Debug, Default)]
pub struct Sources {
    buffers: Vec<Bytes>,
}

impl Sources {
    pub fn bytes(&self, text: Str) -> &[u8] {
        let start = text.start as usize;
        self.buffers
            .get(text.source as usize)
            .and_then(|buffer| buffer.get(start..start + text.len as usize))
            .unwrap_or_default()
    }

    /// The text (every buffer is UTF-8, so this does not fail).
    pub fn text(&self, text: Str) -> &str {
        std::str::from_utf8(self.bytes(text)).unwrap_or_default()
    }

    pub fn is(&self, text: Str, other: &str) -> bool {
        text.len as usize == other.len() && same_bytes(self.bytes(text), other.as_bytes())
    }

    pub fn same(&self, a: Str, b: Str) -> bool {
        a.len == b.len
            && ((a.source == b.source && a.start == b.start)
                || same_bytes(self.bytes(a), self.bytes(b)))
    }

    /// A string the router makes (a key it writes, a value it sets).
    pub fn make(&mut self, text: &str) -> Str {
        self.keep(Bytes::copy_from_slice(text.as_bytes()))
    }

    /// `bytes` as one string (UTF-8 by the caller's word).
    fn keep(&mut self, bytes: Bytes) -> Str {
        let clean = first_to_escape(&bytes).is_none();
        let len = bytes.len() as u32;
        let source = self.buffers.len() as u32;
        self.buffers.push(bytes);
        Str {
            source,
            start: 0,
            len,
            clean,
        }
    }

    /// Parses an answer (RFC 8259 JSON, UTF-8) and keeps its bytes; its strings without
    /// escapes are ranges of them.
    pub fn parse(&mut self, bytes: Bytes) -> Result<Value, ParseError> {
        if std::str::from_utf8(&bytes).is_err() {
            return Err(ParseError {
                what: "invalid UTF-8",
                at: 0,
            });
        }
        if bytes.len() > u32::MAX as usize {
            return Err(ParseError {
                what: "an answer over 4 GiB",
                at: 0,
            });
        }
        let source = self.buffers.len() as u32;
        self.buffers.push(bytes.clone());
        let mut parser = Parser {
            text: &bytes,
            source,
            sources: self,
            at: 0,
            depth: 0,
        };
        let value = parser.value()?;
        parser.skip_whitespace();
        if parser.at != parser.text.len() {
            return Err(parser.error("trailing characters"));
        }
        Ok(value)
    }

    /// How many bytes of answers and strings are kept.
    pub fn size(&self) -> usize {
        self.buffers.iter().map(Bytes::len).sum()
    }
}

/// `a == b`, inlined for the short keys the executor compares all the time (a call to
/// `memcmp` per member was a tenth of its work): two overlapping word loads cover up to 16
/// bytes.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    #[inline]
    fn word(s: &[u8], at: usize) -> u64 {
        s.get(at..at + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            .map_or(0, u64::from_ne_bytes)
    }
    #[inline]
    fn half(s: &[u8], at: usize) -> u32 {
        s.get(at..at + 4)
            .and_then(|w| <[u8; 4]>::try_from(w).ok())
            .map_or(0, u32::from_ne_bytes)
    }
    let n = a.len();
    if n != b.len() {
        return false;
    }
    match n {
        0 => true,
        1..4 => a.first() == b.first() && a.get(n / 2) == b.get(n / 2) && a.last() == b.last(),
        4..8 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        _ => a == b,
    }
}

fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

/// Object members in the order written.
pub type Object = Vec<(Str, Value)>;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(Str),
    Array(Vec<Value>),
    Object(Object),
}

impl Value {
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The member `key` of an object.
    pub fn get<'v>(&'v self, key: &str, sources: &Sources) -> Option<&'v Value> {
        match self {
            Value::Object(members) => get(members, key, sources),
            _ => None,
        }
    }

    pub fn get_mut<'v>(&'v mut self, key: &str, sources: &Sources) -> Option<&'v mut Value> {
        match self {
            Value::Object(members) => get_mut(members, key, sources),
            _ => None,
        }
    }

    pub fn as_str<'s>(&self, sources: &'s Sources) -> Option<&'s str> {
        match self {
            Value::String(s) => Some(sources.text(*s)),
            _ => None,
        }
    }

    /// The same value as `serde_json::Value`, for the rare paths that want one (errors).
    pub fn to_serde(&self, sources: &Sources) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.clone()),
            Value::String(s) => Json::String(sources.text(*s).to_owned()),
            Value::Array(items) => {
                Json::Array(items.iter().map(|item| item.to_serde(sources)).collect())
            }
            Value::Object(members) => Json::Object(
                members
                    .iter()
                    .map(|(k, v)| (sources.text(*k).to_owned(), v.to_serde(sources)))
                    .collect(),
            ),
        }
    }

    /// A `serde_json::Value` as a value (copying its strings into `sources`).
    pub fn from_serde(value: &Json, sources: &mut Sources) -> Value {
        match value {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(sources.make(s)),
            Json::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|item| Value::from_serde(item, sources))
                    .collect(),
            ),
            Json::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (sources.make(k), Value::from_serde(v, sources)))
                    .collect(),
            ),
        }
    }
}

pub fn get<'v>(members: &'v Object, key: &str, sources: &Sources) -> Option<&'v Value> {
    let at = position(members, key, sources)?;
    members.get(at).map(|(_, v)| v)
}

pub fn get_mut<'v>(members: &'v mut Object, key: &str, sources: &Sources) -> Option<&'v mut Value> {
    let at = position(members, key, sources)?;
    members.get_mut(at).map(|(_, v)| v)
}

/// Where the member `key` is.
#[inline]
pub fn position(members: &Object, key: &str, sources: &Sources) -> Option<usize> {
    members.iter().position(|(k, _)| sources.is(*k, key))
}

/// Why an answer is not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct ParseError {
    what: &'static str,
    at: usize,
}

/// How deeply arrays and objects may nest in an answer (as serde_json's limit).
const MAX_DEPTH: usize = 128;

struct Parser<'b> {
    text: &'b [u8],
    source: u32,
    sources: &'b mut Sources,
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn error(&self, what: &'static str) -> ParseError {
        ParseError { what, at: self.at }
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.text.get(self.at) {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_whitespace();
        self.text.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), ParseError> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        match self.peek() {
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(Value::String),
            Some(b't') => self.literal(b"true", Value::Bool(true)),
            Some(b'f') => self.literal(b"false", Value::Bool(false)),
            Some(b'n') => self.literal(b"null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error("expected a value")),
            None => Err(self.error("unexpected end")),
        }
    }

    fn literal(&mut self, word: &[u8], value: Value) -> Result<Value, ParseError> {
        if self.text[self.at..].starts_with(word) {
            self.at += word.len();
            Ok(value)
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn nest(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error("nested too deeply"));
        }
        self.at += 1;
        Ok(())
    }

    fn array(&mut self) -> Result<Value, ParseError> {
        self.nest()?;
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.at += 1;
        } else {
            loop {
                items.push(self.value()?);
                match self.peek() {
                    Some(b',') => self.at += 1,
                    Some(b']') => {
                        self.at += 1;
                        break;
                    }
                    _ => return Err(self.error("expected `,` or `]`")),
                }
            }
        }
        self.depth -= 1;
        Ok(Value::Array(items))
    }

    fn object(&mut self) -> Result<Value, ParseError> {
        self.nest()?;
        let mut members = Vec::new();
        if self.peek() == Some(b'}') {
            self.at += 1;
        } else {
            loop {
                if self.peek() != Some(b'"') {
                    return Err(self.error("expected a key"));
                }
                let key = self.string()?;
                self.expect(b':', "expected `:`")?;
                members.push((key, self.value()?));
                match self.peek() {
                    Some(b',') => self.at += 1,
                    Some(b'}') => {
                        self.at += 1;
                        break;
                    }
                    _ => return Err(self.error("expected `,` or `}`")),
                }
            }
        }
        self.depth -= 1;
        Ok(Value::Object(members))
    }

    /// A string, `at` on its opening quote.
    fn string(&mut self) -> Result<Str, ParseError> {
        let start = self.at + 1;
        let rest = &self.text[start..];
        let Some(end) = memchr::memchr2(b'"', b'\\', rest) else {
            self.at = self.text.len();
            return Err(self.error("unterminated string"));
        };
        if has_control(&rest[..end]) {
            self.at = start;
            return Err(self.error("control character in a string"));
        }
        if rest[end] == b'\\' {
            return self.escaped(start, start + end);
        }
        self.at = start + end + 1;
        Ok(Str {
            source: self.source,
            start: start as u32,
            len: end as u32,
            clean: true,
        })
    }

    /// The rest of a string with escapes, from its first backslash at `at`.
    fn escaped(&mut self, start: usize, mut at: usize) -> Result<Str, ParseError> {
        let mut out = self.text[start..at].to_vec();
        loop {
            match self.text.get(at) {
                Some(b'"') => break,
                Some(b'\\') => {
                    let escape = self.text.get(at + 1).copied();
                    at += 2;
                    let byte = match escape {
                        Some(b'"') => b'"',
                        Some(b'\\') => b'\\',
                        Some(b'/') => b'/',
                        Some(b'b') => 0x08,
                        Some(b'f') => 0x0c,
                        Some(b'n') => b'\n',
                        Some(b'r') => b'\r',
                        Some(b't') => b'\t',
                        Some(b'u') => {
                            self.at = at;
                            let c = self.unicode_escape()?;
                            at = self.at;
                            let mut buffer = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
                            continue;
                        }
                        _ => {
                            self.at = at - 1;
                            return Err(self.error("invalid escape"));
                        }
                    };
                    out.push(byte);
                }
                Some(&byte) if byte < 0x20 => {
                    self.at = at;
                    return Err(self.error("control character in a string"));
                }
                Some(&byte) => {
                    out.push(byte);
                    at += 1;
                }
                None => {
                    self.at = at;
                    return Err(self.error("unterminated string"));
                }
            }
        }
        self.at = at + 1;
        match String::from_utf8(out) {
            Ok(text) => Ok(self.sources.keep(Bytes::from(text))),
            Err(_) => Err(self.error("invalid UTF-8 in an escape")),
        }
    }

    /// `XXXX` after `\u` (with its low surrogate's `\uXXXX` when it is a high one).
    fn unicode_escape(&mut self) -> Result<char, ParseError> {
        let first = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&first) {
            if !self.text[self.at..].starts_with(b"\\u") {
                return Err(self.error("lone surrogate"));
            }
            self.at += 2;
            let second = self.hex4()?;
            if !(0xDC00..0xE000).contains(&second) {
                return Err(self.error("lone surrogate"));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        } else {
            first
        };
        char::from_u32(code).ok_or_else(|| self.error("lone surrogate"))
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let digits = self
            .text
            .get(self.at..self.at + 4)
            .ok_or_else(|| self.error("short \\u escape"))?;
        let mut code = 0;
        for &digit in digits {
            let value = char::from(digit)
                .to_digit(16)
                .ok_or_else(|| self.error("invalid \\u escape"))?;
            code = code * 16 + value;
        }
        self.at += 4;
        Ok(code)
    }

    fn number(&mut self) -> Result<Value, ParseError> {
        let start = self.at;
        let digits = |text: &[u8], mut at: usize| {
            let from = at;
            while text.get(at).is_some_and(u8::is_ascii_digit) {
                at += 1;
            }
            (at, at > from)
        };
        let mut at = start + usize::from(self.text[start] == b'-');
        let integer_start = at;
        let (end, any) = digits(self.text, at);
        if !any || (self.text[integer_start] == b'0' && end > integer_start + 1) {
            return Err(self.error("invalid number"));
        }
        at = end;
        let mut integer = true;
        if self.text.get(at) == Some(&b'.') {
            integer = false;
            let (end, any) = digits(self.text, at + 1);
            if !any {
                return Err(self.error("invalid number"));
            }
            at = end;
        }
        if let Some(b'e' | b'E') = self.text.get(at) {
            integer = false;
            at += 1;
            if let Some(b'+' | b'-') = self.text.get(at) {
                at += 1;
            }
            let (end, any) = digits(self.text, at);
            if !any {
                return Err(self.error("invalid number"));
            }
            at = end;
        }
        self.at = at;
        // Only ASCII digits, signs, dots and exponents: valid UTF-8.
        let text = std::str::from_utf8(&self.text[start..at]).unwrap_or_default();
        // `-0` is the float -0.0, as serde_json reads it.
        if integer && text != "-0" {
            if let Ok(n) = text.parse::<i64>() {
                return Ok(Value::Number(n.into()));
            }
            if let Ok(n) = text.parse::<u64>() {
                return Ok(Value::Number(n.into()));
            }
        }
        text.parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| self.error("a number JSON cannot hold"))
    }
}

/// Writes a string value: as it is when it needs no escaping.
pub fn write_string(out: &mut Vec<u8>, text: Str, sources: &Sources) {
    let bytes = sources.bytes(text);
    if text.clean {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        write_str(out, bytes);
    }
}

/// Writes a GraphQL name (a field, alias or variable: ASCII letters, digits and underscores,
/// which JSON never escapes) as a JSON string, without looking for anything to escape.
pub fn write_name(out: &mut Vec<u8>, name: &str) {
    debug_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    out.reserve(name.len() + 2);
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.push(b'"');
}

/// Writes `text` as a JSON string, quoted and escaped.
pub fn write_str(out: &mut Vec<u8>, text: &[u8]) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    let mut rest = text;
    while let Some(at) = first_to_escape(rest) {
        out.extend_from_slice(&rest[..at]);
        let byte = rest[at];
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x0c => out.extend_from_slice(b"\\f"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
        }
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

/// Where the first byte that needs escaping is.
fn first_to_escape(text: &[u8]) -> Option<usize> {
    // A loop without an early exit, which the compiler vectorizes; escapes are rare.
    let any = text
        .iter()
        .fold(0u8, |found, &byte| found | u8::from(needs_escape(byte)));
    if any != 0 {
        text.iter().position(|&byte| needs_escape(byte))
    } else {
        None
    }
}

/// Whether `text` holds a control character (which JSON strings may not hold as they are).
fn has_control(text: &[u8]) -> bool {
    text.iter()
        .fold(0u8, |found, &byte| found | u8::from(byte < 0x20))
        != 0
}

pub fn write_number(out: &mut Vec<u8>, number: &Number) {
    if let Some(n) = number.as_u64() {
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    } else if let Some(n) = number.as_i64() {
        out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    } else {
        // serde_json's own formatting of floats (shortest round trip).
        out.extend_from_slice(number.to_string().as_bytes());
    }
}

/// Writes `value` as JSON.
pub fn write(out: &mut Vec<u8>, value: &Value, sources: &Sources) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_string(out, *s, sources),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item, sources);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            out.push(b'{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(out, *key, sources);
                out.push(b':');
                write(out, value, sources);
            }
            out.push(b'}');
        }
    }
}

/// Writes a `serde_json::Value` (a client's variable, an introspection answer).
pub fn write_serde(out: &mut Vec<u8>, value: &Json) {
    // Writing into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &[u8]) -> Result<Value, ParseError> {
        Sources::default().parse(Bytes::copy_from_slice(text))
    }

    #[test]
    fn short_keys_compare_byte_for_byte() {
        for n in 0..40 {
            let a: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
            assert!(same_bytes(&a, &a.clone()), "{n} bytes equal");
            for at in 0..n {
                let mut b = a.clone();
                b[at] = b'#';
                assert!(!same_bytes(&a, &b), "{n} bytes, differing at {at}");
            }
            assert!(!same_bytes(&a, &a[..n.saturating_sub(1)]) || n == 0);
        }
    }

    #[test]
    fn parses_and_writes_back_the_same_json() {
        let text = r#"{"data":{"a":[1,-2,3.5,true,null,"x\"y\\z\n\u0001é"],"b":{},"c":[]},"n":18446744073709551615}"#;
        let mut sources = Sources::default();
        let value = sources.parse(Bytes::from(text)).expect("parses");
        let mut out = Vec::new();
        write(&mut out, &value, &sources);
        let again: Json = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(again, serde_json::from_str::<Json>(text).expect("valid"));
        assert_eq!(value.to_serde(&sources), again);
        let copied = Value::from_serde(&again, &mut sources);
        assert_eq!(copied.to_serde(&sources), again);
    }

    #[test]
    fn strings_without_escapes_are_slices_of_the_answer() {
        let mut sources = Sources::default();
        let value = sources
            .parse(Bytes::from(r#"{"name":"Ada","quoted":"a\"b"}"#))
            .expect("parses");
        let Value::Object(members) = &value else {
            panic!("an object")
        };
        let (key, name) = &members[0];
        let Value::String(name) = name else {
            panic!("a string")
        };
        // The key and the name are ranges of the answer; the escaped string has its own.
        assert_eq!((key.source, key.start, key.len, key.clean), (0, 2, 4, true));
        assert_eq!((name.source, name.start), (0, 9));
        assert_eq!(sources.text(*name), "Ada");
        let Some(Value::String(quoted)) = value.get("quoted", &sources) else {
            panic!("a string")
        };
        assert_eq!(quoted.source, 1);
        assert!(!quoted.clean);
        assert_eq!(sources.text(*quoted), "a\"b");
    }

    #[test]
    fn every_byte_that_needs_it_is_escaped_wherever_it_is() {
        for len in 0..20 {
            for at in 0..len {
                for byte in [b'"', b'\\', 0x00, 0x1f, b'\n'] {
                    let mut text = vec![b'a'; len];
                    text[at] = byte;
                    let mut out = Vec::new();
                    write_str(&mut out, &text);
                    let back: String = serde_json::from_slice(&out).expect("valid JSON");
                    assert_eq!(back.as_bytes(), text.as_slice());
                }
            }
        }
        // A chunk flagged without cause does not end the search.
        let mut out = Vec::new();
        write_str(&mut out, b"\x21\x21\x21\x21\x21\x21\x21\x21\x21\"");
        assert_eq!(out, b"\"!!!!!!!!!\\\"\"");
        // Bytes above 0x7f (UTF-8) pass as they are.
        let mut out = Vec::new();
        write_str(&mut out, "héllo wörld, ünïcode ✓".as_bytes());
        assert_eq!(out, "\"héllo wörld, ünïcode ✓\"".as_bytes());
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut out = Vec::new();
        write_str(&mut out, "a\u{0}\u{1f}\u{8}\u{c}b".as_bytes());
        assert_eq!(out, br#""a\u0000\u001f\b\fb""#);
    }

    #[test]
    fn invalid_json_is_an_error() {
        for text in [
            "",
            "{",
            "[1,]",
            "{\"a\" 1}",
            "1 2",
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "\"a",
            "\"\\x\"",
            "\"\\ud800\"",
            "\"\u{1}\"",
            "{\"a\":1,}",
            "nul",
            "[1 2]",
            "{1:2}",
        ] {
            assert!(parse(text.as_bytes()).is_err(), "{text:?}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(deep.as_bytes()).is_err());
        assert!(parse(&[b'"', 0xff, b'"']).is_err());
    }

    #[test]
    fn parses_what_serde_json_parses_the_same() {
        for text in [
            r#"{"a":[1,-0,0.5,-1.5e3,2E-2,1e300,9223372036854775807,-9223372036854775808]}"#,
            r#"["\u00e9\ud83d\ude00","\/\b\f\n\r\t", " spaced " , {} , [ ] ]"#,
            " \n\t{ \"k\" : true , \"l\" : false , \"m\" : null } ",
            "18446744073709551615",
        ] {
            let mut sources = Sources::default();
            let ours = sources
                .parse(Bytes::copy_from_slice(text.as_bytes()))
                .expect(text)
                .to_serde(&sources);
            let theirs: Json = serde_json::from_str(text).expect(text);
            assert_eq!(ours, theirs, "{text}");
        }
    }
}
