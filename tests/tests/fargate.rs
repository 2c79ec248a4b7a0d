//! A task per run on ECS Fargate, end to end on one machine: `ferry server start` on the AWS
//! backend (DynamoDB Local + moto) launches runs of `ecs/NAME` deployments with ECS RunTask in
//! moto; the Fargate simulator (`ferry_tests::fargate_sim`) runs each task moto holds as a real
//! container of the agent image (podman, host networking), which runs
//! `ferry agent execute RUN_ID --launch N` against the same table and bucket.
//!
//! Needs the emulators, podman and the agent image (`scripts/test.sh` provides all three).

use std::time::Duration;

use ferry_tests::fargate_sim::{
    require_agent_image, FargateSim, MotoEcs, SimOptions, DEFAULT_IMAGE,
};
use ferry_tests::{write_project, Server};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(120);

struct Fargate {
    s: Server,
    ecs: MotoEcs,
    sim: FargateSim,
}

/// A server on a fresh table and bucket, an ECS cluster + task definition in moto, the
/// simulator on that cluster, a profile `ecs/test` (`extra` flags appended) and a deployment
/// `flow/ecs` of `flow.sh` on it.
fn setup(profile_flags: &[&str], build_flags: &[&str]) -> Fargate {
    setup_on(Server::start_aws(), profile_flags, build_flags)
}

fn setup_on(s: Server, profile_flags: &[&str], build_flags: &[&str]) -> Fargate {
    require_agent_image(DEFAULT_IMAGE);
    let id = s
        .home
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_lowercase();
    let cluster = format!("ferry-{}", id.trim_start_matches('.'));
    let ecs = MotoEcs::prepare(&cluster, "ferry-agent", DEFAULT_IMAGE);
    let sim = FargateSim::start(SimOptions::new(&cluster));
    let mut create = vec![
        "infra",
        "create",
        "ecs/test",
        "--cluster",
        &cluster,
        "--task-definition",
        "ferry-agent",
        "--subnet",
        &ecs.subnet_id,
        "--security-group",
        &ecs.security_group_id,
    ];
    create.extend_from_slice(profile_flags);
    s.ok(&create);
    let dir = s.path("proj");
    write_project(
        &dir,
        &[(
            "flow.sh",
            "#!/bin/sh\necho \"flow start $(date +%s.%N) attempt $FERRY_ATTEMPT in $(hostname) as $(id -u)\"\nif [ \"$FERRY_ATTEMPT\" = 1 ]; then sleep \"${FIRST_SLEEP:-0}\"; exit \"${FIRST_EXIT:-0}\"; fi\necho flow done\n",
        )],
    );
    let mut build = vec![
        "deployment",
        "build",
        "flow.sh",
        "-n",
        "ecs",
        "--path",
        dir.to_str().unwrap(),
        "-ib",
        "ecs/test",
        "-a",
    ];
    build.extend_from_slice(build_flags);
    s.ok(&build);
    Fargate { s, ecs, sim }
}

/// Waits for the completed retry of run `id` of `flow/ecs`.
fn completed_retry_of(s: &Server, id: &str) -> Value {
    s.wait_for(LONG, || {
        let runs = s.json(&["flow-run", "ls", "--deployment", "flow/ecs"]);
        runs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["retry_of"] == id && r["state"] == "completed")
            .cloned()
    })
}

fn task_of(run: &Value) -> String {
    run["launch"]["task"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
#[ignore = "needs the AWS emulators, podman and the agent image: scripts/test.sh runs it"]
fn a_run_on_an_ecs_profile_runs_in_a_fargate_task_of_its_own_on_aws() {
    let f = setup(&[], &["--override", "cpu=512", "--override", "memory=1024"]);
    let id = f.s.create_run("flow/ecs", json!({}));
    let run = f.s.wait_state(&id, "completed", LONG);
    let task = task_of(&run);
    assert!(task.starts_with("arn:aws:ecs:"), "{run}");
    // The container ran `ferry agent execute` for this run and exited 0.
    let c = f.sim.wait_for(&task, LONG, |c| c.ended());
    assert_eq!(c.exit_code, Some(0), "{c:?}");
    assert_eq!(c.args[..3], ["agent", "execute", id.as_str()], "{c:?}");
    // One RunTask for the run.
    assert_eq!(f.sim.containers().len(), 1, "{:?}", f.sim.containers());
    // Its logs are in S3, written from inside the container by a non-root user.
    let logs = f.s.ok(&["flow-run", "logs", &id]);
    assert!(logs.contains("flow start"), "{logs}");
    assert!(logs.contains("run ended: completed"), "{logs}");
    assert!(logs.contains("as 10001"), "{logs}");
    let history: Vec<String> = run["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["message"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(
        history
            .iter()
            .any(|m| m == "launched on ecs/test (launch 1 of 3)"),
        "{history:?}"
    );
}

#[test]
#[ignore = "needs the AWS emulators, podman and the agent image: scripts/test.sh runs it"]
fn a_run_due_in_a_minute_is_launched_ahead_and_starts_on_time_on_aws() {
    let f = setup(&["--launch-lead", "30s"], &[]);
    let id = f.s.create_run("flow/ecs", json!({"start_in_seconds": 60}));
    let created = f.s.run(&id);
    let due: chrono::DateTime<chrono::Utc> =
        created["scheduled_time"].as_str().unwrap().parse().unwrap();
    let run = f.s.wait_state(&id, "completed", LONG);
    let launched: chrono::DateTime<chrono::Utc> = run["launch"]["launched_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let ahead = (due - launched).num_milliseconds() as f64 / 1000.0;
    assert!(
        (0.0..=31.0).contains(&ahead),
        "launched {ahead} s before its time (lead 30 s)"
    );
    let started: chrono::DateTime<chrono::Utc> =
        run["started_at"].as_str().unwrap().parse().unwrap();
    let late = (started - due).num_milliseconds() as f64 / 1000.0;
    assert!(
        (0.0..1.0).contains(&late),
        "started {late} s after its time"
    );
}

#[test]
#[ignore = "needs the AWS emulators, podman and the agent image: scripts/test.sh runs it"]
fn a_container_killed_mid_run_ends_crashed_and_its_retry_completes_on_aws() {
    let f = setup(&[], &["--retries", "1", "--env", "FIRST_SLEEP=300"]);
    let id = f.s.create_run("flow/ecs", json!({}));
    let running = f.s.wait_state(&id, "running", LONG);
    let task = task_of(&running);
    f.sim.wait_for(&task, LONG, |c| c.container_id.is_some());
    f.sim.kill(&task);
    // The agent inside died with its container: the lease runs out, the run is Crashed and
    // its retry gets a task of its own, which completes.
    let crashed = f.s.wait_state(&id, "crashed", LONG);
    assert!(
        crashed["state_message"]
            .as_str()
            .unwrap()
            .contains("stopped renewing its lease"),
        "{crashed}"
    );
    let retry = completed_retry_of(&f.s, &id);
    assert_eq!(retry["attempt"], 2);
    assert_ne!(task_of(&retry), task, "the retry ran in a new task");
}

#[test]
#[ignore = "needs the AWS emulators, podman and the agent image: scripts/test.sh runs it"]
fn a_launch_ecs_refuses_loses_nothing_and_says_why_on_aws() {
    let f = setup(&[], &[]);
    // A second profile on a subnet moto does not know: RunTask is refused for good.
    let cluster = f.ecs.cluster.clone();
    f.s.ok(&[
        "infra",
        "create",
        "ecs/bad",
        "--cluster",
        &cluster,
        "--task-definition",
        "ferry-agent",
        "--subnet",
        "subnet-0nope",
    ]);
    let dir = f.s.path("proj");
    f.s.ok(&[
        "deployment",
        "build",
        "flow.sh",
        "-n",
        "bad",
        "--path",
        dir.to_str().unwrap(),
        "-ib",
        "ecs/bad",
        "-a",
    ]);
    let id = f.s.create_run("flow/bad", json!({}));
    let run = f.s.wait_state(&id, "crashed", LONG);
    let msg = run["state_message"].as_str().unwrap();
    assert!(msg.contains("subnet-0nope"), "{msg}");
    assert!(f.sim.containers().is_empty(), "no task started");
    // The run is there to see, with its history; the other profile still works.
    let good = f.s.create_run("flow/ecs", json!({}));
    f.s.wait_state(&good, "completed", LONG);
}

#[test]
#[ignore = "needs the AWS emulators, podman and the agent image: scripts/test.sh runs it"]
fn a_retry_written_by_a_task_is_launched_from_the_table_stream_on_aws() {
    // The tick runs once an hour: only dispatch on the stream can launch the retry, which the
    // task itself writes (with its failed run, in one transaction) inside its container.
    let s = Server::start_aws_with(&["--tick-interval", "1h"]);
    let f = setup_on(s, &[], &["--retries", "1", "--env", "FIRST_EXIT=3"]);
    let id = f.s.create_run("flow/ecs", json!({}));
    let failed = f.s.wait_state(&id, "failed", LONG);
    assert_eq!(failed["exit_code"], 3);
    let retry = completed_retry_of(&f.s, &id);
    assert_eq!(retry["attempt"], 2);
    assert_eq!(f.sim.containers().len(), 2, "one task per attempt");
}
