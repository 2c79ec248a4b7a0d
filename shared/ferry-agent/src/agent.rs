use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_app::Ferry;
use ferry_core::agent::AgentPresence;
use ferry_core::{Deployment, FlowRun};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bundle_cache::BundleCache;
use crate::lifecycle::{execute, RunContext};
use crate::plane::{ClaimRequest, ControlPlane, Direct, PlaneError};

/// How an agent works.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Queues to serve; served in queue priority order (1 first).
    pub queues: Vec<ferry_core::QueueName>,
    /// Most runs held at once (Pending + Running).
    pub limit: usize,
    /// Pause between polls when there is nothing to claim.
    pub poll_interval: Duration,
    /// Claim runs due within this look-ahead; they start at their scheduled time, not before.
    pub prefetch: Duration,
    /// This agent's id (shown in leases).
    pub name: String,
    /// Where each run's bundle is unpacked (a fresh directory per run, removed afterwards).
    pub work_dir: PathBuf,
    /// Where bundles are cached by digest.
    pub cache_dir: PathBuf,
    /// Python interpreter when the deployment names none (`FERRY_PYTHON`, else `python3`).
    pub python: String,
    /// Time between SIGTERM and SIGKILL when a run is cancelled or times out.
    pub kill_grace: Duration,
    /// On shutdown, how long running runs may go on before they are killed.
    pub shutdown_grace: Duration,
    /// How often a held run's lease is renewed (and a cancel request noticed).
    pub heartbeat_every: Duration,
    /// Kills this agent's flows if the agent dies (see [`crate::guard`]); `None` in tests
    /// that run the agent in-process without the `ferry` binary.
    pub guard: Option<Arc<crate::guard::ProcessGuard>>,
    /// Where the deployment's secret references (`ssm:`, `secretsmanager:`, `secret:`) are
    /// resolved.
    pub secrets: crate::secrets::SecretSources,
    /// When a warm process (deployments with `warm: true`) is replaced.
    pub warm: crate::warm::WarmLimits,
}

/// What an agent did before it stopped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AgentReport {
    /// Runs claimed.
    pub claimed: usize,
    /// Runs that ran to a final state here.
    pub finished: usize,
}

/// How often at most an agent reports its presence.
pub const PRESENCE_EVERY: Duration = Duration::from_secs(10);

/// Longest pause between polls after failures (the API unreachable, the store busy).
const MAX_FAILURE_PAUSE: Duration = Duration::from_secs(30);

/// A long-running agent.
pub struct Agent {
    plane: Arc<dyn ControlPlane>,
    cfg: Arc<AgentConfig>,
    cache: Arc<BundleCache>,
    active: Arc<AtomicUsize>,
    wake: Arc<Notify>,
    warm: Arc<crate::warm::WarmPool>,
}

impl Agent {
    /// An agent over the use cases of `ferry`, in-process (the direct path).
    pub fn new(ferry: Ferry, cfg: AgentConfig) -> Self {
        Self::with_plane(Arc::new(Direct::new(ferry)), cfg)
    }

    /// An agent that reaches the control plane through `plane`.
    pub fn with_plane(plane: Arc<dyn ControlPlane>, cfg: AgentConfig) -> Self {
        let cache = Arc::new(BundleCache::new(cfg.cache_dir.clone()));
        let warm = Arc::new(crate::warm::WarmPool::new(&cfg.work_dir, cfg.warm));
        Self {
            warm,
            plane,
            cfg: Arc::new(cfg),
            cache,
            active: Arc::new(AtomicUsize::new(0)),
            wake: Arc::new(Notify::new()),
        }
    }

    /// Wakes the poll loop at once (e.g. a run was just created in-process).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Polls and runs until `shutdown` fires, then stops claiming, gives back prefetched runs,
    /// lets running ones finish within the shutdown grace and kills the rest. A poll that
    /// fails is retried after a pause that doubles with each failure in a row (up to 30 s).
    pub async fn run(self, shutdown: CancellationToken) -> AgentReport {
        let kill = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut report = AgentReport::default();
        let mut failures = 0u32;
        let mut presence_due = Instant::now();
        tracing::info!(agent = %self.cfg.name, queues = ?self.cfg.queues, limit = self.cfg.limit, path = ?self.plane.path(), "agent started");
        while !shutdown.is_cancelled() {
            while let Some(done) = tasks.try_join_next() {
                if matches!(done, Ok(true)) {
                    report.finished += 1;
                }
            }
            if Instant::now() >= presence_due {
                presence_due = Instant::now() + PRESENCE_EVERY;
                self.report_presence().await;
            }
            let long_poll = self.plane.long_polls();
            let polled = if long_poll {
                // A long poll may wait 20 s: shutdown does not wait for it (a run the server
                // claimed meanwhile is never started: its lease expires and it is reaped).
                tokio::select! {
                    p = self.poll_once(&mut tasks, &shutdown, &kill) => p,
                    _ = shutdown.cancelled() => break,
                }
            } else {
                self.poll_once(&mut tasks, &shutdown, &kill).await
            };
            let (claimed, pause) = match polled {
                Ok(n) => {
                    if failures > 0 {
                        tracing::info!("polling again: the control plane answers");
                    }
                    failures = 0;
                    (n, self.cfg.poll_interval)
                }
                Err(e) => {
                    let pause = failure_pause(self.cfg.poll_interval, failures);
                    failures = failures.saturating_add(1);
                    tracing::warn!(
                        "poll failed: {}; retrying in {:.1}s",
                        ferry_core::error::error_chain(&e),
                        pause.as_secs_f64()
                    );
                    (0, pause)
                }
            };
            report.claimed += claimed;
            let full = self.active.load(Ordering::SeqCst) >= self.cfg.limit;
            // An empty long poll already waited for work: ask again at once.
            let waited = self.plane.long_polls() && failures == 0 && claimed == 0 && !full;
            if (claimed == 0 || full) && !waited {
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = self.wake.notified(), if failures == 0 => {}
                    _ = shutdown.cancelled() => {}
                }
            }
        }
        tracing::info!(
            running = self.active.load(Ordering::SeqCst),
            "agent stopping: no new claims"
        );
        let drained = tokio::time::timeout(self.cfg.shutdown_grace, async {
            while let Some(done) = tasks.join_next().await {
                if matches!(done, Ok(true)) {
                    report.finished += 1;
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("shutdown grace over: killing the runs still going");
            kill.cancel();
            while let Some(done) = tasks.join_next().await {
                if matches!(done, Ok(true)) {
                    report.finished += 1;
                }
            }
        }
        tracing::info!(?report, "agent stopped");
        report
    }

    /// Reports this agent's presence; a control plane that does not take it (an API without
    /// the agents endpoint) is no reason to stop working.
    async fn report_presence(&self) {
        let presence = AgentPresence {
            name: self.cfg.name.clone(),
            queues: self.cfg.queues.clone(),
            host: host_name(),
            version: env!("CARGO_PKG_VERSION").into(),
            limit: u32::try_from(self.cfg.limit).unwrap_or(u32::MAX),
            running: u32::try_from(self.active.load(Ordering::SeqCst)).unwrap_or(u32::MAX),
            path: self.plane.path(),
        };
        if let Err(e) = self.plane.report_presence(&presence).await {
            tracing::warn!(error = %ferry_core::error::error_chain(&e), "presence not recorded (`ferry agent ls` will not show this agent)");
        }
    }

    /// One poll: claims what fits under `limit` from the queues (one call of the control
    /// plane's claim, [`ferry_app::Ferry::claim_batch`]) and starts a task per claimed run.
    /// Returns how many were claimed.
    pub async fn poll_once(
        &self,
        tasks: &mut JoinSet<bool>,
        shutdown: &CancellationToken,
        kill: &CancellationToken,
    ) -> Result<usize, PlaneError> {
        let free = self.free();
        if free == 0 {
            return Ok(0);
        }
        let req = ClaimRequest {
            agent: self.cfg.name.clone(),
            queues: self.cfg.queues.clone(),
            prefetch: self.cfg.prefetch,
            free,
        };
        let claimed = self.plane.claim(&req).await?;
        let n = claimed.len();
        for (run, deployment) in claimed {
            self.spawn_run(run, deployment, tasks, shutdown, kill);
        }
        Ok(n)
    }

    fn free(&self) -> usize {
        self.cfg
            .limit
            .saturating_sub(self.active.load(Ordering::SeqCst))
    }

    fn spawn_run(
        &self,
        run: FlowRun,
        deployment: Deployment,
        tasks: &mut JoinSet<bool>,
        shutdown: &CancellationToken,
        kill: &CancellationToken,
    ) {
        self.active.fetch_add(1, Ordering::SeqCst);
        let ctx = RunContext {
            plane: self.plane.clone(),
            cfg: self.cfg.clone(),
            cache: self.cache.clone(),
            warm: Some(self.warm.clone()),
            shutdown: shutdown.clone(),
            kill: kill.clone(),
        };
        let active = self.active.clone();
        let wake = self.wake.clone();
        tasks.spawn(async move {
            let finished = execute(ctx, run, deployment).await;
            active.fetch_sub(1, Ordering::SeqCst);
            wake.notify_one();
            finished
        });
    }
}

/// The pause after the `failures`-th failed poll in a row: the poll interval doubled per
/// failure, at least 1 s, at most [`MAX_FAILURE_PAUSE`].
pub fn failure_pause(poll_interval: Duration, failures: u32) -> Duration {
    let base = poll_interval.max(Duration::from_secs(1));
    base.saturating_mul(2u32.saturating_pow(failures.min(16)))
        .min(MAX_FAILURE_PAUSE)
}

/// This machine's host name.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_after_failed_polls_doubles_from_one_second_up_to_thirty() {
        let p = Duration::from_millis(100);
        let secs: Vec<u64> = (0..7).map(|n| failure_pause(p, n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(failure_pause(p, u32::MAX), MAX_FAILURE_PAUSE);
    }
}
