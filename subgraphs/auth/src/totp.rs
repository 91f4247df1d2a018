//! Time-based one-time passwords (RFC 6238 over RFC 4226): HMAC-SHA-1, 6 digits, 30-second
//! steps, the parameters every authenticator app implements. The clock is always passed in,
//! so window edges are tested without waiting.

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hmac::{Hmac, Mac};
use qrcode::{QrCode, render::svg};
use rand::RngCore as _;
use sha1::Sha1;
use subtle::ConstantTimeEq as _;

/// Seconds one code is valid for.
pub const STEP_SECS: i64 = 30;
/// Digits of a code.
pub const DIGITS: usize = 6;
/// Steps before and after the current one also accepted (clock drift, typing time).
pub const SKEW_STEPS: i64 = 1;
/// Bytes of a generated secret (RFC 4226 recommends 160 bits).
pub const SECRET_BYTES: usize = 20;

/// A fresh random secret.
pub fn new_secret() -> Vec<u8> {
    let mut secret = vec![0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut secret);
    secret
}

/// The secret as authenticator apps take it typed in: base32 without padding.
pub fn encode_secret(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

/// The step `unix_secs` falls in.
pub fn step_at(unix_secs: i64) -> i64 {
    unix_secs.div_euclid(STEP_SECS)
}

/// The code of one step (RFC 4226's HOTP with the step as counter).
pub fn code_at_step(secret: &[u8], step: i64) -> String {
    // HMAC takes keys of any length; this cannot fail.
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let binary = (u32::from(digest[offset] & 0x7f) << 24)
        | (u32::from(digest[offset + 1]) << 16)
        | (u32::from(digest[offset + 2]) << 8)
        | u32::from(digest[offset + 3]);
    format!("{:0width$}", binary % 1_000_000, width = DIGITS)
}

/// Why a typed code was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not six digits (after removing spaces).
    Malformed,
    /// No step in the window has this code.
    Wrong,
    /// The code is right but its step was already used (or an earlier one was used after it).
    Replayed,
}

/// Checks `typed` against the steps around `unix_secs`. `last_used` is the newest step
/// accepted before: a code of that step or an earlier one is a replay. Returns the step to
/// remember as used.
pub fn verify(
    secret: &[u8],
    typed: &str,
    unix_secs: i64,
    last_used: Option<i64>,
) -> Result<i64, Refusal> {
    let typed: String = typed.chars().filter(|c| !c.is_whitespace()).collect();
    if typed.len() != DIGITS || !typed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::Malformed);
    }
    let now = step_at(unix_secs);
    let mut matched = None;
    // Every step is compared (in constant time), so timing says nothing of which one matched.
    for step in now - SKEW_STEPS..=now + SKEW_STEPS {
        let equal: bool = code_at_step(secret, step)
            .as_bytes()
            .ct_eq(typed.as_bytes())
            .into();
        if equal && matched.is_none() {
            matched = Some(step);
        }
    }
    let step = matched.ok_or(Refusal::Wrong)?;
    if last_used.is_some_and(|last| step <= last) {
        return Err(Refusal::Replayed);
    }
    Ok(step)
}

/// The `otpauth://` URI authenticator apps scan (Key Uri Format), labelled
/// `issuer:account`.
pub fn otpauth_uri(secret: &[u8], issuer: &str, account: &str) -> String {
    let label = format!("{}:{}", percent_encode(issuer), percent_encode(account));
    format!(
        "otpauth://totp/{label}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        encode_secret(secret),
        percent_encode(issuer),
    )
}

/// `uri` as a QR code in an SVG `data:` URL, for an `<img src>`.
pub fn qr_svg_data_url(uri: &str) -> Result<String, String> {
    let code = QrCode::new(uri.as_bytes()).map_err(|e| format!("no QR code for the URI: {e}"))?;
    let image = code
        .render::<svg::Color<'_>>()
        .min_dimensions(200, 200)
        .quiet_zone(true)
        .build();
    Ok(format!(
        "data:image/svg+xml;base64,{}",
        STANDARD.encode(image.as_bytes())
    ))
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B's SHA-1 secret.
    const RFC_SECRET: &[u8] = b"12345678901234567890";

    /// The RFC's test vectors, as six-digit codes (the RFC prints eight: these are their last six).
    #[test]
    fn codes_match_rfc_6238() {
        for (time, code) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ] {
            assert_eq!(code_at_step(RFC_SECRET, step_at(time)), code, "t = {time}");
        }
    }

    #[test]
    fn one_step_either_side_is_accepted_and_no_further() {
        let now = 1_700_000_015; // 15 s into its step
        let step = step_at(now);
        for offset in [-1, 0, 1] {
            let code = code_at_step(RFC_SECRET, step + offset);
            assert_eq!(verify(RFC_SECRET, &code, now, None), Ok(step + offset));
        }
        for offset in [-2, 2] {
            let code = code_at_step(RFC_SECRET, step + offset);
            assert_eq!(
                verify(RFC_SECRET, &code, now, None),
                Err(Refusal::Wrong),
                "{offset}"
            );
        }
    }

    /// The edges of a step: the last second of one and the first of the next.
    #[test]
    fn window_edges_follow_the_clock() {
        let start = 1_700_000_010; // a step boundary (divisible by 30)
        assert_eq!(start % STEP_SECS, 0);
        let previous_previous = code_at_step(RFC_SECRET, step_at(start) - 2);
        // At the step's last second the code two steps back is still one step too old ...
        assert_eq!(
            verify(RFC_SECRET, &previous_previous, start + 29, None),
            Err(Refusal::Wrong)
        );
        // ... and one second before the step began it was within the window.
        assert!(verify(RFC_SECRET, &previous_previous, start - 1, None).is_ok());
        let next = code_at_step(RFC_SECRET, step_at(start) + 1);
        assert!(verify(RFC_SECRET, &next, start, None).is_ok());
        assert_eq!(
            verify(RFC_SECRET, &next, start - 1, None),
            Err(Refusal::Wrong),
            "two steps ahead"
        );
    }

    #[test]
    fn a_used_step_is_not_accepted_again() {
        let now = 1_700_000_000;
        let code = code_at_step(RFC_SECRET, step_at(now));
        let used = verify(RFC_SECRET, &code, now, None).expect("first use");
        assert_eq!(
            verify(RFC_SECRET, &code, now + 5, Some(used)),
            Err(Refusal::Replayed)
        );
        // An older code of the window after a newer one was used is a replay too.
        let older = code_at_step(RFC_SECRET, step_at(now) - 1);
        assert_eq!(
            verify(RFC_SECRET, &older, now, Some(used)),
            Err(Refusal::Replayed)
        );
        let later = code_at_step(RFC_SECRET, step_at(now) + 1);
        assert_eq!(
            verify(RFC_SECRET, &later, now + 30, Some(used)),
            Ok(used + 1)
        );
    }

    #[test]
    fn malformed_codes_are_told_apart() {
        for typed in ["", "12345", "1234567", "12a456", "１２３４５６"] {
            assert_eq!(
                verify(RFC_SECRET, typed, 0, None),
                Err(Refusal::Malformed),
                "{typed}"
            );
        }
        let code = code_at_step(RFC_SECRET, 0);
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(verify(RFC_SECRET, &spaced, 0, None), Ok(0));
    }

    #[test]
    fn the_uri_names_issuer_account_and_parameters() {
        let uri = otpauth_uri(RFC_SECRET, "Key graph", "ada+1@example.com");
        assert_eq!(
            uri,
            "otpauth://totp/Key%20graph:ada%2B1%40example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Key%20graph&algorithm=SHA1&digits=6&period=30"
        );
        let qr = qr_svg_data_url(&uri).expect("qr");
        let svg = STANDARD
            .decode(qr.trim_start_matches("data:image/svg+xml;base64,"))
            .expect("base64");
        assert!(String::from_utf8_lossy(&svg).contains("<svg"));
    }
}
