//! Service-to-service endpoints under `/internal/`: callers present the shared internal token
//! as a Bearer token; it is compared in constant time. The router never routes these paths.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, RwLock},
    time::Duration,
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{Method, StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::ServiceExt as _;
use tracing::Instrument as _;

/// How long an internal call may take, over HTTP or in process.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest internal answer read from a service in this process (HTTP answers come from
/// our own services too and are not capped).
const LOCAL_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// The expected token, kept only as its SHA-256 so comparisons take the same time whatever
/// the presented token's length.
#[derive(Clone)]
pub struct InternalToken(Arc<[u8; 32]>);

impl InternalToken {
    pub fn new(token: &str) -> Self {
        Self(Arc::new(Sha256::digest(token.as_bytes()).into()))
    }

    pub fn matches(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        bool::from(digest.as_slice().ct_eq(self.0.as_slice()))
    }
}

/// An internal endpoint's error answer: `status` with `{"error": code, "message": …}`.
pub fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(serde_json::json!({ "error": code, "message": message.into() })),
    )
        .into_response()
}

/// The user id of an internal path (`/internal/users/{id}/…`), or the 400 answer for a
/// malformed one.
pub fn parse_user_id(id: &str) -> Result<uuid::Uuid, Box<Response>> {
    uuid::Uuid::parse_str(id).map_err(|_| {
        Box::new(error_response(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("`{id}` is not a user id (a UUID)"),
        ))
    })
}

/// Wraps `routes` so every request must carry `Authorization: Bearer <internal token>`.
pub fn protect<S: Clone + Send + Sync + 'static>(
    routes: Router<S>,
    token: InternalToken,
) -> Router<S> {
    routes.layer(middleware::from_fn_with_state(token, require_token))
}

async fn require_token(
    State(token): State<InternalToken>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(p) if token.matches(p) => next.run(request).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({
                "error": "unauthorized",
                "message": "internal endpoints need the internal service token as `Authorization: Bearer <token>`",
            })),
        )
            .into_response(),
    }
}

/// The services running in this process, by the base URLs other services call them at.
///
/// In the embedded default (`cargo run`) every service runs in one process; an internal call
/// to one of them goes straight into its router, through the same layers and the same token
/// check as over HTTP, without a socket, an HTTP parser or a connection pool on either side.
/// Calls to a service that is not registered, or has stopped, go over HTTP.
#[derive(Clone, Default)]
pub struct LocalServices(Arc<RwLock<HashMap<String, Router>>>);

impl LocalServices {
    /// Registers `router` (with the standard layers, as served) as the service listening on
    /// `listen`, under every base URL that reaches it from this host.
    pub fn register(&self, listen: SocketAddr, router: Router) {
        let mut routes = self.0.write().unwrap_or_else(|e| e.into_inner());
        for base in Self::bases(listen) {
            routes.insert(base, router.clone());
        }
    }

    /// Forgets the service on `listen` (it has stopped): later calls go over HTTP.
    pub fn unregister(&self, listen: SocketAddr) {
        let mut routes = self.0.write().unwrap_or_else(|e| e.into_inner());
        for base in Self::bases(listen) {
            routes.remove(&base);
        }
    }

    /// Whether the service this process serves on `listen` answers its readiness check
    /// (`/health/ready`), asked in process: `false` while nothing here serves that address,
    /// even when another process listens on it.
    pub async fn is_ready(&self, listen: SocketAddr) -> bool {
        let Some(router) = self.find(&format!("http://{listen}")) else {
            return false;
        };
        let request =
            match axum::http::Request::get("/health/ready").body(axum::body::Body::empty()) {
                Ok(request) => request,
                Err(_) => return false,
            };
        router
            .oneshot(request)
            .await
            .is_ok_and(|response| response.status().is_success())
    }

    fn find(&self, base: &str) -> Option<Router> {
        let routes = self.0.read().unwrap_or_else(|e| e.into_inner());
        routes.get(base).cloned()
    }

    /// `http://<listen>`, and for a loopback or unspecified address also the loopback names.
    fn bases(listen: SocketAddr) -> Vec<String> {
        let port = listen.port();
        let mut bases = vec![format!("http://{listen}")];
        if listen.ip().is_loopback() || listen.ip().is_unspecified() {
            bases.extend([
                format!("http://127.0.0.1:{port}"),
                format!("http://localhost:{port}"),
                format!("http://[::1]:{port}"),
            ]);
        }
        bases.dedup();
        bases
    }
}

/// Calls another service's internal endpoints with the internal token.
#[derive(Clone)]
pub struct InternalClient {
    base: String,
    token: String,
    http: reqwest::Client,
    local: LocalServices,
}

/// Why an internal call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InternalCallError {
    #[error("{url} is unreachable: {message}")]
    Unreachable { url: String, message: String },
    #[error("{url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url} answered with an unexpected body: {message}")]
    Body { url: String, message: String },
}

impl InternalClient {
    /// `base_url` is the service's root, e.g. `http://127.0.0.1:4001`.
    pub fn new(base_url: &str, token: &str) -> Result<Self, InternalCallError> {
        let http = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .map_err(|e| InternalCallError::Unreachable {
                url: base_url.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
            local: LocalServices::default(),
        })
    }

    /// Calls the service in process when it is registered in `local`.
    pub fn with_local(mut self, local: &LocalServices) -> Self {
        self.local = local.clone();
        self
    }

    /// GETs JSON; `None` when the resource does not exist (404).
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, InternalCallError> {
        let (url, status, body) = self.call(Method::GET, path, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        Self::success(&url, status, &body)?;
        Self::parse(url, &body).map(Some)
    }

    /// POSTs JSON and reads the JSON answer.
    pub async fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, InternalCallError> {
        let json = serde_json::to_vec(body).map_err(|e| InternalCallError::Body {
            url: format!("{}{path}", self.base),
            message: format!("the request cannot be encoded: {e}"),
        })?;
        let (url, status, body) = self.call(Method::POST, path, Some(json)).await?;
        Self::success(&url, status, &body)?;
        Self::parse(url, &body)
    }

    /// DELETEs; a missing resource counts as deleted.
    pub async fn delete(&self, path: &str) -> Result<(), InternalCallError> {
        let (url, status, body) = self.call(Method::DELETE, path, None).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Self::success(&url, status, &body)
    }

    /// Sends the request, in process when the service is registered there, and reads the
    /// whole answer: the URL called, the status and the body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
    ) -> Result<(String, StatusCode, Bytes), InternalCallError> {
        // The path names what is asked (ids at most); bodies and the token stay out of it.
        let route = path.split('?').next().unwrap_or_default();
        let span = tracing::info_span!(
            "internal call",
            otel.name = %format!("{method} {route}"),
            otel.kind = "client",
            server = %self.base,
            status = tracing::field::Empty,
        );
        let called = self
            .exchange(method, path, json, &span)
            .instrument(span.clone())
            .await;
        if let Ok((_, status, _)) = &called {
            span.record("status", status.as_u16());
        }
        called
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        json: Option<Vec<u8>>,
        span: &tracing::Span,
    ) -> Result<(String, StatusCode, Bytes), InternalCallError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |message: String| InternalCallError::Unreachable {
            url: url.clone(),
            message,
        };
        let bearer = format!("Bearer {}", self.token);
        let traceparent = crate::telemetry::traceparent(span);
        if let Some(router) = self.local.find(&self.base) {
            let mut request = Request::builder()
                .method(method)
                .uri(if path.is_empty() { "/" } else { path })
                .header(header::AUTHORIZATION, bearer);
            if let Some(traceparent) = &traceparent {
                request = request.header("traceparent", traceparent);
            }
            if json.is_some() {
                request = request.header(header::CONTENT_TYPE, "application/json");
            }
            let request = request
                .body(Body::from(json.unwrap_or_default()))
                .map_err(|e| unreachable(format!("the request cannot be built: {e}")))?;
            let exchange = async {
                let response = match router.oneshot(request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                let status = response.status();
                axum::body::to_bytes(response.into_body(), LOCAL_BODY_LIMIT)
                    .await
                    .map(|body| (status, body))
                    .map_err(|e| unreachable(format!("reading the answer: {e}")))
            };
            let (status, body) = tokio::time::timeout(CALL_TIMEOUT, exchange)
                .await
                .map_err(|_| unreachable(format!("no answer within {CALL_TIMEOUT:?}")))??;
            return Ok((url, status, body));
        }
        let mut request = self
            .http
            .request(method, &url)
            .header(header::AUTHORIZATION, bearer);
        if let Some(traceparent) = &traceparent {
            request = request.header("traceparent", traceparent);
        }
        if let Some(json) = json {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(json);
        }
        let response = request
            .send()
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| unreachable(format!("reading the answer: {e}")))?;
        Ok((url, status, body))
    }

    fn success(url: &str, status: StatusCode, body: &[u8]) -> Result<(), InternalCallError> {
        if status.is_success() {
            return Ok(());
        }
        Err(InternalCallError::Status {
            url: url.to_owned(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(body).chars().take(300).collect(),
        })
    }

    fn parse<T: serde::de::DeserializeOwned>(
        url: String,
        body: &[u8],
    ) -> Result<T, InternalCallError> {
        serde_json::from_slice(body).map_err(|e| InternalCallError::Body {
            url,
            message: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        let token = InternalToken::new("a-very-long-internal-service-token-value");
        assert!(token.matches("a-very-long-internal-service-token-value"));
        assert!(!token.matches("a-very-long-internal-service-token-valuE"));
        assert!(!token.matches(""));
    }
}
