//! What the API logs for a 5xx (`error_chain`) and what the CLI prints (`{:#}` of anyhow) name
//! each cause of an `AppError` exactly once.

use ferry_app::AppError;
use ferry_core::error::error_chain;
use ferry_core::ports::{CodeStoreError, LogError, StoreError};

const CAUSE: &str = "disk I/O error on sector 42";

fn cause() -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(std::io::Error::other(CAUSE))
}

fn errors() -> Vec<AppError> {
    vec![
        AppError::Store(StoreError::Backend { source: cause() }),
        AppError::Store(StoreError::Unavailable { source: cause() }),
        AppError::Code(CodeStoreError::Backend { source: cause() }),
        AppError::Logs(Box::new(LogError { source: cause() })),
    ]
}

#[test]
fn the_api_log_of_a_storage_failure_names_its_cause_once() {
    for e in errors() {
        let logged = error_chain(&e);
        assert_eq!(logged.matches(CAUSE).count(), 1, "{logged}");
    }
}

#[test]
fn the_cli_print_of_a_storage_failure_names_its_cause_once() {
    for e in errors() {
        let printed = format!("{:#}", anyhow::Error::from(e));
        assert_eq!(printed.matches(CAUSE).count(), 1, "{printed}");
    }
}
