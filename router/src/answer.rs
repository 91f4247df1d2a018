//! What a request gets back, as GraphQL over HTTP has it: request errors (nothing ran) are
//! 200 for `application/json` and 400, or 401/403 for access refusals, for
//! `application/graphql-response+json`; a run's answer is its data with the errors of the
//! positions that failed. An [`Answered`] is what identical requests in flight share.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};

use crate::operation::OperationKind;

/// The media type of GraphQL over HTTP's own responses.
pub(crate) const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// What a request gets back.
pub(crate) enum Answer {
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
pub(crate) struct Answered {
    status: StatusCode,
    content_type: &'static str,
    body: Bytes,
    /// The `extensions.code` of each error, for the metrics.
    error_codes: Arc<[Option<String>]>,
}

impl Answered {
    pub(crate) fn new(graphql_response: bool, answer: Answer) -> Answered {
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

    pub(crate) fn into_response(
        self,
        metrics: &crate::metrics::Metrics,
        kind: OperationKind,
    ) -> Response {
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
