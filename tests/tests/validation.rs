//! Input the control plane must refuse at the door (issue 8: typos inside schedules, NUL
//! bytes, a queue limit of 0), through the real `ferry` binary and through the HTTP API.

use ferry_tests::Server;
use serde_json::{json, Value};

fn deployments(s: &Server) -> Vec<Value> {
    s.json(&["deployment", "ls"]).as_array().unwrap().clone()
}

/// PUTs a deployment spec and returns the status and the JSON body.
fn put_deployment(s: &Server, spec: Value) -> (u16, Value) {
    let mut r = s
        .http()
        .put(format!("{}/v1/deployments", s.url))
        .send_json(spec)
        .unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap())
}

#[test]
fn a_typo_inside_a_schedule_is_refused_naming_the_field_and_nothing_is_written() {
    let s = Server::start();
    std::fs::write(
        s.path("etl.yaml"),
        "flow: etl\nname: nightly\nentrypoint: run.sh\nschedules:\n  \
         - cron: '0 9 * * *'\n    time_zone: Europe/Berlin\n",
    )
    .unwrap();
    let err = s.fails(&["deployment", "apply", "etl.yaml"]);
    assert!(err.contains("unknown field `time_zone`"), "{err}");
    assert!(
        err.contains("`timezone`"),
        "the error lists the right name: {err}"
    );
    assert!(err.contains("etl.yaml"), "{err}");
    assert!(deployments(&s).is_empty());

    // Unknown fields in the other nested objects are refused the same way.
    for (yaml, field) in [
        (
            "infrastructure:\n  type: process\n  pyhton: /usr/bin/python3\n",
            "pyhton",
        ),
        ("bundle:\n  sha256: 'aa'\n  sise: 3\n", "sise"),
        (
            "schedules:\n  - interval: 60\n    anchor: '2026-01-01T00:00:00Z'\n",
            "anchor",
        ),
    ] {
        std::fs::write(
            s.path("m.yaml"),
            format!("flow: etl\nname: nightly\nentrypoint: run.sh\n{yaml}"),
        )
        .unwrap();
        let err = s.fails(&["deployment", "apply", "m.yaml"]);
        assert!(err.contains(&format!("unknown field `{field}`")), "{err}");
    }
    assert!(deployments(&s).is_empty());

    // The API refuses it too: 400 with a JSON body naming the field.
    let (status, body) = put_deployment(
        &s,
        json!({"flow": "etl", "name": "nightly", "entrypoint": "run.sh",
               "schedules": [{"cron": "0 9 * * *", "time_zone": "Europe/Berlin"}]}),
    );
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `time_zone`"),
        "{body}"
    );
    assert!(deployments(&s).is_empty());
}

#[test]
fn nul_bytes_in_entrypoint_env_or_interpreter_are_refused_at_apply() {
    let s = Server::start();
    // YAML's "\0" is a NUL byte.
    let cases = [
        ("entrypoint: \"run\\0.sh\"\n", "entrypoint"),
        (
            "entrypoint: run.sh\nenv:\n  TOKEN: \"abc\\0def\"\n",
            "env.TOKEN",
        ),
        ("entrypoint: run.sh\nenv:\n  \"TO\\0KEN\": abc\n", "env"),
        (
            "entrypoint: flows/etl.py:main\ninfrastructure:\n  type: process\n  python: \"/usr/bin/python3\\0\"\n",
            "infrastructure.python",
        ),
    ];
    for (yaml, field) in cases {
        std::fs::write(
            s.path("m.yaml"),
            format!("flow: etl\nname: nightly\n{yaml}"),
        )
        .unwrap();
        let err = s.fails(&["deployment", "apply", "m.yaml"]);
        assert!(
            err.contains(field),
            "{yaml:?}: error does not name {field}: {err}"
        );
        if field != "env" {
            assert!(err.contains("NUL byte"), "{err}");
        }
    }
    assert!(deployments(&s).is_empty());

    // Straight to the API (no client-side check): 400 naming the field.
    let api_cases = [
        (json!({"entrypoint": "run\u{0}.sh"}), "entrypoint"),
        (
            json!({"entrypoint": "run.sh", "env": {"TOKEN": "a\u{0}b"}}),
            "env.TOKEN",
        ),
        (
            json!({"entrypoint": "flows/etl.py:main",
                   "infrastructure": {"type": "process", "python": "python3\u{0}"}}),
            "infrastructure.python",
        ),
    ];
    for (extra, field) in api_cases {
        let mut spec = json!({"flow": "etl", "name": "nightly"});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let (status, body) = put_deployment(&s, spec);
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["field"], field, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("NUL byte"),
            "{body}"
        );
    }
    assert!(deployments(&s).is_empty());
}

#[test]
fn a_queue_concurrency_limit_of_zero_is_refused() {
    let s = Server::start();
    let err = s.fails(&["work-queue", "create", "q", "--limit", "0"]);
    assert!(
        err.contains("concurrency_limit") && err.contains("at least 1"),
        "{err}"
    );
    let err = s.fails(&["work-queue", "inspect", "q"]);
    assert!(
        err.contains("not found") || err.contains("no work queue"),
        "{err}"
    );

    s.ok(&["work-queue", "create", "q", "--limit", "2"]);
    let err = s.fails(&["work-queue", "set-concurrency-limit", "q", "0"]);
    assert!(
        err.contains("concurrency_limit") && err.contains("at least 1"),
        "{err}"
    );
    assert_eq!(
        s.json(&["work-queue", "inspect", "q"])["concurrency_limit"],
        2
    );

    // The API: 400 with a JSON body naming the field, nothing changed.
    let http = s.http();
    let mut r = http
        .post(format!("{}/v1/work-queues", s.url))
        .send_json(json!({"name": "r", "concurrency_limit": 0}))
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.body_mut().read_json().unwrap();
    assert_eq!(body["field"], "concurrency_limit", "{body}");
    let mut r = http
        .patch(format!("{}/v1/work-queues/q", s.url))
        .send_json(json!({"concurrency_limit": 0}))
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.body_mut().read_json().unwrap();
    assert_eq!(body["field"], "concurrency_limit", "{body}");
    // A typo in a queue body is refused by name as well.
    let mut r = http
        .patch(format!("{}/v1/work-queues/q", s.url))
        .send_json(json!({"concurency_limit": 3}))
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.body_mut().read_json().unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `concurency_limit`"),
        "{body}"
    );
    let names: Vec<Value> = s
        .json(&["work-queue", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].clone())
        .collect();
    assert_eq!(names, [json!("default"), json!("q")]);
    assert_eq!(
        s.json(&["work-queue", "inspect", "q"])["concurrency_limit"],
        2
    );
}
