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

/// Calls another service's internal endpoints with the internal token.
#[derive(Clone)]
pub struct InternalClient {
    base: String,
    token: String,
    http: reqwest::Client,
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
            .timeout(std::time::Duration::from_secs(5))
            .build()
            .map_err(|e| InternalCallError::Unreachable {
                url: base_url.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        })
    }

    /// GETs JSON; `None` when the resource does not exist (404).
    pub async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, InternalCallError> {
        let url = format!("{}{path}", self.base);
        let response = self.send(self.http.get(&url), &url).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let response = Self::success(response, &url).await?;
        response
            .json()
            .await
            .map(Some)
            .map_err(|e| InternalCallError::Body {
                url,
                message: e.to_string(),
            })
    }

    /// POSTs JSON and reads the JSON answer.
    pub async fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, InternalCallError> {
        let url = format!("{}{path}", self.base);
        let response = self.send(self.http.post(&url).json(body), &url).await?;
        Self::success(response, &url)
            .await?
            .json()
            .await
            .map_err(|e| InternalCallError::Body {
                url,
                message: e.to_string(),
            })
    }

    /// DELETEs; a missing resource counts as deleted.
    pub async fn delete(&self, path: &str) -> Result<(), InternalCallError> {
        let url = format!("{}{path}", self.base);
        let response = self.send(self.http.delete(&url), &url).await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(());
        }
        Self::success(response, &url).await.map(|_| ())
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        url: &str,
    ) -> Result<reqwest::Response, InternalCallError> {
        request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| InternalCallError::Unreachable {
                url: url.to_owned(),
                message: e.to_string(),
            })
    }

    async fn success(
        response: reqwest::Response,
        url: &str,
    ) -> Result<reqwest::Response, InternalCallError> {
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        Err(InternalCallError::Status {
            url: url.to_owned(),
            status,
            body,
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
