//! Issue 11 through the real binary: agents register their polls (`PUT /v1/agents/{name}`) and
//! show in `ferry agent ls` and the work-queue views; `deployment run --watch` follows retries to
//! the final attempt, warns when no agent serves the run's queue and stops at
//! `--watch-timeout`; `ferry work-queue delete` refuses what would strand runs.

use std::time::Duration;

use ferry_tests::{write_project, Server};
use serde_json::{json, Value};

/// A shell flow that fails (exit 3) until attempt `$SUCCEED_AT`, then completes.
fn deploy(s: &Server, name: &str, queue: &str, succeed_at: u32, retries: u32) {
    let dir = s.path("proj");
    write_project(
        &dir,
        &[(
            "flow.sh",
            r#"#!/bin/sh
echo "attempt $FERRY_ATTEMPT of $FERRY_RUN_ID"
if [ "$FERRY_ATTEMPT" -lt "$SUCCEED_AT" ]; then echo "not yet" >&2; exit 3; fi
echo "done"
"#,
        )],
    );
    let manifest = s.path(&format!("{name}.yaml"));
    let succeed = format!("SUCCEED_AT={succeed_at}");
    let retries = retries.to_string();
    s.ok(&[
        "deployment",
        "build",
        "flow.sh",
        "-n",
        name,
        "--flow",
        "flow",
        "-q",
        queue,
        "--path",
        dir.to_str().unwrap(),
        "--env",
        &succeed,
        "--retries",
        &retries,
        "--retry-delay",
        "1",
        "-o",
        manifest.to_str().unwrap(),
        "-a",
    ]);
}

/// `PUT /v1/agents/{path_name}` with `body`; returns the status and the answer.
fn put_agent(s: &Server, path_name: &str, body: Value) -> (u16, Value) {
    let mut r = s
        .http()
        .put(format!("{}/v1/agents/{path_name}", s.url))
        .send_json(body)
        .unwrap();
    let status = r.status().as_u16();
    (status, r.body_mut().read_json().unwrap_or(Value::Null))
}

fn presence(name: &str, queues: &[&str], running: u32, limit: u32) -> Value {
    json!({
        "name": name, "queues": queues, "host": "box-1", "version": "0.1.0",
        "limit": limit, "running": running, "path": "api"
    })
}

fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn agents_that_poll_show_in_agent_ls_and_in_the_queue_views() {
    agents_that_poll_show_in_agent_ls_and_in_the_queue_views_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn agents_that_poll_show_in_agent_ls_and_in_the_queue_views_on_aws() {
    agents_that_poll_show_in_agent_ls_and_in_the_queue_views_on(true);
}

fn agents_that_poll_show_in_agent_ls_and_in_the_queue_views_on(aws: bool) {
    let s = Server::start_on(aws);
    let empty = s.ok(&["agent", "ls"]);
    assert!(
        empty.contains("no agents have polled in the last 7 days")
            && empty.contains("ferry agent start -q NAME"),
        "{empty}"
    );
    assert_eq!(s.json(&["agent", "ls"]), json!([]));
    let inspect = s.ok(&["work-queue", "inspect", "default"]);
    assert!(
        inspect.contains("no agents serving work queue 'default' have polled")
            && inspect.contains("ferry agent start -q default"),
        "{inspect}"
    );
    let views = s.json(&["work-queue", "ls"]);
    assert_eq!(views[0]["name"], "default");
    assert_eq!(views[0]["agents"], json!([]));
    assert_eq!(views[0]["last_polled_at"], Value::Null);

    // Bad reports are refused naming the field, and record nothing.
    let (status, e) = put_agent(&s, "other", presence("a1", &["default"], 0, 4));
    assert_eq!((status, e["field"].as_str()), (400, Some("name")), "{e}");
    let (status, e) = put_agent(&s, "a1", presence("a1", &["default"], 0, 0));
    assert_eq!((status, e["field"].as_str()), (400, Some("limit")), "{e}");
    let (status, e) = put_agent(&s, "a1", presence("a1", &["bad queue"], 0, 4));
    assert_eq!(status, 400, "{e}");
    assert!(e["message"].as_str().unwrap().contains("queues"), "{e}");
    assert_eq!(s.json(&["agent", "ls"]), json!([]));

    s.ok(&["work-queue", "create", "gpu"]);
    let (status, first) = put_agent(&s, "a1", presence("a1", &["default", "gpu"], 0, 4));
    assert_eq!(status, 200, "{first}");
    std::thread::sleep(Duration::from_millis(50));
    let (status, again) = put_agent(&s, "a1", presence("a1", &["default", "gpu"], 2, 4));
    assert_eq!(status, 200, "{again}");
    assert_eq!(
        again["first_seen"], first["first_seen"],
        "first_seen is kept"
    );
    assert_ne!(again["last_poll"], first["last_poll"], "last_poll moves");
    let (status, _) = put_agent(&s, "b2", presence("b2", &["default"], 0, 1));
    assert_eq!(status, 200);

    let table = s.ok(&["agent", "ls"]);
    let header = table.lines().next().unwrap();
    for col in [
        "NAME",
        "QUEUES",
        "HOST",
        "VERSION",
        "PATH",
        "RUNNING/LIMIT",
        "LAST POLL",
        "ONLINE",
    ] {
        assert!(header.contains(col), "{col} missing: {table}");
    }
    let a1 = table
        .lines()
        .find(|l| l.starts_with("a1"))
        .expect("a1 listed");
    for cell in [
        "default,gpu",
        "box-1",
        "0.1.0",
        "api",
        "2/4",
        "s ago",
        "yes",
    ] {
        assert!(a1.contains(cell), "{cell} missing from {a1:?}");
    }
    let on_gpu = s.json(&["agent", "ls", "--work-queue", "gpu"]);
    let names: Vec<&str> = on_gpu
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a1"]);
    assert_eq!(on_gpu[0]["online"], true);
    let none = s.ok(&["agent", "ls", "-q", "nobody-serves-this"]);
    assert!(
        none.contains("no agents serving work queue 'nobody-serves-this'"),
        "{none}"
    );

    let views = s.json(&["work-queue", "ls"]);
    let default = views
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "default")
        .unwrap();
    assert_eq!(default["agents"], json!(["a1", "b2"]));
    assert!(default["last_polled_at"].is_string(), "{default}");
    let ls = s.ok(&["work-queue", "ls"]);
    assert!(
        ls.lines().next().unwrap().contains("AGENTS")
            && ls.lines().next().unwrap().contains("LAST POLLED"),
        "{ls}"
    );
    let gpu_row = ls.lines().find(|l| l.starts_with("gpu")).unwrap();
    assert!(
        gpu_row.contains("a1") && gpu_row.contains("s ago"),
        "{gpu_row}"
    );
    let inspect = s.ok(&["work-queue", "inspect", "gpu"]);
    assert!(
        inspect.contains("agents serving it:") && inspect.contains("a1"),
        "{inspect}"
    );
    assert!(!inspect.contains("b2"), "b2 does not serve gpu: {inspect}");
}

#[test]
fn watch_follows_a_failed_attempt_into_its_retry_and_exits_0() {
    watch_follows_a_failed_attempt_into_its_retry_and_exits_0_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn watch_follows_a_failed_attempt_into_its_retry_and_exits_0_on_aws() {
    watch_follows_a_failed_attempt_into_its_retry_and_exits_0_on(true);
}

fn watch_follows_a_failed_attempt_into_its_retry_and_exits_0_on(aws: bool) {
    let s = Server::start_on(aws);
    deploy(&s, "flaky", "default", 2, 2);
    let _agent = s.agent(&[]);
    let out = s.ferry(&["deployment", "run", "flow/flaky", "--watch"]);
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "--watch must end with the retry that completed\nstdout: {stdout}\nstderr: {stderr}"
    );
    let first = stdout
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("Flow run "))
        .and_then(|l| l.split_whitespace().next())
        .expect("first line names the run")
        .to_owned();
    let line = stdout
        .lines()
        .find(|l| l.starts_with("attempt 1 failed"))
        .unwrap_or_else(|| panic!("no retry line:\n{stdout}"));
    assert!(
        line.contains("exit code 3")
            && line.contains("following retry")
            && line.contains("(attempt 2) scheduled at"),
        "{line}"
    );
    assert!(
        stdout.contains("attempt 2 of"),
        "the retry's log is streamed: {stdout}"
    );
    let run = s.run(&first);
    assert_eq!(run["state"], "failed");
    let retry = run["retried_by"]
        .as_str()
        .expect("the failed run names its retry");
    assert!(line.contains(retry), "{line}");
    assert_eq!(s.run(retry)["state"], "completed");
    let inspect = s.ok(&["flow-run", "inspect", &first]);
    assert!(
        inspect.contains(&format!("retried by:     {retry} (attempt 2)")),
        "{inspect}"
    );
}

#[test]
fn watch_of_a_run_that_fails_every_attempt_exits_1_after_the_last() {
    watch_of_a_run_that_fails_every_attempt_exits_1_after_the_last_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn watch_of_a_run_that_fails_every_attempt_exits_1_after_the_last_on_aws() {
    watch_of_a_run_that_fails_every_attempt_exits_1_after_the_last_on(true);
}

fn watch_of_a_run_that_fails_every_attempt_exits_1_after_the_last_on(aws: bool) {
    let s = Server::start_on(aws);
    deploy(&s, "broken", "default", 99, 1);
    let _agent = s.agent(&[]);
    let out = s.ferry(&["deployment", "run", "flow/broken", "--watch"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains("attempt 1 failed") && stdout.contains("following retry"),
        "{stdout}"
    );
    assert!(
        stdout.contains("attempt 2 of"),
        "the last attempt ran: {stdout}"
    );
    assert!(
        stderr.contains("ended failed") && stderr.contains("exit code 3"),
        "{stderr}"
    );
    let failed = s.json(&[
        "flow-run",
        "ls",
        "--deployment",
        "flow/broken",
        "--state",
        "failed",
    ]);
    assert_eq!(
        failed.as_array().unwrap().len(),
        2,
        "both attempts ran: {failed}"
    );
}

#[test]
fn watch_timeout_on_a_queue_nobody_serves_warns_and_exits_124() {
    watch_timeout_on_a_queue_nobody_serves_warns_and_exits_124_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn watch_timeout_on_a_queue_nobody_serves_warns_and_exits_124_on_aws() {
    watch_timeout_on_a_queue_nobody_serves_warns_and_exits_124_on(true);
}

fn watch_timeout_on_a_queue_nobody_serves_warns_and_exits_124_on(aws: bool) {
    let s = Server::start_on(aws);
    s.ok(&["work-queue", "create", "lonely"]);
    deploy(&s, "unserved", "lonely", 1, 0);
    let started = std::time::Instant::now();
    let out = s.ferry(&[
        "deployment",
        "run",
        "flow/unserved",
        "--watch",
        "--watch-timeout",
        "2s",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(124),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    let warning = "no agent has polled work queue 'lonely' in the last 60s: start one with `ferry agent start -q lonely`";
    assert_eq!(stderr.matches(warning).count(), 1, "warned once: {stderr}");
    assert!(
        stderr.contains("--watch-timeout 2s") && stderr.contains("is still"),
        "{stderr}"
    );
    // An agent serving the queue (as it reports itself) silences the warning.
    let (status, _) = put_agent(&s, "a1", presence("a1", &["lonely"], 0, 4));
    assert_eq!(status, 200);
    let out = s.ferry(&[
        "deployment",
        "run",
        "flow/unserved",
        "--watch",
        "--watch-timeout",
        "1s",
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(124), "{stderr}");
    assert!(!stderr.contains("no agent has polled"), "{stderr}");
    let e = s.fails(&[
        "deployment",
        "run",
        "flow/unserved",
        "--watch-timeout",
        "1s",
    ]);
    assert!(e.contains("--watch"), "--watch-timeout needs --watch: {e}");
}

#[test]
fn work_queue_delete_refuses_default_used_and_busy_queues() {
    work_queue_delete_refuses_default_used_and_busy_queues_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn work_queue_delete_refuses_default_used_and_busy_queues_on_aws() {
    work_queue_delete_refuses_default_used_and_busy_queues_on(true);
}

fn queue_names(s: &Server) -> Vec<String> {
    s.json(&["work-queue", "ls"])
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap().to_owned())
        .collect()
}

fn work_queue_delete_refuses_default_used_and_busy_queues_on(aws: bool) {
    let s = Server::start_on(aws);
    let e = s.fails(&["work-queue", "delete", "default"]);
    assert!(e.contains("always exists") && e.contains("409"), "{e}");
    let e = s.fails(&["work-queue", "delete", "nosuch"]);
    assert!(e.contains("not found"), "{e}");

    s.ok(&["work-queue", "create", "used"]);
    deploy(&s, "user", "used", 1, 0);
    let e = s.fails(&["work-queue", "delete", "used"]);
    assert!(
        e.contains("flow/user") && e.contains("ferry deployment delete"),
        "{e}"
    );
    assert!(
        queue_names(&s).contains(&"used".to_owned()),
        "nothing changed"
    );

    // A run waiting in a queue no deployment uses any more holds the queue too.
    let run = s.create_run("flow/user", json!({"start_in_seconds": 3600}));
    deploy(&s, "user", "default", 1, 0);
    let e = s.fails(&["work-queue", "delete", "used"]);
    assert!(
        e.contains(&run) && e.contains("ferry flow-run cancel"),
        "{e}"
    );
    assert!(
        queue_names(&s).contains(&"used".to_owned()),
        "nothing changed"
    );

    s.ok(&["flow-run", "cancel", &run]);
    let out = s.ok(&["work-queue", "delete", "used"]);
    assert!(out.contains("Deleted work queue \"used\""), "{out}");
    assert!(!queue_names(&s).contains(&"used".to_owned()));
}

#[test]
fn real_agents_on_both_paths_show_in_agent_ls_and_serve_a_watched_run_without_a_warning() {
    real_agents_show_in_agent_ls_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn real_agents_on_both_paths_show_in_agent_ls_and_serve_a_watched_run_without_a_warning_on_aws() {
    real_agents_show_in_agent_ls_on(true);
}

fn real_agents_show_in_agent_ls_on(aws: bool) {
    let s = Server::start_on(aws);
    s.ok(&["work-queue", "create", "etl"]);
    let _api = s.agent_via(
        Some("api"),
        &["-q", "etl", "--name", "via-api", "--limit", "2"],
    );
    let _direct = s.agent_via(Some("direct"), &["-q", "default", "--name", "via-direct"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let agents = loop {
        let agents = s.json(&["agent", "ls"]);
        if agents.as_array().unwrap().len() == 2 {
            break agents;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "both agents report within 30 s: {agents}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let by_name = |n: &str| {
        agents
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == n)
            .unwrap_or_else(|| panic!("{n} in {agents}"))
            .clone()
    };
    let (api, direct) = (by_name("via-api"), by_name("via-direct"));
    assert_eq!(
        (&api["path"], &api["queues"], &api["limit"], &api["online"]),
        (&json!("api"), &json!(["etl"]), &json!(2), &json!(true)),
        "{api}"
    );
    assert_eq!(
        (&direct["path"], &direct["queues"], &direct["online"]),
        (&json!("direct"), &json!(["default"]), &json!(true)),
        "{direct}"
    );
    let inspect = s.ok(&["work-queue", "inspect", "etl"]);
    assert!(
        inspect.contains("via-api") && !inspect.contains("via-direct"),
        "{inspect}"
    );

    // A watched run on a served queue completes with no "no agent" warning.
    deploy(&s, "served", "etl", 1, 0);
    let out = s.ferry(&[
        "deployment",
        "run",
        "flow/served",
        "--watch",
        "--watch-timeout",
        "60s",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stderr.contains("no agent has polled"), "{stderr}");
}
