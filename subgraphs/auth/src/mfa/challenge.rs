//! The sign-in challenge: what a correct password gets when a second factor is due (single
//! use, expiring, bound to the client that signed in), and its completion, which opens the
//! session.

use chrono::Utc;
use keygraph_kernel::{db::begin_write, http::RequestMeta, outbox::AuditEvent};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait, EntityTrait, PaginatorTrait as _, QueryFilter, Set,
    sea_query::Expr,
};
use serde_json::json;
use uuid::Uuid;

use super::{
    Challenge, Method, Proof, confirmed_factors, proof::with_factor, secs, unused_recovery_codes,
};
use crate::{
    entity::{factor, passkey_ceremony, sign_in_challenge},
    service::{
        Account, Auth, AuthError, AuthResult, Proven, Tokens, hash_token, new_refresh_token,
    },
};

const INVALID_CHALLENGE: &str = "the sign-in challenge is not valid: it expired, was already used, or comes from another client; sign in again";

impl Auth {
    /// Answers a correct password with a challenge (and, with `enrol`, a TOTP enrolment).
    pub(crate) async fn challenge(
        &self,
        meta: &RequestMeta,
        account: &Account,
        enrol: bool,
        amr: &[&str],
    ) -> AuthResult<Challenge> {
        let now = Utc::now();
        let (token, token_hash) = new_refresh_token();
        let expires_at = now + chrono::Duration::seconds(secs(self.mfa.challenge_ttl_secs));
        let (_turn, txn) = begin_write(&self.db).await?;
        let enrolment = if enrol {
            Some(
                self.pending_totp(&txn, account.id, &account.email, "Authenticator", now)
                    .await?,
            )
        } else {
            None
        };
        let id = Uuid::now_v7();
        let passkey = if enrol {
            None
        } else {
            self.passkey_request(&txn, account.id, passkey_ceremony::SECOND_FACTOR, Some(id))
                .await?
        };
        let methods = if enrol {
            vec![Method::Totp]
        } else {
            let mut methods = Vec::new();
            let totp = confirmed_factors(account.id)
                .filter(factor::Column::Kind.eq(factor::TOTP))
                .count(&txn)
                .await?;
            if totp > 0 {
                methods.push(Method::Totp);
            }
            if passkey.is_some() {
                methods.push(Method::Passkey);
            }
            let codes = unused_recovery_codes(account.id).count(&txn).await?;
            if codes > 0 {
                methods.push(Method::RecoveryCode);
            }
            methods
        };
        sign_in_challenge::ActiveModel {
            id: Set(id),
            token_hash: Set(token_hash),
            user_id: Set(account.id),
            amr: Set(amr.join(" ")),
            client_addr: Set(meta.client_addr.map(|a| a.to_string())),
            user_agent: Set(meta.user_agent.clone()),
            enrol_factor: Set(enrolment.as_ref().map(|e| e.factor_id)),
            created_at: Set(now),
            expires_at: Set(expires_at),
            used_at: Set(None),
        }
        .insert(&txn)
        .await?;
        AuditEvent::new("auth.login.second_factor_due", "user", account.id)
            .actor(Some(account.id))
            .metadata(json!({ "challenge": id, "enrolment": enrol }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(Challenge {
            token,
            expires_at,
            methods,
            enrolment,
            passkey,
        })
    }

    /// Completes a sign-in challenge with a second factor: the session opens.
    pub async fn complete_sign_in(
        &self,
        meta: &RequestMeta,
        challenge: &str,
        proof: &Proof,
    ) -> AuthResult<Tokens> {
        let invalid = || AuthError::Unauthenticated(INVALID_CHALLENGE.into());
        if challenge.len() != 43 {
            return Err(invalid());
        }
        let now = Utc::now();
        let stored = sign_in_challenge::Entity::find()
            .filter(sign_in_challenge::Column::TokenHash.eq(hash_token(challenge)))
            .one(&self.db)
            .await?
            .filter(|c| {
                c.used_at.is_none()
                    && c.expires_at > now
                    && c.client_addr == meta.client_addr.map(|a| a.to_string())
                    && c.user_agent == meta.user_agent
            })
            .ok_or_else(invalid)?;
        let user = stored.user_id;
        if !self.may_sign_in(user).await? {
            return Err(invalid());
        }
        if stored.enrol_factor.is_some() && !matches!(proof, Proof::Totp(_)) {
            return Err(AuthError::InvalidInput(
                "proof.totpCode",
                "this sign-in adds an authenticator: complete it with a code of that authenticator"
                    .into(),
            ));
        }
        let accepted = self
            .check_proof(
                meta,
                user,
                proof,
                stored.enrol_factor,
                Some(stored.id),
                "proof",
            )
            .await?;
        let grants = self.grants(user).await?;
        let (_turn, txn) = begin_write(&self.db).await?;
        let claimed = sign_in_challenge::Entity::update_many()
            .col_expr(sign_in_challenge::Column::UsedAt, Expr::value(now))
            .filter(sign_in_challenge::Column::Id.eq(stored.id))
            .filter(sign_in_challenge::Column::UsedAt.is_null())
            .exec(&txn)
            .await?;
        if claimed.rows_affected != 1 {
            txn.rollback().await?;
            return Err(invalid());
        }
        let amr = with_factor(&stored.amr, &accepted);
        let recovery_codes = self.spend(&txn, meta, user, accepted, "sign_in").await?;
        let proven = Proven {
            amr,
            auth_time: now.timestamp(),
            mfa_enrolled: true,
        };
        let (session_id, refresh) = self
            .open_session(&txn, meta, user, &proven, Vec::new())
            .await?;
        txn.commit().await?;
        keygraph_kernel::metrics::Metrics::of("auth").sign_in("succeeded");
        let mut tokens = self
            .issue(user, session_id, grants, refresh, &proven)
            .await?;
        tokens.recovery_codes = recovery_codes;
        Ok(tokens)
    }
}
