//! Reading the log as stored: pages of events (by filter) and of checkpoints for the API,
//! ranges of them for verification and export, the signing keys and the log's bounds.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait as _, Condition, DbErr, EntityTrait as _, PaginatorTrait as _, QueryFilter as _,
    QueryOrder as _, QuerySelect as _, Select,
};
use uuid::Uuid;

use super::{Audit, checkpoint_record, event_record};
use crate::{
    chain::{CheckpointRecord, EventRecord},
    entity::{checkpoint, event, key},
};

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

impl Audit {
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

    /// Every public key that has signed this log.
    pub async fn keys(&self) -> Result<Vec<key::Model>, DbErr> {
        key::Entity::find()
            .order_by_asc(key::Column::CreatedAt)
            .all(&self.db)
            .await
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
}
