//! The outbox relay: every service with an outbox runs one. It sends the events waiting there
//! to the audit service in batches, oldest first, and marks them delivered only once audit has
//! confirmed the batch. A failed delivery is retried with exponential backoff and jitter; the
//! backlog is logged and counted. Delivered rows are pruned after a configured time.
//!
//! Delivery is at least once: a relay stopped between audit's answer and the mark sends the
//! batch again, and audit stores each event id once (see the audit service's ingest).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{backoff::backoff, telemetry::InThisService as _};
use axum::{Json, Router, extract::State, routing::get};
use chrono::{DateTime, Utc};
use rand::Rng as _;
use sea_orm::{
    ColumnTrait as _, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait as _,
    PaginatorTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _, Statement,
    TransactionTrait as _, sea_query::Expr,
};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;
use uuid::Uuid;

use crate::{
    config::OutboxConfig,
    http::Shutdown,
    internal::{InternalCallError, InternalClient, LocalServices},
    outbox::entity as outbox,
};

/// Where the audit service takes batches (behind the internal token).
pub const INGEST_PATH: &str = "/internal/events";

/// A batch of one service's events, oldest first: what the relay posts to [`INGEST_PATH`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EventBatch {
    /// The service whose outbox the events come from (`identity`, `authz`, `auth`).
    pub service: String,
    pub events: Vec<WireEvent>,
}

/// One outbox event on its way to the audit service.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WireEvent {
    pub id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub action: String,
    pub target_type: String,
    pub target_id: Option<String>,
    pub outcome: String,
    pub metadata: serde_json::Value,
    pub request_id: Option<String>,
    pub client_address: Option<String>,
}

impl From<outbox::Model> for WireEvent {
    fn from(m: outbox::Model) -> Self {
        Self {
            id: m.id,
            occurred_at: m.occurred_at,
            actor_id: m.actor_id,
            action: m.action,
            target_type: m.target_type,
            target_id: m.target_id,
            outcome: m.outcome,
            metadata: m.metadata,
            request_id: m.request_id,
            client_address: m.client_addr,
        }
    }
}

/// The audit service's answer to a batch: every event is stored, `duplicates` of them were
/// already.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BatchReceipt {
    /// Events newly stored.
    pub stored: u64,
    /// Events that were already stored (a batch sent again), left as they were.
    pub duplicates: u64,
}

/// What the relay has done since the process started, for `/internal/outbox` and the tests.
#[derive(Debug, Default)]
pub struct RelayStats {
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
    consecutive_failures: AtomicU64,
    pruned: AtomicU64,
}

/// [`RelayStats`] with the outbox's backlog, as `/internal/outbox` answers it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RelayStatus {
    /// Events waiting in the outbox.
    pub pending: u64,
    /// Events delivered since the process started.
    pub delivered: u64,
    /// Deliveries that failed since the process started.
    pub failed_attempts: u64,
    /// Failures since the last success (0 while audit answers).
    pub consecutive_failures: u64,
    /// Delivered rows removed from the outbox since the process started.
    pub pruned: u64,
}

/// Why a delivery did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("the outbox cannot be read or marked: {0}")]
    Database(#[from] DbErr),
    #[error("the audit service did not take the batch: {0}")]
    Audit(#[from] InternalCallError),
    #[error("the audit service confirmed {confirmed} of {sent} events")]
    Receipt { sent: u64, confirmed: u64 },
}

/// Delivers one service's outbox to the audit service.
#[derive(Clone)]
pub struct Relay {
    service: &'static str,
    db: DatabaseConnection,
    audit: InternalClient,
    settings: OutboxConfig,
    stats: Arc<RelayStats>,
    metrics: Arc<crate::metrics::Metrics>,
}

/// How a call to [`Relay::deliver_batch`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// This many events were delivered (0: the outbox was empty).
    Delivered(usize),
    /// Another replica of the service is relaying; nothing was read.
    Busy,
}

impl Relay {
    /// The relay of `service`'s outbox in `db`, when `outbox.audit_url` names an audit service
    /// (calls stay in process when it is registered in `local`).
    pub fn new(
        service: &'static str,
        db: DatabaseConnection,
        settings: &OutboxConfig,
        internal_token: &str,
        local: &LocalServices,
    ) -> Result<Option<Self>, InternalCallError> {
        let Some(url) = &settings.audit_url else {
            return Ok(None);
        };
        Ok(Some(Self {
            service,
            db,
            audit: InternalClient::new(url, internal_token)?.with_local(local),
            settings: settings.clone(),
            stats: Arc::default(),
            metrics: crate::metrics::Metrics::of(service),
        }))
    }

    /// `/internal/outbox`: the backlog and what the relay has done (behind the internal token
    /// when merged into a service's internal routes).
    pub fn routes(&self) -> Router {
        Router::new()
            .route("/internal/outbox", get(status_handler))
            .with_state(self.clone())
    }

    /// The backlog and the counters.
    pub async fn status(&self) -> Result<RelayStatus, DbErr> {
        let pending = undelivered().count(&self.db).await?;
        let stats = &self.stats;
        Ok(RelayStatus {
            pending,
            delivered: stats.delivered.load(Ordering::Relaxed),
            failed_attempts: stats.failed_attempts.load(Ordering::Relaxed),
            consecutive_failures: stats.consecutive_failures.load(Ordering::Relaxed),
            pruned: stats.pruned.load(Ordering::Relaxed),
        })
    }

    /// Relays until `shutdown`: a batch whenever events wait (at once again after a full
    /// one), a look every `interval_ms` while the outbox is empty, backoff while audit fails.
    pub async fn run(self, shutdown: Shutdown) {
        let interval = Duration::from_millis(self.settings.interval_ms);
        let prune_every =
            Duration::from_secs(self.settings.prune_delivered_after_secs.clamp(1, 3600));
        let mut last_prune: Option<Instant> = None;
        let mut last_measured: Option<Instant> = None;
        loop {
            if last_measured.is_none_or(|at| at.elapsed() >= BACKLOG_GAUGE_EVERY) {
                last_measured = Some(Instant::now());
                if let Err(err) = self.measure_backlog().await {
                    tracing::debug!(service = self.service, error = %err, "cannot measure the outbox");
                }
            }
            let pause = match self.deliver_batch().await {
                Ok(Delivery::Delivered(n)) => {
                    self.recovered();
                    if n >= self.batch_size() {
                        Duration::ZERO
                    } else {
                        interval
                    }
                }
                Ok(Delivery::Busy) => interval,
                Err(err) => self.failed(&err).await,
            };
            if last_prune.is_none_or(|at| at.elapsed() >= prune_every) {
                last_prune = Some(Instant::now());
                if let Err(err) = self.prune().await {
                    tracing::warn!(service = self.service, error = %err, "pruning the outbox failed");
                }
            }
            if pause.is_zero() {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                () = shutdown.clone().wait() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// Sends the oldest undelivered events (at most `batch_size`) and marks them delivered once
    /// audit confirms them. On Postgres one replica relays at a time (a transaction-scoped
    /// advisory lock), so a service's events arrive in the order they were written.
    pub async fn deliver_batch(&self) -> Result<Delivery, RelayError> {
        if self.db.get_database_backend() != DbBackend::Postgres {
            // One process owns a SQLite file (the data directory's lock).
            let events = self.pending(&self.db).await?;
            if events.is_empty() {
                return Ok(Delivery::Delivered(0));
            }
            let span = self.batch_span(events.len());
            return async {
                let ids = self.send(events).await?;
                let _turn = crate::db::write_turn(&self.db).await;
                self.mark_delivered(&self.db, &ids).await?;
                Ok(Delivery::Delivered(ids.len()))
            }
            .instrument(span)
            .await;
        }
        let txn = self.db.begin().await?;
        let lock = txn
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_try_advisory_xact_lock(hashtext($1 || current_schema())) AS held",
                [format!("keygraph.outbox.{}.", self.service).into()],
            ))
            .await?;
        let held = lock
            .map(|row| row.try_get::<bool>("", "held"))
            .transpose()?
            .unwrap_or(false);
        if !held {
            return Ok(Delivery::Busy);
        }
        let events = self.pending(&txn).await?;
        if events.is_empty() {
            return Ok(Delivery::Delivered(0));
        }
        let span = self.batch_span(events.len());
        async {
            let ids = self.send(events).await?;
            self.mark_delivered(&txn, &ids).await?;
            txn.commit().await?;
            Ok(Delivery::Delivered(ids.len()))
        }
        .instrument(span)
        .await
    }

    /// The span of one batch on its way to audit: the root of a trace (an empty outbox,
    /// looked at every `interval_ms`, makes none).
    fn batch_span(&self, events: usize) -> tracing::Span {
        tracing::info_span!(
            crate::telemetry::RELAY_SPAN,
            otel.kind = "producer",
            service = self.service,
            events,
        )
    }

    /// Sets the backlog gauges: how many events wait, and how old the oldest is.
    async fn measure_backlog(&self) -> Result<(), DbErr> {
        let backlog = undelivered().count(&self.db).await?;
        let oldest = undelivered()
            .order_by_asc(outbox::Column::OccurredAt)
            .one(&self.db)
            .await?
            .map(|event| {
                (Utc::now() - event.occurred_at)
                    .to_std()
                    .unwrap_or_default()
            });
        self.metrics.outbox(backlog, oldest);
        Ok(())
    }

    /// Removes rows delivered longer ago than `prune_delivered_after_secs`.
    pub async fn prune(&self) -> Result<u64, DbErr> {
        let age = chrono::Duration::seconds(
            i64::try_from(self.settings.prune_delivered_after_secs).unwrap_or(i64::MAX / 1000),
        );
        let cutoff = Utc::now() - age;
        let _turn = crate::db::write_turn(&self.db).await;
        let removed = outbox::Entity::delete_many()
            .filter(outbox::Column::DeliveredAt.lt(cutoff))
            .exec(&self.db)
            .await?
            .rows_affected;
        self.stats.pruned.fetch_add(removed, Ordering::Relaxed);
        Ok(removed)
    }

    fn batch_size(&self) -> usize {
        usize::try_from(self.settings.batch_size).unwrap_or(usize::MAX)
    }

    async fn pending<C: ConnectionTrait>(&self, db: &C) -> Result<Vec<outbox::Model>, DbErr> {
        undelivered()
            .order_by_asc(outbox::Column::OccurredAt)
            .order_by_asc(outbox::Column::Id)
            .limit(u64::from(self.settings.batch_size))
            .all(db)
            .await
    }

    /// Posts the events; their ids once audit has confirmed every one.
    async fn send(&self, events: Vec<outbox::Model>) -> Result<Vec<Uuid>, RelayError> {
        let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
        let committed: Vec<DateTime<Utc>> = events.iter().map(|e| e.occurred_at).collect();
        let batch = EventBatch {
            service: self.service.to_owned(),
            events: events.into_iter().map(WireEvent::from).collect(),
        };
        let receipt: BatchReceipt = self.audit.post_json(INGEST_PATH, &batch).await?;
        let sent = ids.len() as u64;
        let confirmed = receipt.stored + receipt.duplicates;
        if confirmed != sent {
            return Err(RelayError::Receipt { sent, confirmed });
        }
        let now = Utc::now();
        for at in committed {
            self.metrics
                .relayed((now - at).to_std().unwrap_or_default());
        }
        Ok(ids)
    }

    async fn mark_delivered<C: ConnectionTrait>(&self, db: &C, ids: &[Uuid]) -> Result<(), DbErr> {
        outbox::Entity::update_many()
            .col_expr(outbox::Column::DeliveredAt, Expr::value(Utc::now()))
            .filter(outbox::Column::Id.is_in(ids.iter().copied()))
            .exec(db)
            .await?;
        self.stats
            .delivered
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn recovered(&self) {
        let failures = self.stats.consecutive_failures.swap(0, Ordering::Relaxed);
        if failures > 0 {
            tracing::info!(service = self.service, failures, "audit delivery recovered");
        }
    }

    /// Counts and logs a failed delivery; the pause before the next try.
    async fn failed(&self, err: &RelayError) -> Duration {
        self.stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
        self.metrics.relay_failed();
        let failures = self
            .stats
            .consecutive_failures
            .fetch_add(1, Ordering::Relaxed)
            + 1;
        if let Err(db) = self.count_attempt().await {
            tracing::debug!(service = self.service, error = %db, "cannot count the attempt");
        }
        let pause = backoff(
            failures,
            Duration::from_millis(self.settings.retry_base_ms),
            Duration::from_secs(self.settings.retry_max_secs),
            rand::rng().random_range(0.5..=1.0),
        );
        let backlog = self.status().await.map(|s| s.pending).ok();
        if failures == 1 {
            // Once is usual at start-up, when audit is not listening yet.
            tracing::debug!(
                service = self.service,
                error = %err,
                backlog,
                retry_in_ms = pause.as_millis() as u64,
                "audit events not delivered; retrying"
            );
        } else {
            tracing::warn!(
                service = self.service,
                error = %err,
                failures,
                backlog,
                retry_in_ms = pause.as_millis() as u64,
                "audit events not delivered; they stay in the outbox"
            );
        }
        pause
    }

    /// `attempts + 1` on the events the failed batch held (the oldest waiting).
    async fn count_attempt(&self) -> Result<(), DbErr> {
        let ids: Vec<Uuid> = self
            .pending(&self.db)
            .await?
            .into_iter()
            .map(|e| e.id)
            .collect();
        if ids.is_empty() {
            return Ok(());
        }
        let _turn = crate::db::write_turn(&self.db).await;
        outbox::Entity::update_many()
            .col_expr(
                outbox::Column::Attempts,
                sea_orm::sea_query::ExprTrait::add(Expr::col(outbox::Column::Attempts), 1),
            )
            .filter(outbox::Column::Id.is_in(ids))
            .exec(&self.db)
            .await?;
        Ok(())
    }
}

/// Starts the relay of `service`'s outbox beside its server when `outbox.audit_url` is set,
/// and adds its `/internal/outbox` status (behind the internal token) to `router`.
pub fn start(
    service: &'static str,
    db: &DatabaseConnection,
    config: &crate::config::Config,
    internal_token: &str,
    local: &LocalServices,
    router: Router,
    shutdown: Shutdown,
) -> Result<Router, InternalCallError> {
    let Some(relay) = Relay::new(service, db.clone(), &config.outbox, internal_token, local)?
    else {
        return Ok(router);
    };
    let routes = crate::internal::protect(
        relay.routes(),
        crate::internal::InternalToken::new(internal_token),
    );
    tokio::spawn(relay.run(shutdown).in_this_service());
    Ok(router.merge(routes))
}

/// The outbox's events audit has not confirmed yet.
fn undelivered() -> sea_orm::Select<outbox::Entity> {
    outbox::Entity::find().filter(outbox::Column::DeliveredAt.is_null())
}

/// How often the relay measures its backlog for the metrics.
const BACKLOG_GAUGE_EVERY: Duration = Duration::from_secs(5);

async fn status_handler(State(relay): State<Relay>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match relay.status().await {
        Ok(status) => Json(status).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "outbox status failed");
            (
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({
                    "error": "unavailable",
                    "message": "the outbox cannot be read",
                })),
            )
                .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batch is a contract between a service and audit, which may run different
    /// versions for a while: a renamed field would stop delivery.
    #[test]
    fn the_wire_format_is_fixed() {
        let id = Uuid::from_u128(1);
        let batch = EventBatch {
            service: "auth".into(),
            events: vec![WireEvent {
                id,
                occurred_at: DateTime::from_timestamp(1_764_756_000, 123_456_000).expect("time"),
                actor_id: Some(id),
                action: "auth.login.succeeded".into(),
                target_type: "session".into(),
                target_id: Some("s1".into()),
                outcome: "success".into(),
                metadata: serde_json::json!({ "method": "password" }),
                request_id: Some("r1".into()),
                client_address: Some("127.0.0.2".into()),
            }],
        };
        let expected = serde_json::json!({
            "service": "auth",
            "events": [{
                "id": "00000000-0000-0000-0000-000000000001",
                "occurredAt": "2025-12-03T10:00:00.123456Z",
                "actorId": "00000000-0000-0000-0000-000000000001",
                "action": "auth.login.succeeded",
                "targetType": "session",
                "targetId": "s1",
                "outcome": "success",
                "metadata": { "method": "password" },
                "requestId": "r1",
                "clientAddress": "127.0.0.2",
            }],
        });
        assert_eq!(serde_json::to_value(&batch).expect("encode"), expected);
        let receipt: BatchReceipt =
            serde_json::from_value(serde_json::json!({ "stored": 1, "duplicates": 2 }))
                .expect("receipt");
        assert_eq!(
            receipt,
            BatchReceipt {
                stored: 1,
                duplicates: 2
            }
        );
    }
}
