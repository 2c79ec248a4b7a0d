//! The agent-facing use cases: claim, start, heartbeat, finish, release — and the reaper.
//! Every state change goes through `ferry_core::state::transition` and a version-conditional
//! write; a lost race re-reads and decides again.

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use ferry_core::deployment::Deployment;
use ferry_core::ports::{ClaimOutcome, SlotTake, StoreError};
use ferry_core::run::{FlowRun, RunLease};
use ferry_core::state::{transition, RunEvent, StateType};
use ferry_core::{RunId, WorkQueue};

use crate::retry::{backoff, UNAVAILABLE_PAUSE_MAX_MS};
use crate::tick::TickFailure;
use crate::{AppError, Ferry};

const RETRIES: usize = 8;

/// How long after a run ended its log still takes lines from an agent (through the API).
pub const LOG_GRACE_SECONDS: i64 = 60;

/// Most waiting runs one poll reads from a queue while looking past runs it cannot start.
pub const SCAN_BUDGET: usize = 2_000;

/// Runs already due in random order (so agents polling the same queue do not all race for the
/// same head-of-queue runs), then the prefetched ones in time order.
fn spread(runs: Vec<FlowRun>, now: DateTime<Utc>) -> Vec<FlowRun> {
    let (mut due, later): (Vec<_>, Vec<_>) =
        runs.into_iter().partition(|r| r.scheduled_time <= now);
    due.sort_by_cached_key(|_| uuid::Uuid::new_v4());
    due.extend(later);
    due
}

/// Result of a claim attempt.
#[derive(Debug)]
pub enum Claim {
    /// The run is ours: the stored claimed run and its deployment.
    Claimed(Box<FlowRun>, Box<Deployment>),
    /// Another agent (or a cancel) changed it first.
    Lost,
    /// A concurrency limit is reached (slot key).
    SlotFull(ferry_core::slot::SlotKey),
}

/// Result of `ferry agent execute`'s take-over of a launched run.
#[derive(Debug)]
pub enum TakeOver {
    /// The run is ours now: the stored run and its deployment.
    Taken(Box<FlowRun>, Box<Deployment>),
    /// Nothing to take, and why (finished, cancelled, taken by another task, relaunched).
    NothingToDo(String),
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
            expires_at: now + self.settings().lease,
        }
    }

    /// The queues an agent serves that exist and are not paused, in the order they are served
    /// (priority 1 first, then by name).
    pub async fn queues_to_serve(
        &self,
        names: &[ferry_core::QueueName],
    ) -> Result<Vec<WorkQueue>, AppError> {
        let mut queues = Vec::new();
        for name in names {
            if let Some(q) = self.store.get_queue(name).await?.filter(|q| !q.paused) {
                queues.push(q);
            }
        }
        queues.sort_by(|a, b| (a.priority, &a.name).cmp(&(b.priority, &b.name)));
        Ok(queues)
    }

    /// A page of the runs waiting in `queue` that are due by `before` (late ones first), after
    /// `after` (a run of the previous page): what an agent may claim.
    pub async fn claimable_runs(
        &self,
        queue: &str,
        before: DateTime<Utc>,
        after: Option<&FlowRun>,
        limit: usize,
    ) -> Result<Vec<FlowRun>, AppError> {
        Ok(self
            .store
            .due_runs_after(queue, before, after, limit)
            .await?)
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
        Ok(self
            .claim_checked(run, agent_id, queue, true)
            .await?
            .unwrap_or(Claim::Lost))
    }

    /// One agent poll: claims for `agent_id` up to `free` runs due within `prefetch` from
    /// `queues` (served in priority order), and returns them with their deployments. The one
    /// claim loop of every agent, whether it calls this directly or through
    /// `POST /v1/agents/{name}/claims`.
    ///
    /// Due runs are tried in random order (agents polling the same queue do not all race for
    /// the head of it), then the prefetched ones in time order. A run that is not due yet is
    /// claimed ahead only if it takes no limited slot (neither its queue nor its deployment
    /// has a concurrency limit): a prefetched run never holds a slot that a run due now needs.
    /// Runs of a deployment found at its limit are skipped for the rest of the poll and the
    /// queue is read on past them (up to [`SCAN_BUDGET`] runs), so one deployment at its limit
    /// never starves the others behind it.
    ///
    /// A poll stops claiming once it has taken a third of the lease (a slow or throttled store):
    /// each run's lease starts when it is claimed, so the first run of a long batch would
    /// otherwise reach its agent with its lease nearly spent and be reaped before its first
    /// heartbeat. What was left is claimed by the next poll.
    pub async fn claim_batch(
        &self,
        agent_id: &str,
        queues: &[ferry_core::QueueName],
        prefetch: std::time::Duration,
        free: usize,
    ) -> Result<Vec<(FlowRun, Deployment)>, AppError> {
        let mut claimed = Vec::new();
        let until = self.now() + self.settings().lease / 3;
        for q in self.queues_to_serve(queues).await? {
            if claimed.len() >= free || (!claimed.is_empty() && self.now() >= until) {
                break;
            }
            self.claim_from(&q, agent_id, prefetch, (free, until), &mut claimed)
                .await?;
        }
        Ok(claimed)
    }

    async fn claim_from(
        &self,
        q: &WorkQueue,
        agent_id: &str,
        prefetch: std::time::Duration,
        (free, until): (usize, DateTime<Utc>),
        claimed: &mut Vec<(FlowRun, Deployment)>,
    ) -> Result<(), AppError> {
        let now = self.now();
        // A queue with a limit prefetches nothing: every run ahead would hold one of its slots.
        let horizon = if q.concurrency_limit.is_some() {
            now
        } else {
            now + Duration::from_std(prefetch).unwrap_or_default()
        };
        let mut full_deployments = HashSet::new();
        let mut after: Option<FlowRun> = None;
        let mut scanned = 0;
        loop {
            let left = free.saturating_sub(claimed.len());
            if left == 0 {
                return Ok(());
            }
            let want = if after.is_none() { left * 2 + 4 } else { 100 };
            let page = self
                .claimable_runs(&q.name, horizon, after.as_ref(), want)
                .await?;
            scanned += page.len();
            let exhausted = page.len() < want;
            after = page.last().cloned();
            let mut skipped = false;
            for run in spread(page, now) {
                if claimed.len() >= free || (!claimed.is_empty() && self.now() >= until) {
                    return Ok(());
                }
                if full_deployments.contains(&run.deployment) {
                    skipped = true;
                    continue;
                }
                let ahead_into_limits = false;
                match self
                    .claim_checked(&run, agent_id, Some(q), ahead_into_limits)
                    .await?
                {
                    Some(Claim::Claimed(run, deployment)) => claimed.push((*run, *deployment)),
                    Some(Claim::SlotFull(key)) if key == q.slot_key() => return Ok(()),
                    Some(Claim::SlotFull(_)) | None => {
                        // At its limit, or limited and not due yet: its later runs wait too.
                        full_deployments.insert(run.deployment.clone());
                        skipped = true;
                    }
                    Some(Claim::Lost) => skipped = true,
                }
            }
            if exhausted || !skipped || scanned >= SCAN_BUDGET {
                return Ok(());
            }
        }
    }

    /// [`Ferry::claim_in`]; `None` when the run is not due yet, would take a limited slot,
    /// and `ahead_into_limits` is false (nothing is written).
    async fn claim_checked(
        &self,
        run: &FlowRun,
        agent_id: &str,
        queue: Option<&WorkQueue>,
        ahead_into_limits: bool,
    ) -> Result<Option<Claim>, AppError> {
        if !run.state.is_waiting() {
            return Ok(Some(Claim::Lost));
        }
        let Some(deployment) = self.store.get_deployment(&run.deployment).await? else {
            // Deleted deployment: nothing can run this; cancel it so it leaves the queue.
            let event = RunEvent::Cancel {
                reason: "deployment was deleted".into(),
            };
            if let Ok(next) = transition(run, event, self.now()) {
                match self.store.update_run(&next, run.version).await {
                    Ok(()) | Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            return Ok(Some(Claim::Lost));
        };
        let Some(slots) = slot_takes(run, queue, &deployment) else {
            return Ok(Some(Claim::Lost)); // its queue is paused
        };
        let now = self.now();
        if !ahead_into_limits && run.scheduled_time > now && !slots.is_empty() {
            return Ok(None);
        }
        let claimed = transition(
            run,
            RunEvent::Claim {
                lease: self.lease_for(agent_id, now),
                slots: slots.iter().map(|s| s.key.clone()).collect(),
            },
            now,
        )
        .map_err(|e| AppError::Conflict(e.to_string()))?;
        Ok(Some(
            match self.store.claim_run(&claimed, run.version, &slots).await? {
                ClaimOutcome::Claimed(r) => Claim::Claimed(r, Box::new(deployment)),
                ClaimOutcome::Lost => Claim::Lost,
                ClaimOutcome::SlotFull(k) => Claim::SlotFull(k),
            },
        ))
    }

    /// Applies `event` to the run, re-reading on lost races. Returns the stored run, or the
    /// current one unchanged if the event no longer applies (e.g. the run was reaped).
    pub(crate) async fn apply_event(
        &self,
        run: FlowRun,
        event: RunEvent,
    ) -> Result<(FlowRun, bool), AppError> {
        self.write_transition(run, event, |held, next| async move {
            self.store.update_run(&next, held.version).await
        })
        .await
    }

    /// The state-change loop every run write goes through: compute `event`'s transition from
    /// the run as last read, write it with `write(held, next)`; on a lost race re-read and decide
    /// again, on a retryable store error back off and try again (the write is conditional, so a
    /// landed-but-unanswered write shows up as a changed run on the re-read).
    async fn write_transition<F, Fut>(
        &self,
        mut run: FlowRun,
        event: RunEvent,
        write: F,
    ) -> Result<(FlowRun, bool), AppError>
    where
        F: Fn(FlowRun, FlowRun) -> Fut,
        Fut: std::future::Future<Output = Result<(), StoreError>>,
    {
        let mut unavailable = None;
        for attempt in 0..RETRIES {
            let next = match transition(&run, event.clone(), self.now()) {
                Ok(n) => n,
                Err(_) => return Ok((run, false)),
            };
            match write(run.clone(), next.clone()).await {
                Ok(()) => return Ok((next, true)),
                Err(StoreError::Conflict(_)) => {}
                Err(e) if e.is_retryable() => {
                    tracing::warn!(run_id = %run.id, error = %ferry_core::error::error_chain(&e), "run write failed; retrying");
                    unavailable = Some(e);
                    backoff(attempt, UNAVAILABLE_PAUSE_MAX_MS).await;
                }
                Err(e) => return Err(e.into()),
            }
            run = self
                .store
                .get_run(run.id)
                .await?
                .ok_or_else(|| AppError::not_found("flow run", run.id))?;
        }
        Err(match unavailable {
            Some(e) => e.into(),
            None => AppError::Conflict(format!("run {} keeps changing", run.id)),
        })
    }

    /// Takes over the launched run `id` for `agent_id`, as the task started for its launch
    /// `attempt`: a conditional write, legal only while that launch still holds the run. A
    /// second task for the same run, a task of an abandoned launch, or a run already cancelled
    /// or finished gets [`TakeOver::NothingToDo`] with the reason, and nothing is written.
    pub async fn take_over(
        &self,
        id: ferry_core::RunId,
        attempt: u32,
        agent_id: &str,
    ) -> Result<TakeOver, AppError> {
        let run = self
            .store
            .get_run(id)
            .await?
            .ok_or_else(|| AppError::not_found("flow run", id))?;
        if let Some(why) = not_takeable(&run, attempt) {
            return Ok(TakeOver::NothingToDo(why));
        }
        let Some(deployment) = self.store.get_deployment(&run.deployment).await? else {
            return Ok(TakeOver::NothingToDo(format!(
                "run {id}'s deployment {} was deleted",
                run.deployment
            )));
        };
        let event = RunEvent::TakeOver {
            attempt,
            lease: self.lease_for(agent_id, self.now()),
        };
        let (r, applied) = self.apply_event(run, event).await?;
        if !applied {
            let why = not_takeable(&r, attempt)
                .unwrap_or_else(|| format!("run {id} changed while it was being taken"));
            return Ok(TakeOver::NothingToDo(why));
        }
        tracing::info!(run_id = %id, attempt, agent = agent_id, "launched run taken over");
        Ok(TakeOver::Taken(Box::new(r), Box::new(deployment)))
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
            expires_at: now + self.settings().lease,
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

    /// Records the end of a run (Complete, Fail, Crash, ConfirmCancelled) and, when it failed
    /// or crashed with retries left, its next attempt — in one transaction, so no writer that
    /// dies halfway can leave a failed run without its retry. A run cancelled while its process
    /// finished ends as the process did; a run already reaped is left as it is.
    pub async fn finish(&self, run: FlowRun, event: RunEvent) -> Result<FlowRun, AppError> {
        let (done, _) = self
            .write_transition(run, event, |held, next| async move {
                self.write_final(&held, &next, self.now()).await
            })
            .await?;
        Ok(done)
    }

    /// Writes `next`, a final state of `held` (stored version must still be `held`'s), together
    /// with the retry it is owed. The deployment (its retry policy) is read only when `next`
    /// failed or crashed: a completed run costs no extra read.
    async fn write_final(
        &self,
        held: &FlowRun,
        next: &FlowRun,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let retry = if matches!(next.state, StateType::Failed | StateType::Crashed) {
            let deployment = self.store.get_deployment(&next.deployment).await?;
            owed_retry(deployment.as_ref(), next, now)
        } else {
            None
        };
        match retry {
            Some(retry) => {
                // The failed run names its retry, so `--watch` can follow it.
                let next = &FlowRun {
                    retried_by: Some(retry.id),
                    ..next.clone()
                };
                self.store.finish_with_retry(held, next, &retry).await?;
                tracing::info!(run_id = %retry.id, retry_of = %next.id, attempt = retry.attempt, "retry scheduled");
                Ok(())
            }
            None => self.store.update_run(next, held.version).await,
        }
    }

    /// Run `id` as stored, and whether `agent` holds its lease. The API's agent endpoints
    /// act on the stored run, never on a copy the client sends.
    pub(crate) async fn held_by(
        &self,
        id: RunId,
        agent: &str,
    ) -> Result<(FlowRun, bool), AppError> {
        let run = self.get_run(id).await?;
        let held = run.lease.as_ref().is_some_and(|l| l.agent_id == agent);
        Ok((run, held))
    }

    /// [`Ferry::heartbeat`] of run `id` for `agent`: [`Heartbeat::Lost`] unless it holds it.
    pub async fn heartbeat_held(&self, id: RunId, agent: &str) -> Result<Heartbeat, AppError> {
        match self.held_by(id, agent).await? {
            (run, true) => self.heartbeat(run).await,
            (run, false) => Ok(Heartbeat::Lost(Box::new(run))),
        }
    }

    /// [`Ferry::start`] of run `id` for `agent`, its log where this control plane writes
    /// logs. Idempotent: a run `agent` already started is returned as started (the answer to
    /// a first try may have been lost). `Ok(None)`: cancelled, reaped, or not `agent`'s.
    pub async fn start_held(&self, id: RunId, agent: &str) -> Result<Option<FlowRun>, AppError> {
        match self.held_by(id, agent).await? {
            (run, true) if run.state == StateType::Running => Ok(Some(run)),
            (run, true) => {
                let location = Some(self.logs.location(id));
                self.start(run, location).await
            }
            (_, false) => Ok(None),
        }
    }

    /// [`Ferry::release`] of run `id` by `agent`; a run it does not hold is returned as it is.
    pub async fn release_held(&self, id: RunId, agent: &str) -> Result<FlowRun, AppError> {
        match self.held_by(id, agent).await? {
            (run, true) => self.release(run).await,
            (run, false) => Ok(run),
        }
    }

    /// [`Ferry::finish`] of run `id` by `agent` with `event` (one of `Complete`, `Fail`,
    /// `Crash`, `ConfirmCancelled`). Idempotent: a run `agent` no longer holds (finished by a
    /// first try whose answer was lost, or reaped) is returned as it is.
    pub async fn finish_held(
        &self,
        id: RunId,
        agent: &str,
        event: RunEvent,
    ) -> Result<FlowRun, AppError> {
        if !matches!(
            event,
            RunEvent::Complete { .. }
                | RunEvent::Fail { .. }
                | RunEvent::Crash { .. }
                | RunEvent::ConfirmCancelled
        ) {
            return Err(AppError::invalid(
                "event",
                "only completed, failed, crashed or cancelled end a run",
            ));
        }
        match self.held_by(id, agent).await? {
            (run, true) => self.finish(run, event).await,
            (run, false) => Ok(run),
        }
    }

    /// Appends `lines` to the log of run `id`, which `agent` must hold — or which ended less
    /// than [`LOG_GRACE_SECONDS`] ago (the agent's closing "run ended" line follows the
    /// finish). A conflict otherwise: the run is someone else's, or long over.
    pub async fn append_logs_held(
        &self,
        id: RunId,
        agent: &str,
        lines: &[ferry_core::ports::LogLine],
    ) -> Result<(), AppError> {
        let (run, held) = self.held_by(id, agent).await?;
        let just_ended = run.state.is_terminal()
            && run
                .ended_at
                .is_some_and(|t| self.now() - t < Duration::seconds(LOG_GRACE_SECONDS));
        if !held && !just_ended {
            return Err(AppError::Conflict(format!(
                "run {id} is {} and not held by agent {agent:?}: its log takes lines only from the agent running it",
                run.state
            )));
        }
        self.logs
            .append(id, lines)
            .await
            .map_err(|e| AppError::Logs(Box::new(e)))
    }

    /// Crashes (or retries) held runs whose lease expired; their slots are freed with the
    /// state change and the retry is written in the same transaction. Returns how many were
    /// reaped. A run that cannot be written is recorded in `failures` and left for the next
    /// tick (its lease stays expired): one bad run does not stop the others.
    pub(crate) async fn reap_expired_leases(
        &self,
        now: DateTime<Utc>,
        failures: &mut Vec<TickFailure>,
    ) -> Result<usize, AppError> {
        let mut reaped = 0;
        for run in self.store.expired_leases(now, 500).await? {
            // A launched run its task has not taken is the launch supervision's, where this
            // process has a launcher of its kind (it relaunches rather than crashes).
            let supervised = run.awaits_task()
                && run
                    .infra
                    .as_ref()
                    .is_some_and(|i| self.launcher(i.kind()).is_some());
            if supervised {
                continue;
            }
            let agent = run
                .lease
                .as_ref()
                .map(|l| l.agent_id.clone())
                .unwrap_or_default();
            let (id, deployment) = (run.id, run.deployment.clone());
            match self.reap_one(run, &agent, now).await {
                Ok(true) => {
                    reaped += 1;
                    tracing::warn!(run_id = %id, %deployment, agent, "lease expired: run crashed");
                }
                Ok(false) => {}
                Err(e) => failures.push(TickFailure::new("reap", format!("flow run {id}"), &e)),
            }
        }
        Ok(reaped)
    }

    /// Crashes one run whose lease expired — only if it is still at the version read, so a run
    /// renewed or finished meanwhile is left alone.
    async fn reap_one(
        &self,
        run: FlowRun,
        agent: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, AppError> {
        let reason = match &run.launch {
            Some(l) if run.awaits_task() => format!(
                "its task (launch {} on {}) did not take it before the start deadline, and no launcher here could launch it again",
                l.attempt, l.infra
            ),
            _ => format!(
                "agent {agent} stopped renewing its lease (killed, or its machine is gone)"
            ),
        };
        let event = RunEvent::Crash { reason };
        let Ok(next) = transition(&run, event, now) else {
            return Ok(false);
        };
        match self.write_final(&run, &next, now).await {
            Ok(()) => Ok(true),
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

/// Why launch `attempt`'s task cannot take `run`, if it cannot.
fn not_takeable(run: &FlowRun, attempt: u32) -> Option<String> {
    let id = run.id;
    if run.state.is_terminal() {
        return Some(format!("run {id} is already {}: nothing to do", run.state));
    }
    let Some(launch) = &run.launch else {
        return Some(format!(
            "run {id} was not launched for a task (it is {})",
            run.state
        ));
    };
    if launch.attempt != attempt {
        return Some(format!(
            "run {id} belongs to launch {} now, not to launch {attempt} (this task started too late, or was replaced)",
            launch.attempt
        ));
    }
    if !run.awaits_task() {
        let holder = run.lease.as_ref().map_or("nobody", |l| l.agent_id.as_str());
        return Some(format!(
            "run {id} is {} and held by {holder}: another task took it",
            run.state
        ));
    }
    None
}

/// The concurrency slots a claim (or a launch) of `run` must take: its queue's (`queue` as
/// read, if it is the run's) and its deployment's. `None` when the queue is paused.
pub(crate) fn slot_takes(
    run: &FlowRun,
    queue: Option<&WorkQueue>,
    deployment: &Deployment,
) -> Option<Vec<SlotTake>> {
    let mut slots = Vec::new();
    if let Some(q) = queue.filter(|q| q.name == run.work_queue) {
        if q.paused {
            return None;
        }
        if let Some(limit) = q.concurrency_limit {
            slots.push(SlotTake {
                key: q.slot_key(),
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
    Some(slots)
}

/// The next attempt `finished` is owed under `deployment`'s retry policy (none if the
/// deployment is gone).
fn owed_retry(
    deployment: Option<&Deployment>,
    finished: &FlowRun,
    now: DateTime<Utc>,
) -> Option<FlowRun> {
    let d = deployment?;
    // Validated to at most 7 days at apply.
    let delay = Duration::seconds(d.spec.retry_delay_seconds.min(7 * 86_400) as i64);
    let mut retry = finished.next_attempt(d.spec.retries, delay, &d.spec.work_queue, now)?;
    retry.infra = d.spec.infra_block.clone();
    Some(retry)
}
