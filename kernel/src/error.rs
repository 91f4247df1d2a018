//! The one error type at the GraphQL edge: a code from the fixed list, a message for the
//! caller, and for internal errors a log line with the request id instead of details.

use async_graphql::ErrorExtensions as _;

/// `extensions.code` values, the same in every service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    Unauthenticated,
    Forbidden,
    BadUserInput,
    NotFound,
    Conflict,
    RateLimited,
    /// A sensitive change needs a recent sign-in with the second factor: step up (`stepUp`)
    /// or sign in again, then retry.
    StepUpRequired,
    /// A dependency is down for a moment; retrying shortly may work.
    ServiceUnavailable,
    InternalServerError,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::BadUserInput => "BAD_USER_INPUT",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Conflict => "CONFLICT",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::StepUpRequired => "STEP_UP_REQUIRED",
            ErrorCode::ServiceUnavailable => "SERVICE_UNAVAILABLE",
            ErrorCode::InternalServerError => "INTERNAL_SERVER_ERROR",
        }
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
