//! Authz rules: roles, the permission catalog, grants and checks. No GraphQL types here.
//!
//! The batch look-ups (`*_of_*`) take many keys and run one SQL statement each, so the
//! DataLoaders in `loaders.rs` answer a whole level of a query with one statement.

use std::collections::{BTreeSet, HashMap};

use chrono::Utc;
use keygraph_kernel::{
    ApiError,
    db::{begin_write, is_unique_violation},
    http::RequestMeta,
    internal::{InternalCallError, InternalClient},
    outbox::AuditEvent,
    permissions::{
        CATALOG,
        authz::{ROLE_ASSIGN, ROLE_DELETE, ROLE_GRANT},
        grant_description, list_codes, module_of, validate_code, validate_grant,
    },
    token::{Principal, grant_covers},
};
use keygraph_migrations::authz::ADMIN_ROLE;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set, Statement,
};
use serde_json::json;
use uuid::Uuid;

use crate::entity::{permission, role, role_permission, user_role};

pub const MAX_ROLE_NAME: usize = 64;
pub const MAX_DESCRIPTION: usize = 500;
/// Most codes one `checkPermissions` call may ask about.
pub const MAX_CHECKS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum AuthzError {
    #[error("{message}")]
    InvalidInput {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("cannot reach the identity service to check the user: {0}")]
    IdentityUnavailable(InternalCallError),
    #[error(transparent)]
    Database(#[from] DbErr),
}

impl From<AuthzError> for ApiError {
    fn from(err: AuthzError) -> Self {
        match err {
            AuthzError::InvalidInput { field, message } => ApiError::bad_input(field, message),
            AuthzError::NotFound(m) => ApiError::not_found(m),
            AuthzError::Conflict(m) => ApiError::conflict(m),
            AuthzError::Forbidden(m) => ApiError::forbidden(m),
            AuthzError::IdentityUnavailable(e) => {
                tracing::warn!(error = %e, "identity does not answer");
                ApiError::new(
                    keygraph_kernel::ErrorCode::ServiceUnavailable,
                    "the identity service does not answer right now; retry shortly",
                )
            }
            AuthzError::Database(e) => ApiError::internal(e),
        }
    }
}

pub type AuthzResult<T> = Result<T, AuthzError>;

fn input(field: &'static str, message: impl Into<String>) -> AuthzError {
    AuthzError::InvalidInput {
        field,
        message: message.into(),
    }
}

/// A code a role holds: a catalog entry, or a wildcard grant (which has no entry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantedPermission {
    pub code: String,
    pub description: String,
    pub module: String,
}

pub struct RolePage {
    pub roles: Vec<role::Model>,
    pub has_next_page: bool,
    pub total_count: u64,
}

/// What identity needs to know before it changes or deletes an account (see
/// [`Authz::authority`]).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Authority {
    pub actor_permissions: Vec<String>,
    /// Catalog codes the target holds and the actor does not (none for the actor themself).
    pub target_beyond_actor: Vec<String>,
    pub target_holds_everything: bool,
    pub others_holding_everything: Vec<Uuid>,
}

/// What a user holds, for token claims.
#[derive(Debug, Clone, serde::Serialize)]
pub struct UserGrants {
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
}

pub struct Authz {
    db: DatabaseConnection,
    identity: InternalClient,
}

impl Authz {
    pub fn new(db: DatabaseConnection, identity: InternalClient) -> Self {
        Self { db, identity }
    }

    /// Adds catalog codes that this database does not know yet (codes added to the catalog
    /// after the first migration). Existing entries are left as they are.
    pub async fn sync_catalog(&self) -> AuthzResult<usize> {
        let known: BTreeSet<String> = permission::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|p| p.code)
            .collect();
        let mut added = 0;
        for (code, description) in CATALOG {
            if known.contains(*code) {
                continue;
            }
            permission::ActiveModel {
                code: Set((*code).to_owned()),
                module: Set(module_of(code).to_owned()),
                description: Set((*description).to_owned()),
                created_at: Set(Utc::now()),
            }
            .insert(&self.db)
            .await?;
            added += 1;
        }
        Ok(added)
    }

    // ----- reading -----

    pub async fn role(&self, id: Uuid) -> AuthzResult<Option<role::Model>> {
        Ok(role::Entity::find_by_id(id).one(&self.db).await?)
    }

    pub async fn role_by_name(&self, name: &str) -> AuthzResult<Option<role::Model>> {
        Ok(role::Entity::find()
            .filter(role::Column::Name.eq(name.trim()))
            .one(&self.db)
            .await?)
    }

    /// Roles in creation order, a page at a time.
    pub async fn roles(&self, first: u64, after: Option<Uuid>) -> AuthzResult<RolePage> {
        let total_count = role::Entity::find().count(&self.db).await?;
        let mut page = role::Entity::find();
        if let Some(after) = after {
            page = page.filter(role::Column::Id.gt(after));
        }
        let mut roles = page
            .order_by_asc(role::Column::Id)
            .limit(first + 1)
            .all(&self.db)
            .await?;
        let has_next_page = roles.len() as u64 > first;
        roles.truncate(first as usize);
        Ok(RolePage {
            roles,
            has_next_page,
            total_count,
        })
    }

    /// The catalog, optionally of one module, ordered by code.
    pub async fn permissions(&self, module: Option<&str>) -> AuthzResult<Vec<permission::Model>> {
        let mut query = permission::Entity::find();
        if let Some(module) = module {
            query = query.filter(permission::Column::Module.eq(module));
        }
        Ok(query
            .order_by_asc(permission::Column::Code)
            .all(&self.db)
            .await?)
    }

    /// Roles of each user, by name. One statement.
    pub async fn roles_of_users(
        &self,
        users: &[Uuid],
    ) -> AuthzResult<HashMap<Uuid, Vec<role::Model>>> {
        let rows = user_role::Entity::find()
            .filter(user_role::Column::UserId.is_in(users.iter().copied()))
            .find_also_related(role::Entity)
            .order_by_asc(role::Column::Name)
            .all(&self.db)
            .await?;
        let mut by_user: HashMap<Uuid, Vec<role::Model>> =
            users.iter().map(|u| (*u, Vec::new())).collect();
        for (grant, role) in rows {
            if let Some(role) = role {
                by_user.entry(grant.user_id).or_default().push(role);
            }
        }
        Ok(by_user)
    }

    /// Codes and wildcard grants of each role, by code. One statement.
    pub async fn permissions_of_roles(
        &self,
        roles: &[Uuid],
    ) -> AuthzResult<HashMap<Uuid, Vec<GrantedPermission>>> {
        let rows = role_permission::Entity::find()
            .filter(role_permission::Column::RoleId.is_in(roles.iter().copied()))
            .find_also_related(permission::Entity)
            .order_by_asc(role_permission::Column::PermissionCode)
            .all(&self.db)
            .await?;
        let mut by_role: HashMap<Uuid, Vec<GrantedPermission>> =
            roles.iter().map(|r| (*r, Vec::new())).collect();
        for (grant, entry) in rows {
            let view = match entry {
                Some(entry) => GrantedPermission {
                    code: entry.code,
                    description: entry.description,
                    module: entry.module,
                },
                None => GrantedPermission {
                    description: grant_description(&grant.permission_code),
                    module: module_of(&grant.permission_code).to_owned(),
                    code: grant.permission_code,
                },
            };
            by_role.entry(grant.role_id).or_default().push(view);
        }
        Ok(by_role)
    }

    /// Catalog codes each user holds, wildcards expanded, sorted. One statement.
    pub async fn effective_permissions_of_users(
        &self,
        users: &[Uuid],
    ) -> AuthzResult<HashMap<Uuid, Vec<String>>> {
        let mut by_user: HashMap<Uuid, Vec<String>> =
            users.iter().map(|u| (*u, Vec::new())).collect();
        if users.is_empty() {
            return Ok(by_user);
        }
        let sql = format!(
            "SELECT DISTINCT ur.user_id AS user_id, p.code AS code {EFFECTIVE_PERMISSIONS} \
             WHERE ur.user_id IN ({}) \
             ORDER BY ur.user_id, p.code",
            placeholders(self.db.get_database_backend(), users.len())
        );
        let statement = Statement::from_sql_and_values(
            self.db.get_database_backend(),
            sql,
            users.iter().map(|u| (*u).into()),
        );
        for row in self.db.query_all_raw(statement).await? {
            let user: Uuid = row.try_get("", "user_id")?;
            let code: String = row.try_get("", "code")?;
            by_user.entry(user).or_default().push(code);
        }
        Ok(by_user)
    }

    /// The grants (codes and wildcards) a user holds through any role. One statement.
    pub async fn grants_of_user(&self, user: Uuid) -> AuthzResult<Vec<String>> {
        let sql = format!(
            "SELECT DISTINCT rp.permission_code AS code \
             FROM user_roles ur JOIN role_permissions rp ON rp.role_id = ur.role_id \
             WHERE ur.user_id = {} ORDER BY rp.permission_code",
            placeholder(self.db.get_database_backend(), 1)
        );
        let statement =
            Statement::from_sql_and_values(self.db.get_database_backend(), sql, [user.into()]);
        self.db
            .query_all_raw(statement)
            .await?
            .iter()
            .map(|row| row.try_get::<String>("", "code").map_err(Into::into))
            .collect()
    }

    /// For each code, whether the user holds it. Codes must be valid exact codes.
    pub async fn check(&self, user: Uuid, codes: &[String]) -> AuthzResult<Vec<(String, bool)>> {
        if codes.len() > MAX_CHECKS {
            return Err(input(
                "codes",
                format!("at most {MAX_CHECKS} codes per check"),
            ));
        }
        for code in codes {
            validate_code(code).map_err(|m| input("codes", m))?;
        }
        let grants = self.grants_of_user(user).await?;
        Ok(codes
            .iter()
            .map(|code| (code.clone(), grants.iter().any(|g| grant_covers(g, code))))
            .collect())
    }

    /// Role names and effective codes of a user, for token claims: one statement, as every
    /// sign-in and refresh asks for them.
    pub async fn user_grants(&self, user: Uuid) -> AuthzResult<UserGrants> {
        let backend = self.db.get_database_backend();
        let sql = format!(
            "SELECT 'role' AS kind, r.name AS value \
             FROM user_roles ur JOIN roles r ON r.id = ur.role_id \
             WHERE ur.user_id = {} \
             UNION ALL \
             SELECT DISTINCT 'permission' AS kind, p.code AS value {EFFECTIVE_PERMISSIONS} \
             WHERE ur.user_id = {} \
             ORDER BY kind, value",
            placeholder(backend, 1),
            placeholder(backend, 2),
        );
        let statement = Statement::from_sql_and_values(backend, sql, [user.into(), user.into()]);
        let mut grants = UserGrants {
            roles: Vec::new(),
            permissions: Vec::new(),
        };
        for row in self.db.query_all_raw(statement).await? {
            let kind: String = row.try_get("", "kind")?;
            let value: String = row.try_get("", "value")?;
            match kind.as_str() {
                "role" => grants.roles.push(value),
                _ => grants.permissions.push(value),
            }
        }
        Ok(grants)
    }

    // ----- changing -----

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
        if current.built_in && name.as_ref().is_some_and(|n| *n != current.name) {
            return Err(AuthzError::Forbidden(format!(
                "the built-in role `{}` cannot be renamed",
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

    /// Deletes a role with its grants. Built-in roles cannot be deleted. It takes the role's
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
        if role.built_in {
            return Err(AuthzError::Forbidden(format!(
                "the built-in role `{}` cannot be deleted",
                role.name
            )));
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

    /// Gives a user a role, after identity confirms the user exists. A repeat changes nothing.
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

    /// Records the assignment and its audit event in one transaction; a repeat records nothing.
    async fn insert_assignment(
        &self,
        meta: &RequestMeta,
        actor: Option<Uuid>,
        user_id: Uuid,
        role: &role::Model,
    ) -> AuthzResult<bool> {
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

    /// Takes a role from a user. Unassigning what the user does not hold changes nothing.
    /// It needs what assigning needs, and that the actor holds everything the user holds
    /// (nobody demotes someone more powerful); the last active administrator keeps `*`.
    pub async fn unassign_role(
        &self,
        meta: &RequestMeta,
        actor: &Principal,
        user_id: Uuid,
        role_id: Uuid,
    ) -> AuthzResult<()> {
        let role = load_role(&self.db, role_id).await?;
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

impl Authz {
    /// For identity, before it changes or deletes `target` on `actor`'s behalf: what each
    /// holds now, and who the administrators (holders of `*`) are.
    pub async fn authority(&self, actor: Uuid, target: Uuid) -> AuthzResult<Authority> {
        let (actor_permissions, target_beyond_actor) = self.compare(actor, target).await?;
        let administrators = administrators(&self.db).await?;
        Ok(Authority {
            actor_permissions,
            target_beyond_actor,
            target_holds_everything: administrators.contains(&target),
            others_holding_everything: administrators
                .into_iter()
                .filter(|u| *u != target)
                .collect(),
        })
    }

    /// The codes and wildcards a role grants.
    async fn grants_of_role(&self, role: Uuid) -> AuthzResult<Vec<String>> {
        Ok(self
            .permissions_of_roles(&[role])
            .await?
            .remove(&role)
            .unwrap_or_default()
            .into_iter()
            .map(|g| g.code)
            .collect())
    }

    /// Nobody hands out (or takes away) what they do not hold, and sensitive changes read the
    /// actor's current grants, never their token (whose `scope` may be up to its lifetime
    /// old): the actor must hold `needed` now, and everything `grants` give. A code must be
    /// covered by one of the actor's grants; a wildcard by the same or a wider wildcard, so a
    /// code defined later under it is one the actor holds too.
    async fn require_authority(
        &self,
        actor: Uuid,
        needed: &str,
        grants: &[String],
    ) -> AuthzResult<()> {
        let own = self.grants_of_user(actor).await?;
        let holds = |code: &str| own.iter().any(|g| grant_covers(g, code));
        if !holds(needed) {
            return Err(AuthzError::Forbidden(format!(
                "this needs the permission `{needed}`, which you do not hold (any more)"
            )));
        }
        for grant in grants {
            if !holds(grant) {
                return Err(AuthzError::Forbidden(format!(
                    "you can only hand out or take away permissions you hold yourself; you do not hold `{grant}`"
                )));
            }
        }
        Ok(())
    }

    /// The actor's catalog codes, and those `target` holds beyond them (none when the actor
    /// is the target). One statement.
    async fn compare(&self, actor: Uuid, target: Uuid) -> AuthzResult<(Vec<String>, Vec<String>)> {
        let mut effective = self
            .effective_permissions_of_users(&[actor, target])
            .await?;
        let own = effective.remove(&actor).unwrap_or_default();
        if actor == target {
            return Ok((own, Vec::new()));
        }
        let held: BTreeSet<&str> = own.iter().map(String::as_str).collect();
        let beyond = effective
            .remove(&target)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| !held.contains(c.as_str()))
            .collect();
        Ok((own, beyond))
    }

    /// The actor holds every permission `target` holds (anyone may act on themself).
    async fn require_superior(&self, actor: Uuid, target: Uuid) -> AuthzResult<()> {
        let (_, beyond) = self.compare(actor, target).await?;
        let missing: Vec<&str> = beyond.iter().map(String::as_str).collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(AuthzError::Forbidden(format!(
            "this user holds permissions you do not ({}); only someone who holds all of them may take their roles away",
            list_codes(&missing)
        )))
    }

    /// The administrators before a change that may take `*` from someone (`touches`), with
    /// the change serialized against others like it; `None` when it cannot.
    async fn administrators_before(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        touches: bool,
    ) -> AuthzResult<Option<BTreeSet<Uuid>>> {
        if !touches {
            return Ok(None);
        }
        if txn.get_database_backend() == DbBackend::Postgres {
            // Two replicas each demoting one of the last two administrators must not both
            // see the other still there (SQLite writes are serialized already).
            txn.execute_unprepared("SELECT pg_advisory_xact_lock(4137201907)")
                .await?;
        }
        Ok(Some(administrators(txn).await?))
    }

    /// After a change inside `txn`: if it took `*` from every active administrator, it is
    /// refused (the transaction is dropped, so nothing changed).
    async fn ensure_an_administrator_remains(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        before: Option<BTreeSet<Uuid>>,
    ) -> AuthzResult<()> {
        let Some(before) = before else {
            return Ok(());
        };
        let after = administrators(txn).await?;
        let lost: Vec<Uuid> = before.difference(&after).copied().collect();
        if lost.is_empty() || self.any_active(after.iter().copied()).await? {
            return Ok(());
        }
        if self.any_active(lost.into_iter()).await? {
            return Err(AuthzError::Conflict(
                "this would leave no active administrator (holder of `*`); make another user an administrator first".into(),
            ));
        }
        Ok(())
    }

    /// Whether identity has any of `users` as an active account.
    async fn any_active(&self, users: impl Iterator<Item = Uuid>) -> AuthzResult<bool> {
        for user in users {
            let account = self
                .identity
                .get_json::<serde_json::Value>(&format!("/internal/users/{user}"))
                .await
                .map_err(AuthzError::IdentityUnavailable)?;
            if account.is_some_and(|a| a["status"] == "active") {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Users holding `*` through any role.
async fn administrators<C: ConnectionTrait>(db: &C) -> AuthzResult<BTreeSet<Uuid>> {
    let statement = Statement::from_string(
        db.get_database_backend(),
        "SELECT DISTINCT ur.user_id AS user_id FROM user_roles ur \
         JOIN role_permissions rp ON rp.role_id = ur.role_id \
         WHERE rp.permission_code = '*'",
    );
    db.query_all_raw(statement)
        .await?
        .iter()
        .map(|row| row.try_get::<Uuid>("", "user_id").map_err(Into::into))
        .collect()
}

/// `FROM … JOIN …` from a user's role grants (`ur`) to every permission (`p`) they cover. A
/// grant covers a code when equal, or when it ends in `*` and the code starts with everything
/// before the `*` (`*` alone covers all). substr/length work on both backends.
const EFFECTIVE_PERMISSIONS: &str = "FROM user_roles ur \
     JOIN role_permissions rp ON rp.role_id = ur.role_id \
     JOIN permissions p ON p.code = rp.permission_code \
       OR (rp.permission_code LIKE '%*' \
           AND substr(p.code, 1, length(rp.permission_code) - 1) \
             = substr(rp.permission_code, 1, length(rp.permission_code) - 1))";

/// The `index`th bind parameter (from 1) in the backend's syntax.
fn placeholder(backend: DbBackend, index: usize) -> String {
    match backend {
        DbBackend::Postgres => format!("${index}"),
        _ => "?".to_owned(),
    }
}

fn placeholders(backend: DbBackend, count: usize) -> String {
    (1..=count)
        .map(|i| placeholder(backend, i))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn load_role<C: ConnectionTrait>(db: &C, id: Uuid) -> AuthzResult<role::Model> {
    role::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AuthzError::NotFound(format!("no role with id {id}")))
}

fn refuse_admin_change(role: &role::Model) -> AuthzResult<()> {
    if role.built_in && role.name == ADMIN_ROLE {
        return Err(AuthzError::Forbidden(
            "the built-in admin role always holds `*`; its permissions cannot change".into(),
        ));
    }
    Ok(())
}

fn conflict_on_name(err: DbErr, name: &str) -> AuthzError {
    if is_unique_violation(&err) {
        AuthzError::Conflict(format!("a role named `{name}` already exists"))
    } else {
        err.into()
    }
}

/// Role names are slugs: a lowercase letter, then lowercase letters, digits, `_` or `-`.
fn validate_role_name(name: &str) -> AuthzResult<String> {
    let name = name.trim();
    let mut chars = name.chars();
    let valid = matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if name.len() > MAX_ROLE_NAME {
        return Err(input(
            "name",
            format!("role names are at most {MAX_ROLE_NAME} characters"),
        ));
    }
    if !valid {
        return Err(input(
            "name",
            format!(
                "`{name}` is not a role name: start with a lowercase letter, then lowercase letters, digits, _ or -"
            ),
        ));
    }
    Ok(name.to_owned())
}

fn validate_description(description: &str) -> AuthzResult<String> {
    let description = description.trim();
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(input(
            "description",
            format!("descriptions are at most {MAX_DESCRIPTION} characters"),
        ));
    }
    if description.chars().any(|c| c.is_control() && c != '\n') {
        return Err(input(
            "description",
            "descriptions must not contain control characters",
        ));
    }
    Ok(description.to_owned())
}
