//! Administering other accounts: enabling, disabling and deleting them, and the authority
//! (read from authz's current grants) that changing or deleting an account needs.

use std::collections::BTreeSet;

use chrono::Utc;
use keygraph_kernel::{db::begin_write, http::RequestMeta, outbox::AuditEvent, token::Principal};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};
use serde_json::json;
use uuid::Uuid;

use super::{AccountStatus, Identity, IdentityError, IdentityResult};
use crate::{
    entity::{
        credential, email_token,
        user::{self, STATUS_ACTIVE},
    },
    handover::Call,
};

/// What authz says about an actor and the account they act on (`/internal/authority`).
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Authority {
    /// Catalog codes the actor holds now.
    actor_permissions: Vec<String>,
    /// Catalog codes the target holds now and the actor does not.
    target_beyond_actor: Vec<String>,
    /// Whether the target holds `*` (is an administrator).
    target_holds_everything: bool,
    /// The other users holding `*`.
    others_holding_everything: Vec<Uuid>,
}

impl Identity {
    /// Enables or disables an account; a repeat changes nothing and records nothing.
    pub async fn set_status(
        &self,
        meta: &RequestMeta,
        actor: &Principal,
        user_id: Uuid,
        status: AccountStatus,
    ) -> IdentityResult<user::Model> {
        let current = self.load_user(&self.db, user_id).await?;
        if current.status == status.as_str() {
            return Ok(current);
        }
        self.require_authority(
            actor,
            user_id,
            crate::permissions::USER_UPDATE,
            status == AccountStatus::Disabled,
        )
        .await?;
        let actor = actor.user_id;
        let (_turn, txn) = begin_write(&self.db).await?;
        let user = self.load_user(&txn, user_id).await?;
        let from = user.status.clone();
        if from == status.as_str() {
            txn.rollback().await?;
            return Ok(user);
        }
        let mut active: user::ActiveModel = user.into();
        active.status = Set(status.as_str().into());
        active.updated_at = Set(Utc::now());
        let user = active.update(&txn).await?;
        AuditEvent::new("identity.user.status_changed", "user", user_id)
            .actor(Some(actor))
            .metadata(json!({ "from": from, "to": status.as_str() }))
            .record(&txn, meta)
            .await?;
        if status == AccountStatus::Disabled {
            let end_all = Call::EndSessions {
                keep: None,
                reason: "account disabled",
            };
            self.handover.record(&txn, user_id, end_all).await?;
        }
        txn.commit().await?;
        self.handover.wake();
        Ok(user)
    }

    /// Deletes the account with its credentials and tokens; authz is told to drop its grants
    /// and auth to end its sessions (recorded in the same transaction, delivered with retries).
    pub async fn delete_user(
        &self,
        meta: &RequestMeta,
        actor: &Principal,
        user_id: Uuid,
    ) -> IdentityResult<()> {
        self.load_user(&self.db, user_id).await?;
        self.require_authority(actor, user_id, crate::permissions::USER_DELETE, true)
            .await?;
        let actor = actor.user_id;
        let (_turn, txn) = begin_write(&self.db).await?;
        let user = self.load_user(&txn, user_id).await?;
        // Children first: SQLite enforces the cascade only with foreign keys on, so do not rely on it.
        email_token::Entity::delete_many()
            .filter(email_token::Column::UserId.eq(user_id))
            .exec(&txn)
            .await?;
        credential::Entity::delete_by_id(user_id).exec(&txn).await?;
        user::Entity::delete_by_id(user_id).exec(&txn).await?;
        self.handover
            .record(&txn, user_id, Call::DropGrants)
            .await?;
        self.handover
            .record(&txn, user_id, Call::DropFactors)
            .await?;
        let end_all = Call::EndSessions {
            keep: None,
            reason: "account deleted",
        };
        self.handover.record(&txn, user_id, end_all).await?;
        AuditEvent::new("identity.user.deleted", "user", user_id)
            .actor(Some(actor))
            .metadata(json!({ "email": user.email }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        self.handover.wake();
        Ok(())
    }

    /// What changing or deleting another account needs, read from authz's current grants
    /// (a token's `scope` may be up to its lifetime old):
    ///
    /// - the actor holds `code` now;
    /// - the actor holds every permission the target holds: nobody disables, enables or
    ///   deletes an account more powerful than their own;
    /// - when `removes` (disabling, deleting) an administrator (a holder of `*`), another
    ///   active administrator remains.
    ///
    /// Without authz (`identity.authz_url` null) nobody holds anything but their token's scope,
    /// which the resolver's guard checked.
    async fn require_authority(
        &self,
        actor: &Principal,
        target: Uuid,
        code: &str,
        removes: bool,
    ) -> IdentityResult<()> {
        let Some(authz) = &self.authz else {
            return Ok(());
        };
        let authority: Authority = authz
            .post_json(
                "/internal/authority",
                &json!({ "actor": actor.user_id, "target": target }),
            )
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "authz does not answer who holds what");
                IdentityError::Unavailable(
                    "the permissions this needs cannot be checked right now (authz does not answer); retry shortly".into(),
                )
            })?;
        let held: BTreeSet<&str> = authority
            .actor_permissions
            .iter()
            .map(String::as_str)
            .collect();
        if !held.contains(code) {
            return Err(IdentityError::Forbidden(format!(
                "this needs the permission `{code}`, which you do not hold (any more)"
            )));
        }
        let missing: Vec<&str> = authority
            .target_beyond_actor
            .iter()
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(IdentityError::Forbidden(format!(
                "this account holds permissions you do not ({}); only someone who holds all of them may change or delete it",
                keygraph_kernel::permissions::list_codes(&missing)
            )));
        }
        if removes && authority.target_holds_everything {
            let others: Vec<Uuid> = authority
                .others_holding_everything
                .into_iter()
                .filter(|u| *u != target)
                .collect();
            let active_others = if others.is_empty() {
                0
            } else {
                user::Entity::find()
                    .filter(user::Column::Id.is_in(others))
                    .filter(user::Column::Status.eq(STATUS_ACTIVE))
                    .count(&self.db)
                    .await?
            };
            if active_others == 0 {
                return Err(IdentityError::Conflict(
                    "this is the last active administrator (the only active holder of `*`); make another user an administrator first".into(),
                ));
            }
        }
        Ok(())
    }
}
