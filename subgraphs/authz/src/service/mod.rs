//! Authz rules: roles, the permission catalog, grants and checks. No GraphQL types here.
//!
//! This module holds the service type, its error type and the helpers its parts share; the
//! parts are split by responsibility: `reading` (roles, permissions, grants, checks),
//! `roles` (creating, changing and deleting roles), `grants` (the catalog and what roles
//! grant), `assignments` (who holds which role), `users` (a deleted user's grants),
//! `authority` (who may change what, and the last administrator) and `defaults` (the roles
//! every account holds, `authz.default_roles`).
//!
//! The batch look-ups (`*_of_*`) take many keys and run one SQL statement each, so the
//! DataLoaders in `loaders.rs` answer a whole level of a query with one statement.

mod assignments;
mod authority;
mod defaults;
mod grants;
mod reading;
mod roles;
mod users;

use std::collections::BTreeSet;

use chrono::Utc;
use keygraph_kernel::{
    ApiError,
    db::is_unique_violation,
    internal::{InternalCallError, InternalClient},
    permissions::{CATALOG, module_of},
};
use keygraph_migrations::authz::ADMIN_ROLE;
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, Set,
};
use uuid::Uuid;

use crate::entity::{permission, role};

pub use defaults::DefaultRole;

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
    /// A setting that does not fit the database (found at start-up).
    #[error("{0}")]
    Misconfigured(String),
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
            AuthzError::Misconfigured(m) => ApiError::internal(m),
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
    /// Roles every account holds without an assignment (`authz.default_roles`).
    default_roles: Vec<DefaultRole>,
}

impl Authz {
    /// A service without default roles; [`Authz::with_default_roles`] gives it some.
    pub fn new(db: DatabaseConnection, identity: InternalClient) -> Self {
        Self {
            db,
            identity,
            default_roles: Vec::new(),
        }
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
}

/// `JOIN …` from the roles a user holds (`h`, see `Authz::held_roles`) to every permission
/// (`p`) they cover. A grant covers a code when equal, or when it ends in `*` and the code
/// starts with everything before the `*` (`*` alone covers all). substr/length work on both
/// backends.
const COVERED_PERMISSIONS: &str = "JOIN role_permissions rp ON rp.role_id = h.role_id \
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
