//! A deleted user: identity asks authz to remove every grant they held.

use keygraph_kernel::{db::begin_write, http::RequestMeta, outbox::AuditEvent};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;
use uuid::Uuid;

use super::{Authz, AuthzResult};
use crate::entity::user_role;

impl Authz {
    /// Removes every grant of a deleted user (called by identity). Idempotent.
    pub async fn remove_user(&self, meta: &RequestMeta, user_id: Uuid) -> AuthzResult<u64> {
        let (_turn, txn) = begin_write(&self.db).await?;
        let removed = user_role::Entity::delete_many()
            .filter(user_role::Column::UserId.eq(user_id))
            .exec(&txn)
            .await?
            .rows_affected;
        if removed > 0 {
            AuditEvent::new("authz.user.grants_removed", "user", user_id)
                .metadata(json!({ "roles": removed, "reason": "user deleted" }))
                .record(&txn, meta)
                .await?;
        }
        txn.commit().await?;
        Ok(removed)
    }
}
