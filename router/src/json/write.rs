//! Writing [`Value`]s (and serde_json values, and plain strings) straight into a byte
//! buffer as JSON, escaping only what needs it.

use serde_json::{Number, Value as Json};

use super::{Sources, Str, Value, first_to_escape};

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
