//! Parsing a subgraph's answer into [`Value`]s whose strings stay in the answer's bytes
//! (escaped strings get a buffer of their own), with serde_json's nesting limit.

use bytes::Bytes;
use serde_json::Number;

use super::{Sources, Str, Value, has_control};

/// Why an answer is not JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} at byte {at}")]
pub struct ParseError {
    pub(super) what: &'static str,
    pub(super) at: usize,
}

/// How deeply arrays and objects may nest in an answer (as serde_json's limit).
const MAX_DEPTH: usize = 128;

pub(super) struct Parser<'b> {
    pub(super) text: &'b [u8],
    pub(super) source: u32,
    pub(super) sources: &'b mut Sources,
    pub(super) at: usize,
    pub(super) depth: usize,
}

impl Parser<'_> {
    pub(super) fn error(&self, what: &'static str) -> ParseError {
        ParseError { what, at: self.at }
    }

    pub(super) fn skip_whitespace(&mut self) {
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

    pub(super) fn value(&mut self) -> Result<Value, ParseError> {
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
