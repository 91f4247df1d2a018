//! Sign-in: the password check at identity (throttled, one answer for every failure), the
//! second factor when one is due, and the session a sign-in opens.

use chrono::{DateTime, Utc};
use keygraph_kernel::{
    db::{begin_write, execute_in_order, write_turn},
    http::RequestMeta,
    outbox::{AuditEvent, Outcome},
    throttle::Refused,
};
use sea_orm::{ConnectionTrait, EntityTrait, QueryTrait as _, Set};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use super::{
    Account, Auth, AuthError, AuthResult, Proven, SERVICE, SignIn, insert_refresh,
    new_refresh_token,
};
use crate::entity::session;

#[derive(Deserialize)]
struct CredentialCheck {
    valid: bool,
    user: Option<Account>,
}

impl Auth {
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
}
