//! The router's health and metrics routes: `/health` (alive), `/ready` (a supergraph is
//! served) and `/metrics` (Prometheus text), and the readiness check the kernel's server
//! asks before it reports ready.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use keygraph_kernel::http::ReadinessCheck;
use serde_json::json;

use crate::server::RouterState;

/// `/health`: the process answers.
pub(crate) async fn live() -> axum::Json<serde_json::Value> {
    axum::Json(json!({ "status": "live" }))
}

/// `/metrics` alone, for `router.metrics.listen`.
pub fn metrics_routes(state: Arc<RouterState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Prometheus text exposition of the router's metrics.
pub(crate) async fn metrics(State(state): State<Arc<RouterState>>) -> Response {
    let graph = state.graph();
    let counters = &state.edge.counters;
    let body = state.metrics.render(
        graph.as_ref().map_or(0, |g| g.cached_plans()),
        graph.is_some(),
        counters.is_shared(),
        counters.unavailable_total(),
    );
    (
        [(header::CONTENT_TYPE, keygraph_kernel::metrics::CONTENT_TYPE)],
        body,
    )
        .into_response()
}

/// Ready once a supergraph is being served.
pub fn readiness(state: Arc<RouterState>) -> ReadinessCheck {
    Arc::new(move || {
        let ready = state.graph().is_some();
        Box::pin(async move { ready })
    })
}

pub(crate) async fn ready(State(state): State<Arc<RouterState>>) -> Response {
    if state.graph().is_some() {
        axum::Json(json!({ "status": "ready" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "status": "unavailable", "reason": "no supergraph composed yet" })),
        )
            .into_response()
    }
}
