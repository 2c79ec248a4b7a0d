//! SDK errors to [`StoreError`]: which are worth a retry, which are a failed condition, and why
//! a transaction was cancelled.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use ferry_core::ports::StoreError;

type HttpResponse = aws_sdk_dynamodb::config::http::HttpResponse;

pub(super) fn classify<E>(e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(se) => {
            matches!(
                se.err().code(),
                Some(
                    "ProvisionedThroughputExceededException"
                        | "ThrottlingException"
                        | "RequestLimitExceeded"
                        | "InternalServerError"
                        | "ServiceUnavailable"
                        | "TransactionInProgressException"
                )
            ) || se.raw().status().is_server_error()
        }
        _ => false,
    };
    if transient {
        StoreError::Unavailable {
            source: Box::new(e),
        }
    } else {
        StoreError::backend(e)
    }
}

type TransactError = aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

/// The cancellation reason of each item of a cancelled transaction, in order (`""` for none).
pub(super) fn reasons_of(e: &TransactError) -> Vec<String> {
    match e {
        TransactError::TransactionCanceledException(t) => t
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().unwrap_or_default().to_owned())
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn cancellation_codes(e: &SdkError<TransactError, HttpResponse>) -> Vec<String> {
    match e {
        SdkError::ServiceError(se) => reasons_of(se.err()),
        _ => Vec::new(),
    }
}

pub(super) fn is_condition_failed<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(e, SdkError::ServiceError(se) if se.err().code() == Some("ConditionalCheckFailedException"))
}
