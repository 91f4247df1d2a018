//! Audit subgraph: the tamper-evident log every service's outbox relay feeds. Events are
//! stored once each (by id), in a SHA-256 hash chain, with Ed25519-signed checkpoints of its
//! head; the log is queried, verified, exported and pruned here.
//!
//! [`build`] assembles the service so the `keygraph` launcher, the per-service command, the
//! tests and the benchmark all start the same code.

pub mod chain;
pub mod entity;
pub mod export;
pub mod internal;
pub mod schema;
pub mod service;

use std::{sync::Arc, time::Duration};

use axum::{
    Extension, Json, Router,
    extract::State,
    http::{HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use keygraph_kernel::telemetry::InThisService as _;
use keygraph_kernel::{
    config::Config,
    db::{DatabaseTarget, connect_and_migrate},
    graphql,
    http::{self, RequestMeta, Shutdown},
    internal::{self as internal_endpoints, InternalToken, LocalServices},
    secrets,
    token::TokenVerifier,
};
use keygraph_migrations::audit::Migrator;
use sea_orm::DatabaseConnection;

use crate::{chain::CheckpointSigner, schema::AuditSchema, service::Audit};

pub const SERVICE: &str = "audit";
/// Where the public keys that sign checkpoints are served.
pub const KEYS_PATH: &str = "/.well-known/audit-keys.json";

/// A ready-to-serve audit service.
pub struct AuditService {
    pub router: Router,
    pub db: DatabaseConnection,
    pub audit: Arc<Audit>,
    checkpoint_interval: Duration,
    retention: Option<chrono::Duration>,
}

impl AuditService {
    /// Starts the background work (signed checkpoints, retention); it stops with `shutdown`.
    pub fn spawn_workers(&self, shutdown: Shutdown) {
        tokio::spawn(
            self.audit
                .clone()
                .run_maintenance(self.checkpoint_interval, self.retention, shutdown)
                .in_this_service(),
        );
    }
}

#[derive(Clone)]
struct GraphqlState {
    schema: AuditSchema,
    documents: Arc<graphql::Documents>,
    verifier: TokenVerifier,
}

/// Connects to the audit database and runs its migrations.
pub async fn connect(config: &Config) -> anyhow::Result<DatabaseConnection> {
    let url = config.database_url_for(SERVICE, config.audit.database_url.as_deref());
    Ok(connect_and_migrate::<Migrator>(DatabaseTarget {
        service: SERVICE,
        url: &url,
        schema: &config.audit.schema,
        pool: &config.database,
    })
    .await?)
}

/// The log over its database, signing with the configured key (what `keygraph audit export`
/// uses without serving anything).
pub async fn open(config: &Config) -> anyhow::Result<Audit> {
    let db = connect(config).await?;
    let signer = CheckpointSigner::from_seed(&secrets::audit_signing_seed(config)?);
    Ok(Audit::new(db, signer).await?)
}

/// Connects, migrates and assembles the service.
pub async fn build(config: &Config, internal_token: &str) -> anyhow::Result<AuditService> {
    let audit = Arc::new(open(config).await?);
    let db = audit.db().clone();
    let state = GraphqlState {
        schema: schema::build_schema(audit.clone()),
        documents: Arc::new(
            graphql::Documents::new(schema::LIMITS).with_introspection(config.introspection()),
        ),
        verifier: TokenVerifier::for_service("audit", &config.tokens, internal_token)?,
    };
    let router = Router::new()
        .route("/graphql", post(graphql_handler).get(graphql_handler))
        .with_state(state)
        .route(KEYS_PATH, get(public_keys).with_state(audit.clone()))
        .merge(internal_endpoints::protect(
            internal::routes(audit.clone()),
            InternalToken::new(internal_token),
        ));
    Ok(AuditService {
        router,
        db,
        audit,
        checkpoint_interval: Duration::from_secs(config.audit.checkpoint_interval_secs),
        retention: config
            .audit
            .retention_days
            .map(|days| chrono::Duration::days(i64::from(days))),
    })
}

/// Runs the service on its configured address until `shutdown`, then closes the pool. It
/// registers itself in `local` while it serves, so relays in this process reach it there.
pub async fn run(
    config: &Config,
    internal_token: &str,
    local: &LocalServices,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    // Bind first: a taken port fails before any database work.
    let listener = http::bind(SERVICE, config.audit.listen).await?;
    let service = build(config, internal_token).await?;
    service.spawn_workers(shutdown.clone());
    http::serve_with_database(
        SERVICE,
        listener,
        service.router,
        service.db,
        http::Shell::for_subgraph(&config.http, internal_token, local)
            .map_err(anyhow::Error::msg)?,
        shutdown,
    )
    .await?;
    Ok(())
}

async fn graphql_handler(
    State(state): State<GraphqlState>,
    Extension(meta): Extension<RequestMeta>,
    method: Method,
    headers: HeaderMap,
    graphql::GraphqlRequest(request): graphql::GraphqlRequest,
) -> Response {
    graphql::execute(
        &state.schema,
        &state.documents,
        &state.verifier,
        method,
        &headers,
        meta,
        request,
    )
    .await
}

/// The public keys that have signed checkpoints, as a JWK set (`OKP`, `Ed25519`).
async fn public_keys(State(audit): State<Arc<Audit>>) -> Response {
    match audit.keys().await {
        Ok(keys) => Json(serde_json::json!({
            "keys": keys
                .into_iter()
                .map(|k| serde_json::json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "alg": "EdDSA",
                    "use": "sig",
                    "kid": k.key_id,
                    "x": k.public_key,
                }))
                .collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "reading the audit keys failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({
                    "error": "unavailable",
                    "message": "the audit keys cannot be read now",
                })),
            )
                .into_response()
        }
    }
}
