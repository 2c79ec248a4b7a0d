//! Ferry's application layer: the use cases behind the API, the tick and the agent.
//! It orchestrates the ports of `ferry-core` and knows no adapter: the same code runs on the
//! embedded store and on DynamoDB/S3.
//!
//! [`Ferry`] (in `ferry.rs`) holds the ports; its use cases are split by aggregate:
//! `queues`, `deployments`, `flow_runs` (what a user does with runs), `agent_runs` (what an
//! agent does: claim, start, heartbeat, finish, and the reaper), `bundles` and `tick`. Request
//! and result types are in `dto`; the retry loop and backoff every write shares are in `retry`.

mod agent_runs;
mod agents;
mod bundles;
#[cfg(feature = "testkit")]
pub mod conformance;
mod deployments;
mod dto;
mod error;
mod ferry;
mod flow_runs;
mod infra;
mod launches;
mod queues;
mod results;
mod retry;
#[cfg(feature = "testkit")]
pub mod testkit;
mod tick;

pub use agent_runs::{Claim, Heartbeat, TakeOver};
pub use agents::{AgentStatus, QueueView, MAX_AGENT_TEXT, ONLINE_WITHIN};
pub use dto::{ApplyOutcome, PreviewItem, QueuePatch, RunRequest};
pub use error::AppError;
pub use ferry::{Ferry, Settings, SystemClock};
pub use flow_runs::{QueueRunStats, RunPage, RunView, WindowCounts};
pub use infra::InfraOutcome;
pub use launches::LaunchOutcome;
pub use tick::{TickFailure, TickReport};
