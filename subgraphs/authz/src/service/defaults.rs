//! Default roles (`authz.default_roles`): roles every account holds without an assignment, as
//! Keycloak's default roles. They are resolved once at start-up, and every look-up of what a
//! user holds reads them in through [`Binds`] and `Authz::held_roles`.

use sea_orm::{DbBackend, Statement, Value};
use uuid::Uuid;

use super::{Authz, AuthzError, AuthzResult, placeholder};

/// A role named in `authz.default_roles`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRole {
    pub id: Uuid,
    pub name: String,
}

/// The bind parameters of one raw statement, numbered in the order they are added, so a
/// statement can be assembled from parts (its text must name them in the same order).
pub(super) struct Binds {
    backend: DbBackend,
    values: Vec<Value>,
}

impl Binds {
    pub(super) fn new(backend: DbBackend) -> Self {
        Self {
            backend,
            values: Vec::new(),
        }
    }

    /// Placeholders for `values`, comma-separated.
    pub(super) fn list(&mut self, values: impl IntoIterator<Item = Uuid>) -> String {
        let mut placeholders = Vec::new();
        for value in values {
            self.values.push(value.into());
            placeholders.push(placeholder(self.backend, self.values.len()));
        }
        placeholders.join(", ")
    }

    pub(super) fn statement(self, sql: String) -> Statement {
        Statement::from_sql_and_values(self.backend, sql, self.values)
    }
}

impl Authz {
    /// Resolves `authz.default_roles` at start-up. Every name must be an existing role that
    /// does not grant `*` (which would make every account an administrator).
    pub async fn with_default_roles(mut self, names: &[String]) -> AuthzResult<Self> {
        let mut roles = Vec::with_capacity(names.len());
        for name in names {
            let role = self.role_by_name(name).await?.ok_or_else(|| {
                AuthzError::Misconfigured(format!(
                    "setting `authz.default_roles`: there is no role named `{name}`; create it first, or take it out of `authz.default_roles`"
                ))
            })?;
            if self.grants_of_role(role.id).await?.iter().any(|g| g == "*") {
                return Err(AuthzError::Misconfigured(format!(
                    "setting `authz.default_roles`: the role `{name}` grants `*`, which would make every account an administrator; name roles that do not grant `*`"
                )));
            }
            roles.push(DefaultRole {
                id: role.id,
                name: role.name,
            });
        }
        self.default_roles = roles;
        Ok(self)
    }

    /// The roles every account holds (`authz.default_roles`), as resolved at start-up.
    pub fn default_roles(&self) -> &[DefaultRole] {
        &self.default_roles
    }

    /// Whether every account holds `role` through `authz.default_roles`.
    pub fn is_default_role(&self, role: Uuid) -> bool {
        self.default_roles.iter().any(|d| d.id == role)
    }

    /// A derived table of `(user_id, role_id)`: the roles `users` (at least one) are assigned,
    /// then each default role once with a NULL `user_id`, meaning every user holds it.
    pub(super) fn held_roles(&self, binds: &mut Binds, users: &[Uuid]) -> String {
        let assigned = format!(
            "SELECT user_id, role_id FROM user_roles WHERE user_id IN ({})",
            binds.list(users.iter().copied())
        );
        if self.default_roles.is_empty() {
            return format!("({assigned})");
        }
        format!(
            "({assigned} UNION ALL SELECT NULL AS user_id, id AS role_id FROM roles WHERE id IN ({}))",
            binds.list(self.default_roles.iter().map(|d| d.id))
        )
    }
}
