//! The user-facing run use cases: create an ad-hoc run, read, list, cancel, read its log. (The
//! agent's — claim, start, heartbeat, finish — are in `agent_runs`.)

use chrono::Duration;
use ferry_core::ids::{DeploymentId, RunId};
use ferry_core::ports::{InsertOutcome, LogPage, RunFilter};
use ferry_core::run::{FlowRun, Origin};
use ferry_core::state::{transition, RunEvent, StateType};
use ferry_core::validate::check_parameters;

use crate::retry::{landed, retry_on_conflict, Attempt};
use crate::{AppError, Ferry, RunRequest};

impl Ferry {
    /// Creates an ad-hoc run; with an idempotency key, a repeat of the same request returns the
    /// first run (`false` = it existed), and a different request with that key is refused
    /// ([`AppError::IdempotencyKeyReused`]): its parameters would be dropped silently otherwise.
    pub async fn create_run(
        &self,
        id: &DeploymentId,
        req: RunRequest,
    ) -> Result<(FlowRun, bool), AppError> {
        let d = self.get_deployment(id).await?;
        if let Some(k) = &req.idempotency_key {
            if k.is_empty() || k.len() > ferry_core::limits::MAX_IDEMPOTENCY_KEY {
                return Err(AppError::invalid(
                    "idempotency_key",
                    format!(
                        "must be 1-{} characters",
                        ferry_core::limits::MAX_IDEMPOTENCY_KEY
                    ),
                ));
            }
        }
        let start_in = req.start_in_seconds.unwrap_or(0);
        if !(0..=366 * 86_400).contains(&start_in) {
            return Err(AppError::invalid(
                "start_in_seconds",
                "must be between 0 and 31622400 (366 days)",
            ));
        }
        let mut params = d.spec.parameters.clone();
        params.extend(req.parameters);
        check_parameters("parameters", &params)?;
        let now = self.now();
        let mut random = [0u8; 10];
        random.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..10]);
        let mut run = FlowRun::new_scheduled(
            RunId::adhoc(now, random),
            d.id.clone(),
            d.spec.work_queue.clone(),
            params,
            now + Duration::seconds(start_in),
            Origin::Manual,
            1,
            now,
        );
        run.idempotency_key = req.idempotency_key;
        run.infra = d.spec.infra_block.clone();
        match self.store.insert_run(&run).await? {
            InsertOutcome::Inserted => {
                tracing::info!(run_id = %run.id, deployment = %run.deployment, "ad-hoc run created");
                self.notify_run_created();
                Ok((run, true))
            }
            InsertOutcome::Exists(existing) => match idempotent_repeat_differs(&existing, &run) {
                None => Ok((*existing, false)),
                Some(differs) => Err(AppError::IdempotencyKeyReused {
                    key: run.idempotency_key.unwrap_or_default(),
                    run: existing.id,
                    differs,
                }),
            },
        }
    }

    /// A run by id.
    pub async fn get_run(&self, id: RunId) -> Result<FlowRun, AppError> {
        self.store
            .get_run(id)
            .await?
            .ok_or_else(|| AppError::not_found("flow run", id))
    }

    /// Runs matching a filter.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<FlowRun>, AppError> {
        Ok(self.store.list_runs(filter).await?)
    }

    /// Cancels a run: a waiting or Pending run is Cancelled at once; a Running one becomes
    /// Cancelling and its agent stops the process.
    pub async fn cancel_run(&self, id: RunId) -> Result<FlowRun, AppError> {
        retry_on_conflict(format!("run {id}"), || async move {
            let run = self.get_run(id).await?;
            if run.state == StateType::Cancelling {
                return Ok(Attempt::Done(run));
            }
            let next = transition(
                &run,
                RunEvent::Cancel {
                    reason: "cancelled by user".into(),
                },
                self.now(),
            )
            .map_err(|e| {
                AppError::Conflict(format!("cannot cancel run {id}: it is {} ({e})", run.state))
            })?;
            if !landed(self.store.update_run(&next, run.version).await)? {
                return Ok(Attempt::Lost);
            }
            if next.state == StateType::Cancelled {
                self.stop_cancelled_task(&run).await;
            }
            Ok(Attempt::Done(next))
        })
        .await
    }

    /// A page of a run's log.
    pub async fn run_logs(
        &self,
        id: RunId,
        offset: u64,
        limit: usize,
    ) -> Result<LogPage, AppError> {
        self.get_run(id).await?;
        self.logs
            .read(id, offset, limit)
            .await
            .map_err(|e| AppError::Logs(Box::new(e)))
    }
}

/// What differs between the run an idempotency key created and a repeated request's would-be
/// run: its merged `parameters`, or its start offset (`start_in_seconds`, compared as the gap
/// between creation and scheduled time, whole seconds). `None`: the same request.
fn idempotent_repeat_differs(existing: &FlowRun, repeat: &FlowRun) -> Option<&'static str> {
    let start_in = |r: &FlowRun| {
        (r.scheduled_time - r.created_at)
            .num_milliseconds()
            .saturating_add(500)
            .div_euclid(1000)
    };
    if existing.parameters != repeat.parameters {
        Some("parameters")
    } else if start_in(existing) != start_in(repeat) {
        Some("start_in_seconds")
    } else {
        None
    }
}
