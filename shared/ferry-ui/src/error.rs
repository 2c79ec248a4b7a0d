//! Failures of a page or an action, answered as an HTML page with the status the `/v1` API
//! would answer (400 names the field, 404, 409, 503 when storage is busy, 500).

use askama::Template;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferry_app::AppError;
use ferry_core::error::error_chain;
use ferry_core::ports::StoreError;

use crate::format::Chrome;

/// A page that could not be shown, or an action that was refused.
#[derive(Debug)]
pub(crate) enum UiError {
    /// A use case's error.
    App(AppError),
    /// Bad input in a form or a query: the field and what is wrong.
    Invalid { field: String, message: String },
}

impl From<AppError> for UiError {
    fn from(e: AppError) -> Self {
        UiError::App(e)
    }
}

impl UiError {
    pub(crate) fn from_validation(e: ferry_core::ValidationError) -> Self {
        UiError::App(AppError::Invalid(e))
    }

    pub(crate) fn invalid(field: &str, message: impl Into<String>) -> Self {
        UiError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The status and the message a user is shown.
    pub(crate) fn status_and_message(&self) -> (StatusCode, String) {
        match self {
            UiError::Invalid { field, message } => {
                (StatusCode::BAD_REQUEST, format!("{field}: {message}"))
            }
            UiError::App(AppError::Invalid(v)) => (StatusCode::BAD_REQUEST, v.to_string()),
            UiError::App(e @ (AppError::NotFound { .. } | AppError::NoResult { .. })) => {
                (StatusCode::NOT_FOUND, e.to_string())
            }
            UiError::App(e @ AppError::IdempotencyKeyReused { .. }) => {
                (StatusCode::CONFLICT, e.to_string())
            }
            UiError::App(AppError::Conflict(m))
            | UiError::App(AppError::Store(StoreError::Conflict(m))) => {
                (StatusCode::CONFLICT, m.clone())
            }
            UiError::App(AppError::Store(e)) if e.is_retryable() => {
                tracing::warn!(error = %error_chain(e), "storage unavailable");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage is busy; reload shortly".into(),
                )
            }
            UiError::App(e) => {
                tracing::error!(error = %error_chain(e), "dashboard request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the server log".into(),
                )
            }
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    title: String,
    message: String,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, message) = self.status_and_message();
        let title = status.canonical_reason().unwrap_or("Error").to_owned();
        let page = ErrorPage {
            chrome: Chrome::bare(),
            title,
            message,
        };
        (status, crate::format::html(&page)).into_response()
    }
}

/// A page answered with `status` (a re-rendered form after a refused action).
pub(crate) fn with_status(status: StatusCode, page: &impl Template) -> Response {
    (status, crate::format::html(page)).into_response()
}
