//! Ferry's three Lambda functions — the real binaries (`cargo build -p ferry-functions
//! --bins`) — running behind the project's Lambda Runtime API emulator
//! (`ferry_tests::lambda_rt`) against DynamoDB Local and moto: the tick on an EventBridge
//! scheduled event, the API behind an API Gateway HTTP API (payload 2.0) made of the real CLI's
//! HTTP requests, and dispatch on a batch of records read from DynamoDB Local's stream.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use ferry_tests::fargate_sim::{MotoEcs, DEFAULT_IMAGE};
use ferry_tests::lambda_rt::{
    function_binary, scheduled_event, stream_event, ApiGatewayProxy, FunctionConfig, LambdaError,
    LambdaFunction,
};
use ferry_tests::{ferry_bin, require_emulators, write_project};
use serde_json::{json, Value};

/// A fresh table and bucket, created by `ferry aws bootstrap`.
struct Storage {
    table: String,
    bucket: String,
}

impl Storage {
    fn fresh() -> Self {
        require_emulators();
        let id = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let s = Self {
            table: format!("ferry-lambda-{id}"),
            bucket: format!("ferry-lambda-{id}"),
        };
        let out = Command::new(ferry_bin())
            .args(["aws", "bootstrap"])
            .env("FERRY_BACKEND", "aws")
            .env("FERRY_TABLE", &s.table)
            .env("FERRY_BUCKET", &s.bucket)
            .output()
            .expect("running ferry aws bootstrap");
        assert!(
            out.status.success(),
            "bootstrap failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        s
    }

    /// The function `binary` as `name`, on this table and bucket and the emulators.
    fn function(&self, name: &str, binary: &str) -> LambdaFunction {
        LambdaFunction::start(
            FunctionConfig::new(name, function_binary(binary))
                .aws_env_from_test()
                .env("FERRY_TABLE", &self.table)
                .env("FERRY_BUCKET", &self.bucket),
        )
    }
}

/// The real `ferry` CLI pointed at an API URL (no `FERRY_BACKEND`: a client only).
struct Cli {
    url: String,
    home: tempfile::TempDir,
    work: tempfile::TempDir,
}

impl Cli {
    fn at(gw: &ApiGatewayProxy) -> Self {
        Self {
            url: gw.url.clone(),
            home: tempfile::tempdir().unwrap(),
            work: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(ferry_bin())
            .args(args)
            .current_dir(self.work.path())
            .env_remove("FERRY_BACKEND")
            .env_remove("FERRY_TABLE")
            .env_remove("FERRY_BUCKET")
            .env("FERRY_API_URL", &self.url)
            .env("FERRY_HOME", self.home.path())
            .env("FERRY_LOG", "warn")
            .output()
            .expect("running ferry")
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ferry {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.work.path().join(rel)
    }
}

fn http() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

/// The counters every tick report has.
const TICK_COUNTERS: &[&str] = &[
    "deployments_extended",
    "runs_created",
    "runs_existing",
    "conflicts",
    "marked_late",
    "reaped",
    "slots_swept",
    "launched",
    "relaunched",
];

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn tick_function_answers_scheduled_events_with_an_empty_report_on_a_fresh_table_on_aws() {
    let storage = Storage::fresh();
    let tick = storage.function("ferry-tick", "ferry-tick-lambda");
    let init = tick.init_duration();
    assert!(init < Duration::from_secs(30), "init took {init:?}");
    // Two events: the runtime loop takes one invocation after another, as on Lambda.
    for _ in 0..2 {
        let report = tick
            .invoke(scheduled_event("ferry-tick"))
            .unwrap_or_else(|e| panic!("{e}"));
        for k in TICK_COUNTERS {
            assert_eq!(report[k], 0, "{k} on a fresh table: {report}");
        }
        // `failures` is left out of the report when there is none.
        assert!(
            report.get("failures").is_none_or(|f| f == &json!([])),
            "{report}"
        );
    }
    let logs = tick.logs();
    assert!(
        logs.contains("\"message\":\"tick\""),
        "no tick log line: {logs}"
    );
}

#[test]
fn function_without_its_table_fails_at_init_naming_the_variable() {
    let tick = LambdaFunction::start(FunctionConfig::new(
        "ferry-tick",
        function_binary("ferry-tick-lambda"),
    ));
    match tick.invoke(scheduled_event("ferry-tick")) {
        Err(LambdaError::Exited { logs, .. }) | Err(LambdaError::Init { logs, .. }) => {
            assert!(logs.contains("FERRY_TABLE is not set: "), "{logs}")
        }
        other => panic!("expected an init failure, got {other:?}"),
    }
}

#[test]
fn an_event_over_lambdas_6_mb_limit_is_refused_before_reaching_the_function() {
    let tick = LambdaFunction::start(
        FunctionConfig::new("ferry-tick", function_binary("ferry-tick-lambda"))
            .env("FERRY_TABLE", "unused")
            .env("FERRY_BUCKET", "unused"),
    );
    tick.init_duration();
    let big = json!({ "detail": "x".repeat(6 * 1024 * 1024) });
    match tick.invoke(big) {
        Err(LambdaError::RequestTooLarge { size }) => assert!(size > 6 * 1024 * 1024),
        other => panic!("expected RequestTooLarge, got {other:?}"),
    }
    assert!(
        !tick.logs().contains("\"message\":\"tick\""),
        "the function ran: {}",
        tick.logs()
    );
}

fn flow_project(cli: &Cli) -> String {
    let dir = cli.path("proj");
    write_project(
        &dir,
        &[
            (
                "flow.sh",
                "#!/bin/sh\necho hello from a lambda-registered flow\n",
            ),
            ("flows/etl.py", "def main(n=1):\n    print('n =', n)\n"),
        ],
    );
    dir.to_string_lossy().into_owned()
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn api_function_behind_api_gateway_serves_the_real_cli_on_aws() {
    let storage = Storage::fresh();
    let api = storage.function("ferry-api", "ferry-api-lambda");
    let gw = api.api_gateway();
    let http = http();

    let mut r = http.get(format!("{}/v1/health", gw.url)).call().unwrap();
    assert_eq!(r.status(), 200);
    let health: Value = r.body_mut().read_json().unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["backend"], "aws", "{health}");

    let cli = Cli::at(&gw);
    let proj = flow_project(&cli);
    cli.ok(&["work-queue", "create", "q1"]);
    let queues = cli.json(&["work-queue", "ls"]);
    assert!(
        queues.as_array().unwrap().iter().any(|q| q["name"] == "q1"),
        "{queues}"
    );
    // The bundle goes to S3 (moto) by a presigned PUT, not through API Gateway.
    let out = cli.ok(&[
        "deployment",
        "build",
        "flows/etl.py:main",
        "-n",
        "nightly",
        "-q",
        "q1",
        "--path",
        &proj,
        "--param",
        "n=3",
        "-a",
    ]);
    assert!(out.contains("Created deployment main/nightly"), "{out}");
    // The CLI asked the function for an upload URL and sent the bundle to S3 itself.
    let requests = gw.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.method == "POST" && r.path.ends_with("/upload-url") && r.status == 200),
        "{requests:?}"
    );
    assert!(
        !requests
            .iter()
            .any(|r| r.method == "PUT" && r.path.starts_with("/v1/bundles/")),
        "the bundle went through API Gateway: {requests:?}"
    );
    let dep = cli.json(&["deployment", "inspect", "main/nightly"]);
    let sha = dep["spec"]["bundle"]["sha256"]
        .as_str()
        .unwrap_or_else(|| panic!("no bundle digest in {dep}"))
        .to_owned();
    // A binary response (the gzip bundle) comes back through the proxy base64-encoded by the
    // function and decoded by API Gateway.
    let mut r = http
        .get(format!("{}/v1/bundles/{sha}", gw.url))
        .call()
        .unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.body_mut().read_to_vec().unwrap();
    assert_eq!(bytes[..2], [0x1f, 0x8b], "not gzip: {} bytes", bytes.len());

    let run = cli.json(&["deployment", "run", "main/nightly", "--param", "n=5"]);
    let id = run["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{run}"))
        .to_owned();
    let runs = cli.json(&["flow-run", "ls", "--deployment", "main/nightly"]);
    let listed = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id.as_str())
        .unwrap_or_else(|| panic!("run {id} not listed: {runs}"));
    assert_eq!(listed["state"], "scheduled", "{listed}");
    assert_eq!(listed["parameters"]["n"], 5, "{listed}");

    // A 4xx from the router keeps its status and JSON body through API Gateway.
    let mut r = http
        .get(format!("{}/v1/deployments/main/missing", gw.url))
        .call()
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.body_mut().read_json().unwrap();
    assert!(body.to_string().contains("missing"), "{body}");
}

/// The API function behind API Gateway, the real CLI pointed at it, an ECS cluster and task
/// definition in moto, a profile `ecs/test` on them and a launched deployment `flow/ecs`.
struct EcsDeployment {
    storage: Storage,
    cli: Cli,
    ecs: MotoEcs,
    _gw: ApiGatewayProxy,
    _api: LambdaFunction,
}

impl EcsDeployment {
    fn new() -> Self {
        let storage = Storage::fresh();
        let api = storage.function("ferry-api", "ferry-api-lambda");
        let gw = api.api_gateway();
        let cli = Cli::at(&gw);
        let cluster = format!("ferry-{}", storage.table.trim_start_matches("ferry-"));
        let ecs = MotoEcs::prepare(&cluster, "ferry-agent", DEFAULT_IMAGE);
        cli.ok(&[
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
        ]);
        let proj = flow_project(&cli);
        cli.ok(&[
            "deployment",
            "build",
            "flow.sh",
            "-n",
            "ecs",
            "--path",
            &proj,
            "-ib",
            "ecs/test",
            "-a",
        ]);
        Self {
            storage,
            cli,
            ecs,
            _gw: gw,
            _api: api,
        }
    }

    /// `ferry deployment run flow/ecs`: the new run's id, checked to be waiting for a launch.
    fn run(&self) -> String {
        let run = self.cli.json(&["deployment", "run", "flow/ecs"]);
        assert_eq!(run["state"], "scheduled", "nothing launched it yet: {run}");
        run["id"]
            .as_str()
            .unwrap_or_else(|| panic!("{run}"))
            .to_owned()
    }

    /// Asserts run `id` is Pending with an ECS task moto holds; the task's ARN.
    fn assert_launched(&self, id: &str) -> String {
        let run = self.cli.json(&["flow-run", "inspect", id]);
        assert_eq!(run["state"], "pending", "{run}");
        let task = run["launch"]["task"]
            .as_str()
            .unwrap_or_else(|| panic!("no task in {run}"))
            .to_owned();
        assert!(task.starts_with("arn:aws:ecs:"), "{run}");
        assert_eq!(
            self.ecs.describe(&task).desired_status.as_deref(),
            Some("RUNNING")
        );
        task
    }
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn dispatch_function_launches_a_run_from_dynamodb_local_stream_records_on_aws() {
    let d = EcsDeployment::new();
    let id = d.run();

    // The batch Lambda would deliver: the stream's records the mapping's filter keeps.
    let (event, total) = stream_event(&d.storage.table, ferry_aws::stream::LAMBDA_FILTER_PATTERN);
    let records = event["Records"].as_array().unwrap();
    assert!(
        records.len() < total,
        "the filter kept all {total} records (queue, profile, deployment items too?)"
    );
    assert!(
        records.iter().any(|r| r["dynamodb"]["NewImage"]["pk"]["S"]
            .as_str()
            .is_some_and(|pk| pk.ends_with(&id))),
        "no record of run {id} in {event}"
    );

    let dispatch = d
        .storage
        .function("ferry-dispatch", "ferry-dispatch-lambda");
    let answer = dispatch
        .invoke(event.clone())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let task = d.assert_launched(&id);

    // The same batch delivered again (a retry) launches nothing more.
    let again = dispatch.invoke(event).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(again, json!({"batchItemFailures": []}));
    assert_eq!(d.assert_launched(&id), task);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn tick_function_launches_a_due_run_that_dispatch_missed_on_aws() {
    let d = EcsDeployment::new();
    let id = d.run();
    let tick = d.storage.function("ferry-tick", "ferry-tick-lambda");
    let report = tick
        .invoke(scheduled_event("ferry-tick"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["launched"], 1, "{report}");
    let task = d.assert_launched(&id);
    // The next tick finds it launched already.
    let report = tick
        .invoke(scheduled_event("ferry-tick"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["launched"], 0, "{report}");
    assert_eq!(d.assert_launched(&id), task);
}

#[test]
#[ignore = "needs the AWS emulators, podman and the agent image: scripts/test.sh runs it"]
fn a_run_registered_through_the_api_function_completes_in_a_fargate_task_launched_by_dispatch_on_aws(
) {
    ferry_tests::fargate_sim::require_agent_image(DEFAULT_IMAGE);
    let d = EcsDeployment::new();
    // The Fargate simulator runs the tasks moto holds as containers of the agent image.
    let sim = ferry_tests::fargate_sim::FargateSim::start(
        ferry_tests::fargate_sim::SimOptions::new(&d.ecs.cluster),
    );
    let id = d.run();
    let (event, _) = stream_event(&d.storage.table, ferry_aws::stream::LAMBDA_FILTER_PATTERN);
    let dispatch = d
        .storage
        .function("ferry-dispatch", "ferry-dispatch-lambda");
    let answer = dispatch.invoke(event).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let task = d.assert_launched(&id);
    // The task's container runs `ferry agent execute` against the same table and bucket
    // (the launch gave it their names); the run completes and its log is readable through
    // the API function.
    let c = sim.wait_for(&task, Duration::from_secs(120), |c| c.ended());
    assert_eq!(c.exit_code, Some(0), "{c:?}");
    let run = d.cli.json(&["flow-run", "inspect", &id]);
    assert_eq!(run["state"], "completed", "{run}");
    let logs = d.cli.ok(&["flow-run", "logs", &id]);
    assert!(
        logs.contains("hello from a lambda-registered flow"),
        "{logs}"
    );
}
