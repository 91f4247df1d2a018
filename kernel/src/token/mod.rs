//! Access token verification: Ed25519 (EdDSA) JWTs with `typ: at+jwt`, checked for issuer,
//! audience, expiry and not-before, with keys from a JWKS URL (cached) or from config.

//!
//! - this module: the claims, the principal a request acts as, grants, errors;
//! - [`verifier`]: checking a token's signature and claims, the keys (JWKS or static) and the
//!   list of ended sessions.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

mod verifier;

pub use verifier::*;

/// The only `typ` header value accepted for access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Claims of a Keygraph access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: String,
    /// The session id. Verifiers refuse a token without one: every token is of a session,
    /// so every token can be ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Effective permission codes, space-separated.
    #[serde(default)]
    pub scope: String,
    /// How the session signed in (RFC 8176 values: `pwd`, `otp`, `hwk`, `swk`, `mfa`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// When the user last proved who they are in this session (sign-in or step-up), Unix
    /// seconds. Refreshing keeps it: a refreshed token is no fresher a proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    /// Whether the account had a second factor when the token was issued: then only a sign-in
    /// that used it (`amr` has `mfa`) counts for a step-up.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mfa_enrolled: bool,
}

impl AccessClaims {
    /// Until when (Unix seconds) these claims satisfy a step-up check with a window of
    /// `max_age_secs`: a recent proof, with the second factor when the account has one.
    pub fn step_up_until(&self, max_age_secs: u64) -> Option<i64> {
        let multi_factor = self.amr.iter().any(|m| m == "mfa");
        if self.mfa_enrolled && !multi_factor {
            return None;
        }
        let max_age = i64::try_from(max_age_secs).unwrap_or(i64::MAX);
        self.auth_time.map(|t| t.saturating_add(max_age))
    }
}

/// Who is calling, as proven by a verified access token.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user_id: Uuid,
    pub session_id: Uuid,
    pub token_id: Option<String>,
    pub roles: Vec<String>,
    /// Granted permission codes; may contain wildcards (`identity.user.*`, `*`).
    pub scopes: Vec<String>,
    /// Until when (Unix seconds) the token passes a step-up check; none when it never does
    /// (no recent proof, or a password alone for an account with a second factor).
    pub step_up_until: Option<i64>,
}

impl Principal {
    /// Whether the caller proved who they are recently enough, with their second factor if
    /// they have one, for a sensitive change (see [`AccessClaims::step_up_until`]).
    pub fn stepped_up(&self) -> bool {
        self.step_up_until
            .is_some_and(|until| chrono::Utc::now().timestamp() <= until)
    }

    /// Whether any granted code covers `code` (see [`grant_covers`]).
    pub fn has_permission(&self, code: &str) -> bool {
        self.scopes.iter().any(|grant| grant_covers(grant, code))
    }
}

/// `*` covers every code; `a.b.*` covers every code below `a.b.`; otherwise codes must be equal.
/// `identity.user.*` covers `identity.user.read` but not `identity.users.read`.
pub fn grant_covers(grant: &str, code: &str) -> bool {
    if grant == "*" {
        return true;
    }
    match grant.strip_suffix('*') {
        Some(prefix) if prefix.ends_with('.') => {
            code.len() > prefix.len() && code.starts_with(prefix)
        }
        Some(_) => false,
        None => grant == code,
    }
}

/// Why a token was refused. The text is safe to show to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the access token is malformed: {0}")]
    Malformed(String),
    #[error("access tokens must be signed with EdDSA; this one uses `{0}`")]
    UnsupportedAlgorithm(String),
    #[error("the token type must be `at+jwt`; this one is {0}")]
    WrongType(String),
    #[error("the access token has no `kid` header")]
    MissingKeyId,
    #[error("the access token was signed by an unknown key `{0}`")]
    UnknownKey(String),
    #[error("the access token signature is invalid")]
    BadSignature,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid yet (`nbf` is in the future)")]
    NotYetValid,
    #[error("the access token was issued in the future (`iat` is later than now)")]
    IssuedInFuture,
    #[error("the access token was issued by another issuer")]
    WrongIssuer,
    #[error("the access token is meant for another audience")]
    WrongAudience,
    #[error("the access token claims are invalid: {0}")]
    InvalidClaims(String),
    #[error("signing keys are unavailable right now; try again shortly")]
    KeysUnavailable,
    #[error("the session of this access token has ended (signed out or revoked); sign in again")]
    Revoked,
    #[error(
        "ended sessions cannot be checked yet (the list from auth has not arrived); try again shortly"
    )]
    RevocationsUnavailable,
}

impl TokenError {
    /// Why, in one word a client can act on: `expired` and `ended` (refresh or sign in again),
    /// `malformed` and `invalid` (the token is not one of ours), `unverifiable` (it could not
    /// be checked right now; retry).
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Expired => "expired",
            TokenError::Revoked => "ended",
            TokenError::Malformed(_)
            | TokenError::UnsupportedAlgorithm(_)
            | TokenError::WrongType(_)
            | TokenError::MissingKeyId => "malformed",
            TokenError::UnknownKey(_)
            | TokenError::BadSignature
            | TokenError::NotYetValid
            | TokenError::IssuedInFuture
            | TokenError::WrongIssuer
            | TokenError::WrongAudience
            | TokenError::InvalidClaims(_) => "invalid",
            TokenError::KeysUnavailable | TokenError::RevocationsUnavailable => "unverifiable",
        }
    }
}

/// The response header a subgraph that signed someone in (`login`, `refresh`) names the
/// tokens it issued in: `access=<access token>; refresh=<refresh token>`. The router uses the
/// access token for the rest of that request's fetches (so `login { user { email } }` reads
/// the user as the user), and ends the session when neither token reached the client.
pub const ISSUED_TOKENS_HEADER: &str = "keygraph-issued-tokens";

/// Tokens a subgraph issued during a request (see [`ISSUED_TOKENS_HEADER`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedTokens {
    pub access: String,
    pub refresh: String,
}

impl IssuedTokens {
    pub fn header_value(&self) -> String {
        format!("access={}; refresh={}", self.access, self.refresh)
    }

    pub fn parse(value: &str) -> Option<Self> {
        let mut access = None;
        let mut refresh = None;
        for part in value.split(';') {
            match part.trim().split_once('=') {
                Some(("access", token)) if !token.is_empty() => access = Some(token.to_owned()),
                Some(("refresh", token)) if !token.is_empty() => refresh = Some(token.to_owned()),
                _ => return None,
            }
        }
        Some(Self {
            access: access?,
            refresh: refresh?,
        })
    }
}

/// PKCS#8 v1 DER of an Ed25519 private key: a fixed prefix, then the 32-byte seed (RFC 8410).
pub fn pkcs8_from_seed(seed: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(seed);
    der
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn wildcards_cover_only_whole_trailing_segments() {
        assert!(grant_covers("*", "identity.user.read"));
        assert!(grant_covers("identity.user.*", "identity.user.read"));
        assert!(grant_covers("identity.*", "identity.user.read"));
        assert!(!grant_covers("identity.user.*", "identity.users.read"));
        assert!(!grant_covers("identity.user.*", "identity.user"));
        assert!(!grant_covers("identity.user*", "identity.user.read"));
        assert!(grant_covers("identity.user.read", "identity.user.read"));
        assert!(!grant_covers("identity.user.read", "identity.user.delete"));
    }

    #[test]
    fn the_metrics_probe_does_not_keep_a_verifier_alive() {
        let config = crate::config::Config::from_sources(None, Vec::new()).expect("defaults");
        let verifier = TokenVerifier::from_config(&config.tokens).expect("verifier");
        let probe = verifier.revocations_age_probe();
        assert_eq!(probe.get(), Some(None), "no list loaded yet");
        verifier.set_revoked(HashSet::new());
        assert!(matches!(probe.get(), Some(Some(_))), "a list was loaded");
        drop(verifier);
        assert_eq!(probe.get(), None, "the verifier is gone");
    }
}
