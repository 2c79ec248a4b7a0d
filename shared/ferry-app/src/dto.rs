//! The use cases' request and result types that cross the API (serde + OpenAPI schemas).

use chrono::{DateTime, Utc};
use ferry_core::deployment::Deployment;
use serde::{Deserialize, Serialize};

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
