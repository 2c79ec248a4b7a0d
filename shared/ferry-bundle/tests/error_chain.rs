//! Bundle errors that wrap a cause keep it as their `source()` and leave it out of their own
//! message, so a chain printer (the CLI's `{:#}`, the agent's `error_chain`) names it once.

use std::io;

use ferry_bundle::BundleError;

const CAUSE: &str = "disk I/O error on sector 42";

/// The message and its causes, as `ferry_core::error::error_chain` joins them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[test]
fn io_walk_and_malformed_errors_print_their_cause_once() {
    let errors = [
        BundleError::Io {
            path: "flows/etl.py".into(),
            source: io::Error::other(CAUSE),
        },
        BundleError::Walk(ignore::Error::Io(io::Error::other(CAUSE))),
        BundleError::Malformed(io::Error::other(CAUSE)),
    ];
    for e in &errors {
        let printed = chain(e);
        assert_eq!(printed.matches(CAUSE).count(), 1, "{printed}");
    }
    assert_eq!(
        chain(&errors[0]),
        format!("I/O error on `flows/etl.py`: {CAUSE}")
    );
}
