//! The audit service alone on a loopback port over a fresh database, fed through its
//! internal endpoint as a relay feeds it.

#![allow(dead_code)]

use std::sync::Arc;

use chrono::Utc;
use keygraph_audit::service::Audit;
use keygraph_kernel::{
    config::Config,
    testing::{Answer, Backend, INTERNAL_TOKEN, TestDatabase, TestServer, TestSigner, test_config},
};
use sea_orm::DatabaseConnection;
use serde_json::{Value, json};
use uuid::Uuid;

/// The checkpoint key of every test stack (base64 of 32 bytes).
pub const SIGNING_KEY: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

pub struct Stack {
    pub server: TestServer,
    pub audit: Arc<Audit>,
    pub db: DatabaseConnection,
    pub signer: TestSigner,
    pub config: Config,
    _database: TestDatabase,
    _data: tempfile::TempDir,
}

impl Stack {
    /// `None` (test skipped) for Postgres without `TEST_DATABASE_URL`.
    pub async fn start(backend: Backend) -> Option<Self> {
        let database = TestDatabase::new(backend, "audit")?;
        let data = tempfile::tempdir().expect("tempdir");
        let signer = TestSigner::new("audit-test");
        let mut config = test_config(data.path(), &signer);
        config.audit.database_url = Some(database.url.clone());
        config.audit.schema = database.schema.clone();
        config.audit.signing_key = Some(SIGNING_KEY.into());
        let service = keygraph_audit::build(&config, INTERNAL_TOKEN)
            .await
            .expect("audit service");
        let db = service.db.clone();
        let audit = service.audit.clone();
        let server = TestServer::start(
            "audit",
            service.router,
            &config,
            Arc::new(|| Box::pin(async { true })),
            TestServer::shutdown_pair(),
        )
        .await;
        Some(Self {
            server,
            audit,
            db,
            signer,
            config,
            _database: database,
            _data: data,
        })
    }

    /// POSTs a batch to the ingest endpoint with the internal token.
    pub async fn send(&self, service: &str, events: &[Value]) -> (u16, Value) {
        self.server
            .internal(
                reqwest::Method::POST,
                "/internal/events",
                Some(json!({ "service": service, "events": events })),
                Some(INTERNAL_TOKEN),
            )
            .await
    }

    pub async fn gql(&self, query: &str, variables: Value, token: Option<&str>) -> Answer {
        self.server.gql(query, variables, token).await
    }

    /// A token for `user` holding `scopes`.
    pub fn token(&self, user: Uuid, scopes: &[&str]) -> String {
        self.signer.token(user, scopes)
    }
}

/// An outbox event as a relay sends it.
pub fn event(action: &str, actor: Option<Uuid>, target: &str) -> Value {
    json!({
        "id": Uuid::now_v7(),
        "occurredAt": Utc::now(),
        "actorId": actor,
        "action": action,
        "targetType": "user",
        "targetId": target,
        "outcome": "success",
        "metadata": { "z": 1, "a": "two" },
        "requestId": "req-1",
        "clientAddress": "127.0.0.2",
    })
}
