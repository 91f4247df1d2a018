//! The log's integrity as GraphQL: signed checkpoints of its head and their pages, and the
//! outcome of a verification with the first break it found.

use async_graphql::{ID, SimpleObject};
use chrono::{DateTime, Utc};
use keygraph_kernel::pagination::PageInfo;

use crate::{
    chain::{self, BreakKind},
    entity::checkpoint,
};

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
