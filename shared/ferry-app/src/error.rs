use ferry_core::ports::{CodeStoreError, StoreError};
use ferry_core::ValidationError;

/// Errors of the use cases; the API maps each kind to a status code.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Bad input; nothing was written. (400)
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The named thing does not exist. (404)
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// What was looked up.
        kind: &'static str,
        /// Its id.
        id: String,
    },
    /// The run exists but has no result, and why (404).
    #[error("flow run {run} has no result: {why}")]
    NoResult {
        /// The run.
        run: ferry_core::RunId,
        /// Why (see `ferry_core::result::why_none`).
        why: String,
    },
    /// An idempotency key sent again with a different request (409).
    #[error("idempotency_key {key:?} was already used for run {run} with other {differs}: send the same request again to get that run, or use a new key")]
    IdempotencyKeyReused {
        /// The key.
        key: String,
        /// The run created with it.
        run: ferry_core::RunId,
        /// What differs: `parameters` or `start_in_seconds`.
        differs: &'static str,
    },
    /// The request conflicts with the current state (409).
    #[error("{0}")]
    Conflict(String),
    /// A failure inside Ferry itself (a task that panicked); the cause is in the message. (500)
    #[error("internal failure: {0}")]
    Internal(String),
    /// Storage failed (503 when retryable, else 500).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Code store failed.
    #[error(transparent)]
    Code(#[from] CodeStoreError),
    /// Log sink failed.
    #[error(transparent)]
    Logs(Box<ferry_core::ports::LogError>),
}

impl AppError {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Invalid(ValidationError::new(field, message))
    }
    pub(crate) fn not_found(kind: &'static str, id: impl ToString) -> Self {
        AppError::NotFound {
            kind,
            id: id.to_string(),
        }
    }
}
