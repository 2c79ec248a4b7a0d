//! Flow runs: one execution attempt of a deployment.

use crate::ids::QueueName;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{DeploymentId, RunId};
use crate::slot::SlotKey;
use crate::state::StateType;

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunLease {
    /// The agent holding the run.
    pub agent_id: String,
    /// The lease is void after this instant; the reaper then crashes or retries the run.
    pub expires_at: DateTime<Utc>,
}

/// One entry of a run's state history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FlowRun {
    /// Time-ordered id.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: RunId,
    /// `flow/name` of the deployment.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub deployment: DeploymentId,
    /// Work queue the run is due in.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub work_queue: QueueName,
    /// Parameters the flow is called with (deployment defaults merged with run overrides).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
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
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub retry_of: Option<RunId>,
    /// The run that retries this one (set on a Failed/Crashed run in the same write that
    /// created its retry), so a watcher can follow a run to its final attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub retried_by: Option<RunId>,
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
    /// The deployment's infrastructure profile when the run was created: such a run is
    /// *launched* (a task of its own) and never listed to long-running agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub infra: Option<crate::infra::InfraName>,
    /// Its latest launch, once launched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<crate::launch::Launch>,
    /// What the flow returned, on a Completed run of a `file.py:function` flow whose return
    /// value was JSON-serialisable and within the cap (see [`crate::result`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<crate::result::RunResult>,
    /// Concurrency slots held while Pending/Running (queue and/or deployment).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub slots: Vec<SlotKey>,
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
        work_queue: QueueName,
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
            retried_by: None,
            idempotency_key: None,
            origin,
            schedule_digest: None,
            lease: None,
            started_at: None,
            ended_at: None,
            exit_code: None,
            log_location: None,
            infra: None,
            launch: None,
            result: None,
            slots: Vec::new(),
            version: 0,
            created_at: now,
        }
    }

    /// Whether the run waits in its queue's due index (Scheduled or Late).
    pub fn is_waiting(&self) -> bool {
        self.state.is_waiting()
    }

    /// The next attempt this Failed/Crashed run is owed under its deployment's retry policy
    /// (`retries` retries, `retry_delay` after the failure), due on the deployment's current
    /// queue; `None` when it is not failed or its retries are used up. Its id is derived from
    /// this run and the attempt, and carries its due time.
    pub fn next_attempt(
        &self,
        retries: u32,
        retry_delay: chrono::Duration,
        work_queue: &QueueName,
        now: DateTime<Utc>,
    ) -> Option<FlowRun> {
        if !matches!(self.state, StateType::Failed | StateType::Crashed) || self.attempt > retries {
            return None;
        }
        let at = self.ended_at.unwrap_or(now) + retry_delay;
        let attempt = self.attempt + 1;
        let mut retry = FlowRun::new_scheduled(
            RunId::retry(self.id, attempt, at),
            self.deployment.clone(),
            work_queue.clone(),
            self.parameters.clone(),
            at,
            Origin::Retry,
            attempt,
            now,
        );
        retry.retry_of = Some(self.id);
        retry.infra = self.infra.clone();
        retry.history[0].message = Some(format!(
            "retry {} of {retries} after {} {}",
            attempt - 1,
            self.state,
            self.id
        ));
        Some(retry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn failed(attempt: u32) -> FlowRun {
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let d = DeploymentId::new("etl", "nightly").unwrap();
        let mut run = crate::testkit::scheduled_run(&d, "default", t, t);
        run.attempt = attempt;
        run.state = StateType::Failed;
        run.ended_at = Some(t + chrono::Duration::seconds(30));
        run
    }

    #[test]
    fn a_retry_is_due_after_the_delay_and_its_id_carries_that_time() {
        let run = failed(1);
        let delay = chrono::Duration::seconds(600);
        let retry = run
            .next_attempt(2, delay, &crate::testkit::queue("q2"), Utc::now())
            .unwrap();
        let due = run.ended_at.unwrap() + delay;
        assert_eq!(retry.scheduled_time, due);
        assert_eq!(retry.id, RunId::retry(run.id, 2, due));
        let id_ms = u64::from_be_bytes({
            let mut b = [0u8; 8];
            b[2..].copy_from_slice(&retry.id.as_uuid().as_bytes()[..6]);
            b
        });
        assert_eq!(
            id_ms as i64,
            due.timestamp_millis(),
            "the id sorts by due time"
        );
        assert_eq!((retry.attempt, retry.work_queue.as_str()), (2, "q2"));
        assert_eq!(retry.retry_of, Some(run.id));
    }

    #[test]
    fn no_retry_when_retries_are_used_up_or_the_run_did_not_fail() {
        assert!(failed(3)
            .next_attempt(
                2,
                chrono::Duration::zero(),
                &crate::testkit::queue("q"),
                Utc::now()
            )
            .is_none());
        let mut done = failed(1);
        done.state = StateType::Completed;
        assert!(done
            .next_attempt(
                2,
                chrono::Duration::zero(),
                &crate::testkit::queue("q"),
                Utc::now()
            )
            .is_none());
    }
}
