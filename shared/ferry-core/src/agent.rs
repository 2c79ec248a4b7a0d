//! Agents as the control plane sees them (issue 11, "is anyone serving this queue?").
//!
//! An agent reports an [`AgentPresence`] each time it polls; the control plane keeps the
//! latest one per agent name as an [`AgentRecord`] with when it was first and last seen.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::QueueName;

/// How an agent reaches the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AgentPath {
    /// Through the `/v1` API (token or IAM auth): the default.
    Api,
    /// Straight to the store (FERRY_HOME or DynamoDB/S3).
    Direct,
}

/// What an agent says about itself when it polls (`PUT /v1/agents/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentPresence {
    /// The agent's name (unique per running agent; shown in leases).
    pub name: String,
    /// Queues it serves, as given on its command line.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub queues: Vec<QueueName>,
    /// Host it runs on.
    pub host: String,
    /// Ferry version of the agent binary.
    pub version: String,
    /// Most runs it holds at once.
    pub limit: u32,
    /// Runs it holds now.
    pub running: u32,
    /// How it reaches the control plane.
    pub path: AgentPath,
}

/// An agent as last seen by the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentRecord {
    /// What the agent last said about itself.
    #[serde(flatten)]
    pub presence: AgentPresence,
    /// When this agent name was first seen.
    pub first_seen: DateTime<Utc>,
    /// When it last polled.
    pub last_poll: DateTime<Utc>,
}
