//! The agent image (the repo's Dockerfile, built by `scripts/agent-image.sh build`) run as real
//! podman containers, and the Fargate simulator (`ferry_tests::fargate_sim`) that runs moto's
//! ECS tasks as such containers. These tests need podman and the image: without them they fail
//! naming `scripts/agent-image.sh install && scripts/agent-image.sh build`; the simulator tests
//! also need the AWS emulators.

use std::process::Command;
use std::time::{Duration, Instant};

use ferry_tests::fargate_sim::{
    container_exists, containers_with_label, podman_output, require_agent_image, FargateSim,
    MotoEcs, SimOptions, TaskDefSpec, DEFAULT_IMAGE, ESSENTIAL_EXITED, SIM_LABEL,
};
use ferry_tests::require_emulators;

const WAIT: Duration = Duration::from_secs(30);

/// A name no other test (or earlier run against the same moto) uses.
fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

/// `podman run --rm [--entrypoint E] ferry-agent:dev ARGS` → stdout (asserting success).
fn run_image(entrypoint: Option<&str>, args: &[&str]) -> String {
    let mut all = vec!["run", "--rm", "--network", "host"];
    if let Some(e) = entrypoint {
        all.extend(["--entrypoint", e]);
    }
    all.push(DEFAULT_IMAGE);
    all.extend(args);
    podman_output(&all).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
#[ignore = "needs podman and the agent image: scripts/test.sh runs it"]
fn the_image_runs_ferry_as_a_non_root_user_with_python3() {
    require_agent_image(DEFAULT_IMAGE);

    let version = run_image(None, &["--version"]);
    assert!(
        version.starts_with("ferry "),
        "ferry --version printed {version:?}"
    );
    // Both ways to run on Fargate are in the binary the image carries.
    let agent_help = run_image(None, &["agent", "--help"]);
    assert!(
        agent_help.contains("start"),
        "ferry agent --help: {agent_help}"
    );

    let uid = run_image(Some("id"), &["-u"]);
    assert_ne!(uid.trim(), "0", "the image runs as root");
    assert_eq!(uid.trim(), "10001");
    let home = run_image(Some("sh"), &["-c", "echo $HOME; pwd; echo $FERRY_PYTHON"]);
    assert_eq!(home, "/home/ferry\n/home/ferry\npython3\n");

    // Flows run as python3 subprocesses; venv is there for a team's derived image (docs).
    let py = run_image(
        Some("python3"),
        &["-c", "import ssl, sys, venv; print(sys.version_info[0])"],
    );
    assert_eq!(py.trim(), "3");

    // scripts/agent-image.sh run: the same image, host networking, FERRY_* passed through.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("scripts/agent-image.sh");
    let out = Command::new(&script)
        .arg("run")
        .arg("--version")
        .output()
        .expect("running scripts/agent-image.sh run");
    assert!(
        out.status.success(),
        "scripts/agent-image.sh run --version failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), version);
}

#[test]
#[ignore = "needs the AWS emulators and the agent image: scripts/test.sh runs it"]
fn a_run_task_in_moto_runs_its_override_command_in_the_agent_image_and_the_task_stops() {
    require_emulators();
    let moto = MotoEcs::prepare(&unique("sim-run"), &unique("ferry"), DEFAULT_IMAGE);
    let sim = FargateSim::start(SimOptions::new(&moto.cluster));

    let arn = moto.run_task(&moto.task_definition_arn, &["--version"], &[]);
    let c = sim.wait_for(&arn, WAIT, |c| c.ended());
    assert_eq!(c.exit_code, Some(0), "{c:?}");
    assert_eq!(c.args, ["--version"]);
    assert!(
        c.logs.starts_with("ferry "),
        "container output: {:?}",
        c.logs
    );
    assert!(c.removed);
    let id = c.container_id.expect("the container has an id");
    assert!(
        !container_exists(&id),
        "the ended container {id} was not removed"
    );

    let view = moto.wait_task(&arn, WAIT, |v| v.last_status.as_deref() == Some("STOPPED"));
    assert_eq!(view.desired_status.as_deref(), Some("STOPPED"));
    assert_eq!(view.stopped_reason.as_deref(), Some(ESSENTIAL_EXITED));
    assert!(
        sim.errors().is_empty(),
        "simulator errors: {:?}",
        sim.errors()
    );
}

#[test]
#[ignore = "needs the AWS emulators and the agent image: scripts/test.sh runs it"]
fn the_override_environment_reaches_the_container_and_its_exit_code_is_recorded() {
    require_emulators();
    let moto = MotoEcs::prepare(&unique("sim-env"), &unique("ferry"), DEFAULT_IMAGE);
    let shell = moto.register(&TaskDefSpec {
        entry_point: Some(vec!["sh".into(), "-c".into()]),
        environment: vec![("FROM_TASK_DEF".into(), "td".into())],
        ..TaskDefSpec::new(&unique("shell"), DEFAULT_IMAGE)
    });
    let sim = FargateSim::start(SimOptions::new(&moto.cluster));

    let arn = moto.run_task(
        &shell,
        &[r#"echo "$GREETING $FROM_TASK_DEF $(id -u) ${AWS_ENDPOINT_URL:-none}"; exit 3"#],
        &[("GREETING", "hello")],
    );
    let c = sim.wait_for(&arn, WAIT, |c| c.ended());
    assert_eq!(c.exit_code, Some(3), "{c:?}");
    let endpoint = std::env::var("AWS_ENDPOINT_URL").unwrap();
    assert_eq!(c.logs.trim(), format!("hello td 10001 {endpoint}"));
    let view = moto.wait_task(&arn, WAIT, |v| v.last_status.as_deref() == Some("STOPPED"));
    assert_eq!(view.stopped_reason.as_deref(), Some(ESSENTIAL_EXITED));
    // moto reports exit code 0 whatever the container did: the simulator has the real one.
    assert_eq!(view.exit_codes, [Some(0)]);
}

#[test]
#[ignore = "needs the AWS emulators and the agent image: scripts/test.sh runs it"]
fn stop_task_stops_and_removes_a_running_container_within_seconds() {
    require_emulators();
    let moto = MotoEcs::prepare(&unique("sim-stop"), &unique("ferry"), DEFAULT_IMAGE);
    let sleeper = moto.register(&TaskDefSpec {
        entry_point: Some(vec!["sleep".into()]),
        stop_timeout: Some(1),
        ..TaskDefSpec::new(&unique("sleeper"), DEFAULT_IMAGE)
    });
    let sim = FargateSim::start(SimOptions::new(&moto.cluster));

    let arn = moto.run_task(&sleeper, &["300"], &[]);
    let id = sim
        .wait_for(&arn, WAIT, |c| c.container_id.is_some())
        .container_id
        .unwrap();
    let state = podman_output(&["inspect", "--format", "{{.State.Status}}", &id]).unwrap();
    assert_eq!(state.trim(), "running");
    // Frozen task states: polling does not make moto's task stop by itself.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(moto.describe(&arn).last_status.as_deref(), Some("RUNNING"));

    let stopped_at = Instant::now();
    moto.stop_task(&arn, "Cancelled by test");
    // sleep as PID 1 ignores SIGTERM: SIGKILL after the task definition's stopTimeout (1 s).
    let c = sim.wait_for(&arn, Duration::from_secs(10), |c| c.removed);
    let took = stopped_at.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "container removed {took:?} after StopTask"
    );
    assert!(!container_exists(&id), "container {id} still exists");
    assert!(c.stopped_by_ecs);
    assert_eq!(c.exit_code, Some(137), "{c:?}");
    assert_eq!(c.sim_stop_reason, None);
    // The simulator does not overwrite the reason the stopper gave.
    let view = moto.describe(&arn);
    assert_eq!(view.last_status.as_deref(), Some("STOPPED"));
    assert_eq!(view.stopped_reason.as_deref(), Some("Cancelled by test"));
}

#[test]
#[ignore = "needs the AWS emulators and the agent image: scripts/test.sh runs it"]
fn a_killed_container_stops_its_task_with_exit_code_137() {
    require_emulators();
    let moto = MotoEcs::prepare(&unique("sim-kill"), &unique("ferry"), DEFAULT_IMAGE);
    let sleeper = moto.register(&TaskDefSpec {
        entry_point: Some(vec!["sleep".into()]),
        ..TaskDefSpec::new(&unique("sleeper"), DEFAULT_IMAGE)
    });
    let sim = FargateSim::start(SimOptions::new(&moto.cluster));

    let arn = moto.run_task(&sleeper, &["300"], &[]);
    sim.wait_for(&arn, WAIT, |c| c.container_id.is_some());
    sim.kill(&arn);
    let c = sim.wait_for(&arn, WAIT, |c| c.removed);
    assert_eq!(c.exit_code, Some(137), "{c:?}");
    assert!(!c.stopped_by_ecs);
    let view = moto.wait_task(&arn, WAIT, |v| v.last_status.as_deref() == Some("STOPPED"));
    assert_eq!(view.stopped_reason.as_deref(), Some(ESSENTIAL_EXITED));
}

#[test]
#[ignore = "needs the AWS emulators and the agent image: scripts/test.sh runs it"]
fn a_task_whose_image_is_missing_stops_with_a_pull_error_and_runs_nothing() {
    require_emulators();
    let moto = MotoEcs::prepare(&unique("sim-pull"), &unique("ferry"), DEFAULT_IMAGE);
    let missing = moto.register(&TaskDefSpec::new(
        &unique("missing"),
        "localhost/ferry-agent:no-such-tag",
    ));
    let sim = FargateSim::start(SimOptions {
        image: None,
        ..SimOptions::new(&moto.cluster)
    });

    let arn = moto.run_task(&missing, &["--version"], &[]);
    let view = moto.wait_task(&arn, WAIT, |v| v.last_status.as_deref() == Some("STOPPED"));
    let reason = view.stopped_reason.unwrap_or_default();
    assert!(reason.starts_with("CannotPullContainerError"), "{reason}");
    let c = sim.container(&arn).expect("the simulator saw the task");
    assert_eq!(c.container_id, None);
    assert!(containers_with_label(&format!("{SIM_LABEL}={}", sim.id())).is_empty());
}

#[test]
#[ignore = "needs the AWS emulators and the agent image: scripts/test.sh runs it"]
fn dropping_the_simulator_removes_its_running_containers() {
    require_emulators();
    let moto = MotoEcs::prepare(&unique("sim-drop"), &unique("ferry"), DEFAULT_IMAGE);
    let sleeper = moto.register(&TaskDefSpec {
        entry_point: Some(vec!["sleep".into()]),
        ..TaskDefSpec::new(&unique("sleeper"), DEFAULT_IMAGE)
    });
    let sim = FargateSim::start(SimOptions::new(&moto.cluster));
    let label = format!("{SIM_LABEL}={}", sim.id());
    let arns: Vec<String> = (0..2)
        .map(|_| moto.run_task(&sleeper, &["300"], &[]))
        .collect();
    for arn in &arns {
        sim.wait_for(arn, WAIT, |c| c.container_id.is_some());
    }
    assert_eq!(containers_with_label(&label).len(), 2);

    sim.shutdown();
    assert!(
        containers_with_label(&label).is_empty(),
        "containers left behind: {:?}",
        containers_with_label(&label)
    );
}
