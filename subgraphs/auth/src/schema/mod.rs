//! The auth subgraph's GraphQL types and resolvers: they check access, call [`Auth`], and map
//! errors. Sign-in, sessions and keys are here; second factors in [`factors`].

mod factors;

use std::sync::Arc;

use async_graphql::{
    Context, EmptySubscription, ID, MergedObject, Object, Schema, SimpleObject, Union,
};
use chrono::{DateTime, Utc};
use keygraph_kernel::{
    ApiResult,
    graphql::{self, parse_id, request_meta},
    guard::{Authenticated, HasPermission, authenticated, require_principal},
    limits::Limits,
    permissions::auth as codes,
    token::{ISSUED_TOKENS_HEADER, IssuedTokens},
};

use crate::{
    entity::session,
    service::{Auth, SignIn, Tokens},
};

pub type AuthSchema = Schema<Query, Mutation, EmptySubscription>;

/// Every query of the subgraph.
#[derive(MergedObject, Default)]
pub struct Query(SessionQuery, factors::FactorQuery);

/// Every mutation of the subgraph.
#[derive(MergedObject, Default)]
pub struct Mutation(SessionMutation, factors::FactorMutation);

/// What one document may ask of this subgraph, from the router or from anyone who reaches it
/// directly: field nesting, and fields (async-graphql's complexity: one per field), aliases
/// and directives with fragments inlined.
pub const LIMITS: Limits = Limits {
    max_depth: 8,
    max_fields: 500,
    max_aliases: 500,
    max_directives: 200,
};

pub fn build_schema(auth: Arc<Auth>) -> AuthSchema {
    graphql::subgraph_schema(Query::default(), Mutation::default(), &LIMITS)
        .data(auth)
        .finish()
}

/// The SDL this subgraph serves as `_service { sdl }` (committed as `schema/auth.graphql`).
pub fn sdl() -> String {
    graphql::subgraph_sdl(Query::default(), Mutation::default())
}

fn auth<'a>(ctx: &'a Context<'_>) -> &'a Arc<Auth> {
    ctx.data_unchecked::<Arc<Auth>>()
}

/// A user, referenced by id (identity holds the profile).
#[derive(SimpleObject, Clone)]
#[graphql(unresolvable = "id")]
pub struct User {
    /// The user's id.
    pub id: ID,
}

/// What signing in or refreshing hands out.
#[derive(SimpleObject)]
pub struct AuthPayload {
    /// Send as `Authorization: Bearer <accessToken>`; valid until `expiresAt`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds the access token is valid for.
    pub expires_in: u64,
    /// When the access token expires (UTC).
    pub expires_at: DateTime<Utc>,
    /// Exchange with `refresh` for a new pair; single use. Keep it secret.
    pub refresh_token: String,
    /// The session this sign-in opened.
    pub session_id: ID,
    /// The signed-in user.
    pub user: User,
    /// Set only when this sign-in added your first second factor: your recovery codes,
    /// shown this once. Each signs in once in place of a code; store them safely.
    pub recovery_codes: Option<Vec<String>>,
}

/// What `login` answers: the tokens, or a challenge when a second factor is due.
#[derive(Union)]
pub enum LoginResult {
    /// Signed in.
    Signed(AuthPayload),
    /// The password was right; complete the sign-in with `completeLogin`.
    SecondFactor(factors::SecondFactorChallenge),
}

/// Names the issued tokens in a response header for the router (see [`ISSUED_TOKENS_HEADER`]).
pub(crate) fn announce(ctx: &Context<'_>, tokens: Tokens) -> AuthPayload {
    let issued = IssuedTokens {
        access: tokens.access_token.clone(),
        refresh: tokens.refresh_token.clone(),
    };
    ctx.insert_http_header(ISSUED_TOKENS_HEADER, issued.header_value());
    tokens.into()
}

impl From<Tokens> for AuthPayload {
    fn from(t: Tokens) -> Self {
        Self {
            access_token: t.access_token,
            token_type: "Bearer".into(),
            expires_in: t.expires_in,
            expires_at: t.expires_at,
            refresh_token: t.refresh_token,
            session_id: ID(t.session_id.to_string()),
            user: User {
                id: ID(t.user_id.to_string()),
            },
            recovery_codes: t.recovery_codes,
        }
    }
}

/// A signed-in session: one login and the refreshes that followed it.
#[derive(SimpleObject)]
pub struct Session {
    /// The session's id (the `sid` claim of its access tokens).
    pub id: ID,
    /// When the user signed in.
    pub created_at: DateTime<Utc>,
    /// When its refresh token was last exchanged.
    pub last_used_at: DateTime<Utc>,
    /// When it ends at the latest, however it is used.
    pub expires_at: DateTime<Utc>,
    /// The address it signed in from.
    pub client_address: Option<String>,
    /// The browser or app it signed in with.
    pub user_agent: Option<String>,
    /// Whether this is the session of the token making this request.
    pub current: bool,
}

/// A key that signs access tokens.
#[derive(SimpleObject)]
pub struct SigningKeyInfo {
    /// The key id (`kid` header of the tokens it signs).
    pub kid: String,
}

#[derive(Default)]
pub struct SessionQuery;

#[Object]
impl SessionQuery {
    /// Your sessions that have not ended, newest first.
    #[graphql(guard = "Authenticated", directive = authenticated::apply())]
    async fn sessions(&self, ctx: &Context<'_>) -> ApiResult<Vec<Session>> {
        let principal = require_principal(ctx)?;
        Ok(auth(ctx)
            .sessions(principal.user_id)
            .await?
            .into_iter()
            .map(|s: session::Model| Session {
                current: s.id == principal.session_id,
                id: ID(s.id.to_string()),
                created_at: s.created_at,
                last_used_at: s.last_used_at,
                expires_at: s.expires_at,
                client_address: s.client_addr,
                user_agent: s.user_agent,
            })
            .collect())
    }
}

#[derive(Default)]
pub struct SessionMutation;

#[Object]
impl SessionMutation {
    /// Signs in. Fails with one message for an unknown email, a wrong password and a disabled
    /// account; repeated failures are slowed down (`RATE_LIMITED` says how long to wait).
    /// With a second factor (or a role that requires one) the answer is a
    /// `SecondFactorChallenge` to complete with `completeLogin`, not tokens.
    async fn login(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The account's email address (case does not matter).")] email: String,
        #[graphql(desc = "The account's password.")] password: String,
    ) -> ApiResult<LoginResult> {
        match auth(ctx)
            .login(request_meta(ctx), &email, &password)
            .await?
        {
            SignIn::Tokens(tokens) => Ok(LoginResult::Signed(announce(ctx, tokens))),
            SignIn::SecondFactor(challenge) => Ok(LoginResult::SecondFactor(challenge.into())),
        }
    }

    /// Exchanges a refresh token for a new access and refresh token (the old one is spent).
    /// Presenting a spent refresh token again ends its session.
    async fn refresh(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The refresh token last handed out for the session.")]
        refresh_token: String,
    ) -> ApiResult<AuthPayload> {
        let tokens = auth(ctx).refresh(request_meta(ctx), &refresh_token).await?;
        Ok(announce(ctx, tokens))
    }

    /// Ends the session of the token making this request.
    #[graphql(guard = "Authenticated", directive = authenticated::apply())]
    async fn logout(&self, ctx: &Context<'_>) -> ApiResult<bool> {
        let principal = require_principal(ctx)?;
        auth(ctx)
            .revoke_session(
                request_meta(ctx),
                principal.user_id,
                principal.session_id,
                false,
                "logout",
            )
            .await?;
        Ok(true)
    }

    /// Ends every session of yours, this one included. Returns how many ended.
    #[graphql(guard = "Authenticated", directive = authenticated::apply())]
    async fn logout_all(&self, ctx: &Context<'_>) -> ApiResult<u64> {
        let principal = require_principal(ctx)?;
        Ok(auth(ctx)
            .revoke_user_sessions(
                request_meta(ctx),
                principal.user_id,
                None,
                "logout all",
                Some(principal.user_id),
            )
            .await?)
    }

    /// Ends a session: one of yours, or anyone's with `auth.session.revoke`.
    #[graphql(guard = "Authenticated", directive = authenticated::apply())]
    async fn revoke_session(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The session to end (`Session.id`).")] id: ID,
    ) -> ApiResult<bool> {
        let principal = require_principal(ctx)?;
        let session = parse_id("id", "session", &id)?;
        auth(ctx)
            .revoke_session(
                request_meta(ctx),
                principal.user_id,
                session,
                principal.has_permission(codes::SESSION_REVOKE),
                "revoked",
            )
            .await?;
        Ok(true)
    }

    /// Rotates the signing key (needs `auth.key.rotate`): the published next key starts
    /// signing, the current one keeps verifying its tokens until they expire.
    #[graphql(
        guard = "HasPermission(codes::KEY_ROTATE)",
        requires_scopes = "auth.key.rotate"
    )]
    async fn rotate_signing_key(&self, ctx: &Context<'_>) -> ApiResult<SigningKeyInfo> {
        let principal = require_principal(ctx)?;
        let kid = auth(ctx)
            .rotate_signing_key(request_meta(ctx), principal.user_id)
            .await?;
        Ok(SigningKeyInfo { kid })
    }
}
