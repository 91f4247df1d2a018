//! Changing the permission catalog and what roles grant: defining codes, granting and
//! revoking codes and wildcards (only what the caller holds).

use chrono::Utc;
use keygraph_kernel::{
    db::begin_write,
    http::RequestMeta,
    outbox::AuditEvent,
    permissions::{authz::ROLE_GRANT, module_of, validate_code, validate_grant},
    token::{Principal, grant_covers},
};
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use serde_json::json;
use uuid::Uuid;

use super::{
    Authz, AuthzError, AuthzResult, input, load_role, refuse_admin_change, validate_description,
};
use crate::entity::{permission, role, role_permission};

impl Authz {
    /// Adds a code to the catalog, or updates its description. A repeat changes nothing.
    pub async fn define_permission(
        &self,
        meta: &RequestMeta,
        actor: Uuid,
        code: &str,
        description: &str,
    ) -> AuthzResult<permission::Model> {
        let code = code.trim();
        validate_code(code).map_err(|m| input("code", m))?;
        let description = validate_description(description)?;
        let (_turn, txn) = begin_write(&self.db).await?;
        let existing = permission::Entity::find_by_id(code).one(&txn).await?;
        let (model, action) = match existing {
            Some(entry) if entry.description == description => {
                txn.rollback().await?;
                return Ok(entry);
            }
            Some(entry) => {
                let mut active: permission::ActiveModel = entry.into();
                active.description = Set(description);
                (active.update(&txn).await?, "authz.permission.updated")
            }
            None => (
                permission::ActiveModel {
                    code: Set(code.to_owned()),
                    module: Set(module_of(code).to_owned()),
                    description: Set(description),
                    created_at: Set(Utc::now()),
                }
                .insert(&txn)
                .await?,
                "authz.permission.defined",
            ),
        };
        AuditEvent::new(action, "permission", code)
            .actor(Some(actor))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(model)
    }

    /// Grants a code (from the catalog) or a wildcard to a role. A repeat changes nothing.
    pub async fn grant_permission(
        &self,
        meta: &RequestMeta,
        actor: &Principal,
        role_id: Uuid,
        code: &str,
    ) -> AuthzResult<role::Model> {
        let code = code.trim();
        validate_grant(code).map_err(|m| input("code", m))?;
        let (_turn, txn) = begin_write(&self.db).await?;
        let role = load_role(&txn, role_id).await?;
        refuse_admin_change(&role)?;
        if code == "*" && self.is_default_role(role_id) {
            return Err(AuthzError::Forbidden(format!(
                "every account holds the role `{}` through `authz.default_roles`; granting it `*` would make every account an administrator",
                role.name
            )));
        }
        if !code.ends_with('*')
            && permission::Entity::find_by_id(code)
                .one(&txn)
                .await?
                .is_none()
        {
            return Err(AuthzError::NotFound(format!(
                "`{code}` is not in the permission catalog; define it first"
            )));
        }
        if code.ends_with('*')
            && !self
                .permissions(None)
                .await?
                .iter()
                .any(|p| grant_covers(code, &p.code))
        {
            return Err(input(
                "code",
                format!(
                    "`{code}` covers no code in the permission catalog; define the module's codes first"
                ),
            ));
        }
        self.require_authority(actor.user_id, ROLE_GRANT, &[code.to_owned()])
            .await?;
        let actor = actor.user_id;
        if role_permission::Entity::find_by_id((role_id, code.to_owned()))
            .one(&txn)
            .await?
            .is_some()
        {
            txn.rollback().await?;
            return Ok(role);
        }
        role_permission::ActiveModel {
            role_id: Set(role_id),
            permission_code: Set(code.to_owned()),
            granted_by: Set(Some(actor)),
            granted_at: Set(Utc::now()),
        }
        .insert(&txn)
        .await?;
        AuditEvent::new("authz.role.permission_granted", "role", role_id)
            .actor(Some(actor))
            .metadata(json!({ "role": role.name, "code": code }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(role)
    }

    /// Takes a code or wildcard away from a role. Revoking what it does not hold changes nothing.
    /// Taking away needs what handing out needs: `authz.role.grant` and the code, now.
    pub async fn revoke_permission(
        &self,
        meta: &RequestMeta,
        actor: &Principal,
        role_id: Uuid,
        code: &str,
    ) -> AuthzResult<role::Model> {
        let code = code.trim();
        validate_grant(code).map_err(|m| input("code", m))?;
        self.require_authority(actor.user_id, ROLE_GRANT, &[code.to_owned()])
            .await?;
        let actor = actor.user_id;
        let (_turn, txn) = begin_write(&self.db).await?;
        let role = load_role(&txn, role_id).await?;
        refuse_admin_change(&role)?;
        let administrators = self.administrators_before(&txn, code == "*").await?;
        let removed = role_permission::Entity::delete_by_id((role_id, code.to_owned()))
            .exec(&txn)
            .await?
            .rows_affected;
        if removed == 0 {
            txn.rollback().await?;
            return Ok(role);
        }
        self.ensure_an_administrator_remains(&txn, administrators)
            .await?;
        AuditEvent::new("authz.role.permission_revoked", "role", role_id)
            .actor(Some(actor))
            .metadata(json!({ "role": role.name, "code": code }))
            .record(&txn, meta)
            .await?;
        txn.commit().await?;
        Ok(role)
    }
}
