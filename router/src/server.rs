//! The router's HTTP edge: `/graphql` (POST, GET, GraphiQL), health, token checks, rate
//! limits, CORS and request limits; and the task that keeps the supergraph current.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use keygraph_kernel::telemetry::InThisService as _;
use tracing::Instrument as _;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use keygraph_kernel::ErrorCode;
use keygraph_kernel::address::AddressProof;
use keygraph_kernel::config::{Config, CorsConfig, RouterConfig};
use keygraph_kernel::counters::{Counters, Unavailable};
use keygraph_kernel::guard::Authentication;
use keygraph_kernel::http::{BodyLimit, ReadinessCheck, RequestMeta, Shutdown};
use keygraph_kernel::internal::InternalToken;
use keygraph_kernel::token::TokenVerifier;
use serde_json::{Map, Value as Json, json};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::execute::{Fetched, Forwarded, PlanRun, SubgraphRequestKey};
use crate::inflight::Inflight;
use crate::operation::OperationKind;
use crate::plan::{Graph, GraphOptions, PlanError};
use crate::supergraph::{self, SubgraphSdl};
use keygraph_kernel::cache::{OperationKey, operation_key};

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// Shared by every request: the current supergraph and the edge's settings.
pub struct RouterState {
    graph: RwLock<Option<Arc<Graph>>>,
    http: reqwest::Client,
    edge: Edge,
    config: RouterConfig,
    metrics: Arc<crate::metrics::Metrics>,
    /// Client requests in flight, when identical ones share an answer.
    client_inflight: Option<Arc<Inflight<ClientRequestKey, Answered>>>,
    /// Subgraph requests in flight, when identical ones share an answer.
    subgraph_inflight: Option<Arc<Inflight<SubgraphRequestKey, Fetched>>>,
}

/// What the edge checks requests with.
#[derive(Default)]
pub struct Edge {
    /// Verifies access tokens (none: tokens are passed on unchecked, as in the benchmarks).
    pub verifier: Option<TokenVerifier>,
    /// The internal token, which `/metrics` on the router's own port asks for when
    /// `router.metrics.require_token` says so (none: it cannot be presented).
    pub internal_token: Option<InternalToken>,
    /// Signs the client address passed on to subgraphs (none: it is not passed on).
    pub address_proof: Option<AddressProof>,
    /// Where the rate limits are counted.
    pub counters: Arc<Counters>,
}

impl RouterState {
    pub fn new(config: RouterConfig, edge: Edge) -> Result<Arc<Self>, String> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .tcp_nodelay(true)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Arc::new(Self {
            graph: RwLock::new(None),
            http,
            edge,
            client_inflight: config.dedupe.client_requests.then(Arc::default),
            subgraph_inflight: config.dedupe.subgraph_requests.then(Arc::default),
            config,
            metrics: crate::metrics::Metrics::shared(),
        }))
    }

    /// The supergraph being served, if one is composed yet.
    pub fn graph(&self) -> Option<Arc<Graph>> {
        self.graph
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn options(&self) -> GraphOptions {
        GraphOptions::from(&self.config)
    }

    /// Serves `sdl` from now on, if it builds; the graph served so far stays otherwise.
    pub fn install(&self, sdl: String) -> Result<(), String> {
        let graph = Graph::new(sdl, &self.options())?;
        *self
            .graph
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::new(graph));
        Ok(())
    }

    /// Fetches every configured subgraph's SDL; the first that does not answer is named.
    pub async fn fetch_subgraph_sdls(&self) -> Result<Vec<SubgraphSdl>, String> {
        let mut out = Vec::new();
        for (name, endpoint) in &self.config.subgraphs {
            let response = self
                .http
                .post(&endpoint.url)
                .timeout(Duration::from_secs(endpoint.timeout_secs))
                .json(&json!({ "query": "{ _service { sdl } }" }))
                .send()
                .await
                .map_err(|e| {
                    format!("subgraph `{name}` at {} does not answer: {e}", endpoint.url)
                })?;
            let body: Json = response
                .json()
                .await
                .map_err(|e| format!("subgraph `{name}` answered no JSON: {e}"))?;
            let sdl = body
                .pointer("/data/_service/sdl")
                .and_then(Json::as_str)
                .ok_or_else(|| {
                    format!("subgraph `{name}` answered no `_service {{ sdl }}`: {body}")
                })?;
            out.push(SubgraphSdl {
                name: name.clone(),
                url: endpoint.url.clone(),
                sdl: sdl.to_owned(),
            });
        }
        Ok(out)
    }

    /// Reads the supergraph source once: the configured file, or the subgraphs composed.
    async fn load_source(&self) -> Result<String, String> {
        match &self.config.supergraph_file {
            Some(path) => {
                let sdl = tokio::fs::read_to_string(path).await.map_err(|e| {
                    format!("cannot read the supergraph file {}: {e}", path.display())
                })?;
                supergraph::fix_up(&sdl).map_err(|e| format!("{}: {e}", path.display()))
            }
            None => {
                let sdls = self.fetch_subgraph_sdls().await?;
                let (sdl, warnings) = supergraph::compose(&sdls).map_err(|e| e.to_string())?;
                for warning in warnings {
                    tracing::warn!(%warning, "composition warning");
                }
                Ok(sdl)
            }
        }
    }
}

/// Keeps the supergraph current: loads it at start-up (retrying with backoff while subgraphs
/// are not up), then polls every `poll_interval_secs` and recomposes when a schema changed. A
/// composition error keeps the last good supergraph and is logged with what broke.
pub async fn keep_supergraph_current(state: Arc<RouterState>, shutdown: Shutdown) {
    let mut delay = Duration::from_millis(100);
    let mut last_source: Option<String> = None;
    loop {
        match state.load_source().await {
            Ok(sdl) if last_source.as_deref() == Some(sdl.as_str()) => {}
            Ok(sdl) => match state.install(sdl.clone()) {
                Ok(()) => {
                    tracing::info!(
                        first = last_source.is_none(),
                        "supergraph composed and serving"
                    );
                    last_source = Some(sdl);
                }
                Err(err) => {
                    tracing::error!(error = %err, "the new supergraph was not installed; keeping the last good one")
                }
            },
            Err(err) if last_source.is_none() => {
                tracing::warn!(error = %err, retry_in_ms = delay.as_millis() as u64, "no supergraph yet; retrying");
            }
            Err(err) => {
                tracing::error!(error = %err, "recomposition failed; keeping the last good supergraph")
            }
        }
        let wait = if last_source.is_none() {
            let wait = delay;
            delay = (delay * 2).min(Duration::from_secs(5));
            wait
        } else if state.config.poll_interval_secs == 0 {
            shutdown.wait().await;
            return;
        } else {
            Duration::from_secs(state.config.poll_interval_secs)
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.clone().wait() => return,
        }
    }
}

/// The router's routes (without the kernel's standard layers).
pub fn routes(state: Arc<RouterState>) -> Router {
    let mut router = Router::new()
        .route(
            "/graphql",
            get(graphql_get)
                .post(graphql_post)
                .layer(axum::middleware::from_fn_with_state(state.clone(), track)),
        )
        .route(
            "/health",
            get(|| async { axum::Json(json!({ "status": "live" })) }),
        )
        .route("/ready", get(ready))
        .route("/graphiql/{asset}", get(graphiql_asset));
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

/// `/metrics` alone, for `router.metrics.listen`.
pub fn metrics_routes(state: Arc<RouterState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
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

/// Prometheus text exposition of the router's metrics.
async fn metrics(State(state): State<Arc<RouterState>>) -> Response {
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

async fn ready(State(state): State<Arc<RouterState>>) -> Response {
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
struct GraphqlRequest {
    query: String,
    operation_name: Option<String>,
    variables: Map<String, Json>,
}

/// A request the router refuses before it runs anything.
struct Refusal {
    status: StatusCode,
    message: String,
    code: ErrorCode,
    retry_after: Option<u64>,
}

impl Refusal {
    fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
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
        Ok(request) => execute(&state, request, false, &headers, &meta).await,
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
            return graphiql_page();
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
    execute(&state, request, true, &headers, &meta).await
}

fn header_string(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// What makes two client requests the same: the operation, the variables as sent, the headers
/// passed on to subgraphs (the token above all), and the media type asked for.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientRequestKey {
    operation: OperationKey,
    variables: Vec<u8>,
    authorization: Option<String>,
    traceparent: Option<String>,
    request_id: Option<String>,
    graphql_response: bool,
}

/// [`execute_in_span`] inside the operation's span (named like `query Me`, as OpenTelemetry's
/// GraphQL conventions have it).
async fn execute(
    state: &Arc<RouterState>,
    request: GraphqlRequest,
    over_get: bool,
    headers: &HeaderMap,
    meta: &RequestMeta,
) -> Response {
    let span = tracing::info_span!(
        "graphql operation",
        otel.name = tracing::field::Empty,
        graphql.operation.name = tracing::field::Empty,
        graphql.operation.type = tracing::field::Empty,
    );
    if let Some(name) = &request.operation_name {
        span.record("graphql.operation.name", name.as_str());
    }
    execute_in_span(state, request, over_get, headers, meta, &span)
        .instrument(span.clone())
        .await
}

async fn execute_in_span(
    state: &Arc<RouterState>,
    request: GraphqlRequest,
    over_get: bool,
    headers: &HeaderMap,
    meta: &RequestMeta,
    span: &tracing::Span,
) -> Response {
    let Some(graph) = state.graph() else {
        return Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServiceUnavailable,
            "the router has no supergraph yet (subgraphs not reachable); retry shortly",
        )
        .into_response();
    };
    let key = operation_key(&request.query, request.operation_name.as_deref());
    let preparation = graph
        .prepare_off_thread(key, &request.query, request.operation_name.as_deref())
        .await;
    // Documents that cannot run are limited as queries: refusing them costs a lookup.
    let kind = preparation.kind.unwrap_or(OperationKind::Query);
    span.record("graphql.operation.type", kind.as_str());
    if keygraph_kernel::telemetry::traces_enabled() {
        span.record(
            "otel.name",
            keygraph_kernel::telemetry::operation_span_name(
                kind.as_str(),
                request.operation_name.as_deref(),
            ),
        );
    }
    if over_get && kind == OperationKind::Mutation {
        let mut response = Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::BadRequest,
            "mutations are only accepted over POST",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let authentication = match &state.edge.verifier {
        None => Authentication::Anonymous,
        Some(verifier) => keygraph_kernel::graphql::authenticate(verifier, headers).await,
    };
    if let Err(refusal) = state
        .rate_limit(meta.client_addr, authentication.principal(), kind)
        .await
    {
        return refusal.into_response();
    }
    let graphql_response = wants_graphql_response(headers);
    let call = Call {
        forwarded: forwarded(state, headers, meta),
        state: state.clone(),
        graph,
        preparation,
        variables: request.variables,
        authentication,
        graphql_response,
    };
    let answered = match (&state.client_inflight, call.preparation.kind) {
        (Some(inflight), Some(OperationKind::Query)) => {
            let forwarded = &call.forwarded;
            let key = ClientRequestKey {
                operation: key,
                variables: serde_json::to_vec(&call.variables).unwrap_or_default(),
                authorization: forwarded.authorization.clone(),
                traceparent: forwarded.traceparent.clone(),
                request_id: forwarded
                    .request_id_from_client
                    .then(|| forwarded.request_id.clone()),
                graphql_response,
            };
            inflight.run(key, || call.answer()).await
        }
        _ => call.answer().await,
    };
    answered.into_response(&state.metrics, kind)
}

impl RouterState {
    /// Counts the request against its client address's limit and its user's, for its kind;
    /// the first limit reached refuses it with the seconds to wait.
    async fn rate_limit(
        &self,
        address: Option<std::net::IpAddr>,
        user: Option<&keygraph_kernel::token::Principal>,
        kind: OperationKind,
    ) -> Result<(), Refusal> {
        let rate = self.config.rate_limit;
        let window = Duration::from_secs(rate.window_secs);
        let (name, per_address, per_user) = match kind {
            OperationKind::Mutation => (
                "mutation",
                rate.per_address.mutation,
                rate.per_user.mutation,
            ),
            OperationKind::Query | OperationKind::Subscription => {
                ("query", rate.per_address.query, rate.per_user.query)
            }
        };
        let mut checks = Vec::with_capacity(2);
        if let Some(address) = address {
            checks.push((
                format!("rate:address:{address}:{name}"),
                per_address,
                "this address",
            ));
        }
        if let Some(user) = user {
            checks.push((
                format!("rate:user:{}:{name}", user.user_id),
                per_user,
                "this user",
            ));
        }
        for (key, max, whose) in checks {
            match self.edge.counters.hit(&key, max, window).await {
                Ok(Ok(())) => {}
                Ok(Err(wait)) => {
                    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
                    let mut refusal = Refusal::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        ErrorCode::RateLimited,
                        format!("too many {name} requests from {whose}; retry in {seconds}s"),
                    );
                    refusal.retry_after = Some(seconds);
                    return Err(refusal);
                }
                Err(Unavailable) => {
                    return Err(Refusal::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        ErrorCode::ServiceUnavailable,
                        "rate limits cannot be counted right now (Redis does not answer); retry shortly",
                    ));
                }
            }
        }
        Ok(())
    }
}

fn wants_graphql_response(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains(GRAPHQL_RESPONSE))
}

/// A prepared request, owning what it needs, so identical requests in flight can share its
/// answer.
struct Call {
    state: Arc<RouterState>,
    graph: Arc<Graph>,
    preparation: Arc<crate::plan::Preparation>,
    variables: Map<String, Json>,
    /// The headers passed on to every subgraph request.
    forwarded: Forwarded,
    /// What the `Authorization` header proved. The header itself is passed on to subgraphs
    /// whatever it proved: they come to the same verdict, and fields needing no token run.
    authentication: Authentication,
    graphql_response: bool,
}

/// What a request passes on to subgraphs: its token, request id and trace context, and the
/// client address with the router's proof.
fn forwarded(state: &RouterState, headers: &HeaderMap, meta: &RequestMeta) -> Forwarded {
    let request_id_from_client =
        header_string(headers, "x-request-id").is_some_and(|id| id == meta.request_id);
    Forwarded {
        authorization: header_string(headers, "authorization"),
        request_id: meta.request_id.clone(),
        request_id_from_client,
        traceparent: header_string(headers, "traceparent"),
        client_address: state
            .edge
            .address_proof
            .as_ref()
            .zip(meta.client_addr)
            .map(|(proof, address)| proof.state(address)),
    }
}

impl Call {
    async fn answer(self) -> Answered {
        let (state, graph) = (&self.state, &self.graph);
        let respond = |answer| Answered::new(self.graphql_response, answer);
        let prepared = match &self.preparation.outcome {
            Ok(prepared) => prepared,
            Err(err @ (PlanError::Invalid(_) | PlanError::Refused(_))) => {
                return respond(Answer::RequestError(err.to_errors()));
            }
            Err(err) => return respond(Answer::NoData(err.to_errors())),
        };
        let variables = match prepared
            .operation
            .coerce_variables(&graph.types, self.variables.clone())
        {
            Ok(variables) => variables,
            Err(errors) => return respond(Answer::RequestError(errors)),
        };
        if prepared.operation.introspection.is_some() && !state.config.introspection {
            return respond(Answer::RequestError(vec![json!({
                "message": keygraph_kernel::graphql::INTROSPECTION_DISABLED_MESSAGE,
                "extensions": { "code": ErrorCode::IntrospectionDisabled.as_str() },
            })]));
        }
        if let Err(err) = prepared.check_access(&self.authentication) {
            let status = match err {
                PlanError::Forbidden(_) => StatusCode::FORBIDDEN,
                _ => StatusCode::UNAUTHORIZED,
            };
            return respond(Answer::AccessRefused(status, err.to_errors()));
        }
        let run = PlanRun {
            graph: graph.clone(),
            client: crate::execute::SubgraphClient {
                http: state.http.clone(),
                metrics: state.metrics.clone(),
                inflight: state.subgraph_inflight.clone(),
            },
            forwarded: self.forwarded.clone(),
            is_query: prepared.operation.kind == OperationKind::Query,
        };
        let introspection = async {
            match &prepared.operation.introspection {
                Some(document) => {
                    Some(crate::api_schema::introspect(&graph.api, document, &variables).await)
                }
                None => None,
            }
        };
        let executing = tracing::info_span!("graphql execute");
        let (mut outcome, introspection) = tokio::join!(
            run.execute(&prepared.plan, &variables)
                .instrument(executing),
            introspection
        );
        let issued = outcome.issued.take();
        let response_plan = prepared.response_plan(&graph.types, &variables);
        let projected = crate::project::project(&crate::project::Input {
            types: &graph.types,
            plan: &response_plan,
            data: &outcome.data,
            sources: &outcome.sources,
            reported: &outcome.errors,
            introspection: introspection.as_ref().map(|(answers, _)| answers),
            size_hint: outcome.received,
        });
        if let Some((service, issued)) = issued {
            let delivered = |token: &str| memchr::memmem::find(&projected.body, token.as_bytes());
            if delivered(&issued.access).is_none() && delivered(&issued.refresh).is_none() {
                end_undelivered_session(state, graph, &service, &issued);
            }
        }
        let mut errors = outcome.errors;
        if let Some((_, introspection_errors)) = introspection {
            errors.extend(introspection_errors);
        }
        errors.extend(projected.errors);
        respond(Answer::Data(projected.body, errors))
    }
}

/// A subgraph signed someone in during this request, but neither token reached the client
/// (the field holding them failed, or was not selected): the session is ended with the
/// issuing subgraph's `logout`, acting with the access token, so no session is left that
/// nobody can use. Runs in the background; a failure is logged.
fn end_undelivered_session(
    state: &Arc<RouterState>,
    graph: &Graph,
    service: &str,
    issued: &keygraph_kernel::token::IssuedTokens,
) {
    let Some(endpoint) = graph.endpoint(service).cloned() else {
        return;
    };
    let http = state.http.clone();
    let (service, bearer) = (service.to_owned(), format!("Bearer {}", issued.access));
    tokio::spawn(async move {
        let ended = http
            .post(endpoint.url)
            .timeout(endpoint.timeout)
            .header(header::AUTHORIZATION, bearer)
            .json(&json!({ "query": "mutation { logout }" }))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        match ended {
            Ok(_) => tracing::info!(
                service,
                "a session was opened but its tokens never reached the client; it was ended"
            ),
            Err(error) => tracing::warn!(
                service,
                %error,
                "a session was opened but its tokens never reached the client, and ending it failed"
            ),
        }
    });
}

/// What a request gets back.
enum Answer {
    /// The operation did not run (it does not parse or validate, or its variables are wrong):
    /// errors only, and 400 for clients that speak `application/graphql-response+json`.
    RequestError(Vec<Json>),
    /// The operation may not run for this caller (access directives): errors only, 401 or 403
    /// for clients that speak `application/graphql-response+json`.
    AccessRefused(StatusCode, Vec<Json>),
    /// The operation was accepted but could not run (planning failed).
    NoData(Vec<Json>),
    /// It ran: the body's start (`{"data":` and the data, from the projection), with the
    /// errors of the positions that failed.
    Data(Vec<u8>, Vec<Json>),
}

/// A finished answer: what identical requests in flight share.
#[derive(Clone)]
struct Answered {
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    /// The `extensions.code` of each error, for the metrics.
    error_codes: Arc<[Option<String>]>,
}

impl Answered {
    fn new(graphql_response: bool, answer: Answer) -> Answered {
        let codes = |errors: &[Json]| -> Arc<[Option<String>]> {
            errors.iter().map(crate::metrics::error_code).collect()
        };
        let (status, error_codes, body) = match answer {
            Answer::RequestError(errors) => {
                let status = if graphql_response {
                    StatusCode::BAD_REQUEST
                } else {
                    StatusCode::OK
                };
                let body = serde_json::to_vec(&json!({ "errors": errors }));
                (status, codes(&errors), body)
            }
            Answer::AccessRefused(status, errors) => {
                let status = if graphql_response {
                    status
                } else {
                    StatusCode::OK
                };
                let body = serde_json::to_vec(&json!({ "errors": errors }));
                (status, codes(&errors), body)
            }
            Answer::NoData(errors) => {
                let body = serde_json::to_vec(&ResponseBody {
                    data: &Json::Null,
                    errors: Some(&errors),
                });
                (StatusCode::OK, codes(&errors), body)
            }
            Answer::Data(mut body, errors) => {
                if !errors.is_empty() {
                    body.extend_from_slice(b",\"errors\":[");
                    for (i, error) in errors.iter().enumerate() {
                        if i > 0 {
                            body.push(b',');
                        }
                        crate::json::write_serde(&mut body, error);
                    }
                    body.push(b']');
                }
                body.push(b'}');
                (StatusCode::OK, codes(&errors), Ok(body))
            }
        };
        let body = body.unwrap_or_else(|_| {
            br#"{"errors":[{"message":"the response could not be serialized"}]}"#.to_vec()
        });
        Answered {
            status,
            content_type: if graphql_response {
                GRAPHQL_RESPONSE
            } else {
                "application/json"
            },
            body: Bytes::from(body),
            error_codes,
        }
    }

    fn into_response(self, metrics: &crate::metrics::Metrics, kind: OperationKind) -> Response {
        metrics.record_operation(kind.as_str(), &self.error_codes);
        (
            self.status,
            [(header::CONTENT_TYPE, self.content_type)],
            self.body,
        )
            .into_response()
    }
}

#[derive(serde::Serialize)]
struct ResponseBody<'a> {
    data: &'a Json,
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<&'a Vec<Json>>,
}

const GRAPHIQL_HTML: &str = include_str!("../assets/graphiql.html");
const GRAPHIQL_INIT: &str = include_str!("../assets/graphiql-init.js");
const GRAPHIQL_JS: &[u8] = include_bytes!("../assets/graphiql/graphiql.min.js");
const GRAPHIQL_CSS: &[u8] = include_bytes!("../assets/graphiql/graphiql.min.css");
const REACT_JS: &[u8] = include_bytes!("../assets/graphiql/react.production.min.js");
const REACT_DOM_JS: &[u8] = include_bytes!("../assets/graphiql/react-dom.production.min.js");

fn graphiql_page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
        ],
        GRAPHIQL_HTML,
    )
        .into_response()
}

async fn graphiql_asset(axum::extract::Path(asset): axum::extract::Path<String>) -> Response {
    let (body, content_type): (&'static [u8], &str) = match asset.as_str() {
        "graphiql.min.js" => (GRAPHIQL_JS, "text/javascript"),
        "graphiql.min.css" => (GRAPHIQL_CSS, "text/css"),
        "react.production.min.js" => (REACT_JS, "text/javascript"),
        "react-dom.production.min.js" => (REACT_DOM_JS, "text/javascript"),
        "init.js" => (GRAPHIQL_INIT.as_bytes(), "text/javascript"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

/// Starts the router: its state, the supergraph task, and the HTTP server, until `shutdown`.
pub async fn run(config: &Config, internal_token: &str, shutdown: Shutdown) -> anyhow::Result<()> {
    let verifier = TokenVerifier::for_service("router", &config.tokens, internal_token)
        .map_err(|e| anyhow::anyhow!("router: token keys: {e}"))?;
    let counters = Counters::from_config(&config.redis).map_err(anyhow::Error::msg)?;
    let edge = Edge {
        verifier: Some(verifier),
        internal_token: Some(InternalToken::new(internal_token)),
        address_proof: Some(AddressProof::new(internal_token)),
        counters: Arc::new(counters),
    };
    serve(config, edge, shutdown).await
}

/// Serves the router with `edge` until `shutdown`.
pub async fn serve(config: &Config, edge: Edge, shutdown: Shutdown) -> anyhow::Result<()> {
    let state = RouterState::new(config.router.clone(), edge).map_err(anyhow::Error::msg)?;
    let listener = keygraph_kernel::http::bind("router", config.router.listen).await?;
    if let Some(addr) = config.router.metrics.listen {
        let metrics = keygraph_kernel::http::bind("router metrics", addr).await?;
        let (http, shutdown) = (config.http.clone(), shutdown.clone());
        let routes = metrics_routes(state.clone());
        tokio::spawn(async move {
            let served = async {
                keygraph_kernel::http::serve(
                    "router metrics",
                    metrics,
                    routes,
                    &http,
                    keygraph_kernel::http::ClientAddresses::for_edge(&http)
                        .map_err(std::io::Error::other)?,
                    Arc::new(|| Box::pin(async { true })),
                    shutdown,
                )
                .await
            }
            .await;
            if let Err(err) = served {
                tracing::error!(error = %err, "the metrics listener stopped");
            }
        });
    }
    tokio::spawn(keep_supergraph_current(state.clone(), shutdown.clone()).in_this_service());
    keygraph_kernel::http::serve(
        "router",
        listener,
        routes(state.clone()),
        &config.http,
        keygraph_kernel::http::ClientAddresses::for_edge(&config.http)
            .map_err(anyhow::Error::msg)?,
        readiness(state),
        shutdown,
    )
    .await?;
    Ok(())
}
