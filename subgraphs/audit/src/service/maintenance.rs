//! Upkeep of the log: signing a checkpoint of its head, retention (old events removed up to
//! a signed checkpoint, so the rest still verifies), and the loop that runs both.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use keygraph_kernel::{db, http::Shutdown};
use sea_orm::{
    ActiveValue::Set, ColumnTrait as _, DbErr, EntityTrait as _, QueryFilter as _, QueryOrder as _,
    QuerySelect as _,
};

use super::{Audit, checkpoint_record, head};
use crate::{
    chain::CheckpointRecord,
    entity::{checkpoint, event},
};

impl Audit {
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
