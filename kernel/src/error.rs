//! The one error type at the GraphQL edge: a code from the fixed list, a message for the
//! caller, and for internal errors a log line with the request id instead of details.

use async_graphql::ErrorExtensions as _;

/// `extensions.code` values: every code a Keygraph service or the router answers with, the
/// same in every service. `docs/errors.md` describes each one for clients (a test checks
/// that the page and this list agree); [`ErrorCode::as_str`] is the wire string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request itself could not be read (malformed JSON or query parameters, a body that
    /// is not `application/json` or is over the size limit, a mutation sent with GET). Nothing
    /// ran: fix the request before sending it again.
    BadRequest,
    /// The document is not valid GraphQL syntax (`locations` says where). Nothing ran: fix the
    /// document.
    GraphqlParseFailed,
    /// The document parses but does not validate against the API schema (an unknown field, a
    /// wrong argument, conflicting fields, an operation kind the router does not serve).
    /// Nothing ran: fix the document.
    GraphqlValidationFailed,
    /// The operation to run cannot be chosen: `operationName` names none of the document's
    /// operations, the document has none, or it has several and no `operationName`. Nothing
    /// ran: send the right `operationName`.
    OperationResolutionFailure,
    /// The operation is over a request limit (fields, aliases, depth, directives, tokens,
    /// nesting, or the planning time budget); `limit` and `max` say which. Nothing ran: make
    /// the operation smaller, do not retry it as it is.
    OperationLimitExceeded,
    /// The operation selects `__schema` or `__type` and introspection is turned off here.
    /// Nothing ran: use the published SDL instead of introspection.
    IntrospectionDisabled,
    /// The router could not plan a valid operation over the subgraphs. Nothing ran (`data` is
    /// null); this is the router's fault, not the client's: report it with the request id.
    QueryPlanningFailed,
    /// The caller is not signed in, or the access token sent was refused (`reason` says why):
    /// refresh the token or sign in, then retry.
    Unauthenticated,
    /// The caller is signed in but lacks the permission: do not retry; ask for the role.
    Forbidden,
    /// An argument or variable is wrong (`field` names the input at fault when known): fix it.
    BadUserInput,
    /// What the operation names does not exist (or is not visible to the caller).
    NotFound,
    /// The change clashes with the current state (a duplicate, a stale version): re-read and
    /// decide again.
    Conflict,
    /// Too many requests or attempts: wait `retryAfter` seconds, then retry.
    RateLimited,
    /// A sensitive change needs a recent sign-in with the second factor: step up (`stepUp`)
    /// or sign in again, then retry.
    StepUpRequired,
    /// A dependency is down for a moment (no supergraph yet, Redis for rate limits, a
    /// service's store); retrying shortly may work.
    ServiceUnavailable,
    /// A subgraph did not answer (unreachable, timed out, broke off, or answered no GraphQL
    /// response); `serviceName` names it. The fields it serves are null, the rest of `data`
    /// stands: retry shortly.
    SubgraphUnavailable,
    /// A failure on our side; details are in the log under the request id (the `x-request-id`
    /// response header): report it with that id.
    InternalServerError,
}

impl ErrorCode {
    /// Every code, in the order `docs/errors.md` lists them.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::BadRequest,
        ErrorCode::GraphqlParseFailed,
        ErrorCode::GraphqlValidationFailed,
        ErrorCode::OperationResolutionFailure,
        ErrorCode::OperationLimitExceeded,
        ErrorCode::IntrospectionDisabled,
        ErrorCode::QueryPlanningFailed,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::BadUserInput,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::RateLimited,
        ErrorCode::StepUpRequired,
        ErrorCode::ServiceUnavailable,
        ErrorCode::SubgraphUnavailable,
        ErrorCode::InternalServerError,
    ];

    /// The code as it appears in `extensions.code`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::GraphqlParseFailed => "GRAPHQL_PARSE_FAILED",
            ErrorCode::GraphqlValidationFailed => "GRAPHQL_VALIDATION_FAILED",
            ErrorCode::OperationResolutionFailure => "OPERATION_RESOLUTION_FAILURE",
            ErrorCode::OperationLimitExceeded => "OPERATION_LIMIT_EXCEEDED",
            ErrorCode::IntrospectionDisabled => "INTROSPECTION_DISABLED",
            ErrorCode::QueryPlanningFailed => "QUERY_PLANNING_FAILED",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::StepUpRequired => "STEP_UP_REQUIRED",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::SubgraphUnavailable => "SUBGRAPH_UNAVAILABLE",
            ErrorCode::InternalServerError => "INTERNAL_SERVER_ERROR",
        }
    }

    /// The code whose wire string is `code`, if it is one of ours.
    pub fn from_wire(code: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

/// An error for the API caller. Deliberately not `Display`: async-graphql converts any
/// `Display` type into an error without a code, and every error here must carry one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// The input field at fault, for BAD_USER_INPUT.
    pub field: Option<String>,
    /// Seconds to wait, for RATE_LIMITED.
    pub retry_after_secs: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
            retry_after_secs: None,
        }
    }

    pub fn bad_input(field: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            ..Self::new(ErrorCode::BadUserInput, message)
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Unauthenticated, message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    /// STEP_UP_REQUIRED for `what`, saying how to get past it.
    pub fn step_up_required(what: &str) -> Self {
        Self::new(
            ErrorCode::StepUpRequired,
            format!(
                "{what} needs a recent sign-in with your second factor: confirm it with `stepUp` (or sign in again), then retry"
            ),
        )
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(
                ErrorCode::RateLimited,
                format!("too many requests; try again in {retry_after_secs} seconds"),
            )
        }
    }

    /// Logs `err` (inside the request span, so with its request id) and returns a generic error.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            ErrorCode::InternalServerError,
            "internal error; the request id in the response headers identifies it in the logs",
        )
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        ApiError::internal(err)
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        async_graphql::Error::new(err.message).extend_with(|_, ext| {
            ext.set("code", err.code.as_str());
            if let Some(field) = &err.field {
                ext.set("field", field.as_str());
            }
            if let Some(secs) = err.retry_after_secs {
                ext.set("retryAfter", secs);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    /// Where `code` sits in [`ErrorCode::ALL`]. The match has no wildcard, so a new variant
    /// does not compile until it has a place here (and then in `ALL` and docs/errors.md).
    fn position(code: ErrorCode) -> usize {
        match code {
            ErrorCode::BadRequest => 0,
            ErrorCode::GraphqlParseFailed => 1,
            ErrorCode::GraphqlValidationFailed => 2,
            ErrorCode::OperationResolutionFailure => 3,
            ErrorCode::OperationLimitExceeded => 4,
            ErrorCode::IntrospectionDisabled => 5,
            ErrorCode::QueryPlanningFailed => 6,
            ErrorCode::Unauthenticated => 7,
            ErrorCode::Forbidden => 8,
            ErrorCode::BadUserInput => 9,
            ErrorCode::NotFound => 10,
            ErrorCode::Conflict => 11,
            ErrorCode::RateLimited => 12,
            ErrorCode::StepUpRequired => 13,
            ErrorCode::ServiceUnavailable => 14,
            ErrorCode::SubgraphUnavailable => 15,
            ErrorCode::InternalServerError => 16,
        }
    }

    #[test]
    fn all_holds_every_variant() {
        for (i, code) in ErrorCode::ALL.into_iter().enumerate() {
            assert_eq!(position(code), i, "{code:?} is not at its place in ALL");
        }
    }
}
