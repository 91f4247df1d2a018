//! Reading: roles, the permission catalog, what roles grant and users hold, and checks.
//! Each batch look-up runs one statement however many keys it is given.

use std::collections::HashMap;

use keygraph_kernel::{
    permissions::{grant_description, module_of, validate_code},
    token::grant_covers,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};
use uuid::Uuid;

use super::{
    Authz, AuthzResult, EFFECTIVE_PERMISSIONS, GrantedPermission, MAX_CHECKS, RolePage, UserGrants,
    input, placeholder, placeholders,
};
use crate::entity::{permission, role, role_permission, user_role};

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
}
