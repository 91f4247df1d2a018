//! Ingest: a batch from a service's outbox relay, checked whole, then stored with each event
//! once (by id), at the next sequences and with their chain hashes, or not at all.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use keygraph_kernel::{
    db,
    relay::{BatchReceipt, EventBatch, WireEvent},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, ConnectionTrait, DbBackend, DbErr, EntityTrait as _,
    QueryFilter as _, QuerySelect as _,
};
use uuid::Uuid;

use super::{Audit, head};
use crate::{
    chain::{EventRecord, GENESIS_HASH, to_micros},
    entity::event,
};

/// Most events one batch may carry.
pub const MAX_BATCH: usize = 1000;

/// Why a batch was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The batch is malformed; nothing of it was stored.
    #[error("{0}")]
    Invalid(String),
    #[error("the audit log cannot be written: {0}")]
    Database(#[from] DbErr),
}

impl Audit {
    /// Stores a batch, each event once: events whose id is already in the log are counted
    /// as duplicates and left as they are, so a batch sent again is a success. The new
    /// events get the next sequences, in the batch's order, and their chain hashes; the
    /// whole batch is stored or none of it.
    pub async fn ingest(&self, batch: EventBatch) -> Result<BatchReceipt, IngestError> {
        validate_batch(&batch)?;
        if batch.events.is_empty() {
            return Ok(BatchReceipt {
                stored: 0,
                duplicates: 0,
            });
        }
        let (_turn, txn) = db::begin_write(&self.db).await?;
        if txn.get_database_backend() == DbBackend::Postgres {
            // Replicas of audit take turns, so sequences stay gap-free and chained. The look-up
            // of known ids is planned for each batch: a plan cached while the table was small
            // would scan it whole once it is large.
            txn.execute_unprepared(
                "SET LOCAL plan_cache_mode = force_custom_plan; \
                 SELECT pg_advisory_xact_lock(hashtext('keygraph.audit.ingest.' || current_schema()))",
            )
            .await?;
        }
        let ids: Vec<Uuid> = batch.events.iter().map(|e| e.id).collect();
        let mut seen: HashSet<Uuid> = event::Entity::find()
            .select_only()
            .column(event::Column::Id)
            .filter(event::Column::Id.is_in(ids))
            .into_tuple::<Uuid>()
            .all(&txn)
            .await?
            .into_iter()
            .collect();
        let (mut sequence, mut previous) =
            head(&txn).await?.unwrap_or((0, GENESIS_HASH.to_owned()));
        let received_at = to_micros(Utc::now());
        let total = batch.events.len() as u64;
        let mut rows = Vec::with_capacity(batch.events.len());
        for wire in batch.events {
            if !seen.insert(wire.id) {
                continue;
            }
            sequence += 1;
            let record = record_of(&batch.service, wire, sequence, received_at, &previous);
            previous.clone_from(&record.hash);
            rows.push(active_model(record));
        }
        let stored = rows.len() as u64;
        if !rows.is_empty() {
            event::Entity::insert_many(rows)
                .exec_without_returning(&txn)
                .await?;
        }
        txn.commit().await?;
        Ok(BatchReceipt {
            stored,
            duplicates: total - stored,
        })
    }
}

fn record_of(
    service: &str,
    wire: WireEvent,
    sequence: i64,
    received_at: DateTime<Utc>,
    previous_hash: &str,
) -> EventRecord {
    let mut record = EventRecord {
        sequence,
        id: wire.id,
        occurred_at: to_micros(wire.occurred_at),
        received_at,
        service: service.to_owned(),
        action: wire.action,
        actor_id: wire.actor_id,
        target_type: wire.target_type,
        target_id: wire.target_id,
        outcome: wire.outcome,
        metadata: wire.metadata,
        request_id: wire.request_id,
        client_address: wire.client_address,
        previous_hash: previous_hash.to_owned(),
        hash: String::new(),
    };
    record.hash = record.expected_hash(previous_hash);
    record
}

fn active_model(r: EventRecord) -> event::ActiveModel {
    event::ActiveModel {
        sequence: Set(r.sequence),
        id: Set(r.id),
        occurred_at: Set(r.occurred_at),
        received_at: Set(r.received_at),
        service: Set(r.service),
        action: Set(r.action),
        actor_id: Set(r.actor_id),
        target_type: Set(r.target_type),
        target_id: Set(r.target_id),
        outcome: Set(r.outcome),
        metadata: Set(r.metadata),
        request_id: Set(r.request_id),
        client_address: Set(r.client_address),
        previous_hash: Set(r.previous_hash),
        hash: Set(r.hash),
    }
}

/// The outcomes an event may have.
pub const OUTCOMES: [&str; 3] = ["success", "failure", "denied"];

/// Whether `action` is `service.resource.verb`-shaped: dot-separated lowercase segments of
/// letters, digits and `_`. With `prefix`, it may also end in `.` (a prefix to match).
pub fn valid_action(action: &str, prefix: bool) -> bool {
    let body = if prefix {
        action.strip_suffix('.').unwrap_or(action)
    } else {
        action
    };
    !body.is_empty()
        && action.len() <= 128
        && body.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

fn validate_batch(batch: &EventBatch) -> Result<(), IngestError> {
    let invalid = |message: String| Err(IngestError::Invalid(message));
    let service_ok = !batch.service.is_empty()
        && batch.service.len() <= 32
        && batch
            .service
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !service_ok {
        return invalid(format!(
            "`service` must be 1 to 32 lowercase letters, digits or _, not `{}`",
            batch.service
        ));
    }
    if batch.events.len() > MAX_BATCH {
        return invalid(format!(
            "a batch holds at most {MAX_BATCH} events, this one {}",
            batch.events.len()
        ));
    }
    for (i, e) in batch.events.iter().enumerate() {
        let at =
            |field: &str, rule: &str| invalid(format!("events[{i}] ({}): `{field}` {rule}", e.id));
        if !valid_action(&e.action, false) {
            return at(
                "action",
                "must be service.resource.verb: lowercase segments of letters, digits and _, at most 128 characters",
            );
        }
        if e.target_type.is_empty() || e.target_type.len() > 64 {
            return at("targetType", "must be 1 to 64 characters");
        }
        if e.target_id.as_ref().is_some_and(|t| t.len() > 128) {
            return at("targetId", "must be at most 128 characters");
        }
        if !OUTCOMES.contains(&e.outcome.as_str()) {
            return at("outcome", "must be success, failure or denied");
        }
        if e.request_id.as_ref().is_some_and(|r| r.len() > 128) {
            return at("requestId", "must be at most 128 characters");
        }
        if e.client_address.as_ref().is_some_and(|a| a.len() > 64) {
            return at("clientAddress", "must be at most 64 characters");
        }
    }
    Ok(())
}
