//! Internal endpoints (behind the internal token): a user's grants for token claims (auth),
//! and removal of a deleted user's grants (identity).

use std::sync::Arc;

use axum::{
    Extension, Json, Router,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use keygraph_kernel::http::RequestMeta;
use uuid::Uuid;

use crate::service::Authz;
use keygraph_kernel::internal::error_response as error;
use keygraph_kernel::internal::parse_user_id as parse_user;

pub fn routes(authz: Arc<Authz>) -> Router {
    Router::new()
        .route(
            "/internal/users/{id}/grants",
            get(user_grants).delete(remove_user),
        )
        .route(
            "/internal/users/{id}/roles/{role}",
            axum::routing::post(assign_role),
        )
        .route("/internal/authority", axum::routing::post(authority))
        .with_state(authz)
}

/// `{"roles": [names], "permissions": [effective codes]}`, default roles included (so an
/// unknown user gets just what those give).
async fn user_grants(State(authz): State<Arc<Authz>>, Path(id): Path<String>) -> Response {
    let user = match parse_user(&id) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    match authz.user_grants(user).await {
        Ok(grants) => Json(grants).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "grants look-up failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "grants look-up failed",
            )
        }
    }
}

/// Removes every grant of a deleted user; answers 200 with the count, also when there were none.
async fn remove_user(
    State(authz): State<Arc<Authz>>,
    Extension(meta): Extension<RequestMeta>,
    Path(id): Path<String>,
) -> Response {
    let user = match parse_user(&id) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    match authz.remove_user(&meta, user).await {
        Ok(removed) => Json(serde_json::json!({ "removedRoles": removed })).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "removing a user's grants failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "removing grants failed",
            )
        }
    }
}

/// Gives a user a role on the system's behalf (identity's first administrator). Idempotent:
/// 200 with whether it was newly assigned; 404 for an unknown role.
async fn assign_role(
    State(authz): State<Arc<Authz>>,
    Extension(meta): Extension<RequestMeta>,
    Path((id, role)): Path<(String, String)>,
) -> Response {
    let user = match parse_user(&id) {
        Ok(user) => user,
        Err(response) => return *response,
    };
    match authz.assign_role_by_system(&meta, user, &role).await {
        Ok(assigned) => Json(serde_json::json!({ "assigned": assigned })).into_response(),
        Err(crate::service::AuthzError::NotFound(message)) => {
            error(StatusCode::NOT_FOUND, "not_found", message)
        }
        Err(err) => {
            tracing::error!(error = %err, "assigning a role failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "assigning a role failed",
            )
        }
    }
}

#[derive(serde::Deserialize)]
struct AuthorityRequest {
    actor: Uuid,
    target: Uuid,
}

/// What identity checks before it changes or deletes an account: `{"actorPermissions",
/// "targetBeyondActor", "targetHoldsEverything", "othersHoldingEverything"}`.
async fn authority(
    State(authz): State<Arc<Authz>>,
    body: Result<Json<AuthorityRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(request)) => request,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                rejection.body_text(),
            );
        }
    };
    match authz.authority(request.actor, request.target).await {
        Ok(authority) => Json(authority).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "authority look-up failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "authority look-up failed",
            )
        }
    }
}
