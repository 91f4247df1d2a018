//! The audit subgraph's GraphQL types and resolvers: they check access, call [`Audit`], and
//! map errors.

use std::sync::Arc;

use async_graphql::{
    Context, EmptySubscription, Enum, ID, InputObject, Json, Object, Schema, SimpleObject,
};
use chrono::{DateTime, Utc};
use keygraph_kernel::{
    ApiError, ApiResult, graphql,
    guard::{Authenticated, HasPermission, authenticated, require_principal},
    limits::Limits,
    pagination::{PageInfo, decode_number_cursor, encode_number_cursor, page_size},
    permissions::audit as codes,
    token::Principal,
};
use uuid::Uuid;

use crate::{
    chain::{self, BreakKind},
    entity::{checkpoint, event},
    service::{Audit, EventFilter, valid_action},
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

/// How an audited action ended.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum AuditOutcome {
    /// It was done.
    Success,
    /// It was tried and failed (e.g. a wrong password).
    Failure,
    /// It was refused as not allowed (e.g. a reused refresh token).
    Denied,
}

impl AuditOutcome {
    fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Success => "success",
            AuditOutcome::Failure => "failure",
            AuditOutcome::Denied => "denied",
        }
    }

    fn parse(stored: &str) -> Self {
        match stored {
            "failure" => AuditOutcome::Failure,
            "denied" => AuditOutcome::Denied,
            _ => AuditOutcome::Success,
        }
    }
}

/// One entry of the audit log: something a service did or refused, who asked, and where it
/// sits in the log's hash chain.
pub struct AuditEvent(event::Model);

/// One entry of the audit log: something a service did or refused, who asked, and where it
/// sits in the log's hash chain.
#[Object]
impl AuditEvent {
    /// The event's id, given by the service that recorded it (a UUIDv7).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    /// Position in the log: 1 for the first event, then without gaps.
    async fn sequence(&self) -> i64 {
        self.0.sequence
    }

    /// When the change happened, in the service that made it (UTC, microseconds).
    async fn occurred_at(&self) -> DateTime<Utc> {
        self.0.occurred_at
    }

    /// When the audit service stored the event (UTC, microseconds).
    async fn received_at(&self) -> DateTime<Utc> {
        self.0.received_at
    }

    /// The service that recorded it: `identity`, `authz` or `auth`.
    async fn service(&self) -> &str {
        &self.0.service
    }

    /// What happened, `service.resource.verb` (e.g. `identity.user.registered`).
    async fn action(&self) -> &str {
        &self.0.action
    }

    /// The user who acted; null for anonymous callers (e.g. a failed sign-in) and the system.
    async fn actor(&self) -> Option<User> {
        self.0.actor_id.map(|id| User { id })
    }

    /// The kind of thing acted on: `user`, `session`, `role`, `permission`, `account` …
    async fn target_type(&self) -> &str {
        &self.0.target_type
    }

    /// The id of the thing acted on, when it has one.
    async fn target_id(&self) -> Option<&str> {
        self.0.target_id.as_deref()
    }

    /// How it ended.
    async fn outcome(&self) -> AuditOutcome {
        AuditOutcome::parse(&self.0.outcome)
    }

    /// Further facts about the event (never secrets), as a JSON object.
    async fn metadata(&self) -> Json<serde_json::Value> {
        Json(self.0.metadata.clone())
    }

    /// The `x-request-id` of the request that caused it, to find it in the services' logs.
    async fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }

    /// The address of the client that made the request, as the edge saw it.
    async fn client_address(&self) -> Option<&str> {
        self.0.client_address.as_deref()
    }

    /// `hash` of the event before this one (64 zeros for the first): the chain's link.
    async fn previous_hash(&self) -> &str {
        &self.0.previous_hash
    }

    /// SHA-256 (hex) over `previousHash` and the event's canonical encoding
    /// (`keygraph-audit-event-v1`, documented in docs/audit.md).
    async fn hash(&self) -> &str {
        &self.0.hash
    }
}

/// A user, as the audit log knows them: what they did.
pub struct User {
    id: Uuid,
}

/// A user, as the audit log knows them: what they did.
#[Object]
impl User {
    /// The user's id.
    async fn id(&self) -> ID {
        ID(self.id.to_string())
    }

    /// Events this user caused, newest first (yourself, or with `audit.event.read`): a
    /// "recent activity" list.
    async fn audit_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "How many events to return, 0 to 100 (20 when left out).")] first: Option<
            i32,
        >,
        #[graphql(desc = "Return the events after (older than) this cursor.")] after: Option<
            String,
        >,
        #[graphql(desc = "Only events matching every field given (`actorId` is this user).")]
        filter: Option<AuditEventFilter>,
    ) -> ApiResult<AuditEventConnection> {
        let principal = require_principal(ctx)?;
        if principal.user_id != self.id && !principal.has_permission(codes::EVENT_READ) {
            return Err(ApiError::forbidden(format!(
                "only the user themself or a holder of `{}` may read their audit events",
                codes::EVENT_READ
            )));
        }
        let mut filter = filter
            .map(AuditEventFilter::parse)
            .transpose()?
            .unwrap_or_default();
        if filter.actor_id.is_some_and(|actor| actor != self.id) {
            return Err(ApiError::bad_input(
                "filter.actorId",
                "User.auditEvents lists this user's events; leave `actorId` out",
            ));
        }
        filter.actor_id = Some(self.id);
        list(ctx, filter, first, after).await
    }
}

/// Which events to list: every field given must match.
#[derive(InputObject, Default)]
pub struct AuditEventFilter {
    /// Events this user caused.
    pub actor_id: Option<ID>,
    /// An action (`auth.login.failed`), or a prefix ending in `.` (`identity.user.`).
    pub action: Option<String>,
    /// Events on targets of this type (`user`, `session`, `role` …).
    pub target_type: Option<String>,
    /// Events on the target with this id (with or without `targetType`).
    pub target_id: Option<String>,
    /// Events that ended so.
    pub outcome: Option<AuditOutcome>,
    /// Events recorded by this service (`identity`, `authz`, `auth`).
    pub service: Option<String>,
    /// Events that occurred at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Events that occurred before this time.
    pub until: Option<DateTime<Utc>>,
}

impl AuditEventFilter {
    fn parse(self) -> ApiResult<EventFilter> {
        let actor_id = self
            .actor_id
            .map(|id| {
                Uuid::parse_str(&id).map_err(|_| {
                    ApiError::bad_input(
                        "filter.actorId",
                        format!("`{}` is not a user id (a UUID)", id.0),
                    )
                })
            })
            .transpose()?;
        if let Some(action) = &self.action
            && !valid_action(action, true)
        {
            return Err(ApiError::bad_input(
                "filter.action",
                format!(
                    "`{action}` is not an action (`identity.user.registered`) or a prefix ending in `.` (`identity.user.`)"
                ),
            ));
        }
        for (field, value, max) in [
            ("filter.targetType", &self.target_type, 64),
            ("filter.targetId", &self.target_id, 128),
            ("filter.service", &self.service, 32),
        ] {
            if value.as_ref().is_some_and(|v| v.len() > max) {
                return Err(ApiError::bad_input(
                    field,
                    format!(
                        "`{}` is at most {max} characters",
                        field.trim_start_matches("filter.")
                    ),
                ));
            }
        }
        if let (Some(since), Some(until)) = (self.since, self.until)
            && since >= until
        {
            return Err(ApiError::bad_input(
                "filter.until",
                "`until` must be later than `since`",
            ));
        }
        Ok(EventFilter {
            actor_id,
            action: self.action,
            target_type: self.target_type,
            target_id: self.target_id,
            outcome: self.outcome.map(|o| o.as_str().to_owned()),
            service: self.service,
            since: self.since,
            until: self.until,
        })
    }
}

/// A page of audit events, newest first.
#[derive(SimpleObject)]
pub struct AuditEventConnection {
    /// The events of this page, each with its cursor.
    pub edges: Vec<AuditEventEdge>,
    /// Where this page sits in the whole list.
    pub page_info: PageInfo,
    /// How many events match the filter.
    pub total_count: u64,
}

/// An event in a page, with the cursor that points at it.
#[derive(SimpleObject)]
pub struct AuditEventEdge {
    /// Pass as `after` to get the events that follow (older than) this one.
    pub cursor: String,
    /// The event.
    pub node: AuditEvent,
}

/// A signed statement of the log's head: "the log held `sequence` events, the last of them
/// with hash `headHash`", signed with the audit service's Ed25519 key.
#[derive(SimpleObject)]
pub struct AuditCheckpoint {
    /// How many events the log held (the sequence of its last event).
    pub sequence: i64,
    /// `hash` of the event at `sequence`.
    pub head_hash: String,
    /// When it was signed (UTC, microseconds).
    pub created_at: DateTime<Utc>,
    /// The signing key (its `kid` at /.well-known/audit-keys.json).
    pub key_id: String,
    /// Ed25519 signature (base64url) of the `keygraph-audit-checkpoint-v1` message
    /// (docs/audit.md).
    pub signature: String,
}

impl From<checkpoint::Model> for AuditCheckpoint {
    fn from(m: checkpoint::Model) -> Self {
        Self {
            sequence: m.sequence,
            head_hash: m.head_hash,
            created_at: m.created_at,
            key_id: m.key_id,
            signature: m.signature,
        }
    }
}

impl From<chain::CheckpointRecord> for AuditCheckpoint {
    fn from(c: chain::CheckpointRecord) -> Self {
        Self {
            sequence: c.sequence,
            head_hash: c.head_hash,
            created_at: c.created_at,
            key_id: c.key_id,
            signature: c.signature,
        }
    }
}

/// A page of checkpoints, newest first.
#[derive(SimpleObject)]
pub struct AuditCheckpointConnection {
    /// The checkpoints of this page, each with its cursor.
    pub edges: Vec<AuditCheckpointEdge>,
    /// Where this page sits in the whole list.
    pub page_info: PageInfo,
    /// How many checkpoints there are.
    pub total_count: u64,
}

/// A checkpoint in a page, with the cursor that points at it.
#[derive(SimpleObject)]
pub struct AuditCheckpointEdge {
    /// Pass as `after` to get the checkpoints that follow (older than) this one.
    pub cursor: String,
    /// The checkpoint.
    pub node: AuditCheckpoint,
}

/// Whether a stretch of the log is intact.
#[derive(SimpleObject)]
pub struct AuditVerification {
    /// True when every event's hash, every link and every checkpoint in the range hold.
    pub valid: bool,
    /// First sequence checked (null when the range holds no events).
    pub from: Option<i64>,
    /// Last sequence checked.
    pub to: Option<i64>,
    /// Events whose hash and link were checked before the first break (or all of them).
    pub events_checked: u64,
    /// Checkpoints whose signature and head hash were checked.
    pub checkpoints_checked: u64,
    /// The highest sequence a valid signed checkpoint covers: events after it are chained
    /// but not yet signed, so removing them from the end would not show.
    pub signed_through: Option<i64>,
    /// Where the chain first fails to hold; null when it holds.
    pub first_break: Option<AuditChainBreak>,
}

/// The first place the log does not hold.
#[derive(SimpleObject)]
pub struct AuditChainBreak {
    /// The sequence where it breaks.
    pub sequence: i64,
    /// The id of the event there, when there is one.
    pub event_id: Option<ID>,
    /// What kind of break it is.
    pub kind: BreakKind,
    /// What was found, in words.
    pub message: String,
}

impl From<chain::Verification> for AuditVerification {
    fn from(v: chain::Verification) -> Self {
        Self {
            valid: v.valid,
            from: v.from,
            to: v.to,
            events_checked: v.events_checked,
            checkpoints_checked: v.checkpoints_checked,
            signed_through: v.signed_through,
            first_break: v.first_break.map(|b| AuditChainBreak {
                sequence: b.sequence,
                event_id: b.event_id.map(|id| ID(id.to_string())),
                kind: b.kind,
                message: b.message,
            }),
        }
    }
}

/// May `principal` read the event whose actor is `actor`?
fn may_read(principal: &Principal, actor: Option<Uuid>) -> bool {
    actor == Some(principal.user_id) || principal.has_permission(codes::EVENT_READ)
}

async fn list(
    ctx: &Context<'_>,
    filter: EventFilter,
    first: Option<i32>,
    after: Option<String>,
) -> ApiResult<AuditEventConnection> {
    let first = page_size(first)?;
    let after = after.as_deref().map(decode_number_cursor).transpose()?;
    let page = audit(ctx)
        .list(&filter, first, after)
        .await
        .map_err(ApiError::internal)?;
    let edges: Vec<AuditEventEdge> = page
        .events
        .into_iter()
        .map(|e| AuditEventEdge {
            cursor: encode_number_cursor(e.sequence),
            node: AuditEvent(e),
        })
        .collect();
    Ok(AuditEventConnection {
        page_info: PageInfo::new(
            &edges.iter().map(|e| e.cursor.clone()).collect::<Vec<_>>(),
            page.has_next_page,
            after.is_some(),
        ),
        edges,
        total_count: page.total_count,
    })
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

async fn find_event(ctx: &Context<'_>, id: &ID) -> ApiResult<Option<AuditEvent>> {
    let principal = require_principal(ctx)?;
    let Ok(id) = Uuid::parse_str(id) else {
        return Ok(None);
    };
    let event = audit(ctx).event(id).await.map_err(ApiError::internal)?;
    Ok(event
        .filter(|e| may_read(principal, e.actor_id))
        .map(AuditEvent))
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
