//! Test support (feature `testkit`): [`FaultyStore`], a store that delegates to a real one and
//! fails the writes a test picks — to try what a writer that dies, or a backend that keeps
//! failing, leaves behind.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_core::agent::{AgentPresence, AgentRecord};
use ferry_core::ids::{DeploymentId, RunId};
use ferry_core::infra::{InfraName, InfraProfile};
use ferry_core::ports::{
    AgentStore, ClaimOutcome, DeploymentStore, InfraStore, InsertOutcome, QueueStore, RunFilter,
    RunStore, SlotTake, Store, StoreError, StoreResult,
};
use ferry_core::{Deployment, FlowRun, WorkQueue};

/// A write the fault rule is asked about.
#[derive(Debug)]
pub enum Op<'a> {
    /// `insert_run(run)`.
    InsertRun(&'a FlowRun),
    /// `update_run(run, _)`.
    UpdateRun(&'a FlowRun),
    /// `finish_with_retry(_, finished, retry)`.
    FinishWithRetry(&'a FlowRun, &'a FlowRun),
    /// `put_deployment(deployment, _)`.
    PutDeployment(&'a Deployment),
    /// `delete_run(id, _)`.
    DeleteRun(RunId),
}

type Rule = Box<dyn Fn(&Op) -> bool + Send + Sync>;

/// The store wrapper; [`FaultyStore::fail`] sets which writes fail with `Unavailable`.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    rule: Mutex<Option<Rule>>,
    /// Runs returned by the due-index reads (`due_runs_after`, `scheduled_due`) so far.
    pub due_rows_read: std::sync::atomic::AtomicUsize,
}

impl FaultyStore {
    /// Wraps `inner`; nothing fails until [`FaultyStore::fail`].
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            rule: Mutex::new(None),
            due_rows_read: Default::default(),
        })
    }

    /// From now on, writes for which `rule` is true fail (until [`FaultyStore::heal`]).
    pub fn fail(&self, rule: impl Fn(&Op) -> bool + Send + Sync + 'static) {
        *self.rule.lock().unwrap() = Some(Box::new(rule));
    }

    /// Stops failing.
    pub fn heal(&self) {
        *self.rule.lock().unwrap() = None;
    }

    fn count(&self, rows: usize) {
        self.due_rows_read
            .fetch_add(rows, std::sync::atomic::Ordering::SeqCst);
    }

    fn check(&self, op: Op) -> StoreResult<()> {
        match &*self.rule.lock().unwrap() {
            Some(rule) if rule(&op) => Err(StoreError::Unavailable {
                source: format!("injected fault on {op:?}").into(),
            }),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl QueueStore for FaultyStore {
    async fn create_queue(&self, queue: &WorkQueue) -> StoreResult<()> {
        self.inner.create_queue(queue).await
    }
    async fn update_queue(&self, queue: &WorkQueue, expected_version: u64) -> StoreResult<()> {
        self.inner.update_queue(queue, expected_version).await
    }
    async fn get_queue(&self, name: &str) -> StoreResult<Option<WorkQueue>> {
        self.inner.get_queue(name).await
    }
    async fn list_queues(&self) -> StoreResult<Vec<WorkQueue>> {
        self.inner.list_queues().await
    }
    async fn delete_queue(&self, name: &str) -> StoreResult<()> {
        self.inner.delete_queue(name).await
    }
}

#[async_trait]
impl DeploymentStore for FaultyStore {
    async fn get_deployment(&self, id: &DeploymentId) -> StoreResult<Option<Deployment>> {
        self.inner.get_deployment(id).await
    }
    async fn list_deployments(&self) -> StoreResult<Vec<Deployment>> {
        self.inner.list_deployments().await
    }
    async fn put_deployment(&self, d: &Deployment, expected: Option<u64>) -> StoreResult<()> {
        self.check(Op::PutDeployment(d))?;
        self.inner.put_deployment(d, expected).await
    }
    async fn delete_deployment(&self, id: &DeploymentId, expected: u64) -> StoreResult<()> {
        self.inner.delete_deployment(id, expected).await
    }
    async fn deployments_due_for_tick(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<Deployment>> {
        self.inner.deployments_due_for_tick(now, limit).await
    }
}

#[async_trait]
impl RunStore for FaultyStore {
    async fn insert_run(&self, run: &FlowRun) -> StoreResult<InsertOutcome> {
        self.check(Op::InsertRun(run))?;
        self.inner.insert_run(run).await
    }
    async fn get_run(&self, id: RunId) -> StoreResult<Option<FlowRun>> {
        self.inner.get_run(id).await
    }
    async fn update_run(&self, run: &FlowRun, expected_version: u64) -> StoreResult<()> {
        self.check(Op::UpdateRun(run))?;
        self.inner.update_run(run, expected_version).await
    }
    async fn finish_with_retry(
        &self,
        held: &FlowRun,
        finished: &FlowRun,
        retry: &FlowRun,
    ) -> StoreResult<()> {
        self.check(Op::FinishWithRetry(finished, retry))?;
        self.inner.finish_with_retry(held, finished, retry).await
    }
    async fn delete_run(&self, id: RunId, expected_version: u64) -> StoreResult<()> {
        self.check(Op::DeleteRun(id))?;
        self.inner.delete_run(id, expected_version).await
    }
    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<FlowRun>> {
        self.inner.list_runs(filter).await
    }
    async fn count_runs_by_state(
        &self,
        lo: DateTime<Utc>,
        hi: DateTime<Utc>,
    ) -> StoreResult<ferry_core::ports::StateCounts> {
        self.inner.count_runs_by_state(lo, hi).await
    }
    async fn count_due_runs(
        &self,
        queue: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<ferry_core::ports::DueCounts> {
        self.inner.count_due_runs(queue, now).await
    }
    async fn run_ids_with_prefix(
        &self,
        prefix: &ferry_core::ids::RunIdPrefix,
        limit: usize,
    ) -> StoreResult<Vec<RunId>> {
        self.inner.run_ids_with_prefix(prefix, limit).await
    }
    async fn due_runs_after(
        &self,
        queue: &str,
        before: DateTime<Utc>,
        after: Option<&FlowRun>,
        limit: usize,
    ) -> StoreResult<Vec<FlowRun>> {
        let rows = self
            .inner
            .due_runs_after(queue, before, after, limit)
            .await?;
        self.count(rows.len());
        Ok(rows)
    }
    async fn scheduled_due(
        &self,
        queue: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<FlowRun>> {
        let rows = self.inner.scheduled_due(queue, before, limit).await?;
        self.count(rows.len());
        Ok(rows)
    }
    async fn launchable_after(
        &self,
        before: DateTime<Utc>,
        after: Option<&FlowRun>,
        limit: usize,
    ) -> StoreResult<Vec<FlowRun>> {
        self.inner.launchable_after(before, after, limit).await
    }
    async fn awaiting_tasks(&self, limit: usize) -> StoreResult<Vec<FlowRun>> {
        self.inner.awaiting_tasks(limit).await
    }
    async fn waiting_runs_of(&self, deployment: &DeploymentId) -> StoreResult<Vec<FlowRun>> {
        self.inner.waiting_runs_of(deployment).await
    }
    async fn expired_leases(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<FlowRun>> {
        self.inner.expired_leases(now, limit).await
    }
    async fn claim_run(
        &self,
        claimed: &FlowRun,
        expected_version: u64,
        slots: &[SlotTake],
    ) -> StoreResult<ClaimOutcome> {
        self.inner.claim_run(claimed, expected_version, slots).await
    }
    async fn slot_holders(&self, key: &ferry_core::slot::SlotKey) -> StoreResult<u32> {
        self.inner.slot_holders(key).await
    }
    async fn sweep_slots(&self, now: DateTime<Utc>) -> StoreResult<usize> {
        self.inner.sweep_slots(now).await
    }
}

#[async_trait]
impl InfraStore for FaultyStore {
    async fn put_infra(
        &self,
        profile: &InfraProfile,
        expected_version: Option<u64>,
    ) -> StoreResult<()> {
        self.inner.put_infra(profile, expected_version).await
    }
    async fn get_infra(&self, name: &InfraName) -> StoreResult<Option<InfraProfile>> {
        self.inner.get_infra(name).await
    }
    async fn list_infra(&self) -> StoreResult<Vec<InfraProfile>> {
        self.inner.list_infra().await
    }
    async fn delete_infra(&self, name: &InfraName, expected_version: u64) -> StoreResult<()> {
        self.inner.delete_infra(name, expected_version).await
    }
}

#[async_trait]
impl AgentStore for FaultyStore {
    async fn record_agent(
        &self,
        presence: &AgentPresence,
        now: DateTime<Utc>,
    ) -> StoreResult<AgentRecord> {
        self.inner.record_agent(presence, now).await
    }
    async fn list_agents(&self, since: DateTime<Utc>) -> StoreResult<Vec<AgentRecord>> {
        self.inner.list_agents(since).await
    }
}
