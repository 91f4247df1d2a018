//! The audit subgraph's GraphQL types and resolvers: they check access, call [`Audit`], and
//! map errors.
//!
//! This module holds the schema, its root `Query` and `Mutation`; the types have files of
//! their own: `events` (events, their filter and pages, and the users who caused them) and
//! `integrity` (signed checkpoints and the outcome of a verification).

mod events;
mod integrity;

use std::sync::Arc;

use async_graphql::{Context, EmptySubscription, ID, Object, Schema};
use keygraph_kernel::{
    ApiError, ApiResult, graphql,
    guard::{Authenticated, HasPermission, authenticated, require_principal},
    limits::Limits,
    pagination::{PageInfo, decode_number_cursor, encode_number_cursor, page_size},
    permissions::audit as codes,
};
use uuid::Uuid;

use crate::service::Audit;
use events::{find_event, list};

pub use events::{
    AuditEvent, AuditEventConnection, AuditEventEdge, AuditEventFilter, AuditOutcome, User,
};
pub use integrity::{
    AuditChainBreak, AuditCheckpoint, AuditCheckpointConnection, AuditCheckpointEdge,
    AuditVerification,
};

pub type AuditSchema = Schema<Query, Mutation, EmptySubscription>;

/// What one document may ask of this subgraph (see the other subgraphs' limits).
pub const LIMITS: Limits = Limits {
    max_depth: 16,
    max_fields: 5_000,
    max_aliases: 5_000,
    max_directives: 200,
};

pub fn build_schema(audit: Arc<Audit>) -> AuditSchema {
    graphql::subgraph_schema(Query, Mutation, &LIMITS)
        .data(audit)
        .finish()
}

/// The SDL this subgraph serves as `_service { sdl }` (committed as `schema/audit.graphql`).
pub fn sdl() -> String {
    graphql::subgraph_sdl(Query, Mutation)
}

fn audit<'a>(ctx: &'a Context<'_>) -> &'a Arc<Audit> {
    ctx.data_unchecked::<Arc<Audit>>()
}

fn check_bound(field: &str, value: Option<i64>) -> ApiResult<Option<i64>> {
    match value {
        Some(n) if n < 1 => Err(ApiError::bad_input(
            field,
            format!("`{field}` is a sequence: 1 or more"),
        )),
        other => Ok(other),
    }
}

pub struct Query;

/// The audit log: events, and whether the chain is intact.
#[Object]
impl Query {
    /// The audit log, newest first. Anyone may list the events they caused (a filter with
    /// `actorId` set to themself); every other list needs `audit.event.read`.
    #[graphql(guard = "Authenticated", directive = authenticated::apply())]
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many events to return, 0 to 100 (20 when left out).")] first: Option<
            i32,
        >,
        #[graphql(desc = "Return the events after (older than) this cursor.")] after: Option<
            String,
        >,
        #[graphql(desc = "Only events matching every field given.")] filter: Option<
            AuditEventFilter,
        >,
    ) -> ApiResult<AuditEventConnection> {
        let principal = require_principal(ctx)?;
        let filter = filter
            .map(AuditEventFilter::parse)
            .transpose()?
            .unwrap_or_default();
        if !principal.has_permission(codes::EVENT_READ)
            && filter.actor_id != Some(principal.user_id)
        {
            return Err(ApiError::forbidden(format!(
                "listing the audit log needs `{}`; without it, set `filter.actorId` to your own id to list your events",
                codes::EVENT_READ
            )));
        }
        list(ctx, filter, first, after).await
    }

    /// An event by id: your own, or any with `audit.event.read`. Null when there is none
    /// you may read.
    #[graphql(guard = "Authenticated", directive = authenticated::apply())]
    async fn audit_event(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The event's id (its `id` field).")] id: ID,
    ) -> ApiResult<Option<AuditEvent>> {
        find_event(ctx, &id).await
    }

    /// The signed checkpoints of the log, newest first (needs `audit.event.read`).
    #[graphql(
        guard = "HasPermission(codes::EVENT_READ)",
        requires_scopes = "audit.event.read"
    )]
    async fn audit_checkpoints(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many checkpoints to return, 0 to 100 (20 when left out).")]
        first: Option<i32>,
        #[graphql(desc = "Return the checkpoints after (older than) this cursor.")] after: Option<
            String,
        >,
    ) -> ApiResult<AuditCheckpointConnection> {
        let first = page_size(first)?;
        let after = after.as_deref().map(decode_number_cursor).transpose()?;
        let page = audit(ctx)
            .checkpoints(first, after)
            .await
            .map_err(ApiError::internal)?;
        let edges: Vec<AuditCheckpointEdge> = page
            .checkpoints
            .into_iter()
            .map(|c| AuditCheckpointEdge {
                cursor: encode_number_cursor(c.sequence),
                node: c.into(),
            })
            .collect();
        Ok(AuditCheckpointConnection {
            page_info: PageInfo::new(
                &edges.iter().map(|e| e.cursor.clone()).collect::<Vec<_>>(),
                page.has_next_page,
                after.is_some(),
            ),
            edges,
            total_count: page.total_count,
        })
    }

    /// Checks the hash chain and the signed checkpoints from `from` to `to` (needs
    /// `audit.event.verify`): whether they hold, and where they first do not.
    #[graphql(
        guard = "HasPermission(codes::EVENT_VERIFY)",
        requires_scopes = "audit.event.verify"
    )]
    async fn verify_audit_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "First sequence to check; the oldest event kept when left out.")]
        from: Option<i64>,
        #[graphql(desc = "Last sequence to check; the newest event when left out.")] to: Option<
            i64,
        >,
    ) -> ApiResult<AuditVerification> {
        let from = check_bound("from", from)?;
        let to = check_bound("to", to)?;
        if let (Some(f), Some(t)) = (from, to)
            && f > t
        {
            return Err(ApiError::bad_input("to", "`to` must not be below `from`"));
        }
        let verification = audit(ctx)
            .verify(from, to)
            .await
            .map_err(ApiError::internal)?;
        Ok(verification.into())
    }

    /// Resolves `AuditEvent` references: your own events, or any with `audit.event.read`;
    /// null for the rest.
    #[graphql(entity)]
    async fn find_audit_event_by_id(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> ApiResult<Option<AuditEvent>> {
        find_event(ctx, &id).await
    }

    /// Resolves `User` references: yourself, or anyone with `audit.event.read`.
    #[graphql(entity)]
    async fn find_user_by_id(&self, ctx: &Context<'_>, id: ID) -> ApiResult<Option<User>> {
        let principal = require_principal(ctx)?;
        let Ok(id) = Uuid::parse_str(&id) else {
            return Ok(None);
        };
        if principal.user_id != id && !principal.has_permission(codes::EVENT_READ) {
            return Err(ApiError::forbidden(format!(
                "only the user themself or a holder of `{}` may read this",
                codes::EVENT_READ
            )));
        }
        Ok(Some(User { id }))
    }
}

pub struct Mutation;

/// Checkpoints of the audit log.
#[Object]
impl Mutation {
    /// Signs a checkpoint of the log's head now (needs `audit.checkpoint.create`); when one
    /// already covers the head, that one is answered.
    #[graphql(
        guard = "HasPermission(codes::CHECKPOINT_CREATE)",
        requires_scopes = "audit.checkpoint.create"
    )]
    async fn create_audit_checkpoint(&self, ctx: &Context<'_>) -> ApiResult<AuditCheckpoint> {
        audit(ctx)
            .checkpoint()
            .await
            .map_err(ApiError::internal)?
            .map(AuditCheckpoint::from)
            .ok_or_else(|| {
                ApiError::conflict("the audit log is empty: there is nothing to sign yet")
            })
    }
}
