//! Auth subgraph: sign-in, Ed25519 access tokens, rotating refresh tokens, sessions, signing
//! keys and JWKS.
//!
//! [`build`] assembles the service so the `keygraph` launcher, the per-service command and the
//! tests all start the same code.

pub mod entity;
pub mod internal;
pub mod keys;
pub mod mfa;
pub mod passkeys;
pub mod schema;
pub mod service;
pub mod totp;

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use keygraph_kernel::{
    config::Config,
    db::{DatabaseTarget, connect_and_migrate},
    graphql,
    http::{self, Shutdown},
    internal::{self as internal_endpoints, InternalToken, LocalServices},
    token::TokenVerifier,
};
use keygraph_migrations::auth::Migrator;
use sea_orm::DatabaseConnection;

use crate::{
    keys::{KeyEncryptionKey, KeyRing},
    service::Auth,
};

pub const SERVICE: &str = "auth";

/// How long verifiers may cache the JWKS answer.
const JWKS_MAX_AGE_SECS: u64 = 300;

/// A ready-to-serve auth service.
pub struct AuthService {
    pub router: Router,
    pub db: DatabaseConnection,
}

/// Connects, migrates, makes sure signing keys exist and assembles the routes. Calls to
/// services registered in `local` stay in this process.
pub async fn build(
    config: &Config,
    internal_token: &str,
    local: &LocalServices,
) -> anyhow::Result<AuthService> {
    let url = config.database_url_for(SERVICE, config.auth.database_url.as_deref());
    let db = connect_and_migrate::<Migrator>(DatabaseTarget {
        service: SERVICE,
        url: &url,
        schema: &config.auth.schema,
        pool: &config.database,
    })
    .await?;
    let keys = KeyRing::new(
        db.clone(),
        KeyEncryptionKey::from_config(config)?,
        Duration::from_secs(config.auth.access_token_ttl_secs),
    );
    keys.ensure_keys().await?;
    let counters = Arc::new(
        keygraph_kernel::counters::Counters::from_config(&config.redis)
            .map_err(anyhow::Error::msg)?,
    );
    let auth = Arc::new(Auth::new(
        db.clone(),
        keys,
        config,
        internal_token,
        local,
        counters,
        passkeys::Passkeys::from_config(&config.auth.mfa.passkeys).map_err(anyhow::Error::msg)?,
    )?);
    let verifier = TokenVerifier::for_service("auth", &config.tokens, internal_token)?;
    let router = Router::new()
        .route(
            "/graphql",
            graphql::endpoint(
                schema::build_schema(auth.clone()),
                graphql::Documents::new(schema::LIMITS).with_introspection(config.introspection()),
                verifier,
            ),
        )
        .route("/.well-known/jwks.json", get(jwks).with_state(auth.clone()))
        .merge(internal_endpoints::protect(
            internal::routes(auth.clone()),
            InternalToken::new(internal_token),
        ));
    Ok(AuthService { router, db })
}

/// Runs the service on its configured address until `shutdown`, then closes the pool.
/// Internal calls to services registered in `local` stay in this process, and it registers
/// itself there while it serves.
pub async fn run(
    config: &Config,
    internal_token: &str,
    local: &LocalServices,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    // Bind first: a taken port fails before any database work.
    let listener = http::bind(SERVICE, config.auth.listen).await?;
    let service = build(config, internal_token, local).await?;
    let router = keygraph_kernel::relay::start(
        SERVICE,
        &service.db,
        config,
        internal_token,
        local,
        service.router,
        shutdown.clone(),
    )?;
    http::serve_with_database(
        SERVICE,
        listener,
        router,
        service.db,
        http::Shell::for_subgraph(&config.http, internal_token, local)
            .map_err(anyhow::Error::msg)?,
        shutdown,
    )
    .await?;
    Ok(())
}

/// The public signing keys, cacheable for a few minutes (verifiers refetch on an unknown `kid`).
async fn jwks(State(auth): State<Arc<Auth>>) -> Response {
    match auth.keys().jwks().await {
        Ok(keys) => {
            let mut response = Json(serde_json::json!({ "keys": keys })).into_response();
            if let Ok(value) =
                HeaderValue::from_str(&format!("public, max-age={JWKS_MAX_AGE_SECS}"))
            {
                response.headers_mut().insert(header::CACHE_CONTROL, value);
            }
            response
        }
        Err(err) => {
            tracing::error!(error = %err, "JWKS failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({ "error": "keys unavailable" })),
            )
                .into_response()
        }
    }
}
