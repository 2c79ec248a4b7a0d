//! Ferry's agent: polls its work queues (highest priority first), claims due runs with a
//! conditional write (queue and deployment concurrency slots taken in the same transaction),
//! fetches and safely unpacks their code bundles, runs each as a child process in its own
//! process group, streams its output to the log sink, renews its lease, and reports the final
//! state. It reaches the control plane through a port ([`ControlPlane`]): the `/v1` API (the
//! default of `ferry agent start`) or the stores directly ([`Direct`]). The same code runs on
//! the embedded store and on DynamoDB/S3.

mod agent;
mod bundle_cache;
pub mod guard;
mod lifecycle;
mod one_shot;
pub mod plane;
pub mod process;
mod result;
pub mod secrets;
pub mod warm;
mod warm_run;

pub use agent::{failure_pause, host_name, Agent, AgentConfig, AgentReport, PRESENCE_EVERY};
pub use guard::ProcessGuard;
pub use one_shot::{execute_launched, OneShotEnd};
pub use plane::{ClaimRequest, ControlPlane, Direct, PlaneError};
pub use secrets::SecretSources;
pub use warm::{WarmLimits, WarmPool};
