use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferry_app::AppError;
use ferry_core::error::error_chain;
use ferry_core::ports::StoreError;
use serde::{Deserialize, Serialize};

/// The body of every error response (every 4xx and 5xx has this shape).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// `invalid`, `not_found`, `method_not_allowed`, `conflict`, `too_large`, `unauthorized`,
    /// `unavailable`, `internal`.
    pub kind: String,
    /// The request field at fault (for `invalid`, and `conflict` on a reused idempotency key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What went wrong and how to fix it (generic for 5xx; the cause is logged).
    pub message: String,
}

/// An error as the API reports it: 4xx carry the message, 5xx a generic body.
#[derive(Debug)]
pub enum ApiError {
    /// A use-case error.
    App(AppError),
    /// A request body, path or query that does not parse.
    BadRequest {
        /// Field, or `body`.
        field: String,
        /// Parser message.
        message: String,
    },
    /// The request body is larger than the route accepts (413).
    TooLarge {
        /// The route's limit in bytes.
        limit: usize,
    },
    /// Missing or wrong bearer token.
    Unauthorized,
    /// Any other 4xx answered by the router itself (405, 415...), given the JSON shape.
    Status {
        /// The status (a 4xx).
        status: StatusCode,
        /// What went wrong.
        message: String,
    },
}

impl From<AppError> for ApiError {
    fn from(e: AppError) -> Self {
        ApiError::App(e)
    }
}

fn body(status: StatusCode, kind: &str, field: Option<String>, message: String) -> Response {
    (
        status,
        Json(ErrorBody {
            kind: kind.into(),
            field,
            message,
        }),
    )
        .into_response()
}

/// The `kind` of a status answered without a more specific error.
fn kind_of(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::CONFLICT => "conflict",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        s if s.is_server_error() => "internal",
        _ => "invalid",
    }
}

/// `1 MiB`, `256 MiB`, `300 KiB`, `17 bytes`.
pub(crate) fn human_bytes(n: usize) -> String {
    if n >= 1024 * 1024 && n.is_multiple_of(1024 * 1024) {
        format!("{} MiB", n / (1024 * 1024))
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadRequest { field, message } => {
                body(StatusCode::BAD_REQUEST, "invalid", Some(field), message)
            }
            ApiError::TooLarge { limit } => body(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                Some("body".into()),
                format!(
                    "body: larger than this route accepts ({}); send a smaller body",
                    human_bytes(limit)
                ),
            ),
            ApiError::Unauthorized => body(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                None,
                "missing or wrong bearer token: set FERRY_API_TOKEN to the server's token".into(),
            ),
            ApiError::Status { status, message } => body(status, kind_of(status), None, message),
            ApiError::App(AppError::Invalid(v)) => body(
                StatusCode::BAD_REQUEST,
                "invalid",
                Some(v.field.clone()),
                v.to_string(),
            ),
            ApiError::App(e @ (AppError::NotFound { .. } | AppError::NoResult { .. })) => {
                body(StatusCode::NOT_FOUND, "not_found", None, e.to_string())
            }
            ApiError::App(e @ AppError::IdempotencyKeyReused { .. }) => body(
                StatusCode::CONFLICT,
                "conflict",
                Some("idempotency_key".into()),
                e.to_string(),
            ),
            ApiError::App(AppError::Conflict(m)) => body(StatusCode::CONFLICT, "conflict", None, m),
            ApiError::App(AppError::Store(StoreError::Conflict(m))) => {
                body(StatusCode::CONFLICT, "conflict", None, m)
            }
            ApiError::App(AppError::Store(e)) if e.is_retryable() => {
                tracing::warn!(error = %error_chain(&e), "storage unavailable");
                body(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    None,
                    "storage is busy; retry shortly".into(),
                )
            }
            ApiError::App(e) => {
                tracing::error!(error = %error_chain(&e), "request failed");
                body(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    None,
                    "internal error; see the server log".into(),
                )
            }
        }
    }
}
