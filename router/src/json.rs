//! JSON as the executor holds subgraph answers: parsed without copying their strings (each
//! string and key is a slice of the answer's own bytes, shared by reference count), objects as
//! small vectors in the order they were written, and written back straight into a byte
//! buffer.
//!
//! `serde_json::Value` allocates every string and keeps every object in an `IndexMap` hashed
//! with SipHash; for answers of many small objects that was most of the router's work.

use bytes::Bytes;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value as Json};

/// A JSON string: UTF-8, without its quotes and escapes.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Str(Bytes);

impl Str {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The text; every `Str` is made from a `str`, so this never fails in practice.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    pub fn is(&self, text: &str) -> bool {
        self.0 == text.as_bytes()
    }
}

impl From<&str> for Str {
    fn from(text: &str) -> Self {
        Str(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl From<String> for Str {
    fn from(text: String) -> Self {
        Str(Bytes::from(text))
    }
}

impl std::fmt::Debug for Str {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
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
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => get(members, key),
            _ => None,
        }
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        match self {
            Value::Object(members) => get_mut(members, key),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        }
    }

    /// The same value as `serde_json::Value`, for the rare paths that want one (errors).
    pub fn to_serde(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.clone()),
            Value::String(s) => Json::String(s.as_str().to_owned()),
            Value::Array(items) => Json::Array(items.iter().map(Value::to_serde).collect()),
            Value::Object(members) => Json::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.to_serde()))
                    .collect(),
            ),
        }
    }

    /// A `serde_json::Value` as a value (copying it).
    pub fn from_serde(value: &Json) -> Value {
        match value {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(Str::from(s.as_str())),
            Json::Array(items) => Value::Array(items.iter().map(Value::from_serde).collect()),
            Json::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| (Str::from(k.as_str()), Value::from_serde(v)))
                    .collect(),
            ),
        }
    }
}

pub fn get<'v>(members: &'v Object, key: &str) -> Option<&'v Value> {
    members
        .iter()
        .find(|(k, _)| k.0 == key.as_bytes())
        .map(|(_, v)| v)
}

pub fn get_mut<'v>(members: &'v mut Object, key: &str) -> Option<&'v mut Value> {
    members
        .iter_mut()
        .find(|(k, _)| k.0 == key.as_bytes())
        .map(|(_, v)| v)
}

/// Parses `bytes`; strings without escapes are slices of `bytes`.
pub fn parse(bytes: &Bytes) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = Seed { source: bytes }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

#[derive(Clone, Copy)]
struct Seed<'b> {
    source: &'b Bytes,
}

impl Seed<'_> {
    /// `text` as a slice of the source when it is one (no escapes), copied otherwise.
    fn string(&self, text: &str) -> Str {
        let source = self.source.as_ptr() as usize;
        let start = text.as_ptr() as usize;
        if start >= source && start + text.len() <= source + self.source.len() {
            Str(self.source.slice_ref(text.as_bytes()))
        } else {
            Str::from(text)
        }
    }
}

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JSON")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<Value, E> {
        Number::from_f64(n)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Value, E> {
        Ok(Value::String(self.string(text)))
    }

    fn visit_str<E>(self, text: &str) -> Result<Value, E> {
        Ok(Value::String(Str::from(text)))
    }

    fn visit_string<E>(self, text: String) -> Result<Value, E> {
        Ok(Value::String(Str::from(text)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(key) = map.next_key_seed(KeySeed(self))? {
            let value = map.next_value_seed(self)?;
            members.push((key, value));
        }
        Ok(Value::Object(members))
    }
}

struct KeySeed<'b>(Seed<'b>);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Str;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Str, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Str;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object key")
    }

    fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Str, E> {
        Ok(self.0.string(text))
    }

    fn visit_str<E>(self, text: &str) -> Result<Str, E> {
        Ok(Str::from(text))
    }

    fn visit_string<E>(self, text: String) -> Result<Str, E> {
        Ok(Str::from(text))
    }
}

/// Writes `text` as a JSON string, quoted and escaped.
pub fn write_str(out: &mut Vec<u8>, text: &[u8]) {
    out.push(b'"');
    let mut start = 0;
    for (i, &byte) in text.iter().enumerate() {
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&text[start..i]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&text[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&text[start..]);
    out.push(b'"');
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
pub fn write(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s.as_bytes()),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(out, item);
            }
            out.push(b']');
        }
        Value::Object(members) => {
            out.push(b'{');
            for (i, (key, value)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key.as_bytes());
                out.push(b':');
                write(out, value);
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

    #[test]
    fn parses_and_writes_back_the_same_json() {
        let text = r#"{"data":{"a":[1,-2,3.5,true,null,"x\"y\\z\n\u0001é"],"b":{},"c":[]},"n":18446744073709551615}"#;
        let bytes = Bytes::from(text);
        let value = parse(&bytes).expect("parses");
        let mut out = Vec::new();
        write(&mut out, &value);
        let again: Json = serde_json::from_slice(&out).expect("valid JSON");
        assert_eq!(again, serde_json::from_str::<Json>(text).expect("valid"));
        assert_eq!(Value::from_serde(&again), value);
        assert_eq!(value.to_serde(), again);
    }

    #[test]
    fn strings_without_escapes_are_slices_of_the_answer() {
        let bytes = Bytes::from(r#"{"name":"Ada","quoted":"a\"b"}"#);
        let value = parse(&bytes).expect("parses");
        let Value::Object(members) = &value else {
            panic!("an object")
        };
        let (key, name) = &members[0];
        let inside = |s: &[u8]| {
            let (start, end) = (
                bytes.as_ptr() as usize,
                bytes.as_ptr() as usize + bytes.len(),
            );
            (s.as_ptr() as usize) >= start && (s.as_ptr() as usize) < end
        };
        assert!(inside(key.as_bytes()));
        let Value::String(name) = name else {
            panic!("a string")
        };
        assert!(inside(name.as_bytes()));
        assert_eq!(value.get("quoted").and_then(Value::as_str), Some("a\"b"));
    }

    #[test]
    fn control_characters_are_escaped() {
        let mut out = Vec::new();
        write_str(&mut out, "a\u{0}\u{1f}\u{8}\u{c}b".as_bytes());
        assert_eq!(out, br#""a\u0000\u001f\b\fb""#);
    }

    #[test]
    fn invalid_json_is_an_error() {
        for text in ["{", "[1,]", "{\"a\" 1}", "1 2"] {
            assert!(parse(&Bytes::from(text)).is_err(), "{text}");
        }
    }
}
