use anyhow::Result;
use chrono::{DateTime, Utc};
use ferry_app::{AgentStatus, PreviewItem, QueuePatch, QueueView};
use ferry_core::agent::AgentPath;
use ferry_core::{QueueName, WorkQueue};
use reqwest::Method;
use serde_json::json;

use crate::args::QueueCmd;
use crate::client::Client;
use crate::output;

fn row(v: &QueueView) -> Vec<String> {
    let q = &v.queue;
    vec![
        q.name.to_string(),
        q.concurrency_limit
            .map(|l| l.to_string())
            .unwrap_or_else(|| "-".into()),
        q.priority.to_string(),
        if q.paused { "yes" } else { "no" }.into(),
        if v.agents.is_empty() {
            "-".into()
        } else {
            v.agents.join(",")
        },
        v.last_polled_at.map(ago).unwrap_or_else(|| "never".into()),
    ]
}

const HEADER: [&str; 6] = [
    "NAME",
    "LIMIT",
    "PRIORITY",
    "PAUSED",
    "AGENTS",
    "LAST POLLED",
];

/// How long ago `t` was, the way a person says it: `3s ago`, `5m ago`, `2h ago`, `4d ago`.
fn ago(t: DateTime<Utc>) -> String {
    let s = (Utc::now() - t).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86_400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

/// What an empty agent listing says.
fn no_agents(queue: Option<&str>) -> String {
    match queue {
        Some(q) => format!(
            "no agents serving work queue '{q}' have polled in the last 7 days; start one with `ferry agent start -q {q}`"
        ),
        None => "no agents have polled in the last 7 days; start one with `ferry agent start -q NAME`".into(),
    }
}

async fn agents(client: &Client, queue: Option<&str>) -> Result<Vec<AgentStatus>> {
    let path = match queue {
        Some(q) => {
            let q = QueueName::parse("--work-queue", q).map_err(|e| anyhow::anyhow!("{e}"))?;
            format!("/agents?work_queue={q}")
        }
        None => "/agents".into(),
    };
    client.get(&path).await
}

/// `ferry agent ls [--work-queue Q] [--json]`.
pub async fn agent_ls(queue: Option<&str>, json: bool) -> Result<()> {
    let client = Client::from_env()?;
    let list = agents(&client, queue).await?;
    if json {
        return output::json(&list);
    }
    if list.is_empty() {
        println!("{}", no_agents(queue));
        return Ok(());
    }
    output::table(
        &[
            "NAME",
            "QUEUES",
            "HOST",
            "VERSION",
            "PATH",
            "RUNNING/LIMIT",
            "LAST POLL",
            "ONLINE",
        ],
        list.iter()
            .map(|a| {
                let p = &a.agent.presence;
                vec![
                    p.name.clone(),
                    p.queues
                        .iter()
                        .map(|q| q.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    p.host.clone(),
                    p.version.clone(),
                    match p.path {
                        AgentPath::Api => "api",
                        AgentPath::Direct => "direct",
                    }
                    .into(),
                    format!("{}/{}", p.running, p.limit),
                    ago(a.agent.last_poll),
                    if a.online { "yes" } else { "no" }.into(),
                ]
            })
            .collect(),
    );
    Ok(())
}

async fn patch(client: &Client, name: &str, patch: QueuePatch) -> Result<WorkQueue> {
    let (_, q) = client
        .send_json(Method::PATCH, &format!("/work-queues/{name}"), &patch)
        .await?;
    Ok(q)
}

pub async fn run(cmd: QueueCmd) -> Result<()> {
    let client = Client::from_env()?;
    match cmd {
        QueueCmd::Create {
            name,
            limit,
            priority,
            out,
        } => {
            let body = json!({ "name": name, "concurrency_limit": limit, "priority": priority });
            let (_, q): (_, WorkQueue) = client
                .send_json(Method::POST, "/work-queues", &body)
                .await?;
            if out.json {
                return output::json(&q);
            }
            println!("Created work queue {}", q.name);
        }
        QueueCmd::Ls { out } => {
            let qs: Vec<QueueView> = client.get("/work-queues").await?;
            if out.json {
                return output::json(&qs);
            }
            if qs.is_empty() {
                output::empty("no work queues yet: create one with `ferry work-queue create NAME`");
                return Ok(());
            }
            output::table(&HEADER, qs.iter().map(row).collect());
        }
        QueueCmd::Inspect { name, out } => {
            let q: QueueView = client.get(&format!("/work-queues/{name}")).await?;
            if out.json {
                return output::json(&q);
            }
            output::table(&HEADER, vec![row(&q)]);
            let serving = agents(&client, Some(&name)).await?;
            println!();
            if serving.is_empty() {
                println!("{}", no_agents(Some(&name)));
            } else {
                println!("agents serving it:");
                output::table(
                    &["  NAME", "HOST", "RUNNING/LIMIT", "LAST POLL", "ONLINE"],
                    serving
                        .iter()
                        .map(|a| {
                            let p = &a.agent.presence;
                            vec![
                                format!("  {}", p.name),
                                p.host.clone(),
                                format!("{}/{}", p.running, p.limit),
                                format!(
                                    "{} ({})",
                                    ago(a.agent.last_poll),
                                    output::time(a.agent.last_poll)
                                ),
                                if a.online { "yes" } else { "no" }.into(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        QueueCmd::Delete { name } => {
            client.delete(&format!("/work-queues/{name}")).await?;
            println!("Deleted work queue {name:?}");
        }
        QueueCmd::Pause { name } => {
            patch(
                &client,
                &name,
                QueuePatch {
                    paused: Some(true),
                    ..Default::default()
                },
            )
            .await?;
            println!("Paused work queue {name:?}");
        }
        QueueCmd::Resume { name } => {
            patch(
                &client,
                &name,
                QueuePatch {
                    paused: Some(false),
                    ..Default::default()
                },
            )
            .await?;
            println!("Resumed work queue {name:?}");
        }
        QueueCmd::SetConcurrencyLimit { name, limit } => {
            patch(
                &client,
                &name,
                QueuePatch {
                    concurrency_limit: Some(limit),
                    ..Default::default()
                },
            )
            .await?;
            println!("Set the concurrency limit of {name:?} to {limit}");
        }
        QueueCmd::ClearConcurrencyLimit { name } => {
            patch(
                &client,
                &name,
                QueuePatch {
                    clear_concurrency_limit: true,
                    ..Default::default()
                },
            )
            .await?;
            println!("Cleared the concurrency limit of {name:?}");
        }
        QueueCmd::Preview { name, hours, out } => {
            let items: Vec<PreviewItem> = client
                .get(&format!("/work-queues/{name}/preview?hours={hours}"))
                .await?;
            if out.json {
                return output::json(&items);
            }
            output::table(
                &["SCHEDULED", "DEPLOYMENT", "RUN ID", "STATE"],
                items
                    .into_iter()
                    .map(|i| {
                        vec![
                            output::time(i.scheduled_time),
                            i.deployment,
                            i.run_id,
                            i.state,
                        ]
                    })
                    .collect(),
            );
        }
    }
    Ok(())
}
