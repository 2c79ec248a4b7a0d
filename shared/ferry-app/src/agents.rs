//! Agents as the control plane sees them (issue 11, "is anyone serving this queue?"): each
//! poll records the agent's presence; listings say which agents serve which queue and whether
//! they are online.

use chrono::{DateTime, Duration, Utc};
use ferry_core::agent::{AgentPresence, AgentRecord};
use ferry_core::ids::QueueName;
use ferry_core::ports::AGENT_RETENTION;
use ferry_core::WorkQueue;
use serde::{Deserialize, Serialize};

use crate::{AppError, Ferry};

/// An agent is online if it polled within this long. Agents report at most every 10 s, so an
/// online agent missed several reports before it shows offline.
pub const ONLINE_WITHIN: Duration = Duration::seconds(60);

/// Longest agent name, host and version string.
pub const MAX_AGENT_TEXT: usize = 200;

/// Most queues one agent may report.
pub const MAX_AGENT_QUEUES: usize = 100;

/// An agent as last seen, and whether it is online ([`ONLINE_WITHIN`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AgentStatus {
    /// The agent's last report and when it was first and last seen.
    #[serde(flatten)]
    pub agent: AgentRecord,
    /// It polled within the last 60 s.
    pub online: bool,
}

/// A work queue with the agents serving it (the answer of `GET /v1/work-queues[/{name}]`:
/// the queue's own fields, plus `agents` and `last_polled_at`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct QueueView {
    /// The queue.
    #[serde(flatten)]
    pub queue: WorkQueue,
    /// Names of the online agents serving it (polled within the last 60 s), by name.
    pub agents: Vec<String>,
    /// The latest poll of any agent serving it in the last 7 days (`null`: none).
    pub last_polled_at: Option<DateTime<Utc>>,
}

fn check_text(field: &str, value: &str, may_be_empty: bool) -> Result<(), AppError> {
    if value.is_empty() && !may_be_empty {
        return Err(AppError::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_AGENT_TEXT {
        return Err(AppError::invalid(
            field,
            format!(
                "must be at most {MAX_AGENT_TEXT} bytes, not {}",
                value.len()
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(AppError::invalid(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Checks what an agent says about itself; the error names the field.
fn check_presence(p: &AgentPresence) -> Result<(), AppError> {
    check_text("name", &p.name, false)?;
    if p.name.trim() != p.name || p.name.contains('/') {
        return Err(AppError::invalid(
            "name",
            format!(
                "{:?} is not an agent name: no '/' and no leading or trailing spaces (e.g. host-1234)",
                p.name
            ),
        ));
    }
    check_text("host", &p.host, true)?;
    check_text("version", &p.version, true)?;
    if p.queues.len() > MAX_AGENT_QUEUES {
        return Err(AppError::invalid(
            "queues",
            format!(
                "at most {MAX_AGENT_QUEUES} work queues, not {}",
                p.queues.len()
            ),
        ));
    }
    if p.limit == 0 {
        return Err(AppError::invalid(
            "limit",
            "must be at least 1 (the most runs the agent holds at once)",
        ));
    }
    Ok(())
}

impl Ferry {
    /// Records that an agent polled now (`PUT /v1/agents/{name}`; the agent reports at most
    /// every 10 s). Bad input is refused naming the field, and nothing is written.
    pub async fn agent_polled(&self, presence: AgentPresence) -> Result<AgentRecord, AppError> {
        check_presence(&presence)?;
        Ok(self.store.record_agent(&presence, self.now()).await?)
    }

    /// Whether `agent` polled within [`ONLINE_WITHIN`].
    pub fn is_online(&self, agent: &AgentRecord) -> bool {
        self.now() - agent.last_poll <= ONLINE_WITHIN
    }

    /// Agents seen in the last 7 days, by name; with `queue`, only those serving it.
    pub async fn list_agents(
        &self,
        queue: Option<&QueueName>,
    ) -> Result<Vec<AgentStatus>, AppError> {
        let since = self.now() - AGENT_RETENTION;
        Ok(self
            .store
            .list_agents(since)
            .await?
            .into_iter()
            .filter(|a| queue.is_none_or(|q| a.presence.queues.contains(q)))
            .map(|agent| AgentStatus {
                online: self.is_online(&agent),
                agent,
            })
            .collect())
    }

    /// Every queue with the agents serving it.
    pub async fn queue_views(&self) -> Result<Vec<QueueView>, AppError> {
        let agents = self.list_agents(None).await?;
        Ok(self
            .list_queues()
            .await?
            .into_iter()
            .map(|q| view(q, &agents))
            .collect())
    }

    /// One queue with the agents serving it.
    pub async fn queue_view(&self, name: &str) -> Result<QueueView, AppError> {
        let queue = self.get_queue(name).await?;
        let agents = self.list_agents(Some(&queue.name)).await?;
        Ok(view(queue, &agents))
    }
}

fn view(queue: WorkQueue, agents: &[AgentStatus]) -> QueueView {
    let serving: Vec<&AgentStatus> = agents
        .iter()
        .filter(|a| a.agent.presence.queues.contains(&queue.name))
        .collect();
    QueueView {
        agents: serving
            .iter()
            .filter(|a| a.online)
            .map(|a| a.agent.presence.name.clone())
            .collect(),
        last_polled_at: serving.iter().map(|a| a.agent.last_poll).max(),
        queue,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::TimeZone;
    use ferry_core::agent::AgentPath;
    use ferry_core::clock::MockClock;
    use ferry_embedded::{FsCodeStore, FsLogSink, SqliteStore};

    use super::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 10, 20, 10, 0, 0).unwrap()
    }

    async fn ferry(dir: &std::path::Path) -> (Ferry, Arc<MockClock>) {
        let clock = Arc::new(MockClock::at(t0()));
        let ferry = Ferry::new(
            Arc::new(SqliteStore::in_memory().unwrap()),
            Arc::new(FsCodeStore::new(dir.join("bundles"))),
            Arc::new(FsLogSink::new(dir.join("logs"))),
            clock.clone(),
        );
        ferry.ensure_default_queue().await.unwrap();
        (ferry, clock)
    }

    fn presence(name: &str, queues: &[&str]) -> AgentPresence {
        AgentPresence {
            name: name.into(),
            queues: queues
                .iter()
                .map(|q| QueueName::parse("q", q).unwrap())
                .collect(),
            host: "box".into(),
            version: "1".into(),
            limit: 2,
            running: 0,
            path: AgentPath::Direct,
        }
    }

    #[tokio::test]
    async fn a_bad_report_is_refused_naming_its_field_and_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (ferry, _) = ferry(dir.path()).await;
        let cases = [
            (
                "name",
                AgentPresence {
                    name: String::new(),
                    ..presence("a", &[])
                },
            ),
            (
                "name",
                AgentPresence {
                    name: " a".into(),
                    ..presence("a", &[])
                },
            ),
            (
                "name",
                AgentPresence {
                    name: "a/b".into(),
                    ..presence("a", &[])
                },
            ),
            (
                "name",
                AgentPresence {
                    name: "a".repeat(MAX_AGENT_TEXT + 1),
                    ..presence("a", &[])
                },
            ),
            (
                "host",
                AgentPresence {
                    host: "x\ny".into(),
                    ..presence("a", &[])
                },
            ),
            (
                "version",
                AgentPresence {
                    version: "v".repeat(MAX_AGENT_TEXT + 1),
                    ..presence("a", &[])
                },
            ),
            (
                "limit",
                AgentPresence {
                    limit: 0,
                    ..presence("a", &[])
                },
            ),
        ];
        for (field, bad) in cases {
            match ferry.agent_polled(bad.clone()).await {
                Err(AppError::Invalid(e)) => assert_eq!(e.field, field, "{bad:?}: {e}"),
                other => panic!("{bad:?} was not refused: {other:?}"),
            }
        }
        assert!(ferry.list_agents(None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn an_agent_is_online_for_60_s_after_its_poll_and_queue_views_show_it() {
        let dir = tempfile::tempdir().unwrap();
        let (ferry, clock) = ferry(dir.path()).await;
        ferry.create_queue("gpu", None, None).await.unwrap();
        ferry
            .agent_polled(presence("old", &["default", "gpu"]))
            .await
            .unwrap();
        clock.advance(Duration::seconds(30));
        ferry
            .agent_polled(presence("new", &["default"]))
            .await
            .unwrap();
        let views = ferry.queue_views().await.unwrap();
        let default = views.iter().find(|v| v.queue.name == "default").unwrap();
        assert_eq!(default.agents, ["new", "old"]);
        assert_eq!(default.last_polled_at, Some(t0() + Duration::seconds(30)));

        clock.advance(Duration::seconds(31)); // "old" polled 61 s ago
        let gpu = ferry.queue_view("gpu").await.unwrap();
        assert!(gpu.agents.is_empty(), "offline agents are not listed");
        assert_eq!(gpu.last_polled_at, Some(t0()), "but its last poll is");
        let listed = ferry.list_agents(None).await.unwrap();
        let online: Vec<(&str, bool)> = listed
            .iter()
            .map(|a| (a.agent.presence.name.as_str(), a.online))
            .collect();
        assert_eq!(online, [("new", true), ("old", false)]);
        let on_gpu = ferry
            .list_agents(Some(&QueueName::parse("q", "gpu").unwrap()))
            .await
            .unwrap();
        assert_eq!(on_gpu.len(), 1);

        clock.advance(AGENT_RETENTION);
        assert!(
            ferry.list_agents(None).await.unwrap().is_empty(),
            "agents gone for 7 days are not listed"
        );
    }
}
