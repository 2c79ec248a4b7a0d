//! The dashboard's router over a real embedded store: what each page shows, who may see it,
//! and that refused actions change nothing. (The browser tests in tests/browser/ drive the
//! same pages through a real `ferry server` and Chromium.)

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use ferry_app::{Ferry, RunRequest, SystemClock};
use ferry_core::ports::RunFilter;
use ferry_core::{DeploymentId, StateType};
use ferry_embedded::{FsCodeStore, FsLogSink, SqliteStore};
use ferry_ui::UiState;
use tower::ServiceExt;

struct App {
    _dir: tempfile::TempDir,
    ferry: Ferry,
    router: Router,
}

async fn app(token: Option<&str>) -> App {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::new(
        Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap()),
        Arc::new(FsCodeStore::new(dir.path().join("bundles"))),
        Arc::new(FsLogSink::new(dir.path().join("logs"))),
        Arc::new(SystemClock),
    );
    ferry.ensure_default_queue().await.unwrap();
    let spec = serde_json::from_value(serde_json::json!({
        "flow": "etl", "name": "nightly", "entrypoint": "flows/etl.py:main",
        "description": "loads the warehouse",
        "parameters": {"n": 1},
        "schedules": [{"cron": "0 3 * * *", "timezone": "Europe/Berlin"}]
    }))
    .unwrap();
    ferry.apply_deployment(spec).await.unwrap();
    let router = ferry_ui::router(UiState {
        ferry: ferry.clone(),
        token: token.map(Arc::from),
    });
    App {
        _dir: dir,
        ferry,
        router,
    }
}

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl App {
    async fn send(&self, req: Request<Body>) -> Answer {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), 10 << 20)
            .await
            .unwrap();
        Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn get(&self, uri: &str, extra: &[(&str, &str)]) -> Answer {
        let mut b = Request::get(uri).header(header::HOST, "127.0.0.1:4300");
        for (k, v) in extra {
            b = b.header(*k, *v);
        }
        self.send(b.body(Body::empty()).unwrap()).await
    }

    /// A form POST as the dashboard's own page sends it (same origin), plus `extra`.
    async fn post(&self, uri: &str, form: &str, extra: &[(&str, &str)]) -> Answer {
        let mut b = Request::post(uri)
            .header(header::HOST, "127.0.0.1:4300")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        let mut origin = true;
        for (k, v) in extra {
            if k.eq_ignore_ascii_case("origin") || k.eq_ignore_ascii_case("sec-fetch-site") {
                origin = false;
            }
            b = b.header(*k, *v);
        }
        if origin {
            b = b.header(header::ORIGIN, "http://127.0.0.1:4300");
        }
        self.send(b.body(Body::from(form.to_owned())).unwrap())
            .await
    }

    async fn run(&self, params: serde_json::Value) -> ferry_core::FlowRun {
        let id = DeploymentId::new("etl", "nightly").unwrap();
        let req = RunRequest {
            parameters: params.as_object().unwrap().clone(),
            ..RunRequest::default()
        };
        self.ferry.create_run(&id, req).await.unwrap().0
    }

    async fn run_count(&self) -> usize {
        self.ferry
            .list_runs(&RunFilter {
                limit: 100,
                ..RunFilter::default()
            })
            .await
            .unwrap()
            .len()
    }
}

#[tokio::test]
async fn every_page_shows_what_the_use_cases_hold_with_safe_headers() {
    let app = app(None).await;
    let run = app.run(serde_json::json!({"n": 7})).await;
    let id = run.id.to_string();
    let pages: [(&str, &[&str]); 7] = [
        ("/", &["Runs of the last 24 hours", "Scheduled", "default"]),
        (
            "/deployments",
            &[
                "data-deployment=\"etl/nightly\"",
                "At 03:00 (Europe/Berlin)",
                "CET",
            ],
        ),
        (
            "/deployments/etl/nightly",
            &[
                "loads the warehouse",
                "id=\"run-now\"",
                "id=\"manifest\"",
                "Planned",
            ],
        ),
        ("/runs", &[&format!("data-run-id=\"{id}\""), "etl/nightly"]),
        (
            &format!("/runs/{id}"),
            &["id=\"run-state\"", "Scheduled", "&#34;n&#34;: 7"],
        ),
        (&format!("/runs/{}", &id[..8]), &[&id]),
        (
            "/work-queues",
            &["data-queue=\"default\"", "class=\"pause\""],
        ),
    ];
    for (uri, wants) in pages {
        let a = app.get(uri, &[]).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.body);
        for want in wants {
            assert!(a.body.contains(want), "{uri} lacks {want:?}:\n{}", a.body);
        }
        let csp = a.headers[header::CONTENT_SECURITY_POLICY].to_str().unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(a.headers[header::CACHE_CONTROL], "no-store");
    }
    // The list filters, and names a bad filter's field.
    let a = app.get("/runs?state=completed", &[]).await;
    assert!(!a.body.contains(&id), "a scheduled run listed as completed");
    assert!(a.body.contains("No runs match."));
    let a = app.get("/runs?state=done", &[]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("state: unknown state"), "{}", a.body);
    // The rows the list's script polls are the rows only.
    let a = app.get("/runs?fragment=rows", &[]).await;
    assert!(
        a.body.trim_start().starts_with("<tr data-run-id"),
        "{}",
        a.body
    );
    // The run's live state.
    let a = app.get(&format!("/runs/{id}/live?offset=0"), &[]).await;
    let live: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(live["state"], "scheduled");
    assert_eq!(live["final"], false);
    assert_eq!(live["lines"], serde_json::json!([]));
    // Assets are served, cacheable for good; nothing else is.
    let css = app.get("/assets/app.css", &[]).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.headers[header::CACHE_CONTROL]
        .to_str()
        .unwrap()
        .contains("immutable"));
    assert_eq!(
        app.get("/assets/x.js", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    let icon = app.get("/favicon.ico", &[]).await;
    assert_eq!(icon.status, StatusCode::OK);
    assert_eq!(icon.headers[header::CONTENT_TYPE], "image/svg+xml");
    assert_eq!(
        app.get("/runs/0000", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_runs_list_pages_older_runs_each_once_with_its_filters() {
    let app = app(None).await;
    let mut ids = Vec::new();
    for i in 0..55 {
        ids.push(app.run(serde_json::json!({ "i": i })).await.id.to_string());
    }
    let first = app
        .get("/runs?view=all&deployment=etl%2Fnightly", &[])
        .await;
    let rows = |body: &str| -> Vec<String> {
        body.match_indices("data-run-id=\"")
            .map(|(i, m)| body[i + m.len()..i + m.len() + 36].to_owned())
            .collect()
    };
    let page1 = rows(&first.body);
    assert_eq!(page1.len(), 50);
    assert!(
        first.body.contains("data-poll="),
        "the first page updates live"
    );
    let href = first
        .body
        .split("id=\"older\" href=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("an Older link")
        .replace("&#38;", "&")
        .replace("&amp;", "&");
    assert!(href.contains("deployment=etl%2Fnightly"), "{href}");
    let second = app.get(&href, &[]).await;
    assert_eq!(second.status, StatusCode::OK);
    let page2 = rows(&second.body);
    assert_eq!(page2.len(), 55 - 50);
    assert!(
        !second.body.contains("id=\"older\""),
        "the last page has no Older"
    );
    assert!(second.body.contains("id=\"newest\""));
    assert!(
        !second.body.contains("data-poll="),
        "a later page stays put"
    );
    let mut all: Vec<String> = page1.into_iter().chain(page2).collect();
    all.sort();
    ids.sort();
    assert_eq!(all, ids, "every run exactly once over the pages");
    let bad = app.get("/runs?before=nope", &[]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("before:"), "{}", bad.body);
}

#[tokio::test]
async fn with_a_token_nothing_shows_without_a_session_and_the_cookie_is_not_the_token() {
    let app = app(Some("s3cret-token")).await;
    let run = app.run(serde_json::json!({})).await;
    for uri in [
        "/",
        "/deployments",
        "/runs",
        &format!("/runs/{}", run.id),
        "/work-queues",
    ] {
        let a = app.get(uri, &[]).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{uri}");
        let to = a.headers[header::LOCATION].to_str().unwrap();
        assert!(to.starts_with("/sign-in?next=%2F"), "{uri} → {to}");
        assert!(!a.body.contains("etl/nightly"), "{uri} shows data");
    }
    let live = app.get(&format!("/runs/{}/live", run.id), &[]).await;
    assert_eq!(live.status, StatusCode::UNAUTHORIZED);

    let wrong = app.post("/sign-in", "token=nope&next=%2Fruns", &[]).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.body.contains("wrong token"), "{}", wrong.body);
    assert!(!wrong.headers.contains_key(header::SET_COOKIE));

    let ok = app
        .post("/sign-in", "token=s3cret-token&next=%2Fruns", &[])
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert_eq!(ok.headers[header::LOCATION], "/runs");
    let cookie = ok.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(
        !cookie.contains("s3cret-token"),
        "the cookie carries the token: {cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    let a = app.get("/runs", &[("cookie", &session)]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(a.body.contains(&run.id.to_string()));
    assert!(a.body.contains("Sign out"));
    // A forged session is no session.
    let forged = format!("ferry_session=9999999999.{}", "ab".repeat(32));
    assert_eq!(
        app.get("/runs", &[("cookie", &forged)]).await.status,
        StatusCode::SEE_OTHER
    );
    // The bearer header (what `ferry ui` sends) is a session too.
    let a = app
        .get("/runs", &[("authorization", "Bearer s3cret-token")])
        .await;
    assert_eq!(a.status, StatusCode::OK);
    // Sign-in never sends anyone off the dashboard.
    let away = app
        .post(
            "/sign-in",
            "token=s3cret-token&next=%2F%2Fevil.example",
            &[],
        )
        .await;
    assert_eq!(away.headers[header::LOCATION], "/");
    let out = app
        .post(
            "/sign-out",
            "",
            &[("cookie", &session), ("origin", "http://127.0.0.1:4300")],
        )
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
}

#[tokio::test]
async fn a_post_from_another_origin_is_refused_and_changes_nothing() {
    let app = app(None).await;
    let run = app.run(serde_json::json!({})).await;
    let uri = format!("/runs/{}/cancel", run.id);
    for extra in [
        vec![("origin", "http://evil.example")],
        vec![("origin", "http://127.0.0.1:9999")],
        vec![("sec-fetch-site", "cross-site")],
        vec![("sec-fetch-site", "same-site")],
    ] {
        let a = app.post(&uri, "", &extra).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{extra:?}");
    }
    // Neither header: refused too (browsers send one on every form POST).
    let bare = Request::post(&uri)
        .header(header::HOST, "127.0.0.1:4300")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(bare).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.ferry.get_run(run.id).await.unwrap().state,
        StateType::Scheduled
    );
    // From the page itself: cancelled, back to the run's page.
    let a = app
        .post(&uri, "", &[("sec-fetch-site", "same-origin")])
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers[header::LOCATION], format!("/runs/{}", run.id));
    assert_eq!(
        app.ferry.get_run(run.id).await.unwrap().state,
        StateType::Cancelled
    );
}

#[tokio::test]
async fn run_now_creates_a_run_with_the_form_s_parameters_and_bad_json_creates_nothing() {
    let app = app(None).await;
    let before = app.run_count().await;
    for (form, says) in [
        ("parameters=%7Bn%3A+2%7D", "parameters: not valid JSON"),
        ("parameters=%5B1%5D", "parameters: must be a JSON object"),
    ] {
        let a = app.post("/deployments/etl/nightly/run", form, &[]).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{form}");
        assert!(a.body.contains(says), "{form}: {}", a.body);
        assert!(a.body.contains("class=\"error\""));
    }
    assert_eq!(
        app.run_count().await,
        before,
        "a refused run-now created a run"
    );
    let a = app
        .post(
            "/deployments/etl/nightly/run",
            "parameters=%7B%22n%22%3A+21%7D",
            &[],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let to = a.headers[header::LOCATION].to_str().unwrap();
    let id: ferry_core::RunId = to.trim_start_matches("/runs/").parse().unwrap();
    let run = app.ferry.get_run(id).await.unwrap();
    assert_eq!(run.parameters["n"], 21);
    // Pause and resume go through the use case.
    let a = app.post("/deployments/etl/nightly/pause", "", &[]).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let d = app
        .ferry
        .get_deployment(&DeploymentId::new("etl", "nightly").unwrap())
        .await
        .unwrap();
    assert!(d.spec.paused);
    let page = app.get("/deployments/etl/nightly", &[]).await;
    assert!(page.body.contains("id=\"resume\""));
    app.post("/work-queues/default/pause", "", &[]).await;
    assert!(app.ferry.get_queue("default").await.unwrap().paused);
    // Cancelling a cancelled run is no error (as on the CLI).
    app.ferry.cancel_run(id).await.unwrap();
    let again = app.post(&format!("/runs/{id}/cancel"), "", &[]).await;
    assert_eq!(
        again.status,
        StatusCode::SEE_OTHER,
        "cancelling twice is no error"
    );
    let missing = app
        .post("/deployments/etl/nope/run", "parameters=", &[])
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

impl App {
    /// A run of `etl/nightly` claimed, started and completed with `result`.
    async fn completed_with(&self, result: Option<serde_json::Value>) -> ferry_core::FlowRun {
        let run = self.run(serde_json::json!({})).await;
        let ferry_app::Claim::Claimed(run, _) = self.ferry.claim(&run, "a1").await.unwrap() else {
            panic!("the run was not claimed");
        };
        let run = self.ferry.start(*run, None).await.unwrap().unwrap();
        self.ferry.complete(run, result).await.unwrap()
    }
}

#[tokio::test]
async fn a_run_page_shows_its_result_cut_beyond_a_few_kb_with_a_link_to_the_raw_json() {
    let app = app(None).await;
    let small = app
        .completed_with(Some(serde_json::json!({"rows": 3, "name": "<b>"})))
        .await;
    let a = app.get(&format!("/runs/{}", small.id), &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(
        a.body
            .contains("<pre id=\"result\">{\n  &#34;name&#34;: &#34;&#60;b&#62;&#34;,"),
        "the result is pretty, escaped JSON: {}",
        a.body
    );
    assert!(a.body.contains(&format!(
        "<a id=\"result-raw\" href=\"/runs/{}/result\">",
        small.id
    )));

    // 20 KB: stored as an object, shown cut at 4 KiB, whole behind the link.
    let value = serde_json::json!(vec!["v".repeat(100); 200]);
    let big = app.completed_with(Some(value.clone())).await;
    let a = app.get(&format!("/runs/{}", big.id), &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    let shown = a
        .body
        .split("<pre id=\"result\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap();
    assert_eq!(
        shown.replace("&#34;", "\"").len(),
        RESULT_PAGE_BYTES,
        "cut at 4 KiB"
    );
    assert!(a.body.contains("The whole result (raw JSON)"), "{}", a.body);
    let raw = app.get(&format!("/runs/{}/result", big.id), &[]).await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&raw.body).unwrap(),
        value
    );

    // No result: the page says why.
    let none = app.completed_with(None).await;
    let a = app.get(&format!("/runs/{}", none.id), &[]).await;
    assert!(
        a.body.contains("<p id=\"result-none\" class=\"muted\">No result: its flow returned nothing Ferry could store"),
        "{}",
        a.body
    );
    let pending = app.run(serde_json::json!({})).await;
    let a = app.get(&format!("/runs/{}", pending.id), &[]).await;
    assert!(
        a.body.contains("No result: it has not finished"),
        "{}",
        a.body
    );
    let raw = app.get(&format!("/runs/{}/result", pending.id), &[]).await;
    assert_eq!(raw.status, StatusCode::NOT_FOUND);
}

/// The page shows at most this many bytes of a result's pretty JSON.
const RESULT_PAGE_BYTES: usize = 4 * 1024;
