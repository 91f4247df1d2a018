//! Internal endpoints (behind the internal token): ended sessions for verifiers, and ending a
//! user's sessions for identity (password change or reset, account disabled or deleted).

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{Path, State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};
use keygraph_kernel::http::RequestMeta;
use serde::Deserialize;
use uuid::Uuid;

use crate::service::Auth;
use keygraph_kernel::internal::error_response as error;
use keygraph_kernel::internal::parse_user_id as parse_user;

pub fn routes(auth: Arc<Auth>) -> Router {
    Router::new()
        .route("/internal/revocations", get(revocations))
        .route(
            "/internal/users/{id}/sessions/revoke",
            post(revoke_user_sessions),
        )
        .route("/internal/users/{id}/factors", delete(drop_factors))
        .with_state(auth)
}

/// `{"sessions": [ids]}`: sessions whose tokens may still be unexpired but must be refused.
async fn revocations(State(auth): State<Arc<Auth>>) -> Response {
    match auth.revoked_sessions().await {
        Ok(sessions) => Json(serde_json::json!({ "sessions": sessions })).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "listing ended sessions failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "listing ended sessions failed",
            )
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RevokeRequest {
    /// A session to keep (the one that changed the password).
    keep_session: Option<Uuid>,
    /// Why, for the audit trail (e.g. `password changed`).
    reason: String,
}

/// Removes a deleted user's second factors, recovery codes and open ceremonies; answers how
/// many factors went (none the second time: it is idempotent).
async fn drop_factors(
    State(auth): State<Arc<Auth>>,
    Extension(meta): Extension<RequestMeta>,
    Path(id): Path<String>,
) -> Response {
    let user = match parse_user(&id) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    match auth.drop_factors(&meta, user).await {
        Ok(removed) => Json(serde_json::json!({ "removed": removed })).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "dropping a user's factors failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "dropping factors failed",
            )
        }
    }
}

/// Ends the user's sessions; answers how many ended.
async fn revoke_user_sessions(
    State(auth): State<Arc<Auth>>,
    Extension(meta): Extension<RequestMeta>,
    Path(id): Path<String>,
    body: Result<Json<RevokeRequest>, JsonRejection>,
) -> Response {
    let user = match parse_user(&id) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                rejection.body_text(),
            );
        }
    };
    let reason: String = request.reason.chars().take(64).collect();
    match auth
        .revoke_user_sessions(&meta, user, request.keep_session, &reason, None)
        .await
    {
        Ok(ended) => Json(serde_json::json!({ "ended": ended })).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "ending a user's sessions failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "ending sessions failed",
            )
        }
    }
}
