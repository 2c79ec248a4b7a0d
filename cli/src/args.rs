use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Ferry: register flows, schedule them, run them anywhere.
#[derive(Debug, Parser)]
#[command(name = "ferry", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane (API + tick) on this machine, state in FERRY_HOME.
    #[command(subcommand)]
    Server(ServerCmd),
    /// Work queues: where runs wait for agents.
    #[command(subcommand, name = "work-queue")]
    WorkQueue(QueueCmd),
    /// Deployments: build, apply, list, run.
    #[command(subcommand)]
    Deployment(DeploymentCmd),
    /// Infrastructure profiles: where launched deployments run a task per flow run.
    #[command(subcommand)]
    Infra(InfraCmd),
    /// Flow runs: list, inspect, cancel.
    #[command(subcommand, name = "flow-run")]
    FlowRun(FlowRunCmd),
    /// Schedules: preview fire times locally.
    #[command(subcommand)]
    Schedule(ScheduleCmd),
    /// Agents: claim and run flow runs.
    #[command(subcommand)]
    Agent(AgentCmd),
    /// Everything on this machine in one process: API, tick and an agent (Ctrl-C stops all).
    Dev(DevArgs),
    /// AWS helpers.
    #[command(subcommand)]
    Aws(AwsCmd),
    /// The dashboard on localhost for an API that needs credentials (the IAM-protected API of
    /// the AWS backend, a token-protected server): a proxy that forwards every request to
    /// FERRY_API_URL signed with SigV4 (FERRY_API_AUTH=iam) or with FERRY_API_TOKEN.
    Ui(UiArgs),
    /// Secrets of the embedded store (FERRY_HOME/secrets), referenced in a deployment's env as
    /// secret:NAME (on AWS use ssm:/path or secretsmanager:NAME[#key]).
    #[command(subcommand)]
    Secret(SecretCmd),
}

#[derive(Debug, Subcommand)]
pub enum SecretCmd {
    /// Store secret NAME (replacing it): the value is read from stdin (one trailing newline
    /// dropped), or typed at a prompt that does not echo it; never from the command line.
    Set {
        /// Letters, digits, '_', '-', '.'.
        name: String,
    },
    /// List the secrets' names (never their values).
    Ls {
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Remove secret NAME.
    Rm { name: String },
}

#[derive(Debug, Args)]
pub struct UiArgs {
    /// Port to serve the dashboard on (0 = any free port; the chosen one is printed).
    #[arg(long, default_value_t = 4400)]
    pub port: u16,
    /// Loopback address to bind (127.0.0.1 or ::1; any other is refused).
    #[arg(long, default_value = "127.0.0.1")]
    pub bind: String,
}

#[derive(Debug, Subcommand)]
pub enum AwsCmd {
    /// Create the DynamoDB table (indexes, stream) and the S3 bucket if missing (idempotent;
    /// for development and tests — production uses the CloudFormation template).
    Bootstrap {
        /// Table name (default FERRY_TABLE).
        #[arg(long, env = "FERRY_TABLE")]
        table: String,
        /// Bucket name (default FERRY_BUCKET).
        #[arg(long, env = "FERRY_BUCKET")]
        bucket: String,
    },
    /// Deploy (create or update) the serverless control plane — table, bucket, the api, tick
    /// and dispatch functions, the IAM-authorised HTTP API, the ECS cluster and per-run task
    /// definition (infra/control-plane.yaml) — and with --agent-stack the always-on agent
    /// service (infra/agent.yaml). Waits, showing CloudFormation's progress; prints the outputs
    /// and the environment to use. Again with nothing changed: changes nothing.
    Deploy(DeployArgs),
    /// Delete the stacks; the table and bucket are kept unless --delete-data.
    Destroy {
        /// The control plane's stack (the agent stack is STACK-agent).
        #[arg(long, default_value = "ferry")]
        stack: String,
        /// Also delete the table and the bucket with everything in them.
        #[arg(long)]
        delete_data: bool,
    },
}

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The control plane's stack name (the agent stack is STACK-agent).
    #[arg(long, default_value = "ferry")]
    pub stack: String,
    /// Directory of the function zips in cargo-lambda's layout (<dir>/<binary>/bootstrap.zip);
    /// default: target/lambda, built with scripts/package-functions.sh when missing.
    #[arg(long)]
    pub functions: Option<PathBuf>,
    /// Bucket for the function zips (default ferry-artifacts-ACCOUNT-REGION, created if missing).
    #[arg(long)]
    pub artifacts_bucket: Option<String>,
    /// The table the stack creates (default: the stack name).
    #[arg(long)]
    pub table: Option<String>,
    /// The bucket the stack creates for bundles and logs (default STACK-data-ACCOUNT-REGION).
    #[arg(long)]
    pub bucket: Option<String>,
    /// The agent image (a registry URI the tasks can pull), for the per-run task definition and
    /// the agent stack.
    #[arg(long)]
    pub image: Option<String>,
    /// Subnet for tasks (repeatable).
    #[arg(long = "subnet")]
    pub subnets: Vec<String>,
    /// Security group for tasks (repeatable).
    #[arg(long = "security-group")]
    pub security_groups: Vec<String>,
    /// Also deploy the always-on agent stack.
    #[arg(long)]
    pub agent_stack: bool,
    /// Work queue the agent stack serves (repeatable).
    #[arg(long = "queue")]
    pub queues: Vec<String>,
}

impl Command {
    /// Processes that run until stopped and write to sockets: the server, `dev`, the agent
    /// and its one-run and guard processes. The rest are client commands that print and end.
    pub fn is_long_running(&self) -> bool {
        matches!(
            self,
            Command::Server(_)
                | Command::Dev(_)
                | Command::Ui(_)
                | Command::Agent(
                    AgentCmd::Start(_) | AgentCmd::Execute(_) | AgentCmd::Guard { .. }
                )
        )
    }
}

#[derive(Debug, Subcommand)]
pub enum AgentCmd {
    /// Poll work queues and run their flow runs until stopped (SIGTERM/Ctrl-C: graceful).
    Start(AgentStartArgs),
    /// Run exactly one launched flow run: the command of a task per run (ECS task, local
    /// process). Exits 0 if the run completed, 1 if it ended otherwise, 3 if there was nothing
    /// to take (finished, cancelled, or another task's).
    Execute(ExecuteArgs),
    /// Print a ready service definition that runs `ferry agent start` with these queues and
    /// options, this binary and this environment's Ferry settings (never a token's value):
    /// a systemd unit, a supervisor program, a launchd job, or the command that deploys the
    /// agent service on ECS Fargate. Save stdout to a file; stderr says how to install it.
    #[command(
        after_help = "Examples:\n  ferry agent install systemd -q prod -q etl --limit 4 > ferry-agent.service\n  ferry agent install supervisor -q prod > /etc/supervisor/conf.d/ferry-agent.conf\n  ferry agent install launchd -q default > ~/Library/LaunchAgents/dev.ferry.agent.plist\n  ferry agent install fargate -q prod"
    )]
    Install(InstallArgs),
    /// List the agents seen polling in the last 7 days (online: polled within 60 s).
    Ls {
        /// Only agents serving this work queue.
        #[arg(short = 'q', long = "work-queue")]
        work_queue: Option<String>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// (internal) The process guard an agent starts: kills its flows if the agent dies.
    #[command(hide = true)]
    Guard {
        /// Time between SIGTERM and SIGKILL.
        #[arg(long, default_value = "10", value_parser = parse_seconds)]
        kill_grace: std::time::Duration,
    },
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// What to print.
    #[arg(value_enum)]
    pub kind: InstallKind,
    #[command(flatten)]
    pub start: AgentStartArgs,
    /// File the service reads its secrets from (FERRY_API_TOKEN, AWS keys: their values are
    /// never printed), one KEY=VALUE a line; default FERRY_HOME/agent.env.
    #[arg(long)]
    pub env_file: Option<PathBuf>,
}

/// Where `ferry agent install` installs an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InstallKind {
    /// A systemd unit (Linux): journald logs.
    Systemd,
    /// A supervisor program (supervisord's INI): log files.
    Supervisor,
    /// A launchd job (macOS, a LaunchAgent plist): log files.
    Launchd,
    /// The command that deploys the always-on agent service on ECS Fargate (`ferry aws deploy
    /// --agent-stack`).
    Fargate,
}

/// A duration: a number of seconds (`30`, `0.5`) or numbers with units (`30s`, `5m`,
/// `1h 30m`, `5 minutes`, `2days`, `250ms`). Every flag that takes a time uses this or one of
/// the two below, so they all accept the same spellings.
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    if let Ok(v) = t.parse::<f64>() {
        if !v.is_finite() || v < 0.0 {
            return Err(format!("{s:?} is not a duration: {DURATION_FORMS}"));
        }
        return Ok(std::time::Duration::from_secs_f64(v));
    }
    humantime::parse_duration(t)
        .map_err(|e| format!("{s:?} is not a duration ({e}): {DURATION_FORMS}"))
}

const DURATION_FORMS: &str =
    "give seconds (30) or a number with a unit (30s, 5m, 1h 30m, \"5 minutes\", 2d)";

/// [`parse_duration`] capped at a day (agent timings).
fn parse_seconds(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(s)?;
    if d > std::time::Duration::from_secs(86_400) {
        return Err(format!("{s:?} is longer than a day (86400 s)"));
    }
    Ok(d)
}

/// [`parse_duration`] in whole seconds (schedules, retry delays, timeouts).
pub(crate) fn parse_whole_seconds(s: &str) -> Result<u64, String> {
    let d = parse_duration(s)?;
    if d.subsec_nanos() != 0 {
        return Err(format!(
            "{s:?} is not a whole number of seconds ({:?}): use e.g. 1s, 90s, 5m",
            d
        ));
    }
    Ok(d.as_secs())
}

#[derive(Debug, Args)]
pub struct AgentStartArgs {
    #[command(flatten)]
    pub agent: AgentArgs,
    /// How the agent reaches the control plane: `api` (FERRY_API_URL with FERRY_API_TOKEN or
    /// FERRY_API_AUTH=iam; the default) or `direct` (the store itself: FERRY_HOME, or
    /// DynamoDB/S3 with FERRY_BACKEND=aws, where `direct` is the default).
    #[arg(long, value_enum)]
    pub via: Option<Via>,
    /// Over the API: how long a poll that finds nothing waits on the server for work (0 to 20,
    /// e.g. 20, 20s; default 20), so a new run starts at once; 0 polls every --poll-interval.
    #[arg(long, value_name = "SECONDS", value_parser = parse_long_poll)]
    pub long_poll: Option<std::time::Duration>,
}

/// The long poll when `--long-poll` is not given.
pub const DEFAULT_LONG_POLL: std::time::Duration = std::time::Duration::from_secs(20);

/// `--long-poll`: a duration from 0 to the server's longest wait.
fn parse_long_poll(s: &str) -> Result<std::time::Duration, String> {
    let d = parse_duration(s)?;
    let max = ferry_api::long_poll::MAX_WAIT_SECONDS;
    if d.as_secs_f64() > max {
        return Err(format!(
            "{s:?} is longer than the {max} s a server waits: give 0 to {max} (0 polls every --poll-interval)"
        ));
    }
    Ok(d)
}

/// How an agent reaches the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Via {
    /// The `/v1` API.
    Api,
    /// The store itself.
    Direct,
}

#[derive(Debug, Args, Clone)]
pub struct AgentArgs {
    /// Work queue to serve (repeatable); served in queue priority order.
    #[arg(short = 'q', long = "work-queue", default_value = "default")]
    pub queues: Vec<String>,
    /// Most runs held at once.
    #[arg(long, default_value_t = 8)]
    pub limit: usize,
    /// Time between polls when idle, e.g. 0.5 (seconds), 500ms, 2s (an agent is also woken
    /// when one of its runs ends).
    #[arg(long, default_value = "0.5", value_parser = parse_seconds)]
    pub poll_interval: std::time::Duration,
    /// Claim runs due within this long (e.g. 10, 10s); they still start at their scheduled time.
    #[arg(long, visible_alias = "prefetch-seconds", default_value = "10", value_parser = parse_seconds)]
    pub prefetch: std::time::Duration,
    /// Agent name shown in leases (default: host-pid).
    #[arg(long)]
    pub name: Option<String>,
    /// How long a claim lasts without a heartbeat, e.g. 30, 30s, 2m (heartbeats every sixth of it).
    #[arg(long, default_value = "30", value_parser = parse_seconds)]
    pub lease: std::time::Duration,
    /// Time between SIGTERM and SIGKILL when a run is cancelled or times out (e.g. 10, 10s).
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub kill_grace: std::time::Duration,
    /// On shutdown, how long running runs may go on before they are killed (e.g. 30, 1m).
    #[arg(long, default_value = "30", value_parser = parse_seconds)]
    pub shutdown_grace: std::time::Duration,
    /// Warm starts: a warm process is replaced after forking this many runs.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub warm_max_runs: u64,
    /// Warm starts: a warm process is replaced once its resident memory is over this (MiB).
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(16..))]
    pub warm_max_rss: u64,
    /// Warm starts: a warm process unused this long exits (e.g. 600, 10m).
    #[arg(long, default_value = "10m", value_parser = parse_seconds)]
    pub warm_idle: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct ExecuteArgs {
    /// The flow run to take over and run.
    pub run_id: String,
    /// The launch this task was started for (a task of an abandoned launch takes nothing).
    #[arg(long = "launch", default_value_t = 1)]
    pub launch: u32,
    /// Agent name shown in the lease (default: host-pid).
    #[arg(long)]
    pub name: Option<String>,
    /// How long a claim lasts without a heartbeat, e.g. 30, 30s, 2m (heartbeats every sixth of it).
    #[arg(long, default_value = "30", value_parser = parse_seconds)]
    pub lease: std::time::Duration,
    /// Time between SIGTERM and SIGKILL when the run is cancelled or times out (e.g. 10, 10s).
    #[arg(long, default_value = "10", value_parser = parse_seconds)]
    pub kill_grace: std::time::Duration,
    /// On SIGTERM (the task is stopped), how long the run may go on before it is killed.
    #[arg(long, default_value = "20", value_parser = parse_seconds)]
    pub shutdown_grace: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Port of the API (0 = any free port).
    #[arg(long, default_value_t = 4300)]
    pub port: u16,
    /// How often the tick runs.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub tick_interval: std::time::Duration,
    #[command(flatten)]
    pub agent: AgentArgs,
}

#[derive(Debug, Subcommand)]
pub enum ServerCmd {
    /// Serve the API under /v1 and run the tick loop.
    Start(ServerStart),
    /// Run one tick against FERRY_HOME now and print what it did (operations, benchmarks).
    Tick {
        /// A waiting run this long past its scheduled time is marked Late.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        late_after: std::time::Duration,
    },
}

#[derive(Debug, Args)]
pub struct ServerStart {
    /// Address to bind; a non-loopback address requires FERRY_API_TOKEN.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to bind (0 = any free port; the chosen one is printed).
    #[arg(long, default_value_t = 4300)]
    pub port: u16,
    /// How often the tick runs (e.g. 5s, 1m).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub tick_interval: std::time::Duration,
    /// A waiting run this long past its scheduled time is marked Late.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub late_after: std::time::Duration,
}

#[derive(Debug, Args, Clone, Copy)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum QueueCmd {
    /// Create a work queue.
    Create {
        name: String,
        /// Most runs Pending/Running at once.
        #[arg(long)]
        limit: Option<u32>,
        /// 1 = highest priority.
        #[arg(long)]
        priority: Option<u32>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List work queues.
    Ls {
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show one work queue.
    Inspect {
        name: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Stop agents claiming from a queue (runs stay scheduled).
    Pause { name: String },
    /// Let agents claim from a queue again.
    Resume { name: String },
    /// Limit the runs Pending/Running at once.
    SetConcurrencyLimit { name: String, limit: u32 },
    /// Remove the concurrency limit.
    ClearConcurrencyLimit { name: String },
    /// Delete a work queue (not `default`, nor one a deployment uses or with waiting runs).
    Delete { name: String },
    /// Upcoming runs of a queue.
    Preview {
        name: String,
        /// Look-ahead in hours.
        #[arg(long, default_value_t = 24)]
        hours: u32,
        #[command(flatten)]
        out: JsonFlag,
    },
}

// Parsed once per process: boxing `Create` would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum InfraCmd {
    /// Create an infrastructure profile, or replace its settings (`ecs/NAME` needs --cluster,
    /// --task-definition and --subnet; `process/NAME` takes none of the ECS flags).
    #[command(
        after_help = "Examples:\n  ferry infra create ecs/prod --cluster ferry --task-definition ferry-agent:3 --subnet subnet-a,subnet-b --security-group sg-1 --capacity-provider FARGATE_SPOT:3,FARGATE:1:1 --cpu 512 --memory 1024\n  ferry infra create process/local --launch-lead 5s --max-launches 2"
    )]
    Create {
        /// `ecs/NAME` (an ECS task per run) or `process/NAME` (a local process per run).
        name: String,
        /// ECS cluster name or ARN.
        #[arg(long)]
        cluster: Option<String>,
        /// Task definition, `FAMILY` (latest active revision) or `FAMILY:REV`.
        #[arg(long)]
        task_definition: Option<String>,
        /// Subnet id (repeatable, or comma-separated).
        #[arg(long = "subnet", value_delimiter = ',')]
        subnets: Vec<String>,
        /// Security group id (repeatable, or comma-separated).
        #[arg(long = "security-group", value_delimiter = ',')]
        security_groups: Vec<String>,
        /// Give each task a public IP (a public subnet without a NAT gateway needs one).
        #[arg(long)]
        assign_public_ip: bool,
        /// Capacity provider `FARGATE|FARGATE_SPOT[:WEIGHT[:BASE]]` (repeatable, or
        /// comma-separated); none = launch type FARGATE.
        #[arg(long = "capacity-provider", value_delimiter = ',')]
        capacity_providers: Vec<String>,
        /// Task CPU units (256, 512, 1024, ...; default: the task definition's).
        #[arg(long)]
        cpu: Option<u32>,
        /// Task memory in MiB (default: the task definition's).
        #[arg(long)]
        memory: Option<u32>,
        /// Container of the task definition that runs `ferry` (default `ferry`).
        #[arg(long)]
        container: Option<String>,
        /// Launch scheduled runs this long before they are due (default 90s).
        #[arg(long, value_parser = parse_duration)]
        launch_lead: Option<std::time::Duration>,
        /// Launch again when a task has not taken its run this long after its launch
        /// (default 5m).
        #[arg(long, value_parser = parse_duration)]
        start_timeout: Option<std::time::Duration>,
        /// Launches of one run (first + relaunches) before it ends Crashed (default 3).
        #[arg(long)]
        max_launches: Option<u32>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List infrastructure profiles.
    Ls {
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show an infrastructure profile and the deployments that use it.
    Inspect {
        /// `ecs/NAME` or `process/NAME`.
        name: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Delete an infrastructure profile no deployment uses.
    Delete {
        /// `ecs/NAME` or `process/NAME`.
        name: String,
    },
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// Standard 5-field POSIX cron expression, or @hourly/@daily/@weekly/@monthly/@yearly
    /// (for AWS's 6-field cron(...) use --schedule).
    #[arg(long, group = "schedule_kind")]
    pub cron: Option<String>,
    /// EventBridge Scheduler expression: 'cron(0 12 ? * MON-FRI *)', 'rate(5 minutes)' or
    /// 'at(2027-01-01T09:00:00)' (one time), in --timezone.
    #[arg(long, group = "schedule_kind")]
    pub schedule: Option<String>,
    /// Interval: seconds (3600) or with a unit (1h, 90m, "1h 30m", 1d).
    #[arg(long, group = "schedule_kind", value_parser = parse_whole_seconds)]
    pub interval: Option<u64>,
    /// Anchor of an interval or rate(...) schedule (RFC 3339), or DTSTART of an RRULE.
    #[arg(long)]
    pub anchor_date: Option<String>,
    /// RFC 5545 recurrence rule, e.g. "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9".
    #[arg(long, group = "schedule_kind")]
    pub rrule: Option<String>,
    /// IANA time zone of the schedule (default UTC).
    #[arg(long)]
    pub timezone: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum DeploymentCmd {
    /// Package a project, upload its bundle and write a deployment manifest (-a: apply it).
    Build(Box<BuildArgs>),
    /// Create or update deployments from manifest files.
    Apply {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// List deployments.
    Ls {
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show a deployment.
    Inspect {
        /// FLOW/NAME
        id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Stop scheduling a deployment (its future scheduled runs are removed).
    Pause { id: String },
    /// Resume scheduling a deployment.
    Resume { id: String },
    /// Delete a deployment and its waiting runs.
    Delete { id: String },
    /// Create an ad-hoc run; prints its id.
    Run {
        /// FLOW/NAME
        id: String,
        /// Parameter override KEY=VALUE (VALUE parsed as JSON if it is JSON, else a string).
        #[arg(long = "param", short = 'p')]
        params: Vec<String>,
        /// Parameter overrides as one JSON object (or @FILE to read it from a file).
        #[arg(long, visible_alias = "params")]
        params_json: Option<String>,
        /// Start after this long: seconds (600) or with a unit (10m, "5 minutes", 1h 30m).
        #[arg(long, value_parser = parse_duration)]
        start_in: Option<std::time::Duration>,
        /// A repeated call with the same key returns the same run.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Stream state changes and log lines until the run ends, following its retries to the
        /// last attempt; exit 0 only if that attempt completed.
        #[arg(long)]
        watch: bool,
        /// With --watch: stop watching after this long (e.g. 30s, 10m) and exit 124; the run
        /// goes on.
        #[arg(long, requires = "watch", value_parser = humantime::parse_duration)]
        watch_timeout: Option<std::time::Duration>,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// `path/file.py:function` or a path to an executable, relative to --path.
    pub entrypoint: String,
    /// Deployment name.
    #[arg(short = 'n', long)]
    pub name: String,
    /// Flow name (default: the function name, or the executable's file stem).
    #[arg(long)]
    pub flow: Option<String>,
    /// Work queue.
    #[arg(short = 'q', long = "work-queue", default_value = "default")]
    pub work_queue: String,
    /// Tag (repeatable).
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Version, e.g. a git SHA.
    #[arg(short = 'v', long)]
    pub version: Option<String>,
    /// Description.
    #[arg(short = 'd', long)]
    pub description: Option<String>,
    /// Project directory to package.
    #[arg(long, default_value = ".")]
    pub path: PathBuf,
    #[command(flatten)]
    pub schedule: ScheduleArgs,
    /// Default parameter KEY=VALUE (VALUE parsed as JSON if it is JSON, else a string).
    #[arg(long = "param", short = 'p')]
    pub params: Vec<String>,
    /// Default parameters as one JSON object (or @FILE to read it from a file).
    #[arg(long, visible_alias = "params")]
    pub params_json: Option<String>,
    /// Environment variable KEY=VALUE for the flow process. VALUE may be a secret reference
    /// the agent resolves at run time: ssm:/path, secretsmanager:NAME[#key], secret:NAME
    /// (docs/secrets.md); write \ssm:... for a literal value.
    #[arg(long = "env", short = 'e')]
    pub env: Vec<String>,
    /// Infrastructure profile: each run gets a task of its own (`ecs/NAME`, `process/NAME`;
    /// see `ferry infra`). Without one, agents of the work queue claim runs.
    #[arg(long = "infra-block", visible_alias = "ib")]
    pub infra_block: Option<String>,
    /// Override of the profile's task, KEY=VALUE (repeatable): cpu=1024, memory=4096,
    /// image=URI, env.KEY=VALUE.
    #[arg(long = "override")]
    pub overrides: Vec<String>,
    /// Retries after a failed attempt.
    #[arg(long, default_value_t = 0)]
    pub retries: u32,
    /// Time between a failed attempt and its retry: seconds (30) or with a unit (30s, 5m).
    #[arg(long, visible_alias = "retry-delay-seconds", default_value = "0", value_parser = parse_whole_seconds)]
    pub retry_delay: u64,
    /// How long a run may take before it is killed and Failed: seconds (600) or with a unit
    /// (10m, 2h).
    #[arg(long, visible_alias = "timeout-seconds", value_parser = parse_whole_seconds)]
    pub timeout: Option<u64>,
    /// Most runs of this deployment at once.
    #[arg(long)]
    pub concurrency_limit: Option<u32>,
    /// Missed-run policy: skip, latest, all, all:N.
    #[arg(long, default_value = "skip")]
    pub catchup: String,
    /// Python interpreter for `file.py:function` entrypoints.
    #[arg(long)]
    pub python: Option<String>,
    /// Start runs warm: forked from a Python process that imported the flow once (Python
    /// entrypoints; see docs/agent.md for when to use it).
    #[arg(long)]
    pub warm: bool,
    /// Manifest to write (default `<name>-deployment.yaml`).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Apply the manifest after writing it.
    #[arg(short = 'a', long)]
    pub apply: bool,
    /// Print one JSON object instead of the report: the manifest and bundle written, the spec,
    /// and with -a what was applied (`applied`, as `deployment apply --json` prints it).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum FlowRunCmd {
    /// List what happened: runs scheduled up to now, newest first (then the next few
    /// scheduled); --upcoming lists the runs scheduled later.
    Ls {
        /// Only this deployment (FLOW/NAME).
        #[arg(long)]
        deployment: Option<String>,
        /// Only these states (comma-separated, e.g. scheduled,late).
        #[arg(long)]
        state: Option<String>,
        /// Only this work queue.
        #[arg(long = "work-queue", short = 'q')]
        work_queue: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// List the runs scheduled after now instead, soonest first.
        #[arg(long, conflicts_with = "all")]
        upcoming: bool,
        /// List every run, past and upcoming, newest scheduled first.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Show a run with its state history.
    Inspect {
        /// The run's id, or a unique start of it (at least 4 characters).
        id: String,
        #[command(flatten)]
        out: JsonFlag,
    },
    /// Cancel a run.
    Cancel {
        /// The run's id, or a unique start of it (at least 4 characters).
        id: String,
    },
    /// Print what a completed Python flow returned (pretty JSON; --json: the raw value, for jq).
    Result {
        /// The run's id, or a unique start of it (at least 4 characters).
        id: String,
        /// Print the value as compact JSON on one line.
        #[arg(long)]
        json: bool,
    },
    /// Print a run's log (-f: follow until the run ends).
    Logs {
        /// The run's id, or a unique start of it (at least 4 characters).
        id: String,
        /// Follow the log until the run ends.
        #[arg(short = 'f', long)]
        follow: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Print the next fire times of a schedule (computed locally, no server needed).
    Preview {
        #[command(flatten)]
        schedule: ScheduleArgs,
        /// Start after this instant (RFC 3339; default now).
        #[arg(long)]
        after: Option<String>,
        /// How many fire times.
        #[arg(short = 'n', long = "count", default_value_t = 10)]
        count: usize,
        #[command(flatten)]
        out: JsonFlag,
    },
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}

/// Accepts the two-letter short flag users of Prefect type, `-ib ecs/NAME` (clap's short flags
/// are one letter): rewritten to `--infra-block` before parsing. Nothing after `--` is touched.
pub fn seed_spellings(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Vec<std::ffi::OsString> {
    let mut out = Vec::new();
    let mut raw = false;
    for a in args {
        if a == "--" {
            raw = true;
        }
        if !raw && a == "-ib" {
            out.push("--infra-block".into());
        } else if let Some(v) = a
            .to_str()
            .and_then(|s| s.strip_prefix("-ib="))
            .filter(|_| !raw)
        {
            out.push(format!("--infra-block={v}").into());
        } else {
            out.push(a);
        }
    }
    out
}

#[cfg(test)]
mod seed_tests {
    use super::*;

    #[test]
    fn dash_ib_is_the_infra_block_flag() {
        let argv = |v: &[&str]| v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let cli = Cli::parse_from(seed_spellings(argv(&[
            "ferry",
            "deployment",
            "build",
            "f.py:main",
            "-n",
            "x",
            "-ib",
            "ecs/prod",
            "--override",
            "cpu=1024",
        ])));
        let Command::Deployment(DeploymentCmd::Build(b)) = cli.command else {
            panic!("not a build: {cli:?}");
        };
        assert_eq!(b.infra_block.as_deref(), Some("ecs/prod"));
        assert_eq!(b.overrides, vec!["cpu=1024"]);
        assert_eq!(
            seed_spellings(argv(&["ferry", "--", "-ib"])),
            argv(&["ferry", "--", "-ib"])
        );
    }
}
