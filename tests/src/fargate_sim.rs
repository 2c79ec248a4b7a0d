//! A Fargate simulator for the end-to-end tests. moto accepts ECS `RunTask` but runs nothing;
//! [`FargateSim`] watches the tasks moto holds for one cluster and runs each as a real container
//! of the agent image (podman, host networking, so it reaches DynamoDB Local and moto on
//! 127.0.0.1), the way Fargate would:
//!
//! - a new task (desiredStatus RUNNING) → `podman run -d` of its task definition's image with the
//!   task definition's entryPoint, its command (or the override's), and the environment of the
//!   task definition + the override + this process's `AWS_*`/`FERRY_*` endpoint variables;
//! - `StopTask` → the container gets SIGTERM, then SIGKILL after the container's `stopTimeout`
//!   (ECS semantics; [`SimOptions::stop_grace`] when the task definition sets none);
//! - a container that exits on its own → its exit code and logs are recorded, it is removed, and
//!   the task is stopped in moto with ECS's reason ("Essential container in task exited") unless
//!   something stopped it already;
//! - an image that is neither local nor replaced by [`SimOptions::image`] → the task is stopped
//!   with a `CannotPullContainerError` reason, like an image pull failure.
//!
//! # moto's task states (moto 5.2.5, `moto/ecs/models.py`, `moto/moto_api/__init__.py`)
//!
//! A task starts with lastStatus RUNNING (moto skips PROVISIONING/PENDING). Its state is a
//! `ManagedState` with model name `ecs::task` and default transition
//! `{"progression": "manual", "times": 1}`: every `DescribeTasks` that names it moves it one
//! step, RUNNING → DEACTIVATING → STOPPING → DEPROVISIONING → STOPPED, while its desiredStatus
//! stays RUNNING and stoppedReason stays "" — so anyone polling DescribeTasks (the launcher, this
//! simulator) would see a task "stop" by itself after four calls. [`freeze_moto_task_states`]
//! sets the transition to `manual` with 10⁹ calls per step, so a task stays RUNNING until
//! `StopTask`, which sets lastStatus and desiredStatus to STOPPED and stoppedReason to the given
//! reason (overwritten by a later StopTask; absent when none is given). The transition is global
//! to the moto server and survives `POST /moto-api/reset`. moto never sets `stopCode`,
//! `startedAt` or `stoppedAt`, and reports every container with lastStatus PENDING and exitCode 0
//! whatever happened: the real exit code is in [`SimContainer::exit_code`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, Compatibility, ContainerDefinition, ContainerOverride,
    DesiredStatus, KeyValuePair, LaunchType, NetworkConfiguration, NetworkMode, TaskOverride,
};
use tokio::sync::watch;

/// The command that makes podman and the agent image available.
pub const IMAGE_FIX: &str = "scripts/agent-image.sh install && scripts/agent-image.sh build";
/// The tag `scripts/agent-image.sh build` gives the agent image.
pub const DEFAULT_IMAGE: &str = "ferry-agent:dev";
/// The container name of the task definitions [`MotoEcs`] registers.
pub const CONTAINER_NAME: &str = "ferry";
/// The stoppedReason ECS gives a task whose essential container exited.
pub const ESSENTIAL_EXITED: &str = "Essential container in task exited";
/// Label put on every container a simulator starts (value: the simulator's id).
pub const SIM_LABEL: &str = "ferry.fargate-sim";

/// Variables of this process that only make sense on the host: never passed into a container.
const HOST_ONLY_VARS: &[&str] = &[
    "FERRY_BIN",
    "FERRY_HOME",
    "FERRY_PYTHON",
    "FERRY_EMULATORS_DIR",
    "FERRY_IMAGE_DIR",
    "FERRY_IMAGE_TAG",
    "FERRY_IMAGE_BASE",
    "FERRY_IMAGE_STRIP",
    "FERRY_DEBIAN_MIRROR",
];
/// How much of a container's output is kept.
const LOG_LIMIT: usize = 64 * 1024;

// ---------------------------------------------------------------------------------------------
// podman

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The containers.conf `scripts/agent-image.sh install` writes: `$CONTAINERS_CONF` when set,
/// else `$FERRY_IMAGE_DIR/containers.conf`, else `<repo>/.agent-image/containers.conf`.
pub fn containers_conf() -> PathBuf {
    if let Some(p) = std::env::var_os("CONTAINERS_CONF") {
        return PathBuf::from(p);
    }
    std::env::var_os("FERRY_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".agent-image"))
        .join("containers.conf")
}

/// `podman --runtime runc` with the script's containers.conf (crun cannot set rlimits here).
pub fn podman() -> Command {
    let mut cmd = Command::new("podman");
    cmd.env("CONTAINERS_CONF", containers_conf())
        .args(["--runtime", "runc"]);
    cmd
}

fn podman_async() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("podman");
    cmd.env("CONTAINERS_CONF", containers_conf())
        .args(["--runtime", "runc"]);
    cmd
}

/// Runs `podman ARGS`; `Ok(stdout)` on success, `Err(what failed)` otherwise.
pub fn podman_output(args: &[&str]) -> Result<String, String> {
    let out = podman()
        .args(args)
        .output()
        .map_err(|e| format!("cannot run podman {args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "podman {args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Panics (failing the test) unless podman runs here and `image` is built, naming the fix.
#[track_caller]
pub fn require_agent_image(image: &str) {
    let conf = containers_conf();
    assert!(
        conf.is_file(),
        "{} is missing: the agent image tests need podman and the image; run `{IMAGE_FIX}`",
        conf.display()
    );
    if let Err(e) = podman_output(&["image", "exists", image]) {
        panic!("the agent image {image} is not available ({e}); run `{IMAGE_FIX}`");
    }
}

/// Whether a container with this id exists (running or not).
pub fn container_exists(id: &str) -> bool {
    podman()
        .args(["container", "exists", id])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Ids of the containers (running or not) carrying `label` (`key=value`).
pub fn containers_with_label(label: &str) -> Vec<String> {
    let filter = format!("label={label}");
    podman_output(&["ps", "-a", "-q", "--no-trunc", "--filter", &filter])
        .unwrap_or_else(|e| panic!("{e}"))
        .lines()
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// moto

fn moto_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is not set: eval \"$(scripts/emulators.sh env)\"")
        .trim_end_matches('/')
        .to_owned()
}

fn region() -> String {
    std::env::var("AWS_REGION").unwrap_or_else(|_| "us-east-1".into())
}

/// Makes moto's ECS tasks keep their lastStatus until `StopTask` (see the module docs): by
/// default every DescribeTasks moves a task one step towards STOPPED. Global to the moto server
/// and idempotent; never undone, since other tests may be using it at the same time.
pub fn freeze_moto_task_states() {
    let url = format!("{}/moto-api/state-manager/set-transition", moto_endpoint());
    let body = serde_json::json!({
        "model_name": "ecs::task",
        "transition": {"progression": "manual", "times": 1_000_000_000u64},
    });
    let resp = ureq::post(&url)
        .send_json(&body)
        .unwrap_or_else(|e| panic!("POST {url} (freezing moto's ECS task states) failed: {e}"));
    assert!(
        resp.status().is_success(),
        "POST {url} answered {}",
        resp.status()
    );
}

/// One EC2 query-API call to moto (the tests crate has no EC2 SDK); returns the XML body.
fn moto_ec2(params: &[(&str, &str)]) -> String {
    let url = format!("{}/", moto_endpoint());
    let mut body = String::from("Version=2016-11-15");
    for (k, v) in params {
        body.push_str(&format!("&{k}={v}"));
    }
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential=test/20260101/{}/ec2/aws4_request, SignedHeaders=host, Signature=0",
        region()
    );
    let mut resp = ureq::post(&url)
        .header("Authorization", &auth)
        .content_type("application/x-www-form-urlencoded")
        .send(&body)
        .unwrap_or_else(|e| panic!("EC2 {params:?} on moto ({url}) failed: {e}"));
    resp.body_mut()
        .read_to_string()
        .unwrap_or_else(|e| panic!("reading moto's EC2 answer to {params:?}: {e}"))
}

fn first_xml_value(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find('<')? + start;
    Some(xml[start..end].to_owned())
}

/// Runs `fut` to completion on a fresh runtime in its own thread, so the sync helpers below
/// work in plain `#[test]`s and inside `#[tokio::test]`s alike.
fn on_own_runtime<T: Send>(fut: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building a tokio runtime")
                .block_on(fut)
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

async fn ecs_client() -> aws_sdk_ecs::Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    aws_sdk_ecs::Client::new(&conf)
}

/// A task definition for [`MotoEcs::register`]: FARGATE, awsvpc, one container `ferry`.
#[derive(Clone, Debug)]
pub struct TaskDefSpec {
    /// Family name.
    pub family: String,
    /// The container's image.
    pub image: String,
    /// The container's entryPoint (the image's, `ferry`, when `None`).
    pub entry_point: Option<Vec<String>>,
    /// The container's command (the image's CMD when `None`).
    pub command: Option<Vec<String>>,
    /// Seconds between SIGTERM and SIGKILL when the task is stopped.
    pub stop_timeout: Option<i32>,
    /// The container's environment.
    pub environment: Vec<(String, String)>,
}

impl TaskDefSpec {
    /// A task definition running `image` with its own entrypoint and command.
    pub fn new(family: &str, image: &str) -> Self {
        Self {
            family: family.to_owned(),
            image: image.to_owned(),
            entry_point: None,
            command: None,
            stop_timeout: None,
            environment: Vec::new(),
        }
    }
}

/// What DescribeTasks says about a task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskView {
    /// lastStatus.
    pub last_status: Option<String>,
    /// desiredStatus.
    pub desired_status: Option<String>,
    /// stoppedReason.
    pub stopped_reason: Option<String>,
    /// stopCode (moto never sets it).
    pub stop_code: Option<String>,
    /// containers[].exitCode (moto always says 0).
    pub exit_codes: Vec<Option<i32>>,
}

/// An ECS cluster and task definition in moto, with the network a RunTask needs.
#[derive(Clone, Debug)]
pub struct MotoEcs {
    /// Cluster name.
    pub cluster: String,
    /// The task definition registered by [`MotoEcs::prepare`] (`family:revision` ARN).
    pub task_definition_arn: String,
    /// A default-VPC subnet moto's EC2 knows (moto rejects RunTask with an unknown subnet).
    pub subnet_id: String,
    /// The default VPC's default security group.
    pub security_group_id: String,
}

impl MotoEcs {
    /// Freezes moto's task states ([`freeze_moto_task_states`]), creates `cluster`, registers
    /// `family` (FARGATE, awsvpc, container `ferry` running `image` with memory set) and finds a
    /// default-VPC subnet and security group.
    pub fn prepare(cluster: &str, family: &str, image: &str) -> Self {
        freeze_moto_task_states();
        let subnets = moto_ec2(&[
            ("Action", "DescribeSubnets"),
            ("Filter.1.Name", "default-for-az"),
            ("Filter.1.Value.1", "true"),
        ]);
        let subnet_id = first_xml_value(&subnets, "subnetId")
            .unwrap_or_else(|| panic!("moto has no default-VPC subnet: {subnets}"));
        let groups = moto_ec2(&[
            ("Action", "DescribeSecurityGroups"),
            ("Filter.1.Name", "group-name"),
            ("Filter.1.Value.1", "default"),
        ]);
        let security_group_id = first_xml_value(&groups, "groupId")
            .unwrap_or_else(|| panic!("moto has no default security group: {groups}"));
        let name = cluster.to_owned();
        on_own_runtime(async move {
            ecs_client()
                .await
                .create_cluster()
                .cluster_name(&name)
                .send()
                .await
                .unwrap_or_else(|e| panic!("CreateCluster {name}: {e:?}"));
        });
        let mut me = Self {
            cluster: cluster.to_owned(),
            task_definition_arn: String::new(),
            subnet_id,
            security_group_id,
        };
        me.task_definition_arn = me.register(&TaskDefSpec::new(family, image));
        me
    }

    /// Registers a task definition; returns its ARN.
    pub fn register(&self, spec: &TaskDefSpec) -> String {
        let spec = spec.clone();
        on_own_runtime(async move {
            let mut container = ContainerDefinition::builder()
                .name(CONTAINER_NAME)
                .image(&spec.image)
                .essential(true)
                // moto answers 500 to RunTask unless every container has its own memory.
                .memory(512)
                .set_entry_point(spec.entry_point.clone())
                .set_command(spec.command.clone())
                .set_stop_timeout(spec.stop_timeout);
            for (k, v) in &spec.environment {
                container = container.environment(KeyValuePair::builder().name(k).value(v).build());
            }
            let out = ecs_client()
                .await
                .register_task_definition()
                .family(&spec.family)
                .network_mode(NetworkMode::Awsvpc)
                .requires_compatibilities(Compatibility::Fargate)
                .cpu("256")
                .memory("512")
                .container_definitions(container.build())
                .send()
                .await
                .unwrap_or_else(|e| panic!("RegisterTaskDefinition {}: {e:?}", spec.family));
            out.task_definition()
                .and_then(|t| t.task_definition_arn())
                .expect("RegisterTaskDefinition returned no ARN")
                .to_owned()
        })
    }

    /// RunTask of `task_definition` (FARGATE, this subnet and group) with a container override
    /// (`command` when non-empty, `env`); returns the task ARN.
    pub fn run_task(
        &self,
        task_definition: &str,
        command: &[&str],
        env: &[(&str, &str)],
    ) -> String {
        let mut ov = ContainerOverride::builder().name(CONTAINER_NAME);
        if !command.is_empty() {
            ov = ov.set_command(Some(command.iter().map(|s| s.to_string()).collect()));
        }
        for (k, v) in env {
            ov = ov.environment(KeyValuePair::builder().name(*k).value(*v).build());
        }
        let overrides = TaskOverride::builder()
            .container_overrides(ov.build())
            .build();
        let network = NetworkConfiguration::builder()
            .awsvpc_configuration(
                AwsVpcConfiguration::builder()
                    .subnets(&self.subnet_id)
                    .security_groups(&self.security_group_id)
                    .assign_public_ip(AssignPublicIp::Disabled)
                    .build()
                    .expect("awsvpc configuration has its subnets"),
            )
            .build();
        let (cluster, td) = (self.cluster.clone(), task_definition.to_owned());
        on_own_runtime(async move {
            let out = ecs_client()
                .await
                .run_task()
                .cluster(&cluster)
                .task_definition(&td)
                .launch_type(LaunchType::Fargate)
                .network_configuration(network)
                .overrides(overrides)
                .send()
                .await
                .unwrap_or_else(|e| panic!("RunTask {td} on {cluster}: {e:?}"));
            assert!(
                out.failures().is_empty(),
                "RunTask failures: {:?}",
                out.failures()
            );
            out.tasks()
                .first()
                .and_then(|t| t.task_arn())
                .expect("RunTask returned no task")
                .to_owned()
        })
    }

    /// DescribeTasks of one task (panics when moto does not know it).
    pub fn describe(&self, task_arn: &str) -> TaskView {
        let (cluster, arn) = (self.cluster.clone(), task_arn.to_owned());
        on_own_runtime(async move {
            let out = ecs_client()
                .await
                .describe_tasks()
                .cluster(&cluster)
                .tasks(&arn)
                .send()
                .await
                .unwrap_or_else(|e| panic!("DescribeTasks {arn}: {e:?}"));
            let t = out
                .tasks()
                .first()
                .unwrap_or_else(|| panic!("moto does not know task {arn}"));
            TaskView {
                last_status: t.last_status().map(str::to_owned),
                desired_status: t.desired_status().map(str::to_owned),
                stopped_reason: t.stopped_reason().map(str::to_owned),
                stop_code: t.stop_code().map(|c| c.as_str().to_owned()),
                exit_codes: t.containers().iter().map(|c| c.exit_code()).collect(),
            }
        })
    }

    /// StopTask with `reason`.
    pub fn stop_task(&self, task_arn: &str, reason: &str) {
        let (cluster, arn, reason) = (self.cluster.clone(), task_arn.to_owned(), reason.to_owned());
        on_own_runtime(async move {
            ecs_client()
                .await
                .stop_task()
                .cluster(&cluster)
                .task(&arn)
                .reason(&reason)
                .send()
                .await
                .unwrap_or_else(|e| panic!("StopTask {arn}: {e:?}"));
        });
    }

    /// Polls DescribeTasks until `done` holds (panics after `timeout`, with the last view).
    pub fn wait_task(
        &self,
        task_arn: &str,
        timeout: Duration,
        done: impl Fn(&TaskView) -> bool,
    ) -> TaskView {
        let start = Instant::now();
        loop {
            let view = self.describe(task_arn);
            if done(&view) {
                return view;
            }
            assert!(
                start.elapsed() < timeout,
                "task {task_arn} not as expected within {timeout:?}: {view:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// the simulator

/// How a [`FargateSim`] runs tasks.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The ECS cluster (name or ARN) whose tasks are run.
    pub cluster: String,
    /// Runs this local image for a task definition image podman does not have (as if it were
    /// pulled from ECR); `None`: such a task stops with a `CannotPullContainerError` reason.
    pub image: Option<String>,
    /// Extra environment for every container (before the task definition's and the override's).
    pub env: Vec<(String, String)>,
    /// How often moto and podman are polled.
    pub poll_interval: Duration,
    /// SIGTERM → SIGKILL grace on StopTask when the task definition sets no `stopTimeout`
    /// (ECS's default is 30 s; short here so tests stay fast).
    pub stop_grace: Duration,
}

impl SimOptions {
    /// Runs the tasks of `cluster`, replacing images podman lacks by [`DEFAULT_IMAGE`].
    pub fn new(cluster: &str) -> Self {
        Self {
            cluster: cluster.to_owned(),
            image: Some(DEFAULT_IMAGE.to_owned()),
            env: Vec::new(),
            poll_interval: Duration::from_millis(200),
            stop_grace: Duration::from_secs(2),
        }
    }
}

/// What the simulator did with one task.
#[derive(Clone, Debug, Default)]
pub struct SimContainer {
    /// The task's ARN.
    pub task_arn: String,
    /// The image the container runs (after [`SimOptions::image`] replacement).
    pub image: String,
    /// Arguments after the entrypoint.
    pub args: Vec<String>,
    /// The task definition's stopTimeout (SIGTERM → SIGKILL on StopTask), if it sets one.
    pub stop_timeout: Option<Duration>,
    /// The podman container id, once `podman run` returned it.
    pub container_id: Option<String>,
    /// The container's exit code, once it ended.
    pub exit_code: Option<i32>,
    /// Whether the container was removed (it is, once it ended).
    pub removed: bool,
    /// Whether moto stopped the task (StopTask by someone) while the container ran.
    pub stopped_by_ecs: bool,
    /// The stoppedReason the simulator gave moto (exit, pull or start failure), if it did.
    pub sim_stop_reason: Option<String>,
    /// The container's output (stdout then stderr, the last 64 KiB of each).
    pub logs: String,
    /// Why the container could not run, if it could not.
    pub error: Option<String>,
}

impl SimContainer {
    /// Whether the container ran and ended.
    pub fn ended(&self) -> bool {
        self.exit_code.is_some()
    }
}

#[derive(Default)]
struct Shared {
    tasks: Mutex<BTreeMap<String, SimContainer>>,
    /// Every container id ever started, so Drop can remove what is left.
    started: Mutex<Vec<String>>,
    errors: Mutex<Vec<String>>,
}

impl Shared {
    fn update(&self, arn: &str, f: impl FnOnce(&mut SimContainer)) {
        let mut tasks = self.tasks.lock().unwrap();
        f(tasks.entry(arn.to_owned()).or_default());
    }
    fn get(&self, arn: &str) -> Option<SimContainer> {
        self.tasks.lock().unwrap().get(arn).cloned()
    }
    fn error(&self, e: String) {
        eprintln!("fargate-sim: {e}");
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 100 {
            errors.push(e);
        }
    }
}

/// Runs moto's ECS tasks of one cluster as real containers (see the module docs). Removes
/// every container it started when dropped.
pub struct FargateSim {
    id: String,
    shared: Arc<Shared>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl FargateSim {
    /// Starts the simulator on its own thread (works from sync and async tests). Freezes moto's
    /// task states, checks podman and [`SimOptions::image`], and waits for a first successful
    /// ListTasks of the cluster (panics otherwise).
    pub fn start(opts: SimOptions) -> Self {
        if let Some(image) = &opts.image {
            require_agent_image(image);
        } else {
            require_agent_image(DEFAULT_IMAGE);
        }
        freeze_moto_task_states();
        let id = format!(
            "sim-{}-{:x}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let shared = Arc::new(Shared::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let ctx = Ctx {
            id: id.clone(),
            opts,
            shared: shared.clone(),
            task_defs: Arc::new(tokio::sync::Mutex::new(HashMap::new())),
            ecs: None,
        };
        let thread = std::thread::Builder::new()
            .name(format!("fargate-{id}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("building the simulator's tokio runtime");
                rt.block_on(run_loop(ctx, stop_rx, ready_tx));
            })
            .expect("spawning the simulator thread");
        let sim = Self {
            id,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        };
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => sim,
            Ok(Err(e)) => panic!("the Fargate simulator cannot list the cluster's tasks: {e}"),
            Err(e) => panic!("the Fargate simulator did not start within 30 s: {e}"),
        }
    }

    /// The label value on this simulator's containers (`ferry.fargate-sim=<id>`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Every task the simulator has seen, by task ARN.
    pub fn containers(&self) -> BTreeMap<String, SimContainer> {
        self.shared.tasks.lock().unwrap().clone()
    }

    /// What the simulator did with one task, if it saw it.
    pub fn container(&self, task_arn: &str) -> Option<SimContainer> {
        self.shared.get(task_arn)
    }

    /// Errors the simulator met (ECS or podman calls that failed), oldest first.
    pub fn errors(&self) -> Vec<String> {
        self.shared.errors.lock().unwrap().clone()
    }

    /// Polls [`FargateSim::container`] until `done` holds; panics after `timeout` with the
    /// simulator's state and errors.
    pub fn wait_for(
        &self,
        task_arn: &str,
        timeout: Duration,
        done: impl Fn(&SimContainer) -> bool,
    ) -> SimContainer {
        let start = Instant::now();
        loop {
            if let Some(c) = self.container(task_arn) {
                if done(&c) {
                    return c;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "task {task_arn} not as expected within {timeout:?}: {:?}\nsimulator errors: {:?}",
                self.container(task_arn),
                self.errors()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the task's container with SIGKILL (a container dying mid-run); the simulator then
    /// records exit code 137 and stops the task in moto with [`ESSENTIAL_EXITED`].
    pub fn kill(&self, task_arn: &str) {
        let c = self
            .container(task_arn)
            .unwrap_or_else(|| panic!("the simulator has not seen task {task_arn}"));
        let id = c
            .container_id
            .unwrap_or_else(|| panic!("task {task_arn} has no container (yet): {:?}", c.error));
        if let Err(e) = podman_output(&["kill", "--signal", "KILL", &id]) {
            panic!("killing the container of {task_arn}: {e}");
        }
    }

    /// Stops the simulator and removes every container it started.
    pub fn shutdown(self) {}
}

impl Drop for FargateSim {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            // The loop may have ended already (then nobody listens): nothing to tell it.
            stop.send_replace(true);
        }
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                eprintln!("fargate-sim {}: the simulator thread panicked", self.id);
            }
        }
        // By id: every container this simulator started and has not removed yet...
        let left: Vec<String> = {
            let tasks = self.shared.tasks.lock().unwrap();
            let removed: Vec<&String> = tasks
                .values()
                .filter(|c| c.removed)
                .filter_map(|c| c.container_id.as_ref())
                .collect();
            self.shared
                .started
                .lock()
                .unwrap()
                .iter()
                .filter(|id| !removed.contains(id))
                .cloned()
                .collect()
        };
        for id in &left {
            if let Err(e) = podman_output(&["rm", "--force", "--ignore", "--time", "0", id]) {
                eprintln!("fargate-sim {}: {e}", self.id);
            }
        }
        // ...and any whose `podman run` was cut short by the shutdown (its id never returned).
        let label = format!("{SIM_LABEL}={}", self.id);
        for id in containers_with_label(&label) {
            if let Err(e) = podman_output(&["rm", "--force", "--ignore", "--time", "0", &id]) {
                eprintln!("fargate-sim {}: {e}", self.id);
            }
        }
    }
}

#[derive(Clone)]
struct Ctx {
    id: String,
    opts: SimOptions,
    shared: Arc<Shared>,
    /// Container definition by task definition ARN.
    task_defs: Arc<tokio::sync::Mutex<HashMap<String, ContainerDefinition>>>,
    ecs: Option<aws_sdk_ecs::Client>,
}

impl Ctx {
    fn ecs(&self) -> &aws_sdk_ecs::Client {
        self.ecs.as_ref().expect("the ECS client is built first")
    }
}

async fn run_loop(
    mut ctx: Ctx,
    mut stop: watch::Receiver<bool>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    ctx.ecs = Some(ecs_client().await);
    let mut ready = Some(ready);
    loop {
        let result = step(&ctx).await;
        if let Some(tx) = ready.take() {
            let failed = result.is_err();
            // start() waits for this; if it gave up, nobody listens and that is fine.
            tx.send(result.clone()).ok();
            if failed {
                return;
            }
        } else if let Err(e) = result {
            ctx.shared.error(e);
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = tokio::time::sleep(ctx.opts.poll_interval) => {}
        }
    }
}

/// One round: start new tasks, stop containers of stopped tasks, reap exited containers.
async fn step(ctx: &Ctx) -> Result<(), String> {
    let running = list_running(ctx).await?;
    let new: Vec<String> = {
        let tasks = ctx.shared.tasks.lock().unwrap();
        running
            .iter()
            .filter(|arn| !tasks.contains_key(*arn))
            .cloned()
            .collect()
    };
    for chunk in new.chunks(100) {
        let out = ctx
            .ecs()
            .describe_tasks()
            .cluster(&ctx.opts.cluster)
            .set_tasks(Some(chunk.to_vec()))
            .send()
            .await
            .map_err(|e| format!("DescribeTasks on {}: {e:?}", ctx.opts.cluster))?;
        for task in out.tasks() {
            let Some(arn) = task.task_arn() else { continue };
            ctx.shared.update(arn, |c| c.task_arn = arn.to_owned());
            let ctx2 = ctx.clone();
            let task = task.clone();
            tokio::spawn(async move { start_container(ctx2, task).await });
        }
    }

    // Tasks moto no longer runs (StopTask) whose container still does: stop it, ECS-style.
    let to_stop: Vec<(String, String)> = {
        let mut tasks = ctx.shared.tasks.lock().unwrap();
        let mut out = Vec::new();
        for (arn, c) in tasks.iter_mut() {
            if running.contains(arn) || c.stopped_by_ecs || c.ended() || c.error.is_some() {
                continue;
            }
            if c.sim_stop_reason.is_some() {
                continue;
            }
            c.stopped_by_ecs = true;
            if let Some(id) = &c.container_id {
                out.push((arn.clone(), id.clone()));
            }
        }
        out
    };
    for (arn, id) in to_stop {
        let ctx2 = ctx.clone();
        tokio::spawn(async move { stop_container(ctx2, arn, id).await });
    }

    reap_exited(ctx, &running).await
}

async fn list_running(ctx: &Ctx) -> Result<Vec<String>, String> {
    let mut arns = Vec::new();
    let mut token = None;
    loop {
        let out = ctx
            .ecs()
            .list_tasks()
            .cluster(&ctx.opts.cluster)
            .desired_status(DesiredStatus::Running)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| format!("ListTasks on {}: {e:?}", ctx.opts.cluster))?;
        arns.extend(out.task_arns().iter().cloned());
        token = out.next_token().map(str::to_owned);
        if token.is_none() {
            return Ok(arns);
        }
    }
}

async fn container_definition(ctx: &Ctx, task_def: &str) -> Result<ContainerDefinition, String> {
    let mut cache = ctx.task_defs.lock().await;
    if let Some(c) = cache.get(task_def) {
        return Ok(c.clone());
    }
    let out = ctx
        .ecs()
        .describe_task_definition()
        .task_definition(task_def)
        .send()
        .await
        .map_err(|e| format!("DescribeTaskDefinition {task_def}: {e:?}"))?;
    let def = out
        .task_definition()
        .and_then(|t| t.container_definitions().first())
        .cloned()
        .ok_or_else(|| format!("task definition {task_def} has no container"))?;
    cache.insert(task_def.to_owned(), def.clone());
    Ok(def)
}

async fn podman_ok(args: &[String]) -> Result<String, String> {
    let out = podman_async()
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run podman {args:?}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "podman {} failed ({}): {}",
            args.first().map(String::as_str).unwrap_or(""),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `AWS_*` and `FERRY_*` variables of this process, minus the host-only ones.
fn endpoint_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("AWS_") || k.starts_with("FERRY_"))
        .filter(|(k, _)| !HOST_ONLY_VARS.contains(&k.as_str()))
        .collect()
}

async fn start_container(ctx: Ctx, task: aws_sdk_ecs::types::Task) {
    let arn = task.task_arn().unwrap_or_default().to_owned();
    let Some(task_def) = task.task_definition_arn() else {
        ctx.shared
            .error(format!("task {arn} has no task definition"));
        return;
    };
    let def = match container_definition(&ctx, task_def).await {
        Ok(d) => d,
        Err(e) => {
            ctx.shared.error(e.clone());
            fail_task(&ctx, &arn, e, "CannotStartContainerError").await;
            return;
        }
    };
    let name = def.name().unwrap_or(CONTAINER_NAME);
    let ov = task.overrides().and_then(|o| {
        o.container_overrides()
            .iter()
            .find(|c| c.name() == Some(name))
            .or_else(|| o.container_overrides().first())
    });

    let wanted = def.image().unwrap_or_default().to_owned();
    let local = podman_ok(&["image".into(), "exists".into(), wanted.clone()])
        .await
        .is_ok();
    let image = match (&ctx.opts.image, local) {
        (_, true) => wanted.clone(),
        (Some(stand_in), false) => stand_in.clone(),
        (None, false) => {
            let why = format!(
                "pull image manifest has been retried 1 time(s): failed to resolve ref {wanted}: not found"
            );
            fail_task(&ctx, &arn, why, "CannotPullContainerError").await;
            return;
        }
    };
    let args: Vec<String> = match ov.map(|o| o.command()).filter(|c| !c.is_empty()) {
        Some(cmd) => cmd.to_vec(),
        None => def.command().to_vec(),
    };
    ctx.shared.update(&arn, |c| {
        c.image = image.clone();
        c.args = args.clone();
        c.stop_timeout = def
            .stop_timeout()
            .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)));
    });

    let mut run: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--network".into(),
        "host".into(),
        "--label".into(),
        format!("{SIM_LABEL}={}", ctx.id),
        "--label".into(),
        format!("ferry.task-arn={arn}"),
    ];
    if !def.entry_point().is_empty() {
        run.push("--entrypoint".into());
        run.push(serde_json::to_string(def.entry_point()).expect("strings serialize"));
    }
    let env = endpoint_env()
        .into_iter()
        .chain(ctx.opts.env.iter().cloned())
        .chain(kv(def.environment()))
        .chain(ov.map(|o| kv(o.environment())).unwrap_or_default());
    for (k, v) in env {
        run.push("-e".into());
        run.push(format!("{k}={v}"));
    }
    run.push(image);
    run.extend(args);

    match podman_ok(&run).await {
        Ok(id) => {
            ctx.shared.started.lock().unwrap().push(id.clone());
            let stop_now = {
                let mut tasks = ctx.shared.tasks.lock().unwrap();
                let c = tasks.entry(arn.clone()).or_default();
                c.container_id = Some(id.clone());
                c.stopped_by_ecs
            };
            // StopTask came while podman was starting it.
            if stop_now {
                stop_container(ctx, arn, id).await;
            }
        }
        Err(e) => fail_task(&ctx, &arn, e, "CannotStartContainerError").await,
    }
}

fn kv(pairs: &[KeyValuePair]) -> Vec<(String, String)> {
    pairs
        .iter()
        .filter_map(|p| {
            Some((
                p.name()?.to_owned(),
                p.value().unwrap_or_default().to_owned(),
            ))
        })
        .collect()
}

/// The task could not run: record why and stop it in moto the way ECS reports it.
async fn fail_task(ctx: &Ctx, arn: &str, why: String, kind: &str) {
    let reason = format!("{kind}: {why}");
    ctx.shared.update(arn, |c| {
        c.error = Some(reason.clone());
        c.sim_stop_reason = Some(reason.clone());
    });
    stop_in_moto(ctx, arn, &reason).await;
}

/// StopTask, unless the task is already stopped (a second StopTask would replace its reason).
async fn stop_in_moto(ctx: &Ctx, arn: &str, reason: &str) {
    let described = ctx
        .ecs()
        .describe_tasks()
        .cluster(&ctx.opts.cluster)
        .tasks(arn)
        .send()
        .await;
    match described {
        Ok(out) => {
            let stopped = out
                .tasks()
                .first()
                .is_some_and(|t| t.desired_status() == Some("STOPPED"));
            if stopped {
                return;
            }
        }
        Err(e) => ctx.shared.error(format!("DescribeTasks {arn}: {e:?}")),
    }
    if let Err(e) = ctx
        .ecs()
        .stop_task()
        .cluster(&ctx.opts.cluster)
        .task(arn)
        .reason(reason)
        .send()
        .await
    {
        ctx.shared.error(format!("StopTask {arn}: {e:?}"));
    }
}

/// SIGTERM, then SIGKILL after the task definition's stopTimeout (or [`SimOptions::stop_grace`]).
async fn stop_container(ctx: Ctx, arn: String, id: String) {
    let grace = ctx
        .shared
        .get(&arn)
        .and_then(|c| c.stop_timeout)
        .unwrap_or(ctx.opts.stop_grace);
    let args = vec![
        "stop".into(),
        "--time".into(),
        grace.as_secs().to_string(),
        id.clone(),
    ];
    if let Err(e) = podman_ok(&args).await {
        ctx.shared.error(format!("stopping {id} of {arn}: {e}"));
    }
}

/// Records the exit code and logs of every ended container, removes it, and stops its task in
/// moto when moto still runs it.
async fn reap_exited(ctx: &Ctx, running: &[String]) -> Result<(), String> {
    let live = {
        let tasks = ctx.shared.tasks.lock().unwrap();
        tasks
            .values()
            .any(|c| c.container_id.is_some() && !c.removed)
    };
    if !live {
        return Ok(());
    }
    let filter = format!("label={SIM_LABEL}={}", ctx.id);
    let out = podman_ok(&[
        "ps".into(),
        "-a".into(),
        "--no-trunc".into(),
        "--filter".into(),
        filter,
        "--format".into(),
        "json".into(),
    ])
    .await?;
    let entries: Vec<serde_json::Value> =
        serde_json::from_str(&out).map_err(|e| format!("podman ps JSON ({e}): {out}"))?;
    for e in entries {
        let state = e["State"].as_str().unwrap_or_default();
        if state != "exited" && state != "stopped" {
            continue;
        }
        let (Some(id), Some(arn)) = (e["Id"].as_str(), e["Labels"]["ferry.task-arn"].as_str())
        else {
            continue;
        };
        let code = e["ExitCode"]
            .as_i64()
            .ok_or_else(|| format!("podman ps gave container {id} no ExitCode: {e}"))?;
        let (id, arn) = (id.to_owned(), arn.to_owned());
        let logs = container_logs(&id).await;
        if let Err(err) = podman_ok(&["rm".into(), "--ignore".into(), id.clone()]).await {
            ctx.shared.error(format!("removing {id}: {err}"));
        }
        let by_ecs = {
            let mut tasks = ctx.shared.tasks.lock().unwrap();
            let c = tasks.entry(arn.clone()).or_default();
            c.exit_code = Some(i32::try_from(code).unwrap_or(i32::MAX));
            c.logs = logs;
            c.removed = true;
            c.stopped_by_ecs
        };
        if !by_ecs && running.contains(&arn) {
            ctx.shared
                .update(&arn, |c| c.sim_stop_reason = Some(ESSENTIAL_EXITED.into()));
            stop_in_moto(ctx, &arn, ESSENTIAL_EXITED).await;
        }
    }
    Ok(())
}

async fn container_logs(id: &str) -> String {
    match podman_async().args(["logs", id]).output().await {
        Ok(out) => {
            let tail = |b: &[u8]| {
                let s = String::from_utf8_lossy(b);
                let cut = s.len().saturating_sub(LOG_LIMIT);
                let cut = (cut..=s.len())
                    .find(|i| s.is_char_boundary(*i))
                    .unwrap_or(0);
                s[cut..].to_owned()
            };
            format!("{}{}", tail(&out.stdout), tail(&out.stderr))
        }
        Err(e) => format!("(podman logs {id} failed: {e})"),
    }
}
