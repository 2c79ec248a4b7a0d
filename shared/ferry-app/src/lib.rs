//! Ferry's application layer: the use cases behind the API, the tick and (later) the agent.
//! It orchestrates the ports of `ferry-core` and knows no adapter: the same code runs on the
//! embedded store and on DynamoDB/S3.

mod agent_runs;
#[cfg(feature = "testkit")]
pub mod conformance;
mod error;
mod service;
#[cfg(feature = "testkit")]
pub mod testkit;
mod tick;

pub use agent_runs::{Claim, Heartbeat};
pub use error::AppError;
pub use service::{
    ApplyOutcome, Ferry, PreviewItem, QueuePatch, RunRequest, Settings, SystemClock,
};
pub use tick::{TickFailure, TickReport};
