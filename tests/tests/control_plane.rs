//! The control plane through the real `ferry` binary against a real `ferry server start`.

use std::time::Duration;

use ferry_tests::{write_project, Server};
use serde_json::Value;

fn runs_of(s: &Server, deployment: &str) -> Vec<Value> {
    s.json(&[
        "flow-run",
        "ls",
        "--deployment",
        deployment,
        "--limit",
        "1000",
        "--all",
    ])
    .as_array()
    .unwrap()
    .clone()
}

/// Waits until the deployment has at least `min` runs and the tick has stopped adding any.
fn settled_runs(s: &Server, deployment: &str, min: usize) -> Vec<Value> {
    let mut last = 0;
    s.wait_for(Duration::from_secs(30), || {
        let runs = runs_of(s, deployment);
        let n = runs.len();
        let stable = n >= min && n == last;
        last = n;
        if !stable {
            std::thread::sleep(Duration::from_millis(400));
        }
        stable.then_some(runs)
    })
}

fn etl_project(s: &Server) -> String {
    let dir = s.path("proj");
    write_project(
        &dir,
        &[
            ("flows/etl.py", "def main(n=1):\n    print('n =', n)\n"),
            ("scripts/backup.sh", "#!/bin/sh\necho backup\n"),
            (".gitignore", "data/\n"),
            ("data/big.bin", "ignored"),
            (".ferryignore", "secrets.txt\n"),
            ("secrets.txt", "hunter2"),
        ],
    );
    dir.to_string_lossy().into_owned()
}

#[test]
fn health_and_openapi_are_served() {
    let s = Server::start();
    let http = s.http();
    let mut r = http.get(format!("{}/v1/health", s.url)).call().unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.body_mut().read_json().unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["backend"], "embedded");
    let mut r = http
        .get(format!("{}/v1/openapi.json", s.url))
        .call()
        .unwrap();
    let doc: Value = r.body_mut().read_json().unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/v1/deployments",
        "/v1/work-queues/{name}/preview",
        "/v1/flow-runs/{id}/cancel",
        "/v1/bundles/{sha256}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "openapi lacks {path}");
    }
    assert!(doc["components"]["schemas"].get("DeploymentSpec").is_some());
}

#[test]
fn non_loopback_bind_needs_a_token_and_the_token_is_enforced() {
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(ferry_tests::ferry_bin())
        .args(["server", "start", "--host", "0.0.0.0", "--port", "0"])
        .env("FERRY_HOME", home.path())
        .env_remove("FERRY_API_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FERRY_API_TOKEN"), "{err}");

    let s = Server::start_with(&["--host", "0.0.0.0"], &[("FERRY_API_TOKEN", "s3cret")]);
    let http = s.http();
    let r = http
        .get(format!("{}/v1/work-queues", s.url))
        .call()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{}/v1/work-queues", s.url))
        .header("Authorization", "Bearer wrong")
        .call()
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{}/v1/work-queues", s.url))
        .header("Authorization", "Bearer s3cret")
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    // The CLI sends FERRY_API_TOKEN.
    assert!(s.ok(&["work-queue", "ls"]).contains("default"));
}

#[test]
fn work_queue_lifecycle() {
    work_queue_lifecycle_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn work_queue_lifecycle_on_aws() {
    work_queue_lifecycle_on(true);
}

fn work_queue_lifecycle_on(aws: bool) {
    let s = Server::start_on(aws);
    let qs = s.json(&["work-queue", "ls"]);
    assert_eq!(qs[0]["name"], "default");
    s.ok(&[
        "work-queue",
        "create",
        "prio1",
        "--limit",
        "20",
        "--priority",
        "2",
    ]);
    let q = s.json(&["work-queue", "inspect", "prio1"]);
    assert_eq!(q["concurrency_limit"], 20);
    assert_eq!(q["priority"], 2);
    assert_eq!(q["paused"], false);
    let err = s.fails(&["work-queue", "create", "prio1"]);
    assert!(err.contains("already exists"), "{err}");
    s.ok(&["work-queue", "pause", "prio1"]);
    assert_eq!(s.json(&["work-queue", "inspect", "prio1"])["paused"], true);
    s.ok(&["work-queue", "resume", "prio1"]);
    assert_eq!(s.json(&["work-queue", "inspect", "prio1"])["paused"], false);
    s.ok(&["work-queue", "set-concurrency-limit", "prio1", "3"]);
    assert_eq!(
        s.json(&["work-queue", "inspect", "prio1"])["concurrency_limit"],
        3
    );
    s.ok(&["work-queue", "clear-concurrency-limit", "prio1"]);
    assert!(s
        .json(&["work-queue", "inspect", "prio1"])
        .get("concurrency_limit")
        .is_none());
    let table = s.ok(&["work-queue", "ls"]);
    assert!(
        table.contains("prio1") && table.contains("default"),
        "{table}"
    );
    let err = s.fails(&["work-queue", "inspect", "nope"]);
    assert!(err.contains("not found"), "{err}");
    let err = s.fails(&["work-queue", "create", "bad name"]);
    assert!(err.contains("name"), "{err}");
}

#[test]
fn build_apply_schedules_runs_and_reapply_changes_nothing() {
    build_apply_schedules_runs_and_reapply_changes_nothing_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn build_apply_schedules_runs_and_reapply_changes_nothing_on_aws() {
    build_apply_schedules_runs_and_reapply_changes_nothing_on(true);
}

fn build_apply_schedules_runs_and_reapply_changes_nothing_on(aws: bool) {
    let s = Server::start_on(aws);
    let proj = etl_project(&s);
    s.ok(&["work-queue", "create", "prod"]);
    let out = s.ok(&[
        "deployment",
        "build",
        "flows/etl.py:main",
        "-n",
        "nightly",
        "-q",
        "prod",
        "-t",
        "ml",
        "-v",
        "abc123",
        "--path",
        &proj,
        "--cron",
        "*/5 * * * *",
        "--timezone",
        "Europe/Berlin",
        "--param",
        "n=3",
        "-o",
        "nightly.yaml",
        "-a",
    ]);
    assert!(out.contains("Created deployment main/nightly"), "{out}");
    // Packaging honoured .gitignore and .ferryignore.
    assert!(out.contains("Packaged 4 files"), "{out}");
    let manifest = std::fs::read_to_string(s.path("nightly.yaml")).unwrap();
    assert!(
        manifest.contains("cron: '*/5 * * * *'") || manifest.contains("cron: \"*/5 * * * *\""),
        "{manifest}"
    );
    assert!(manifest.contains("Europe/Berlin"));
    assert!(manifest.contains("sha256:"));

    let d = s.json(&["deployment", "inspect", "main/nightly"]);
    assert_eq!(d["spec"]["work_queue"], "prod");
    assert_eq!(d["spec"]["tags"][0], "ml");
    assert_eq!(d["spec"]["version"], "abc123");
    assert_eq!(d["spec"]["parameters"]["n"], 3);
    let sha = d["spec"]["bundle"]["sha256"].as_str().unwrap().to_owned();
    let r = s
        .http()
        .head(format!("{}/v1/bundles/{sha}", s.url))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);

    // The tick writes at least 3 runs and an hour ahead, every 5 minutes.
    let runs = settled_runs(&s, "main/nightly", 12);
    let now = chrono::Utc::now();
    for r in &runs {
        // A run whose time passed while the test ran may already be Late.
        let due =
            chrono::DateTime::parse_from_rfc3339(r["scheduled_time"].as_str().unwrap()).unwrap();
        let expected = if due < now - chrono::Duration::seconds(1) {
            r["state"].as_str().unwrap()
        } else {
            "scheduled"
        };
        assert!(r["state"] == "scheduled" || r["state"] == "late", "{r}");
        assert_eq!(r["state"], expected);
        assert_eq!(r["work_queue"], "prod");
        assert_eq!(r["parameters"]["n"], 3);
        let t =
            chrono::DateTime::parse_from_rfc3339(r["scheduled_time"].as_str().unwrap()).unwrap();
        assert_eq!(t.timestamp() % 300, 0, "not on a 5-minute boundary: {t}");
    }
    let count = runs.len();

    // Re-applying the same manifest changes nothing and duplicates nothing.
    let out = s.ok(&["deployment", "apply", "nightly.yaml"]);
    assert!(out.contains("unchanged"), "{out}");
    std::thread::sleep(Duration::from_millis(800));
    let again = runs_of(&s, "main/nightly");
    assert_eq!(again.len(), count);
    let mut ids: Vec<_> = again
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count);

    // Re-building the unchanged project gives the same digest, so the same manifest.
    let out = s.ok(&[
        "deployment",
        "build",
        "flows/etl.py:main",
        "-n",
        "nightly",
        "-q",
        "prod",
        "-t",
        "ml",
        "-v",
        "abc123",
        "--path",
        &proj,
        "--cron",
        "*/5 * * * *",
        "--timezone",
        "Europe/Berlin",
        "--param",
        "n=3",
        "-o",
        "nightly2.yaml",
        "-a",
    ]);
    assert!(out.contains("unchanged"), "{out}");

    let table = s.ok(&["deployment", "ls"]);
    assert!(
        table.contains("main/nightly") && table.contains("cron */5 * * * * (Europe/Berlin)"),
        "{table}"
    );
}

#[test]
fn changing_the_schedule_replaces_future_runs() {
    changing_the_schedule_replaces_future_runs_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn changing_the_schedule_replaces_future_runs_on_aws() {
    changing_the_schedule_replaces_future_runs_on(true);
}

fn changing_the_schedule_replaces_future_runs_on(aws: bool) {
    let s = Server::start_on(aws);
    let proj = etl_project(&s);
    s.ok(&[
        "deployment",
        "build",
        "scripts/backup.sh",
        "-n",
        "hourly",
        "--path",
        &proj,
        "--cron",
        "0 * * * *",
        "-o",
        "b.yaml",
        "-a",
    ]);
    let old = settled_runs(&s, "backup/hourly", 3);
    for r in &old {
        let t =
            chrono::DateTime::parse_from_rfc3339(r["scheduled_time"].as_str().unwrap()).unwrap();
        assert_eq!(t.timestamp() % 3600, 0);
    }
    let out = s.ok(&[
        "deployment",
        "build",
        "scripts/backup.sh",
        "-n",
        "hourly",
        "--path",
        &proj,
        "--cron",
        "30 * * * *",
        "-o",
        "b.yaml",
        "-a",
    ]);
    assert!(out.contains("Updated deployment backup/hourly"), "{out}");
    assert!(
        out.contains(&format!("removed {} scheduled runs", old.len())),
        "{out}"
    );
    let new = settled_runs(&s, "backup/hourly", 3);
    for r in &new {
        let t =
            chrono::DateTime::parse_from_rfc3339(r["scheduled_time"].as_str().unwrap()).unwrap();
        assert_eq!(
            t.timestamp() % 3600,
            1800,
            "an old-schedule run survived: {t}"
        );
    }
    // Pausing removes future runs and schedules nothing; resuming schedules again.
    s.ok(&["deployment", "pause", "backup/hourly"]);
    std::thread::sleep(Duration::from_millis(800));
    assert!(runs_of(&s, "backup/hourly").is_empty());
    s.ok(&["deployment", "resume", "backup/hourly"]);
    s.wait_for(Duration::from_secs(20), || {
        (runs_of(&s, "backup/hourly").len() >= 3).then_some(())
    });
    s.ok(&["deployment", "delete", "backup/hourly"]);
    assert!(runs_of(&s, "backup/hourly").is_empty());
    assert!(s
        .fails(&["deployment", "inspect", "backup/hourly"])
        .contains("not found"));
}

#[test]
fn ad_hoc_runs_idempotency_inspect_and_cancel() {
    ad_hoc_runs_idempotency_inspect_and_cancel_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn ad_hoc_runs_idempotency_inspect_and_cancel_on_aws() {
    ad_hoc_runs_idempotency_inspect_and_cancel_on(true);
}

fn ad_hoc_runs_idempotency_inspect_and_cancel_on(aws: bool) {
    let s = Server::start_on(aws);
    let proj = etl_project(&s);
    s.ok(&[
        "deployment",
        "build",
        "flows/etl.py:main",
        "-n",
        "adhoc",
        "--path",
        &proj,
        "--param",
        "n=1",
        "-o",
        "a.yaml",
        "-a",
    ]);
    let id = s.ok(&[
        "deployment",
        "run",
        "main/adhoc",
        "--param",
        "n=7",
        "--start-in",
        "1h",
    ]);
    let id = id.trim();
    let run = s.json(&["flow-run", "inspect", id]);
    assert_eq!(run["parameters"]["n"], 7);
    assert_eq!(run["origin"], "manual");
    assert_eq!(run["state"], "scheduled");
    let k1 = s.ok(&["deployment", "run", "main/adhoc", "--idempotency-key", "k1"]);
    let k2 = s.ok(&["deployment", "run", "main/adhoc", "--idempotency-key", "k1"]);
    assert_eq!(k1, k2);
    let k3 = s.ok(&["deployment", "run", "main/adhoc", "--idempotency-key", "k2"]);
    assert_ne!(k1, k3);

    let out = s.ok(&["flow-run", "cancel", id]);
    assert!(out.contains("cancelled"), "{out}");
    let run = s.json(&["flow-run", "inspect", id]);
    assert_eq!(run["state"], "cancelled");
    let states: Vec<_> = run["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["scheduled", "cancelled"]);
    let text = s.ok(&["flow-run", "inspect", id]);
    assert!(
        text.contains("history:") && text.contains("cancelled by user"),
        "{text}"
    );
    // Terminal states are final: cancelling again changes nothing and is no error.
    let again = s.ok(&["flow-run", "cancel", id]);
    assert!(again.contains("already Cancelled"), "{again}");
    assert_eq!(
        s.json(&["flow-run", "inspect", id])["history"],
        run["history"]
    );
    let cancelled = s.json(&["flow-run", "ls", "--all", "--state", "cancelled"]);
    assert_eq!(cancelled.as_array().unwrap().len(), 1);
    // A run due now that nobody claims turns Late.
    let due = s.ok(&["deployment", "run", "main/adhoc"]);
    s.wait_for(Duration::from_secs(20), || {
        (s.json(&["flow-run", "inspect", due.trim()])["state"] == "late").then_some(())
    });
    let late = s.json(&["flow-run", "ls", "--state", "late"]);
    assert!(late
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == due.trim()));
    // The run scheduled an hour ahead is not late.
    assert!(!late.as_array().unwrap().iter().any(|r| r["id"] == id));
}

#[test]
fn queue_preview_lists_written_and_planned_runs() {
    queue_preview_lists_written_and_planned_runs_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn queue_preview_lists_written_and_planned_runs_on_aws() {
    queue_preview_lists_written_and_planned_runs_on(true);
}

fn queue_preview_lists_written_and_planned_runs_on(aws: bool) {
    let s = Server::start_on(aws);
    let proj = etl_project(&s);
    s.ok(&[
        "deployment",
        "build",
        "scripts/backup.sh",
        "-n",
        "p",
        "--path",
        &proj,
        "--interval",
        "3600",
        "--anchor-date",
        "2026-01-01T00:15:00Z",
        "-o",
        "p.yaml",
        "-a",
    ]);
    s.wait_for(Duration::from_secs(20), || {
        (runs_of(&s, "backup/p").len() >= 3).then_some(())
    });
    let items = s.json(&["work-queue", "preview", "default", "--hours", "10"]);
    let items = items.as_array().unwrap();
    assert!(items.len() >= 9 && items.len() <= 10, "{items:?}");
    assert!(items.iter().any(|i| i["state"] == "scheduled"));
    assert!(items.iter().any(|i| i["state"] == "planned"));
    for i in items {
        assert_eq!(i["deployment"], "backup/p");
        assert!(i["scheduled_time"].as_str().unwrap().contains(":15:00"));
    }
    let table = s.ok(&["work-queue", "preview", "default", "--hours", "10"]);
    assert!(table.starts_with("SCHEDULED"), "{table}");
}

#[test]
fn bad_input_is_refused_with_the_field_named_and_nothing_written() {
    bad_input_is_refused_with_the_field_named_and_nothing_written_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn bad_input_is_refused_with_the_field_named_and_nothing_written_on_aws() {
    bad_input_is_refused_with_the_field_named_and_nothing_written_on(true);
}

fn bad_input_is_refused_with_the_field_named_and_nothing_written_on(aws: bool) {
    let s = Server::start_on(aws);
    let proj = etl_project(&s);
    let cases: &[(&[&str], &str)] = &[
        (&["--cron", "0 0 2 * * *"], "cron"),
        (&["--cron", "61 * * * *"], "cron"),
        (&["--rrule", "FREQ=SOMETIMES"], "rrule"),
        (
            &["--cron", "0 2 * * *", "--timezone", "Europe/Berln"],
            "timezone",
        ),
        (&["--interval", "0"], "interval"),
        (&["-q", "nope"], "work_queue"),
        (&["--params-json", "[1, 2]"], "params-json"),
        (&["--catchup", "sometimes"], "catchup"),
    ];
    for (extra, field) in cases {
        let mut args = vec![
            "deployment",
            "build",
            "flows/etl.py:main",
            "-n",
            "bad",
            "--path",
            &proj,
            "-o",
            "bad.yaml",
            "-a",
        ];
        args.extend_from_slice(extra);
        let err = s.fails(&args);
        assert!(
            err.contains(field),
            "{extra:?}: error does not name {field}: {err}"
        );
    }
    let big = format!("{{\"blob\": \"{}\"}}", "x".repeat(200 * 1024));
    std::fs::write(s.path("big.json"), big).unwrap();
    let big_arg = format!("@{}", s.path("big.json").display());
    let err = s.fails(&[
        "deployment",
        "build",
        "flows/etl.py:main",
        "-n",
        "bad",
        "--path",
        &proj,
        "-o",
        "bad.yaml",
        "-a",
        "--params-json",
        &big_arg,
    ]);
    assert!(err.contains("parameters") && err.contains("limit"), "{err}");
    let err = s.fails(&[
        "deployment",
        "build",
        "flows/missing.py:main",
        "-n",
        "bad",
        "--path",
        &proj,
        "-a",
    ]);
    assert!(err.contains("entrypoint"), "{err}");
    // Nothing was written: no deployment, no run. (The unknown-queue case is refused by the
    // server after the manifest was written, as the manifest is valid on its own.)
    assert!(s.json(&["deployment", "ls"]).as_array().unwrap().is_empty());
    assert!(s.json(&["flow-run", "ls"]).as_array().unwrap().is_empty());

    // A malformed manifest names the field.
    std::fs::write(
        s.path("m.yaml"),
        "flow: a\nname: b\nentrypoint: x.sh\nschedulez: []\n",
    )
    .unwrap();
    let err = s.fails(&["deployment", "apply", "m.yaml"]);
    assert!(err.contains("schedulez"), "{err}");
    std::fs::write(
        s.path("m2.yaml"),
        "flow: a\nname: b\nentrypoint: x.sh\nschedules:\n  - cron: '0 0 31 2 MON-'\n",
    )
    .unwrap();
    let err = s.fails(&["deployment", "apply", "m2.yaml"]);
    assert!(err.contains("schedules[0].cron"), "{err}");
    std::fs::write(
        s.path("m3.yaml"),
        "flow: a\nname: b\nentrypoint: x.sh\nparameters: [1]\n",
    )
    .unwrap();
    assert!(s
        .fails(&["deployment", "apply", "m3.yaml"])
        .contains("parameters"));
    assert!(s.json(&["deployment", "ls"]).as_array().unwrap().is_empty());

    // The API refuses directly too, with a 4xx naming the field.
    let http = s.http();
    let mut r = http
        .put(format!("{}/v1/deployments", s.url))
        .send_json(serde_json::json!({"flow": "a", "name": "b", "entrypoint": "x.sh", "work_queue": "ghost"}))
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.body_mut().read_json().unwrap();
    assert_eq!(body["field"], "work_queue");
    // A bundle whose bytes do not match its digest is refused and not stored.
    let wrong = "0".repeat(64);
    let mut r = http
        .put(format!("{}/v1/bundles/{wrong}", s.url))
        .send(&b"not the right bytes"[..])
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.body_mut().read_json().unwrap();
    assert!(body["message"].as_str().unwrap().contains("hash"), "{body}");
    let r = http
        .head(format!("{}/v1/bundles/{wrong}", s.url))
        .call()
        .unwrap();
    assert_eq!(r.status(), 404);
    // A manifest pointing at a bundle never uploaded is refused.
    let mut r = http
        .put(format!("{}/v1/deployments", s.url))
        .send_json(serde_json::json!({"flow": "a", "name": "b", "entrypoint": "x.sh", "bundle": {"sha256": wrong}}))
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.body_mut().read_json().unwrap();
    assert_eq!(body["field"], "bundle.sha256");
    assert!(s.json(&["deployment", "ls"]).as_array().unwrap().is_empty());
}

#[test]
fn schedule_preview_prints_local_times_across_dst() {
    let s = Server::start();
    let out = s.ok(&[
        "schedule",
        "preview",
        "--cron",
        "30 2 * * *",
        "--timezone",
        "Europe/Berlin",
        "--after",
        "2026-03-27T12:00:00Z",
        "-n",
        "4",
    ]);
    let lines: Vec<_> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "2026-03-28T02:30:00+01:00",
            "2026-03-29T03:00:00+02:00",
            "2026-03-30T02:30:00+02:00",
            "2026-03-31T02:30:00+02:00",
        ]
    );
    let json = s.json(&[
        "schedule",
        "preview",
        "--cron",
        "0 12 1 * MON",
        "--after",
        "2026-05-31T00:00:00Z",
        "-n",
        "3",
    ]);
    assert_eq!(
        json,
        serde_json::json!([
            "2026-06-01T12:00:00+00:00",
            "2026-06-08T12:00:00+00:00",
            "2026-06-15T12:00:00+00:00"
        ])
    );
    let err = s.fails(&["schedule", "preview", "--cron", "0 2 * *"]);
    assert!(err.contains("--cron"), "{err}");
}

/// Runs `ferry server start` with `env` (and no FERRY_TABLE/FERRY_BUCKET of the caller's),
/// expects it to refuse to start, and returns its stderr.
fn server_start_refused(env: &[(&str, &str)]) -> String {
    let home = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(ferry_tests::ferry_bin())
        .args(["server", "start", "--port", "0"])
        .env("FERRY_HOME", home.path())
        .env_remove("FERRY_TABLE")
        .env_remove("FERRY_BUCKET")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn the_aws_backend_refuses_to_start_without_its_table_naming_the_fix() {
    let err = server_start_refused(&[("FERRY_BACKEND", "aws")]);
    assert!(
        err.contains("FERRY_TABLE") && err.contains("bootstrap"),
        "{err}"
    );
    let err = server_start_refused(&[("FERRY_BACKEND", "cloud")]);
    assert!(
        err.contains("FERRY_BACKEND") && err.contains("embedded"),
        "{err}"
    );
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn the_aws_backend_refuses_to_start_without_its_table_naming_the_fix_on_aws() {
    ferry_tests::require_emulators();
    let err = server_start_refused(&[
        ("FERRY_BACKEND", "aws"),
        ("FERRY_TABLE", "ferry-no-such-table"),
        ("FERRY_BUCKET", "ferry-no-such-bucket"),
    ]);
    assert!(
        err.contains("FERRY_TABLE=ferry-no-such-table") && err.contains("ferry aws bootstrap"),
        "{err}"
    );
}
