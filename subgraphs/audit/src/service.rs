//! The audit log: idempotent ingest into the hash chain, queries, signed checkpoints,
//! verification and retention. No GraphQL here; `schema` checks access and calls this.

use std::{collections::HashSet, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use keygraph_kernel::{
    db,
    http::Shutdown,
    relay::{BatchReceipt, EventBatch, WireEvent},
};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, Condition, ConnectionTrait, DatabaseConnection, DbBackend,
    DbErr, EntityTrait as _, PaginatorTrait as _, QueryFilter as _, QueryOrder as _,
    QuerySelect as _, Select,
};
use uuid::Uuid;

use crate::{
    chain::{
        Anchor, BreakKind, CheckpointRecord, CheckpointSigner, EventRecord, GENESIS_HASH,
        TrustedKeys, Verification, Verifier, to_micros,
    },
    entity::{checkpoint, event, key},
};

/// Most events one batch may carry.
pub const MAX_BATCH: usize = 1000;
/// Events read from the database at a time while verifying or exporting.
const READ_CHUNK: u64 = 1000;

/// Why a batch was not stored.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The batch is malformed; nothing of it was stored.
    #[error("{0}")]
    Invalid(String),
    #[error("the audit log cannot be written: {0}")]
    Database(#[from] DbErr),
}

/// Which events `auditEvents` lists; every field left out matches all.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub actor_id: Option<Uuid>,
    /// An action, or a prefix ending in `.` (`identity.user.`).
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub outcome: Option<String>,
    pub service: Option<String>,
    /// Occurred at or after.
    pub since: Option<DateTime<Utc>>,
    /// Occurred before.
    pub until: Option<DateTime<Utc>>,
}

impl EventFilter {
    /// A page of matching events, newest first, older than the sequence `after`.
    pub fn page_query(&self, first: u64, after: Option<i64>) -> Select<event::Entity> {
        let mut query = event::Entity::find().filter(self.condition());
        if let Some(after) = after {
            query = query.filter(event::Column::Sequence.lt(after));
        }
        query
            .order_by_desc(event::Column::Sequence)
            .limit(first + 1)
    }

    /// Every matching event (for `totalCount`).
    pub fn count_query(&self) -> Select<event::Entity> {
        event::Entity::find().filter(self.condition())
    }

    fn condition(&self) -> Condition {
        use event::Column as C;
        let mut condition = Condition::all();
        if let Some(actor) = self.actor_id {
            condition = condition.add(C::ActorId.eq(actor));
        }
        if let Some(action) = &self.action {
            condition = match action.strip_suffix('.') {
                // A prefix as a range of the index: `identity.user.` ≤ action < `identity.user/`.
                Some(stem) => condition
                    .add(C::Action.gte(action.as_str()))
                    .add(C::Action.lt(format!("{stem}/"))),
                None => condition.add(C::Action.eq(action.as_str())),
            };
        }
        if let Some(target_type) = &self.target_type {
            condition = condition.add(C::TargetType.eq(target_type.as_str()));
        }
        if let Some(target_id) = &self.target_id {
            condition = condition.add(C::TargetId.eq(target_id.as_str()));
        }
        if let Some(outcome) = &self.outcome {
            condition = condition.add(C::Outcome.eq(outcome.as_str()));
        }
        if let Some(service) = &self.service {
            condition = condition.add(C::Service.eq(service.as_str()));
        }
        if let Some(since) = self.since {
            condition = condition.add(C::OccurredAt.gte(since));
        }
        if let Some(until) = self.until {
            condition = condition.add(C::OccurredAt.lt(until));
        }
        condition
    }
}

/// A page of events, newest first.
pub struct EventPage {
    pub events: Vec<event::Model>,
    pub has_next_page: bool,
    pub total_count: u64,
}

/// A page of checkpoints, newest first.
pub struct CheckpointPage {
    pub checkpoints: Vec<checkpoint::Model>,
    pub has_next_page: bool,
    pub total_count: u64,
}

pub struct Audit {
    db: DatabaseConnection,
    signer: CheckpointSigner,
}

impl Audit {
    /// The service over `db`, signing with `signer`, whose public key is recorded among the
    /// log's keys (past keys stay, so older checkpoints still verify).
    pub async fn new(db: DatabaseConnection, signer: CheckpointSigner) -> Result<Self, DbErr> {
        let audit = Self { db, signer };
        audit.record_key().await?;
        Ok(audit)
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    async fn record_key(&self) -> Result<(), DbErr> {
        let known = key::Entity::find_by_id(self.signer.key_id().to_owned())
            .one(&self.db)
            .await?;
        if known.is_some() {
            return Ok(());
        }
        let inserted = key::Entity::insert(key::ActiveModel {
            key_id: Set(self.signer.key_id().to_owned()),
            public_key: Set(self.signer.public_key()),
            created_at: Set(to_micros(Utc::now())),
        })
        .exec_without_returning(&self.db)
        .await;
        match inserted {
            // Another replica recorded it first.
            Err(err) if db::is_unique_violation(&err) => Ok(()),
            other => other.map(|_| ()),
        }
    }

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

    /// Events matching `filter`, newest first, after the sequence `after`.
    pub async fn list(
        &self,
        filter: &EventFilter,
        first: u64,
        after: Option<i64>,
    ) -> Result<EventPage, DbErr> {
        let mut events = filter.page_query(first, after).all(&self.db).await?;
        let has_next_page = events.len() as u64 > first;
        events.truncate(usize::try_from(first).unwrap_or(usize::MAX));
        let total_count = filter.count_query().count(&self.db).await?;
        Ok(EventPage {
            events,
            has_next_page,
            total_count,
        })
    }

    pub async fn event(&self, id: Uuid) -> Result<Option<event::Model>, DbErr> {
        event::Entity::find()
            .filter(event::Column::Id.eq(id))
            .one(&self.db)
            .await
    }

    /// Checkpoints, newest first, before the sequence `after`.
    pub async fn checkpoints(
        &self,
        first: u64,
        after: Option<i64>,
    ) -> Result<CheckpointPage, DbErr> {
        let mut query = checkpoint::Entity::find();
        if let Some(after) = after {
            query = query.filter(checkpoint::Column::Sequence.lt(after));
        }
        let mut checkpoints = query
            .order_by_desc(checkpoint::Column::Sequence)
            .limit(first + 1)
            .all(&self.db)
            .await?;
        let has_next_page = checkpoints.len() as u64 > first;
        checkpoints.truncate(usize::try_from(first).unwrap_or(usize::MAX));
        let total_count = checkpoint::Entity::find().count(&self.db).await?;
        Ok(CheckpointPage {
            checkpoints,
            has_next_page,
            total_count,
        })
    }

    /// Signs a checkpoint of the log's head now, unless one already covers it (that one is
    /// answered). None while the log is empty.
    pub async fn checkpoint(&self) -> Result<Option<CheckpointRecord>, DbErr> {
        let Some((sequence, hash)) = head(&self.db).await? else {
            return Ok(None);
        };
        if let Some(existing) = checkpoint::Entity::find_by_id(sequence)
            .one(&self.db)
            .await?
        {
            return Ok(Some(checkpoint_record(existing)));
        }
        let signed = self.signer.sign(sequence, &hash, Utc::now());
        let _turn = db::write_turn(&self.db).await;
        let inserted = checkpoint::Entity::insert(checkpoint::ActiveModel {
            sequence: Set(signed.sequence),
            head_hash: Set(signed.head_hash.clone()),
            created_at: Set(signed.created_at),
            key_id: Set(signed.key_id.clone()),
            signature: Set(signed.signature.clone()),
        })
        .exec_without_returning(&self.db)
        .await;
        match inserted {
            Ok(_) => {
                tracing::info!(sequence, key_id = %signed.key_id, "audit checkpoint signed");
                Ok(Some(signed))
            }
            // Another replica signed this head a moment ago: answer its checkpoint.
            Err(err) if db::is_unique_violation(&err) => {
                Ok(checkpoint::Entity::find_by_id(sequence)
                    .one(&self.db)
                    .await?
                    .map(checkpoint_record))
            }
            Err(err) => Err(err),
        }
    }

    /// Every public key that has signed this log.
    pub async fn keys(&self) -> Result<Vec<key::Model>, DbErr> {
        key::Entity::find()
            .order_by_asc(key::Column::CreatedAt)
            .all(&self.db)
            .await
    }

    pub async fn trusted_keys(&self) -> Result<TrustedKeys, DbErr> {
        let mut trusted = TrustedKeys::default();
        for key in self.keys().await? {
            if let Err(err) = trusted.add(&key.public_key) {
                tracing::error!(key_id = %key.key_id, %err, "a stored audit key is unusable");
            }
        }
        Ok(trusted)
    }

    /// The first and last sequence the log holds.
    pub async fn bounds(&self) -> Result<Option<(i64, i64)>, DbErr> {
        let row: Option<(Option<i64>, Option<i64>)> = event::Entity::find()
            .select_only()
            .column_as(event::Column::Sequence.min(), "first")
            .column_as(event::Column::Sequence.max(), "last")
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(match row {
            Some((Some(first), Some(last))) => Some((first, last)),
            _ => None,
        })
    }

    /// Checks the chain and the checkpoints from `from` (default: the oldest event kept) to
    /// `to` (default: the last), reading the log a chunk at a time.
    pub async fn verify(&self, from: Option<i64>, to: Option<i64>) -> Result<Verification, DbErr> {
        let keys = self.trusted_keys().await?;
        let Some((oldest, last)) = self.bounds().await? else {
            // No events: every checkpoint still stands for a log that is now gone.
            let mut verifier = Verifier::new(keys, Anchor::Genesis);
            for c in self.checkpoint_range(1, None).await? {
                verifier.checkpoint(&c);
            }
            return Ok(verifier.finish(true));
        };
        let from = from.unwrap_or(oldest).max(1);
        let to_the_end = to.is_none_or(|to| to >= last);
        let to = to.unwrap_or(last).min(last);
        if from > to {
            // Nothing in this range.
            return Ok(Verifier::new(keys, Anchor::Genesis).finish(false));
        }
        let mut verifier = self.verifier_from(keys, from).await?;
        let checkpoints = self
            .checkpoint_range(from, (!to_the_end).then_some(to))
            .await?;
        let mut checkpoints = checkpoints.into_iter().peekable();
        let mut cursor = from;
        while cursor <= to && !verifier.is_broken() {
            let chunk = self.event_range(cursor, to, READ_CHUNK).await?;
            let Some(end) = chunk.last().map(|e| e.sequence) else {
                break;
            };
            for event in &chunk {
                // Checkpoints whose event is missing come before the next event: the
                // verifier reports the gap first.
                while let Some(c) = checkpoints.next_if(|c| c.sequence < event.sequence) {
                    verifier.checkpoint(&c);
                }
                verifier.event(event);
                while let Some(c) = checkpoints.next_if(|c| c.sequence == event.sequence) {
                    verifier.checkpoint(&c);
                }
            }
            cursor = end + 1;
        }
        for c in checkpoints {
            verifier.checkpoint(&c);
        }
        Ok(verifier.finish(to_the_end))
    }

    /// A verifier anchored just before `from`: the start of the log, the stored event
    /// `from - 1`, or the signed checkpoint at `from - 1` when that event is gone.
    pub async fn verifier_from(&self, keys: TrustedKeys, from: i64) -> Result<Verifier, DbErr> {
        if from <= 1 {
            return Ok(Verifier::new(keys, Anchor::Genesis));
        }
        let before = from - 1;
        if let Some(c) = checkpoint::Entity::find_by_id(before).one(&self.db).await? {
            return Ok(Verifier::new(
                keys,
                Anchor::Checkpoint(checkpoint_record(c)),
            ));
        }
        if let Some(e) = event::Entity::find_by_id(before).one(&self.db).await? {
            return Ok(Verifier::new(
                keys,
                Anchor::Event {
                    sequence: e.sequence,
                    hash: e.hash,
                },
            ));
        }
        let mut verifier = Verifier::new(keys, Anchor::Genesis);
        verifier.fail(
            from,
            BreakKind::NoAnchor,
            format!(
                "event {before} is not in the log and no signed checkpoint stands for it: events before {from} were removed outside retention"
            ),
        );
        Ok(verifier)
    }

    /// Events `from..=to` in order, at most `limit`.
    pub async fn event_range(
        &self,
        from: i64,
        to: i64,
        limit: u64,
    ) -> Result<Vec<EventRecord>, DbErr> {
        Ok(event::Entity::find()
            .filter(event::Column::Sequence.gte(from))
            .filter(event::Column::Sequence.lte(to))
            .order_by_asc(event::Column::Sequence)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(event_record)
            .collect())
    }

    /// Checkpoints at `from` or later (up to `to` when given), in order.
    pub async fn checkpoint_range(
        &self,
        from: i64,
        to: Option<i64>,
    ) -> Result<Vec<CheckpointRecord>, DbErr> {
        let mut query = checkpoint::Entity::find().filter(checkpoint::Column::Sequence.gte(from));
        if let Some(to) = to {
            query = query.filter(checkpoint::Column::Sequence.lte(to));
        }
        Ok(query
            .order_by_asc(checkpoint::Column::Sequence)
            .all(&self.db)
            .await?
            .into_iter()
            .map(checkpoint_record)
            .collect())
    }

    pub async fn checkpoint_at(&self, sequence: i64) -> Result<Option<CheckpointRecord>, DbErr> {
        Ok(checkpoint::Entity::find_by_id(sequence)
            .one(&self.db)
            .await?
            .map(checkpoint_record))
    }

    /// Removes events received before `cutoff`, up to the newest signed checkpoint among
    /// them, so the rest still verifies from that checkpoint. Checkpoints are kept. The
    /// number of events removed.
    pub async fn apply_retention(&self, cutoff: DateTime<Utc>) -> Result<u64, DbErr> {
        let boundary: Option<Option<i64>> = event::Entity::find()
            .select_only()
            .column_as(event::Column::Sequence.max(), "boundary")
            .filter(event::Column::ReceivedAt.lt(cutoff))
            .into_tuple()
            .one(&self.db)
            .await?;
        let Some(Some(boundary)) = boundary else {
            return Ok(0);
        };
        let Some(anchor) = checkpoint::Entity::find()
            .filter(checkpoint::Column::Sequence.lte(boundary))
            .order_by_desc(checkpoint::Column::Sequence)
            .one(&self.db)
            .await?
        else {
            return Ok(0);
        };
        let _turn = db::write_turn(&self.db).await;
        let removed = event::Entity::delete_many()
            .filter(event::Column::Sequence.lte(anchor.sequence))
            .exec(&self.db)
            .await?
            .rows_affected;
        if removed > 0 {
            tracing::info!(
                removed,
                through = anchor.sequence,
                "audit retention removed old events"
            );
        }
        Ok(removed)
    }

    /// Signs a checkpoint every `interval` (when the head moved) and applies retention,
    /// until `shutdown`.
    pub async fn run_maintenance(
        self: Arc<Self>,
        interval: Duration,
        retention: Option<chrono::Duration>,
        shutdown: Shutdown,
    ) {
        loop {
            tokio::select! {
                () = shutdown.clone().wait() => return,
                () = tokio::time::sleep(interval) => {}
            }
            if let Err(err) = self.checkpoint().await {
                tracing::warn!(error = %err, "signing an audit checkpoint failed; retrying at the next interval");
            }
            if let Some(retention) = retention
                && let Err(err) = self.apply_retention(Utc::now() - retention).await
            {
                tracing::warn!(error = %err, "audit retention failed; retrying at the next interval");
            }
        }
    }
}

/// The log's last event (sequence and hash); when every event was removed by retention,
/// the newest checkpoint stands for it.
async fn head<C: ConnectionTrait>(db: &C) -> Result<Option<(i64, String)>, DbErr> {
    let last: Option<(i64, String)> = event::Entity::find()
        .select_only()
        .column(event::Column::Sequence)
        .column(event::Column::Hash)
        .order_by_desc(event::Column::Sequence)
        .into_tuple()
        .one(db)
        .await?;
    if last.is_some() {
        return Ok(last);
    }
    checkpoint::Entity::find()
        .select_only()
        .column(checkpoint::Column::Sequence)
        .column(checkpoint::Column::HeadHash)
        .order_by_desc(checkpoint::Column::Sequence)
        .into_tuple()
        .one(db)
        .await
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

pub fn event_record(m: event::Model) -> EventRecord {
    EventRecord {
        sequence: m.sequence,
        id: m.id,
        occurred_at: m.occurred_at,
        received_at: m.received_at,
        service: m.service,
        action: m.action,
        actor_id: m.actor_id,
        target_type: m.target_type,
        target_id: m.target_id,
        outcome: m.outcome,
        metadata: m.metadata,
        request_id: m.request_id,
        client_address: m.client_address,
        previous_hash: m.previous_hash,
        hash: m.hash,
    }
}

pub fn checkpoint_record(m: checkpoint::Model) -> CheckpointRecord {
    CheckpointRecord {
        sequence: m.sequence,
        head_hash: m.head_hash,
        created_at: m.created_at,
        key_id: m.key_id,
        signature: m.signature,
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
