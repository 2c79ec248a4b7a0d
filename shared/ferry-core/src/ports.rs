//! Ports: the traits adapters implement (embedded SQLite/files, DynamoDB/S3).
//!
//! They are shaped after DynamoDB's semantics so that every adapter can keep them: single-item
//! conditional writes (`expected_version`/`expected_revision`), small all-or-nothing
//! transactions (claim + slot takes), and index reads that are only hints — the conditional
//! write decides. Every adapter passes the one conformance suite in `ferry-app`'s tests.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::agent::{AgentPresence, AgentRecord};
use crate::deployment::Deployment;
use crate::digest::BundleDigest;
use crate::ids::{DeploymentId, RunId, RunIdPrefix};
use crate::infra::{InfraName, InfraProfile};
use crate::queue::WorkQueue;
use crate::run::FlowRun;
use crate::slot::SlotKey;
use crate::state::StateType;

/// Errors of the storage ports.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A conditional write lost: the item changed (or exists, or is gone) since it was read.
    /// Not a failure: the caller re-reads or moves on.
    #[error("conditional write lost: {0}")]
    Conflict(String),
    /// The backend refused for now (throttling, timeouts, 5xx); retrying later may succeed.
    #[error("storage temporarily unavailable")]
    Unavailable {
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Anything else from the backend.
    #[error("storage failure")]
    Backend {
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A stored item could not be decoded.
    #[error("corrupt item {key}: {message}")]
    Corrupt {
        /// Item key.
        key: String,
        /// Decoder message.
        message: String,
    },
}

impl StoreError {
    /// Wraps a backend error.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        StoreError::Backend {
            source: Box::new(e),
        }
    }
    /// Whether retrying the same call may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable { .. })
    }
}

/// Result of the storage ports.
pub type StoreResult<T, E = StoreError> = Result<T, E>;

/// Outcome of inserting a run.
#[derive(Debug, Clone, PartialEq)]
pub enum InsertOutcome {
    /// Written.
    Inserted,
    /// A run with the same id, or the same deployment + idempotency key, already exists; it is
    /// returned unchanged.
    Exists(Box<FlowRun>),
}

/// A concurrency slot to take with a claim: at most `limit` holders of `key` at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotTake {
    /// The queue's or the deployment's slot.
    pub key: SlotKey,
    /// The limit in force.
    pub limit: u32,
}

/// Outcome of a claim.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// The run is ours (the stored, claimed run).
    Claimed(Box<FlowRun>),
    /// Someone else changed the run first.
    Lost,
    /// A concurrency slot is full (its key).
    SlotFull(SlotKey),
}

/// Filter of `list_runs`.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this deployment's runs.
    pub deployment: Option<DeploymentId>,
    /// Only runs in these states (empty = all).
    pub states: Vec<StateType>,
    /// Only this queue.
    pub work_queue: Option<String>,
    /// At most this many.
    pub limit: usize,
    /// Which runs by scheduled time, and their order.
    pub window: RunWindow,
    /// Keyset pagination: only runs that come after this one in the window's order (the last
    /// run of the previous page). An index range on every store, so page N costs what page 1
    /// costs.
    pub after: Option<RunCursor>,
}

/// Where a page of `list_runs` ends: a run's `(scheduled_time, id)`, the order both stores
/// sort runs by (the id breaks ties between runs scheduled in the same millisecond).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunCursor {
    /// The run's scheduled time.
    pub scheduled_time: DateTime<Utc>,
    /// The run's id.
    pub id: RunId,
}

impl RunCursor {
    /// The cursor just past `run`.
    pub fn of(run: &FlowRun) -> Self {
        Self {
            scheduled_time: run.scheduled_time,
            id: run.id,
        }
    }
}

/// Runs per state (those with none included, as 0), in [`StateType::ALL`] order.
pub type StateCounts = Vec<(StateType, u64)>;

/// A work queue's waiting runs, counted on the due-runs index (runs of launched deployments
/// wait for their launcher, not in the queue, and are not counted).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DueCounts {
    /// Waiting runs (Scheduled or Late) due at the given time, Late ones included.
    pub due: u64,
    /// Late runs.
    pub late: u64,
}

/// The runs `list_runs` reads by scheduled time, and their order: an index range on every
/// store (never a scan).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunWindow {
    /// Every run, newest scheduled first.
    #[default]
    All,
    /// Runs scheduled at or before this time (those that ran, run, or are due), newest
    /// scheduled first.
    DueBy(DateTime<Utc>),
    /// Runs scheduled after this time (upcoming), soonest first.
    After(DateTime<Utc>),
    /// Runs scheduled at or after the first time and before the second (`[lo, hi)`), newest
    /// scheduled first.
    Between(DateTime<Utc>, DateTime<Utc>),
}

/// Work queues.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Writes `queue` if no queue of that name exists; `Conflict` otherwise.
    async fn create_queue(&self, queue: &WorkQueue) -> StoreResult<()>;
    /// Replaces `queue` if its stored version is `expected_version` (the stored copy gets
    /// `expected_version + 1`); `Conflict` otherwise.
    async fn update_queue(&self, queue: &WorkQueue, expected_version: u64) -> StoreResult<()>;
    /// The queue named `name`.
    async fn get_queue(&self, name: &str) -> StoreResult<Option<WorkQueue>>;
    /// All queues, by name.
    async fn list_queues(&self) -> StoreResult<Vec<WorkQueue>>;
    /// Deletes the queue.
    async fn delete_queue(&self, name: &str) -> StoreResult<()>;
}

/// Deployments, and the schedule-horizon index.
#[async_trait]
pub trait DeploymentStore: Send + Sync {
    /// The deployment `id`.
    async fn get_deployment(&self, id: &DeploymentId) -> StoreResult<Option<Deployment>>;
    /// All deployments, by id.
    async fn list_deployments(&self) -> StoreResult<Vec<Deployment>>;
    /// Writes `deployment` with its [`Deployment::version`] as the new concurrency token.
    /// `expected_version` `None`: it must not exist yet; `Some(v)`: the stored version must be
    /// `v`. `Conflict` otherwise. The caller sets the new version (and the user's `revision`).
    /// Every read fills `version` from the store.
    async fn put_deployment(
        &self,
        deployment: &Deployment,
        expected_version: Option<u64>,
    ) -> StoreResult<()>;
    /// Deletes `id` if its version is `expected_version`.
    async fn delete_deployment(&self, id: &DeploymentId, expected_version: u64) -> StoreResult<()>;
    /// Deployments whose `next_tick_at` is at or before `now`, earliest first, at most `limit`
    /// (the schedule-horizon index; a hint, re-checked by the conditional write).
    async fn deployments_due_for_tick(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<Deployment>>;
}

/// Flow runs, the due-runs index, leases and concurrency slots.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Writes `run` unless a run with its id — or the same deployment and idempotency key —
    /// exists (`attribute_not_exists`), in which case the existing run is returned.
    async fn insert_run(&self, run: &FlowRun) -> StoreResult<InsertOutcome>;
    /// The run `id`.
    async fn get_run(&self, id: RunId) -> StoreResult<Option<FlowRun>>;
    /// Replaces `run` if the stored version is `expected_version`; `Conflict` otherwise.
    /// Releases the slots that the stored copy holds and `run` does not. A replay of the very
    /// same write (a retried request whose first attempt landed) may report success.
    async fn update_run(&self, run: &FlowRun, expected_version: u64) -> StoreResult<()>;
    /// Atomically: replace `held` (its stored version must still be `held.version`) with
    /// `finished`, and insert `retry` (no run with its id may exist). All or nothing, so a
    /// writer that dies can never leave a failed run without the retry it was owed. Slots
    /// `held` holds and `finished` does not are released (possibly just after the write, where
    /// the backend cannot do both atomically; [`RunStore::sweep_slots`] covers a crash in
    /// between). `retry` must not carry an idempotency key. `Conflict` if either condition
    /// fails; a replay of the very same write may report success.
    async fn finish_with_retry(
        &self,
        held: &FlowRun,
        finished: &FlowRun,
        retry: &FlowRun,
    ) -> StoreResult<()>;
    /// Deletes `id` if its version is `expected_version` (used to drop stale scheduled runs).
    async fn delete_run(&self, id: RunId, expected_version: u64) -> StoreResult<()>;
    /// Runs matching `filter`, in the order of its [`RunWindow`], after its cursor. A filter
    /// on states or on the queue reads about a page of an index, not every run.
    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<FlowRun>>;
    /// How many runs scheduled in `[lo, hi)` are in each state, counted on an index (no run
    /// body is read).
    async fn count_runs_by_state(
        &self,
        lo: DateTime<Utc>,
        hi: DateTime<Utc>,
    ) -> StoreResult<StateCounts>;
    /// How many waiting runs of `queue` are due at `now`, and how many of them are Late,
    /// counted on the due-runs index.
    async fn count_due_runs(&self, queue: &str, now: DateTime<Utc>) -> StoreResult<DueCounts>;
    /// Ids of runs that start with `prefix`, at most `limit`, found through the scheduled time
    /// the prefix carries ([`RunIdPrefix::time_window_ms`]) on the runs-by-time index.
    async fn run_ids_with_prefix(
        &self,
        prefix: &RunIdPrefix,
        limit: usize,
    ) -> StoreResult<Vec<RunId>>;
    /// Waiting (Scheduled/Late) runs of `queue` due at or before `before`, at most `limit`
    /// (the due-runs index; a hint). Runs of launched deployments (`infra` set) are not listed:
    /// they wait for their launcher, not for agents. Late runs come first, then Scheduled ones, each group in
    /// scheduled-time order.
    async fn due_runs(
        &self,
        queue: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<FlowRun>> {
        self.due_runs_after(queue, before, None, limit).await
    }
    /// The page of [`RunStore::due_runs`] that follows `after` (a run returned by the previous
    /// page, as it was read then): lets an agent look past runs it cannot start now (their
    /// deployment is at its limit) without reading them again.
    async fn due_runs_after(
        &self,
        queue: &str,
        before: DateTime<Utc>,
        after: Option<&FlowRun>,
        limit: usize,
    ) -> StoreResult<Vec<FlowRun>>;
    /// Scheduled runs (not yet Late) of `queue` due at or before `before`, earliest first, at
    /// most `limit`. Late marking reads this, so its cost is the runs becoming late, not the
    /// backlog of runs already Late.
    async fn scheduled_due(
        &self,
        queue: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<FlowRun>>;
    /// Waiting runs of *launched* deployments (runs with an `infra` profile, which the due
    /// index never lists) due at or before `before`, Late first, then Scheduled, each group in
    /// scheduled-time order, after `after` as in [`RunStore::due_runs_after`] (the launch index;
    /// a hint).
    async fn launchable_after(
        &self,
        before: DateTime<Utc>,
        after: Option<&FlowRun>,
        limit: usize,
    ) -> StoreResult<Vec<FlowRun>>;
    /// Launched runs still held by their launcher (Pending, waiting for the task to take them),
    /// earliest start deadline first, at most `limit` (a hint).
    async fn awaiting_tasks(&self, limit: usize) -> StoreResult<Vec<FlowRun>>;
    /// Waiting runs of `deployment` (Scheduled or Late), any time.
    async fn waiting_runs_of(&self, deployment: &DeploymentId) -> StoreResult<Vec<FlowRun>>;
    /// Held runs (Pending/Running/Cancelling) whose lease expired before `now` (the lease index).
    async fn expired_leases(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<FlowRun>>;
    /// Atomically: replace `claimed` (stored version must be `expected_version`) and take one
    /// holder of every slot in `slots` (each must be under its limit). All or nothing.
    async fn claim_run(
        &self,
        claimed: &FlowRun,
        expected_version: u64,
        slots: &[SlotTake],
    ) -> StoreResult<ClaimOutcome>;
    /// Current holders of a concurrency slot.
    async fn slot_holders(&self, key: &SlotKey) -> StoreResult<u32>;
    /// Frees slot holders whose runs are no longer held (left by a writer that died between a
    /// run's final write and its slot release, where the backend cannot do both atomically).
    /// Holders whose run changed within the last minute are left alone. Returns how many
    /// were freed.
    async fn sweep_slots(&self, _now: DateTime<Utc>) -> StoreResult<usize> {
        Ok(0)
    }
}

/// Infrastructure profiles (`ecs/NAME`, `process/NAME`).
#[async_trait]
pub trait InfraStore: Send + Sync {
    /// Writes `profile`. `expected_version` `None`: no profile of that name may exist;
    /// `Some(v)`: the stored version must be `v`. `Conflict` otherwise. The caller sets the new
    /// version.
    async fn put_infra(
        &self,
        profile: &InfraProfile,
        expected_version: Option<u64>,
    ) -> StoreResult<()>;
    /// The profile `name`.
    async fn get_infra(&self, name: &InfraName) -> StoreResult<Option<InfraProfile>>;
    /// All profiles, by name.
    async fn list_infra(&self) -> StoreResult<Vec<InfraProfile>>;
    /// Deletes `name` if its version is `expected_version`; `Conflict` otherwise.
    async fn delete_infra(&self, name: &InfraName, expected_version: u64) -> StoreResult<()>;
}

/// How long an agent that stopped polling is remembered (DynamoDB: the item's TTL; SQLite:
/// pruned on write). Listings never show an agent older than this, whether or not the backend
/// has removed it yet.
pub const AGENT_RETENTION: chrono::Duration = chrono::Duration::days(7);

/// Agents as last seen polling (issue 11: "is anyone serving this queue?"). One record per
/// agent name; a write is an upsert, so the store needs no condition.
#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Records that `presence.name` polled at `now`: stores `presence`, sets `last_poll` to
    /// `now` and keeps `first_seen` (or sets it to `now` for a new name). Agents whose last poll
    /// is older than [`AGENT_RETENTION`] before `now` may be forgotten meanwhile. Times are kept
    /// to the millisecond. Returns the stored record.
    async fn record_agent(
        &self,
        presence: &AgentPresence,
        now: DateTime<Utc>,
    ) -> StoreResult<AgentRecord>;
    /// Agents whose last poll is at or after `since`, by name.
    async fn list_agents(&self, since: DateTime<Utc>) -> StoreResult<Vec<AgentRecord>>;
}

/// The whole store.
pub trait Store: QueueStore + DeploymentStore + RunStore + InfraStore + AgentStore {}
impl<T: QueueStore + DeploymentStore + RunStore + InfraStore + AgentStore> Store for T {}

/// Errors of the code store.
#[derive(Debug, thiserror::Error)]
pub enum CodeStoreError {
    /// The bytes do not hash to the digest they were stored or asked for under.
    #[error("bundle digest mismatch: expected sha256 {expected}, got {actual}")]
    DigestMismatch {
        /// Digest claimed.
        expected: String,
        /// Digest of the bytes.
        actual: String,
    },
    /// Backend failure.
    #[error("code store failure")]
    Backend {
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Where a client uploads a bundle itself (a presigned S3 PUT in AWS mode).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadTarget {
    /// URL to send the bundle to.
    pub url: String,
    /// HTTP method (`PUT`).
    pub method: String,
    /// Headers to send exactly as given (they are signed).
    pub headers: Vec<(String, String)>,
}

/// Content-addressed code bundles.
#[async_trait]
pub trait CodeStore: Send + Sync {
    /// Whether bundles live where a task in the cloud can fetch them (S3), not on this
    /// machine's disk. An ECS profile needs it.
    fn is_remote(&self) -> bool {
        false
    }
    /// Where a client should upload the bundle `sha256` directly, or `None` to upload it
    /// through the API (`PUT /v1/bundles/{sha256}`).
    async fn upload_target(
        &self,
        _digest: &BundleDigest,
    ) -> Result<Option<UploadTarget>, CodeStoreError> {
        Ok(None)
    }
    /// A URL a client may GET the bundle from itself (a presigned S3 GET), or `None` to fetch
    /// it through the API (`GET /v1/bundles/{sha256}`). Whoever fetches it verifies the digest.
    async fn download_url(&self, _digest: &BundleDigest) -> Result<Option<String>, CodeStoreError> {
        Ok(None)
    }
    /// Stores `bytes` under `sha256` after verifying the digest; storing twice is a no-op.
    async fn put_bundle(&self, digest: &BundleDigest, bytes: &[u8]) -> Result<(), CodeStoreError>;
    /// The bundle's bytes, digest-verified; `None` if absent.
    async fn get_bundle(&self, digest: &BundleDigest) -> Result<Option<Vec<u8>>, CodeStoreError>;
    /// Whether the bundle is stored.
    async fn has_bundle(&self, digest: &BundleDigest) -> Result<bool, CodeStoreError>;
    /// Stores run `run`'s result (its JSON text, see [`crate::result`]) as an object keyed by
    /// the run's id, replacing one stored before; returns where it is (shown, not parsed).
    async fn put_result(&self, run: RunId, json: &[u8]) -> Result<String, CodeStoreError>;
    /// Run `run`'s stored result, `None` if absent. The caller checks it against the digest
    /// recorded on the run.
    async fn get_result(&self, run: RunId) -> Result<Option<Vec<u8>>, CodeStoreError>;
}

/// Which stream a log line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// The flow's standard output.
    Stdout,
    /// The flow's standard error.
    Stderr,
    /// A line the agent wrote about the run (fetching, exit status, kills).
    Ferry,
}

/// One line of a run's log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogLine {
    /// When the line was read.
    pub at: DateTime<Utc>,
    /// Where it came from.
    pub stream: LogStream,
    /// The text, without the newline.
    pub line: String,
}

/// A page of a run's log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogPage {
    /// Lines from the requested offset on.
    pub lines: Vec<LogLine>,
    /// Offset (line number) to ask for next.
    pub next_offset: u64,
}

/// Errors of the log sink.
#[derive(Debug, thiserror::Error)]
#[error("log sink failure")]
pub struct LogError {
    /// The backend's error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Run logs: appended by the agent while the run goes on, readable meanwhile.
#[async_trait]
pub trait LogSink: Send + Sync {
    /// Appends lines to the run's log (one writer per run: the agent holding it).
    async fn append(&self, run: RunId, lines: &[LogLine]) -> Result<(), LogError>;
    /// Lines from line number `offset` on, at most `limit`.
    async fn read(&self, run: RunId, offset: u64, limit: usize) -> Result<LogPage, LogError>;
    /// Where the run's log is kept (shown to users).
    fn location(&self, run: RunId) -> String;
}
