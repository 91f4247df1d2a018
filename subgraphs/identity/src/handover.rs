//! Calls identity owes other services about a user: authz drops a deleted user's grants; auth
//! ends a user's sessions (the others on a password change, all on reset, disable, delete).
//! The change's own transaction records the call in `pending_calls`; this worker delivers it,
//! backing off between attempts, so a call made while the other service is down is delivered
//! once it is back, restarts included.

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use keygraph_kernel::{
    db::write_turn,
    http::Shutdown,
    internal::{InternalCallError, InternalClient},
};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, Set,
};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::entity::pending_call::{self, ASSIGN_ROLE, DROP_FACTORS, DROP_GRANTS, END_SESSIONS};

/// The wait after a hand-over's first failed attempt; it doubles with each further one.
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// Longest wait between two attempts of one call.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// How often the table is looked at when nothing wakes the worker.
const POLL: Duration = Duration::from_secs(5);
/// Calls handled per round.
const BATCH: u64 = 50;

/// What identity tells another service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// authz: the user is deleted; drop their grants.
    DropGrants,
    /// authz: give the user the named role (system-granted, for the first administrator).
    AssignRole { role: &'static str },
    /// auth: the user is deleted; drop their second factors and recovery codes.
    DropFactors,
    /// auth: end the user's sessions, except `keep`.
    EndSessions {
        keep: Option<Uuid>,
        reason: &'static str,
    },
}

#[derive(Clone)]
pub struct Handover {
    db: DatabaseConnection,
    authz: Option<InternalClient>,
    auth: Option<InternalClient>,
    wake: Arc<Notify>,
}

impl Handover {
    /// A service left out (`None`) is not running beside identity; its calls are not recorded.
    pub fn new(
        db: DatabaseConnection,
        authz: Option<InternalClient>,
        auth: Option<InternalClient>,
    ) -> Self {
        Self {
            db,
            authz,
            auth,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Records `call` through `db`, which should be the transaction of the change causing it.
    pub async fn record<C: ConnectionTrait>(
        &self,
        db: &C,
        user: Uuid,
        call: Call,
    ) -> Result<(), DbErr> {
        let (kind, keep, reason) = match call {
            Call::DropGrants if self.authz.is_some() => (DROP_GRANTS, None, None),
            Call::AssignRole { role } if self.authz.is_some() => (ASSIGN_ROLE, None, Some(role)),
            Call::DropFactors if self.auth.is_some() => (DROP_FACTORS, None, None),
            Call::EndSessions { keep, reason } if self.auth.is_some() => {
                (END_SESSIONS, keep, Some(reason))
            }
            _ => return Ok(()),
        };
        let now = Utc::now();
        pending_call::ActiveModel {
            id: Set(Uuid::now_v7()),
            kind: Set(kind.into()),
            user_id: Set(user),
            keep_session: Set(keep),
            reason: Set(reason.map(str::to_owned)),
            created_at: Set(now),
            attempts: Set(0),
            next_attempt_at: Set(now),
            last_error: Set(None),
        }
        .insert(db)
        .await
        .map(|_| ())
    }

    /// Call after committing: the worker starts at once instead of at its next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Delivers pending calls until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) {
        let stop = shutdown.wait();
        tokio::pin!(stop);
        loop {
            if let Err(err) = self.round().await {
                tracing::warn!(error = %err, "hand-over round failed; retrying");
            }
            tokio::select! {
                () = &mut stop => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// One pass over the calls that are due.
    pub async fn round(&self) -> Result<(), DbErr> {
        let due = pending_call::Entity::find()
            .filter(pending_call::Column::NextAttemptAt.lte(Utc::now()))
            .order_by_asc(pending_call::Column::NextAttemptAt)
            .limit(BATCH)
            .all(&self.db)
            .await?;
        for call in due {
            match self.deliver(&call).await {
                Ok(()) => {
                    let _turn = write_turn(&self.db).await;
                    pending_call::Entity::delete_by_id(call.id)
                        .exec(&self.db)
                        .await?;
                    tracing::info!(user = %call.user_id, kind = %call.kind, "hand-over delivered");
                }
                Err(err) => {
                    let attempts = call.attempts.saturating_add(1);
                    let backoff = keygraph_kernel::backoff::backoff(
                        u64::try_from(attempts).unwrap_or(0),
                        FIRST_BACKOFF,
                        MAX_BACKOFF,
                        1.0,
                    );
                    tracing::warn!(user = %call.user_id, kind = %call.kind, attempts, error = %err, retry_in_secs = backoff.as_secs(), "hand-over not delivered yet");
                    let mut active: pending_call::ActiveModel = call.into();
                    active.attempts = Set(attempts);
                    active.next_attempt_at = Set(Utc::now()
                        + chrono::Duration::from_std(backoff)
                            .unwrap_or(chrono::Duration::seconds(300)));
                    active.last_error = Set(Some(err.to_string().chars().take(500).collect()));
                    let _turn = write_turn(&self.db).await;
                    active.update(&self.db).await?;
                }
            }
        }
        Ok(())
    }

    async fn deliver(&self, call: &pending_call::Model) -> Result<(), InternalCallError> {
        let user = call.user_id;
        let missing = |service: &str| InternalCallError::Unreachable {
            url: service.to_owned(),
            message: "not configured".into(),
        };
        match call.kind.as_str() {
            DROP_GRANTS => {
                let authz = self.authz.as_ref().ok_or_else(|| missing("authz"))?;
                authz
                    .delete(&format!("/internal/users/{user}/grants"))
                    .await
            }
            ASSIGN_ROLE => {
                let authz = self.authz.as_ref().ok_or_else(|| missing("authz"))?;
                let role = call.reason.as_deref().unwrap_or_default();
                authz
                    .post_json::<_, serde_json::Value>(
                        &format!("/internal/users/{user}/roles/{role}"),
                        &serde_json::json!({}),
                    )
                    .await
                    .map(|_| ())
            }
            DROP_FACTORS => {
                let auth = self.auth.as_ref().ok_or_else(|| missing("auth"))?;
                auth.delete(&format!("/internal/users/{user}/factors"))
                    .await
            }
            END_SESSIONS => {
                let auth = self.auth.as_ref().ok_or_else(|| missing("auth"))?;
                let body =
                    serde_json::json!({ "keepSession": call.keep_session, "reason": call.reason });
                auth.post_json::<_, serde_json::Value>(
                    &format!("/internal/users/{user}/sessions/revoke"),
                    &body,
                )
                .await
                .map(|_| ())
            }
            other => Err(InternalCallError::Body {
                url: "pending_calls".into(),
                message: format!("unknown kind `{other}`"),
            }),
        }
    }
}
