//! Changing roles: creating, renaming or describing, and deleting them (with their grants,
//! which needs everything the role grants).

use chrono::Utc;
use keygraph_kernel::{
    db::begin_write, http::RequestMeta, outbox::AuditEvent, permissions::authz::ROLE_DELETE,
    token::Principal,
};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;
use uuid::Uuid;

use super::{
    Authz, AuthzError, AuthzResult, conflict_on_name, load_role, validate_description,
    validate_role_name,
};
use crate::entity::{role, role_permission, user_role};

impl Authz {
    pub async fn create_role(
        &self,
        meta: &RequestMeta,
        actor: Uuid,
        name: &str,
        description: Option<&str>,
    ) -> AuthzResult<role::Model> {
        let name = validate_role_name(name)?;
        let description = validate_description(description.unwrap_or_default())?;
        let now = Utc::now();
        let (_turn, txn) = begin_write(&self.db).await?;
        let created = role::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(name.clone()),
            description: Set(description),
            built_in: Set(false),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await
        .map_err(|e| conflict_on_name(e, &name))?;
        AuditEvent::new("authz.role.created", "role", created.id)
            .actor(Some(actor))
            .metadata(json!({ "name": name }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(created)
    }

    pub async fn update_role(
        &self,
        meta: &RequestMeta,
        actor: Uuid,
        id: Uuid,
        name: Option<&str>,
        description: Option<&str>,
    ) -> AuthzResult<role::Model> {
        let (_turn, txn) = begin_write(&self.db).await?;
        let current = load_role(&txn, id).await?;
        let name = name.map(validate_role_name).transpose()?;
        let description = description.map(validate_description).transpose()?;
        let renamed = name.as_ref().is_some_and(|n| *n != current.name);
        if current.built_in && renamed {
            return Err(AuthzError::Forbidden(format!(
                "the built-in role `{}` cannot be renamed",
                current.name
            )));
        }
        if self.is_default_role(id) && renamed {
            return Err(AuthzError::Forbidden(format!(
                "the role `{}` cannot be renamed while `authz.default_roles` names it",
                current.name
            )));
        }
        let mut changed = Vec::new();
        let mut active: role::ActiveModel = current.clone().into();
        if let Some(name) = name.filter(|n| *n != current.name) {
            active.name = Set(name);
            changed.push("name");
        }
        if let Some(description) = description.filter(|d| *d != current.description) {
            active.description = Set(description);
            changed.push("description");
        }
        if changed.is_empty() {
            txn.rollback().await?;
            return Ok(current);
        }
        active.updated_at = Set(Utc::now());
        let updated = active
            .update(&txn)
            .await
            .map_err(|e| conflict_on_name(e, "that name"))?;
        AuditEvent::new("authz.role.updated", "role", id)
            .actor(Some(actor))
            .metadata(json!({ "fields": changed, "name": updated.name }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(updated)
    }

    /// Deletes a role with its grants. Built-in roles and default roles cannot be deleted. It takes the role's
    /// grants away from its holders, so it needs them all (as granting them would), now.
    pub async fn delete_role(
        &self,
        meta: &RequestMeta,
        actor: &Principal,
        id: Uuid,
    ) -> AuthzResult<()> {
        let grants = self.grants_of_role(id).await?;
        self.require_authority(actor.user_id, ROLE_DELETE, &grants)
            .await?;
        let actor = actor.user_id;
        let (_turn, txn) = begin_write(&self.db).await?;
        let role = load_role(&txn, id).await?;
        match (role.built_in, self.is_default_role(id)) {
            (true, true) => {
                return Err(AuthzError::Forbidden(format!(
                    "the built-in role `{}` cannot be deleted; every account holds it through `authz.default_roles`",
                    role.name
                )));
            }
            (false, true) => {
                return Err(AuthzError::Forbidden(format!(
                    "the role `{}` cannot be deleted while `authz.default_roles` names it: every account holds it through that setting",
                    role.name
                )));
            }
            (true, false) => {
                return Err(AuthzError::Forbidden(format!(
                    "the built-in role `{}` cannot be deleted",
                    role.name
                )));
            }
            (false, false) => {}
        }
        let administrators = self
            .administrators_before(&txn, grants.iter().any(|g| g == "*"))
            .await?;
        // Explicit, not left to the cascade: SQLite enforces it only with foreign keys on.
        let holders = user_role::Entity::delete_many()
            .filter(user_role::Column::RoleId.eq(id))
            .exec(&txn)
            .await?
            .rows_affected;
        role_permission::Entity::delete_many()
            .filter(role_permission::Column::RoleId.eq(id))
            .exec(&txn)
            .await?;
        role::Entity::delete_by_id(id).exec(&txn).await?;
        self.ensure_an_administrator_remains(&txn, administrators)
            .await?;
        AuditEvent::new("authz.role.deleted", "role", id)
            .actor(Some(actor))
            .metadata(json!({ "name": role.name, "unassignedFrom": holders }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(())
    }
}
