//! Who may call what: the request's authentication state and async-graphql guards on it.

use async_graphql::{Context, Guard, ID};
use uuid::Uuid;

use crate::{
    error::ApiError,
    token::{Principal, TokenError},
};

/// What the request's `Authorization` header proved.
#[derive(Debug, Clone)]
pub enum Authentication {
    /// No token was sent.
    Anonymous,
    /// A token was sent and refused.
    Invalid(TokenError),
    Authenticated(Principal),
}

impl Authentication {
    pub fn principal(&self) -> Option<&Principal> {
        match self {
            Authentication::Authenticated(p) => Some(p),
            _ => None,
        }
    }
}

/// What a guard answers a caller who sent no token.
pub const NEEDS_TOKEN: &str =
    "this operation needs an access token (Authorization: Bearer <token>)";

/// The caller's principal, or UNAUTHENTICATED saying why there is none.
pub fn require_principal<'a>(ctx: &'a Context<'_>) -> Result<&'a Principal, ApiError> {
    match ctx.data_opt::<Authentication>() {
        Some(Authentication::Authenticated(p)) => Ok(p),
        Some(Authentication::Invalid(reason)) => Err(ApiError::unauthenticated(reason.to_string())),
        Some(Authentication::Anonymous) | None => Err(ApiError::unauthenticated(NEEDS_TOKEN)),
    }
}

/// The caller holds `code` (directly or through a wildcard).
pub fn require_permission<'a>(ctx: &'a Context<'_>, code: &str) -> Result<&'a Principal, ApiError> {
    let principal = require_principal(ctx)?;
    if principal.has_permission(code) {
        Ok(principal)
    } else {
        Err(ApiError::forbidden(format!(
            "this needs the permission `{code}`"
        )))
    }
}

/// The caller signed in (or stepped up) recently, with their second factor when they have
/// one; otherwise STEP_UP_REQUIRED naming `what`.
pub fn require_step_up<'a>(ctx: &'a Context<'_>, what: &str) -> Result<&'a Principal, ApiError> {
    let principal = require_principal(ctx)?;
    if principal.stepped_up() {
        Ok(principal)
    } else {
        Err(ApiError::step_up_required(what))
    }
}

/// The caller is `user_id` or holds `code`.
pub fn require_self_or_permission<'a>(
    ctx: &'a Context<'_>,
    user_id: Uuid,
    code: &str,
) -> Result<&'a Principal, ApiError> {
    let principal = require_principal(ctx)?;
    if principal.user_id == user_id || principal.has_permission(code) {
        Ok(principal)
    } else {
        Err(ApiError::forbidden(format!(
            "only the user themself or a holder of `{code}` may do this"
        )))
    }
}

/// Apollo Federation's `@authenticated`, for fields whose guard wants a signed-in caller, so
/// the router refuses before any subgraph is called. Spelled qualified by the federation
/// link's namespace (`@federation__authenticated`, which composition reads as
/// `@authenticated`) because async-graphql's federation `@link` does not import it.
/// Apply it with [`Authenticated`]'s guard: `directive = authenticated::apply()`.
#[async_graphql::TypeDirective(name = "federation__authenticated", location = "FieldDefinition")]
pub fn authenticated() {}

/// The `@policy` name of a recent multi-factor sign-in: the router refuses a field carrying
/// `@policy(policies: [["step_up"]])` with STEP_UP_REQUIRED unless the caller
/// [`require_step_up`] would pass, before any subgraph is called.
pub const STEP_UP_POLICY: &str = "step_up";

/// Apollo Federation's `@policy`: the field needs one of the groups of policies, all of a
/// group. Keygraph's router evaluates `step_up` (a recent sign-in with the second factor)
/// and refuses a field whose policies it does not know.
// Qualified like `authenticated`; in Rust, apply it as
// `directive = policy::apply(vec![vec![STEP_UP_POLICY.into()]])`, beside the resolver's own
// `require_step_up` (a direct call to the subgraph meets that one).
#[async_graphql::TypeDirective(name = "federation__policy", location = "FieldDefinition")]
pub fn policy(policies: Vec<Vec<String>>) {}

/// Guard: any valid access token.
pub struct Authenticated;

impl Guard for Authenticated {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        require_principal(ctx).map(|_| ()).map_err(Into::into)
    }
}

/// Guard: a token whose scope covers the permission code (wildcards apply).
pub struct HasPermission(pub &'static str);

impl Guard for HasPermission {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        require_permission(ctx, self.0)
            .map(|_| ())
            .map_err(Into::into)
    }
}

/// Guard: the token's user is the one named by the argument, or holds the permission.
pub struct SelfOrPermission {
    user_id: Option<Uuid>,
    code: &'static str,
}

impl SelfOrPermission {
    /// `id` is the argument naming the user; an id that is not a UUID is nobody's self.
    pub fn new(id: &ID, code: &'static str) -> Self {
        Self {
            user_id: Uuid::parse_str(id).ok(),
            code,
        }
    }
}

impl Guard for SelfOrPermission {
    async fn check(&self, ctx: &Context<'_>) -> async_graphql::Result<()> {
        let principal = require_principal(ctx)?;
        if self.user_id == Some(principal.user_id) || principal.has_permission(self.code) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "only the user themself or a holder of `{}` may do this",
                self.code
            ))
            .into())
        }
    }
}
