//! The HTTP API of a real `ferry server` (issue 8: body limits, error shape, idempotency keys,
//! the auth scheme).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use ferry_tests::Server;
use serde_json::{json, Value};

/// Sends `body` with `method` and returns the status and the parsed body.
fn call(s: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, String, Value) {
    let http = s.http();
    let url = format!("{}{path}", s.url);
    let mut res = match (method, body) {
        ("GET", None) => http.get(&url).call(),
        ("POST", Some(b)) => http.post(&url).send_json(b),
        ("PUT", Some(b)) => http.put(&url).send_json(b),
        other => panic!("unsupported call {other:?}"),
    }
    .unwrap();
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = res.body_mut().read_to_string().unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, content_type, v)
}

fn deploy(s: &Server) {
    let (status, _, body) = call(
        s,
        "PUT",
        "/v1/deployments",
        Some(
            json!({"flow": "etl", "name": "daily", "entrypoint": "run.sh",
                    "parameters": {"n": 1}}),
        ),
    );
    assert!(status == 200 || status == 201, "{status}: {body}");
}

#[test]
fn a_huge_json_body_is_refused_with_413_before_the_server_reads_it() {
    let s = Server::start();
    let addr = s.url.trim_start_matches("http://").to_owned();
    let mut conn = TcpStream::connect(&addr).unwrap();
    let declared: u64 = 200 * 1024 * 1024;
    write!(
        conn,
        "PUT /v1/deployments HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {declared}\r\n\r\n{{\"description\": \""
    )
    .unwrap();
    // The answer is read while the body is still being sent: a server that buffers the whole
    // 200 MB (which this client never sends) answers nothing until the read times out.
    let mut reader = conn.try_clone().unwrap();
    reader
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let answer = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf);
                    if text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                        break;
                    }
                }
                Err(e) => {
                    assert!(!buf.is_empty(), "no answer: {e}");
                    break;
                }
            }
        }
        String::from_utf8_lossy(&buf).into_owned()
    });
    let started = Instant::now();
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0usize;
    // At most 8 MiB of the declared 200 MiB; stop as soon as the server stops reading.
    while sent < 8 * 1024 * 1024 && !answer.is_finished() {
        if conn.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let answer = answer.join().unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "after {sent} bytes sent in {:?}: {answer}",
        started.elapsed()
    );
    let body: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap().trim())
        .unwrap_or_else(|e| panic!("not the JSON error shape ({e}): {answer}"));
    assert_eq!(body["kind"], "too_large");
    assert_eq!(body["field"], "body");
}

#[test]
fn a_bad_query_string_answers_the_json_error_shape() {
    let s = Server::start();
    let (status, content_type, body) = call(&s, "GET", "/v1/flow-runs?limit=-1", None);
    assert_eq!(status, 400, "{body}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    assert_eq!(body["kind"], "invalid");
    assert_eq!(body["field"], "limit");
}

#[test]
fn an_idempotency_key_reused_with_other_parameters_is_refused_with_409() {
    let s = Server::start();
    deploy(&s);
    let path = "/v1/deployments/etl/daily/runs";
    let first = json!({"parameters": {"n": 2}, "idempotency_key": "nightly-2026-03-01"});
    let (status, _, run) = call(&s, "POST", path, Some(first.clone()));
    assert_eq!(status, 201, "{run}");
    let (status, _, again) = call(&s, "POST", path, Some(first));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], run["id"]);
    let (status, _, body) = call(
        &s,
        "POST",
        path,
        Some(json!({"parameters": {"n": 3}, "idempotency_key": "nightly-2026-03-01"})),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["kind"], "conflict");
    assert_eq!(body["field"], "idempotency_key");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("nightly-2026-03-01"),
        "{body}"
    );
}

#[test]
fn a_lowercase_bearer_scheme_is_accepted() {
    let s = Server::start_with(&["--host", "0.0.0.0"], &[("FERRY_API_TOKEN", "s3cret")]);
    let http = s.http();
    for auth in ["bearer s3cret", "BEARER s3cret", "Bearer s3cret"] {
        let r = http
            .get(format!("{}/v1/work-queues", s.url))
            .header("Authorization", auth)
            .call()
            .unwrap();
        assert_eq!(r.status(), 200, "{auth}");
    }
    let mut r = http
        .get(format!("{}/v1/work-queues", s.url))
        .header("Authorization", "bearer wrong")
        .call()
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.body_mut().read_json().unwrap();
    assert_eq!(body["kind"], "unauthorized");
}
