//! The agent's port on the control plane: everything an agent asks of Ferry's state, as one
//! trait. Two adapters implement it: [`Direct`] (the use cases over the stores, in-process:
//! FERRY_HOME, or DynamoDB/S3 with table access) and the HTTP client of `ferry agent start`
//! (the `/v1` API: `cli/src/agent_client.rs`). Both end in the same use cases of `ferry-app`
//! ([`Ferry::claim_batch`] and the run writes), so the exactly-once, lease and limit guarantees
//! are the same whichever path an agent takes: the conditional writes happen where the store is.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_app::{AppError, Ferry, Heartbeat};
use ferry_core::agent::{AgentPath, AgentPresence};
use ferry_core::digest::BundleDigest;
use ferry_core::ports::LogLine;
use ferry_core::state::RunEvent;
use ferry_core::{Deployment, FlowRun, QueueName};

/// Why the control plane could not do what the agent asked.
#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    /// A use case failed (direct path).
    #[error(transparent)]
    App(#[from] AppError),
    /// The API could not be reached, or answered with a server error: worth retrying later.
    #[error("{0}")]
    Unavailable(String),
    /// The API refused the request (a 4xx other than 404); the message says why.
    #[error("{0}")]
    Refused(String),
    /// The API has no such endpoint or thing (404).
    #[error("{0}")]
    NotFound(String),
}

/// What an agent asks for in one poll.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    /// The agent's name (the lease holder of what it claims).
    pub agent: String,
    /// Queues it serves.
    pub queues: Vec<QueueName>,
    /// Look-ahead: runs due within it may be claimed (see [`Ferry::claim_batch`]).
    pub prefetch: Duration,
    /// Most runs to claim (the agent's free capacity).
    pub free: usize,
}

/// The control plane as an agent sees it.
#[async_trait]
pub trait ControlPlane: Send + Sync + 'static {
    /// How this adapter reaches the control plane (reported with the agent's presence).
    fn path(&self) -> AgentPath;
    /// The control plane's time, as far as the agent can tell.
    fn now(&self) -> DateTime<Utc>;
    /// Whether an empty [`ControlPlane::claim`] already waited for work (a long poll of the
    /// API): the agent then claims again at once instead of pausing for its poll interval,
    /// and stops waiting for the claim's answer when it shuts down.
    fn long_polls(&self) -> bool {
        false
    }
    /// One poll's claims: the runs claimed for `req.agent`, with their deployments.
    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<(FlowRun, Deployment)>, PlaneError>;
    /// Renews the lease of a held run and reports a pending cancel.
    async fn heartbeat(&self, run: &FlowRun) -> Result<Heartbeat, PlaneError>;
    /// Gives a claimed, not yet started run back to its queue.
    async fn release(&self, run: &FlowRun) -> Result<FlowRun, PlaneError>;
    /// Marks a claimed run Running (its log where the control plane keeps logs). `None`: it
    /// was cancelled or reaped meanwhile.
    async fn start(&self, run: &FlowRun) -> Result<Option<FlowRun>, PlaneError>;
    /// Records how a run ended (`Complete`, `Fail`, `Crash`, `ConfirmCancelled`) and its
    /// retry; returns the run as stored.
    async fn finish(&self, run: &FlowRun, event: RunEvent) -> Result<FlowRun, PlaneError>;
    /// Records that a held run completed, with what its flow returned (`None`: nothing to
    /// store); the control plane places the value (inline or in the code store) and writes it
    /// with the Completed state. Returns the run as stored.
    async fn complete(
        &self,
        run: &FlowRun,
        result: Option<serde_json::Value>,
    ) -> Result<FlowRun, PlaneError>;
    /// Appends lines to a held run's log.
    async fn append_logs(&self, run: &FlowRun, lines: &[LogLine]) -> Result<(), PlaneError>;
    /// A bundle's bytes (`None`: not stored); the caller verifies the digest.
    async fn bundle(&self, digest: &BundleDigest) -> Result<Option<Vec<u8>>, PlaneError>;
    /// Says the agent is alive, what it serves and how busy it is (at most every 10 s).
    async fn report_presence(&self, presence: &AgentPresence) -> Result<(), PlaneError>;
}

/// The control plane in-process: the use cases over the stores this process can reach.
#[derive(Clone)]
pub struct Direct {
    ferry: Ferry,
}

impl Direct {
    /// Direct access through `ferry`.
    pub fn new(ferry: Ferry) -> Self {
        Self { ferry }
    }
}

#[async_trait]
impl ControlPlane for Direct {
    fn path(&self) -> AgentPath {
        AgentPath::Direct
    }

    fn now(&self) -> DateTime<Utc> {
        self.ferry.now()
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<(FlowRun, Deployment)>, PlaneError> {
        Ok(self
            .ferry
            .claim_batch(&req.agent, &req.queues, req.prefetch, req.free)
            .await?)
    }

    async fn heartbeat(&self, run: &FlowRun) -> Result<Heartbeat, PlaneError> {
        Ok(self.ferry.heartbeat(run.clone()).await?)
    }

    async fn release(&self, run: &FlowRun) -> Result<FlowRun, PlaneError> {
        Ok(self.ferry.release(run.clone()).await?)
    }

    async fn start(&self, run: &FlowRun) -> Result<Option<FlowRun>, PlaneError> {
        let location = Some(self.ferry.logs.location(run.id));
        Ok(self.ferry.start(run.clone(), location).await?)
    }

    async fn finish(&self, run: &FlowRun, event: RunEvent) -> Result<FlowRun, PlaneError> {
        Ok(self.ferry.finish(run.clone(), event).await?)
    }

    async fn complete(
        &self,
        run: &FlowRun,
        result: Option<serde_json::Value>,
    ) -> Result<FlowRun, PlaneError> {
        Ok(self.ferry.complete(run.clone(), result).await?)
    }

    async fn append_logs(&self, run: &FlowRun, lines: &[LogLine]) -> Result<(), PlaneError> {
        self.ferry
            .logs
            .append(run.id, lines)
            .await
            .map_err(|e| PlaneError::App(AppError::Logs(Box::new(e))))
    }

    async fn bundle(&self, digest: &BundleDigest) -> Result<Option<Vec<u8>>, PlaneError> {
        Ok(self
            .ferry
            .code
            .get_bundle(digest)
            .await
            .map_err(AppError::from)?)
    }

    async fn report_presence(&self, presence: &AgentPresence) -> Result<(), PlaneError> {
        self.ferry.agent_polled(presence.clone()).await?;
        Ok(())
    }
}
