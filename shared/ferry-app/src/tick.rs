use chrono::{DateTime, Utc};
use ferry_core::horizon;
use ferry_core::ids::RunId;
use ferry_core::ports::{InsertOutcome, StoreError};
use ferry_core::run::{FlowRun, Origin};
use ferry_core::schedule::{Schedule, ScheduleError};
use ferry_core::state::{transition, RunEvent};
use ferry_core::Deployment;
use serde::{Deserialize, Serialize};

use crate::{AppError, Ferry};

/// What one tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickReport {
    /// Deployments whose horizon was extended.
    pub deployments_extended: usize,
    /// Runs written.
    pub runs_created: usize,
    /// Runs another tick had written already (lost `attribute_not_exists`).
    pub runs_existing: usize,
    /// Deployments another writer changed mid-tick (left for the next tick).
    pub conflicts: usize,
    /// Runs marked Late.
    pub marked_late: usize,
    /// Held runs whose lease expired, crashed (and retried when allowed).
    pub reaped: usize,
    /// Stale concurrency-slot holders freed.
    pub slots_swept: usize,
    /// Runs of launched deployments whose task was started (pre-launch, missed dispatch).
    #[serde(default)]
    pub launched: usize,
    /// Launched runs whose task failed to take them: relaunched, or crashed.
    #[serde(default)]
    pub relaunched: usize,
    /// What failed, each with its cause; the tick's other duties went on regardless.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<TickFailure>,
}

/// One thing a tick could not do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TickFailure {
    /// The duty: `extend`, `mark_late`, `reap`, `sweep_slots`, `launch` or `supervise_launch`.
    pub duty: String,
    /// What it was working on (`deployment etl/nightly`, `work queue q`, `flow run <id>`).
    pub subject: String,
    /// The error with its whole cause chain.
    pub error: String,
}

impl TickFailure {
    pub(crate) fn new(duty: &str, subject: impl Into<String>, e: &AppError) -> Self {
        let f = Self {
            duty: duty.to_owned(),
            subject: subject.into(),
            error: ferry_core::error::error_chain(e),
        };
        tracing::error!(duty = %f.duty, subject = %f.subject, error = %f.error, "tick duty failed; the next tick tries again");
        f
    }
}

/// Deployments whose horizon one tick extends at once.
const TICK_PARALLELISM: usize = 16;

impl Ferry {
    /// One tick: extend the horizon of every deployment whose `next_tick_at` has come, mark
    /// late runs, supervise launched runs and launch those due within their launch lead, reap
    /// expired leases and sweep stale slot holders. Safe to run concurrently
    /// with itself: run ids are deterministic and every write is conditional. A failure of one
    /// deployment, queue or run is recorded in the report and does not stop the other duties.
    pub async fn tick(&self) -> Result<TickReport, AppError> {
        let now = self.now();
        let mut report = TickReport::default();
        if let Err(e) = self.extend_due_deployments(now, &mut report).await {
            report
                .failures
                .push(TickFailure::new("extend", "horizon index", &e));
        }
        match self.mark_late(now, &mut report.failures).await {
            Ok(n) => report.marked_late = n,
            Err(e) => report
                .failures
                .push(TickFailure::new("mark_late", "work queues", &e)),
        }
        match self.supervise_launches(now, &mut report.failures).await {
            Ok(n) => report.relaunched = n,
            Err(e) => {
                report
                    .failures
                    .push(TickFailure::new("supervise_launch", "launched runs", &e))
            }
        }
        match self.launch_due(now, &mut report.failures).await {
            Ok(n) => report.launched = n,
            Err(e) => report
                .failures
                .push(TickFailure::new("launch", "launch index", &e)),
        }
        match self.reap_expired_leases(now, &mut report.failures).await {
            Ok(n) => report.reaped = n,
            Err(e) => report
                .failures
                .push(TickFailure::new("reap", "lease index", &e)),
        }
        match self.store.sweep_slots(now).await {
            Ok(n) => report.slots_swept = n,
            Err(e) => report
                .failures
                .push(TickFailure::new("sweep_slots", "slots", &e.into())),
        }
        Ok(report)
    }

    /// Extends every deployment due for a tick, in batches until none is left (a deployment
    /// that lost a race or failed stays due and is left for the next tick; at most 50 batches).
    async fn extend_due_deployments(
        &self,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), AppError> {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let due = self
                .store
                .deployments_due_for_tick(now, self.settings().tick_batch)
                .await?;
            let full = due.len() == self.settings().tick_batch;
            let mut fresh = 0;
            // Deployments are independent: extend up to TICK_PARALLELISM of them at once.
            let mut tasks = tokio::task::JoinSet::new();
            let mut of_task = std::collections::HashMap::new();
            let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(TICK_PARALLELISM));
            for d in due {
                if !seen.insert(d.id.clone()) {
                    continue;
                }
                fresh += 1;
                let (ferry, permits, id) = (self.clone(), permits.clone(), d.id.clone());
                let task = tasks.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let mut part = TickReport::default();
                    let result = ferry.extend_horizon(d, now, &mut part).await;
                    (part, result)
                });
                of_task.insert(task.id(), id);
            }
            while let Some(joined) = tasks.join_next_with_id().await {
                let (task, outcome) = match joined {
                    Ok((task, outcome)) => (task, Ok(outcome)),
                    Err(e) => (e.id(), Err(e)),
                };
                let subject = of_task.get(&task).map_or_else(
                    || "a deployment".to_owned(),
                    |id| format!("deployment {id}"),
                );
                let (part, result) = match outcome {
                    Ok(o) => o,
                    Err(e) => {
                        let e = AppError::Internal(format!("its horizon task failed: {e}"));
                        report
                            .failures
                            .push(TickFailure::new("extend", subject, &e));
                        continue;
                    }
                };
                report.deployments_extended += part.deployments_extended;
                report.runs_created += part.runs_created;
                report.runs_existing += part.runs_existing;
                match result {
                    Ok(()) => {}
                    Err(AppError::Store(StoreError::Conflict(_))) => report.conflicts += 1,
                    Err(e) => report
                        .failures
                        .push(TickFailure::new("extend", subject, &e)),
                }
            }
            if !full || fresh == 0 {
                break;
            }
        }
        Ok(())
    }

    async fn extend_horizon(
        &self,
        d: Deployment,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), AppError> {
        // The spec was validated when it was applied; only its schedules need parsing here.
        let parsed: Result<Vec<Schedule>, ScheduleError> =
            d.spec.schedules.iter().map(Schedule::parse).collect();
        let schedules = match parsed {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(deployment = %d.id, error = %e, "stored schedule is invalid; not scheduling it");
                return self.park(d).await;
            }
        };
        if d.spec.paused || !schedules.iter().any(|s| s.spec().active) {
            return self.park(d).await;
        }
        let cursor = d.scheduled_until.unwrap_or(now);
        let plan = horizon::plan(&schedules, cursor, now, d.spec.catchup);
        let mut written = Vec::new();
        for t in &plan.fire_times {
            let mut run = FlowRun::new_scheduled(
                RunId::scheduled(&d.id, *t),
                d.id.clone(),
                d.spec.work_queue.clone(),
                d.spec.parameters.clone(),
                *t,
                Origin::Schedule,
                1,
                now,
            );
            run.schedule_digest = Some(d.schedule_digest.clone());
            run.infra = d.spec.infra_block.clone();
            match self.store.insert_run(&run).await? {
                InsertOutcome::Inserted => {
                    report.runs_created += 1;
                    written.push(run);
                }
                InsertOutcome::Exists(_) => report.runs_existing += 1,
            }
        }
        let mut next = d.clone();
        next.version += 1; // bookkeeping: the user's revision stays
        next.scheduled_until = Some(plan.scheduled_until);
        next.next_tick_at = Some(plan.next_tick_at);
        match self.store.put_deployment(&next, Some(d.version)).await {
            Ok(()) => {
                report.deployments_extended += 1;
                tracing::debug!(deployment = %d.id, runs = written.len(), until = %plan.scheduled_until, "horizon extended");
                Ok(())
            }
            Err(StoreError::Conflict(m)) => {
                // The deployment changed under us (re-applied, paused, deleted, or another tick).
                // Runs we wrote from a spec that is no longer current must not survive.
                let current = self.store.get_deployment(&d.id).await?;
                let stale = match &current {
                    None => true,
                    Some(c) => d.reschedules(c),
                };
                if stale {
                    for r in written {
                        match self.store.delete_run(r.id, r.version).await {
                            Ok(()) | Err(StoreError::Conflict(_)) => {} // claimed meanwhile
                            Err(e) => {
                                tracing::error!(run_id = %r.id, error = %ferry_core::error::error_chain(&e), "cannot delete a run written from a stale schedule");
                                return Err(e.into());
                            }
                        }
                    }
                }
                Err(StoreError::Conflict(m).into())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Takes a deployment off the horizon index (paused, no active schedule, invalid).
    async fn park(&self, d: Deployment) -> Result<(), AppError> {
        let mut next = d.clone();
        next.version += 1; // bookkeeping: the user's revision stays
        next.next_tick_at = None;
        self.store.put_deployment(&next, Some(d.version)).await?;
        Ok(())
    }

    /// Marks every Scheduled run due before `now - late_after` Late. Reads only Scheduled runs
    /// (never the backlog already Late), so it costs O(runs becoming late); a paused queue's
    /// runs become Late like any other's.
    async fn mark_late(
        &self,
        now: DateTime<Utc>,
        failures: &mut Vec<TickFailure>,
    ) -> Result<usize, AppError> {
        const PAGE: usize = 500;
        let threshold = now - self.settings().late_after;
        let mut marked = 0;
        for q in self.store.list_queues().await? {
            // Each page's runs leave the Scheduled range once marked (or claimed meanwhile), so
            // the next read starts past them; bounded so a huge backlog spreads over ticks.
            for _ in 0..40 {
                let page = match self.store.scheduled_due(&q.name, threshold, PAGE).await {
                    Ok(p) => p,
                    Err(e) => {
                        let subject = format!("work queue {}", q.name);
                        failures.push(TickFailure::new("mark_late", subject, &e.into()));
                        break;
                    }
                };
                let mut progressed = false;
                for run in &page {
                    let Ok(late) = transition(run, RunEvent::MarkLate, now) else {
                        continue;
                    };
                    match self.store.update_run(&late, run.version).await {
                        Ok(()) => {
                            marked += 1;
                            progressed = true;
                        }
                        Err(StoreError::Conflict(_)) => progressed = true,
                        Err(e) => {
                            let subject = format!("flow run {}", run.id);
                            failures.push(TickFailure::new("mark_late", subject, &e.into()));
                        }
                    }
                }
                if page.len() < PAGE || !progressed {
                    break;
                }
            }
        }
        Ok(marked)
    }
}
