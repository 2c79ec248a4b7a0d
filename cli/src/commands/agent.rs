use std::sync::Arc;

use anyhow::{Context, Result};
use ferry_agent::{Agent, AgentConfig, OneShotEnd, ProcessGuard};
use ferry_app::{Ferry, Settings};
use tokio_util::sync::CancellationToken;

use crate::agent_client::ApiPlane;
use crate::args::{AgentArgs, AgentCmd, AgentStartArgs, ExecuteArgs, Via};
use crate::client::Client;
use crate::server::{backend, build_ferry, ferry_home, init_tracing, shutdown_signal};

mod install;

fn default_name() -> String {
    format!("{}-{}", ferry_agent::host_name(), std::process::id())
}

/// An agent name the API takes: 1 to 200 bytes, no control characters.
fn check_name(name: &str) -> Result<()> {
    let max = ferry_api::agent_api::MAX_AGENT_NAME;
    anyhow::ensure!(
        !name.is_empty() && name.len() <= max && !name.chars().any(char::is_control),
        "--name: an agent name has 1 to {max} bytes and no control characters"
    );
    Ok(())
}

/// The queues of `agent start`'s flags, once the flags are checked (a limit of at least 1, valid
/// queue names, a valid `--name`, a lease of at least 3 s): what `agent start` would refuse,
/// `agent install` refuses too.
fn checked_queues(args: &AgentArgs) -> Result<Vec<ferry_core::QueueName>> {
    anyhow::ensure!(args.limit >= 1, "--limit: must be at least 1");
    let queues = args
        .queues
        .iter()
        .map(|q| ferry_core::QueueName::parse("--work-queue", q))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(name) = &args.name {
        check_name(name)?;
    }
    anyhow::ensure!(
        args.lease.as_secs_f64() >= 3.0,
        "--lease: must be at least 3 seconds"
    );
    Ok(queues)
}

/// The agent configuration the flags describe.
pub(crate) fn config(args: &AgentArgs) -> Result<AgentConfig> {
    let queues = checked_queues(args)?;
    let name = args.name.clone().unwrap_or_else(default_name);
    check_name(&name)?;
    let mut cfg = one_run_config(name, args.lease, args.kill_grace, args.shutdown_grace)?;
    cfg.queues = queues;
    cfg.limit = args.limit;
    cfg.poll_interval = args.poll_interval.max(std::time::Duration::from_millis(10));
    cfg.prefetch = args.prefetch;
    cfg.warm = ferry_agent::WarmLimits {
        max_runs: args.warm_max_runs,
        max_rss_kb: args.warm_max_rss.saturating_mul(1024),
        idle: args.warm_idle,
    };
    Ok(cfg)
}

/// An agent configuration named `name` for one run at a time and no queue (what `agent
/// execute` runs with; `agent start` sets its queues and limits on top), with its process guard.
fn one_run_config(
    name: String,
    lease: std::time::Duration,
    kill_grace: std::time::Duration,
    shutdown_grace: std::time::Duration,
) -> Result<AgentConfig> {
    anyhow::ensure!(
        lease.as_secs_f64() >= 3.0,
        "--lease: must be at least 3 seconds"
    );
    let home = ferry_home()?;
    Ok(AgentConfig {
        queues: Vec::new(),
        limit: 1,
        poll_interval: std::time::Duration::from_millis(500),
        prefetch: std::time::Duration::ZERO,
        name,
        work_dir: home.join("work"),
        cache_dir: home.join("cache").join("bundles"),
        python: std::env::var("FERRY_PYTHON")
            .ok()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "python3".into()),
        kill_grace,
        shutdown_grace,
        heartbeat_every: lease / 6,
        guard: Some(Arc::new(spawn_guard(kill_grace)?)),
        secrets: super::secret::agent_sources()?,
        warm: ferry_agent::WarmLimits::default(),
    })
}

/// Starts this agent's process guard (`ferry agent guard`, see `ferry_agent::guard`).
fn spawn_guard(kill_grace: std::time::Duration) -> Result<ProcessGuard> {
    let exe = std::env::current_exe().context("locating the ferry binary for the process guard")?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["agent", "guard", "--kill-grace"])
        .arg(kill_grace.as_secs_f64().to_string());
    ProcessGuard::spawn(cmd).context("starting the agent's process guard")
}

/// Sets the lease length on the agent's use cases.
pub(crate) fn with_lease(ferry: Ferry, args: &AgentArgs) -> Result<Ferry> {
    lease_of(ferry, args.lease)
}

fn lease_of(ferry: Ferry, lease: std::time::Duration) -> Result<Ferry> {
    let settings = Settings {
        lease: chrono::Duration::from_std(lease)?,
        ..ferry.settings().clone()
    };
    Ok(ferry.with_settings(settings))
}

/// `ferry agent execute RUN_ID`: one launched run, then exit (0 Completed, 1 otherwise, 3
/// nothing to take).
async fn execute(args: ExecuteArgs) -> Result<()> {
    let id: ferry_core::RunId = args
        .run_id
        .parse()
        .map_err(|e| anyhow::anyhow!("RUN_ID: {e}"))?;
    anyhow::ensure!(args.launch >= 1, "--launch: must be at least 1");
    init_tracing();
    // host-pid is not unique in containers (pid 1, and the host's name on host networking):
    // the run and launch make it so.
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-run-{id}-launch-{}", default_name(), args.launch));
    let cfg = one_run_config(name, args.lease, args.kill_grace, args.shutdown_grace)?;
    let ferry = lease_of(direct_ferry().await?, args.lease)?;
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        trigger.cancel();
    });
    let end = ferry_agent::execute_launched(ferry, cfg, id, args.launch, shutdown).await?;
    match end {
        OneShotEnd::NothingToDo(why) => Err(Exit {
            code: 3,
            message: format!("nothing to do: {why}"),
        }
        .into()),
        OneShotEnd::Ran(run) if run.state == ferry_core::StateType::Completed => {
            println!("Run {} completed", run.id);
            Ok(())
        }
        OneShotEnd::Ran(run) => Err(Exit {
            code: 1,
            message: format!(
                "run {} ended {}{}",
                run.id,
                run.state,
                run.state_message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default()
            ),
        }
        .into()),
    }
}

/// An error that ends the CLI with its own exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    /// The process exit code.
    pub code: u8,
    /// What is printed.
    pub message: String,
}

/// The use cases over the store this process reaches itself (FERRY_BACKEND). On the embedded
/// backend, FERRY_HOME must hold a database already: an agent never creates an empty one.
async fn direct_ferry() -> Result<Ferry> {
    let backend = backend()?;
    if backend == ferry_api::Backend::Embedded {
        let home = ferry_home()?;
        let db = home.join("ferry.db");
        anyhow::ensure!(
            db.exists(),
            "no Ferry database at {}: start `ferry server start` there or set FERRY_HOME (or run the agent through the API: `ferry agent start --via api` with FERRY_API_URL)",
            db.display()
        );
    }
    build_ferry(backend).await
}

/// Waits until the API at `plane` answers and takes the agent's credentials, saying so on
/// each failure and retrying with a pause that doubles up to 30 s. `Ok(false)`: stopped by a
/// signal meanwhile. Refused credentials or a URL that is no Ferry API end it with an error.
async fn connect(plane: &ApiPlane, shutdown: &CancellationToken) -> Result<bool> {
    let mut failures = 0;
    loop {
        match plane.health().await {
            Ok(_) => return Ok(true),
            Err(ferry_agent::PlaneError::Unavailable(why)) => {
                let pause = ferry_agent::failure_pause(std::time::Duration::ZERO, failures);
                failures += 1;
                // `why` names the URL and the fix already (the client's error).
                tracing::warn!("{why}; retrying in {}s", pause.as_secs());
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.cancelled() => return Ok(false),
                }
            }
            Err(ferry_agent::PlaneError::NotFound(why)) => anyhow::bail!(
                "FERRY_API_URL={} is not a Ferry API ({why}): set FERRY_API_URL to the address `ferry server start` prints, or the API URL of `ferry aws deploy`",
                plane.url()
            ),
            Err(e) => return Err(anyhow::anyhow!("{e}")),
        }
    }
}

/// `ferry agent start`.
async fn start(args: AgentStartArgs) -> Result<()> {
    init_tracing();
    let cfg = config(&args.agent)?;
    let via = match args.via {
        Some(v) => v,
        None if backend()? == ferry_api::Backend::Aws => Via::Direct,
        None => Via::Api,
    };
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        trigger.cancel();
    });
    if via == Via::Direct && args.long_poll.is_some() {
        anyhow::bail!(
            "--long-poll applies to agents that talk to the API (--via api): an agent with direct store access polls every --poll-interval (see docs/agent.md, \"Waking agents\")"
        );
    }
    let (agent, through) = match via {
        Via::Direct => {
            let ferry = with_lease(direct_ferry().await?, &args.agent)?;
            for q in &cfg.queues {
                if let Err(ferry_app::AppError::NotFound { .. }) = ferry.get_queue(q).await {
                    tracing::warn!(queue = %q, "work queue does not exist (yet): create it with `ferry work-queue create {q}`");
                }
            }
            let through = match backend()? {
                ferry_api::Backend::Aws => "directly (DynamoDB and S3)".to_owned(),
                ferry_api::Backend::Embedded => {
                    format!("directly (FERRY_HOME={})", ferry_home()?.display())
                }
            };
            (Agent::new(ferry, cfg.clone()), through)
        }
        Via::Api => {
            let long_poll = args.long_poll.unwrap_or(crate::args::DEFAULT_LONG_POLL);
            let plane = ApiPlane::new(
                Client::from_env()?,
                cfg.name.clone(),
                args.agent.lease,
                long_poll,
            );
            if !connect(&plane, &shutdown).await? {
                println!("Agent stopped before it reached the API: 0 runs claimed, 0 finished");
                return Ok(());
            }
            let through = format!("through the API at {}", plane.url());
            (Agent::with_plane(Arc::new(plane), cfg.clone()), through)
        }
    };
    let queues: Vec<String> = cfg.queues.iter().map(ToString::to_string).collect();
    println!(
        "Agent {} serving {} (limit {}) {through}",
        cfg.name,
        queues.join(", "),
        cfg.limit
    );
    let report = agent.run(shutdown).await;
    println!(
        "Agent stopped: {} runs claimed, {} finished",
        report.claimed, report.finished
    );
    Ok(())
}

pub async fn run(cmd: AgentCmd) -> Result<()> {
    match cmd {
        AgentCmd::Start(args) => start(args).await,
        AgentCmd::Execute(args) => execute(args).await,
        AgentCmd::Install(args) => {
            checked_queues(&args.start.agent)?;
            install::run(&args)
        }
        AgentCmd::Ls { work_queue, out } => {
            super::queue::agent_ls(work_queue.as_deref(), out.json).await
        }
        AgentCmd::Guard { kill_grace } => {
            ferry_agent::guard::serve(std::io::stdin().lock(), kill_grace);
            Ok(())
        }
    }
}
