//! Test support shared by the workspace's test crates (a dev-dependency of `ferry-aws`, a
//! dependency of the end-to-end harness `ferry-tests`).
//!
//! It is its own crate, with no dependency, because the tests that need the AWS emulators live
//! in two crates that share nothing else: a module of `ferry-aws` behind a feature would make
//! the end-to-end harness compile the AWS SDK for one function, and `ferry-tests` is not a
//! dependency `ferry-aws` can take. (`ferry_app::conformance`, behind `ferry-app`'s `testkit`
//! feature, is the storage conformance suite: it needs `ferry-app`, this does not.)
//!
//! # The emulator gate
//!
//! Every test that needs DynamoDB Local or moto is marked
//! `#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]` and calls
//! [`require_emulators`] first. A plain `cargo test` / `cargo nextest run` lists such a test as
//! ignored (not as passed); `scripts/test.sh` starts the emulators, checks them with
//! `scripts/emulators.sh status` and runs the ignored tests too. An ignored test run without
//! the emulators fails at the gate with a message saying how to start them, instead of
//! returning early and counting as passed.

use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// What the gate's failure says first.
pub const NOT_UP: &str =
    "the AWS emulators are not up: run scripts/test.sh or scripts/emulators.sh start";

/// The endpoints `scripts/emulators.sh env` sets, probed by the gate.
const ENDPOINTS: [&str; 2] = ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"];

/// Panics (failing the test) unless the AWS emulators are up for this test process: see
/// [`check_emulators`].
#[track_caller]
pub fn require_emulators() {
    if let Err(why) = check_emulators(|name| std::env::var(name).ok()) {
        panic!("{why}");
    }
}

/// `Ok` when `FERRY_EMULATORS=1` and something accepts connections at both
/// `AWS_ENDPOINT_URL_DYNAMODB` and `AWS_ENDPOINT_URL` (what `eval "$(scripts/emulators.sh env)"`
/// sets); otherwise what is missing, after [`NOT_UP`]. `env` reads a variable.
pub fn check_emulators(env: impl Fn(&str) -> Option<String>) -> Result<(), String> {
    if env("FERRY_EMULATORS").as_deref() != Some("1") {
        return Err(format!(
            "{NOT_UP} (FERRY_EMULATORS is not 1; scripts/test.sh sets it, or eval \"$(scripts/emulators.sh env)\")"
        ));
    }
    for name in ENDPOINTS {
        let Some(url) = env(name) else {
            return Err(format!(
                "{NOT_UP} ({name} is not set: eval \"$(scripts/emulators.sh env)\")"
            ));
        };
        if !answers(&url) {
            return Err(format!(
                "{NOT_UP} (nothing accepts connections at {name}={url})"
            ));
        }
    }
    Ok(())
}

/// Whether a TCP connection to the host and port of `url` (`http://host:port[/...]`) succeeds.
fn answers(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let addr = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    let Ok(addrs) = addr.to_socket_addrs() else {
        return false;
    };
    addrs
        .into_iter()
        .any(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::TcpListener;

    use super::*;

    fn env(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |name| vars.get(name).cloned()
    }

    #[test]
    fn the_gate_fails_without_ferry_emulators() {
        let err = check_emulators(env(&[])).unwrap_err();
        assert!(
            err.starts_with(NOT_UP) && err.contains("FERRY_EMULATORS"),
            "{err}"
        );
        let err = check_emulators(env(&[("FERRY_EMULATORS", "0".into())])).unwrap_err();
        assert!(err.starts_with(NOT_UP), "{err}");
    }

    #[test]
    fn the_gate_fails_when_an_endpoint_is_unset_or_does_not_answer() {
        let up = TcpListener::bind("127.0.0.1:0").unwrap();
        let up_url = format!("http://127.0.0.1:{}", up.local_addr().unwrap().port());
        let down_url = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
        }; // closed again: nothing listens there now
        let err = check_emulators(env(&[
            ("FERRY_EMULATORS", "1".into()),
            ("AWS_ENDPOINT_URL_DYNAMODB", up_url.clone()),
        ]))
        .unwrap_err();
        assert!(err.contains("AWS_ENDPOINT_URL is not set"), "{err}");
        let err = check_emulators(env(&[
            ("FERRY_EMULATORS", "1".into()),
            ("AWS_ENDPOINT_URL_DYNAMODB", down_url.clone()),
            ("AWS_ENDPOINT_URL", up_url.clone()),
        ]))
        .unwrap_err();
        assert!(err.starts_with(NOT_UP) && err.contains(&down_url), "{err}");
    }

    #[test]
    fn the_gate_passes_when_both_endpoints_answer() {
        let ddb = TcpListener::bind("127.0.0.1:0").unwrap();
        let moto = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = |l: &TcpListener| format!("http://127.0.0.1:{}/", l.local_addr().unwrap().port());
        check_emulators(env(&[
            ("FERRY_EMULATORS", "1".into()),
            ("AWS_ENDPOINT_URL_DYNAMODB", url(&ddb)),
            ("AWS_ENDPOINT_URL", url(&moto)),
        ]))
        .unwrap();
    }
}
