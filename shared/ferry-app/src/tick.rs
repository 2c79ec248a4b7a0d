use chrono::{DateTime, Utc};
use ferry_core::horizon;
use ferry_core::ids::RunId;
use ferry_core::ports::{InsertOutcome, StoreError};
use ferry_core::run::{FlowRun, Origin};
use ferry_core::state::{transition, RunEvent, StateType};
use ferry_core::validate::validate_spec;
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
}

/// Deployments whose horizon one tick extends at once.
const TICK_PARALLELISM: usize = 16;

impl Ferry {
    /// One tick: extend the horizon of every deployment whose `next_tick_at` has come, then
    /// mark late runs. Safe to run concurrently with itself: run ids are deterministic and every
    /// write is conditional.
    pub async fn tick(&self) -> Result<TickReport, AppError> {
        let now = self.now();
        let mut report = TickReport::default();
        // Batches until nothing is due; a deployment that lost a race stays due and is left
        // for the next tick (bounded: at most 50 batches per tick).
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let due = self
                .store
                .deployments_due_for_tick(now, self.settings.tick_batch)
                .await?;
            let full = due.len() == self.settings.tick_batch;
            let mut fresh = 0;
            // Deployments are independent: extend up to TICK_PARALLELISM of them at once.
            let mut tasks = tokio::task::JoinSet::new();
            let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(TICK_PARALLELISM));
            for d in due {
                if !seen.insert(d.id.clone()) {
                    continue;
                }
                fresh += 1;
                let (ferry, permits) = (self.clone(), permits.clone());
                tasks.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    let mut part = TickReport::default();
                    let result = ferry.extend_horizon(d, now, &mut part).await;
                    (part, result)
                });
            }
            let mut failure = None;
            while let Some(joined) = tasks.join_next().await {
                let (part, result) =
                    joined.map_err(|e| AppError::Conflict(format!("tick task failed: {e}")))?;
                report.deployments_extended += part.deployments_extended;
                report.runs_created += part.runs_created;
                report.runs_existing += part.runs_existing;
                match result {
                    Ok(()) => {}
                    Err(AppError::Store(StoreError::Conflict(_))) => report.conflicts += 1,
                    Err(e) => failure = Some(e),
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
            if !full || fresh == 0 {
                break;
            }
        }
        report.marked_late = self.mark_late(now).await?;
        report.reaped = self.reap_expired_leases(now).await?;
        report.slots_swept = self.store.sweep_slots(now).await?;
        Ok(report)
    }

    async fn extend_horizon(
        &self,
        d: Deployment,
        now: DateTime<Utc>,
        report: &mut TickReport,
    ) -> Result<(), AppError> {
        let valid = match validate_spec(&d.spec) {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(deployment = %d.id, error = %e, "stored deployment is invalid; not scheduling it");
                return self.park(d).await;
            }
        };
        if d.spec.paused || !valid.schedules.iter().any(|s| s.spec().active) {
            return self.park(d).await;
        }
        let cursor = d.scheduled_until.unwrap_or(now);
        let plan = horizon::plan(&valid.schedules, cursor, now, d.spec.catchup);
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
            match self.store.insert_run(&run).await? {
                InsertOutcome::Inserted => {
                    report.runs_created += 1;
                    written.push(run);
                }
                InsertOutcome::Exists(_) => report.runs_existing += 1,
            }
        }
        let mut next = d.clone();
        next.revision += 1;
        next.scheduled_until = Some(plan.scheduled_until);
        next.next_tick_at = Some(plan.next_tick_at);
        match self.store.put_deployment(&next, Some(d.revision)).await {
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
                    Some(c) => {
                        c.schedule_digest != d.schedule_digest
                            || c.spec.paused
                            || c.spec.parameters != d.spec.parameters
                            || c.spec.work_queue != d.spec.work_queue
                    }
                };
                if stale {
                    for r in written {
                        let _ = self.store.delete_run(r.id, r.version).await;
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
        next.revision += 1;
        next.next_tick_at = None;
        self.store.put_deployment(&next, Some(d.revision)).await?;
        Ok(())
    }

    async fn mark_late(&self, now: DateTime<Utc>) -> Result<usize, AppError> {
        let threshold = now - self.settings.late_after;
        let mut marked = 0;
        for q in self.store.list_queues().await? {
            for run in self.store.due_runs(&q.name, threshold, 1000).await? {
                if run.state != StateType::Scheduled {
                    continue;
                }
                let Ok(late) = transition(&run, RunEvent::MarkLate, now) else {
                    continue;
                };
                match self.store.update_run(&late, run.version).await {
                    Ok(()) => marked += 1,
                    Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(marked)
    }
}
