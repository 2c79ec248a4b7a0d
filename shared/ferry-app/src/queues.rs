//! Work-queue use cases: create, read, change, preview.

use std::collections::HashSet;

use chrono::Duration;
use ferry_core::ids::{QueueName, RunId};
use ferry_core::ports::StoreError;
use ferry_core::queue::{check_concurrency_limit, WorkQueue, DEFAULT_QUEUE};
use ferry_core::schedule::fire_times;
use ferry_core::validate::validate_spec;

use crate::retry::{landed, retry_on_conflict, Attempt};
use crate::{AppError, Ferry, PreviewItem, QueuePatch};

impl Ferry {
    /// Creates the `default` queue if missing.
    pub async fn ensure_default_queue(&self) -> Result<(), AppError> {
        if self.store.get_queue(DEFAULT_QUEUE).await?.is_none() {
            match self
                .store
                .create_queue(&WorkQueue::new(QueueName::default_queue(), self.now()))
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
        let name = QueueName::parse("name", name)?;
        check_concurrency_limit(limit)?;
        if priority == Some(0) {
            return Err(AppError::invalid(
                "priority",
                "must be at least 1 (1 is the highest priority)",
            ));
        }
        let mut q = WorkQueue::new(name.clone(), self.now());
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
        let patch = &patch;
        retry_on_conflict(format!("work queue {name:?}"), || async move {
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
            if !landed(self.store.update_queue(&q, expected).await)? {
                return Ok(Attempt::Lost);
            }
            q.version = expected + 1;
            Ok(Attempt::Done(q))
        })
        .await
    }

    /// Deletes a queue. Refused (409, nothing changed) for `default`, for a queue a deployment
    /// uses and for a queue with waiting runs, naming them and the fix. The checks and the
    /// delete are not one transaction: a deployment applied to the queue in between finds it
    /// gone at its next apply.
    pub async fn delete_queue(&self, name: &str) -> Result<WorkQueue, AppError> {
        let queue = self.get_queue(name).await?;
        if queue.name == DEFAULT_QUEUE {
            return Err(AppError::Conflict(format!(
                "work queue {DEFAULT_QUEUE:?} always exists and cannot be deleted (pause it with `ferry work-queue pause {DEFAULT_QUEUE}`)"
            )));
        }
        let users: Vec<String> = self
            .store
            .list_deployments()
            .await?
            .into_iter()
            .filter(|d| d.spec.work_queue == name)
            .map(|d| d.id.to_string())
            .collect();
        if !users.is_empty() {
            return Err(AppError::Conflict(format!(
                "work queue {name:?} is used by deployment(s) {}: move them to another queue (`-q QUEUE` with `ferry deployment build ... -a`) or delete them (`ferry deployment delete FLOW/NAME`) first",
                users.join(", ")
            )));
        }
        let waiting = self
            .store
            .list_runs(&ferry_core::ports::RunFilter {
                work_queue: Some(name.to_owned()),
                states: vec![
                    ferry_core::StateType::Scheduled,
                    ferry_core::StateType::Late,
                ],
                limit: 6,
                ..Default::default()
            })
            .await?;
        if !waiting.is_empty() {
            let mut ids: Vec<String> = waiting.iter().take(5).map(|r| r.id.to_string()).collect();
            if waiting.len() > 5 {
                ids.push("...".into());
            }
            return Err(AppError::Conflict(format!(
                "work queue {name:?} has waiting flow runs ({}): cancel them (`ferry flow-run cancel ID`) or let an agent run them (`ferry agent start -q {name}`) first",
                ids.join(", ")
            )));
        }
        self.store.delete_queue(name).await?;
        tracing::info!(queue = name, "work queue deleted");
        Ok(queue)
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
        let mut seen: HashSet<String> = items.iter().map(|i| i.run_id.clone()).collect();
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
}
