//! Tells authz to drop a deleted user's grants. The deletion's transaction records the user in
//! `pending_grant_removals`; this worker calls authz until it confirms, backing off between
//! attempts, so a user deleted while authz is down loses their grants once it is back.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use keygraph_kernel::{http::Shutdown, internal::InternalClient};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use tokio::sync::Notify;

use crate::entity::pending_grant_removal as pending;

/// Longest wait between two attempts for one user.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often the table is looked at when nothing wakes the worker.
const POLL: Duration = Duration::from_secs(5);
/// Users handled per round.
const BATCH: u64 = 50;

#[derive(Clone)]
pub struct GrantRemoval {
    db: DatabaseConnection,
    authz: InternalClient,
    wake: Arc<Notify>,
}

impl GrantRemoval {
    pub fn new(db: DatabaseConnection, authz: InternalClient) -> Self {
        Self {
            db,
            authz,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Call after committing a deletion: the worker starts at once instead of at its next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Works off pending removals until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            if let Err(err) = self.round().await {
                tracing::warn!(error = %err, "grant removal round failed; retrying");
            }
            tokio::select! {
                () = &mut stop => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One pass over the removals that are due.
    pub async fn round(&self) -> Result<(), DbErr> {
        let due = pending::Entity::find()
            .filter(pending::Column::NextAttemptAt.lte(Utc::now()))
            .order_by_asc(pending::Column::NextAttemptAt)
            .limit(BATCH)
            .all(&self.db)
            .await?;
        for removal in due {
            let user = removal.user_id;
            match self
                .authz
                .delete(&format!("/internal/users/{user}/grants"))
                .await
            {
                Ok(()) => {
                    pending::Entity::delete_by_id(user).exec(&self.db).await?;
                    tracing::info!(%user, "authz dropped the deleted user's grants");
                }
                Err(err) => {
                    let attempts = removal.attempts.saturating_add(1);
                    let backoff =
                        Duration::from_secs(1u64 << attempts.clamp(0, 9) as u32).min(MAX_BACKOFF);
                    tracing::warn!(%user, attempts, error = %err, retry_in_secs = backoff.as_secs(), "authz did not drop the deleted user's grants yet");
                    let mut active: pending::ActiveModel = removal.into();
                    active.attempts = Set(attempts);
                    active.next_attempt_at = Set(Utc::now()
                        + chrono::Duration::from_std(backoff)
                            .unwrap_or(chrono::Duration::seconds(300)));
                    active.last_error = Set(Some(err.to_string().chars().take(500).collect()));
                    active.update(&self.db).await?;
                }
            }
        }
        Ok(())
    }
}
