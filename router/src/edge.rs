//! The router's HTTP edge: the routes, CORS, and reading a GraphQL request from a POST's
//! JSON body or a GET's query parameters; what cannot be read is refused here, with
//! `BAD_REQUEST`, before anything runs. A request that was read goes on to
//! [`crate::pipeline`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use keygraph_kernel::ErrorCode;
use keygraph_kernel::config::CorsConfig;
use keygraph_kernel::http::{BodyLimit, RequestMeta};
use serde_json::{Map, Value as Json, json};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::health::{live, metrics, ready};
use crate::server::RouterState;

/// The router's routes (without the kernel's standard layers).
pub fn routes(state: Arc<RouterState>) -> Router {
    let mut router = Router::new()
        .route(
            "/graphql",
            get(graphql_get)
                .post(graphql_post)
                .layer(axum::middleware::from_fn_with_state(state.clone(), track)),
        )
        .route("/health", get(live))
        .route("/ready", get(ready))
        .route("/graphiql/{asset}", get(crate::graphiql::asset));
    if state.config.metrics.listen.is_none() {
        if state.config.metrics.require_token == Some(false) {
            router = router.route("/metrics", get(metrics));
        } else if let Some(token) = state.edge.internal_token.clone() {
            router = router.merge(keygraph_kernel::internal::protect(
                Router::new().route("/metrics", get(metrics)),
                token,
            ));
        }
        // Required without a token to compare: nobody could present it, so it is not served.
    }
    router = router.layer(cors_layer(&state.config.cors));
    router.with_state(state)
}

/// Counts each `/graphql` request by status and duration.
async fn track(
    State(state): State<Arc<RouterState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let started = std::time::Instant::now();
    let response = next.run(request).await;
    state
        .metrics
        .record_request(response.status().as_u16(), started.elapsed());
    response
}

/// CORS for browsers on other origins: the configured ones, and in development any
/// `localhost` one. Preflights are answered whatever the origin; only an allowed one gets the
/// headers that let the browser go on.
fn cors_layer(cors: &CorsConfig) -> CorsLayer {
    let allow = if cors.allowed_origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        let listed: Vec<HeaderValue> = cors
            .allowed_origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
            .collect();
        let localhost = cors.allow_localhost.unwrap_or(false);
        AllowOrigin::predicate(move |origin, _| {
            listed.contains(origin) || (localhost && is_localhost_origin(origin.as_bytes()))
        })
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("traceparent"),
        ])
        .expose_headers([header::HeaderName::from_static("x-request-id")])
        .max_age(Duration::from_secs(600))
}

/// `http://localhost`, `http://127.0.0.1` or `http://[::1]`, with or without a port.
fn is_localhost_origin(origin: &[u8]) -> bool {
    let Some(host) = origin.strip_prefix(b"http://") else {
        return false;
    };
    [&b"localhost"[..], b"127.0.0.1", b"[::1]"]
        .iter()
        .any(|name| match host.strip_prefix(*name) {
            Some(b"") => true,
            Some(rest) => rest
                .strip_prefix(b":")
                .is_some_and(|port| !port.is_empty() && port.iter().all(u8::is_ascii_digit)),
            None => false,
        })
}

/// A GraphQL request as sent over HTTP.
#[derive(Debug, Default)]
pub(crate) struct GraphqlRequest {
    pub(crate) query: String,
    pub(crate) operation_name: Option<String>,
    pub(crate) variables: Map<String, Json>,
}

/// A request the router refuses before it runs anything.
pub(crate) struct Refusal {
    status: StatusCode,
    message: String,
    code: ErrorCode,
    /// Seconds to wait (`retryAfter`, and the `Retry-After` header).
    pub(crate) retry_after: Option<u64>,
}

impl Refusal {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            code,
            retry_after: None,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, message)
    }
}

impl Refusal {
    fn body(&self) -> Vec<u8> {
        let mut extensions = json!({ "code": self.code.as_str() });
        if let Some(seconds) = self.retry_after {
            extensions["retryAfter"] = json!(seconds);
        }
        let body = json!({ "errors": [{ "message": self.message, "extensions": extensions }] });
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

fn parse_variables(value: Option<Json>) -> Result<Map<String, Json>, Refusal> {
    match value {
        None | Some(Json::Null) => Ok(Map::new()),
        Some(Json::Object(map)) => Ok(map),
        Some(_) => Err(Refusal::bad_request("`variables` must be a JSON object")),
    }
}

fn request_from_json(body: &[u8]) -> Result<GraphqlRequest, Refusal> {
    let value: Json = serde_json::from_slice(body)
        .map_err(|e| Refusal::bad_request(format!("the body is not valid JSON: {e}")))?;
    let Json::Object(mut object) = value else {
        return Err(Refusal::bad_request(
            "the body must be a JSON object with `query` (batched requests are not supported)",
        ));
    };
    let query = match object.remove("query") {
        Some(Json::String(query)) => query,
        None | Some(Json::Null) => {
            return Err(Refusal::bad_request("the request has no `query`"));
        }
        Some(_) => return Err(Refusal::bad_request("`query` must be a string")),
    };
    let operation_name = match object.remove("operationName") {
        None | Some(Json::Null) => None,
        Some(Json::String(name)) => Some(name),
        Some(_) => return Err(Refusal::bad_request("`operationName` must be a string")),
    };
    Ok(GraphqlRequest {
        query,
        operation_name,
        variables: parse_variables(object.remove("variables"))?,
    })
}

async fn graphql_post(
    State(state): State<Arc<RouterState>>,
    Extension(meta): Extension<RequestMeta>,
    limit: Option<Extension<BodyLimit>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            return keygraph_kernel::graphql::body_refusal(&rejection, limit.map(|l| l.0));
        }
    };
    if !keygraph_kernel::graphql::is_json_body(&headers) {
        return Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::BadRequest,
            keygraph_kernel::graphql::JSON_BODY_REQUIRED,
        )
        .into_response();
    }
    match request_from_json(&body) {
        Ok(request) => crate::pipeline::execute(&state, request, false, &headers, &meta).await,
        Err(refusal) => refusal.into_response(),
    }
}

async fn graphql_get(
    State(state): State<Arc<RouterState>>,
    Extension(meta): Extension<RequestMeta>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    let Some(query) = params.get("query").cloned() else {
        if wants_html && state.config.graphiql == Some(true) {
            return crate::graphiql::page();
        }
        return Refusal::bad_request("the request has no `query` parameter").into_response();
    };
    let variables = match params
        .get("variables")
        .map(|v| serde_json::from_str::<Json>(v))
    {
        None => Ok(Map::new()),
        Some(Ok(value)) => parse_variables(Some(value)),
        Some(Err(e)) => Err(Refusal::bad_request(format!(
            "`variables` is not valid JSON: {e}"
        ))),
    };
    let request = match variables {
        Ok(variables) => GraphqlRequest {
            query,
            operation_name: params
                .get("operationName")
                .filter(|n| !n.is_empty())
                .cloned(),
            variables,
        },
        Err(refusal) => return refusal.into_response(),
    };
    crate::pipeline::execute(&state, request, true, &headers, &meta).await
}

pub(crate) fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Whether the client speaks GraphQL over HTTP's own media type (which changes statuses).
pub(crate) fn wants_graphql_response(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains(crate::answer::GRAPHQL_RESPONSE))
}
