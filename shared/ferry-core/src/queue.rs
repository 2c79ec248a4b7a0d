//! Work queues: where runs wait for agents.

use crate::ids::QueueName;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::slot::SlotKey;

/// The queue every deployment uses unless told otherwise; it always exists.
pub const DEFAULT_QUEUE: &str = "default";

/// A work queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkQueue {
    /// Unique name.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: QueueName,
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
    pub fn new(name: QueueName, now: DateTime<Utc>) -> Self {
        Self {
            name,
            concurrency_limit: None,
            paused: false,
            priority: default_priority(),
            version: 0,
            created_at: now,
        }
    }

    /// The concurrency slot of this queue.
    pub fn slot_key(&self) -> SlotKey {
        SlotKey::Queue(self.name.clone())
    }
}

/// Checks a queue's concurrency limit: at least 1 (`None` is unlimited). A limit of 0 would
/// let agents claim nothing while the queue does not show as paused, so it is refused, like a
/// deployment's.
pub fn check_concurrency_limit(limit: Option<u32>) -> Result<(), ValidationError> {
    if limit == Some(0) {
        return Err(ValidationError::new(
            "concurrency_limit",
            "must be at least 1: a queue with limit 0 would never run anything \
             (to stop its runs, pause it with `ferry work-queue pause`)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_limit_must_be_at_least_one() {
        let e = check_concurrency_limit(Some(0)).unwrap_err();
        assert_eq!(e.field, "concurrency_limit");
        assert!(
            e.message.contains("at least 1") && e.message.contains("pause"),
            "{e}"
        );
        assert!(check_concurrency_limit(Some(1)).is_ok());
        assert!(check_concurrency_limit(None).is_ok());
    }
}
