//! Auth rules: sign-in, access tokens, rotating refresh tokens, sessions and their end. No
//! GraphQL types here.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use keygraph_kernel::{
    ApiError, ErrorCode,
    config::Config,
    counters::Counters,
    db::{begin_write, execute_in_order, write_turn},
    http::RequestMeta,
    internal::{InternalCallError, InternalClient, LocalServices},
    outbox::{AuditEvent, Outcome},
    throttle::{Refused, Throttle},
    token::{ACCESS_TOKEN_TYPE, AccessClaims},
};
use rand::RngCore as _;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, Insert, QueryFilter,
    QueryOrder, QueryTrait as _, Set, sea_query::Expr,
};
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    entity::{refresh_token, session},
    keys::{KeyError, KeyRing},
};

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
struct CredentialCheck {
    valid: bool,
    user: Option<Account>,
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

    /// Signs in: one answer for unknown email, wrong password and disabled account. A correct
    /// password opens the session, or answers a challenge when a second factor is due.
    pub async fn login(
        &self,
        meta: &RequestMeta,
        email: &str,
        password: &str,
    ) -> AuthResult<SignIn> {
        if email.len() > 254 || password.chars().count() > 4096 {
            return Err(AuthError::InvalidCredentials);
        }
        let account_key = email.trim().to_ascii_lowercase();
        let metrics = keygraph_kernel::metrics::Metrics::of(SERVICE);
        let attempt = self
            .throttle
            .begin(&account_key, meta.client_addr)
            .await
            .map_err(|refused| {
                metrics.sign_in("throttled");
                metrics.throttled("sign_in");
                match refused {
                    Refused::Wait(secs) => AuthError::Throttled(secs),
                    Refused::Unavailable => AuthError::ThrottleUnavailable,
                }
            })?;
        let check: CredentialCheck = self
            .identity
            .post_json(
                "/internal/credentials/verify",
                &json!({ "email": email, "password": password }),
            )
            .await
            .map_err(AuthError::Upstream)?;
        let account = match (check.valid, check.user) {
            (true, Some(account)) if account.status == "active" => account,
            _ => {
                attempt.finish(false).await;
                metrics.sign_in("failed");
                self.record_failed_login(meta, &account_key).await?;
                return Err(AuthError::InvalidCredentials);
            }
        };
        if !account.email_verified && !self.settings.allow_unverified {
            attempt.finish(false).await;
            metrics.sign_in("unverified");
            self.record_failed_login(meta, &account_key).await?;
            return Err(AuthError::Unauthenticated(
                "confirm your email address first: open the link we mailed you".into(),
            ));
        }
        attempt.finish(true).await;
        // A second factor is due when the account has one, or when a role it holds requires
        // one; the grants (which the tokens need too) are read only in the second case.
        let enrolled = self.has_second_factor(account.id).await?;
        let grants = if enrolled {
            None
        } else {
            Some(self.grants(account.id).await?)
        };
        let grants = match grants {
            Some(grants) if !self.role_requires_second_factor(&grants) => grants,
            _ => {
                metrics.sign_in("second_factor_due");
                let challenge = self.challenge(meta, &account, !enrolled, &["pwd"]).await?;
                return Ok(SignIn::SecondFactor(challenge));
            }
        };
        let proven = Proven {
            amr: vec!["pwd".into()],
            auth_time: Utc::now().timestamp(),
            mfa_enrolled: false,
        };
        let (_turn, txn) = begin_write(&self.db).await?;
        let (session_id, refresh) = self
            .open_session(&txn, meta, account.id, &proven, Vec::new())
            .await?;
        txn.commit().await?;
        metrics.sign_in("succeeded");
        Ok(SignIn::Tokens(
            self.issue(account.id, session_id, grants, refresh, &proven)
                .await?,
        ))
    }

    /// Opens a session in `txn`: the session, its first refresh token and the audit event,
    /// after `first` (statements of the caller's), in one round trip and without `RETURNING`
    /// (the rows are known): this is the hot path of every sign-in. Returns the session and
    /// its refresh token.
    pub(crate) async fn open_session(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        meta: &RequestMeta,
        user: Uuid,
        proven: &Proven,
        mut first: Vec<sea_orm::Statement>,
    ) -> AuthResult<(Uuid, String)> {
        let now = Utc::now();
        let session_id = Uuid::now_v7();
        let (refresh, refresh_hash) = new_refresh_token();
        let backend = txn.get_database_backend();
        let session = session::Entity::insert(session::ActiveModel {
            id: Set(session_id),
            user_id: Set(user),
            created_at: Set(now),
            last_used_at: Set(now),
            expires_at: Set(now + self.settings.absolute_ttl),
            client_addr: Set(meta.client_addr.map(|a| a.to_string())),
            user_agent: Set(meta.user_agent.clone()),
            revoked_at: Set(None),
            revoked_reason: Set(None),
            amr: Set(proven.amr.join(" ")),
            auth_time: Set(DateTime::from_timestamp(proven.auth_time, 0)),
        });
        let (_, event) = AuditEvent::new("auth.login.succeeded", "session", session_id)
            .actor(Some(user))
            .metadata(json!({ "amr": proven.amr }))
            .insert(meta);
        first.extend([
            session.build(backend),
            insert_refresh(session_id, refresh_hash, 0, now).build(backend),
            event.build(backend),
        ]);
        execute_in_order(txn, first).await?;
        Ok((session_id, refresh))
    }

    async fn record_failed_login(&self, meta: &RequestMeta, account_key: &str) -> AuthResult<()> {
        // The address is recorded, the password never; the email only as typed, to spot attacks.
        let _turn = write_turn(&self.db).await;
        AuditEvent::new("auth.login.failed", "account", account_key)
            .outcome(Outcome::Failure)
            .record(&self.db, meta)
            .await?;
        Ok(())
    }

    /// Exchanges a refresh token for a new pair. A token presented again ends its session,
    /// unless it is the one rotated within the grace period (two tabs refreshing at once).
    pub async fn refresh(&self, meta: &RequestMeta, token: &str) -> AuthResult<Tokens> {
        const INVALID: &str = "the refresh token is not valid; sign in again";
        if token.len() != 43 {
            return Err(AuthError::Unauthenticated(INVALID.into()));
        }
        let stored = refresh_token::Entity::find()
            .filter(refresh_token::Column::TokenHash.eq(hash_token(token)))
            .one(&self.db)
            .await?
            .ok_or_else(|| AuthError::Unauthenticated(INVALID.into()))?;
        let session = session::Entity::find_by_id(stored.session_id)
            .one(&self.db)
            .await?
            .ok_or_else(|| AuthError::Unauthenticated(INVALID.into()))?;
        if session.revoked_at.is_some() {
            return Err(AuthError::Unauthenticated(
                "this session has ended; sign in again".into(),
            ));
        }
        let now = Utc::now();
        if stored.used_at.is_some() {
            return Err(self.reused(meta, &stored, &session, now).await?);
        }
        if now > session.expires_at || now - stored.created_at > self.settings.idle_ttl {
            self.end_session_now(meta, &session, "expired", None)
                .await?;
            return Err(AuthError::Unauthenticated(
                "this session has expired; sign in again".into(),
            ));
        }
        let account: Option<Account> = self
            .identity
            .get_json(&format!("/internal/users/{}", session.user_id))
            .await
            .map_err(AuthError::Upstream)?;
        if account.as_ref().is_none_or(|a| a.status != "active") {
            self.end_session_now(meta, &session, "account disabled or deleted", None)
                .await?;
            return Err(AuthError::Unauthenticated(
                "this account cannot sign in; sign in again".into(),
            ));
        }
        let grants = self.grants(session.user_id).await?;
        let proven = Proven::of_session(&session, self.has_second_factor(session.user_id).await?);
        let (refresh, refresh_hash) = new_refresh_token();
        let (_turn, txn) = begin_write(&self.db).await?;
        // Of two concurrent refreshes only one spends the token.
        let spent = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
            .filter(refresh_token::Column::Id.eq(stored.id))
            .filter(refresh_token::Column::UsedAt.is_null())
            .exec(&txn)
            .await?;
        if spent.rows_affected != 1 {
            txn.rollback().await?;
            return Err(AuthError::Conflict(
                "this refresh token was just exchanged by another request; use the newest refresh token".into(),
            ));
        }
        let backend = txn.get_database_backend();
        execute_in_order(
            &txn,
            vec![
                insert_refresh(session.id, refresh_hash, stored.generation + 1, now).build(backend),
                session::Entity::update_many()
                    .col_expr(session::Column::LastUsedAt, Expr::value(now))
                    .filter(session::Column::Id.eq(session.id))
                    .build(backend),
            ],
        )
        .await?;
        txn.commit().await?;
        self.issue(session.user_id, session.id, grants, refresh, &proven)
            .await
    }

    /// A spent token came back: within the grace period it is the immediately previous one of a
    /// race and only refused; otherwise it is taken as stolen and the whole session ends.
    async fn reused(
        &self,
        meta: &RequestMeta,
        stored: &refresh_token::Model,
        session: &session::Model,
        now: DateTime<Utc>,
    ) -> AuthResult<AuthError> {
        let newest = refresh_token::Entity::find()
            .filter(refresh_token::Column::SessionId.eq(session.id))
            .order_by_desc(refresh_token::Column::Generation)
            .one(&self.db)
            .await?;
        let just_rotated = newest.is_some_and(|n| n.generation == stored.generation + 1)
            && stored
                .used_at
                .is_some_and(|used| now - used <= self.settings.reuse_grace);
        if just_rotated {
            return Ok(AuthError::Conflict(
                "this refresh token was just exchanged by another request; use the newest refresh token".into(),
            ));
        }
        keygraph_kernel::metrics::Metrics::of(SERVICE).refresh_reuse_detected();
        let (_turn, txn) = begin_write(&self.db).await?;
        self.end_session(&txn, meta, session, "refresh token reuse", None)
            .await?;
        AuditEvent::new("auth.refresh.reuse_detected", "session", session.id)
            .actor(Some(session.user_id))
            .outcome(Outcome::Denied)
            .metadata(json!({ "generation": stored.generation }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(AuthError::Unauthenticated(
            "this refresh token was already used, so the session was ended for safety; sign in again".into(),
        ))
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

    pub(crate) async fn issue(
        &self,
        user: Uuid,
        session: Uuid,
        grants: Grants,
        refresh_token: String,
        proven: &Proven,
    ) -> AuthResult<Tokens> {
        let key = self.keys.signing_key().await?;
        let now = Utc::now();
        let expires_at = now
            + chrono::Duration::from_std(self.settings.access_ttl)
                .unwrap_or(chrono::Duration::minutes(15));
        let claims = AccessClaims {
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            sub: user.to_string(),
            sid: Some(session.to_string()),
            iat: now.timestamp(),
            nbf: now.timestamp(),
            exp: expires_at.timestamp(),
            jti: Some(Uuid::now_v7().to_string()),
            roles: grants.roles,
            scope: grants.permissions.join(" "),
            amr: proven.amr.clone(),
            auth_time: Some(proven.auth_time),
            mfa_enrolled: proven.mfa_enrolled,
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.typ = Some(ACCESS_TOKEN_TYPE.into());
        header.kid = Some(key.kid.clone());
        let access_token = jsonwebtoken::encode(&header, &claims, &key.key)
            .map_err(|e| AuthError::Keys(KeyError::Kek(format!("signing failed: {e}"))))?;
        Ok(Tokens {
            access_token,
            expires_at,
            expires_in: self.settings.access_ttl.as_secs(),
            refresh_token,
            session_id: session,
            user_id: user,
            recovery_codes: None,
        })
    }

    /// Ends one session in a transaction of its own: the session and its audit event are
    /// written together or not at all.
    async fn end_session_now(
        &self,
        meta: &RequestMeta,
        session: &session::Model,
        reason: &str,
        actor: Option<Uuid>,
    ) -> AuthResult<bool> {
        let (_turn, txn) = begin_write(&self.db).await?;
        let ended = self.end_session(&txn, meta, session, reason, actor).await?;
        txn.commit().await?;
        Ok(ended)
    }

    /// Ends one session (idempotent).
    async fn end_session<C: ConnectionTrait>(
        &self,
        db: &C,
        meta: &RequestMeta,
        session: &session::Model,
        reason: &str,
        actor: Option<Uuid>,
    ) -> AuthResult<bool> {
        let ended = session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(Utc::now()))
            .col_expr(session::Column::RevokedReason, Expr::value(reason))
            .filter(session::Column::Id.eq(session.id))
            .filter(session::Column::RevokedAt.is_null())
            .exec(db)
            .await?
            .rows_affected
            == 1;
        if ended {
            AuditEvent::new("auth.session.ended", "session", session.id)
                .actor(actor)
                .metadata(json!({ "reason": reason, "user": session.user_id }))
                .record(db, meta)
                .await?;
        }
        Ok(ended)
    }

    /// Sessions of a user that have not ended, newest first.
    pub async fn sessions(&self, user: Uuid) -> AuthResult<Vec<session::Model>> {
        Ok(session::Entity::find()
            .filter(session::Column::UserId.eq(user))
            .filter(session::Column::RevokedAt.is_null())
            .filter(session::Column::ExpiresAt.gt(Utc::now()))
            .order_by_desc(session::Column::CreatedAt)
            .all(&self.db)
            .await?)
    }

    /// Ends a session: the caller's own, or any with `may_revoke_others`.
    pub async fn revoke_session(
        &self,
        meta: &RequestMeta,
        actor: Uuid,
        session_id: Uuid,
        may_revoke_others: bool,
        reason: &str,
    ) -> AuthResult<()> {
        let session = session::Entity::find_by_id(session_id)
            .one(&self.db)
            .await?
            .filter(|s| s.user_id == actor || may_revoke_others)
            .ok_or_else(|| AuthError::NotFound(format!("no session {session_id} of yours")))?;
        self.end_session_now(meta, &session, reason, Some(actor))
            .await?;
        Ok(())
    }

    /// Ends every session of a user, except `keep`. Returns how many ended.
    pub async fn revoke_user_sessions(
        &self,
        meta: &RequestMeta,
        user: Uuid,
        keep: Option<Uuid>,
        reason: &str,
        actor: Option<Uuid>,
    ) -> AuthResult<u64> {
        let (_turn, txn) = begin_write(&self.db).await?;
        let sessions = session::Entity::find()
            .filter(session::Column::UserId.eq(user))
            .filter(session::Column::RevokedAt.is_null())
            .all(&txn)
            .await?;
        let mut ended = 0;
        for session in sessions.iter().filter(|s| Some(s.id) != keep) {
            if self.end_session(&txn, meta, session, reason, actor).await? {
                ended += 1;
            }
        }
        txn.commit().await?;
        Ok(ended)
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

    /// Sessions ended recently enough that tokens of theirs may still be unexpired: what
    /// verifiers must refuse.
    pub async fn revoked_sessions(&self) -> AuthResult<Vec<Uuid>> {
        let horizon = Utc::now()
            - chrono::Duration::from_std(self.settings.access_ttl)
                .unwrap_or(chrono::Duration::hours(1))
            - chrono::Duration::seconds(120);
        Ok(session::Entity::find()
            .filter(session::Column::RevokedAt.gt(horizon))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|s| s.id)
            .collect())
    }
}

/// The insert of a session's refresh token (its hash; the token itself is never stored).
pub(crate) fn insert_refresh(
    session: Uuid,
    token_hash: String,
    generation: i32,
    now: DateTime<Utc>,
) -> Insert<refresh_token::ActiveModel> {
    refresh_token::Entity::insert(refresh_token::ActiveModel {
        id: Set(Uuid::now_v7()),
        session_id: Set(session),
        token_hash: Set(token_hash),
        generation: Set(generation),
        created_at: Set(now),
        used_at: Set(None),
    })
}
