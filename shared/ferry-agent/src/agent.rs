use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_app::{AppError, Claim, Ferry};
use ferry_core::{Deployment, FlowRun, WorkQueue};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bundle_cache::BundleCache;
use crate::lifecycle::{execute, RunContext};

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
}

/// What an agent did before it stopped.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AgentReport {
    /// Runs claimed.
    pub claimed: usize,
    /// Runs that ran to a final state here.
    pub finished: usize,
}

/// A long-running agent.
pub struct Agent {
    ferry: Ferry,
    cfg: Arc<AgentConfig>,
    cache: Arc<BundleCache>,
    active: Arc<AtomicUsize>,
    wake: Arc<Notify>,
}

impl Agent {
    /// An agent over the use cases of `ferry`.
    pub fn new(ferry: Ferry, cfg: AgentConfig) -> Self {
        let cache = Arc::new(BundleCache::new(cfg.cache_dir.clone()));
        Self {
            ferry,
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
    /// lets running ones finish within the shutdown grace and kills the rest.
    pub async fn run(self, shutdown: CancellationToken) -> AgentReport {
        let kill = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut report = AgentReport::default();
        tracing::info!(agent = %self.cfg.name, queues = ?self.cfg.queues, limit = self.cfg.limit, "agent started");
        while !shutdown.is_cancelled() {
            while let Some(done) = tasks.try_join_next() {
                if matches!(done, Ok(true)) {
                    report.finished += 1;
                }
            }
            let claimed = match self.poll_once(&mut tasks, &shutdown, &kill).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %ferry_core::error::error_chain(&e), "poll failed; retrying");
                    0
                }
            };
            report.claimed += claimed;
            let full = self.active.load(Ordering::SeqCst) >= self.cfg.limit;
            if claimed == 0 || full {
                tokio::select! {
                    _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                    _ = self.wake.notified() => {}
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

    /// One poll: claims what fits under `limit` from the queues, by priority, and starts a task
    /// per claimed run. Returns how many were claimed.
    pub async fn poll_once(
        &self,
        tasks: &mut JoinSet<bool>,
        shutdown: &CancellationToken,
        kill: &CancellationToken,
    ) -> Result<usize, AppError> {
        let queues = self.ferry.queues_to_serve(&self.cfg.queues).await?;
        let mut claimed = 0;
        let horizon =
            self.ferry.now() + chrono::Duration::from_std(self.cfg.prefetch).unwrap_or_default();
        for q in queues {
            if self.free() == 0 {
                break;
            }
            claimed += self.claim_from(&q, horizon, tasks, shutdown, kill).await?;
        }
        Ok(claimed)
    }

    fn free(&self) -> usize {
        self.cfg
            .limit
            .saturating_sub(self.active.load(Ordering::SeqCst))
    }

    /// Claims what fits from one queue. Runs of a deployment found at its concurrency limit
    /// are skipped for the rest of this poll and the due index is read on past them (page by
    /// page, up to [`SCAN_BUDGET`] runs), so one deployment at its limit never starves the
    /// others behind it in the queue.
    async fn claim_from(
        &self,
        q: &WorkQueue,
        horizon: chrono::DateTime<chrono::Utc>,
        tasks: &mut JoinSet<bool>,
        shutdown: &CancellationToken,
        kill: &CancellationToken,
    ) -> Result<usize, AppError> {
        let mut claimed = 0;
        let mut full_deployments = HashSet::new();
        let mut after: Option<FlowRun> = None;
        let mut scanned = 0;
        loop {
            let free = self.free();
            if free == 0 {
                return Ok(claimed);
            }
            let want = if after.is_none() { free * 2 + 4 } else { 100 };
            let page = self
                .ferry
                .claimable_runs(&q.name, horizon, after.as_ref(), want)
                .await?;
            scanned += page.len();
            let exhausted = page.len() < want;
            after = page.last().cloned();
            let mut skipped = false;
            for run in spread(page, self.ferry.now()) {
                if self.free() == 0 {
                    return Ok(claimed);
                }
                if full_deployments.contains(&run.deployment) {
                    skipped = true;
                    continue;
                }
                match self.ferry.claim_in(&run, &self.cfg.name, Some(q)).await? {
                    Claim::Claimed(run, deployment) => {
                        claimed += 1;
                        self.spawn_run(*run, *deployment, tasks, shutdown, kill);
                    }
                    Claim::SlotFull(key) if key == q.slot_key() => return Ok(claimed),
                    Claim::SlotFull(_) => {
                        full_deployments.insert(run.deployment.clone());
                        skipped = true;
                    }
                    Claim::Lost => skipped = true,
                }
            }
            if exhausted || !skipped || scanned >= SCAN_BUDGET {
                return Ok(claimed);
            }
        }
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
            ferry: self.ferry.clone(),
            cfg: self.cfg.clone(),
            cache: self.cache.clone(),
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

/// Most due runs one poll reads from a queue while looking past runs it cannot start.
const SCAN_BUDGET: usize = 2_000;

/// Runs already due in random order (so agents polling the same queue do not all race for the
/// same head-of-queue runs), then the prefetched ones in time order.
fn spread(runs: Vec<FlowRun>, now: chrono::DateTime<chrono::Utc>) -> Vec<FlowRun> {
    let (mut due, later): (Vec<_>, Vec<_>) =
        runs.into_iter().partition(|r| r.scheduled_time <= now);
    due.sort_by_cached_key(|_| uuid::Uuid::new_v4());
    due.extend(later);
    due
}
