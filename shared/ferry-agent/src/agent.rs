use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_app::{AppError, Claim, Ferry};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::bundle_cache::BundleCache;
use crate::execute::{execute, RunContext};

/// How an agent works.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Queues to serve; served in queue priority order (1 first).
    pub queues: Vec<String>,
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
        let mut queues = Vec::new();
        for name in &self.cfg.queues {
            match self.ferry.store.get_queue(name).await? {
                Some(q) if !q.paused => queues.push(q),
                _ => {}
            }
        }
        queues.sort_by_key(|q| (q.priority, q.name.clone()));
        let mut claimed = 0;
        let horizon =
            self.ferry.now() + chrono::Duration::from_std(self.cfg.prefetch).unwrap_or_default();
        for q in queues {
            let free = self
                .cfg
                .limit
                .saturating_sub(self.active.load(Ordering::SeqCst));
            if free == 0 {
                break;
            }
            let due = self
                .ferry
                .store
                .due_runs(&q.name, horizon, free * 2 + 4)
                .await?;
            for run in spread(due, self.ferry.now()) {
                if self.active.load(Ordering::SeqCst) >= self.cfg.limit {
                    break;
                }
                match self.ferry.claim_in(&run, &self.cfg.name, Some(&q)).await? {
                    Claim::Claimed(run, deployment) => {
                        claimed += 1;
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
                            let finished = execute(ctx, *run, *deployment).await;
                            active.fetch_sub(1, Ordering::SeqCst);
                            wake.notify_one();
                            finished
                        });
                    }
                    Claim::SlotFull(key) if key.starts_with("Q#") => break,
                    Claim::SlotFull(_) | Claim::Lost => {}
                }
            }
        }
        Ok(claimed)
    }
}

/// Runs already due in random order (so agents polling the same queue do not all race for the
/// same head-of-queue runs), then the prefetched ones in time order.
fn spread(
    runs: Vec<ferry_core::FlowRun>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<ferry_core::FlowRun> {
    let (mut due, later): (Vec<_>, Vec<_>) =
        runs.into_iter().partition(|r| r.scheduled_time <= now);
    due.sort_by_cached_key(|_| uuid::Uuid::new_v4());
    due.extend(later);
    due
}
