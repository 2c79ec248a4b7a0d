use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferry_app::AppError;
use ferry_core::error::error_chain;
use ferry_core::ports::StoreError;
use serde::{Deserialize, Serialize};

/// The body of every error response.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// `invalid`, `not_found`, `conflict`, `unauthorized`, `unavailable`, `internal`.
    pub kind: String,
    /// The request field at fault (for `invalid`).
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
    /// A request body or query that does not parse.
    BadRequest {
        /// Field, or `body`.
        field: String,
        /// Parser message.
        message: String,
    },
    /// Missing or wrong bearer token.
    Unauthorized,
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::BadRequest { field, message } => {
                body(StatusCode::BAD_REQUEST, "invalid", Some(field), message)
            }
            ApiError::Unauthorized => body(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                None,
                "missing or wrong bearer token: set FERRY_API_TOKEN to the server's token".into(),
            ),
            ApiError::App(AppError::Invalid(v)) => body(
                StatusCode::BAD_REQUEST,
                "invalid",
                Some(v.field.clone()),
                v.to_string(),
            ),
            ApiError::App(e @ AppError::NotFound { .. }) => {
                body(StatusCode::NOT_FOUND, "not_found", None, e.to_string())
            }
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
