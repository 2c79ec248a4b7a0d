//! Errors that wrap a cause keep it as their `source()` and leave it out of their own message,
//! so `error_chain` (the API's 5xx log, the agent's logs) prints each cause exactly once.

use ferry_core::error::error_chain;
use ferry_core::ports::{CodeStoreError, LogError, StoreError};

const CAUSE: &str = "disk I/O error on sector 42";

fn cause() -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(std::io::Error::other(CAUSE))
}

fn assert_cause_printed_once(e: &dyn std::error::Error) {
    let chain = error_chain(e);
    assert_eq!(chain.matches(CAUSE).count(), 1, "{chain}");
    assert!(
        !e.to_string().contains(CAUSE),
        "the message repeats its source: {e}"
    );
}

#[test]
fn storage_errors_print_their_cause_once() {
    assert_cause_printed_once(&StoreError::Unavailable { source: cause() });
    assert_cause_printed_once(&StoreError::Backend { source: cause() });
    assert_eq!(
        error_chain(&StoreError::Backend { source: cause() }),
        format!("storage failure: {CAUSE}")
    );
}

#[test]
fn code_store_and_log_sink_errors_print_their_cause_once() {
    assert_cause_printed_once(&CodeStoreError::Backend { source: cause() });
    assert_cause_printed_once(&LogError { source: cause() });
}
