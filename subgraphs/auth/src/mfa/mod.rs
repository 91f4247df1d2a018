//! Second factors: TOTP authenticators and recovery codes, the challenge a correct password
//! answers when one is due, its completion, and step-up for sensitive changes.
//!
//! - An account with a confirmed factor, or holding a role of `auth.mfa.required_for_roles`,
//!   gets a [`Challenge`] from `login` instead of tokens. It is single use, expires after
//!   `auth.mfa.challenge_ttl_secs`, and is bound to the client address and user agent that
//!   signed in. A role's holder without a factor enrols one in the same step.
//! - Codes are throttled per account from every address (and per address, with sign-ins).
//!   A TOTP step is accepted once per factor: a code of it, or of an earlier step, is a
//!   replay. A recovery code is accepted once.
//! - Every enrolment, removal, reset and factor check, successful or not, writes its audit
//!   event in the transaction of the change (a failed check in one of its own).
//!
//! This module holds the types the rest of the service and the schema use, and the queries
//! its parts share; each part has a file of its own:
//! - `policy`: when a second factor is due.
//! - `challenge`: the sign-in challenge and its completion.
//! - `enrolment`: adding a TOTP authenticator and confirming it with its first code.
//! - `proof`: checking a presented factor (throttled) and spending it.
//! - `step_up`: proving the factor again in a signed-in session.
//! - `recovery`: recovery codes.
//! - `factors`: listing, renaming and removing factors, their reset and their drop.

mod challenge;
mod enrolment;
mod factors;
mod policy;
mod proof;
mod recovery;
mod step_up;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Select};
use uuid::Uuid;

use crate::{
    entity::{factor, recovery_code},
    passkeys::PasskeyOptions,
    service::{AuthError, AuthResult},
};

/// Recovery codes handed out at a time.
pub const RECOVERY_CODES: usize = 10;
/// Confirmed factors one user may have.
pub const MAX_FACTORS: u64 = 10;
/// Longest name of a factor, in characters.
pub const NAME_MAX_CHARS: usize = 64;

/// What completes a sign-in challenge or a step-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Totp,
    RecoveryCode,
    Passkey,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Totp => "totp",
            Method::RecoveryCode => "recovery_code",
            Method::Passkey => "passkey",
        }
    }
}

/// A second factor as the user presents it.
#[derive(Debug, Clone)]
pub enum Proof {
    Totp(String),
    RecoveryCode(String),
    /// A passkey's answer (`PublicKeyCredential` JSON) to the ceremony begun for it.
    Passkey {
        ceremony: Uuid,
        credential: serde_json::Value,
    },
}

impl Proof {
    fn method(&self) -> Method {
        match self {
            Proof::Totp(_) => Method::Totp,
            Proof::RecoveryCode(_) => Method::RecoveryCode,
            Proof::Passkey { .. } => Method::Passkey,
        }
    }
}

/// A TOTP authenticator waiting for its first code.
#[derive(Debug, Clone)]
pub struct TotpEnrolment {
    pub factor_id: Uuid,
    /// Base32, for typing into an app.
    pub secret: String,
    pub uri: String,
    /// The URI as a QR code, an SVG `data:` URL.
    pub qr_code: String,
    pub expires_at: DateTime<Utc>,
}

/// What `login` answers when a second factor is due.
#[derive(Debug, Clone)]
pub struct Challenge {
    /// Handed to the client once; only its hash is stored.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    /// What completes it.
    pub methods: Vec<Method>,
    /// Set when a role requires a factor the user does not have: the authenticator to add,
    /// whose first code completes the sign-in.
    pub enrolment: Option<TotpEnrolment>,
    /// Set when the user has a passkey: the options to answer with one.
    pub passkey: Option<PasskeyOptions>,
}

/// A confirmed enrolment.
#[derive(Debug, Clone)]
pub struct Confirmed {
    pub factor: factor::Model,
    /// The recovery codes, when this was the user's first factor: shown once.
    pub recovery_codes: Option<Vec<String>>,
}

/// A factor's name: trimmed, 1 to 64 characters, no control characters.
pub fn check_name(name: &str) -> AuthResult<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_MAX_CHARS {
        return Err(AuthError::InvalidInput(
            "name",
            format!("a factor's name is 1 to {NAME_MAX_CHARS} characters"),
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(AuthError::InvalidInput(
            "name",
            format!(
                "a factor's name may not contain the control character U+{:04X}",
                u32::from(c)
            ),
        ));
    }
    Ok(name.to_owned())
}

/// The user's confirmed factors (an enrolment still waiting for its first code is not one).
pub(crate) fn confirmed_factors(user: Uuid) -> Select<factor::Entity> {
    factor::Entity::find()
        .filter(factor::Column::UserId.eq(user))
        .filter(factor::Column::ConfirmedAt.is_not_null())
}

/// The user's recovery codes not used yet.
fn unused_recovery_codes(user: Uuid) -> Select<recovery_code::Entity> {
    recovery_code::Entity::find()
        .filter(recovery_code::Column::UserId.eq(user))
        .filter(recovery_code::Column::UsedAt.is_null())
}

fn secs(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX / 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(check_name("  Phone ").ok().as_deref(), Some("Phone"));
        assert!(check_name("").is_err());
        assert!(check_name(&"x".repeat(65)).is_err());
        assert!(check_name("a\u{7}b").is_err());
    }
}
