//! The `/v1` router in-process (`oneshot`, no socket) over the embedded adapters.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use ferry_app::{Ferry, SystemClock};
use ferry_embedded::{FsCodeStore, FsLogSink, SqliteStore};
use serde_json::{json, Value};
use tower::ServiceExt;

struct App {
    router: axum::Router,
    _dir: tempfile::TempDir,
}

async fn app_with_token(token: Option<&str>) -> App {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ferry = Ferry::new(
        Arc::new(SqliteStore::open(&d.join("db")).unwrap()),
        Arc::new(FsCodeStore::new(d.join("bundles"))),
        Arc::new(FsLogSink::new(d.join("logs"))),
        Arc::new(SystemClock),
    );
    ferry.ensure_default_queue().await.unwrap();
    let router = ferry_api::router(ferry_api::ApiState {
        ferry,
        token: token.map(Into::into),
        backend: ferry_api::Backend::Embedded,
        claim_waits: ferry_api::ClaimWaits::wait_in_process(),
    });
    App { router, _dir: dir }
}

async fn app() -> App {
    app_with_token(None).await
}

struct Answer {
    status: StatusCode,
    content_type: String,
    body: Value,
}

impl App {
    async fn send(&self, req: Request<Body>) -> Answer {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let content_type = res
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 24)
            .await
            .unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer {
            status,
            content_type,
            body,
        }
    }

    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> Answer {
        let req = Request::builder().method(method).uri(uri);
        let req = match body {
            Some(v) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(v.to_string())),
            None => req.body(Body::empty()),
        };
        self.send(req.unwrap()).await
    }

    async fn deploy(&self, parameters: Value) {
        let a = self
            .call(
                "PUT",
                "/v1/deployments",
                Some(
                    json!({"flow": "etl", "name": "daily", "entrypoint": "run.sh",
                            "parameters": parameters}),
                ),
            )
            .await;
        assert!(a.status.is_success(), "{:?}", a.body);
    }
}

/// Asserts the one error shape: JSON `{kind, message[, field]}`.
fn assert_error_shape(a: &Answer, status: StatusCode, kind: &str) {
    assert_eq!(a.status, status, "{:?}", a.body);
    assert!(
        a.content_type.starts_with("application/json"),
        "error answered as {:?}: {:?}",
        a.content_type,
        a.body
    );
    assert_eq!(a.body["kind"], kind, "{:?}", a.body);
    assert!(a.body["message"].as_str().is_some_and(|m| !m.is_empty()));
}

// ------------------------------------------------------------------ 13: body limits

#[tokio::test]
async fn a_json_body_past_the_route_limit_is_a_json_413() {
    let app = app().await;
    let huge = format!(
        r#"{{"flow": "etl", "name": "big", "entrypoint": "run.sh", "description": "{}"}}"#,
        "x".repeat(ferry_api::MAX_JSON_BODY_BYTES + 1)
    );
    let req = Request::builder()
        .method("PUT")
        .uri("/v1/deployments")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(huge))
        .unwrap();
    let a = app.send(req).await;
    assert_error_shape(&a, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    assert_eq!(a.body["field"], "body");
    assert!(a.body["message"].as_str().unwrap().contains("1 MiB"));
}

#[tokio::test]
async fn the_bundle_upload_still_takes_bodies_past_the_json_limit() {
    let app = app().await;
    let bytes = vec![7u8; 2 * ferry_api::MAX_JSON_BODY_BYTES];
    let sha = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&bytes))
    };
    let req = Request::builder()
        .method("PUT")
        .uri(format!("/v1/bundles/{sha}"))
        .header(header::CONTENT_TYPE, "application/gzip")
        .body(Body::from(bytes))
        .unwrap();
    let a = app.send(req).await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
}

// ------------------------------------------------------------------ 18: idempotency keys

#[tokio::test]
async fn an_idempotency_key_repeated_with_the_same_request_returns_the_same_run() {
    let app = app().await;
    app.deploy(json!({"n": 1})).await;
    let req = json!({"parameters": {"n": 2}, "idempotency_key": "k-1", "start_in_seconds": 60});
    let first = app
        .call("POST", "/v1/deployments/etl/daily/runs", Some(req.clone()))
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let again = app
        .call("POST", "/v1/deployments/etl/daily/runs", Some(req))
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["id"], first.body["id"]);
}

#[tokio::test]
async fn an_idempotency_key_reused_with_other_parameters_is_a_409_naming_the_key() {
    let app = app().await;
    app.deploy(json!({"n": 1})).await;
    let first = app
        .call(
            "POST",
            "/v1/deployments/etl/daily/runs",
            Some(json!({"parameters": {"n": 2}, "idempotency_key": "k-2"})),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let other = app
        .call(
            "POST",
            "/v1/deployments/etl/daily/runs",
            Some(json!({"parameters": {"n": 3}, "idempotency_key": "k-2"})),
        )
        .await;
    assert_error_shape(&other, StatusCode::CONFLICT, "conflict");
    assert_eq!(other.body["field"], "idempotency_key");
    let message = other.body["message"].as_str().unwrap();
    assert!(
        message.contains("k-2") && message.contains("parameters"),
        "{message}"
    );
    assert!(
        message.contains(first.body["id"].as_str().unwrap()),
        "{message}"
    );

    let later = app
        .call(
            "POST",
            "/v1/deployments/etl/daily/runs",
            Some(
                json!({"parameters": {"n": 2}, "idempotency_key": "k-2", "start_in_seconds": 600}),
            ),
        )
        .await;
    assert_error_shape(&later, StatusCode::CONFLICT, "conflict");
    assert!(later.body["message"]
        .as_str()
        .unwrap()
        .contains("start_in_seconds"));
    // The stored run kept its own parameters.
    let id = first.body["id"].as_str().unwrap();
    let run = app.call("GET", &format!("/v1/flow-runs/{id}"), None).await;
    assert_eq!(run.body["parameters"], json!({"n": 2}));
}

// ------------------------------------------------------------------ 19: one error shape

#[tokio::test]
async fn a_query_value_that_does_not_parse_is_a_json_400_naming_the_parameter() {
    let app = app().await;
    for (uri, field) in [
        ("/v1/flow-runs?limit=-1", "limit"),
        ("/v1/flow-runs?limit=abc", "limit"),
        ("/v1/flow-runs?limit=0", "limit"),
        ("/v1/work-queues/default/preview?hours=-3", "hours"),
        (
            "/v1/flow-runs/0190d6d2-0000-7000-8000-000000000000/logs?offset=-5",
            "offset",
        ),
        (
            "/v1/flow-runs/0190d6d2-0000-7000-8000-000000000000/logs?limit=0",
            "limit",
        ),
    ] {
        let a = app.call("GET", uri, None).await;
        assert_error_shape(&a, StatusCode::BAD_REQUEST, "invalid");
        assert_eq!(a.body["field"], field, "{uri}: {:?}", a.body);
        assert!(
            a.body["message"].as_str().unwrap().starts_with(field),
            "{uri}: {:?}",
            a.body
        );
    }
}

#[tokio::test]
async fn router_refusals_have_the_json_error_shape() {
    let app = app().await;
    let a = app.call("DELETE", "/v1/health", None).await;
    assert_error_shape(&a, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let a = app.call("GET", "/v1/nowhere", None).await;
    assert_error_shape(&a, StatusCode::NOT_FOUND, "not_found");
    let a = app.call("GET", "/v1/flow-runs/%FF", None).await;
    assert_error_shape(&a, StatusCode::BAD_REQUEST, "invalid");
    let a = app
        .call("POST", "/v1/work-queues", Some(json!([1, 2])))
        .await;
    assert_error_shape(&a, StatusCode::BAD_REQUEST, "invalid");
}

// ------------------------------------------------------------------ 21: auth scheme

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = app_with_token(Some("s3cret")).await;
    let with = |auth: &'static str| {
        Request::builder()
            .uri("/v1/work-queues")
            .header(header::AUTHORIZATION, auth)
            .body(Body::empty())
            .unwrap()
    };
    for ok in [
        "Bearer s3cret",
        "bearer s3cret",
        "BEARER s3cret",
        "beArer   s3cret",
    ] {
        assert_eq!(app.send(with(ok)).await.status, StatusCode::OK, "{ok}");
    }
    for refused in [
        "Bearer wrong",
        "Basic s3cret",
        "s3cret",
        "Bearers3cret",
        "Bearer",
    ] {
        let a = app.send(with(refused)).await;
        assert_error_shape(&a, StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

// ------------------------------------------------------------------ 20: the OpenAPI document

fn openapi() -> Value {
    use utoipa::OpenApi;
    serde_json::to_value(ferry_api::ApiDoc::openapi()).unwrap()
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            ops.push((path.clone(), method.clone(), op.clone()));
        }
    }
    ops
}

#[test]
fn path_parameters_of_the_openapi_document_are_in_their_path_and_the_rest_in_the_query() {
    for (path, method, op) in operations(&openapi()) {
        for p in op["parameters"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap();
            let placeholder = format!("{{{name}}}");
            match p["in"].as_str().unwrap() {
                "path" => assert!(
                    path.contains(&placeholder) && p["required"] == true,
                    "{method} {path}: path parameter {name} is not in the path"
                ),
                "query" => assert!(
                    !path.contains(&placeholder) && p["required"] != true,
                    "{method} {path}: query parameter {name} is a placeholder or required"
                ),
                other => panic!("{method} {path}: {name} is in {other}"),
            }
        }
    }
}

#[test]
fn every_operation_with_input_documents_its_400() {
    let mut checked = 0;
    for (path, method, op) in operations(&openapi()) {
        let has_input = op["parameters"].as_array().is_some_and(|p| !p.is_empty())
            || op.get("requestBody").is_some();
        if has_input {
            checked += 1;
            assert!(
                op["responses"].get("400").is_some(),
                "{method} {path} can answer 400 but does not say so"
            );
        }
        if op.get("requestBody").is_some() {
            assert!(
                op["responses"].get("413").is_some(),
                "{method} {path} takes a body but does not document 413"
            );
        }
        for status in ["401", "503"] {
            assert!(
                op["responses"].get(status).is_some(),
                "{method} {path}: {status}"
            );
        }
    }
    assert!(checked >= 15, "only {checked} operations with input");
}

#[test]
fn the_bundle_body_is_binary() {
    let doc = openapi();
    let put = &doc["paths"]["/v1/bundles/{sha256}"]["put"];
    let schema = &put["requestBody"]["content"]["application/gzip"]["schema"];
    let schema = match schema.get("$ref") {
        Some(r) => {
            let name = r.as_str().unwrap().rsplit('/').next().unwrap();
            doc["components"]["schemas"][name].clone()
        }
        None => schema.clone(),
    };
    assert_eq!(schema["type"], "string", "{schema}");
    assert_eq!(schema["format"], "binary", "{schema}");
}

// ------------------------------------------------------------------ bodies name their field

#[tokio::test]
async fn a_bad_value_in_a_json_body_is_a_400_naming_its_field_and_nothing_is_written() {
    let app = app().await;
    let cases = [
        (
            json!({"flow": "etl", "name": "x", "entrypoint": "../up.sh"}),
            "entrypoint",
            "relative to the project directory",
        ),
        (
            json!({"flow": "etl", "name": "x", "entrypoint": "run.sh",
                   "schedules": [{"cron": "0 9 * * *", "time_zone": "Europe/Berlin"}]}),
            "schedules[0].time_zone",
            "time_zone",
        ),
    ];
    for (body, field, says) in cases {
        let a = app.call("PUT", "/v1/deployments", Some(body)).await;
        assert_error_shape(&a, StatusCode::BAD_REQUEST, "invalid");
        assert_eq!(a.body["field"], field, "{:?}", a.body);
        let message = a.body["message"].as_str().unwrap();
        assert!(message.contains(says), "{message}");
    }
    let listed = app.call("GET", "/v1/deployments", None).await;
    assert_eq!(listed.body, json!([]), "nothing was written");
}

// ------------------------------------------------------------------ infrastructure profiles

#[tokio::test]
async fn a_process_profile_is_created_replaced_read_listed_and_deleted() {
    let app = app().await;
    let spec = json!({"launch_lead_seconds": 30, "start_timeout_seconds": 60, "max_launches": 2});
    let a = app
        .call("PUT", "/v1/infra/process/local", Some(spec.clone()))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    assert_eq!(a.body["created"], true);
    assert_eq!(a.body["profile"]["name"], "process/local");
    assert_eq!(a.body["profile"]["version"], 1);
    assert_eq!(a.body["profile"]["spec"]["launch_lead_seconds"], 30);

    let again = app.call("PUT", "/v1/infra/process/local", Some(spec)).await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(
        (again.body["created"].clone(), again.body["changed"].clone()),
        (json!(false), json!(false))
    );
    assert_eq!(again.body["profile"]["version"], 1);

    let replaced = app
        .call(
            "PUT",
            "/v1/infra/process/local",
            Some(json!({"max_launches": 5})),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{:?}", replaced.body);
    assert_eq!(replaced.body["changed"], true);
    assert_eq!(replaced.body["profile"]["version"], 2);
    // Replaced whole: what the body left out is back to its default.
    assert_eq!(replaced.body["profile"]["spec"]["launch_lead_seconds"], 90);

    let got = app.call("GET", "/v1/infra/process/local", None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body, replaced.body["profile"]);
    let listed = app.call("GET", "/v1/infra", None).await;
    assert_eq!(listed.body, json!([replaced.body["profile"]]));

    let deleted = app.call("DELETE", "/v1/infra/process/local", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{:?}", deleted.body);
    let gone = app.call("GET", "/v1/infra/process/local", None).await;
    assert_error_shape(&gone, StatusCode::NOT_FOUND, "not_found");
    assert!(gone.body["message"]
        .as_str()
        .unwrap()
        .contains("process/local"));
    let again = app.call("DELETE", "/v1/infra/process/local", None).await;
    assert_error_shape(&again, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(app.call("GET", "/v1/infra", None).await.body, json!([]));
}

#[tokio::test]
async fn a_bad_profile_path_is_a_400_naming_the_segment_and_the_fix() {
    let app = app().await;
    for (method, uri, field, says) in [
        ("GET", "/v1/infra/k8s/prod", "kind", "/v1/infra/ecs/NAME"),
        ("DELETE", "/v1/infra/lambda/prod", "kind", "process/NAME"),
        (
            "PUT",
            "/v1/infra/process/-x",
            "name",
            "starting with a letter",
        ),
        ("GET", "/v1/infra/process/a%20b", "name", "letters, digits"),
    ] {
        let body = (method == "PUT").then(|| json!({}));
        let a = app.call(method, uri, body).await;
        assert_error_shape(&a, StatusCode::BAD_REQUEST, "invalid");
        assert_eq!(a.body["field"], field, "{uri}: {:?}", a.body);
        let message = a.body["message"].as_str().unwrap();
        assert!(message.contains(says), "{uri}: {message}");
    }
    assert_eq!(app.call("GET", "/v1/infra", None).await.body, json!([]));
}

#[tokio::test]
async fn a_bad_profile_body_is_a_400_naming_its_field_and_nothing_is_written() {
    let app = app().await;
    let cases = [
        (
            "/v1/infra/process/local",
            json!({"launch_lead": 30}),
            "launch_lead",
            "unknown field",
        ),
        (
            "/v1/infra/process/local",
            json!({"start_timeout_seconds": 1}),
            "start_timeout_seconds",
            "10-3600",
        ),
        (
            "/v1/infra/process/local",
            json!({"ecs": {"cluster": "c", "task_definition": "t", "subnets": ["s"]}}),
            "ecs",
            "process profile",
        ),
        (
            "/v1/infra/ecs/prod",
            json!({"ecs": {"cluster": "c", "task_definition": "t", "subnet": ["s"]}}),
            "ecs.subnet",
            "unknown field",
        ),
        // The embedded backend keeps bundles on its disk: an ECS task could not fetch them.
        (
            "/v1/infra/ecs/prod",
            json!({"ecs": {"cluster": "c", "task_definition": "t", "subnets": ["s"]}}),
            "ecs",
            "FERRY_BACKEND=aws",
        ),
    ];
    for (uri, body, field, says) in cases {
        let a = app.call("PUT", uri, Some(body)).await;
        assert_error_shape(&a, StatusCode::BAD_REQUEST, "invalid");
        assert_eq!(a.body["field"], field, "{uri}: {:?}", a.body);
        let message = a.body["message"].as_str().unwrap();
        assert!(message.contains(says), "{uri}: {message}");
    }
    let huge = json!({"ecs": {"cluster": "x".repeat(ferry_api::MAX_JSON_BODY_BYTES + 1)}});
    let a = app.call("PUT", "/v1/infra/ecs/prod", Some(huge)).await;
    assert_error_shape(&a, StatusCode::PAYLOAD_TOO_LARGE, "too_large");
    assert_eq!(app.call("GET", "/v1/infra", None).await.body, json!([]));
}

#[tokio::test]
async fn a_profile_in_use_is_not_deleted_and_the_409_names_the_deployment() {
    let app = app().await;
    let missing = app
        .call(
            "PUT",
            "/v1/deployments",
            Some(
                json!({"flow": "etl", "name": "daily", "entrypoint": "run.sh",
                        "infra_block": "process/local"}),
            ),
        )
        .await;
    assert_error_shape(&missing, StatusCode::BAD_REQUEST, "invalid");
    assert_eq!(missing.body["field"], "infra_block");
    assert!(missing.body["message"]
        .as_str()
        .unwrap()
        .contains("ferry infra create process/local"));

    let a = app
        .call("PUT", "/v1/infra/process/local", Some(json!({})))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
    let d = app
        .call(
            "PUT",
            "/v1/deployments",
            Some(
                json!({"flow": "etl", "name": "daily", "entrypoint": "run.sh",
                        "infra_block": "process/local",
                        "infra_overrides": {"env.MODE": "fast"}}),
            ),
        )
        .await;
    assert_eq!(d.status, StatusCode::CREATED, "{:?}", d.body);
    assert_eq!(d.body["deployment"]["spec"]["infra_block"], "process/local");
    assert_eq!(
        d.body["deployment"]["spec"]["infra_overrides"],
        json!({"env.MODE": "fast"})
    );

    let refused = app.call("DELETE", "/v1/infra/process/local", None).await;
    assert_error_shape(&refused, StatusCode::CONFLICT, "conflict");
    assert!(refused.body["message"]
        .as_str()
        .unwrap()
        .contains("etl/daily"));
    let still = app.call("GET", "/v1/infra/process/local", None).await;
    assert_eq!(still.status, StatusCode::OK);
}

#[test]
fn the_openapi_document_has_the_profile_routes_with_their_answers() {
    let doc = openapi();
    let item = &doc["paths"]["/v1/infra/{kind}/{name}"];
    for (method, statuses) in [
        ("put", &["200", "201", "400", "409", "413"][..]),
        ("get", &["200", "400", "404"][..]),
        ("delete", &["204", "400", "404", "409"][..]),
    ] {
        for status in statuses {
            assert!(
                item[method]["responses"].get(*status).is_some(),
                "{method} /v1/infra/{{kind}}/{{name}} does not document {status}"
            );
        }
    }
    assert!(doc["paths"]["/v1/infra"]["get"].is_object());
    for schema in [
        "InfraKind",
        "InfraSpec",
        "InfraProfile",
        "InfraOutcome",
        "EcsTarget",
    ] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "{schema} is not in the document"
        );
    }
}

#[test]
fn every_schema_reference_of_the_openapi_document_resolves() {
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let doc = openapi();
    let mut found = Vec::new();
    refs(&doc, &mut found);
    assert!(found.len() > 20, "only {} references", found.len());
    for r in found {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or(&r);
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "{r} points at no schema"
        );
    }
}

// ------------------------------------------------------------------ 12: keyset pages

#[tokio::test]
async fn flow_runs_pages_follow_before_to_the_end_and_refuse_an_unknown_run() {
    let app = app().await;
    app.deploy(json!({})).await;
    for _ in 0..5 {
        let a = app
            .call("POST", "/v1/deployments/etl/daily/runs", Some(json!({})))
            .await;
        assert!(a.status.is_success(), "{:?}", a.body);
    }
    let ids = |a: &Answer| -> Vec<String> {
        a.body
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let whole = ids(&app.call("GET", "/v1/flow-runs?limit=50", None).await);
    assert_eq!(whole.len(), 5);
    let mut paged: Vec<String> = Vec::new();
    let mut uri = "/v1/flow-runs?limit=2".to_owned();
    loop {
        let a = app.call("GET", &uri, None).await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        let page = ids(&a);
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 2);
        uri = format!("/v1/flow-runs?limit=2&before={last}");
        paged.extend(page);
        assert!(paged.len() <= 5, "pages repeat runs: {paged:?}");
    }
    assert_eq!(paged, whole);
    for before in ["abc", "0190d6d2-0000-7000-8000-000000000000"] {
        let a = app
            .call("GET", &format!("/v1/flow-runs?before={before}"), None)
            .await;
        assert_error_shape(&a, StatusCode::BAD_REQUEST, "invalid");
        assert_eq!(a.body["field"], "before", "{:?}", a.body);
    }
}
