//! Launching a task per run: the run's launch record, the relaunch rule, and the
//! [`TaskLauncher`] port (ECS `RunTask` on AWS, a local `ferry agent execute` process on a
//! laptop).
//!
//! A launched run goes Scheduled/Late → Pending held by `launcher:<n>` (the n-th launch) with the
//! start deadline as its lease expiry; the task's `ferry agent execute RUN_ID` then takes it
//! over (`RunEvent::TakeOver`, legal only while that launch still holds it), so a second task,
//! a replayed launch or a cancelled run finds nothing to take.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::RunId;
use crate::infra::{InfraName, InfraProfile, Overrides};
use crate::run::FlowRun;

/// Prefix of the lease holder of a launched run not yet taken over.
pub const LAUNCHER_PREFIX: &str = "launcher:";

/// The lease holder of a run's `attempt`-th launch.
pub fn launcher_id(attempt: u32) -> String {
    format!("{LAUNCHER_PREFIX}{attempt}")
}

/// A run's launch: which task was started for it, and until when it must take the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Launch {
    /// The profile launched on.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub infra: InfraName,
    /// 1 for the first launch, 2 for the first relaunch, ...
    pub attempt: u32,
    /// The task, once the launcher returned it (`None` between the claim and `RunTask`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    /// When the launch was claimed.
    pub launched_at: DateTime<Utc>,
    /// The task must take the run over before this instant, else it is launched again.
    pub start_deadline: DateTime<Utc>,
}

impl FlowRun {
    /// Whether the run is held by its launcher, waiting for the launched task to take it.
    pub fn awaits_task(&self) -> bool {
        self.lease
            .as_ref()
            .is_some_and(|l| l.agent_id.starts_with(LAUNCHER_PREFIX))
    }
}

/// What a launcher is asked to start: one task running `ferry agent execute RUN_ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchRequest {
    /// The run.
    pub run: RunId,
    /// The launch attempt (part of the idempotency token: a retried call starts one task).
    pub attempt: u32,
    /// Deployment `flow/name` (a task tag).
    pub deployment: String,
    /// Work queue (a task tag).
    pub work_queue: String,
    /// The profile.
    pub profile: InfraProfile,
    /// The deployment's overrides.
    pub overrides: Overrides,
    /// Environment for the task besides the overrides (the backend's settings; no secrets).
    pub env: BTreeMap<String, String>,
}

impl LaunchRequest {
    /// The container command: `agent execute RUN_ID --launch N` (after the image's `ferry`
    /// entrypoint); the launch number lets a task started for an abandoned launch find out.
    pub fn command(&self) -> Vec<String> {
        vec![
            "agent".into(),
            "execute".into(),
            self.run.to_string(),
            "--launch".into(),
            self.attempt.to_string(),
        ]
    }
    /// A token unique to (run, attempt), stable across retries of the same launch: ECS's
    /// `clientToken`, so a retried `RunTask` can never start a second task.
    pub fn client_token(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(format!("{}#{}", self.run, self.attempt));
        format!("ferry-{}", &hex::encode(digest)[..32])
    }
}

/// A started task (an ECS task ARN, or a local process's reference).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TaskRef(pub String);

/// What became of a task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskStatus {
    /// Not running yet (provisioning, pulling the image).
    Pending,
    /// Its container runs.
    Running,
    /// It stopped (or was never found).
    Stopped {
        /// ECS stop code (`TaskFailedToStart`, `SpotInterruption`, `UserInitiated`, ...).
        stop_code: Option<String>,
        /// Why, in ECS's words.
        reason: Option<String>,
        /// The container's exit code, if it exited.
        exit_code: Option<i32>,
    },
}

impl TaskStatus {
    /// One line for a run's history: `TaskFailedToStart: CannotPullContainerError ...`.
    pub fn describe(&self) -> String {
        match self {
            TaskStatus::Pending => "task pending".into(),
            TaskStatus::Running => "task running".into(),
            TaskStatus::Stopped {
                stop_code,
                reason,
                exit_code,
            } => {
                let mut s = format!(
                    "task stopped ({})",
                    stop_code.as_deref().unwrap_or("no stop code")
                );
                if let Some(r) = reason {
                    s.push_str(": ");
                    s.push_str(r);
                }
                if let Some(c) = exit_code {
                    s.push_str(&format!(" (exit code {c})"));
                }
                s
            }
        }
    }
}

/// Errors of the task launcher.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Refused for now (throttling, no capacity, a 5xx): the same launch is retried later.
    #[error("launch refused for now: {message}")]
    Retryable {
        /// The backend's words.
        message: String,
    },
    /// Refused for good (a bad subnet, a missing task definition, no permission): retrying
    /// the same request cannot succeed.
    #[error("launch failed: {message}")]
    Permanent {
        /// The backend's words.
        message: String,
    },
}

impl LaunchError {
    /// Whether the same launch may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, LaunchError::Retryable { .. })
    }
}

/// Starts, stops and describes one task per run.
#[async_trait]
pub trait TaskLauncher: Send + Sync {
    /// Starts the task for `request`; idempotent per (run, attempt).
    async fn launch(&self, request: &LaunchRequest) -> Result<TaskRef, LaunchError>;
    /// Stops the task (cancel, or a relaunch giving up on it); stopping a stopped task is Ok.
    async fn stop(&self, task: &TaskRef, reason: &str) -> Result<(), LaunchError>;
    /// The status of each task, in order (a task never heard of is `Stopped`).
    async fn describe(&self, tasks: &[TaskRef]) -> Result<Vec<TaskStatus>, LaunchError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(attempt: u32) -> LaunchRequest {
        let t = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        LaunchRequest {
            run: RunId::adhoc(t, [7; 10]),
            attempt,
            deployment: "etl/nightly".into(),
            work_queue: "default".into(),
            profile: InfraProfile {
                name: "process/local".parse().unwrap(),
                spec: Default::default(),
                version: 1,
                created_at: t,
                updated_at: t,
            },
            overrides: Overrides::default(),
            env: BTreeMap::new(),
        }
    }

    #[test]
    fn the_client_token_is_stable_per_launch_and_differs_between_launches() {
        let r1 = request(1);
        let mut again = r1.clone();
        again.env.insert("X".into(), "y".into());
        assert_eq!(r1.client_token(), again.client_token());
        let mut r2 = r1.clone();
        r2.attempt = 2;
        assert_ne!(r1.client_token(), r2.client_token());
        // ECS caps clientToken at 64 characters.
        assert!(r1.client_token().len() <= 64);
        assert_eq!(
            r1.command(),
            vec!["agent", "execute", &r1.run.to_string(), "--launch", "1"]
        );
    }
}
