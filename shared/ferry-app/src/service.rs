use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use ferry_core::clock::Clock;
use ferry_core::deployment::Deployment;
use ferry_core::ids::{check_name, DeploymentId, RunId};
use ferry_core::ports::{
    CodeStore, CodeStoreError, InsertOutcome, LogPage, LogSink, RunFilter, Store, StoreError,
};
use ferry_core::queue::{check_concurrency_limit, WorkQueue, DEFAULT_QUEUE};
use ferry_core::run::{FlowRun, Origin};
use ferry_core::schedule::fire_times;
use ferry_core::state::{transition, RunEvent, StateType};
use ferry_core::validate::{check_parameters, schedule_digest, validate_spec};
use ferry_core::{DeploymentSpec, ValidationError};
use serde::{Deserialize, Serialize};

use crate::AppError;

/// How many times a use case re-reads and retries after losing a conditional write (with a
/// short random pause in between, so a busy run's heartbeats do not starve a cancel).
const CONFLICT_RETRIES: usize = 25;

/// A pause of 5-50 ms before retrying a lost conditional write.
pub(crate) async fn backoff() {
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 45;
    tokio::time::sleep(std::time::Duration::from_millis(5 + jitter)).await;
}

/// The system clock (the only place the app layer reads time).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Tunables of the control plane.
#[derive(Debug, Clone)]
pub struct Settings {
    /// A waiting run this far past its scheduled time is marked Late.
    pub late_after: Duration,
    /// Most deployments one tick extends (the rest wait for the next tick).
    pub tick_batch: usize,
    /// How long an agent's claim lasts without a heartbeat; the reaper crashes (or retries)
    /// runs whose lease expired.
    pub lease: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            late_after: Duration::seconds(30),
            tick_batch: 1000,
            lease: Duration::seconds(30),
        }
    }
}

/// The use cases, over the ports.
#[derive(Clone)]
pub struct Ferry {
    /// Runs, deployments, queues.
    pub store: Arc<dyn Store>,
    /// Code bundles.
    pub code: Arc<dyn CodeStore>,
    /// Run logs.
    pub logs: Arc<dyn LogSink>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Tunables.
    pub settings: Settings,
    /// Called after a run is created (an in-process agent wakes up at once).
    pub on_run_created: Option<Arc<dyn Fn() + Send + Sync>>,
}

/// Result of `apply_deployment`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApplyOutcome {
    /// The stored deployment.
    pub deployment: Deployment,
    /// It did not exist before.
    pub created: bool,
    /// Something changed (false when re-applying the same spec).
    pub changed: bool,
    /// Scheduled runs of the old spec that were removed.
    pub removed_runs: usize,
}

/// A change to a work queue (absent fields are kept).
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueuePatch {
    /// Pause or resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    /// Set a limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<u32>,
    /// Remove the limit.
    #[serde(default)]
    pub clear_concurrency_limit: bool,
    /// Set the priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
}

/// An ad-hoc run request.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// Overrides of the deployment's default parameters.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// Start this many seconds from now (default: now).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_in_seconds: Option<i64>,
    /// A repeated request with the same key returns the same run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// One upcoming run of a queue.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PreviewItem {
    /// When it is due.
    pub scheduled_time: DateTime<Utc>,
    /// `flow/name`.
    pub deployment: String,
    /// Its run id (deterministic for scheduled runs, so a planned run keeps it once written).
    pub run_id: String,
    /// `scheduled`/`late` if written already, `planned` if only computed from the schedule.
    pub state: String,
}

impl Ferry {
    /// Builds the use cases over the given ports.
    pub fn new(
        store: Arc<dyn Store>,
        code: Arc<dyn CodeStore>,
        logs: Arc<dyn LogSink>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            code,
            logs,
            clock,
            settings: Settings::default(),
            on_run_created: None,
        }
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    // ---------------------------------------------------------------- work queues

    /// Creates the `default` queue if missing.
    pub async fn ensure_default_queue(&self) -> Result<(), AppError> {
        if self.store.get_queue(DEFAULT_QUEUE).await?.is_none() {
            match self
                .store
                .create_queue(&WorkQueue::new(DEFAULT_QUEUE, self.now()))
                .await
            {
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Creates a queue.
    pub async fn create_queue(
        &self,
        name: &str,
        limit: Option<u32>,
        priority: Option<u32>,
    ) -> Result<WorkQueue, AppError> {
        check_name("name", name)?;
        check_concurrency_limit(limit)?;
        if priority == Some(0) {
            return Err(AppError::invalid(
                "priority",
                "must be at least 1 (1 is the highest priority)",
            ));
        }
        let mut q = WorkQueue::new(name, self.now());
        q.concurrency_limit = limit;
        if let Some(p) = priority {
            q.priority = p;
        }
        match self.store.create_queue(&q).await {
            Ok(()) => Ok(q),
            Err(StoreError::Conflict(_)) => Err(AppError::Conflict(format!(
                "work queue {name:?} already exists (change it with `ferry work-queue set-concurrency-limit`, `pause`, `resume`)"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// A queue by name.
    pub async fn get_queue(&self, name: &str) -> Result<WorkQueue, AppError> {
        self.store
            .get_queue(name)
            .await?
            .ok_or_else(|| AppError::not_found("work queue", name))
    }

    /// All queues.
    pub async fn list_queues(&self) -> Result<Vec<WorkQueue>, AppError> {
        Ok(self.store.list_queues().await?)
    }

    /// Changes a queue.
    pub async fn update_queue(&self, name: &str, patch: QueuePatch) -> Result<WorkQueue, AppError> {
        if patch.concurrency_limit.is_some() && patch.clear_concurrency_limit {
            return Err(AppError::invalid(
                "concurrency_limit",
                "give either a limit or clear_concurrency_limit, not both",
            ));
        }
        check_concurrency_limit(patch.concurrency_limit)?;
        if patch.priority == Some(0) {
            return Err(AppError::invalid("priority", "must be at least 1"));
        }
        for _ in 0..CONFLICT_RETRIES {
            let mut q = self.get_queue(name).await?;
            let expected = q.version;
            if let Some(p) = patch.paused {
                q.paused = p;
            }
            if let Some(l) = patch.concurrency_limit {
                q.concurrency_limit = Some(l);
            }
            if patch.clear_concurrency_limit {
                q.concurrency_limit = None;
            }
            if let Some(p) = patch.priority {
                q.priority = p;
            }
            match self.store.update_queue(&q, expected).await {
                Ok(()) => {
                    q.version = expected + 1;
                    return Ok(q);
                }
                Err(StoreError::Conflict(_)) => {
                    backoff().await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Conflict(format!(
            "work queue {name:?} is changing too often; retry"
        )))
    }

    /// Upcoming runs of a queue within `hours`: written ones plus those the schedules will
    /// produce.
    pub async fn preview_queue(
        &self,
        name: &str,
        hours: u32,
    ) -> Result<Vec<PreviewItem>, AppError> {
        self.get_queue(name).await?;
        let now = self.now();
        let until = now + Duration::hours(i64::from(hours));
        let mut items: Vec<PreviewItem> = self
            .store
            .due_runs(name, until, 10_000)
            .await?
            .into_iter()
            .map(|r| PreviewItem {
                scheduled_time: r.scheduled_time,
                deployment: r.deployment.to_string(),
                run_id: r.id.to_string(),
                state: r.state.to_string(),
            })
            .collect();
        let mut seen: std::collections::HashSet<String> =
            items.iter().map(|i| i.run_id.clone()).collect();
        for d in self.store.list_deployments().await? {
            if d.spec.work_queue != name || d.spec.paused {
                continue;
            }
            let Ok(valid) = validate_spec(&d.spec) else {
                continue;
            };
            let from = d.scheduled_until.unwrap_or(now).max(now);
            for t in fire_times(&valid.schedules, from, until, 1000) {
                let id = RunId::scheduled(&d.id, t).to_string();
                if seen.insert(id.clone()) {
                    items.push(PreviewItem {
                        scheduled_time: t,
                        deployment: d.id.to_string(),
                        run_id: id,
                        state: "planned".into(),
                    });
                }
            }
        }
        items.sort_by(|a, b| (a.scheduled_time, &a.run_id).cmp(&(b.scheduled_time, &b.run_id)));
        Ok(items)
    }

    // ---------------------------------------------------------------- deployments

    /// Creates or updates a deployment by `flow/name`. Everything is validated first; a spec
    /// equal to the stored one changes nothing. When the schedules, parameters, queue or pause
    /// flag change, the not-yet-due scheduled runs of the old spec are removed and the tick
    /// writes new ones.
    pub async fn apply_deployment(&self, spec: DeploymentSpec) -> Result<ApplyOutcome, AppError> {
        let valid = validate_spec(&spec)?;
        if self.store.get_queue(&spec.work_queue).await?.is_none() {
            return Err(AppError::invalid(
                "work_queue",
                format!(
                    "work queue {:?} does not exist: create it with `ferry work-queue create {}` or use \"default\"",
                    spec.work_queue, spec.work_queue
                ),
            ));
        }
        if let Some(b) = &spec.bundle {
            if !self.code.has_bundle(&b.sha256).await? {
                return Err(AppError::invalid(
                    "bundle.sha256",
                    format!("no bundle with sha256 {} has been uploaded: run `ferry deployment build` (it uploads the bundle) before applying", b.sha256),
                ));
            }
        }
        let digest = schedule_digest(&spec);
        let has_active = valid.schedules.iter().any(|s| s.spec().active);
        for _ in 0..CONFLICT_RETRIES {
            let now = self.now();
            let existing = self.store.get_deployment(&valid.id).await?;
            let outcome = match existing {
                None => {
                    let d = Deployment {
                        id: valid.id.clone(),
                        spec: spec.clone(),
                        revision: 1,
                        schedule_digest: digest.clone(),
                        scheduled_until: Some(now),
                        next_tick_at: (has_active && !spec.paused).then_some(now),
                        created_at: now,
                        updated_at: now,
                    };
                    match self.store.put_deployment(&d, None).await {
                        Ok(()) => ApplyOutcome {
                            deployment: d,
                            created: true,
                            changed: true,
                            removed_runs: 0,
                        },
                        Err(StoreError::Conflict(_)) => {
                            backoff().await;
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Some(old) if old.spec == spec => ApplyOutcome {
                    deployment: old,
                    created: false,
                    changed: false,
                    removed_runs: 0,
                },
                Some(old) => {
                    let mut d = old.clone();
                    d.spec = spec.clone();
                    d.revision = old.revision + 1;
                    d.updated_at = now;
                    d.schedule_digest = digest.clone();
                    let reschedule = old.reschedules(&d);
                    if reschedule {
                        d.scheduled_until = Some(now);
                        d.next_tick_at = (has_active && !spec.paused).then_some(now);
                    }
                    match self.store.put_deployment(&d, Some(old.revision)).await {
                        Ok(()) => {}
                        Err(StoreError::Conflict(_)) => {
                            backoff().await;
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                    let removed = if reschedule {
                        self.remove_future_scheduled_runs(&d.id, now).await?
                    } else {
                        0
                    };
                    ApplyOutcome {
                        deployment: d,
                        created: false,
                        changed: true,
                        removed_runs: removed,
                    }
                }
            };
            if outcome.changed {
                tracing::info!(deployment = %outcome.deployment.id, created = outcome.created,
                    removed_runs = outcome.removed_runs, "deployment applied");
            }
            return Ok(outcome);
        }
        Err(AppError::Conflict(format!(
            "deployment {} is changing too often; retry",
            valid.id
        )))
    }

    /// Deletes the Scheduled/Late runs a deployment's schedules produced that are not due yet.
    pub(crate) async fn remove_future_scheduled_runs(
        &self,
        id: &DeploymentId,
        now: DateTime<Utc>,
    ) -> Result<usize, AppError> {
        let mut removed = 0;
        for r in self.store.waiting_runs_of(id).await? {
            if r.origin != Origin::Schedule || r.scheduled_time <= now {
                continue;
            }
            match self.store.delete_run(r.id, r.version).await {
                Ok(()) => removed += 1,
                Err(StoreError::Conflict(_)) => {} // claimed meanwhile: it runs
                Err(e) => return Err(e.into()),
            }
        }
        Ok(removed)
    }

    /// A deployment by id.
    pub async fn get_deployment(&self, id: &DeploymentId) -> Result<Deployment, AppError> {
        self.store
            .get_deployment(id)
            .await?
            .ok_or_else(|| AppError::not_found("deployment", id))
    }

    /// All deployments.
    pub async fn list_deployments(&self) -> Result<Vec<Deployment>, AppError> {
        Ok(self.store.list_deployments().await?)
    }

    /// Pauses (removing its future scheduled runs) or resumes a deployment.
    pub async fn set_deployment_paused(
        &self,
        id: &DeploymentId,
        paused: bool,
    ) -> Result<ApplyOutcome, AppError> {
        let mut spec = self.get_deployment(id).await?.spec;
        spec.paused = paused;
        self.apply_deployment(spec).await
    }

    /// Deletes a deployment and its waiting runs; finished runs stay as history.
    pub async fn delete_deployment(&self, id: &DeploymentId) -> Result<usize, AppError> {
        for _ in 0..CONFLICT_RETRIES {
            let d = self.get_deployment(id).await?;
            match self.store.delete_deployment(id, d.revision).await {
                Ok(()) => return self.delete_waiting_runs(id).await,
                Err(StoreError::Conflict(_)) => {
                    backoff().await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Conflict(format!(
            "deployment {id} is changing too often; retry"
        )))
    }

    /// Deletes the waiting runs of a deleted deployment; a run that changed meanwhile is read
    /// again and deleted if it still waits (claimed ones are left to finish). A store failure
    /// is returned: the runs left behind are cancelled by the first agent that reads them.
    async fn delete_waiting_runs(&self, id: &DeploymentId) -> Result<usize, AppError> {
        let mut removed = 0;
        for mut r in self.store.waiting_runs_of(id).await? {
            for _ in 0..CONFLICT_RETRIES {
                match self.store.delete_run(r.id, r.version).await {
                    Ok(()) => {
                        removed += 1;
                        break;
                    }
                    Err(StoreError::Conflict(_)) => match self.store.get_run(r.id).await? {
                        Some(now) if now.is_waiting() => r = now,
                        _ => break,
                    },
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(removed)
    }

    // ---------------------------------------------------------------- flow runs

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
        match self.store.insert_run(&run).await? {
            InsertOutcome::Inserted => {
                tracing::info!(run_id = %run.id, deployment = %run.deployment, "ad-hoc run created");
                if let Some(notify) = &self.on_run_created {
                    notify();
                }
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
        for _ in 0..CONFLICT_RETRIES {
            let run = self.get_run(id).await?;
            if run.state == StateType::Cancelling {
                return Ok(run);
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
            match self.store.update_run(&next, run.version).await {
                Ok(()) => return Ok(next),
                Err(StoreError::Conflict(_)) => {
                    backoff().await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(AppError::Conflict(format!(
            "run {id} is changing too often; retry"
        )))
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

    // ---------------------------------------------------------------- bundles

    /// Stores a bundle after checking its digest.
    pub async fn put_bundle(&self, sha256: &str, bytes: &[u8]) -> Result<(), AppError> {
        if !ferry_core::digest::is_sha256_hex(sha256) {
            return Err(AppError::Invalid(ValidationError::new(
                "sha256",
                format!("{sha256:?} is not a lowercase hex sha256 (64 characters)"),
            )));
        }
        if bytes.len() > ferry_core::limits::MAX_BUNDLE_BYTES {
            return Err(AppError::invalid(
                "bundle",
                format!(
                    "{} bytes exceeds the {}-byte limit: add large files to .ferryignore",
                    bytes.len(),
                    ferry_core::limits::MAX_BUNDLE_BYTES
                ),
            ));
        }
        match self.code.put_bundle(sha256, bytes).await {
            Err(CodeStoreError::DigestMismatch { expected, actual }) => Err(AppError::invalid(
                "sha256",
                format!("the uploaded bytes hash to {actual}, not {expected}: the bundle was corrupted or the digest is wrong; rebuild with `ferry deployment build`"),
            )),
            other => Ok(other?),
        }
    }

    /// Where the client should upload bundle `sha256` itself (`None`: through the API).
    pub async fn bundle_upload_target(
        &self,
        sha256: &str,
    ) -> Result<Option<ferry_core::ports::UploadTarget>, AppError> {
        if !ferry_core::digest::is_sha256_hex(sha256) {
            return Err(AppError::invalid(
                "sha256",
                format!("{sha256:?} is not a lowercase hex sha256 (64 characters)"),
            ));
        }
        Ok(self.code.upload_target(sha256).await?)
    }

    /// Whether a bundle is stored.
    pub async fn has_bundle(&self, sha256: &str) -> Result<bool, AppError> {
        Ok(self.code.has_bundle(sha256).await?)
    }

    /// A bundle's bytes.
    pub async fn get_bundle(&self, sha256: &str) -> Result<Vec<u8>, AppError> {
        self.code
            .get_bundle(sha256)
            .await?
            .ok_or_else(|| AppError::not_found("bundle", sha256))
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
