//! Service-to-service endpoints under `/internal/`: callers present the shared internal token
//! as a Bearer token; it is compared in constant time. The router never routes these paths.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::{self, Next},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

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

/// Wraps `routes` so every request must carry `Authorization: Bearer <internal token>`.
pub fn protect(routes: Router, token: InternalToken) -> Router {
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
