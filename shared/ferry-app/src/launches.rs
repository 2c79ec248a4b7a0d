//! Launching a task per run (deployments with an `infra_block`): the launch of one run (used
//! by dispatch on the table's stream and by the tick's pre-launch), the pre-launch pass, and
//! the supervision of launched runs whose task has not taken them yet (relaunch, or Crashed
//! with the task's fate). Every step is a conditional write, so two launchers racing — two
//! ticks, a tick and dispatch, a replayed stream record — start one task per launch.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use ferry_core::error::error_chain;
use ferry_core::infra::{InfraKind, InfraName, InfraProfile};
use ferry_core::launch::{Launch, LaunchError, LaunchRequest, TaskRef, TaskStatus};
use ferry_core::ports::ClaimOutcome;
use ferry_core::run::FlowRun;
use ferry_core::state::{transition, RunEvent};

use crate::agent_runs::slot_takes;
use crate::tick::TickFailure;
use crate::{AppError, Ferry};

/// Most launched runs one pass reads (pre-launch, supervision); the rest wait for the next.
const PASS_BUDGET: usize = 1000;
const PAGE: usize = 100;
/// A claimed launch still without a task this long after its claim is started again: longer
/// than a RunTask call with the SDK's retries takes.
const RETRY_TASKLESS_AFTER: Duration = Duration::seconds(30);

/// What became of one launch attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum LaunchOutcome {
    /// Claimed for a task and the task started (`task` set), or the launcher refused for now
    /// (`task` unset: the supervision retries the same launch, idempotently).
    Launched(Box<FlowRun>),
    /// Another launcher (or a cancel) changed the run first; nothing was started here.
    Lost,
    /// A concurrency slot is full; the run waits for the next pass.
    SlotFull,
    /// Not launched now, and why (not due within its lead, queue paused, no launcher here).
    Skipped(String),
    /// The launch failed for good; the run ended Crashed (or was retried) with the reason.
    Failed(Box<FlowRun>),
}

/// Profiles read once per pass.
#[derive(Default)]
struct Profiles(HashMap<InfraName, Option<InfraProfile>>);

impl Profiles {
    async fn get(
        &mut self,
        ferry: &Ferry,
        name: &InfraName,
    ) -> Result<Option<InfraProfile>, AppError> {
        if let Some(p) = self.0.get(name) {
            return Ok(p.clone());
        }
        let p = ferry.store.get_infra(name).await?;
        self.0.insert(name.clone(), p.clone());
        Ok(p)
    }
}

impl Ferry {
    /// Launches `id` if it is a waiting run of a launched deployment due within its profile's
    /// launch lead — what dispatch does for a run the stream reports. Anything else is
    /// `Skipped` (a replayed record finds the run already launched: `Lost` or `Skipped`).
    pub async fn dispatch(&self, id: ferry_core::RunId) -> Result<LaunchOutcome, AppError> {
        let Some(run) = self.store.get_run(id).await? else {
            return Ok(LaunchOutcome::Skipped(format!("run {id} does not exist")));
        };
        self.launch_run(&run, &mut Profiles::default()).await
    }

    /// The tick's pre-launch: launches every waiting run of a launched deployment that is due
    /// within its profile's launch lead (so a scheduled run's task is up by its time), and any
    /// run a missed stream event left behind. Returns how many were launched.
    pub(crate) async fn launch_due(
        &self,
        now: DateTime<Utc>,
        failures: &mut Vec<TickFailure>,
    ) -> Result<usize, AppError> {
        let profiles_now = self.store.list_infra().await?;
        if profiles_now.is_empty() {
            return Ok(0);
        }
        let max_lead = profiles_now
            .iter()
            .map(InfraProfile::launch_lead)
            .max()
            .unwrap_or_else(Duration::zero);
        let mut profiles = Profiles(
            profiles_now
                .into_iter()
                .map(|p| (p.name.clone(), Some(p)))
                .collect(),
        );
        let (mut launched, mut read, mut after) = (0, 0, None::<FlowRun>);
        while read < PASS_BUDGET {
            let page = self
                .store
                .launchable_after(now + max_lead, after.as_ref(), PAGE)
                .await?;
            read += page.len();
            let full = page.len() == PAGE;
            for run in &page {
                match self.launch_run(run, &mut profiles).await {
                    Ok(LaunchOutcome::Launched(_)) => launched += 1,
                    Ok(_) => {}
                    Err(e) => failures.push(TickFailure::new(
                        "launch",
                        format!("flow run {}", run.id),
                        &e,
                    )),
                }
            }
            after = page.last().cloned();
            if !full {
                break;
            }
        }
        Ok(launched)
    }

    /// Claims `run` for a task (Scheduled/Late → Pending held by `launcher:1`, its slots taken
    /// in the same transaction) and starts the task.
    async fn launch_run(
        &self,
        run: &FlowRun,
        profiles: &mut Profiles,
    ) -> Result<LaunchOutcome, AppError> {
        let Some(name) = run.infra.clone().filter(|_| run.is_waiting()) else {
            return Ok(LaunchOutcome::Skipped(format!(
                "run {} is {} and not launched",
                run.id, run.state
            )));
        };
        if self.launcher(name.kind()).is_none() {
            return Ok(LaunchOutcome::Skipped(format!(
                "no {} launcher in this process",
                name.kind().as_str()
            )));
        }
        let Some(profile) = profiles.get(self, &name).await? else {
            return Err(AppError::Conflict(format!(
                "run {} waits for infrastructure profile {name}, which does not exist: recreate it with `ferry infra create {name} ...`",
                run.id
            )));
        };
        let now = self.now();
        if run.scheduled_time - profile.launch_lead() > now {
            return Ok(LaunchOutcome::Skipped(
                "not due within its launch lead".into(),
            ));
        }
        let Some(deployment) = self.store.get_deployment(&run.deployment).await? else {
            return Ok(LaunchOutcome::Skipped("its deployment was deleted".into()));
        };
        let queue = self.store.get_queue(&run.work_queue).await?;
        let Some(slots) = slot_takes(run, queue.as_ref(), &deployment) else {
            return Ok(LaunchOutcome::Skipped(format!(
                "work queue {} is paused",
                run.work_queue
            )));
        };
        // A run given back by its task (the task shut down before starting it) is launched
        // anew: a new launch number, so the launcher's idempotency token is new too.
        let attempt = run.launch.as_ref().map_or(1, |l| l.attempt + 1);
        let launch = Launch {
            infra: name.clone(),
            attempt,
            task: None,
            launched_at: now,
            start_deadline: run.scheduled_time.max(now) + profile.start_timeout(),
        };
        let event = RunEvent::Launch {
            launch,
            slots: slots.iter().map(|s| s.key.clone()).collect(),
            message: format!(
                "launched on {name} (launch 1 of {})",
                profile.spec.max_launches
            ),
        };
        let Ok(claimed) = transition(run, event, now) else {
            return Ok(LaunchOutcome::Lost);
        };
        match self.store.claim_run(&claimed, run.version, &slots).await? {
            ClaimOutcome::Claimed(stored) => {
                tracing::info!(run_id = %run.id, profile = %name, "run claimed for launch");
                self.start_task(*stored, &profile, &deployment.spec.infra_overrides)
                    .await
            }
            ClaimOutcome::Lost => Ok(LaunchOutcome::Lost),
            ClaimOutcome::SlotFull(_) => Ok(LaunchOutcome::SlotFull),
        }
    }

    /// Starts the task of `run`'s current launch and records it. The launcher's call is
    /// idempotent per (run, launch), so calling this again for a launch whose first call's
    /// answer was lost starts nothing new.
    async fn start_task(
        &self,
        run: FlowRun,
        profile: &InfraProfile,
        overrides: &ferry_core::infra::Overrides,
    ) -> Result<LaunchOutcome, AppError> {
        let (Some(launch), Some(launcher)) =
            (run.launch.clone(), self.launcher(profile.name.kind()))
        else {
            return Ok(LaunchOutcome::Skipped("not a launched run".into()));
        };
        let request = LaunchRequest {
            run: run.id,
            attempt: launch.attempt,
            deployment: run.deployment.to_string(),
            work_queue: run.work_queue.to_string(),
            profile: profile.clone(),
            overrides: overrides.clone(),
            env: self.launch_env().clone(),
        };
        let task = match launcher.launch(&request).await {
            Ok(task) => task,
            Err(e @ LaunchError::Retryable { .. }) => {
                tracing::warn!(run_id = %run.id, attempt = launch.attempt, error = %e, "launch refused for now; the supervision retries it");
                return Ok(LaunchOutcome::Launched(Box::new(run)));
            }
            Err(e @ LaunchError::Permanent { .. }) => {
                tracing::error!(run_id = %run.id, error = %e, "launch failed");
                let reason = format!("could not launch a task on {}: {e}", profile.name);
                let done = self.finish(run, RunEvent::Crash { reason }).await?;
                return Ok(LaunchOutcome::Failed(Box::new(done)));
            }
        };
        let event = RunEvent::RecordTask {
            attempt: launch.attempt,
            task: task.0.clone(),
        };
        let (recorded, applied) = self.apply_event(run, event).await?;
        if !applied && recorded.awaits_task() {
            return Ok(LaunchOutcome::Lost);
        }
        if !applied && !recorded.state.is_terminal() {
            // Taken over already (the task was quick): nothing to record.
            return Ok(LaunchOutcome::Launched(Box::new(recorded)));
        }
        if !applied {
            // Cancelled (or ended) while the task was being started: stop it.
            self.stop_task_quietly(&recorded, &task, "its run ended before the task took it")
                .await;
            return Ok(LaunchOutcome::Lost);
        }
        tracing::info!(run_id = %recorded.id, task = %task.0, "task launched");
        Ok(LaunchOutcome::Launched(Box::new(recorded)))
    }

    /// Checks launched runs their task has not taken yet: a launch whose `RunTask` never
    /// answered is tried again (same token: one task); a task that stopped, or that did not
    /// take its run by the start deadline, is replaced by a new launch — up to the profile's
    /// `max_launches`, then the run ends Crashed with the task's fate. Returns how many runs
    /// were relaunched or crashed.
    pub(crate) async fn supervise_launches(
        &self,
        now: DateTime<Utc>,
        failures: &mut Vec<TickFailure>,
    ) -> Result<usize, AppError> {
        let mut profiles = Profiles::default();
        let mut acted = 0;
        let mut described: Vec<Awaiting> = Vec::new();
        for run in self.store.awaiting_tasks(PASS_BUDGET).await? {
            let (Some(launch), Some(name)) = (run.launch.clone(), run.infra.clone()) else {
                continue;
            };
            if self.launcher(name.kind()).is_none() {
                continue;
            }
            let id = run.id;
            let step = async {
                let Some(profile) = profiles.get(self, &name).await? else {
                    let reason = format!("its infrastructure profile {name} was deleted");
                    self.finish(run, RunEvent::Crash { reason }).await?;
                    return Ok::<_, AppError>(1);
                };
                match launch.task {
                    // Its launcher may still be waiting for RunTask's answer: only a launch
                    // left without a task for a while is retried (same token), so launchers
                    // racing for one run call RunTask once.
                    None if now < launch.launched_at + RETRY_TASKLESS_AFTER => Ok(0),
                    None if now < launch.start_deadline => {
                        let d = self.store.get_deployment(&run.deployment).await?;
                        let overrides = d.map(|d| d.spec.infra_overrides).unwrap_or_default();
                        self.start_task(run, &profile, &overrides).await?;
                        Ok(0)
                    }
                    None => {
                        let fate = "the launcher could not start a task before the start deadline";
                        self.relaunch_or_crash(run, &profile, fate, now).await
                    }
                    Some(task) => {
                        described.push((run, profile, TaskRef(task)));
                        Ok(0)
                    }
                }
            };
            match step.await {
                Ok(n) => acted += n,
                Err(e) => failures.push(TickFailure::new(
                    "supervise_launch",
                    format!("flow run {id}"),
                    &e,
                )),
            }
        }
        for (kind, batch) in group_by_kind(described) {
            let Some(launcher) = self.launcher(kind) else {
                continue;
            };
            let tasks: Vec<TaskRef> = batch.iter().map(|(_, _, t)| t.clone()).collect();
            let statuses = match launcher.describe(&tasks).await {
                Ok(s) => s,
                Err(e) => {
                    failures.push(TickFailure::new(
                        "supervise_launch",
                        format!("{} tasks", kind.as_str()),
                        &AppError::Conflict(e.to_string()),
                    ));
                    continue;
                }
            };
            for ((run, profile, task), status) in batch.into_iter().zip(statuses) {
                let id = run.id;
                let deadline = run.launch.as_ref().map(|l| l.start_deadline);
                let fate = match &status {
                    TaskStatus::Stopped { .. } => status.describe(),
                    _ if deadline.is_some_and(|d| now >= d) => {
                        self.stop_task_quietly(
                            &run,
                            &task,
                            "it did not take its run within the start timeout",
                        )
                        .await;
                        format!(
                            "the task did not take the run within {} s ({})",
                            profile.spec.start_timeout_seconds,
                            status.describe()
                        )
                    }
                    _ => continue,
                };
                match self.relaunch_or_crash(run, &profile, &fate, now).await {
                    Ok(n) => acted += n,
                    Err(e) => failures.push(TickFailure::new(
                        "supervise_launch",
                        format!("flow run {id}"),
                        &e,
                    )),
                }
            }
        }
        Ok(acted)
    }

    /// Launches `run` again (launch n + 1, the last task's fate in the history) or, with its
    /// launches used up, ends it Crashed with that fate (retried if its deployment says so).
    async fn relaunch_or_crash(
        &self,
        run: FlowRun,
        profile: &InfraProfile,
        fate: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, AppError> {
        let Some(last) = run.launch.clone() else {
            return Ok(0);
        };
        if last.attempt >= profile.spec.max_launches {
            let reason = format!(
                "launch {} of {} failed: {fate}",
                last.attempt, profile.spec.max_launches
            );
            tracing::warn!(run_id = %run.id, reason, "launches used up: run crashed");
            self.finish(run, RunEvent::Crash { reason }).await?;
            return Ok(1);
        }
        let attempt = last.attempt + 1;
        let event = RunEvent::Launch {
            launch: Launch {
                infra: last.infra.clone(),
                attempt,
                task: None,
                launched_at: now,
                start_deadline: run.scheduled_time.max(now) + profile.start_timeout(),
            },
            slots: run.slots.clone(),
            message: format!(
                "relaunched on {} (launch {attempt} of {}): launch {} failed: {fate}",
                last.infra, profile.spec.max_launches, last.attempt
            ),
        };
        let (next, applied) = self.apply_event(run, event).await?;
        if !applied {
            return Ok(0);
        }
        tracing::warn!(run_id = %next.id, attempt, fate, "run relaunched");
        let d = self.store.get_deployment(&next.deployment).await?;
        let overrides = d.map(|d| d.spec.infra_overrides).unwrap_or_default();
        self.start_task(next, profile, &overrides).await?;
        Ok(1)
    }

    /// Stops `run`'s task, logging (not failing) when the launcher cannot: the task then ends
    /// by itself, finding nothing to take.
    pub(crate) async fn stop_task_quietly(&self, run: &FlowRun, task: &TaskRef, why: &str) {
        let Some(kind) = run.infra.as_ref().map(InfraName::kind) else {
            return;
        };
        let Some(launcher) = self.launcher(kind) else {
            return;
        };
        if let Err(e) = launcher.stop(task, why).await {
            tracing::warn!(run_id = %run.id, task = %task.0, error = %error_chain(&e), "could not stop the task");
        }
    }

    /// Stops the task of a run that was just cancelled (a cancel of a launched run that its
    /// task has not taken, or whose task is still starting).
    pub(crate) async fn stop_cancelled_task(&self, run: &FlowRun) {
        if let Some(task) = run.launch.as_ref().and_then(|l| l.task.clone()) {
            self.stop_task_quietly(run, &TaskRef(task), "run cancelled by user")
                .await;
        }
    }
}

/// A launched run awaiting its task, with its profile and task.
type Awaiting = (FlowRun, InfraProfile, TaskRef);

fn group_by_kind(items: Vec<Awaiting>) -> Vec<(InfraKind, Vec<Awaiting>)> {
    let mut groups: Vec<(InfraKind, Vec<Awaiting>)> = Vec::new();
    for item in items {
        let kind = item.1.name.kind();
        match groups.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, g)) => g.push(item),
            None => groups.push((kind, vec![item])),
        }
    }
    groups
}
