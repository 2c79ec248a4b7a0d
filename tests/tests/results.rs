//! Run results through the real binaries: a `file.py:function` flow's return value is stored
//! with its Completed run (inline, or as an object in the code store when larger), read back
//! with `ferry flow-run result`, `GET /v1/flow-runs/{id}/result` and the run's page; a value
//! that is not JSON-serialisable completes the run with a warning in its log; an executable
//! has no result. On both backends, through an API agent and a direct one.

use ferry_tests::{write_project, Server};
use serde_json::{json, Value};

#[derive(Debug, Clone, Copy)]
enum Via {
    Api,
    Direct,
}

const FLOWS: &str = r#"import asyncio

def counts(n):
    return {"rows": n, "names": ["a", "é"], "ok": True, "nothing": None}

async def big(n):
    await asyncio.sleep(0)
    return ["x" * 1000 for _ in range(n)]

class Foo:
    pass

def opaque():
    print("returning a Foo")
    return Foo()

def nothing():
    print("side effects only")

def boom():
    raise ValueError("bad input")
"#;

/// Builds deployment `res/NAME` and runs it to its end with `--watch`; returns the run's id.
fn build_and_run(s: &Server, proj: &str, entry: &str, name: &str, params: &[&str]) -> String {
    s.ok(&[
        "deployment",
        "build",
        entry,
        "--flow",
        "res",
        "-n",
        name,
        "--path",
        proj,
        "-o",
        &format!("{name}.yaml"),
        "-a",
    ]);
    let deployment = format!("res/{name}");
    let mut args = vec!["deployment", "run", deployment.as_str()];
    for p in params {
        args.extend(["--param", p]);
    }
    args.push("--watch");
    // A failing run exits non-zero; the state is checked by the caller.
    s.ferry(&args);
    let runs = s.json(&["flow-run", "ls", "--deployment", &deployment]);
    runs[0]["id"].as_str().unwrap().to_owned()
}

fn api_result(s: &Server, id: &str) -> (u16, Value) {
    let mut res = s
        .http()
        .get(format!("{}/v1/flow-runs/{id}/result", s.url))
        .call()
        .unwrap();
    let status = res.status().as_u16();
    let text = res.body_mut().read_to_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
    )
}

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

fn results_are_stored_and_read_back_on(aws: bool, via: Via) {
    let s = Server::start_on(aws);
    let proj = s.path("proj");
    write_project(
        &proj,
        &[
            ("flows/res.py", FLOWS),
            ("run.sh", "#!/bin/sh\necho '{\"not\": \"a result\"}'\n"),
        ],
    );
    let proj = proj.to_str().unwrap();
    let _agent = s.agent_via(
        Some(match via {
            Via::Api => "api",
            Via::Direct => "direct",
        }),
        &[],
    );

    // A dict: inline on the run, read back by the CLI (pretty and raw) and the API.
    let id = build_and_run(&s, proj, "flows/res.py:counts", "dict", &["n=3"]);
    let run = s.json(&["flow-run", "inspect", &id]);
    assert_eq!(run["state"], "completed", "{run}");
    let want = json!({"rows": 3, "names": ["a", "é"], "ok": true, "nothing": null});
    assert_eq!(run["result"], json!({"kind": "inline", "value": want}));
    let raw = s.ok(&["flow-run", "result", &id, "--json"]);
    assert_eq!(raw.trim().lines().count(), 1, "--json is one line: {raw}");
    assert_eq!(serde_json::from_str::<Value>(&raw).unwrap(), want);
    let pretty = s.ok(&["flow-run", "result", &id[..13]]);
    assert!(pretty.contains("\n  \"rows\": 3"), "{pretty}");
    assert_eq!(serde_json::from_str::<Value>(&pretty).unwrap(), want);
    assert_eq!(api_result(&s, &id), (200, want.clone()));
    let inspect = s.ok(&["flow-run", "inspect", &id]);
    assert!(inspect.contains("result:         {\"names\""), "{inspect}");
    let (status, html) = page(&s, &format!("/runs/{id}"));
    assert_eq!(status, 200);
    assert!(
        html.contains("<pre id=\"result\">") && html.contains("&#34;rows&#34;: 3"),
        "{html}"
    );

    // A large value (an async flow's): an object in the code store, read back whole.
    let id = build_and_run(&s, proj, "flows/res.py:big", "large", &["n=100"]);
    let run = s.json(&["flow-run", "inspect", &id]);
    assert_eq!(run["state"], "completed", "{run}");
    assert_eq!(run["result"]["kind"], "stored", "{}", run["result"]);
    let bytes = run["result"]["bytes"].as_u64().unwrap();
    assert_eq!(
        bytes,
        100 * 1003 + 1,
        "compact JSON of 100 strings of 1000 x"
    );
    let location = run["result"]["location"].as_str().unwrap();
    assert!(location.contains(&id), "{location}");
    if aws {
        assert!(location.starts_with("s3://"), "{location}");
    }
    let want: Value = json!((0..100).map(|_| "x".repeat(1000)).collect::<Vec<_>>());
    let raw = s.ok(&["flow-run", "result", &id, "--json"]);
    assert_eq!(serde_json::from_str::<Value>(&raw).unwrap(), want);
    assert_eq!(api_result(&s, &id), (200, want.clone()));
    // The page shows the first few KB and links to the whole value.
    let (status, html) = page(&s, &format!("/runs/{id}"));
    assert_eq!(status, 200);
    assert!(
        html.contains(&format!("<a id=\"result-raw\" href=\"/runs/{id}/result\">")),
        "{html}"
    );
    assert!(html.len() < 40_000, "the page holds a cut of the result");
    let mut res = s
        .http()
        .get(format!("{}/runs/{id}/result", s.url))
        .call()
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let whole: Value = serde_json::from_str(&res.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(whole, want);

    // A value json.dumps refuses: Completed, no result, a warning naming its type in the log.
    let id = build_and_run(&s, proj, "flows/res.py:opaque", "opaque", &[]);
    let run = s.json(&["flow-run", "inspect", &id]);
    assert_eq!(run["state"], "completed", "{run}");
    assert!(run.get("result").is_none(), "{run}");
    let logs = s.ok(&["flow-run", "logs", &id]);
    assert!(
        logs.contains(
            "ferry: the flow's return value (a Foo) is not JSON-serialisable: no result stored"
        ),
        "{logs}"
    );
    let err = s.fails(&["flow-run", "result", &id]);
    assert!(
        err.contains("has no result") && err.contains("not JSON-serialisable"),
        "{err}"
    );
    let (status, body) = api_result(&s, &id);
    assert_eq!(status, 404, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("has no result"),
        "{body}"
    );

    // None is stored as null.
    let id = build_and_run(&s, proj, "flows/res.py:nothing", "none", &[]);
    assert_eq!(s.ok(&["flow-run", "result", &id, "--json"]).trim(), "null");

    // A failed run and an executable have none, and say why.
    let id = build_and_run(&s, proj, "flows/res.py:boom", "boom", &[]);
    let err = s.fails(&["flow-run", "result", &id]);
    assert!(err.contains("it ended failed"), "{err}");
    let id = build_and_run(&s, proj, "run.sh", "exe", &[]);
    let run = s.json(&["flow-run", "inspect", &id]);
    assert_eq!(run["state"], "completed", "{run}");
    assert!(run.get("result").is_none(), "{run}");
    let err = s.fails(&["flow-run", "result", &id]);
    assert!(err.contains("executable"), "{err}");
    let (status, html) = page(&s, &format!("/runs/{id}"));
    assert_eq!(status, 200);
    assert!(html.contains("id=\"result-none\""), "{html}");
}

#[test]
fn results_are_stored_and_read_back() {
    results_are_stored_and_read_back_on(false, Via::Api);
}

#[test]
fn results_are_stored_and_read_back_direct() {
    results_are_stored_and_read_back_on(false, Via::Direct);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn results_are_stored_and_read_back_on_aws() {
    results_are_stored_and_read_back_on(true, Via::Direct);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn results_are_stored_and_read_back_on_aws_via_api() {
    results_are_stored_and_read_back_on(true, Via::Api);
}
