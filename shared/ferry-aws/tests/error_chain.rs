//! AWS adapter errors that wrap a cause keep it as their `source()` and leave it out of their
//! own message, so `error_chain` and the CLI's `{:#}` name it once. (No emulator needed.)

use ferry_aws::bootstrap::BootstrapError;
use ferry_aws::s3::CorruptChunk;
use ferry_core::error::error_chain;

const CAUSE: &str = "connection reset by peer";

fn cause() -> Box<dyn std::error::Error + Send + Sync> {
    Box::new(std::io::Error::other(CAUSE))
}

fn assert_cause_printed_once<E: std::error::Error + Send + Sync + 'static>(e: E) {
    let logged = error_chain(&e);
    assert_eq!(logged.matches(CAUSE).count(), 1, "{logged}");
    let printed = format!("{:#}", anyhow::Error::from(e));
    assert_eq!(printed.matches(CAUSE).count(), 1, "{printed}");
}

#[test]
fn bootstrap_and_log_chunk_errors_print_their_cause_once() {
    assert_cause_printed_once(BootstrapError::Dynamo(cause()));
    assert_cause_printed_once(BootstrapError::S3(cause()));
    assert_cause_printed_once(CorruptChunk {
        bucket: "b".into(),
        key: "logs/r/000000000000.jsonl".into(),
        source: cause(),
    });
}
