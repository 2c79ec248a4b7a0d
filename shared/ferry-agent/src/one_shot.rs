//! `ferry agent execute RUN_ID --launch N`: the one-shot agent of a launched task. It takes
//! over the run its launch was started for (a conditional write: only while that launch still
//! holds it), then runs it exactly as a long-running agent runs a claimed run — wait until its
//! time, fetch and verify the bundle, run with heartbeats, logs, timeout and cancel — and
//! reports how it ended.

use std::sync::Arc;

use ferry_app::{AppError, Ferry, TakeOver};
use ferry_core::{FlowRun, RunId};
use tokio_util::sync::CancellationToken;

use crate::agent::AgentConfig;
use crate::bundle_cache::BundleCache;
use crate::lifecycle::{execute, RunContext};
use crate::plane::Direct;

/// How a one-shot agent ended.
#[derive(Debug)]
pub enum OneShotEnd {
    /// The run was taken and handled here; the run as stored afterwards.
    Ran(Box<FlowRun>),
    /// Nothing was taken (finished, cancelled, another task's), with the reason; nothing was
    /// written.
    NothingToDo(String),
}

/// Takes over run `id` for launch `attempt` and runs it to its end. `shutdown` (the task's
/// SIGTERM) gives a run not started yet back, and stops a running one after the shutdown grace.
pub async fn execute_launched(
    ferry: Ferry,
    cfg: AgentConfig,
    id: RunId,
    attempt: u32,
    shutdown: CancellationToken,
) -> Result<OneShotEnd, AppError> {
    let (run, deployment) = match ferry.take_over(id, attempt, &cfg.name).await? {
        TakeOver::Taken(run, deployment) => (*run, *deployment),
        TakeOver::NothingToDo(why) => return Ok(OneShotEnd::NothingToDo(why)),
    };
    let kill = CancellationToken::new();
    let grace = cfg.shutdown_grace;
    let killer = {
        let (shutdown, kill) = (shutdown.clone(), kill.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            tokio::time::sleep(grace).await;
            kill.cancel();
        })
    };
    let ctx = RunContext {
        warm: None,
        plane: Arc::new(Direct::new(ferry.clone())),
        cache: Arc::new(BundleCache::new(cfg.cache_dir.clone())),
        cfg: Arc::new(cfg),
        shutdown,
        kill,
    };
    execute(ctx, run, deployment).await;
    killer.abort();
    Ok(OneShotEnd::Ran(Box::new(ferry.get_run(id).await?)))
}
