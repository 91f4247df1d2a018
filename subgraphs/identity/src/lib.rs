//! Identity subgraph: users, credentials, email verification and password reset.
//!
//! [`build`] assembles the service (database, migrations, mailer, schema, routes) so the
//! `keygraph` launcher, the per-service command and the tests all start the same code.

pub mod email;
pub mod entity;
pub mod internal;
pub mod mail;
pub mod mailed_token;
pub mod password;
pub mod permissions;
pub mod schema;
pub mod service;

use std::sync::Arc;

use async_graphql_axum::{GraphQLRequest, GraphQLResponse};
use axum::{
    Extension, Router,
    extract::State,
    http::{HeaderMap, Method, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::{get, post},
};
use keygraph_kernel::{
    config::Config,
    db::{DatabaseTarget, connect_and_migrate},
    guard::Authentication,
    http::{self, RequestMeta, Shutdown},
    internal::{self as internal_endpoints, InternalToken},
    token::TokenVerifier,
};
use keygraph_migrations::identity::Migrator;
use sea_orm::DatabaseConnection;

use crate::{mail::Mailer, schema::IdentitySchema, service::Identity};

pub const SERVICE: &str = "identity";

/// A ready-to-serve identity service.
pub struct IdentityService {
    pub router: Router,
    pub db: DatabaseConnection,
}

#[derive(Clone)]
struct GraphqlState {
    schema: IdentitySchema,
    verifier: TokenVerifier,
}

/// Connects and migrates the database and assembles the routes.
pub async fn build(config: &Config, internal_token: &str) -> anyhow::Result<IdentityService> {
    let url = config.database_url_for(SERVICE, config.identity.database_url.as_deref());
    let db = connect_and_migrate::<Migrator>(DatabaseTarget {
        service: SERVICE,
        url: &url,
        schema: &config.identity.schema,
        pool: &config.database,
    })
    .await?;
    let mailer = Mailer::from_config(&config.mail, config.data_dir.join("mail"))?;
    let identity = Arc::new(Identity::new(db.clone(), config, mailer)?);
    let state = GraphqlState {
        schema: schema::build_schema(identity.clone()),
        verifier: TokenVerifier::from_config(&config.tokens)?,
    };
    let router = Router::new()
        .route("/graphql", post(graphql).get(graphql))
        .route("/verify-email", get(link_page))
        .route("/reset-password", get(link_page))
        .with_state(state)
        .merge(internal_endpoints::protect(
            internal::routes(identity),
            InternalToken::new(internal_token),
        ));
    Ok(IdentityService { router, db })
}

/// Runs the service on its configured address until `shutdown`, then closes the pool.
pub async fn run(config: &Config, internal_token: &str, shutdown: Shutdown) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.identity.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!("identity: cannot listen on {}: {e}", config.identity.listen)
        })?;
    let service = build(config, internal_token).await?;
    http::serve(
        SERVICE,
        listener,
        service.router,
        &config.http,
        http::database_readiness(service.db.clone()),
        shutdown,
    )
    .await?;
    service.db.close().await?;
    Ok(())
}

async fn graphql(
    State(state): State<GraphqlState>,
    Extension(meta): Extension<RequestMeta>,
    method: Method,
    headers: HeaderMap,
    request: GraphQLRequest,
) -> Response {
    let mut request = request.into_inner();
    // GET must be safe: a link or an <img> must never change state (GraphQL over HTTP).
    if method == Method::GET && selects_mutation(&mut request) {
        let body = serde_json::json!({ "errors": [{
            "message": "mutations must be sent with POST",
            "extensions": { "code": "BAD_USER_INPUT" },
        }] });
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            [(header::ALLOW, "POST")],
            axum::Json(body),
        )
            .into_response();
    }
    let authentication = authenticate(&state.verifier, &headers).await;
    GraphQLResponse::from(
        state
            .schema
            .execute(request.data(authentication).data(meta))
            .await,
    )
    .into_response()
}

/// Whether the operation the request would run is a mutation. Unparsable documents and
/// ambiguous selections are left to the executor, which reports them.
fn selects_mutation(request: &mut async_graphql::Request) -> bool {
    use async_graphql::parser::types::{DocumentOperations, OperationType};
    let name = request.operation_name.clone();
    let Ok(document) = request.parsed_query() else {
        return false;
    };
    let operation = match (&document.operations, name) {
        (DocumentOperations::Single(op), _) => Some(op),
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name.as_str()),
        (DocumentOperations::Multiple(_), None) => None,
    };
    operation.is_some_and(|op| op.node.ty == OperationType::Mutation)
}

/// Reads `Authorization: Bearer …`; a refused token is remembered with its reason, so
/// operations that need no token still work and those that do say why it was refused.
pub async fn authenticate(verifier: &TokenVerifier, headers: &HeaderMap) -> Authentication {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Authentication::Anonymous;
    };
    let token = value.to_str().ok().and_then(|v| {
        v.strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
    });
    match token {
        Some(token) => match verifier.verify(token.trim()).await {
            Ok(principal) => Authentication::Authenticated(principal),
            Err(reason) => Authentication::Invalid(reason),
        },
        None => Authentication::Invalid(keygraph_kernel::token::TokenError::Malformed(
            "the Authorization header must be `Bearer <token>`".into(),
        )),
    }
}

/// The page behind mailed links: it asks the user to confirm, then calls the mutation.
async fn link_page() -> Html<&'static str> {
    Html(include_str!("pages/link.html"))
}
