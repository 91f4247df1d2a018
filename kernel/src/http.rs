//! The HTTP shell every service runs in: health endpoints, request ids and client addresses,
//! request spans, timeouts, body limits and graceful shutdown.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Json, Router,
    extract::{ConnectInfo, DefaultBodyLimit, Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use tokio::{net::TcpListener, sync::watch};
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;

pub use crate::address::ClientAddresses;
use crate::{config::HttpConfig, internal::LocalServices};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Facts about the current request that every layer may need (audit, throttling, logs).
#[derive(Debug, Clone, Default)]
pub struct RequestMeta {
    /// The service serving the request (`identity`, ...), for its metrics.
    pub service: &'static str,
    pub request_id: String,
    pub client_addr: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// The largest request body a service accepts (`http.body_limit_bytes`), in every request's
/// extensions, for handlers that read bodies themselves and say what the limit is.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A readiness probe: true when the service can serve (e.g. its database answers).
pub type ReadinessCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// A shutdown signal shared by every server of the process.
#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Triggers [`Shutdown`].
#[derive(Clone)]
pub struct ShutdownTrigger(Arc<watch::Sender<bool>>);

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(Arc::new(tx)), Shutdown(rx))
    }

    /// A signal that fires on SIGINT or SIGTERM, or when the returned trigger is pulled.
    pub fn on_signals() -> (ShutdownTrigger, Shutdown) {
        let (trigger, shutdown) = Shutdown::new();
        let on_signal = trigger.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested; finishing in-flight requests");
            on_signal.trigger();
        });
        (trigger, shutdown)
    }

    /// Resolves once shutdown has been triggered (or every trigger is gone).
    pub async fn wait(mut self) {
        // An error means the trigger was dropped: treat it as a shutdown as well.
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        // Nobody listening is fine: there is nothing to stop.
        let _ = self.0.send(true);
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// Serves `app` with health endpoints and the standard layers until `shutdown` fires; then
/// stops accepting, lets in-flight requests finish for `shutdown_grace_secs`, and returns.
pub async fn serve(
    service: &'static str,
    listener: TcpListener,
    app: Router,
    http: &HttpConfig,
    addresses: ClientAddresses,
    readiness: ReadinessCheck,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    serve_layered(
        service,
        listener,
        with_standard_layers(service, app, http, addresses, readiness),
        http,
        shutdown,
    )
    .await
}

/// [`serve`], and registered in `local` while it serves: this process's services reach it in
/// process, and [`LocalServices::is_ready`] knows this process bound its address.
#[allow(clippy::too_many_arguments)]
pub async fn serve_registered(
    service: &'static str,
    listener: TcpListener,
    app: Router,
    http: &HttpConfig,
    addresses: ClientAddresses,
    readiness: ReadinessCheck,
    local: &LocalServices,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let app = with_standard_layers(service, app, http, addresses, readiness);
    local.register(addr, app.clone());
    let served = serve_layered(service, listener, app, http, shutdown).await;
    local.unregister(addr);
    served
}

/// [`serve`] for an `app` that already has the standard layers.
async fn serve_layered(
    service: &'static str,
    listener: TcpListener,
    app: Router,
    http: &HttpConfig,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(service, %addr, "listening");
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().wait());
    let grace = Duration::from_secs(http.shutdown_grace_secs);
    let deadline = async move {
        shutdown.wait().await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        result = server => result?,
        () = deadline => tracing::warn!(service, grace_secs = grace.as_secs(), "in-flight requests did not finish within the grace period; stopping"),
    }
    tracing::info!(service, "stopped");
    Ok(())
}

/// Binds a service's address, saying which service could not when it fails (port taken).
pub async fn bind(service: &str, addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("{service}: cannot listen on {addr}: {e}"))
    })
}

/// How a subgraph is served: the HTTP settings, how client addresses are found, and the
/// services of this process.
pub struct Shell<'a> {
    pub http: &'a HttpConfig,
    pub addresses: ClientAddresses,
    pub local: &'a LocalServices,
}

impl<'a> Shell<'a> {
    /// A subgraph's shell: it believes the router's statements of client addresses.
    pub fn for_subgraph(
        http: &'a HttpConfig,
        internal_token: &str,
        local: &'a LocalServices,
    ) -> Result<Self, String> {
        Ok(Self {
            http,
            addresses: ClientAddresses::for_subgraph(http, internal_token)?,
            local,
        })
    }
}

/// Serves a database-backed service (readiness pings the database) until `shutdown`, then
/// closes its pool. While it serves, services in this process reach it through `shell.local`.
pub async fn serve_with_database(
    service: &'static str,
    listener: TcpListener,
    app: Router,
    db: sea_orm::DatabaseConnection,
    shell: Shell<'_>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let metrics = crate::metrics::Metrics::of(service);
    // The pool's gauges while the service serves.
    let _pool_gauges = metrics.watch_pool(&db);
    let metrics = Router::new()
        .route("/metrics", get(metrics_page))
        .with_state(metrics);
    let app = with_standard_layers(
        service,
        app.merge(metrics),
        shell.http,
        shell.addresses,
        database_readiness(db.clone()),
    );
    shell.local.register(addr, app.clone());
    let served = serve_layered(service, listener, app, shell.http, shutdown).await;
    shell.local.unregister(addr);
    served?;
    db.close()
        .await
        .map_err(|e| std::io::Error::other(format!("{service}: closing the database: {e}")))
}

/// Adds `/health/live`, `/health/ready`, request metadata (the client address found by
/// `addresses`) and spans (as `service`'s), timeout and body limit.
pub fn with_standard_layers(
    service: &'static str,
    app: Router,
    http: &HttpConfig,
    addresses: ClientAddresses,
    readiness: ReadinessCheck,
) -> Router {
    let health = Router::new()
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(readiness);
    app.merge(health)
        .layer(DefaultBodyLimit::max(http.body_limit_bytes))
        .layer(axum::Extension(BodyLimit(http.body_limit_bytes)))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(http.request_timeout_secs),
        ))
        .layer(middleware::from_fn_with_state(
            Arc::new(Context {
                service,
                addresses,
                metrics: crate::metrics::Metrics::of(service),
            }),
            request_context,
        ))
}

/// What the request layer knows of the service it serves.
struct Context {
    service: &'static str,
    addresses: ClientAddresses,
    metrics: Arc<crate::metrics::Metrics>,
}

/// `GET /metrics` of a subgraph: its series in the OpenMetrics text format. Like the health
/// endpoints it answers anyone who reaches the subgraph's port; the router, the public
/// endpoint, guards its own (`router.metrics`).
async fn metrics_page(State(metrics): State<Arc<crate::metrics::Metrics>>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        metrics.render(),
    )
        .into_response()
}

async fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "live" }))
}

async fn ready(State(readiness): State<ReadinessCheck>) -> Response {
    if readiness().await {
        Json(serde_json::json!({ "status": "ready" })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "unavailable", "reason": "database does not answer" })),
        )
            .into_response()
    }
}

/// Assigns the request id (a valid incoming one is kept), finds the client address, records
/// [`RequestMeta`] in the request and logs the outcome inside a span, which continues the
/// caller's trace (W3C `traceparent`) and is exported as the service's when traces are on.
async fn request_context(
    State(context): State<Arc<Context>>,
    request: Request,
    next: Next,
) -> Response {
    let service = context.service;
    crate::telemetry::in_service(service, traced_request(context, request, next)).await
}

async fn traced_request(context: Arc<Context>, mut request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|id| is_valid_request_id(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let meta = RequestMeta {
        service: context.service,
        request_id: request_id.clone(),
        client_addr: context.addresses.resolve(peer, request.headers()),
        user_agent: request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect()),
    };
    request.extensions_mut().insert(meta);
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // Machine polling (health probes, revocation lists) is logged at debug, not info, and
    // starts no trace.
    let routine = path.starts_with("/internal/revocations")
        || path.starts_with("/health")
        || path == "/ready";
    // Only the path: query strings may hold mailed links' tokens.
    macro_rules! request_span {
        ($level:expr) => {
            tracing::span!(
                $level,
                crate::telemetry::REQUEST_SPAN,
                otel.name = tracing::field::Empty,
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                request_id = %request_id,
                trace_id = tracing::field::Empty,
                method = %method,
                path = %path,
                status = tracing::field::Empty,
            )
        };
    }
    let span = if routine {
        request_span!(tracing::Level::DEBUG)
    } else {
        request_span!(tracing::Level::INFO)
    };
    if crate::telemetry::traces_enabled() {
        span.record("otel.name", format!("{method} {path}"));
    }
    if let Some(trace_id) = crate::telemetry::join_trace(&span, request.headers()) {
        span.record("trace_id", trace_id);
    }
    let started = Instant::now();
    // The route as declared (`/internal/users/{id}`), never the path itself: ids stay out
    // of the series' labels.
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or("unmatched", |matched| matched.as_str())
        .to_owned();
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    context
        .metrics
        .http_request(&route, status, started.elapsed());
    span.in_scope(|| {
        span.record("status", status);
        if status >= 500 {
            span.record("otel.status_code", "ERROR");
        }
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        // One line per request under its own target: `keygraph::requests=info` in
        // `log.filter` turns them on (the default shows only failures).
        // Probes answer 503 while a service is not ready: that is their answer, not a fault.
        if routine {
            tracing::debug!(target: REQUEST_LOG, status, elapsed_ms, "request finished");
        } else if status >= 500 {
            tracing::warn!(target: REQUEST_LOG, status, elapsed_ms, "request finished");
        } else {
            tracing::info!(target: REQUEST_LOG, status, elapsed_ms, "request finished");
        }
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, value);
    }
    add_security_headers(response.headers_mut());
    response
}

/// The tracing target of the one line each request logs when it finishes.
pub const REQUEST_LOG: &str = "keygraph::requests";

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), when it is one.
pub fn trace_id_of(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.trim().split('-');
    let (version, trace, parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && hex(flags, 2)
        && (version != "00" || parts.next().is_none());
    valid.then_some(trace)
}

/// Headers every answer carries (a handler's own value wins): no content sniffing, never
/// inside another site's frame, and no `Referer` with a mailed link's token to other sites.
/// Pages add their own `Content-Security-Policy`, with `frame-ancestors 'none'`.
pub fn add_security_headers(headers: &mut axum::http::HeaderMap) {
    const SET: [(header::HeaderName, &str); 3] = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    for (name, value) in SET {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
}

fn is_valid_request_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Turns a database readiness probe into a [`ReadinessCheck`].
pub fn database_readiness(db: sea_orm::DatabaseConnection) -> ReadinessCheck {
    Arc::new(move || {
        let db = db.clone();
        Box::pin(async move { crate::db::is_ready(&db).await })
    })
}

#[cfg(test)]
mod trace_context_tests {
    use super::trace_id_of;

    #[test]
    fn the_trace_id_of_a_w3c_traceparent() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            trace_id_of(&format!("00-{id}-00f067aa0ba902b7-01")),
            Some(id)
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad}");
        }
    }
}
