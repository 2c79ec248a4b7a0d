use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use ferry_api::ApiState;
use ferry_app::{Ferry, SystemClock};
use ferry_embedded::{FsCodeStore, SqliteStore};

use crate::args::ServerStart;

/// `FERRY_HOME`, default `~/.ferry`.
pub fn ferry_home() -> Result<PathBuf> {
    if let Some(h) = std::env::var_os("FERRY_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(h));
    }
    let home = std::env::var_os("HOME").context("neither FERRY_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".ferry"))
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
    let mut ferry = embedded_ferry()?;
    ferry.settings.late_after =
        chrono::Duration::from_std(args.late_after).context("--late-after is too large")?;
    ferry.ensure_default_queue().await?;
    let state = ApiState {
        ferry: ferry.clone(),
        token: token.map(Arc::from),
        backend: "embedded",
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, args.port))
        .await
        .with_context(|| format!("cannot bind {ip}:{}", args.port))?;
    let addr = listener.local_addr()?;
    println!(
        "Ferry API listening on http://{addr} (FERRY_HOME={})",
        ferry_home()?.display()
    );
    let tick = tokio::spawn(tick_loop(ferry, args.tick_interval));
    axum::serve(listener, ferry_api::router(state))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving the API")?;
    tick.abort();
    Ok(())
}

async fn tick_loop(ferry: Ferry, every: std::time::Duration) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match ferry.tick().await {
            Ok(r) if r.runs_created + r.marked_late > 0 => {
                tracing::info!(?r, "tick")
            }
            Ok(_) => {}
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

pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("FERRY_LOG_FORMAT").as_deref() == Ok("json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}
