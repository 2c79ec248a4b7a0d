//! The Lambda handlers called directly with constructed events (no Lambda runtime needed).

use std::sync::Arc;

use ferry_app::{Ferry, SystemClock};
use ferry_embedded::{FsCodeStore, FsLogSink, SqliteStore};
use lambda_http::tower::ServiceExt;

fn ferry(dir: &std::path::Path) -> Ferry {
    Ferry::new(
        Arc::new(SqliteStore::open(&dir.join("db")).unwrap()),
        Arc::new(FsCodeStore::new(dir.join("b"))),
        Arc::new(FsLogSink::new(dir.join("l"))),
        Arc::new(SystemClock),
    )
}

/// An API Gateway HTTP API (payload v2) event, as Lambda delivers it.
fn apigw_event(method: &str, path: &str, body: Option<&str>) -> String {
    serde_json::json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "abc.execute-api.eu-central-1.amazonaws.com"},
        "requestContext": {
            "accountId": "123456789012", "apiId": "abc", "domainName": "abc.execute-api.eu-central-1.amazonaws.com",
            "domainPrefix": "abc", "requestId": "r1", "routeKey": "$default", "stage": "$default",
            "time": "24/Nov/2026:10:00:00 +0000", "timeEpoch": 1795514400000u64,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4", "userAgent": "test"}
        },
        "body": body,
        "isBase64Encoded": false
    })
    .to_string()
}

#[tokio::test]
async fn the_api_router_serves_api_gateway_v2_events_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path());
    f.ensure_default_queue().await.unwrap();
    let router = ferry_api::router(ferry_api::ApiState {
        ferry: f,
        token: None,
        backend: ferry_api::Backend::Aws,
        claim_waits: ferry_api::ClaimWaits::answer_at_once(),
    });

    let req = lambda_http::request::from_str(&apigw_event("GET", "/v1/health", None)).unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["backend"], "aws");

    let create = r#"{"name": "from-lambda", "concurrency_limit": 2}"#;
    let req = lambda_http::request::from_str(&apigw_event("POST", "/v1/work-queues", Some(create)))
        .unwrap();
    let resp = router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 201);

    let bad =
        r#"{"flow": "a", "name": "b", "entrypoint": "x.sh", "schedules": [{"cron": "nope"}]}"#;
    let req =
        lambda_http::request::from_str(&apigw_event("PUT", "/v1/deployments", Some(bad))).unwrap();
    let resp = router.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 400);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["field"], "schedules[0].cron");
}

#[tokio::test]
async fn the_tick_handler_extends_horizons_from_an_eventbridge_event() {
    let dir = tempfile::tempdir().unwrap();
    let f = ferry(dir.path());
    f.ensure_default_queue().await.unwrap();
    let spec = serde_json::from_value(serde_json::json!({
        "flow": "etl", "name": "hourly", "entrypoint": "run.sh", "schedules": [{"cron": "0 * * * *"}]
    }))
    .unwrap();
    f.apply_deployment(spec).await.unwrap();
    let event = serde_json::json!({
        "version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-11-24T10:00:00Z", "region": "eu-central-1",
        "resources": ["arn:aws:events:eu-central-1:123456789012:rule/ferry-tick"], "detail": {}
    });
    let report = ferry_functions::tick_handler(
        &f,
        lambda_runtime::LambdaEvent::new(event.clone(), lambda_runtime::Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(report.deployments_extended, 1);
    assert!(report.runs_created >= 3);
    let again = ferry_functions::tick_handler(
        &f,
        lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()),
    )
    .await
    .unwrap();
    assert_eq!(again.runs_created, 0);
}
