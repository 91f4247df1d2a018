//! Changing who holds which role: assigning (by a caller, or by the system for identity's
//! first administrator) and unassigning, each recorded with its audit event.

use chrono::Utc;
use keygraph_kernel::{
    db::{begin_write, is_unique_violation},
    http::RequestMeta,
    outbox::AuditEvent,
    permissions::authz::ROLE_ASSIGN,
    token::Principal,
};
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use serde_json::json;
use uuid::Uuid;

use super::{Authz, AuthzError, AuthzResult, load_role};
use crate::entity::{role, user_role};

impl Authz {
    /// Gives a user a role, after identity confirms the user exists. A repeat changes nothing,
    /// as does a default role (every account holds it already).
    pub async fn assign_role(
        &self,
        meta: &RequestMeta,
        actor: &Principal,
        user_id: Uuid,
        role_id: Uuid,
    ) -> AuthzResult<()> {
        let role = load_role(&self.db, role_id).await?;
        let grants: Vec<String> = self
            .permissions_of_roles(&[role_id])
            .await?
            .remove(&role_id)
            .unwrap_or_default()
            .into_iter()
            .map(|g| g.code)
            .collect();
        self.require_authority(actor.user_id, ROLE_ASSIGN, &grants)
            .await?;
        let actor = actor.user_id;
        let exists = self
            .identity
            .get_json::<serde_json::Value>(&format!("/internal/users/{user_id}"))
            .await
            .map_err(AuthzError::IdentityUnavailable)?
            .is_some();
        if !exists {
            return Err(AuthzError::NotFound(format!("no user with id {user_id}")));
        }
        self.insert_assignment(meta, Some(actor), user_id, &role)
            .await?;
        Ok(())
    }

    /// Gives a user a role on the system's behalf (identity's first administrator): no caller
    /// to check, and no existence check, since identity asks only for users it just created.
    /// Answers whether it was newly assigned.
    pub async fn assign_role_by_system(
        &self,
        meta: &RequestMeta,
        user_id: Uuid,
        role_name: &str,
    ) -> AuthzResult<bool> {
        let role = self
            .role_by_name(role_name)
            .await?
            .ok_or_else(|| AuthzError::NotFound(format!("no role named `{role_name}`")))?;
        self.insert_assignment(meta, None, user_id, &role).await
    }

    /// Records the assignment and its audit event in one transaction; a repeat, or a default
    /// role (which every account holds), records nothing.
    async fn insert_assignment(
        &self,
        meta: &RequestMeta,
        actor: Option<Uuid>,
        user_id: Uuid,
        role: &role::Model,
    ) -> AuthzResult<bool> {
        if self.is_default_role(role.id) {
            // Every account holds it already (`authz.default_roles`): nothing to store.
            return Ok(false);
        }
        let (_turn, txn) = begin_write(&self.db).await?;
        let inserted = user_role::ActiveModel {
            user_id: Set(user_id),
            role_id: Set(role.id),
            granted_by: Set(actor),
            granted_at: Set(Utc::now()),
        }
        .insert(&txn)
        .await;
        match inserted {
            Ok(_) => {}
            // Already assigned (perhaps by a concurrent call): nothing to record.
            Err(e) if is_unique_violation(&e) => {
                txn.rollback().await?;
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        AuditEvent::new("authz.user.role_assigned", "user", user_id)
            .actor(actor)
            .metadata(json!({ "role": role.name, "roleId": role.id }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(true)
    }

    /// Takes a role from a user. Unassigning what the user does not hold changes nothing; a
    /// default role, which every account holds, is refused. It needs what assigning needs, and that the actor holds everything the user holds
    /// (nobody demotes someone more powerful); the last active administrator keeps `*`.
    pub async fn unassign_role(
        &self,
        meta: &RequestMeta,
        actor: &Principal,
        user_id: Uuid,
        role_id: Uuid,
    ) -> AuthzResult<()> {
        let role = load_role(&self.db, role_id).await?;
        if self.is_default_role(role_id) {
            return Err(AuthzError::InvalidInput {
                field: "roleId",
                message: format!(
                    "every account holds the role `{}` through `authz.default_roles`; it cannot be taken from one account",
                    role.name
                ),
            });
        }
        let held = user_role::Entity::find_by_id((user_id, role_id))
            .one(&self.db)
            .await?
            .is_some();
        if !held {
            return Ok(());
        }
        let grants = self.grants_of_role(role_id).await?;
        self.require_authority(actor.user_id, ROLE_ASSIGN, &grants)
            .await?;
        self.require_superior(actor.user_id, user_id).await?;
        let actor = actor.user_id;
        let (_turn, txn) = begin_write(&self.db).await?;
        let administrators = self
            .administrators_before(&txn, grants.iter().any(|g| g == "*"))
            .await?;
        let removed = user_role::Entity::delete_by_id((user_id, role_id))
            .exec(&txn)
            .await?
            .rows_affected;
        if removed == 0 {
            txn.rollback().await?;
            return Ok(());
        }
        self.ensure_an_administrator_remains(&txn, administrators)
            .await?;
        AuditEvent::new("authz.user.role_unassigned", "user", user_id)
            .actor(Some(actor))
            .metadata(json!({ "role": role.name, "roleId": role_id }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(())
    }
}
