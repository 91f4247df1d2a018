//! The authz subgraph's GraphQL types and resolvers: they check access, call [`Authz`], and
//! map errors. Nested look-ups go through the request's [`Loaders`].

use std::sync::Arc;

use async_graphql::{
    ComplexObject, Context, EmptySubscription, ID, InputObject, Object, Schema, SimpleObject,
};
use chrono::{DateTime, Utc};
use keygraph_kernel::{
    ApiError, ApiResult,
    graphql::{self, parse_id, request_meta},
    guard::{
        Authenticated, HasPermission, SelfOrPermission, authenticated, require_principal,
        require_self_or_permission,
    },
    limits::Limits,
    pagination::{PageInfo, decode_cursor, encode_cursor, page_size},
    permissions::authz as codes,
};
use uuid::Uuid;

use crate::{
    entity::{permission, role},
    loaders::Loaders,
    service::{Authz, GrantedPermission},
};

pub type AuthzSchema = Schema<Query, Mutation, EmptySubscription>;

/// What one document may ask of this subgraph, from the router or from anyone who reaches it
/// directly: field nesting, and fields (async-graphql's complexity: one per field), aliases
/// and directives with fragments inlined.
pub const LIMITS: Limits = Limits {
    max_depth: 16,
    max_fields: 5_000,
    max_aliases: 5_000,
    max_directives: 200,
};

pub fn build_schema(authz: Arc<Authz>) -> AuthzSchema {
    graphql::subgraph_schema(Query, Mutation, &LIMITS)
        .data(authz)
        .finish()
}

/// The SDL this subgraph serves as `_service { sdl }` (committed as `schema/authz.graphql`).
pub fn sdl() -> String {
    graphql::subgraph_sdl(Query, Mutation)
}

/// A named set of permissions that users are given.
#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Role {
    /// Stable identifier (a UUIDv7).
    pub id: ID,
    /// Unique name: a lowercase letter, then lowercase letters, digits, `_` or `-`.
    pub name: String,
    /// What the role is for.
    pub description: String,
    /// Seeded by Keygraph (`admin`, `user`): cannot be deleted or renamed.
    pub built_in: bool,
    /// When the role was created (UTC).
    pub created_at: DateTime<Utc>,
}

impl From<role::Model> for Role {
    fn from(m: role::Model) -> Self {
        Self {
            id: ID(m.id.to_string()),
            name: m.name,
            description: m.description,
            built_in: m.built_in,
            created_at: m.created_at,
        }
    }
}

#[ComplexObject]
impl Role {
    /// Codes and wildcard grants this role holds, by code.
    async fn permissions(&self, ctx: &Context<'_>) -> ApiResult<Vec<Permission>> {
        let id = parse_id("id", "role", &self.id)?;
        Ok(loaders(ctx)
            .permissions_of_role(id)
            .await?
            .into_iter()
            .map(Permission::from)
            .collect())
    }
}

/// A permission: a `module.resource.action` code some service checks, or a wildcard grant
/// (`identity.user.*`, `*`) standing for every code it covers.
#[derive(SimpleObject, Clone)]
pub struct Permission {
    /// The code, e.g. `identity.user.read`, or a wildcard grant.
    pub code: String,
    /// What the permission allows.
    pub description: String,
    /// The first segment of the code, e.g. `identity`.
    pub module: String,
}

impl From<GrantedPermission> for Permission {
    fn from(p: GrantedPermission) -> Self {
        Self {
            code: p.code,
            description: p.description,
            module: p.module,
        }
    }
}

impl From<permission::Model> for Permission {
    fn from(p: permission::Model) -> Self {
        Self {
            code: p.code,
            description: p.description,
            module: p.module,
        }
    }
}

/// A user, as authz knows them.
pub struct User {
    id: Uuid,
}

/// A user: the roles they hold and what those allow.
#[Object]
impl User {
    /// The user's id.
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }

    /// Roles the user holds, by name (yourself, or with `authz.role.read`).
    async fn roles(&self, ctx: &Context<'_>) -> ApiResult<Vec<Role>> {
        require_self_or_permission(ctx, self.id, codes::ROLE_READ)?;
        Ok(loaders(ctx)
            .roles_of_user(self.id)
            .await?
            .into_iter()
            .map(Role::from)
            .collect())
    }

    /// Every catalog code the user holds through their roles, wildcards expanded, sorted
    /// (yourself, or with `authz.permission.read`).
    async fn permissions(&self, ctx: &Context<'_>) -> ApiResult<Vec<String>> {
        require_self_or_permission(ctx, self.id, codes::PERMISSION_READ)?;
        loaders(ctx).effective_permissions(self.id).await
    }

    /// Whether the user holds `permission` (yourself, or with `authz.permission.read`).
    async fn can(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A code like `identity.user.read`.")] permission: String,
    ) -> ApiResult<bool> {
        require_self_or_permission(ctx, self.id, codes::PERMISSION_READ)?;
        let answer = authz(ctx).check(self.id, &[permission]).await?;
        Ok(answer.first().is_some_and(|(_, granted)| *granted))
    }
}

/// The answer for one code of `checkPermissions`.
#[derive(SimpleObject)]
pub struct PermissionCheck {
    /// The code asked about.
    pub code: String,
    /// Whether the user holds it.
    pub granted: bool,
}

/// A page of roles.
#[derive(SimpleObject)]
pub struct RoleConnection {
    /// The roles of this page, each with its cursor.
    pub edges: Vec<RoleEdge>,
    /// Where this page sits in the whole list.
    pub page_info: PageInfo,
    /// How many roles there are.
    pub total_count: u64,
}

/// A role in a page, with the cursor that points at it.
#[derive(SimpleObject)]
pub struct RoleEdge {
    /// Pass as `after` to get the roles that follow this one.
    pub cursor: String,
    /// The role.
    pub node: Role,
}

/// A new role.
#[derive(InputObject)]
pub struct CreateRoleInput {
    /// Unique name: a lowercase letter, then lowercase letters, digits, `_` or `-` (at most 64).
    pub name: String,
    /// What the role is for (at most 500 characters).
    pub description: Option<String>,
}

/// Changes to a role; fields left out stay as they are.
#[derive(InputObject)]
pub struct UpdateRoleInput {
    /// New name (built-in roles keep theirs).
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
}

/// A permission for the catalog.
#[derive(InputObject)]
pub struct DefinePermissionInput {
    /// `module.resource.action`: lowercase segments of letters, digits and `_`.
    pub code: String,
    /// What the permission allows (at most 500 characters).
    pub description: String,
}

fn authz<'a>(ctx: &'a Context<'_>) -> &'a Arc<Authz> {
    ctx.data_unchecked::<Arc<Authz>>()
}

fn loaders<'a>(ctx: &'a Context<'_>) -> &'a Loaders {
    ctx.data_unchecked::<Loaders>()
}

pub struct Query;

/// Roles, permissions and what users may do.
#[Object]
impl Query {
    /// Roles in order of creation, a page at a time (needs `authz.role.read`).
    #[graphql(
        guard = "HasPermission(codes::ROLE_READ)",
        requires_scopes = "authz.role.read"
    )]
    async fn roles(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many roles to return, 0 to 100 (20 when left out).")] first: Option<
            i32,
        >,
        #[graphql(desc = "Return the roles after this cursor.")] after: Option<String>,
    ) -> ApiResult<RoleConnection> {
        let first = page_size(first)?;
        let after = after.as_deref().map(decode_cursor).transpose()?;
        let page = authz(ctx).roles(first, after).await?;
        let edges: Vec<RoleEdge> = page
            .roles
            .into_iter()
            .map(|r| RoleEdge {
                cursor: encode_cursor(r.id),
                node: r.into(),
            })
            .collect();
        Ok(RoleConnection {
            page_info: PageInfo::new(
                &edges.iter().map(|e| e.cursor.clone()).collect::<Vec<_>>(),
                page.has_next_page,
                after.is_some(),
            ),
            edges,
            total_count: page.total_count,
        })
    }

    /// A role by id (needs `authz.role.read`). Null when there is none.
    #[graphql(
        guard = "HasPermission(codes::ROLE_READ)",
        requires_scopes = "authz.role.read"
    )]
    async fn role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The role's id.")] id: ID,
    ) -> ApiResult<Option<Role>> {
        let id = parse_id("id", "role", &id)?;
        Ok(authz(ctx).role(id).await?.map(Role::from))
    }

    /// A role by name (needs `authz.role.read`). Null when there is none.
    #[graphql(
        guard = "HasPermission(codes::ROLE_READ)",
        requires_scopes = "authz.role.read"
    )]
    async fn role_by_name(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The role's name (exact).")] name: String,
    ) -> ApiResult<Option<Role>> {
        Ok(authz(ctx).role_by_name(&name).await?.map(Role::from))
    }

    /// The permission catalog, by code (needs `authz.permission.read`).
    #[graphql(
        guard = "HasPermission(codes::PERMISSION_READ)",
        requires_scopes = "authz.permission.read"
    )]
    async fn permissions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only codes of this module, e.g. `identity`.")] module: Option<String>,
    ) -> ApiResult<Vec<Permission>> {
        Ok(authz(ctx)
            .permissions(module.as_deref())
            .await?
            .into_iter()
            .map(Permission::from)
            .collect())
    }

    /// For each code, whether the user holds it (yourself, or with `authz.permission.read`).
    /// At most 100 codes.
    #[graphql(guard = "SelfOrPermission::new(&user_id, codes::PERMISSION_READ)", directive = authenticated::apply())]
    async fn check_permissions(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user whose current grants are checked.")] user_id: ID,
        #[graphql(desc = "The permission codes to check, each answered on its own.")] codes: Vec<
            String,
        >,
    ) -> ApiResult<Vec<PermissionCheck>> {
        let user = parse_id("userId", "user", &user_id)?;
        Ok(authz(ctx)
            .check(user, &codes)
            .await?
            .into_iter()
            .map(|(code, granted)| PermissionCheck { code, granted })
            .collect())
    }

    /// Every catalog code you hold now (from the current grants, not from your token).
    #[graphql(guard = "Authenticated", directive = authenticated::apply())]
    async fn my_permissions(&self, ctx: &Context<'_>) -> ApiResult<Vec<String>> {
        let me = require_principal(ctx)?.user_id;
        loaders(ctx).effective_permissions(me).await
    }

    /// Resolves `Role` references (needs `authz.role.read`).
    #[graphql(entity)]
    async fn find_role_by_id(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<Role>> {
        let principal = require_principal(ctx)?;
        if !principal.has_permission(codes::ROLE_READ) {
            return Err(ApiError::forbidden(format!(
                "this needs the permission `{}`",
                codes::ROLE_READ
            )));
        }
        let Ok(id) = Uuid::parse_str(&id) else {
            return Ok(None);
        };
        Ok(authz(ctx).role(id).await?.map(Role::from))
    }

    /// Resolves `User` references: yourself, or anyone with `authz.role.read` or
    /// `authz.permission.read` (each field checks its own).
    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<User>> {
        let principal = require_principal(ctx)?;
        let Ok(id) = Uuid::parse_str(&id) else {
            return Ok(None);
        };
        let allowed = principal.user_id == id
            || principal.has_permission(codes::ROLE_READ)
            || principal.has_permission(codes::PERMISSION_READ);
        if !allowed {
            return Err(ApiError::forbidden(format!(
                "only the user themself or a holder of `{}` or `{}` may read this",
                codes::ROLE_READ,
                codes::PERMISSION_READ
            )));
        }
        Ok(Some(User { id }))
    }
}

pub struct Mutation;

/// Changes to roles, permissions and who holds them.
#[Object]
impl Mutation {
    /// Creates a role without permissions (needs `authz.role.create`).
    #[graphql(
        guard = "HasPermission(codes::ROLE_CREATE)",
        requires_scopes = "authz.role.create"
    )]
    async fn create_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new role.")] input: CreateRoleInput,
    ) -> ApiResult<Role> {
        let actor = require_principal(ctx)?.user_id;
        Ok(authz(ctx)
            .create_role(
                request_meta(ctx),
                actor,
                &input.name,
                input.description.as_deref(),
            )
            .await?
            .into())
    }

    /// Renames or describes a role (needs `authz.role.update`).
    #[graphql(
        guard = "HasPermission(codes::ROLE_UPDATE)",
        requires_scopes = "authz.role.update"
    )]
    async fn update_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The role to change.")] id: ID,
        #[graphql(desc = "What changes; fields left out stay as they are.")] input: UpdateRoleInput,
    ) -> ApiResult<Role> {
        let actor = require_principal(ctx)?.user_id;
        let id = parse_id("id", "role", &id)?;
        Ok(authz(ctx)
            .update_role(
                request_meta(ctx),
                actor,
                id,
                input.name.as_deref(),
                input.description.as_deref(),
            )
            .await?
            .into())
    }

    /// Deletes a role and all its grants (needs `authz.role.delete` and everything the role
    /// grants); built-in and default roles stay.
    /// Returns the deleted role's id.
    #[graphql(
        guard = "HasPermission(codes::ROLE_DELETE)",
        requires_scopes = "authz.role.delete"
    )]
    async fn delete_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The role to delete.")] id: ID,
    ) -> ApiResult<ID> {
        let actor = require_principal(ctx)?;
        let role = parse_id("id", "role", &id)?;
        authz(ctx)
            .delete_role(request_meta(ctx), actor, role)
            .await?;
        Ok(id)
    }

    /// Adds a code to the permission catalog, or updates its description (needs
    /// `authz.permission.define`). Defining it again as it is changes nothing.
    #[graphql(
        guard = "HasPermission(codes::PERMISSION_DEFINE)",
        requires_scopes = "authz.permission.define"
    )]
    async fn define_permission(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new permission code and what it allows.")]
        input: DefinePermissionInput,
    ) -> ApiResult<Permission> {
        let actor = require_principal(ctx)?.user_id;
        Ok(authz(ctx)
            .define_permission(request_meta(ctx), actor, &input.code, &input.description)
            .await?
            .into())
    }

    /// Grants a catalog code or a wildcard (`identity.user.*`, `*`) to a role (needs
    /// `authz.role.grant`, and you must hold what you grant). A repeat changes nothing.
    #[graphql(
        guard = "HasPermission(codes::ROLE_GRANT)",
        requires_scopes = "authz.role.grant"
    )]
    async fn grant_permission(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The role that gets the permission.")] role_id: ID,
        #[graphql(
            desc = "A catalog code, or a wildcard covering catalog codes (`identity.user.*`, `*`)."
        )]
        code: String,
    ) -> ApiResult<Role> {
        let principal = require_principal(ctx)?;
        let role = parse_id("roleId", "role", &role_id)?;
        Ok(authz(ctx)
            .grant_permission(request_meta(ctx), principal, role, &code)
            .await?
            .into())
    }

    /// Takes a code or wildcard away from a role (needs `authz.role.grant`, and you must
    /// hold what you take away). Revoking what the role does not hold changes nothing.
    #[graphql(
        guard = "HasPermission(codes::ROLE_GRANT)",
        requires_scopes = "authz.role.grant"
    )]
    async fn revoke_permission(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The role that loses the permission.")] role_id: ID,
        #[graphql(desc = "The code (or wildcard) as it was granted.")] code: String,
    ) -> ApiResult<Role> {
        let actor = require_principal(ctx)?;
        let role = parse_id("roleId", "role", &role_id)?;
        Ok(authz(ctx)
            .revoke_permission(request_meta(ctx), actor, role, &code)
            .await?
            .into())
    }

    /// Gives a user a role (needs `authz.role.assign`, and you must hold everything the role
    /// grants). The user must exist in identity. Assigning it again, or assigning a default
    /// role (every account holds those: `authz.default_roles`), changes nothing.
    #[graphql(
        guard = "HasPermission(codes::ROLE_ASSIGN)",
        requires_scopes = "authz.role.assign"
    )]
    async fn assign_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user who gets the role.")] user_id: ID,
        #[graphql(desc = "The role to assign.")] role_id: ID,
    ) -> ApiResult<User> {
        let principal = require_principal(ctx)?;
        let user = parse_id("userId", "user", &user_id)?;
        let role = parse_id("roleId", "role", &role_id)?;
        authz(ctx)
            .assign_role(request_meta(ctx), principal, user, role)
            .await?;
        Ok(User { id: user })
    }

    /// Takes a role from a user (needs `authz.role.assign`, everything the role grants, and
    /// everything the user holds). The last active administrator keeps theirs. Unassigning a
    /// role the user does not hold changes nothing; a default role (`authz.default_roles`)
    /// cannot be taken from anyone.
    #[graphql(
        guard = "HasPermission(codes::ROLE_ASSIGN)",
        requires_scopes = "authz.role.assign"
    )]
    async fn unassign_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user who loses the role.")] user_id: ID,
        #[graphql(desc = "The role to take away.")] role_id: ID,
    ) -> ApiResult<User> {
        let actor = require_principal(ctx)?;
        let user = parse_id("userId", "user", &user_id)?;
        let role = parse_id("roleId", "role", &role_id)?;
        authz(ctx)
            .unassign_role(request_meta(ctx), actor, user, role)
            .await?;
        Ok(User { id: user })
    }
}
