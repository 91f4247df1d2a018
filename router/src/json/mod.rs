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
//!
//! Reading an answer is [`parse`]'s, writing values back as JSON [`write`]'s.

mod parse;
mod write;

use bytes::Bytes;
use serde_json::{Number, Value as Json};

pub use parse::ParseError;
use parse::Parser;
pub use write::{write, write_name, write_number, write_serde, write_str, write_string};

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
