use anyhow::Result;
use ferry_app::{PreviewItem, QueuePatch};
use ferry_core::WorkQueue;
use reqwest::Method;
use serde_json::json;

use crate::args::QueueCmd;
use crate::client::Client;
use crate::output;

fn row(q: &WorkQueue) -> Vec<String> {
    vec![
        q.name.to_string(),
        q.concurrency_limit
            .map(|l| l.to_string())
            .unwrap_or_else(|| "-".into()),
        q.priority.to_string(),
        if q.paused { "yes" } else { "no" }.into(),
    ]
}

const HEADER: [&str; 4] = ["NAME", "LIMIT", "PRIORITY", "PAUSED"];

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
            println!("Created work queue {:?}", q.name);
        }
        QueueCmd::Ls { out } => {
            let qs: Vec<WorkQueue> = client.get("/work-queues").await?;
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
            let q: WorkQueue = client.get(&format!("/work-queues/{name}")).await?;
            if out.json {
                return output::json(&q);
            }
            output::table(&HEADER, vec![row(&q)]);
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
