//! The audit log: idempotent ingest into the hash chain, queries, signed checkpoints,
//! verification and retention. No GraphQL here; `schema` checks access and calls this.
//!
//! This module holds the service and what its parts share (the log's head, the records of
//! stored rows); each part has a file of its own:
//! - `ingest`: storing a batch, each event once, in the hash chain.
//! - `query`: events, checkpoints and keys as stored, by page or by range.
//! - `verify`: checking the chain and the checkpoints against the trusted keys.
//! - `maintenance`: signing checkpoints and applying retention.

mod ingest;
mod maintenance;
mod query;
mod verify;

use chrono::Utc;
use keygraph_kernel::db;
use sea_orm::{
    ActiveValue::Set, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait as _,
    QueryOrder as _, QuerySelect as _,
};

use crate::{
    chain::{CheckpointRecord, CheckpointSigner, EventRecord, to_micros},
    entity::{checkpoint, event, key},
};

pub use ingest::{IngestError, MAX_BATCH, OUTCOMES, valid_action};
pub use query::{CheckpointPage, EventFilter, EventPage};

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
