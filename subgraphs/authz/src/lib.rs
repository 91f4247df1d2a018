//! Authz subgraph: roles, the permission catalog, role-permission and user-role grants, and
//! permission checks, with DataLoaders batching the many-to-many look-ups.
//!
//! [`build`] assembles the service so the `keygraph` launcher, the per-service command, the
//! tests and the benchmark all start the same code.

pub mod entity;
pub mod internal;
pub mod loaders;
pub mod schema;
pub mod service;

use std::sync::Arc;

use axum::{
    Extension, Router,
    extract::State,
    http::{HeaderMap, Method},
    response::Response,
    routing::post,
};
use keygraph_kernel::{
    batching::PollFence,
    config::Config,
    db::{DatabaseTarget, connect_and_migrate},
    graphql,
    http::{self, RequestMeta, Shutdown},
    internal::{self as internal_endpoints, InternalClient, InternalToken, LocalServices},
    token::TokenVerifier,
};
use keygraph_migrations::authz::Migrator;
use sea_orm::DatabaseConnection;

pub use crate::loaders::MAX_BATCH;
use crate::{loaders::Loaders, schema::AuthzSchema, service::Authz};

pub const SERVICE: &str = "authz";

/// A ready-to-serve authz service.
pub struct AuthzService {
    pub router: Router,
    pub db: DatabaseConnection,
}

#[derive(Clone)]
struct GraphqlState {
    schema: AuthzSchema,
    documents: Arc<graphql::Documents>,
    verifier: TokenVerifier,
    authz: Arc<Authz>,
    max_batch: usize,
}

/// Connects to the authz database and runs its migrations.
pub async fn connect(config: &Config) -> anyhow::Result<DatabaseConnection> {
    let url = config.database_url_for(SERVICE, config.authz.database_url.as_deref());
    Ok(connect_and_migrate::<Migrator>(DatabaseTarget {
        service: SERVICE,
        url: &url,
        schema: &config.authz.schema,
        pool: &config.database,
    })
    .await?)
}

/// Connects, migrates and assembles the service. Calls to services registered in `local` stay
/// in this process.
pub async fn build(
    config: &Config,
    internal_token: &str,
    local: &LocalServices,
) -> anyhow::Result<AuthzService> {
    let db = connect(config).await?;
    build_with(config, db, internal_token, local, MAX_BATCH).await
}

/// Assembles the service over an open database, its DataLoaders asking for at most
/// `max_batch` keys per statement (tests count its statements; the benchmark compares
/// [`MAX_BATCH`] with 1, a statement per item).
pub async fn build_with(
    config: &Config,
    db: DatabaseConnection,
    internal_token: &str,
    local: &LocalServices,
    max_batch: usize,
) -> anyhow::Result<AuthzService> {
    let identity =
        InternalClient::new(&config.authz.identity_url, internal_token)?.with_local(local);
    let authz = Authz::new(db.clone(), identity);
    let added = authz.sync_catalog().await?;
    if added > 0 {
        tracing::info!(added, "permission catalog: new codes added");
    }
    // Every role `authz.default_roles` names must exist: refuse to start otherwise.
    let authz = Arc::new(
        authz
            .with_default_roles(&config.authz.default_roles)
            .await?,
    );
    let state = GraphqlState {
        schema: schema::build_schema(authz.clone()),
        documents: Arc::new(
            graphql::Documents::new(schema::LIMITS).with_introspection(config.introspection()),
        ),
        verifier: TokenVerifier::for_service("authz", &config.tokens, internal_token)?,
        authz: authz.clone(),
        max_batch,
    };
    let router = Router::new()
        .route("/graphql", post(graphql_handler).get(graphql_handler))
        .with_state(state)
        .merge(internal_endpoints::protect(
            internal::routes(authz.clone()),
            InternalToken::new(internal_token),
        ));
    Ok(AuthzService { router, db })
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
    let listener = http::bind(SERVICE, config.authz.listen).await?;
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

async fn graphql_handler(
    State(state): State<GraphqlState>,
    Extension(meta): Extension<RequestMeta>,
    method: Method,
    headers: HeaderMap,
    graphql::GraphqlRequest(request): graphql::GraphqlRequest,
) -> Response {
    // Fresh loaders per request: batching within it, no stale data across requests. Their
    // batches start when a poll of this request's execution ends (see PollFence).
    let fence = PollFence::new();
    let request = request.data(Loaders::new(state.authz.clone(), state.max_batch, &fence));
    let execution = graphql::execute(
        &state.schema,
        &state.documents,
        &state.verifier,
        method,
        &headers,
        meta,
        request,
    );
    fence.guard(execution).await
}

/// Gives `user` the built-in `admin` role straight in authz's tables, with no caller to check
/// and no audit event: for tests and tools that need an administrator before anyone can act
/// (a running stack gets its first one from `identity.first_admin`).
pub async fn seed_administrator(db: &DatabaseConnection, user: uuid::Uuid) -> anyhow::Result<()> {
    use sea_orm::{
        ActiveModelTrait as _, ColumnTrait as _, EntityTrait as _, QueryFilter as _, Set,
    };
    let admin = entity::role::Entity::find()
        .filter(entity::role::Column::Name.eq(keygraph_migrations::authz::ADMIN_ROLE))
        .one(db)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the built-in admin role is missing"))?;
    entity::user_role::ActiveModel {
        user_id: Set(user),
        role_id: Set(admin.id),
        granted_by: Set(None),
        granted_at: Set(chrono::Utc::now()),
    }
    .insert(db)
    .await?;
    Ok(())
}
