//! Audit events as GraphQL: the event, its outcome, the filter that lists them and their
//! pages, the user who caused them (with their own events), and who may read which.

use async_graphql::{Context, Enum, ID, InputObject, Json, Object, SimpleObject};
use chrono::{DateTime, Utc};
use keygraph_kernel::{
    ApiError, ApiResult,
    guard::require_principal,
    pagination::{PageInfo, decode_number_cursor, encode_number_cursor, page_size},
    permissions::audit as codes,
    token::Principal,
};
use uuid::Uuid;

use super::audit;
use crate::{
    entity::event,
    service::{EventFilter, valid_action},
};

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
    pub(super) id: Uuid,
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
    pub(super) fn parse(self) -> ApiResult<EventFilter> {
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

/// May `principal` read the event whose actor is `actor`?
fn may_read(principal: &Principal, actor: Option<Uuid>) -> bool {
    actor == Some(principal.user_id) || principal.has_permission(codes::EVENT_READ)
}

pub(super) async fn list(
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

pub(super) async fn find_event(ctx: &Context<'_>, id: &ID) -> ApiResult<Option<AuditEvent>> {
    let principal = require_principal(ctx)?;
    let Ok(id) = Uuid::parse_str(id) else {
        return Ok(None);
    };
    let event = audit(ctx).event(id).await.map_err(ApiError::internal)?;
    Ok(event
        .filter(|e| may_read(principal, e.actor_id))
        .map(AuditEvent))
}
