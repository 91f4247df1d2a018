//! Reading: roles, the permission catalog, what roles grant and users hold, and checks.
//! Each batch look-up runs one statement however many keys it is given.

use std::collections::HashMap;

use keygraph_kernel::{
    permissions::{grant_description, module_of, validate_code},
    token::grant_covers,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::{
    Authz, AuthzResult, COVERED_PERMISSIONS, GrantedPermission, MAX_CHECKS, RolePage, UserGrants,
    defaults::Binds, input,
};
use crate::entity::{permission, role, role_permission};

impl Authz {
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

    /// Roles of each user, by name: those assigned and the default roles. One statement.
    pub async fn roles_of_users(
        &self,
        users: &[Uuid],
    ) -> AuthzResult<HashMap<Uuid, Vec<role::Model>>> {
        let mut by_user: HashMap<Uuid, Vec<role::Model>> =
            users.iter().map(|u| (*u, Vec::new())).collect();
        if users.is_empty() {
            return Ok(by_user);
        }
        let mut binds = Binds::new(self.db.get_database_backend());
        let sql = format!(
            "SELECT h.user_id AS user_id, r.id AS id, r.name AS name, \
             r.description AS description, r.built_in AS built_in, \
             r.created_at AS created_at, r.updated_at AS updated_at \
             FROM {} h JOIN roles r ON r.id = h.role_id ORDER BY r.name",
            self.held_roles(&mut binds, users)
        );
        // In name order overall, so in name order for each user too.
        for row in self.db.query_all_raw(binds.statement(sql)).await? {
            let holder: Option<Uuid> = row.try_get("", "user_id")?;
            let role = role::Model::from_query_result(&row, "")?;
            match holder {
                Some(user) => push_role(by_user.entry(user).or_default(), role),
                None => {
                    for held in by_user.values_mut() {
                        push_role(held, role.clone());
                    }
                }
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

    /// Catalog codes each user holds (default roles included), wildcards expanded, sorted.
    /// One statement.
    pub async fn effective_permissions_of_users(
        &self,
        users: &[Uuid],
    ) -> AuthzResult<HashMap<Uuid, Vec<String>>> {
        let mut by_user: HashMap<Uuid, Vec<String>> =
            users.iter().map(|u| (*u, Vec::new())).collect();
        if users.is_empty() {
            return Ok(by_user);
        }
        let mut binds = Binds::new(self.db.get_database_backend());
        let sql = format!(
            "SELECT DISTINCT h.user_id AS user_id, p.code AS code \
             FROM {} h {COVERED_PERMISSIONS} ORDER BY code",
            self.held_roles(&mut binds, users)
        );
        // In code order overall, so in code order for each user too.
        for row in self.db.query_all_raw(binds.statement(sql)).await? {
            let holder: Option<Uuid> = row.try_get("", "user_id")?;
            let code: String = row.try_get("", "code")?;
            match holder {
                Some(user) => push_code(by_user.entry(user).or_default(), code),
                None => {
                    for held in by_user.values_mut() {
                        push_code(held, code.clone());
                    }
                }
            }
        }
        Ok(by_user)
    }

    /// The grants (codes and wildcards) a user holds through any role, default roles
    /// included. One statement.
    pub async fn grants_of_user(&self, user: Uuid) -> AuthzResult<Vec<String>> {
        let mut binds = Binds::new(self.db.get_database_backend());
        let sql = format!(
            "SELECT DISTINCT rp.permission_code AS code \
             FROM {} h JOIN role_permissions rp ON rp.role_id = h.role_id ORDER BY code",
            self.held_roles(&mut binds, &[user])
        );
        self.db
            .query_all_raw(binds.statement(sql))
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

    /// Role names and effective codes of a user (default roles included), for token claims:
    /// one statement, as every sign-in and refresh asks for them.
    pub async fn user_grants(&self, user: Uuid) -> AuthzResult<UserGrants> {
        let mut binds = Binds::new(self.db.get_database_backend());
        let roles = self.held_roles(&mut binds, &[user]);
        let permissions = self.held_roles(&mut binds, &[user]);
        let sql = format!(
            "SELECT DISTINCT 'role' AS kind, r.name AS value \
             FROM {roles} h JOIN roles r ON r.id = h.role_id \
             UNION ALL \
             SELECT DISTINCT 'permission' AS kind, p.code AS value \
             FROM {permissions} h {COVERED_PERMISSIONS} \
             ORDER BY kind, value"
        );
        let statement = binds.statement(sql);
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
}

/// Adds `role` to a user's roles, which arrive in name order: an assigned default role comes
/// twice in a row.
fn push_role(held: &mut Vec<role::Model>, role: role::Model) {
    if held.last().is_none_or(|last| last.id != role.id) {
        held.push(role);
    }
}

/// Adds `code` to a user's codes, which arrive in code order: one held through an assigned
/// role and a default role comes twice in a row.
fn push_code(held: &mut Vec<String>, code: String) {
    if held.last() != Some(&code) {
        held.push(code);
    }
}
