//! Audit outbox: a state change and its audit event are written in one transaction, into the
//! service's own `outbox` table; a relay (with the audit service) delivers them later.

use chrono::Utc;
use sea_orm::{ConnectionTrait, DbErr, EntityTrait, Insert, Set};
use serde_json::Value;
use uuid::Uuid;

use crate::http::RequestMeta;

pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One audit event waiting in a service's outbox.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub occurred_at: DateTimeUtc,
        /// The user who acted; none for anonymous callers and the system.
        pub actor_id: Option<Uuid>,
        /// What happened, `service.resource.verb` (e.g. `identity.user.registered`).
        pub action: String,
        pub target_type: String,
        pub target_id: Option<String>,
        /// `success`, `failure` or `denied`.
        pub outcome: String,
        pub metadata: Json,
        pub request_id: Option<String>,
        pub client_addr: Option<String>,
        pub delivered_at: Option<DateTimeUtc>,
        pub attempts: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Denied,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Denied => "denied",
        }
    }
}

/// An audit event about to be written.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    action: String,
    target_type: String,
    target_id: Option<String>,
    actor_id: Option<Uuid>,
    outcome: Outcome,
    metadata: Value,
}

impl AuditEvent {
    /// A successful `action` on the target.
    pub fn new(action: &str, target_type: &str, target_id: impl ToString) -> Self {
        Self {
            action: action.to_owned(),
            target_type: target_type.to_owned(),
            target_id: Some(target_id.to_string()),
            actor_id: None,
            outcome: Outcome::Success,
            metadata: Value::Object(Default::default()),
        }
    }

    pub fn actor(mut self, actor_id: Option<Uuid>) -> Self {
        self.actor_id = actor_id;
        self
    }

    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Extra facts; never secrets (no passwords, tokens or hashes).
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = metadata;
        self
    }

    /// Writes the event through `db`, which should be the transaction of the change it records.
    pub async fn record<C: ConnectionTrait>(
        self,
        db: &C,
        meta: &RequestMeta,
    ) -> Result<Uuid, DbErr> {
        let (id, insert) = self.insert(meta);
        // No `RETURNING`: the row is known, and every audited write runs this.
        insert.exec_without_returning(db).await?;
        Ok(id)
    }

    /// The event's id and its insert, to run with other writes of the same transaction
    /// (see [`crate::db::execute_in_order`]).
    pub fn insert(self, meta: &RequestMeta) -> (Uuid, Insert<entity::ActiveModel>) {
        let id = Uuid::now_v7();
        let insert = entity::Entity::insert(entity::ActiveModel {
            id: Set(id),
            occurred_at: Set(Utc::now()),
            actor_id: Set(self.actor_id),
            action: Set(self.action),
            target_type: Set(self.target_type),
            target_id: Set(self.target_id),
            outcome: Set(self.outcome.as_str().to_owned()),
            metadata: Set(self.metadata),
            request_id: Set(Some(meta.request_id.clone()).filter(|r| !r.is_empty())),
            client_addr: Set(meta.client_addr.map(|a| a.to_string())),
            delivered_at: Set(None),
            attempts: Set(0),
        });
        (id, insert)
    }
}
