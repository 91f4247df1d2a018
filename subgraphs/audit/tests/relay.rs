//! The kernel's outbox relay against the audit service: events leave the outbox only once
//! audit has confirmed them, a refusal or a short receipt leaves them waiting (counted), the
//! embedded default's calls stay in process, and delivered rows are pruned. On SQLite, and
//! on Postgres when `TEST_DATABASE_URL` is set.

mod common;

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{Json, Router, http::StatusCode, routing::post};
use common::Stack;
use keygraph_kernel::{
    config::OutboxConfig,
    db::{DatabaseTarget, connect_and_migrate},
    http::RequestMeta,
    internal::LocalServices,
    outbox::{AuditEvent, entity as outbox},
    relay::{Delivery, Relay},
    testing::{Backend, INTERNAL_TOKEN, TestDatabase, TestServer},
};
use keygraph_migrations::authz::Migrator;
use sea_orm::{ColumnTrait as _, DatabaseConnection, EntityTrait as _, QueryFilter as _};
use serde_json::json;

fn settings(url: &str) -> OutboxConfig {
    OutboxConfig {
        audit_url: Some(url.to_owned()),
        batch_size: 2,
        interval_ms: 10,
        retry_base_ms: 10,
        retry_max_secs: 1,
        prune_delivered_after_secs: 3600,
    }
}

/// A service database with an outbox (authz's), holding `n` events.
async fn outbox_with(backend: Backend, n: usize) -> Option<(TestDatabase, DatabaseConnection)> {
    let database = TestDatabase::new(backend, "authz")?;
    let pool = keygraph_kernel::config::Config::from_sources(None, Vec::new())
        .expect("defaults")
        .database;
    let db = connect_and_migrate::<Migrator>(DatabaseTarget {
        service: "authz",
        url: &database.url,
        schema: &database.schema,
        pool: &pool,
    })
    .await
    .expect("migrate");
    for i in 0..n {
        AuditEvent::new("authz.role.created", "role", format!("r{i}"))
            .metadata(json!({ "n": i }))
            .record(&db, &RequestMeta::default())
            .await
            .expect("record");
    }
    Some((database, db))
}

async fn pending(db: &DatabaseConnection) -> Vec<outbox::Model> {
    outbox::Entity::find()
        .filter(outbox::Column::DeliveredAt.is_null())
        .all(db)
        .await
        .expect("outbox")
}

async fn events_leave_only_when_audit_confirms(backend: Backend) {
    let Some((_database, db)) = outbox_with(backend, 3).await else {
        return;
    };
    // An audit that refuses, then one that confirms less than it was sent.
    let calls = Arc::new(AtomicUsize::new(0));
    let answered = calls.clone();
    let failing = Router::new().route(
        "/internal/events",
        post(move || {
            let call = answered.fetch_add(1, Ordering::SeqCst);
            async move {
                if call == 0 {
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        Json(json!({ "error": "unavailable" })),
                    )
                } else {
                    (
                        StatusCode::OK,
                        Json(json!({ "stored": 1, "duplicates": 0 })),
                    )
                }
            }
        }),
    );
    let config = keygraph_kernel::config::Config::from_sources(None, Vec::new()).expect("defaults");
    let server = TestServer::start(
        "audit",
        failing,
        &config,
        Arc::new(|| Box::pin(async { true })),
        TestServer::shutdown_pair(),
    )
    .await;
    let relay = Relay::new(
        "authz",
        db.clone(),
        &settings(&server.base),
        INTERNAL_TOKEN,
        &LocalServices::default(),
    )
    .expect("client")
    .expect("a relay");
    for expected in ["HTTP 503", "confirmed 1 of 2"] {
        let err = relay.deliver_batch().await.expect_err("not confirmed");
        assert!(err.to_string().contains(expected), "{err}");
        assert_eq!(pending(&db).await.len(), 3, "nothing is marked: {err}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // The real audit service: the oldest first, two per batch, then nothing left.
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let relay = Relay::new(
        "authz",
        db.clone(),
        &settings(&stack.server.base),
        INTERNAL_TOKEN,
        &LocalServices::default(),
    )
    .expect("client")
    .expect("a relay");
    assert_eq!(
        relay.deliver_batch().await.expect("delivered"),
        Delivery::Delivered(2)
    );
    assert_eq!(
        relay.deliver_batch().await.expect("delivered"),
        Delivery::Delivered(1)
    );
    assert_eq!(
        relay.deliver_batch().await.expect("delivered"),
        Delivery::Delivered(0)
    );
    assert!(pending(&db).await.is_empty());
    let status = relay.status().await.expect("status");
    assert_eq!((status.pending, status.delivered), (0, 3));
    let log = stack.audit.event_range(1, 10, 10).await.expect("events");
    let names: Vec<i64> = log
        .iter()
        .map(|e| e.metadata["n"].as_i64().unwrap_or(-1))
        .collect();
    assert_eq!(names, vec![0, 1, 2], "in the order they were written");
    assert!(log.iter().all(|e| e.service == "authz"));

    // Pruned once delivered long enough ago.
    let mut prune_now = settings(&stack.server.base);
    prune_now.prune_delivered_after_secs = 0;
    let relay = Relay::new(
        "authz",
        db.clone(),
        &prune_now,
        INTERNAL_TOKEN,
        &LocalServices::default(),
    )
    .expect("client")
    .expect("a relay");
    assert_eq!(relay.prune().await.expect("prune"), 3);
    assert!(
        outbox::Entity::find()
            .all(&db)
            .await
            .expect("outbox")
            .is_empty()
    );
}

/// In the embedded default the audit service is registered in process: the relay reaches it
/// there, at a base URL where nothing listens.
async fn embedded_calls_stay_in_process(backend: Backend) {
    let Some((_database, db)) = outbox_with(backend, 2).await else {
        return;
    };
    let Some(stack) = Stack::start(backend).await else {
        return;
    };
    let service = keygraph_audit::build(&stack.config, INTERNAL_TOKEN)
        .await
        .expect("audit");
    let local = LocalServices::default();
    let nowhere: std::net::SocketAddr = "127.0.0.1:9".parse().expect("address");
    local.register(nowhere, service.router);
    let relay = Relay::new(
        "authz",
        db.clone(),
        &settings("http://127.0.0.1:9"),
        INTERNAL_TOKEN,
        &local,
    )
    .expect("client")
    .expect("a relay");
    assert_eq!(
        relay.deliver_batch().await.expect("in process"),
        Delivery::Delivered(2)
    );
    assert_eq!(stack.audit.bounds().await.expect("bounds"), Some((1, 2)));
    let no_audit = OutboxConfig {
        audit_url: None,
        ..settings("http://127.0.0.1:9")
    };
    assert!(
        Relay::new("authz", db, &no_audit, INTERNAL_TOKEN, &local)
            .expect("client")
            .is_none(),
        "no audit_url: events stay in the outbox"
    );
}

keygraph_kernel::on_both_backends!(
    events_leave_only_when_audit_confirms,
    embedded_calls_stay_in_process,
);
