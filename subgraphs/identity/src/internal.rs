//! Internal endpoints for the auth service (behind the internal token): check credentials and
//! read an account's status.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    entity::user,
    service::{CredentialCheck, Identity},
};
use keygraph_kernel::internal::error_response as error;
use keygraph_kernel::internal::parse_user_id as parse_user;

pub fn routes(identity: Arc<Identity>) -> Router {
    Router::new()
        .route("/internal/credentials/verify", post(verify_credentials))
        .route("/internal/users/{id}", get(user_status))
        .with_state(identity)
}

#[derive(Deserialize)]
struct CredentialsRequest {
    email: String,
    password: String,
}

/// What auth learns about an account.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AccountView {
    id: Uuid,
    email: String,
    email_verified: bool,
    status: String,
}

impl From<user::Model> for AccountView {
    fn from(u: user::Model) -> Self {
        Self {
            id: u.id,
            email: u.email,
            email_verified: u.email_verified,
            status: u.status,
        }
    }
}

/// `{"valid": true, "user": {...}}`, or `{"valid": false}` for every kind of failure.
async fn verify_credentials(
    State(identity): State<Arc<Identity>>,
    body: Result<Json<CredentialsRequest>, JsonRejection>,
) -> Response {
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
    match identity
        .check_credentials(&request.email, request.password)
        .await
    {
        Ok(CredentialCheck::Valid(user)) => {
            Json(serde_json::json!({ "valid": true, "user": AccountView::from(user) }))
                .into_response()
        }
        Ok(CredentialCheck::Invalid) => Json(serde_json::json!({ "valid": false })).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "credential check failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "credential check failed",
            )
        }
    }
}

async fn user_status(State(identity): State<Arc<Identity>>, Path(id): Path<String>) -> Response {
    let id = match parse_user(&id) {
        Ok(id) => id,
        Err(response) => return *response,
    };
    match identity.user(id).await {
        Ok(Some(user)) => Json(AccountView::from(user)).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no user with id {id}"),
        ),
        Err(err) => {
            tracing::error!(error = %err, "user status look-up failed");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "look-up failed",
            )
        }
    }
}
