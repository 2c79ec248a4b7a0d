use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ferry_api::{ApiState, Backend};
use ferry_app::{Ferry, Settings, SystemClock};
use ferry_embedded::{FsCodeStore, FsLogSink, SqliteStore};

use crate::args::{DevArgs, ServerStart};
use ferry_agent::{Agent, AgentConfig};
use tokio_util::sync::CancellationToken;

/// `FERRY_HOME`, default `~/.ferry`.
pub fn ferry_home() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("FERRY_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    let home = std::env::var_os("HOME").context("neither FERRY_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".ferry"))
}

/// Which backend the environment selects: `FERRY_BACKEND=aws` (with `FERRY_TABLE`,
/// `FERRY_BUCKET` and the standard AWS environment) or the embedded default.
pub fn backend() -> Result<Backend> {
    match std::env::var("FERRY_BACKEND").unwrap_or_default().as_str() {
        "" => Ok(Backend::default()),
        name => Ok(name.parse()?),
    }
}

/// The AWS table and bucket from the environment.
pub fn aws_config() -> Result<ferry_aws::AwsConfig> {
    Ok(ferry_aws::AwsConfig::from_env()?)
}

/// The use cases over `backend` (see [`backend`]); on AWS they launch `ecs/NAME` runs as ECS
/// tasks.
pub async fn build_ferry(backend: Backend) -> Result<Ferry> {
    if backend == Backend::Embedded {
        return embedded_ferry();
    }
    let cfg = aws_config()?;
    let sdk = ferry_aws::config::sdk_config().await;
    ferry_aws::bootstrap::check(
        &ferry_aws::config::dynamodb_client(&sdk),
        &ferry_aws::config::s3_client(&sdk),
        &cfg.table,
        &cfg.bucket,
    )
    .await?;
    let a = cfg.adapters(&sdk);
    Ok(Ferry::new(a.store, a.code, a.logs, Arc::new(SystemClock))
        .with_launcher(ferry_core::infra::InfraKind::Ecs, a.ecs)
        .with_launch_env(a.launch_env))
}

/// The use cases over the embedded adapters under FERRY_HOME.
pub fn embedded_ferry() -> Result<Ferry> {
    let home = ferry_home()?;
    std::fs::create_dir_all(&home)
        .with_context(|| format!("cannot create FERRY_HOME {}", home.display()))?;
    let store = SqliteStore::open(&home.join("ferry.db"))
        .with_context(|| format!("cannot open the store in {}", home.display()))?;
    let code = FsCodeStore::new(home.join("bundles"));
    Ok(Ferry::new(
        Arc::new(store),
        Arc::new(code),
        Arc::new(FsLogSink::new(home.join("logs"))),
        Arc::new(SystemClock),
    ))
}

/// `ferry server start`.
pub async fn start(args: ServerStart) -> Result<()> {
    let ip: IpAddr = args
        .host
        .parse()
        .with_context(|| format!("--host {:?} is not an IP address", args.host))?;
    let token = std::env::var("FERRY_API_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    if !ip.is_loopback() && token.is_none() {
        bail!(
            "refusing to serve on non-loopback address {ip} without authentication: set FERRY_API_TOKEN (clients send it as a bearer token), or bind 127.0.0.1"
        );
    }
    init_tracing();
    let backend = backend()?;
    let ferry = build_ferry(backend).await?;
    let settings = Settings {
        late_after: chrono::Duration::from_std(args.late_after)
            .context("--late-after is too large")?,
        ..ferry.settings().clone()
    };
    serve(
        ferry.with_settings(settings),
        backend,
        SocketAddr::new(ip, args.port),
        token,
        args.tick_interval,
        None,
    )
    .await
}

/// `ferry dev`: API on loopback, tick and an agent, in one process.
pub async fn dev(args: DevArgs) -> Result<()> {
    init_tracing();
    let cfg = crate::commands::agent_config(&args.agent)?;
    let backend = backend()?;
    let ferry = crate::commands::with_lease(build_ferry(backend).await?, &args.agent)?;
    let addr = SocketAddr::new(IpAddr::from([127, 0, 0, 1]), args.port);
    serve(ferry, backend, addr, None, args.tick_interval, Some(cfg)).await
}

async fn serve(
    ferry: Ferry,
    backend: Backend,
    addr: SocketAddr,
    token: Option<String>,
    tick_every: std::time::Duration,
    agent: Option<AgentConfig>,
) -> Result<()> {
    ferry.ensure_default_queue().await?;
    let ferry = with_launchers(ferry)?;
    let shutdown = CancellationToken::new();
    // Runs created through this process's API wake the tick (it launches those of launched
    // deployments at once) and the in-process agent, if any.
    let tick_wake = Arc::new(tokio::sync::Notify::new());
    let (agent, agent_wake) = match agent {
        Some(cfg) => {
            let a = Agent::new(ferry.clone(), cfg);
            let wake = a.waker();
            (Some(a), Some(wake))
        }
        None => (None, None),
    };
    // ...and every agent waiting in a long poll of the claims endpoint.
    let claim_waits = ferry_api::ClaimWaits::wait_in_process();
    let wake = tick_wake.clone();
    let waits = claim_waits.clone();
    let ferry = ferry.with_on_run_created(move || {
        wake.notify_one();
        if let Some(w) = &agent_wake {
            w.notify_one();
        }
        waits.wake_all();
    });
    if backend == Backend::Aws {
        follow_stream(&ferry, shutdown.clone()).await?;
    }
    let agent_task = agent.map(|a| {
        // The agent's own use cases: the same ports, without the API's run-created hook.
        let stop = shutdown.clone();
        tokio::spawn(async move { a.run(stop).await })
    });
    let state = ApiState {
        ferry: ferry.clone(),
        token: token.map(Arc::from),
        backend,
        claim_waits: claim_waits.clone(),
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind {addr}"))?;
    let local = listener.local_addr()?;
    // One line (the first a supervisor reads, and maybe the last: a reader that then closes
    // the pipe must not make a second write fail).
    let store = match backend {
        Backend::Aws => {
            let cfg = aws_config()?;
            format!("backend aws: table {}, bucket {}", cfg.table, cfg.bucket)
        }
        Backend::Embedded => format!("FERRY_HOME={}", ferry_home()?.display()),
    };
    println!("Ferry API listening on http://{local} ({store}); dashboard at http://{local}/");
    let tick = tokio::spawn(tick_loop(ferry, tick_every, tick_wake, claim_waits.clone()));
    let stop = shutdown.clone();
    axum::serve(listener, ferry_api::router(state))
        .with_graceful_shutdown(async move {
            shutdown_signal().await;
            stop.cancel();
            // Graceful shutdown waits for every request: long polls answer now.
            claim_waits.close();
        })
        .await
        .context("serving the API")?;
    shutdown.cancel();
    if let Some(a) = agent_task {
        let report = a.await?;
        println!(
            "Agent stopped: {} runs claimed, {} finished",
            report.claimed, report.finished
        );
    }
    tick.abort();
    Ok(())
}

/// `ferry server tick`: one tick, its report and duration as JSON.
pub async fn tick_once(late_after: std::time::Duration) -> Result<()> {
    let ferry = build_ferry(backend()?).await?;
    let settings = Settings {
        late_after: chrono::Duration::from_std(late_after)?,
        ..ferry.settings().clone()
    };
    let ferry = ferry.with_settings(settings);
    let started = std::time::Instant::now();
    let report = ferry.tick().await?;
    let mut v = serde_json::to_value(&report)?;
    v["elapsed_ms"] = serde_json::json!(started.elapsed().as_secs_f64() * 1000.0);
    println!("{}", serde_json::to_string(&v)?);
    Ok(())
}

/// Dispatch on the AWS backend: follows the table's stream and launches each run of a launched
/// deployment that comes due (created by any process: another server, the API Lambda, a
/// retry) — what the dispatch Lambda does in the serverless deployment. A missed record is
/// launched by the tick.
async fn follow_stream(ferry: &Ferry, shutdown: CancellationToken) -> Result<()> {
    let sdk = ferry_aws::config::sdk_config().await;
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    ferry_aws::stream::StreamReader::new(
        ferry_aws::config::dynamodb_streams_client(&sdk),
        ferry_aws::config::dynamodb_client(&sdk),
        aws_config()?.table,
    )
    .start(tx, shutdown)
    .await
    .context("following the table's stream (dispatch)")?;
    let ferry = ferry.clone();
    tokio::spawn(async move {
        while let Some(id) = rx.recv().await {
            if let Err(e) = ferry.dispatch(id).await {
                tracing::warn!(run_id = %id, error = %ferry_core::error::error_chain(&e), "dispatch failed; the tick launches the run");
            }
        }
    });
    Ok(())
}

/// Task launchers of this process: local `ferry agent execute` processes for `process/NAME`
/// profiles (their output under FERRY_HOME/tasks).
fn with_launchers(ferry: Ferry) -> Result<Ferry> {
    let exe = std::env::current_exe().context("locating the ferry binary for process tasks")?;
    let tasks = ferry_home()?.join("tasks");
    Ok(ferry.with_launcher(
        ferry_core::infra::InfraKind::Process,
        Arc::new(ferry_embedded::ProcessLauncher::new(exe, tasks)),
    ))
}

/// The tick every `every` (and at once when `wake` is notified); a tick that wrote runs,
/// reaped leases or freed slots wakes the claims waiting in long polls (`waits`).
async fn tick_loop(
    ferry: Ferry,
    every: std::time::Duration,
    wake: Arc<tokio::sync::Notify>,
    waits: ferry_api::ClaimWaits,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = wake.notified() => {}
        }
        match ferry.tick().await {
            Ok(r) => {
                if r.runs_created + r.reaped + r.slots_swept > 0 {
                    waits.wake_all();
                }
                if r.runs_created + r.marked_late + r.launched + r.relaunched > 0 {
                    tracing::info!(?r, "tick")
                }
            }
            Err(e) => {
                tracing::warn!(error = %format!("{:#}", anyhow::Error::from(e)), "tick failed; retrying next tick")
            }
        }
    }
}

pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Logs of the server and the agent, on stderr: the filter from `FERRY_LOG` (tracing's
/// `EnvFilter` syntax, default `info`), the format from `FERRY_LOG_FORMAT` (`text`, the
/// default, or `json`: one JSON object per line). Colours only when stderr is a terminal and
/// `NO_COLOR` is unset, so logs captured to a file or CloudWatch carry no escape codes. A
/// value that does not parse ends the process naming the variable and the accepted values.
pub fn init_tracing() {
    let fail = |message: String| -> ! {
        eprintln!("error: {message}");
        std::process::exit(2)
    };
    let filter = match std::env::var("FERRY_LOG") {
        Ok(v) if !v.trim().is_empty() => {
            tracing_subscriber::EnvFilter::try_new(&v).unwrap_or_else(|e| {
                fail(format!(
                    "FERRY_LOG={v:?} is not a log filter ({e}): use a level like `info` or \
                     `debug`, or directives like `warn,ferry_app=debug`"
                ))
            })
        }
        _ => tracing_subscriber::EnvFilter::new("info"),
    };
    let json = match std::env::var("FERRY_LOG_FORMAT").as_deref().map(str::trim) {
        Err(_) | Ok("" | "text") => false,
        Ok("json") => true,
        Ok(other) => fail(format!(
            "FERRY_LOG_FORMAT={other:?} is not a log format: use `text` (the default) or `json`"
        )),
    };
    let ansi = !json
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let installed = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    // Already installed (a second call in one process): the first subscriber stays.
    if let Err(e) = installed {
        tracing::debug!("logging already set up: {e}");
    }
}
