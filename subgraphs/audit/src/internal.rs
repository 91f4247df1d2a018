//! The ingest endpoint (behind the internal token): batches from every service's relay.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{State, rejection::JsonRejection},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::post,
};
use keygraph_kernel::relay::{EventBatch, INGEST_PATH};

use crate::service::{Audit, IngestError};
use keygraph_kernel::internal::error_response as error;

pub fn routes(audit: Arc<Audit>) -> Router {
    Router::new()
        .route(INGEST_PATH, post(ingest))
        .with_state(audit)
}

/// Stores a batch; answers `{"stored": n, "duplicates": m}` once every event of it is in the
/// log (events already there count as duplicates), 400 naming the first bad event, or 503.
async fn ingest(
    State(audit): State<Arc<Audit>>,
    batch: Result<Json<EventBatch>, JsonRejection>,
) -> Response {
    let batch = match batch {
        Ok(Json(batch)) => batch,
        Err(rejection) => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                format!("the body is not an event batch: {}", rejection.body_text()),
            );
        }
    };
    match audit.ingest(batch).await {
        Ok(receipt) => Json(receipt).into_response(),
        Err(IngestError::Invalid(message)) => {
            error(StatusCode::BAD_REQUEST, "bad_request", message)
        }
        Err(IngestError::Database(err)) => {
            tracing::error!(error = %err, "storing an audit batch failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the audit log cannot be written now; send the batch again later",
            )
        }
    }
}
