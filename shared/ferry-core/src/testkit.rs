//! Test support other crates' tests share (feature `testkit`): the mock clock and run builders.

use chrono::{DateTime, Utc};

pub use crate::clock::MockClock;
use crate::ids::{DeploymentId, QueueName, RunId};
use crate::run::{FlowRun, Origin};

/// A Scheduled first attempt of `deployment` on `queue`, due `at` (its deterministic schedule
/// id), created at `now`.
pub fn scheduled_run(
    deployment: &DeploymentId,
    name_of_queue: &str,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> FlowRun {
    FlowRun::new_scheduled(
        RunId::scheduled(deployment, at),
        deployment.clone(),
        queue(name_of_queue),
        Default::default(),
        at,
        Origin::Schedule,
        1,
        now,
    )
}

/// An ad-hoc (manual) run of `deployment` on `queue`, due `at`; `n` tells apart runs due at the
/// same instant.
pub fn adhoc_run(
    deployment: &DeploymentId,
    name_of_queue: &str,
    at: DateTime<Utc>,
    n: u32,
) -> FlowRun {
    let mut random = [0u8; 10];
    random[..4].copy_from_slice(&n.to_be_bytes());
    FlowRun::new_scheduled(
        RunId::adhoc(at, random),
        deployment.clone(),
        queue(name_of_queue),
        Default::default(),
        at,
        Origin::Manual,
        1,
        at,
    )
}

/// `name` as a queue name (panics on an invalid one: tests only).
pub fn queue(name: &str) -> QueueName {
    QueueName::parse("work_queue", name).unwrap_or_else(|e| panic!("{e}"))
}
