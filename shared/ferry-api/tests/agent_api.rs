//! The agent endpoints in-process (`oneshot`) over the embedded adapters: a run's whole life
//! through them, their idempotency, the lease-holder check, and 4xx (never 5xx) for bad input.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ferry_api::ClaimWaits;
use ferry_app::{Ferry, SystemClock};
use ferry_embedded::{FsCodeStore, FsLogSink, SqliteStore};
use serde_json::{json, Value};
use tower::ServiceExt;

struct App {
    router: axum::Router,
    _dir: tempfile::TempDir,
}

async fn app() -> App {
    app_with(ClaimWaits::wait_in_process()).await
}

/// The API over a fresh store, whose claims wait as `claim_waits` says; a run created through
/// it wakes them (as `ferry server` wires it).
async fn app_with(claim_waits: ClaimWaits) -> App {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let waits = claim_waits.clone();
    let ferry = Ferry::new(
        Arc::new(SqliteStore::open(&d.join("db")).unwrap()),
        Arc::new(FsCodeStore::new(d.join("bundles"))),
        Arc::new(FsLogSink::new(d.join("logs"))),
        Arc::new(SystemClock),
    )
    .with_on_run_created(move || waits.wake_all());
    ferry.ensure_default_queue().await.unwrap();
    let router = ferry_api::router(ferry_api::ApiState {
        ferry,
        token: None,
        backend: ferry_api::Backend::Embedded,
        claim_waits,
    });
    App { router, _dir: dir }
}

impl App {
    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let req = Request::builder().method(method).uri(uri);
        let req = match body {
            Some(v) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => req.body(Body::empty()),
        };
        let res = self.router.clone().oneshot(req.unwrap()).await.unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 24)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, body)
    }

    async fn ok(&self, method: &str, uri: &str, body: Option<Value>) -> Value {
        let (status, v) = self.call(method, uri, body).await;
        assert!(status.is_success(), "{method} {uri}: {status} {v}");
        v
    }

    /// A deployment `flow/d` and one run of it due now; returns the run id.
    async fn run_due_now(&self, extra: Value) -> String {
        let mut spec = json!({"flow": "flow", "name": "d", "entrypoint": "run.sh"});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        self.ok("PUT", "/v1/deployments", Some(spec)).await;
        let run = self
            .ok("POST", "/v1/deployments/flow/d/runs", Some(json!({})))
            .await;
        run["id"].as_str().unwrap().to_owned()
    }
}

fn claim_body() -> Value {
    json!({"queues": ["default"], "prefetch_seconds": 10, "free": 4, "lease_seconds": 5})
}

#[tokio::test]
async fn a_run_goes_from_claim_to_finish_through_the_agent_endpoints_each_safe_to_repeat() {
    let app = app().await;
    let id = app.run_due_now(json!({"retries": 1})).await;
    let claimed = app
        .ok("POST", "/v1/agents/a1/claims", Some(claim_body()))
        .await;
    assert_eq!(claimed.as_array().unwrap().len(), 1, "{claimed}");
    assert_eq!(claimed[0]["run"]["id"], id.as_str());
    assert_eq!(claimed[0]["run"]["lease"]["agent_id"], "a1");
    assert_eq!(claimed[0]["deployment"]["spec"]["name"], "d");
    let again = app
        .ok("POST", "/v1/agents/a1/claims", Some(claim_body()))
        .await;
    assert_eq!(again, json!([]), "a run is claimed once");

    // Another agent cannot act on a1's run.
    let hb = app
        .ok("POST", &format!("/v1/agents/a2/runs/{id}/heartbeat"), None)
        .await;
    assert_eq!(hb["outcome"], "lost");
    let st = app
        .ok("POST", &format!("/v1/agents/a2/runs/{id}/start"), None)
        .await;
    assert_eq!(st["run"], Value::Null);
    let (status, _) = app
        .call(
            "POST",
            &format!("/v1/agents/a2/runs/{id}/logs"),
            Some(
                json!({"lines": [{"at": "2026-01-01T00:00:00Z", "stream": "stdout", "line": "x"}]}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Start twice (a lost answer retried): both answer the running run.
    for _ in 0..2 {
        let st = app
            .ok("POST", &format!("/v1/agents/a1/runs/{id}/start"), None)
            .await;
        assert_eq!(st["run"]["state"], "running", "{st}");
        assert!(st["run"]["log_location"].is_string(), "{st}");
    }
    let hb = app
        .ok(
            "POST",
            &format!("/v1/agents/a1/runs/{id}/heartbeat"),
            Some(json!({"lease_seconds": 20})),
        )
        .await;
    assert_eq!(hb["outcome"], "renewed");
    let line =
        json!({"lines": [{"at": "2026-01-01T00:00:00Z", "stream": "stdout", "line": "hello"}]});
    let (status, _) = app
        .call(
            "POST",
            &format!("/v1/agents/a1/runs/{id}/logs"),
            Some(line.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);

    // Finish twice: the second answers the failed run unchanged, and schedules no second retry.
    let end = json!({"end": {"state": "failed", "exit_code": 1, "reason": "ValueError: x (exit code 1)"}});
    for _ in 0..2 {
        let done = app
            .ok(
                "POST",
                &format!("/v1/agents/a1/runs/{id}/finish"),
                Some(end.clone()),
            )
            .await;
        assert_eq!(done["state"], "failed");
        assert_eq!(done["state_message"], "ValueError: x (exit code 1)");
    }
    let runs = app.ok("GET", "/v1/flow-runs?deployment=flow/d", None).await;
    assert_eq!(
        runs.as_array().unwrap().len(),
        2,
        "the run and one retry: {runs}"
    );
    // The agent's closing line still reaches the log just after the end.
    let (status, _) = app
        .call("POST", &format!("/v1/agents/a1/runs/{id}/logs"), Some(line))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let logs = app
        .ok("GET", &format!("/v1/flow-runs/{id}/logs"), None)
        .await;
    assert_eq!(logs["lines"].as_array().unwrap().len(), 2, "{logs}");
}

#[tokio::test]
async fn a_claimed_run_not_started_is_released_back_to_its_queue() {
    let app = app().await;
    let id = app.run_due_now(json!({})).await;
    app.ok("POST", "/v1/agents/a1/claims", Some(claim_body()))
        .await;
    let r = app
        .ok("POST", &format!("/v1/agents/a1/runs/{id}/release"), None)
        .await;
    assert_eq!(r["state"], "scheduled");
    assert!(r.get("lease").is_none_or(Value::is_null), "{r}");
}

#[tokio::test]
async fn bad_agent_requests_are_refused_with_a_4xx_naming_the_field() {
    let app = app().await;
    let id = app.run_due_now(json!({})).await;
    let long = "a".repeat(201);
    let cases: Vec<(&str, String, Option<Value>, &str)> = vec![
        (
            "POST",
            "/v1/agents/a1/claims".into(),
            Some(json!({"queues": [], "prefetch_seconds": 0, "free": 1})),
            "queues",
        ),
        (
            "POST",
            "/v1/agents/a1/claims".into(),
            Some(json!({"queues": ["no such/queue"], "prefetch_seconds": 0, "free": 1})),
            "queues[0]",
        ),
        (
            "POST",
            "/v1/agents/a1/claims".into(),
            Some(json!({"queues": ["default"], "prefetch_seconds": -1, "free": 1})),
            "prefetch_seconds",
        ),
        (
            "POST",
            "/v1/agents/a1/claims".into(),
            Some(json!({"queues": ["default"], "prefetch_seconds": 1e300, "free": 1})),
            "prefetch_seconds",
        ),
        (
            "POST",
            "/v1/agents/a1/claims".into(),
            Some(json!({"queues": ["default"], "prefetch_seconds": 0, "free": 0})),
            "free",
        ),
        (
            "POST",
            "/v1/agents/a1/claims".into(),
            Some(
                json!({"queues": ["default"], "prefetch_seconds": 0, "free": 1, "lease_seconds": 1}),
            ),
            "lease_seconds",
        ),
        (
            "POST",
            "/v1/agents/a1/claims".into(),
            Some(json!({"queues": ["default"], "prefetch_seconds": 0, "free": -3})),
            "free",
        ),
        (
            "POST",
            "/v1/agents/a1/claims".into(),
            Some(json!([1])),
            "body",
        ),
        (
            "POST",
            "/v1/agents/a1/claims".into(),
            Some(
                json!({"queues": ["default"], "prefetch_seconds": 0, "free": 1, "wait_seconds": 21}),
            ),
            "wait_seconds",
        ),
        (
            "POST",
            "/v1/agents/a1/claims".into(),
            Some(
                json!({"queues": ["default"], "prefetch_seconds": 0, "free": 1, "wait_seconds": -1}),
            ),
            "wait_seconds",
        ),
        (
            "POST",
            format!("/v1/agents/{long}/claims"),
            Some(claim_body()),
            "name",
        ),
        (
            "POST",
            "/v1/agents/a%0Ab/claims".into(),
            Some(claim_body()),
            "name",
        ),
        (
            "POST",
            "/v1/agents/a1/runs/not-a-run/heartbeat".into(),
            None,
            "id",
        ),
        (
            "POST",
            format!("/v1/agents/a1/runs/{id}/heartbeat"),
            Some(json!({"lease_seconds": 1e9})),
            "lease_seconds",
        ),
        (
            "POST",
            format!("/v1/agents/a1/runs/{id}/finish"),
            Some(json!({"end": {"state": "exploded"}})),
            "end",
        ),
        (
            "POST",
            format!("/v1/agents/a1/runs/{id}/finish"),
            Some(json!({"end": {"state": "failed", "reason": "x".repeat(5000)}})),
            "end.reason",
        ),
        (
            "POST",
            format!("/v1/agents/a1/runs/{id}/logs"),
            Some(json!({"lines": [{"at": "yesterday", "stream": "stdout", "line": "x"}]})),
            "lines[0].at",
        ),
        (
            "GET",
            "/v1/bundles/not-a-digest/download-url".into(),
            None,
            "sha256",
        ),
    ];
    for (method, uri, body, field) in cases {
        let (status, v) = app.call(method, &uri, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {uri}: {v}");
        assert!(
            v["field"].as_str().is_some_and(|f| f.starts_with(field))
                || v["message"].as_str().unwrap_or("").contains(field),
            "{method} {uri}: {v} should name {field}"
        );
    }
    // A refused claim (a bad wait_seconds among them) claimed nothing.
    let run = app.ok("GET", &format!("/v1/flow-runs/{id}"), None).await;
    assert_eq!(run["state"], "scheduled", "{run}");
    let (_, v) = app
        .call(
            "POST",
            "/v1/agents/a1/claims",
            Some(json!({"queues": ["default"], "prefetch_seconds": 0, "free": 1, "wait_seconds": 20.5})),
        )
        .await;
    assert_eq!(
        v["message"],
        "wait_seconds: must be between 0 and 20 (how long a claim that finds nothing waits for work)"
    );
    // A well-formed request about a run that does not exist is a 404.
    let ghost = "01a2325a-d44f-7b77-98e9-266540ee96c9";
    let (status, _) = app
        .call(
            "POST",
            &format!("/v1/agents/a1/runs/{ghost}/heartbeat"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The embedded server serves bundles itself: no download URL.
    let sha = "0".repeat(64);
    let v = app
        .ok("GET", &format!("/v1/bundles/{sha}/download-url"), None)
        .await;
    assert_eq!(v["url"], Value::Null);
}

impl App {
    /// Claims and starts run `id` as agent a1.
    async fn claim_and_start(&self, id: &str) {
        let claimed = self
            .ok("POST", "/v1/agents/a1/claims", Some(claim_body()))
            .await;
        assert_eq!(claimed[0]["run"]["id"], id, "{claimed}");
        self.ok("POST", &format!("/v1/agents/a1/runs/{id}/start"), None)
            .await;
    }
}

#[tokio::test]
async fn a_result_sent_with_the_finish_is_stored_and_served_inline_or_as_an_object() {
    let app = app().await;
    let id = app
        .run_due_now(json!({"entrypoint": "flows/f.py:main"}))
        .await;
    // Before the end: 404 naming why.
    let (status, body) = app
        .call("GET", &format!("/v1/flow-runs/{id}/result"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["kind"], "not_found");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("has not finished"),
        "{body}"
    );
    app.claim_and_start(&id).await;
    let value = json!({"rows": 3, "nothing": null});
    let end = json!({"end": {"state": "completed", "result": {"value": value}}});
    // Twice (a lost answer retried): the second answers the completed run unchanged.
    for _ in 0..2 {
        let done = app
            .ok(
                "POST",
                &format!("/v1/agents/a1/runs/{id}/finish"),
                Some(end.clone()),
            )
            .await;
        assert_eq!(done["state"], "completed");
        assert_eq!(done["result"], json!({"kind": "inline", "value": value}));
    }
    let got = app
        .ok("GET", &format!("/v1/flow-runs/{id}/result"), None)
        .await;
    assert_eq!(got, value);
    // A prefix of the id names the run too.
    let got = app
        .ok("GET", &format!("/v1/flow-runs/{}/result", &id[..13]), None)
        .await;
    assert_eq!(got, value);

    // 100 KB: an object in the code store, referenced with its size and digest.
    let big = json!(vec!["y".repeat(1000); 100]);
    let run = app
        .ok("POST", "/v1/deployments/flow/d/runs", Some(json!({})))
        .await;
    let id = run["id"].as_str().unwrap();
    app.claim_and_start(id).await;
    let done = app
        .ok(
            "POST",
            &format!("/v1/agents/a1/runs/{id}/finish"),
            Some(json!({"end": {"state": "completed", "result": {"value": big}}})),
        )
        .await;
    assert_eq!(done["result"]["kind"], "stored", "{}", done["result"]);
    assert_eq!(done["result"]["bytes"], 100 * 1003 + 1);
    assert_eq!(
        done["result"]["sha256"].as_str().unwrap().len(),
        64,
        "{}",
        done["result"]
    );
    let got = app
        .ok("GET", &format!("/v1/flow-runs/{id}/result"), None)
        .await;
    assert_eq!(got, big);
}

#[tokio::test]
async fn a_run_without_a_result_is_a_404_naming_why() {
    let app = app().await;
    // An executable (`run.sh`) completes without one.
    let id = app.run_due_now(json!({})).await;
    app.claim_and_start(&id).await;
    let done = app
        .ok(
            "POST",
            &format!("/v1/agents/a1/runs/{id}/finish"),
            Some(json!({"end": {"state": "completed"}})),
        )
        .await;
    assert_eq!(done["state"], "completed");
    assert!(done.get("result").is_none(), "{done}");
    let (status, body) = app
        .call("GET", &format!("/v1/flow-runs/{id}/result"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("executable"),
        "{body}"
    );
    // A failed run: "ended failed".
    let run = app
        .ok("POST", "/v1/deployments/flow/d/runs", Some(json!({})))
        .await;
    let id = run["id"].as_str().unwrap();
    app.claim_and_start(id).await;
    app.ok(
        "POST",
        &format!("/v1/agents/a1/runs/{id}/finish"),
        Some(json!({"end": {"state": "failed", "reason": "exit code 1"}})),
    )
    .await;
    let (status, body) = app
        .call("GET", &format!("/v1/flow-runs/{id}/result"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("ended failed"),
        "{body}"
    );
    // An unknown run is the usual 404.
    let (status, body) = app
        .call(
            "GET",
            "/v1/flow-runs/00000000-0000-7000-8000-000000000000/result",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not found"),
        "{body}"
    );
}

#[tokio::test]
async fn a_result_over_the_cap_is_refused_naming_the_field_and_the_run_stays_running() {
    let app = app().await;
    let id = app
        .run_due_now(json!({"entrypoint": "flows/f.py:main"}))
        .await;
    app.claim_and_start(&id).await;
    let huge = json!("z".repeat(ferry_core::result::MAX_RESULT_BYTES));
    let (status, body) = app
        .call(
            "POST",
            &format!("/v1/agents/a1/runs/{id}/finish"),
            Some(json!({"end": {"state": "completed", "result": {"value": huge}}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "end.result", "{body}");
    let run = app.ok("GET", &format!("/v1/flow-runs/{id}"), None).await;
    assert_eq!(run["state"], "running");
}

impl App {
    /// `POST /v1/agents/{agent}/claims` asking to wait `wait` seconds: the status, the runs'
    /// ids, the granted wait (its header) and how long the answer took.
    async fn long_poll(
        &self,
        agent: &str,
        wait: f64,
    ) -> (StatusCode, Vec<String>, String, Duration) {
        let body = json!({"queues": ["default"], "prefetch_seconds": 0, "free": 4,
                          "lease_seconds": 5, "wait_seconds": wait});
        let req = Request::builder()
            .method("POST")
            .uri(format!("/v1/agents/{agent}/claims"))
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        let started = Instant::now();
        let res = self.router.clone().oneshot(req).await.unwrap();
        let took = started.elapsed();
        let status = res.status();
        let granted = res
            .headers()
            .get("ferry-wait-seconds")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 24)
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&bytes).unwrap();
        let ids = v
            .as_array()
            .unwrap_or_else(|| panic!("{v}"))
            .iter()
            .map(|c| c["run"]["id"].as_str().unwrap().to_owned())
            .collect();
        (status, ids, granted, took)
    }
}

#[tokio::test]
async fn a_waiting_claim_answers_when_a_run_is_created_and_empty_after_its_wait() {
    let app = Arc::new(app().await);
    // Nothing to claim: the claim waits its whole wait, then answers an empty list.
    let (status, ids, granted, took) = app.long_poll("a1", 1.0).await;
    assert_eq!(
        (status, ids.len(), granted.as_str()),
        (StatusCode::OK, 0, "1")
    );
    assert!(
        took >= Duration::from_millis(950),
        "answered after {took:?}"
    );
    assert!(took < Duration::from_secs(5), "answered after {took:?}");

    // Three agents wait; a run created through the API wakes all of them, one claims it.
    let waiting: Vec<_> = (1..=3)
        .map(|n| {
            let app = app.clone();
            tokio::spawn(async move { app.long_poll(&format!("a{n}"), 15.0).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = app.run_due_now(json!({})).await;
    let mut claimed = Vec::new();
    for w in waiting {
        let (status, ids, granted, took) = w.await.unwrap();
        assert_eq!((status, granted.as_str()), (StatusCode::OK, "15"));
        assert!(took < Duration::from_secs(5), "woken after {took:?}");
        claimed.extend(ids);
    }
    assert_eq!(claimed, vec![id], "claimed exactly once");
}

#[tokio::test]
async fn a_waiting_claim_takes_a_run_when_it_comes_due() {
    let app = app().await;
    app.run_due_now(json!({})).await;
    app.long_poll("a1", 0.0).await;
    let later = app
        .ok(
            "POST",
            "/v1/deployments/flow/d/runs",
            Some(json!({"start_in_seconds": 2})),
        )
        .await;
    // Nothing due now (the look-ahead is 0): the claim waits until the run is due, no longer.
    let (_, ids, _, took) = app.long_poll("a2", 15.0).await;
    assert_eq!(ids, vec![later["id"].as_str().unwrap().to_owned()]);
    assert!(took >= Duration::from_millis(900), "claimed after {took:?}");
    assert!(took < Duration::from_secs(5), "claimed after {took:?}");
}

#[tokio::test]
async fn a_waiting_claim_takes_a_limited_deployment_s_run_when_it_is_due() {
    let app = app().await;
    app.run_due_now(json!({"concurrency_limit": 1})).await;
    let (_, first, _, _) = app.long_poll("a1", 0.0).await;
    assert_eq!(first.len(), 1);
    for (step, body) in [
        ("start", None),
        ("finish", Some(json!({"end": {"state": "completed"}}))),
    ] {
        app.ok(
            "POST",
            &format!("/v1/agents/a1/runs/{}/{step}", first[0]),
            body,
        )
        .await;
    }
    let later = app
        .ok(
            "POST",
            "/v1/deployments/flow/d/runs",
            Some(json!({"start_in_seconds": 2})),
        )
        .await;
    // Within a 10 s look-ahead, but a limited deployment's run is claimed only when due: the
    // claim waits for that, not for its whole wait.
    let body = json!({"queues": ["default"], "prefetch_seconds": 10, "free": 4,
                      "lease_seconds": 5, "wait_seconds": 15});
    let started = Instant::now();
    let v = app.ok("POST", "/v1/agents/a2/claims", Some(body)).await;
    let took = started.elapsed();
    assert_eq!(v[0]["run"]["id"], later["id"], "{v}");
    assert!(took >= Duration::from_millis(900), "claimed after {took:?}");
    assert!(took < Duration::from_secs(5), "claimed after {took:?}");
}

#[tokio::test]
async fn the_lambda_s_api_answers_a_long_poll_at_once_granting_no_wait() {
    let app = app_with(ClaimWaits::answer_at_once()).await;
    let (status, ids, granted, took) = app.long_poll("a1", 20.0).await;
    assert_eq!(
        (status, ids.len(), granted.as_str()),
        (StatusCode::OK, 0, "0")
    );
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
}
