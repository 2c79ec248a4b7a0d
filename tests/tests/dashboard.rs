//! The dashboard served by the real `ferry server`, on both backends: a deployment built and a
//! run executed through the CLI and an agent show on every page, with the run's log; the
//! live endpoint follows the log from an offset. (tests/browser/ drives the same pages in
//! Chromium.)

use ferry_tests::{write_project, Server};

fn page(s: &Server, path: &str) -> (u16, String) {
    let mut res = s
        .http()
        .get(format!("{}{path}", s.url))
        .header("Accept", "text/html")
        .call()
        .unwrap();
    let status = res.status().as_u16();
    (status, res.body_mut().read_to_string().unwrap())
}

fn pages_show_a_run_built_and_run_through_the_cli_on(aws: bool) {
    let s = Server::start_on(aws);
    let proj = s.path("proj");
    write_project(
        &proj,
        &[(
            "flows/hello.py",
            "def main(name):\n    print(f'hello {name} from the dashboard test')\n",
        )],
    );
    s.ok(&[
        "deployment",
        "build",
        "flows/hello.py:main",
        "-n",
        "daily",
        "--path",
        proj.to_str().unwrap(),
        "--cron",
        "30 6 * * *",
        "--timezone",
        "America/New_York",
        "--param",
        "name=\"ferry\"",
        "-o",
        "hello.yaml",
        "-a",
    ]);
    let _agent = s.agent(&[]);
    let out = s.ok(&["deployment", "run", "main/daily", "--watch"]);
    assert!(out.contains("completed"), "{out}");
    let runs = s.json(&[
        "flow-run",
        "ls",
        "--deployment",
        "main/daily",
        "--state",
        "completed",
    ]);
    let id = runs[0]["id"].as_str().unwrap().to_owned();

    let checks: [(String, Vec<&str>); 6] = [
        (
            "/".into(),
            vec!["Completed", "main/daily", "data-queue=\"default\""],
        ),
        (
            "/deployments".into(),
            vec![
                "data-deployment=\"main/daily\"",
                "At 06:30 (America/New_York)",
                "EST",
            ],
        ),
        (
            "/deployments/main/daily".into(),
            vec![&id, "id=\"run-now\"", "flows/hello.py:main", "Scheduled"],
        ),
        ("/runs".into(), vec![&id, "Completed"]),
        (
            format!("/runs/{id}"),
            vec![
                "hello ferry from the dashboard test",
                "Completed",
                "id=\"history\"",
            ],
        ),
        ("/work-queues".into(), vec!["data-queue=\"default\""]),
    ];
    for (path, wants) in &checks {
        let (status, body) = page(&s, path);
        assert_eq!(status, 200, "{path}: {body}");
        for want in wants {
            assert!(body.contains(want), "{path} lacks {want:?}:\n{body}");
        }
    }
    // The live endpoint: the whole log from 0, nothing new past its end.
    let (_, live) = page(&s, &format!("/runs/{id}/live?offset=0"));
    let live: serde_json::Value = serde_json::from_str(&live).unwrap();
    assert_eq!(live["state"], "completed");
    assert_eq!(live["final"], true);
    let lines = live["lines"].as_array().unwrap();
    assert!(
        lines
            .iter()
            .any(|l| l.as_str().unwrap().contains("stdout | hello ferry")),
        "{lines:?}"
    );
    let next = live["next_offset"].as_u64().unwrap();
    let (_, tail) = page(&s, &format!("/runs/{id}/live?offset={next}"));
    let tail: serde_json::Value = serde_json::from_str(&tail).unwrap();
    assert_eq!(tail["lines"], serde_json::json!([]));
    // A page nothing serves is an HTML 404 for a browser, JSON for an API client.
    let (status, body) = page(&s, "/nothing-here");
    assert_eq!(status, 404);
    assert!(body.contains("<!doctype html>"), "{body}");
    let mut api = s
        .http()
        .get(format!("{}/nothing-here", s.url))
        .call()
        .unwrap();
    assert_eq!(api.status().as_u16(), 404);
    assert!(api
        .body_mut()
        .read_to_string()
        .unwrap()
        .contains("every API route is under /v1"));
    // A page's own refusal stays a page, whoever asks (curl sends no text/html).
    let mut bad = s
        .http()
        .get(format!("{}/runs?state=bogus", s.url))
        .call()
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);
    let body = bad.body_mut().read_to_string().unwrap();
    assert!(
        body.starts_with("<!doctype html>") && body.contains("state: unknown state"),
        "{body}"
    );
}

#[test]
fn pages_show_a_run_built_and_run_through_the_cli() {
    pages_show_a_run_built_and_run_through_the_cli_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn pages_show_a_run_built_and_run_through_the_cli_on_aws() {
    pages_show_a_run_built_and_run_through_the_cli_on(true);
}

#[test]
fn with_a_token_the_pages_show_nothing_until_signed_in() {
    let s = Server::start_with(
        &["--tick-interval", "200ms"],
        &[("FERRY_API_TOKEN", "dash-token-1")],
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into();
    let mut res = agent
        .get(format!("{}/runs", s.url))
        .header("Accept", "text/html")
        .call()
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    assert_eq!(res.headers()["location"], "/sign-in?next=%2Fruns");
    assert!(!res.body_mut().read_to_string().unwrap().contains("default"));
    let res = agent
        .post(format!("{}/sign-in", s.url))
        .header("Origin", &s.url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .send("token=dash-token-1&next=%2Fwork-queues")
        .unwrap();
    assert_eq!(res.status().as_u16(), 303);
    let cookie = res.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(!cookie.contains("dash-token-1"));
    let session = cookie.split(';').next().unwrap().to_owned();
    let mut page = agent
        .get(format!("{}/work-queues", s.url))
        .header("Cookie", &session)
        .call()
        .unwrap();
    assert_eq!(page.status().as_u16(), 200);
    assert!(page
        .body_mut()
        .read_to_string()
        .unwrap()
        .contains("data-queue=\"default\""));
    // The cookie is the dashboard's only: the API still wants its bearer token.
    let api = agent
        .get(format!("{}/v1/work-queues", s.url))
        .header("Cookie", &session)
        .call()
        .unwrap();
    assert_eq!(api.status().as_u16(), 401);
}
