//! Lateness of pre-launched scheduled runs on the Fargate simulator, run by `bench/launch.sh`:
//! `ferry server start` on the AWS backend (DynamoDB Local + moto) ticking every 5 s, an
//! `ecs/NAME` profile with a 30 s launch lead, RUNS ad-hoc runs due 40–60 s ahead; each is
//! launched by the tick's pre-launch, its task (a real container of the agent image) takes it
//! and starts the flow at its time. Prints how late each flow started (the run's `started_at`
//! minus its scheduled time) and how far ahead it was launched. Needs the emulators, podman and
//! the agent image (`scripts/agent-image.sh build`).
//!
//! `cargo run -p ferry-tests --example fargate_lateness -- [RUNS=10]`

use std::time::Duration;

use ferry_tests::fargate_sim::{
    require_agent_image, FargateSim, MotoEcs, SimOptions, DEFAULT_IMAGE,
};
use ferry_tests::{write_project, Server};

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse().expect("RUNS: a number"))
        .unwrap_or(10);
    require_agent_image(DEFAULT_IMAGE);
    let s = Server::start_aws_with(&["--tick-interval", "5s"]);
    let cluster = format!("bench-{}", std::process::id());
    let ecs = MotoEcs::prepare(&cluster, "ferry-agent", DEFAULT_IMAGE);
    let sim = FargateSim::start(SimOptions::new(&cluster));
    s.ok(&[
        "infra",
        "create",
        "ecs/bench",
        "--cluster",
        &cluster,
        "--task-definition",
        "ferry-agent",
        "--subnet",
        &ecs.subnet_id,
        "--launch-lead",
        "30s",
    ]);
    let dir = s.path("proj");
    write_project(&dir, &[("flow.sh", "#!/bin/sh\necho on time\n")]);
    s.ok(&[
        "deployment",
        "build",
        "flow.sh",
        "-n",
        "bench",
        "--path",
        dir.to_str().unwrap(),
        "-ib",
        "ecs/bench",
        "-a",
    ]);
    let ids: Vec<String> = (0..runs)
        .map(|i| {
            let start_in = 40 + (20 * i / runs.max(1)) as u64;
            s.create_run(
                "flow/bench",
                serde_json::json!({ "start_in_seconds": start_in }),
            )
        })
        .collect();
    let mut late = Vec::new();
    let mut ahead = Vec::new();
    for id in &ids {
        let run = s.wait_state(id, "completed", Duration::from_secs(180));
        let at = |k: &str| -> chrono::DateTime<chrono::Utc> {
            k.split('.')
                .fold(&run, |v, key| &v[key])
                .as_str()
                .unwrap()
                .parse()
                .unwrap()
        };
        let due = at("scheduled_time");
        late.push((at("started_at") - due).num_milliseconds() as f64 / 1000.0);
        ahead.push((due - at("launch.launched_at")).num_milliseconds() as f64 / 1000.0);
    }
    late.sort_by(f64::total_cmp);
    ahead.sort_by(f64::total_cmp);
    let tasks = sim.containers().len();
    let p = |v: &[f64], q: f64| v[((v.len() as f64 - 1.0) * q).round() as usize];
    println!("measure (Fargate simulator: podman containers, moto ECS, DynamoDB Local; tick 5 s, lead 30 s)  value");
    println!("-------------------------------------------------------------------------------------------  -----");
    println!(
        "{:91}  p50 {:.3} s, max {:.3} s",
        format!("flow start after its scheduled time ({runs} runs)"),
        p(&late, 0.5),
        late[late.len() - 1]
    );
    println!(
        "{:91}  min {:.1} s, p50 {:.1} s, max {:.1} s",
        "launched ahead of its time",
        ahead[0],
        p(&ahead, 0.5),
        ahead[ahead.len() - 1]
    );
    println!("{:91}  {tasks} for {runs} runs", "tasks started");
}
