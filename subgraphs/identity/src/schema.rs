//! The identity subgraph's GraphQL types and resolvers. Resolvers check access, call
//! [`Identity`], and map its errors.

use std::sync::Arc;

use async_graphql::{
    Context, EmptySubscription, Enum, ID, InputObject, Object, Schema, SimpleObject,
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
};
use uuid::Uuid;

use crate::{
    entity::user,
    permissions,
    service::{AccountStatus, Identity, Registration, UserQuery},
};

pub type IdentitySchema = Schema<Query, Mutation, EmptySubscription>;

/// What one document may ask of this subgraph, from the router or from anyone who reaches it
/// directly: field nesting, and fields (async-graphql's complexity: one per field), aliases
/// and directives with fragments inlined.
pub const LIMITS: Limits = Limits {
    max_depth: 16,
    max_fields: 2_000,
    max_aliases: 2_000,
    max_directives: 200,
};

pub fn build_schema(identity: Arc<Identity>) -> IdentitySchema {
    graphql::subgraph_schema(Query, Mutation, &LIMITS)
        .data(identity)
        .finish()
}

/// The SDL this subgraph serves as `_service { sdl }` (committed as `schema/identity.graphql`).
pub fn sdl() -> String {
    graphql::subgraph_sdl(Query, Mutation)
}

/// A person who can sign in to applications built on Keygraph.
#[derive(SimpleObject, Clone)]
#[graphql(name = "User")]
pub struct User {
    /// Stable identifier (a UUIDv7).
    pub id: ID,
    /// Email address, as registered (the domain in lower case). Unique regardless of case.
    pub email: String,
    /// Name shown to other people.
    pub display_name: String,
    /// Whether the user has proven they receive mail at `email`.
    pub email_verified: bool,
    /// Whether the account may sign in.
    pub status: UserStatus,
    /// When the account was created (UTC).
    pub created_at: DateTime<Utc>,
    /// When the account last changed (UTC).
    pub updated_at: DateTime<Utc>,
}

impl From<user::Model> for User {
    fn from(m: user::Model) -> Self {
        Self {
            id: ID(m.id.to_string()),
            email: m.email,
            display_name: m.display_name,
            email_verified: m.email_verified,
            status: AccountStatus::parse(&m.status).into(),
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// Whether an account may sign in.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
pub enum UserStatus {
    /// The account works normally.
    Active,
    /// The account may not sign in; its data is kept.
    Disabled,
}

impl From<AccountStatus> for UserStatus {
    fn from(s: AccountStatus) -> Self {
        match s {
            AccountStatus::Active => UserStatus::Active,
            AccountStatus::Disabled => UserStatus::Disabled,
        }
    }
}

impl From<UserStatus> for AccountStatus {
    fn from(s: UserStatus) -> Self {
        match s {
            UserStatus::Active => AccountStatus::Active,
            UserStatus::Disabled => AccountStatus::Disabled,
        }
    }
}

/// A page of users.
#[derive(SimpleObject)]
pub struct UserConnection {
    /// The users of this page, each with its cursor.
    pub edges: Vec<UserEdge>,
    /// Where this page sits in the whole list.
    pub page_info: PageInfo,
    /// How many users match the filter, over all pages.
    pub total_count: u64,
}

/// A user in a page, with the cursor that points at it.
#[derive(SimpleObject)]
pub struct UserEdge {
    /// Pass as `after` to get the users that follow this one.
    pub cursor: String,
    /// The user.
    pub node: User,
}

/// Narrows the list of users.
#[derive(InputObject, Default)]
pub struct UserFilter {
    /// Case-insensitive text found in the email or display name (at most 100 characters).
    pub search: Option<String>,
    /// Only users with this status.
    pub status: Option<UserStatus>,
}

/// A new account.
#[derive(InputObject)]
pub struct RegisterInput {
    /// Email address; a verification link is mailed to it.
    pub email: String,
    /// Password: 8 to 128 characters, not a common or easily guessed one. No other rules.
    pub password: String,
    /// Name shown to other people (at most 100 characters); defaults to the part of the
    /// email before `@`.
    pub display_name: Option<String>,
}

/// Changes to your own profile; fields left out stay as they are.
#[derive(InputObject)]
pub struct UpdateProfileInput {
    /// New display name (1 to 100 characters).
    pub display_name: Option<String>,
}

fn identity<'a>(ctx: &'a Context<'_>) -> &'a Arc<Identity> {
    ctx.data_unchecked::<Arc<Identity>>()
}

pub struct Query;

/// Users and their profiles.
#[Object]
impl Query {
    /// The signed-in user.
    #[graphql(guard = "Authenticated", directive = authenticated::apply())]
    async fn me(&self, ctx: &Context<'_>) -> ApiResult<User> {
        let principal = require_principal(ctx)?;
        identity(ctx)
            .user(principal.user_id)
            .await?
            .map(User::from)
            .ok_or_else(|| ApiError::not_found("your account no longer exists"))
    }

    /// A user by id: yourself, or anyone with `identity.user.read`. Null when there is none.
    #[graphql(guard = "SelfOrPermission::new(&id, permissions::USER_READ)", directive = authenticated::apply())]
    async fn user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user's id.")] id: ID,
    ) -> ApiResult<Option<User>> {
        let id = parse_id("id", "user", &id)?;
        Ok(identity(ctx).user(id).await?.map(User::from))
    }

    /// Users in order of creation, a page at a time (needs `identity.user.read`).
    #[graphql(
        guard = "HasPermission(permissions::USER_READ)",
        requires_scopes = "identity.user.read"
    )]
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many users to return, 0 to 100 (20 when left out).")] first: Option<
            i32,
        >,
        #[graphql(desc = "Return the users after this cursor (from `endCursor` or an edge).")]
        after: Option<String>,
        #[graphql(desc = "Only users matching this filter.")] filter: Option<UserFilter>,
    ) -> ApiResult<UserConnection> {
        let first = page_size(first)?;
        let after = after.as_deref().map(decode_cursor).transpose()?;
        let filter = filter.unwrap_or_default();
        let query = UserQuery {
            search: filter.search,
            status: filter.status.map(Into::into),
        };
        let page = identity(ctx).users(first, after, &query).await?;
        let edges: Vec<UserEdge> = page
            .users
            .into_iter()
            .map(|u| UserEdge {
                cursor: encode_cursor(u.id),
                node: u.into(),
            })
            .collect();
        Ok(UserConnection {
            page_info: PageInfo::new(
                &edges.iter().map(|e| e.cursor.clone()).collect::<Vec<_>>(),
                page.has_next_page,
                after.is_some(),
            ),
            edges,
            total_count: page.total_count,
        })
    }

    /// Resolves `User` references from other subgraphs: yourself, or anyone with
    /// `identity.user.read`.
    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<User>> {
        let Ok(user_id) = Uuid::parse_str(&id) else {
            return Ok(None);
        };
        require_self_or_permission(ctx, user_id, permissions::USER_READ)?;
        Ok(identity(ctx).user(user_id).await?.map(User::from))
    }
}

pub struct Mutation;

/// Registration, mailed links, passwords, profiles and accounts.
#[Object]
impl Mutation {
    /// Creates an account and mails a verification link. Answers `true` for every valid
    /// request, also when the address already has an account (its owner is told by mail),
    /// so the answer never reveals who is registered.
    async fn register(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The new account: email, password and an optional display name.")]
        input: RegisterInput,
    ) -> ApiResult<bool> {
        identity(ctx)
            .register(
                request_meta(ctx),
                Registration {
                    email: input.email,
                    password: input.password,
                    display_name: input.display_name,
                },
            )
            .await?;
        Ok(true)
    }

    /// Mails a new verification link if the address belongs to an unverified account.
    /// Answers `true` for every well-formed address.
    async fn request_email_verification(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The address to verify.")] email: String,
    ) -> ApiResult<bool> {
        identity(ctx)
            .request_email_verification(request_meta(ctx), &email)
            .await?;
        Ok(true)
    }

    /// Confirms an email address with the token from the mailed link (single use).
    async fn verify_email(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The `token` parameter of the mailed link.")] token: String,
    ) -> ApiResult<User> {
        Ok(identity(ctx)
            .verify_email(request_meta(ctx), &token)
            .await?
            .into())
    }

    /// Mails a password reset link if the address belongs to an active account. Answers
    /// `true` for every well-formed address.
    async fn request_password_reset(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The account's email address.")] email: String,
    ) -> ApiResult<bool> {
        identity(ctx)
            .request_password_reset(request_meta(ctx), &email)
            .await?;
        Ok(true)
    }

    /// Sets a new password with the token from the mailed reset link (single use).
    async fn reset_password(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The `token` parameter of the mailed link.")] token: String,
        #[graphql(desc = "The new password: 8 to 128 characters, not a common one.")] new_password: String,
    ) -> ApiResult<bool> {
        identity(ctx)
            .reset_password(request_meta(ctx), &token, new_password)
            .await?;
        Ok(true)
    }

    /// Changes your password; needs the current one, and a recent sign-in (with your second
    /// factor if you have one: otherwise `STEP_UP_REQUIRED`).
    #[graphql(
        guard = "Authenticated",
        directive = authenticated::apply(),
        directive = keygraph_kernel::guard::policy::apply(vec![vec![keygraph_kernel::guard::STEP_UP_POLICY.into()]])
    )]
    async fn change_password(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Your password now.")] current_password: String,
        #[graphql(desc = "The new password: 8 to 128 characters, not a common one.")] new_password: String,
    ) -> ApiResult<bool> {
        let principal = keygraph_kernel::guard::require_step_up(ctx, "changing the password")?;
        identity(ctx)
            .change_password(
                request_meta(ctx),
                principal.user_id,
                Some(principal.session_id),
                current_password,
                new_password,
            )
            .await?;
        Ok(true)
    }

    /// Changes your own profile.
    #[graphql(guard = "Authenticated", directive = authenticated::apply())]
    async fn update_profile(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What changes; fields left out stay as they are.")]
        input: UpdateProfileInput,
    ) -> ApiResult<User> {
        let principal = require_principal(ctx)?;
        Ok(identity(ctx)
            .update_profile(request_meta(ctx), principal.user_id, input.display_name)
            .await?
            .into())
    }

    /// Enables or disables an account (needs `identity.user.update`).
    #[graphql(
        guard = "HasPermission(permissions::USER_UPDATE)",
        requires_scopes = "identity.user.update"
    )]
    async fn set_user_status(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user to enable or disable.")] id: ID,
        #[graphql(desc = "`ACTIVE` or `DISABLED`; disabling ends their sessions.")]
        status: UserStatus,
    ) -> ApiResult<User> {
        let actor = require_principal(ctx)?;
        let id = parse_id("id", "user", &id)?;
        Ok(identity(ctx)
            .set_status(request_meta(ctx), actor, id, status.into())
            .await?
            .into())
    }

    /// Deletes an account and everything identity holds about it (needs
    /// `identity.user.delete`). Returns the deleted user's id.
    #[graphql(
        guard = "HasPermission(permissions::USER_DELETE)",
        requires_scopes = "identity.user.delete"
    )]
    async fn delete_user(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The user to delete.")] id: ID,
    ) -> ApiResult<ID> {
        let actor = require_principal(ctx)?;
        let user_id = parse_id("id", "user", &id)?;
        identity(ctx)
            .delete_user(request_meta(ctx), actor, user_id)
            .await?;
        Ok(id)
    }
}
