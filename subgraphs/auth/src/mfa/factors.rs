//! The user's confirmed factors: listing, renaming and removing them (the last one only
//! while no role requires a second factor), their reset by an administrator, and their drop
//! when the account is deleted.

use keygraph_kernel::{db::begin_write, http::RequestMeta, outbox::AuditEvent};
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait as _,
    QueryFilter, QueryOrder, Set,
};
use serde_json::json;
use uuid::Uuid;

use super::{check_name, confirmed_factors};
use crate::{
    entity::{factor, passkey_ceremony, recovery_code, sign_in_challenge},
    service::{Auth, AuthError, AuthResult},
};

impl Auth {
    /// The user's confirmed factors, oldest first.
    pub async fn factors(&self, user: Uuid) -> AuthResult<Vec<factor::Model>> {
        Ok(confirmed_factors(user)
            .order_by_asc(factor::Column::CreatedAt)
            .all(&self.db)
            .await?)
    }

    /// Renames one of the user's factors.
    pub async fn rename_factor(
        &self,
        meta: &RequestMeta,
        user: Uuid,
        id: Uuid,
        name: &str,
    ) -> AuthResult<factor::Model> {
        let name = check_name(name)?;
        let (_turn, txn) = begin_write(&self.db).await?;
        let found = self.own_factor(&txn, user, id).await?;
        let mut active: factor::ActiveModel = found.into();
        active.name = Set(name.clone());
        let renamed = active.update(&txn).await?;
        AuditEvent::new("auth.factor.renamed", "factor", id)
            .actor(Some(user))
            .metadata(json!({ "name": name }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(renamed)
    }

    /// Removes one of the user's factors. Removing the last one also removes the recovery
    /// codes, and is refused while a role the user holds requires a second factor.
    pub async fn remove_factor(&self, meta: &RequestMeta, user: Uuid, id: Uuid) -> AuthResult<()> {
        let grants = self.grants(user).await?;
        let (_turn, txn) = begin_write(&self.db).await?;
        let found = self.own_factor(&txn, user, id).await?;
        let others = confirmed_factors(user)
            .filter(factor::Column::Id.ne(id))
            .count(&txn)
            .await?;
        if others == 0 && self.role_requires_second_factor(&grants) {
            txn.rollback().await?;
            return Err(AuthError::Conflict(
                "a role you hold requires a second factor: add another before removing this one"
                    .into(),
            ));
        }
        factor::Entity::delete_by_id(id).exec(&txn).await?;
        if others == 0 {
            recovery_code::Entity::delete_many()
                .filter(recovery_code::Column::UserId.eq(user))
                .exec(&txn)
                .await?;
        }
        AuditEvent::new("auth.factor.removed", "factor", id)
            .actor(Some(user))
            .metadata(json!({ "kind": found.kind, "user": user, "last": others == 0 }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(())
    }

    async fn own_factor(
        &self,
        txn: &DatabaseTransaction,
        user: Uuid,
        id: Uuid,
    ) -> AuthResult<factor::Model> {
        factor::Entity::find_by_id(id)
            .one(txn)
            .await?
            .filter(|f| f.user_id == user && f.confirmed_at.is_some())
            .ok_or_else(|| AuthError::NotFound(format!("no second factor {id} of yours")))
    }

    /// Removes every factor and recovery code of `target` (a user who lost them), if `actor`
    /// holds `auth.factor.reset` now (per authz's current grants). Returns how many factors
    /// went.
    pub async fn reset_factors(
        &self,
        meta: &RequestMeta,
        actor: Uuid,
        target: Uuid,
    ) -> AuthResult<u64> {
        self.require_current_permission(actor, keygraph_kernel::permissions::auth::FACTOR_RESET)
            .await?;
        let (_turn, txn) = begin_write(&self.db).await?;
        let removed = remove_all_factors(&txn, target).await?;
        AuditEvent::new("auth.factor.reset", "user", target)
            .actor(Some(actor))
            .metadata(json!({ "factors": removed }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(removed)
    }

    /// Removes what auth keeps of a deleted user's factors (identity asks, after the
    /// deletion). Idempotent; returns how many factors went.
    pub async fn drop_factors(&self, meta: &RequestMeta, user: Uuid) -> AuthResult<u64> {
        let (_turn, txn) = begin_write(&self.db).await?;
        let removed = remove_all_factors(&txn, user).await?;
        if removed > 0 {
            AuditEvent::new("auth.factor.dropped", "user", user)
                .metadata(json!({ "factors": removed, "reason": "account deleted" }))
                .record(&txn, meta)
                .await?;
        }
        txn.commit().await?;
        Ok(removed)
    }
}

/// Deletes every factor, recovery code, sign-in challenge and passkey ceremony of `user`.
async fn remove_all_factors(txn: &DatabaseTransaction, user: Uuid) -> AuthResult<u64> {
    let removed = factor::Entity::delete_many()
        .filter(factor::Column::UserId.eq(user))
        .exec(txn)
        .await?
        .rows_affected;
    recovery_code::Entity::delete_many()
        .filter(recovery_code::Column::UserId.eq(user))
        .exec(txn)
        .await?;
    sign_in_challenge::Entity::delete_many()
        .filter(sign_in_challenge::Column::UserId.eq(user))
        .exec(txn)
        .await?;
    passkey_ceremony::Entity::delete_many()
        .filter(passkey_ceremony::Column::UserId.eq(user))
        .exec(txn)
        .await?;
    Ok(removed)
}
