//! Work queues: where runs wait for agents.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The queue every deployment uses unless told otherwise; it always exists.
pub const DEFAULT_QUEUE: &str = "default";

/// A work queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WorkQueue {
    /// Unique name.
    pub name: String,
    /// Most runs Pending/Running at once across all agents; `None` = unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<u32>,
    /// A paused queue keeps its runs scheduled but agents claim none of them.
    #[serde(default)]
    pub paused: bool,
    /// Agents polling several queues serve the lowest number first (1 = highest priority).
    #[serde(default = "default_priority")]
    pub priority: u32,
    /// Optimistic-concurrency version.
    #[serde(default)]
    pub version: u64,
    /// When the queue was created.
    pub created_at: DateTime<Utc>,
}

fn default_priority() -> u32 {
    1
}

impl WorkQueue {
    /// A new unpaused, unlimited queue.
    pub fn new(name: &str, now: DateTime<Utc>) -> Self {
        Self {
            name: name.to_owned(),
            concurrency_limit: None,
            paused: false,
            priority: default_priority(),
            version: 0,
            created_at: now,
        }
    }

    /// The concurrency-slot key of this queue.
    pub fn slot_key(&self) -> String {
        queue_slot_key(&self.name)
    }
}

/// The concurrency-slot key of queue `name`.
pub fn queue_slot_key(name: &str) -> String {
    format!("Q#{name}")
}
