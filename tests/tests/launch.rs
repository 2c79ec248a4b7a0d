//! A task per run through the real binaries on the embedded backend: deployments on a
//! `process/NAME` profile are launched by `ferry server start` as local
//! `ferry agent execute RUN_ID --launch N` processes — no long-running agent anywhere.

use std::time::Duration;

use ferry_tests::{write_project, Server};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);

/// A server ticking every second (pre-launch runs in the tick), a `process/local` profile with
/// `lead` seconds of launch lead, and a deployment `launched` of `flow.sh` on it.
fn setup(lead: &str) -> (Server, String) {
    let s = Server::start_with(&["--tick-interval", "1s"], &[]);
    let dir = s.path("proj");
    write_project(
        &dir,
        &[(
            "flow.sh",
            "#!/bin/sh\necho \"start $FERRY_RUN_ID $(date +%s.%N)\" >> \"$OUT\"\necho hello from the task\nsleep \"${SLEEP:-0}\"\n",
        )],
    );
    let out = s.path("flow.out").to_string_lossy().into_owned();
    s.ok(&["infra", "create", "process/local", "--launch-lead", lead]);
    s.ok(&[
        "deployment",
        "build",
        "flow.sh",
        "-n",
        "launched",
        "--path",
        &dir.to_string_lossy(),
        "-ib",
        "process/local",
        "--override",
        "env.SLEEP=0",
        "--env",
        &format!("OUT={out}"),
        "-a",
    ]);
    (s, out)
}

fn history_messages(run: &Value) -> Vec<String> {
    run["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            format!(
                "{}: {}",
                h["state"].as_str().unwrap(),
                h["message"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn start_times(out: &str) -> Vec<(String, f64)> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let p: Vec<_> = l.split_whitespace().collect();
            (p[1].to_owned(), p[2].parse().unwrap())
        })
        .collect()
}

#[test]
fn a_launched_deployment_runs_each_run_in_a_task_of_its_own() {
    let (s, out) = setup("90s");
    let id = s.create_run("flow/launched", json!({}));
    let run = s.wait_state(&id, "completed", LONG);
    let history = history_messages(&run);
    assert!(
        history
            .iter()
            .any(|h| h == "pending: launched on process/local (launch 1 of 3)"),
        "{history:?}"
    );
    assert!(
        history
            .iter()
            .any(|h| h.starts_with("pending: taken over by ")),
        "{history:?}"
    );
    assert_eq!(run["launch"]["attempt"], 1);
    assert!(run["launch"]["task"]
        .as_str()
        .unwrap()
        .starts_with("process:"));
    assert_eq!(start_times(&out).len(), 1, "the flow ran once");
    let logs = s.ok(&["flow-run", "logs", &id]);
    assert!(logs.contains("hello from the task"), "{logs}");
    // No agent serves the queue: the run was never listed to one.
    let preview = s.ok(&["work-queue", "preview", "default"]);
    assert!(!preview.contains(&id), "{preview}");
}

#[test]
fn a_run_due_later_is_launched_within_its_lead_and_starts_on_time() {
    let (s, out) = setup("4s");
    let id = s.create_run("flow/launched", json!({"start_in_seconds": 8}));
    let created = s.run(&id);
    assert_eq!(created["state"], "scheduled");
    let scheduled: chrono::DateTime<chrono::Utc> =
        created["scheduled_time"].as_str().unwrap().parse().unwrap();
    // Launched ahead of its time (within the 4 s lead), not at creation.
    let launched = s.wait_for(LONG, || {
        let r = s.run(&id);
        (r["state"] != "scheduled").then_some(r)
    });
    let launched_at: chrono::DateTime<chrono::Utc> = launched["launch"]["launched_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        launched_at < scheduled && launched_at >= scheduled - chrono::Duration::seconds(5),
        "launched at {launched_at}, due {scheduled}"
    );
    s.wait_state(&id, "completed", LONG);
    let starts = start_times(&out);
    assert_eq!(starts.len(), 1);
    let late = starts[0].1 - scheduled.timestamp_millis() as f64 / 1000.0;
    assert!(
        (0.0..1.0).contains(&late),
        "the flow started {late:.3} s after its time"
    );
}

#[test]
fn a_second_task_for_the_same_run_takes_nothing_and_changes_nothing() {
    let (s, _out) = setup("90s");
    let id = s.create_run("flow/launched", json!({}));
    let done = s.wait_state(&id, "completed", LONG);
    for launch in ["1", "2"] {
        let o = s.ferry(&["agent", "execute", &id, "--launch", launch]);
        assert_eq!(o.status.code(), Some(3), "launch {launch}: {o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("nothing to do") && err.contains("already completed"),
            "{err}"
        );
    }
    assert_eq!(s.run(&id), done, "nothing written");
    let o = s.ferry(&["agent", "execute", "not-a-run-id"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("RUN_ID"),
        "{o:?}"
    );
}

#[test]
fn cancelling_a_launched_run_stops_its_task_and_the_run_ends_cancelled() {
    let (s, out) = setup("60s");
    // Due in 30 s, launched at once (60 s lead): its task takes it and waits for its time.
    let id = s.create_run("flow/launched", json!({"start_in_seconds": 30}));
    let taken = s.wait_for(LONG, || {
        let r = s.run(&id);
        let holder = r["lease"]["agent_id"].as_str().unwrap_or("").to_owned();
        (r["state"] == "pending" && !holder.is_empty() && !holder.starts_with("launcher:"))
            .then_some(r)
    });
    assert_eq!(taken["launch"]["attempt"], 1);
    s.ok(&["flow-run", "cancel", &id]);
    let run = s.wait_state(&id, "cancelled", LONG);
    assert!(run["lease"].is_null());
    // The task gives up at its next heartbeat; the flow never starts.
    std::thread::sleep(Duration::from_secs(6));
    assert!(start_times(&out).is_empty(), "the flow must not run");
    assert_eq!(s.run(&id)["state"], "cancelled");
}
