//! Adding a TOTP authenticator: the pending factor with its secret, URI and QR code, and its
//! confirmation by a first code (the user's first factor comes with recovery codes).

use chrono::{DateTime, Utc};
use keygraph_kernel::{db::begin_write, http::RequestMeta, outbox::AuditEvent};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait as _,
    QueryFilter, Set,
};
use serde_json::json;
use uuid::Uuid;

use super::{Confirmed, MAX_FACTORS, Proof, TotpEnrolment, check_name, secs};
use crate::{
    entity::factor,
    service::{Auth, AuthError, AuthResult},
    totp,
};

impl Auth {
    /// A new unconfirmed TOTP factor; the user's other unconfirmed ones are dropped.
    pub(super) async fn pending_totp(
        &self,
        txn: &DatabaseTransaction,
        user: Uuid,
        account_label: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> AuthResult<TotpEnrolment> {
        factor::Entity::delete_many()
            .filter(factor::Column::UserId.eq(user))
            .filter(factor::Column::ConfirmedAt.is_null())
            .exec(txn)
            .await?;
        let confirmed = factor::Entity::find()
            .filter(factor::Column::UserId.eq(user))
            .count(txn)
            .await?;
        if confirmed >= MAX_FACTORS {
            return Err(AuthError::Conflict(format!(
                "you have {MAX_FACTORS} second factors, the most there may be; remove one first"
            )));
        }
        let secret = totp::new_secret();
        let sealed = self.keys.sealer().seal_bytes(&secret)?;
        let uri = totp::otpauth_uri(&secret, &self.mfa.totp_issuer, account_label);
        let qr_code = totp::qr_svg_data_url(&uri).map_err(AuthError::Conflict)?;
        let factor_id = Uuid::now_v7();
        factor::ActiveModel {
            id: Set(factor_id),
            user_id: Set(user),
            kind: Set(factor::TOTP.into()),
            name: Set(name.to_owned()),
            sealed_secret: Set(Some(sealed)),
            credential: Set(None),
            last_step: Set(None),
            created_at: Set(now),
            confirmed_at: Set(None),
            last_used_at: Set(None),
        }
        .insert(txn)
        .await?;
        Ok(TotpEnrolment {
            factor_id,
            secret: totp::encode_secret(&secret),
            uri,
            qr_code,
            expires_at: now + chrono::Duration::seconds(secs(self.mfa.enrolment_ttl_secs)),
        })
    }

    /// Starts adding an authenticator app: it counts once [`Auth::confirm_totp`] takes its
    /// first code.
    pub async fn begin_totp(
        &self,
        meta: &RequestMeta,
        user: Uuid,
        name: Option<&str>,
    ) -> AuthResult<TotpEnrolment> {
        let name = check_name(name.unwrap_or("Authenticator"))?;
        let account = self
            .account(user)
            .await?
            .ok_or_else(|| AuthError::NotFound(format!("no user {user}")))?;
        let (_turn, txn) = begin_write(&self.db).await?;
        let enrolment = self
            .pending_totp(&txn, user, &account.email, &name, Utc::now())
            .await?;
        AuditEvent::new(
            "auth.factor.enrolment_started",
            "factor",
            enrolment.factor_id,
        )
        .actor(Some(user))
        .metadata(json!({ "kind": factor::TOTP, "user": user }))
        .record(&txn, meta)
        .await?;
        txn.commit().await?;
        Ok(enrolment)
    }

    /// Confirms a pending authenticator with its first code. The first factor of a user
    /// comes with recovery codes.
    pub async fn confirm_totp(
        &self,
        meta: &RequestMeta,
        user: Uuid,
        factor_id: Uuid,
        code: &str,
    ) -> AuthResult<Confirmed> {
        let proof = Proof::Totp(code.to_owned());
        let accepted = self
            .check_proof(meta, user, &proof, Some(factor_id), None, "code")
            .await?;
        let (_turn, txn) = begin_write(&self.db).await?;
        let recovery_codes = self.spend(&txn, meta, user, accepted, "enrolment").await?;
        let factor = factor::Entity::find_by_id(factor_id)
            .one(&txn)
            .await?
            .ok_or_else(|| AuthError::NotFound(format!("no pending factor {factor_id}")))?;
        txn.commit().await?;
        Ok(Confirmed {
            factor,
            recovery_codes,
        })
    }
}
