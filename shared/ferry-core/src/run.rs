//! Flow runs: one execution attempt of a deployment.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ids::{DeploymentId, RunId};
use crate::state::StateType;

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// Written by the tick from the deployment's schedules.
    Schedule,
    /// Created by a user (`ferry deployment run`, the API).
    Manual,
    /// A new attempt after a failed or crashed one.
    Retry,
}

/// An agent's claim on a run; it expires unless renewed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunLease {
    /// The agent holding the run.
    pub agent_id: String,
    /// The lease is void after this instant; the reaper then crashes or retries the run.
    pub expires_at: DateTime<Utc>,
}

/// One entry of a run's state history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StateRecord {
    /// The state entered.
    pub state: StateType,
    /// When it was entered.
    pub at: DateTime<Utc>,
    /// Why, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A flow run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlowRun {
    /// Time-ordered id.
    #[schema(value_type = String)]
    pub id: RunId,
    /// `flow/name` of the deployment.
    #[schema(value_type = String)]
    pub deployment: DeploymentId,
    /// Work queue the run is due in.
    pub work_queue: String,
    /// Parameters the flow is called with (deployment defaults merged with run overrides).
    #[schema(value_type = Object)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// When the run is due.
    pub scheduled_time: DateTime<Utc>,
    /// Current state.
    pub state: StateType,
    /// Message of the current state (failure reason, cancel reason, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_message: Option<String>,
    /// Every state entered, oldest first (bounded, see `limits::MAX_HISTORY`).
    pub history: Vec<StateRecord>,
    /// 1 for the first attempt, 2 for the first retry, ...
    pub attempt: u32,
    /// The run this one retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub retry_of: Option<RunId>,
    /// Caller's key: a repeated create with the same key returns this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Why the run exists.
    pub origin: Origin,
    /// Digest of the schedules that produced it (scheduled runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_digest: Option<String>,
    /// The agent's lease, while claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<RunLease>,
    /// When the flow process started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When the run reached a terminal state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// The flow process's exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Where the run's logs are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_location: Option<String>,
    /// Concurrency slots held while Pending/Running (queue and/or deployment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slots: Vec<String>,
    /// Optimistic-concurrency version; every stored change increments it.
    pub version: u64,
    /// When the run was created.
    pub created_at: DateTime<Utc>,
}

impl FlowRun {
    /// A new Scheduled run (version 0, not yet stored).
    #[allow(clippy::too_many_arguments)]
    pub fn new_scheduled(
        id: RunId,
        deployment: DeploymentId,
        work_queue: String,
        parameters: serde_json::Map<String, serde_json::Value>,
        scheduled_time: DateTime<Utc>,
        origin: Origin,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            deployment,
            work_queue,
            parameters,
            scheduled_time,
            state: StateType::Scheduled,
            state_message: None,
            history: vec![StateRecord {
                state: StateType::Scheduled,
                at: now,
                message: None,
            }],
            attempt,
            retry_of: None,
            idempotency_key: None,
            origin,
            schedule_digest: None,
            lease: None,
            started_at: None,
            ended_at: None,
            exit_code: None,
            log_location: None,
            slots: Vec::new(),
            version: 0,
            created_at: now,
        }
    }

    /// Whether the run waits in its queue's due index (Scheduled or Late).
    pub fn is_waiting(&self) -> bool {
        self.state.is_waiting()
    }
}
