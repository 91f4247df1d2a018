//! Serving a test subgraph over loopback HTTP: its schema (replaceable, as a deploy), how it
//! behaves (up, failing, hanging, slow), and what it received (request count, last headers
//! and variables).

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use async_graphql::{EmptyMutation, EmptySubscription, Schema};
use axum::extract::State;
use axum::routing::post;
use keygraph_kernel::testing::TestServer;
use serde_json::Value;

/// How a test subgraph behaves: up, failing with HTTP 503, or hanging.
pub const UP: u8 = 0;
pub const FAILING: u8 = 1;
pub const HANGING: u8 = 2;
/// Answers after 300 ms: long enough for requests to meet in flight.
pub const SLOW: u8 = 3;

type Executor = Arc<
    dyn Fn(async_graphql::Request) -> futures::future::BoxFuture<'static, async_graphql::Response>
        + Send
        + Sync,
>;

fn executor<Q>(query: Q) -> Executor
where
    Q: async_graphql::ObjectType + Send + Sync + 'static,
{
    let schema = Schema::build(query, EmptyMutation, EmptySubscription)
        .enable_federation()
        .finish();
    Arc::new(move |request| {
        let schema = schema.clone();
        Box::pin(async move { schema.execute(request).await })
    })
}

#[derive(Clone)]
struct Served {
    execute: Arc<std::sync::RwLock<Executor>>,
    mode: Arc<AtomicU8>,
    requests: Arc<std::sync::atomic::AtomicUsize>,
    last_headers: Arc<std::sync::Mutex<axum::http::HeaderMap>>,
    last_variables: Arc<std::sync::Mutex<Value>>,
}

async fn handle(
    State(served): State<Served>,
    headers: axum::http::HeaderMap,
    axum::Json(request): axum::Json<async_graphql::Request>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    served.requests.fetch_add(1, Ordering::SeqCst);
    *served
        .last_headers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = headers;
    *served
        .last_variables
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) =
        serde_json::to_value(&request.variables).unwrap_or_default();
    match served.mode.load(Ordering::SeqCst) {
        FAILING => return (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down").into_response(),
        HANGING => tokio::time::sleep(Duration::from_secs(30)).await,
        SLOW => tokio::time::sleep(Duration::from_millis(300)).await,
        _ => {}
    }
    let execute = served
        .execute
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    axum::Json(execute(request).await).into_response()
}

/// A running test subgraph.
pub struct Subgraph {
    pub url: String,
    execute: Arc<std::sync::RwLock<Executor>>,
    pub mode: Arc<AtomicU8>,
    pub requests: Arc<std::sync::atomic::AtomicUsize>,
    /// The headers of the last request this subgraph received.
    pub last_headers: Arc<std::sync::Mutex<axum::http::HeaderMap>>,
    last_variables: Arc<std::sync::Mutex<Value>>,
}

pub(super) async fn serve<Q>(query: Q) -> Subgraph
where
    Q: async_graphql::ObjectType + Send + Sync + 'static,
{
    let served = Served {
        execute: Arc::new(std::sync::RwLock::new(executor(query))),
        mode: Arc::new(AtomicU8::new(UP)),
        requests: Arc::default(),
        last_headers: Arc::default(),
        last_variables: Arc::default(),
    };
    let listener = TestServer::listener().await;
    let url = format!("{}/graphql", TestServer::base_of(&listener));
    let subgraph = Subgraph {
        url,
        execute: served.execute.clone(),
        mode: served.mode.clone(),
        requests: served.requests.clone(),
        last_headers: served.last_headers.clone(),
        last_variables: served.last_variables.clone(),
    };
    let app = axum::Router::new()
        .route("/graphql", post(handle))
        .with_state(served);
    tokio::spawn(async move { axum::serve(listener, app).await });
    subgraph
}

impl Subgraph {
    /// The variables of the last request this subgraph received.
    pub fn last_variables(&self) -> Value {
        self.last_variables
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Serves another schema from now on (a deploy of the subgraph).
    pub fn replace<Q>(&self, query: Q)
    where
        Q: async_graphql::ObjectType + Send + Sync + 'static,
    {
        *self
            .execute
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = executor(query);
    }
}
