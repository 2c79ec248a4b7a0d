//! `/work-queues`: each queue's limit, slots in use, waiting and late runs, the agents serving
//! it; pause and resume.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use ferry_app::QueuePatch;
use ferry_core::ports::RunFilter;
use ferry_core::StateType;

use crate::error::UiError;
use crate::format::{self, html, Chrome};
use crate::UiState;

/// Most runs counted per queue and state; beyond it the page says "N+".
pub(crate) const COUNT_CAP: usize = 1_000;

pub(crate) struct QueueRow {
    pub name: String,
    pub limit: String,
    pub in_use: String,
    pub waiting: String,
    pub late: String,
    pub late_count: u64,
    pub paused: bool,
    pub priority: u32,
    pub agents: Vec<String>,
    pub last_polled: String,
}

/// `n`, or `N+` when the count reached `COUNT_CAP`.
pub(crate) fn count(n: usize) -> String {
    if n >= COUNT_CAP {
        format!("{COUNT_CAP}+")
    } else {
        n.to_string()
    }
}

/// Runs of `queue` holding a slot or running (Pending, Running, Cancelling), for a queue
/// without a limit (a limited queue's slot count says it at once).
async fn running(s: &UiState, queue: &str) -> Result<usize, UiError> {
    Ok(s.ferry
        .list_runs(&RunFilter {
            work_queue: Some(queue.into()),
            states: vec![
                StateType::Pending,
                StateType::Running,
                StateType::Cancelling,
            ],
            limit: COUNT_CAP,
            ..RunFilter::default()
        })
        .await?
        .len())
}

/// Every queue as a row (the overview shows them too): its counts from the due index and its
/// slots, its agents from their presence.
pub(crate) async fn rows(s: &UiState) -> Result<Vec<QueueRow>, UiError> {
    let now = s.ferry.now();
    let views = s.ferry.queue_views().await?;
    let mut out = Vec::new();
    for stats in s.ferry.all_queue_run_stats().await? {
        let name = stats.queue.name.to_string();
        let view = views.iter().find(|v| v.queue.name == stats.queue.name);
        let in_use = match stats.in_use {
            Some(n) => n.to_string(),
            None => count(running(s, &name).await?),
        };
        out.push(QueueRow {
            limit: stats
                .queue
                .concurrency_limit
                .map_or_else(|| "none".into(), |l| l.to_string()),
            in_use,
            waiting: stats.due.to_string(),
            late: stats.late.to_string(),
            late_count: stats.late,
            paused: stats.queue.paused,
            priority: stats.queue.priority,
            agents: view.map(|v| v.agents.clone()).unwrap_or_default(),
            last_polled: view
                .and_then(|v| v.last_polled_at)
                .map(|t| format::relative(t, now))
                .unwrap_or_else(|| "never".into()),
            name,
        });
    }
    Ok(out)
}

#[derive(Template)]
#[template(path = "queues.html")]
struct QueuesPage {
    chrome: Chrome,
    rows: Vec<QueueRow>,
}

/// `GET /work-queues`.
pub(crate) async fn list(State(s): State<UiState>) -> Result<Response, UiError> {
    Ok(html(&QueuesPage {
        chrome: Chrome::new(&s, "work-queues"),
        rows: rows(&s).await?,
    }))
}

async fn set_paused(s: &UiState, name: &str, paused: bool) -> Result<Response, UiError> {
    s.ferry
        .update_queue(
            name,
            QueuePatch {
                paused: Some(paused),
                ..QueuePatch::default()
            },
        )
        .await?;
    Ok(Redirect::to("/work-queues").into_response())
}

/// `POST /work-queues/<name>/pause`.
pub(crate) async fn pause(
    State(s): State<UiState>,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    set_paused(&s, &name, true).await
}

/// `POST /work-queues/<name>/resume`.
pub(crate) async fn resume(
    State(s): State<UiState>,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    set_paused(&s, &name, false).await
}
