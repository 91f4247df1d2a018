//! Auth rules: sign-in, access tokens, rotating refresh tokens, sessions and their end. No
//! GraphQL types here.
//!
//! This module holds the service, its errors and the types its parts share, and the calls
//! to identity and authz; the rest has a file of its own:
//! - `sign_in`: `login` and the session it opens.
//! - `tokens`: access tokens, and the rotation of refresh tokens with reuse detection.
//! - `sessions`: listing and ending sessions.

mod sessions;
mod sign_in;
mod tokens;

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use keygraph_kernel::{
    ApiError, ErrorCode,
    config::Config,
    counters::Counters,
    http::RequestMeta,
    internal::{InternalCallError, InternalClient, LocalServices},
    throttle::Throttle,
};
use rand::RngCore as _;
use sea_orm::{DatabaseConnection, DbErr};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    entity::session,
    keys::{KeyError, KeyRing},
};

pub(crate) use tokens::insert_refresh;

/// One answer for every kind of failed sign-in.
pub const INVALID_CREDENTIALS: &str = "the email or password is not correct";

/// This service's name in its metrics.
const SERVICE: &str = "auth";

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{INVALID_CREDENTIALS}")]
    InvalidCredentials,
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    InvalidInput(&'static str, String),
    #[error("too many failed sign-ins; try again in {0} seconds")]
    Throttled(u64),
    #[error(
        "sign-in is unavailable for a moment (the shared throttle does not answer); retry shortly"
    )]
    ThrottleUnavailable,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Conflict(String),
    #[error("a service auth depends on failed: {0}")]
    Upstream(InternalCallError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Database(#[from] DbErr),
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::InvalidCredentials | AuthError::Unauthenticated(_) => {
                ApiError::unauthenticated(err.to_string())
            }
            AuthError::InvalidInput(field, message) => ApiError::bad_input(field, message),
            AuthError::Throttled(secs) => {
                let mut e = ApiError::rate_limited(secs);
                e.message = err.to_string();
                e
            }
            AuthError::ThrottleUnavailable => {
                ApiError::new(ErrorCode::ServiceUnavailable, err.to_string())
            }
            AuthError::NotFound(m) => ApiError::not_found(m),
            AuthError::Forbidden(m) => ApiError::forbidden(m),
            AuthError::Conflict(m) => ApiError::conflict(m),
            AuthError::Upstream(e) => ApiError::internal(e),
            AuthError::Keys(e) => ApiError::internal(e),
            AuthError::Database(e) => ApiError::internal(e),
        }
    }
}

pub type AuthResult<T> = Result<T, AuthError>;

/// What a successful sign-in or refresh hands out.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access_token: String,
    pub expires_at: DateTime<Utc>,
    pub expires_in: u64,
    pub refresh_token: String,
    pub session_id: Uuid,
    pub user_id: Uuid,
    /// Set when this sign-in enrolled the user's first second factor: shown once.
    pub recovery_codes: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Account {
    pub(crate) id: Uuid,
    pub(crate) email: String,
    email_verified: bool,
    status: String,
}

impl Account {
    pub(crate) fn is_active(&self) -> bool {
        self.status == "active"
    }
}

#[derive(Deserialize)]
pub(crate) struct Grants {
    pub(crate) roles: Vec<String>,
    pub(crate) permissions: Vec<String>,
}

/// How a session's user proved who they are, as its tokens state it.
#[derive(Debug, Clone)]
pub(crate) struct Proven {
    /// `amr` values (RFC 8176).
    pub(crate) amr: Vec<String>,
    /// When, Unix seconds.
    pub(crate) auth_time: i64,
    /// Whether the account has a second factor.
    pub(crate) mfa_enrolled: bool,
}

impl Proven {
    /// The session's record of it, as stored (`amr` space-separated).
    pub(crate) fn of_session(session: &session::Model, mfa_enrolled: bool) -> Self {
        Self {
            amr: session.amr.split_whitespace().map(str::to_owned).collect(),
            auth_time: session.auth_time.unwrap_or(session.created_at).timestamp(),
            mfa_enrolled,
        }
    }
}

/// What a correct password leads to.
#[derive(Debug)]
pub enum SignIn {
    /// No second factor is due: the session is open.
    Tokens(Tokens),
    /// A second factor is due (see [`crate::mfa`]).
    SecondFactor(crate::mfa::Challenge),
}

pub(crate) struct Settings {
    issuer: String,
    audience: String,
    access_ttl: Duration,
    idle_ttl: chrono::Duration,
    absolute_ttl: chrono::Duration,
    reuse_grace: chrono::Duration,
    allow_unverified: bool,
}

pub struct Auth {
    pub(crate) db: DatabaseConnection,
    pub(crate) keys: KeyRing,
    pub(crate) identity: InternalClient,
    authz: InternalClient,
    throttle: Throttle,
    /// Second-factor codes (see [`Throttle::second_factor`]).
    pub(crate) factor_throttle: Throttle,
    pub(crate) settings: Settings,
    pub(crate) mfa: keygraph_kernel::config::MfaConfig,
    pub(crate) passkeys: crate::passkeys::Passkeys,
}

fn chrono_secs(secs: u64) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
}

/// SHA-256 of a refresh token, hex.
pub fn hash_token(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(crate) fn new_refresh_token() -> (String, String) {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&token);
    (token, hash)
}

impl Auth {
    pub fn new(
        db: DatabaseConnection,
        keys: KeyRing,
        config: &Config,
        internal_token: &str,
        local: &LocalServices,
        counters: Arc<Counters>,
        passkeys: crate::passkeys::Passkeys,
    ) -> Result<Self, InternalCallError> {
        let auth = &config.auth;
        Ok(Self {
            db,
            keys,
            identity: InternalClient::new(&auth.identity_url, internal_token)?.with_local(local),
            authz: InternalClient::new(&auth.authz_url, internal_token)?.with_local(local),
            throttle: Throttle::sign_in(auth.throttle, counters.clone()),
            factor_throttle: Throttle::second_factor(auth.throttle, counters),
            mfa: auth.mfa.clone(),
            passkeys,
            settings: Settings {
                issuer: config.tokens.issuer.clone(),
                audience: config.tokens.audience.clone(),
                access_ttl: Duration::from_secs(auth.access_token_ttl_secs),
                idle_ttl: chrono_secs(auth.refresh_idle_ttl_secs),
                absolute_ttl: chrono_secs(auth.refresh_absolute_ttl_secs),
                reuse_grace: chrono_secs(auth.refresh_reuse_grace_secs),
                allow_unverified: auth.allow_unverified_login,
            },
        })
    }

    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The user's account at identity; none for a deleted user.
    pub(crate) async fn account(&self, user: Uuid) -> AuthResult<Option<Account>> {
        self.identity
            .get_json(&format!("/internal/users/{user}"))
            .await
            .map_err(AuthError::Upstream)
    }

    /// Whether the user exists and may sign in.
    pub(crate) async fn may_sign_in(&self, user: Uuid) -> AuthResult<bool> {
        Ok(self.account(user).await?.is_some_and(|a| a.is_active()))
    }

    pub(crate) async fn grants(&self, user: Uuid) -> AuthResult<Grants> {
        Ok(self
            .authz
            .get_json::<Grants>(&format!("/internal/users/{user}/grants"))
            .await
            .map_err(AuthError::Upstream)?
            .unwrap_or(Grants {
                roles: Vec::new(),
                permissions: Vec::new(),
            }))
    }

    /// FORBIDDEN unless `actor` holds `code` now, per authz's current grants (its effective
    /// codes), not the token's `scope`, which may be up to its lifetime old.
    pub(crate) async fn require_current_permission(
        &self,
        actor: Uuid,
        code: &str,
    ) -> AuthResult<()> {
        if self
            .grants(actor)
            .await?
            .permissions
            .iter()
            .any(|p| p == code)
        {
            return Ok(());
        }
        Err(AuthError::Forbidden(format!(
            "this needs the permission `{code}`, which you do not hold (any more)"
        )))
    }

    /// Rotates the signing key if `actor` holds `auth.key.rotate` now.
    pub async fn rotate_signing_key(&self, meta: &RequestMeta, actor: Uuid) -> AuthResult<String> {
        self.require_current_permission(actor, keygraph_kernel::permissions::auth::KEY_ROTATE)
            .await?;
        Ok(self.keys.rotate(meta, actor).await?)
    }
}
