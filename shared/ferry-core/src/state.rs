//! The run state machine: one pure function, [`transition`], decides every state change.
//!
//! ```text
//! Scheduled ─▶ Late ─▶ Pending ─▶ Running ─▶ Completed | Failed | Crashed
//!     │         │        │  ▲        │
//!     │         │        │  └release─┘(Pending only)
//!     └─────────┴────────┴──▶ Cancelled      Running ─▶ Cancelling ─▶ Cancelled
//! ```
//! Terminal states (Completed, Failed, Crashed, Cancelled) are final. A retry is a *new* run
//! (origin `retry`, attempt + 1), never a transition out of a terminal state.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::limits::MAX_HISTORY;
use crate::run::{FlowRun, RunLease, StateRecord};

/// A run's state. `Display`/`FromStr` use the stable lowercase names shown in the CLI and API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum StateType {
    /// Waiting for its scheduled time / an agent.
    Scheduled,
    /// Scheduled, and past its time by more than the late threshold; still claimable.
    Late,
    /// Claimed by an agent, process not started yet.
    Pending,
    /// The flow process runs.
    Running,
    /// Cancel requested while running; the agent is stopping the process.
    Cancelling,
    /// Exit code 0.
    Completed,
    /// Non-zero exit, signal, timeout, or a bundle that could not be used.
    Failed,
    /// The agent vanished (lease expired) or could not report.
    Crashed,
    /// Cancelled by a user.
    Cancelled,
}

impl StateType {
    /// All states, in lifecycle order.
    pub const ALL: [StateType; 9] = [
        StateType::Scheduled,
        StateType::Late,
        StateType::Pending,
        StateType::Running,
        StateType::Cancelling,
        StateType::Completed,
        StateType::Failed,
        StateType::Crashed,
        StateType::Cancelled,
    ];

    /// Final states: nothing leaves them.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            StateType::Completed | StateType::Failed | StateType::Crashed | StateType::Cancelled
        )
    }
    /// Waiting in a queue (Scheduled or Late).
    pub fn is_waiting(self) -> bool {
        matches!(self, StateType::Scheduled | StateType::Late)
    }
    /// Held by an agent (Pending, Running, Cancelling).
    pub fn is_held(self) -> bool {
        matches!(
            self,
            StateType::Pending | StateType::Running | StateType::Cancelling
        )
    }
    /// The stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            StateType::Scheduled => "scheduled",
            StateType::Late => "late",
            StateType::Pending => "pending",
            StateType::Running => "running",
            StateType::Cancelling => "cancelling",
            StateType::Completed => "completed",
            StateType::Failed => "failed",
            StateType::Crashed => "crashed",
            StateType::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for StateType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StateType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StateType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                let names: Vec<_> = StateType::ALL.iter().map(|t| t.as_str()).collect();
                format!("unknown state {s:?}: expected one of {}", names.join(", "))
            })
    }
}

/// Something that happens to a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEvent {
    /// The tick saw it past due + late threshold.
    MarkLate,
    /// An agent claimed it; `slots` are the concurrency slots taken with the claim.
    Claim {
        /// Agent and lease expiry.
        lease: RunLease,
        /// Slot keys taken atomically with the claim.
        slots: Vec<crate::slot::SlotKey>,
    },
    /// The agent gave a claimed run back before starting it (shutdown, prefetch abandoned).
    Release,
    /// A launcher claimed the run for a task of its own (first launch from Scheduled/Late, or a
    /// relaunch of a run whose task never took it). The lease is held by
    /// `launcher:<attempt>` until the launch's start deadline.
    Launch {
        /// The launch.
        launch: crate::launch::Launch,
        /// Slot keys taken atomically with the claim (a relaunch keeps the run's).
        slots: Vec<crate::slot::SlotKey>,
        /// What the history says ("launched on ecs/prod (launch 1 of 3)", the last task's fate).
        message: String,
    },
    /// The launcher learnt the task it started (recorded on the launch; no history entry).
    RecordTask {
        /// The launch attempt the task belongs to.
        attempt: u32,
        /// The task's reference (ARN).
        task: String,
    },
    /// The launched task's `ferry agent execute` takes the run over from its launcher: legal
    /// only while launch `attempt` still holds it.
    TakeOver {
        /// The launch the task was started for.
        attempt: u32,
        /// The agent's lease.
        lease: RunLease,
    },
    /// The flow process started.
    Start {
        /// Where logs go.
        log_location: Option<String>,
    },
    /// The agent renewed its lease.
    Heartbeat {
        /// New expiry.
        expires_at: DateTime<Utc>,
    },
    /// The process exited 0.
    Complete {
        /// What the flow returned, recorded with the Completed state in the same write.
        result: Option<crate::result::RunResult>,
    },
    /// The process failed.
    Fail {
        /// Exit code if it exited.
        exit_code: Option<i32>,
        /// Human-readable reason.
        reason: String,
    },
    /// The agent's lease expired or the agent could not carry on.
    Crash {
        /// Human-readable reason.
        reason: String,
    },
    /// A user asked to cancel.
    Cancel {
        /// Who/why.
        reason: String,
    },
    /// The agent stopped a Cancelling run's process.
    ConfirmCancelled,
}

impl RunEvent {
    fn name(&self) -> &'static str {
        match self {
            RunEvent::MarkLate => "mark_late",
            RunEvent::Claim { .. } => "claim",
            RunEvent::Release => "release",
            RunEvent::Launch { .. } => "launch",
            RunEvent::RecordTask { .. } => "record_task",
            RunEvent::TakeOver { .. } => "take_over",
            RunEvent::Start { .. } => "start",
            RunEvent::Heartbeat { .. } => "heartbeat",
            RunEvent::Complete { .. } => "complete",
            RunEvent::Fail { .. } => "fail",
            RunEvent::Crash { .. } => "crash",
            RunEvent::Cancel { .. } => "cancel",
            RunEvent::ConfirmCancelled => "confirm_cancelled",
        }
    }
}

/// An event that is not allowed in the run's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a {state} run cannot {event}")]
pub struct TransitionError {
    /// State the run was in.
    pub state: StateType,
    /// The refused event.
    pub event: &'static str,
}

/// The target state of `event` from `from`, or `None` if the event is illegal there.
/// `Heartbeat` keeps the state.
pub fn next_state(from: StateType, event: &RunEvent) -> Option<StateType> {
    use StateType::*;
    match (from, event) {
        (Scheduled, RunEvent::MarkLate) => Some(Late),
        (Scheduled | Late, RunEvent::Claim { .. }) => Some(Pending),
        (Pending, RunEvent::Release) => Some(Scheduled),
        (Scheduled | Late | Pending, RunEvent::Launch { .. }) => Some(Pending),
        (Pending, RunEvent::RecordTask { .. } | RunEvent::TakeOver { .. }) => Some(Pending),
        (Pending, RunEvent::Start { .. }) => Some(Running),
        (Pending | Running | Cancelling, RunEvent::Heartbeat { .. }) => Some(from),
        (Running | Cancelling, RunEvent::Complete { .. }) => Some(Completed),
        (Pending | Running | Cancelling, RunEvent::Fail { .. }) => Some(Failed),
        (Pending | Running | Cancelling, RunEvent::Crash { .. }) => Some(Crashed),
        (Scheduled | Late | Pending, RunEvent::Cancel { .. }) => Some(Cancelled),
        (Running, RunEvent::Cancel { .. }) => Some(Cancelling),
        (Cancelling, RunEvent::ConfirmCancelled) => Some(Cancelled),
        _ => None,
    }
}

/// Applies `event` to `run` at `now`, returning the new run (version + 1, history appended).
/// The only way a run's state changes anywhere in Ferry.
pub fn transition(
    run: &FlowRun,
    event: RunEvent,
    now: DateTime<Utc>,
) -> Result<FlowRun, TransitionError> {
    let refused = TransitionError {
        state: run.state,
        event: event.name(),
    };
    let to = next_state(run.state, &event).ok_or(refused.clone())?;
    if !launch_guard(run, &event) {
        return Err(refused);
    }
    let mut next = run.clone();
    next.version += 1;
    let mut message = None;
    match event {
        RunEvent::MarkLate => {}
        RunEvent::Claim { lease, slots } => {
            next.lease = Some(lease);
            next.slots = slots;
        }
        RunEvent::Release => {
            next.lease = None;
            next.slots.clear();
        }
        RunEvent::Launch {
            launch,
            slots,
            message: m,
        } => {
            next.lease = Some(RunLease {
                agent_id: crate::launch::launcher_id(launch.attempt),
                expires_at: launch.start_deadline,
            });
            next.launch = Some(launch);
            next.slots = slots;
            message = Some(m);
        }
        RunEvent::RecordTask { task, .. } => {
            if let Some(launch) = next.launch.as_mut() {
                launch.task = Some(task);
            }
            return Ok(next);
        }
        RunEvent::TakeOver { lease, .. } => {
            message = Some(format!("taken over by {}", lease.agent_id));
            next.lease = Some(lease);
        }
        RunEvent::Start { log_location } => {
            next.started_at = Some(now);
            next.log_location = log_location;
        }
        RunEvent::Heartbeat { expires_at } => {
            if let Some(lease) = next.lease.as_mut() {
                lease.expires_at = expires_at;
            }
            return Ok(next);
        }
        RunEvent::Complete { result } => {
            next.exit_code = Some(0);
            next.result = result;
        }
        RunEvent::Fail { exit_code, reason } => {
            next.exit_code = exit_code;
            message = Some(reason);
        }
        RunEvent::Crash { reason } | RunEvent::Cancel { reason } => message = Some(reason),
        RunEvent::ConfirmCancelled => message = next.state_message.clone(),
    }
    if to.is_terminal() {
        next.ended_at = Some(now);
        next.lease = None;
        next.slots.clear();
    }
    next.state = to;
    next.state_message = message.clone();
    next.history.push(StateRecord {
        state: to,
        at: now,
        message,
    });
    if next.history.len() > MAX_HISTORY {
        let excess = next.history.len() - MAX_HISTORY;
        next.history.drain(1..=excess);
    }
    Ok(next)
}

/// The launch events' conditions beyond the state: a relaunch, a task record or a take-over
/// needs the run still held by its launcher — for `RecordTask`/`TakeOver`, by that very launch.
fn launch_guard(run: &FlowRun, event: &RunEvent) -> bool {
    let held_by = |attempt: u32| {
        run.awaits_task() && run.launch.as_ref().is_some_and(|l| l.attempt == attempt)
    };
    match event {
        RunEvent::Launch { launch, .. } => {
            run.state != StateType::Pending
                || (run.awaits_task()
                    && run
                        .launch
                        .as_ref()
                        .is_some_and(|l| launch.attempt == l.attempt + 1))
        }
        RunEvent::RecordTask { attempt, .. } | RunEvent::TakeOver { attempt, .. } => {
            held_by(*attempt)
        }
        // Only the task that took the run over may start it; a launcher's hold is not released.
        RunEvent::Release | RunEvent::Start { .. } => !run.awaits_task(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::DeploymentId;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn run() -> FlowRun {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let d = DeploymentId::new("f", "d").unwrap();
        crate::testkit::scheduled_run(&d, "default", t, t)
    }

    fn lease() -> RunLease {
        RunLease {
            agent_id: "a".into(),
            expires_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 1, 0).unwrap(),
        }
    }

    fn arb_event() -> impl Strategy<Value = RunEvent> {
        prop_oneof![
            Just(RunEvent::MarkLate),
            Just(RunEvent::Claim {
                lease: lease(),
                slots: vec![crate::slot::SlotKey::Queue(crate::testkit::queue(
                    "default"
                ))]
            }),
            Just(RunEvent::Release),
            Just(RunEvent::Start { log_location: None }),
            Just(RunEvent::Heartbeat {
                expires_at: Utc.with_ymd_and_hms(2026, 1, 1, 0, 2, 0).unwrap()
            }),
            Just(RunEvent::Complete { result: None }),
            Just(RunEvent::Complete {
                result: Some(crate::result::RunResult::Inline {
                    value: serde_json::json!({"rows": 3})
                })
            }),
            Just(RunEvent::Fail {
                exit_code: Some(1),
                reason: "exit 1".into()
            }),
            Just(RunEvent::Crash {
                reason: "lease expired".into()
            }),
            Just(RunEvent::Cancel {
                reason: "user".into()
            }),
            Just(RunEvent::ConfirmCancelled),
            (1u32..4).prop_map(|attempt| RunEvent::Launch {
                launch: launch(attempt),
                slots: vec![],
                message: "launched".into(),
            }),
            (1u32..4).prop_map(|attempt| RunEvent::TakeOver {
                attempt,
                lease: lease(),
            }),
            (1u32..4).prop_map(|attempt| RunEvent::RecordTask {
                attempt,
                task: "arn:task".into(),
            }),
        ]
    }

    fn launch(attempt: u32) -> crate::launch::Launch {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        crate::launch::Launch {
            infra: "ecs/prod".parse().unwrap(),
            attempt,
            task: None,
            launched_at: t,
            start_deadline: t + chrono::Duration::minutes(5),
        }
    }

    fn launched(attempt: u32) -> FlowRun {
        let r = run();
        let mut r = transition(
            &r,
            RunEvent::Launch {
                launch: launch(1),
                slots: vec![],
                message: "launched".into(),
            },
            r.created_at,
        )
        .unwrap();
        for n in 2..=attempt {
            r = transition(
                &r,
                RunEvent::Launch {
                    launch: launch(n),
                    slots: r.slots.clone(),
                    message: "relaunched".into(),
                },
                r.created_at,
            )
            .unwrap();
        }
        r
    }

    #[test]
    fn only_the_current_launch_can_take_a_launched_run_and_only_once() {
        let r = launched(2);
        assert_eq!(r.state, StateType::Pending);
        assert!(r.awaits_task());
        assert_eq!(r.lease.as_ref().unwrap().agent_id, "launcher:2");
        let t = r.created_at;
        // The task of the abandoned first launch finds nothing to take.
        let stale = RunEvent::TakeOver {
            attempt: 1,
            lease: lease(),
        };
        assert!(transition(&r, stale, t).is_err());
        // An agent cannot start or release it before a take-over.
        assert!(transition(&r, RunEvent::Start { log_location: None }, t).is_err());
        assert!(transition(&r, RunEvent::Release, t).is_err());
        let recorded = transition(
            &r,
            RunEvent::RecordTask {
                attempt: 2,
                task: "arn:t2".into(),
            },
            t,
        )
        .unwrap();
        assert_eq!(
            recorded.launch.as_ref().unwrap().task.as_deref(),
            Some("arn:t2")
        );
        assert_eq!(recorded.history.len(), r.history.len(), "no history entry");
        let taken = transition(
            &recorded,
            RunEvent::TakeOver {
                attempt: 2,
                lease: lease(),
            },
            t,
        )
        .unwrap();
        assert!(!taken.awaits_task());
        assert_eq!(taken.lease, Some(lease()));
        // A second task for the same launch finds it taken.
        let again = RunEvent::TakeOver {
            attempt: 2,
            lease: lease(),
        };
        assert!(transition(&taken, again, t).is_err());
        // The launcher can no longer relaunch it or record a task.
        let relaunch = RunEvent::Launch {
            launch: launch(3),
            slots: vec![],
            message: "relaunched".into(),
        };
        assert!(transition(&taken, relaunch, t).is_err());
        let started = transition(&taken, RunEvent::Start { log_location: None }, t).unwrap();
        assert_eq!(started.state, StateType::Running);
    }

    #[test]
    fn a_relaunch_must_be_the_next_launch_and_a_launched_run_can_be_cancelled() {
        let r = launched(1);
        let t = r.created_at;
        for attempt in [1, 3] {
            let skip = RunEvent::Launch {
                launch: launch(attempt),
                slots: vec![],
                message: "relaunched".into(),
            };
            assert!(transition(&r, skip, t).is_err(), "launch {attempt}");
        }
        let cancelled = transition(
            &r,
            RunEvent::Cancel {
                reason: "user".into(),
            },
            t,
        )
        .unwrap();
        assert_eq!(cancelled.state, StateType::Cancelled);
        assert!(cancelled.lease.is_none() && cancelled.slots.is_empty());
        assert_eq!(
            cancelled.launch.as_ref().map(|l| l.attempt),
            Some(1),
            "the launch stays recorded, so its task can be stopped"
        );
    }

    /// The allowed edges, written independently of `next_state` as a table.
    fn allowed(from: StateType, to: StateType) -> bool {
        use StateType::*;
        matches!(
            (from, to),
            (Scheduled, Late | Pending | Cancelled)
                | (Late, Pending | Cancelled)
                | (
                    Pending,
                    Scheduled | Running | Failed | Crashed | Cancelled | Pending
                )
                | (Running, Completed | Failed | Crashed | Cancelling | Running)
                | (
                    Cancelling,
                    Cancelled | Completed | Failed | Crashed | Cancelling
                )
        )
    }

    proptest! {
        #[test]
        fn no_illegal_transition_is_ever_produced(events in proptest::collection::vec(arb_event(), 0..40)) {
            let mut r = run();
            let t0 = r.created_at;
            for (i, e) in events.into_iter().enumerate() {
                let now = t0 + chrono::Duration::seconds(i as i64);
                match transition(&r, e, now) {
                    Ok(next) => {
                        prop_assert!(allowed(r.state, next.state), "{} -> {}", r.state, next.state);
                        prop_assert!(!r.state.is_terminal(), "left terminal state {}", r.state);
                        prop_assert_eq!(next.version, r.version + 1);
                        if next.state.is_terminal() {
                            prop_assert!(next.lease.is_none());
                            prop_assert!(next.slots.is_empty());
                            prop_assert_eq!(next.ended_at, Some(now));
                        }
                        if next.state != r.state {
                            prop_assert_eq!(next.history.last().map(|h| h.state), Some(next.state));
                        }
                        prop_assert!(next.history.len() <= MAX_HISTORY);
                        // Only the Complete transition records a result.
                        prop_assert!(next.result.is_none() || next.state == StateType::Completed, "a {} run has a result", next.state);
                        r = next;
                    }
                    Err(err) => prop_assert_eq!(err.state, r.state),
                }
            }
        }

        #[test]
        fn terminal_states_are_final(e in arb_event()) {
            for s in StateType::ALL.into_iter().filter(|s| s.is_terminal()) {
                let mut r = run();
                r.state = s;
                prop_assert!(transition(&r, e.clone(), r.created_at).is_err());
            }
        }
    }

    #[test]
    fn cancel_of_running_goes_through_cancelling() {
        let t = run().created_at;
        let r = transition(
            &run(),
            RunEvent::Claim {
                lease: lease(),
                slots: vec![],
            },
            t,
        )
        .unwrap();
        let r = transition(&r, RunEvent::Start { log_location: None }, t).unwrap();
        let r = transition(
            &r,
            RunEvent::Cancel {
                reason: "user".into(),
            },
            t,
        )
        .unwrap();
        assert_eq!(r.state, StateType::Cancelling);
        let r = transition(&r, RunEvent::ConfirmCancelled, t).unwrap();
        assert_eq!(r.state, StateType::Cancelled);
        assert_eq!(
            r.history.iter().map(|h| h.state).collect::<Vec<_>>(),
            vec![
                StateType::Scheduled,
                StateType::Pending,
                StateType::Running,
                StateType::Cancelling,
                StateType::Cancelled
            ]
        );
    }

    #[test]
    fn state_names_round_trip() {
        for s in StateType::ALL {
            assert_eq!(s.to_string().parse::<StateType>().unwrap(), s);
        }
        assert!("bogus"
            .parse::<StateType>()
            .unwrap_err()
            .contains("scheduled"));
    }
}
