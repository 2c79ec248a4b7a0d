//! Deployment use cases: apply (create or update), read, pause, delete.

use chrono::{DateTime, Utc};
use ferry_core::deployment::Deployment;
use ferry_core::ids::DeploymentId;
use ferry_core::ports::StoreError;
use ferry_core::run::Origin;
use ferry_core::validate::{schedule_digest, validate_spec};
use ferry_core::DeploymentSpec;

use crate::retry::{landed, retry_on_conflict, Attempt, CONFLICT_RETRIES};
use crate::{AppError, ApplyOutcome, Ferry};

impl Ferry {
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
            if !self.has_bundle(&b.sha256).await? {
                return Err(AppError::invalid(
                    "bundle.sha256",
                    format!("no bundle with sha256 {} has been uploaded: `ferry deployment apply MANIFEST` uploads the bundle written beside the manifest by `ferry deployment build`", b.sha256),
                ));
            }
        }
        self.check_infra_of(&spec).await?;
        let digest = schedule_digest(&spec);
        let has_active = valid.schedules.iter().any(|s| s.spec().active);
        let (spec, id, digest) = (&spec, &valid.id, &digest);
        retry_on_conflict(format!("deployment {id}"), || async move {
            let now = self.now();
            let existing = self.store.get_deployment(id).await?;
            let outcome = match existing {
                None => {
                    let d = Deployment {
                        id: id.clone(),
                        spec: spec.clone(),
                        revision: 1,
                        version: 1,
                        schedule_digest: digest.clone(),
                        scheduled_until: Some(now),
                        next_tick_at: (has_active && !spec.paused).then_some(now),
                        created_at: now,
                        updated_at: now,
                    };
                    if !landed(self.store.put_deployment(&d, None).await)? {
                        return Ok(Attempt::Lost);
                    }
                    ApplyOutcome {
                        deployment: d,
                        created: true,
                        changed: true,
                        removed_runs: 0,
                    }
                }
                Some(old) if old.spec == *spec => ApplyOutcome {
                    deployment: old,
                    created: false,
                    changed: false,
                    removed_runs: 0,
                },
                Some(old) => {
                    let mut d = old.clone();
                    d.spec = spec.clone();
                    d.revision = old.revision + 1;
                    d.version = old.version + 1;
                    d.updated_at = now;
                    d.schedule_digest = digest.clone();
                    let reschedule = old.reschedules(&d);
                    if reschedule {
                        d.scheduled_until = Some(now);
                        d.next_tick_at = (has_active && !spec.paused).then_some(now);
                    }
                    if !landed(self.store.put_deployment(&d, Some(old.version)).await)? {
                        return Ok(Attempt::Lost);
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
            Ok(Attempt::Done(outcome))
        })
        .await
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
        retry_on_conflict(format!("deployment {id}"), || async move {
            let d = self.get_deployment(id).await?;
            if !landed(self.store.delete_deployment(id, d.version).await)? {
                return Ok(Attempt::Lost);
            }
            Ok(Attempt::Done(()))
        })
        .await?;
        self.delete_waiting_runs(id).await
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
}
