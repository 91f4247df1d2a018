//! Tokens: signing access tokens, exchanging a refresh token for a new pair, and what a
//! refresh token presented again means (a race within the grace period, or theft, which
//! ends the session).

use chrono::{DateTime, Utc};
use keygraph_kernel::{
    db::{begin_write, execute_in_order},
    http::RequestMeta,
    outbox::{AuditEvent, Outcome},
    token::{ACCESS_TOKEN_TYPE, AccessClaims},
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, Insert, QueryFilter, QueryOrder, QueryTrait as _,
    Set, sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use super::{
    Account, Auth, AuthError, AuthResult, Grants, Proven, SERVICE, Tokens, hash_token,
    new_refresh_token,
};
use crate::{
    entity::{refresh_token, session},
    keys::KeyError,
};

impl Auth {
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
