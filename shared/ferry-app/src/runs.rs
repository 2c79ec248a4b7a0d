//! The agent-facing use cases: claim, start, heartbeat, finish, release — and the reaper.
//! Every state change goes through `ferry_core::state::transition` and a version-conditional
//! write; a lost race re-reads and decides again.

use chrono::{DateTime, Duration, Utc};
use ferry_core::deployment::Deployment;
use ferry_core::ids::RunId;
use ferry_core::ports::{ClaimOutcome, SlotTake, StoreError};
use ferry_core::queue::queue_slot_key;
use ferry_core::run::{FlowRun, Origin, RunLease};
use ferry_core::state::{transition, RunEvent, StateType};
use ferry_core::WorkQueue;

use crate::{AppError, Ferry};

const RETRIES: usize = 8;

/// Result of a claim attempt.
#[derive(Debug)]
pub enum Claim {
    /// The run is ours: the stored claimed run and its deployment.
    Claimed(Box<FlowRun>, Box<Deployment>),
    /// Another agent (or a cancel) changed it first.
    Lost,
    /// A concurrency limit is reached (slot key).
    SlotFull(String),
}

/// Result of a heartbeat.
#[derive(Debug)]
pub enum Heartbeat {
    /// Lease renewed.
    Renewed(Box<FlowRun>),
    /// A user asked to cancel: stop the process, then `finish` with `ConfirmCancelled`.
    CancelRequested(Box<FlowRun>),
    /// The run is no longer ours (reaped, cancelled while pending): stop working on it.
    Lost(Box<FlowRun>),
}

impl Ferry {
    fn lease_for(&self, agent_id: &str, now: DateTime<Utc>) -> RunLease {
        RunLease {
            agent_id: agent_id.to_owned(),
            expires_at: now + self.settings.lease,
        }
    }

    /// Claims a waiting run for `agent_id`, taking the queue's and the deployment's
    /// concurrency slots in the same transaction.
    pub async fn claim(&self, run: &FlowRun, agent_id: &str) -> Result<Claim, AppError> {
        let queue = self.store.get_queue(&run.work_queue).await?;
        self.claim_in(run, agent_id, queue.as_ref()).await
    }

    /// [`Ferry::claim`] with the run's queue as the caller just read it (an agent reads its
    /// queues once per poll, not once per claim). The slot transaction enforces the limit.
    pub async fn claim_in(
        &self,
        run: &FlowRun,
        agent_id: &str,
        queue: Option<&WorkQueue>,
    ) -> Result<Claim, AppError> {
        if !run.state.is_waiting() {
            return Ok(Claim::Lost);
        }
        let Some(deployment) = self.store.get_deployment(&run.deployment).await? else {
            // Deleted deployment: nothing can run this; cancel it so it leaves the queue.
            if let Ok(next) = transition(
                run,
                RunEvent::Cancel {
                    reason: "deployment was deleted".into(),
                },
                self.now(),
            ) {
                let _ = self.store.update_run(&next, run.version).await;
            }
            return Ok(Claim::Lost);
        };
        let mut slots = Vec::new();
        if let Some(q) = queue.filter(|q| q.name == run.work_queue) {
            if q.paused {
                return Ok(Claim::Lost);
            }
            if let Some(limit) = q.concurrency_limit {
                slots.push(SlotTake {
                    key: queue_slot_key(&q.name),
                    limit,
                });
            }
        }
        if let Some(limit) = deployment.spec.concurrency_limit {
            slots.push(SlotTake {
                key: deployment.slot_key(),
                limit,
            });
        }
        let now = self.now();
        let claimed = transition(
            run,
            RunEvent::Claim {
                lease: self.lease_for(agent_id, now),
                slots: slots.iter().map(|s| s.key.clone()).collect(),
            },
            now,
        )
        .map_err(|e| AppError::Conflict(e.to_string()))?;
        Ok(
            match self.store.claim_run(&claimed, run.version, &slots).await? {
                ClaimOutcome::Claimed(r) => Claim::Claimed(r, Box::new(deployment)),
                ClaimOutcome::Lost => Claim::Lost,
                ClaimOutcome::SlotFull(k) => Claim::SlotFull(k),
            },
        )
    }

    /// Applies `event` to the run, re-reading on lost races. Returns the stored run, or the
    /// current one unchanged if the event no longer applies (e.g. the run was reaped).
    async fn apply_event(
        &self,
        mut run: FlowRun,
        event: RunEvent,
    ) -> Result<(FlowRun, bool), AppError> {
        for _ in 0..RETRIES {
            let next = match transition(&run, event.clone(), self.now()) {
                Ok(n) => n,
                Err(_) => return Ok((run, false)),
            };
            match self.store.update_run(&next, run.version).await {
                Ok(()) => return Ok((next, true)),
                Err(StoreError::Conflict(_)) => {
                    run = self
                        .store
                        .get_run(run.id)
                        .await?
                        .ok_or_else(|| AppError::not_found("flow run", run.id))?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Conflict(format!("run {} keeps changing", run.id)))
    }

    /// Marks a claimed run Running. `Ok(None)`: it was cancelled or reaped meanwhile.
    pub async fn start(
        &self,
        run: FlowRun,
        log_location: Option<String>,
    ) -> Result<Option<FlowRun>, AppError> {
        let (r, applied) = self
            .apply_event(run, RunEvent::Start { log_location })
            .await?;
        Ok(applied.then_some(r))
    }

    /// Renews the lease of a held run and reports a pending cancel.
    pub async fn heartbeat(&self, run: FlowRun) -> Result<Heartbeat, AppError> {
        let agent = run
            .lease
            .as_ref()
            .map(|l| l.agent_id.clone())
            .unwrap_or_default();
        let now = self.now();
        let event = RunEvent::Heartbeat {
            expires_at: now + self.settings.lease,
        };
        let (r, applied) = self.apply_event(run, event).await?;
        if !applied || r.lease.as_ref().map(|l| l.agent_id.as_str()) != Some(agent.as_str()) {
            return Ok(Heartbeat::Lost(Box::new(r)));
        }
        if r.state == StateType::Cancelling {
            return Ok(Heartbeat::CancelRequested(Box::new(r)));
        }
        Ok(Heartbeat::Renewed(Box::new(r)))
    }

    /// Gives a claimed, not yet started run back to its queue (agent shutting down).
    pub async fn release(&self, run: FlowRun) -> Result<FlowRun, AppError> {
        Ok(self.apply_event(run, RunEvent::Release).await?.0)
    }

    /// Records the end of a run (Complete, Fail, Crash, ConfirmCancelled) and schedules a
    /// retry when the deployment allows one. A run cancelled while its process finished ends
    /// as the process did; a run already reaped is left as it is.
    pub async fn finish(&self, run: FlowRun, event: RunEvent) -> Result<FlowRun, AppError> {
        let (r, _) = self.apply_event(run, event).await?;
        if matches!(r.state, StateType::Failed | StateType::Crashed) {
            self.schedule_retry(&r).await?;
        }
        Ok(r)
    }

    /// Writes the next attempt of a Failed/Crashed run if its deployment has retries left.
    /// The retry's id is derived from the failed run, so the agent and the reaper racing to
    /// retry the same run write it once.
    pub async fn schedule_retry(&self, failed: &FlowRun) -> Result<Option<FlowRun>, AppError> {
        let Some(d) = self.store.get_deployment(&failed.deployment).await? else {
            return Ok(None);
        };
        if failed.attempt > d.spec.retries {
            return Ok(None);
        }
        let ended = failed.ended_at.unwrap_or_else(|| self.now());
        let delay = i64::try_from(d.spec.retry_delay_seconds).unwrap_or(0);
        let at = ended + Duration::seconds(delay);
        let attempt = failed.attempt + 1;
        let mut retry = FlowRun::new_scheduled(
            RunId::retry(failed.id, attempt, ended),
            failed.deployment.clone(),
            d.spec.work_queue.clone(),
            failed.parameters.clone(),
            at,
            Origin::Retry,
            attempt,
            self.now(),
        );
        retry.retry_of = Some(failed.id);
        retry.history[0].message = Some(format!(
            "retry {} of {} after {} {}",
            attempt - 1,
            d.spec.retries,
            failed.state,
            failed.id
        ));
        // The failed attempt is already final, so nothing would write this retry later: keep
        // trying through transient failures (the insert is idempotent by id).
        let mut tries = 0;
        loop {
            match self.store.insert_run(&retry).await {
                Ok(_) => break,
                Err(e) if e.is_retryable() && tries < 10 => {
                    tries += 1;
                    tracing::warn!(error = %ferry_core::error::error_chain(&e), tries, "retry insert failed; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(100 * tries)).await;
                }
                Err(e) => {
                    tracing::error!(run_id = %failed.id, error = %ferry_core::error::error_chain(&e), "could not schedule the retry of a failed run");
                    return Err(e.into());
                }
            }
        }
        tracing::info!(run_id = %retry.id, retry_of = %failed.id, attempt, "retry scheduled");
        Ok(Some(retry))
    }

    /// Crashes (or retries) held runs whose lease expired; their slots are freed with the
    /// state change. Returns how many were reaped.
    pub async fn reap_expired_leases(&self, now: DateTime<Utc>) -> Result<usize, AppError> {
        let mut reaped = 0;
        for run in self.store.expired_leases(now, 500).await? {
            let agent = run
                .lease
                .as_ref()
                .map(|l| l.agent_id.clone())
                .unwrap_or_default();
            let event = RunEvent::Crash {
                reason: format!(
                    "agent {agent} stopped renewing its lease (killed, or its machine is gone)"
                ),
            };
            let Ok(next) = transition(&run, event, now) else {
                continue;
            };
            match self.store.update_run(&next, run.version).await {
                Ok(()) => {
                    reaped += 1;
                    tracing::warn!(run_id = %run.id, deployment = %run.deployment, agent, "lease expired: run crashed");
                    self.schedule_retry(&next).await?;
                }
                Err(StoreError::Conflict(_)) => {} // renewed or finished meanwhile
                Err(e) => return Err(e.into()),
            }
        }
        Ok(reaped)
    }
}
