//! Ferry's domain: deployments, work queues, flow runs, the run state machine, schedule math,
//! validation, and the ports (traits) that adapters implement.
//!
//! This crate is pure: no I/O, no SDK types, no clock reads. Time reaches it through
//! [`clock::Clock`] or as arguments.

pub mod agent;
pub mod clock;
pub mod deployment;
pub mod digest;
pub mod error;
pub mod horizon;
pub mod ids;
pub mod infra;
pub mod launch;
pub mod limits;
pub mod log_cap;
pub mod ports;
pub mod queue;
pub mod result;
pub mod run;
pub mod schedule;
pub mod secret;
pub mod slot;
pub mod state;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod validate;

pub use deployment::{CatchUp, Deployment, DeploymentSpec, Entrypoint, Infrastructure};
pub use error::ValidationError;
pub use ids::{DeploymentId, QueueName, RunId};
pub use queue::WorkQueue;
pub use run::{FlowRun, Origin, RunLease, StateRecord};
pub use state::{RunEvent, StateType, TransitionError};
