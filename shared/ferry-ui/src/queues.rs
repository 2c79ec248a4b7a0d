//! `/work-queues`: each queue's limit, slots in use, waiting and late runs, the agents serving
//! it; pause and resume.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use ferry_app::QueuePatch;
use ferry_core::ports::{RunFilter, RunWindow};
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
    pub late_count: usize,
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

async fn count_runs(
    s: &UiState,
    queue: &str,
    states: &[StateType],
    window: RunWindow,
) -> Result<usize, UiError> {
    Ok(s.ferry
        .list_runs(&RunFilter {
            work_queue: Some(queue.into()),
            states: states.to_vec(),
            limit: COUNT_CAP,
            window,
            ..RunFilter::default()
        })
        .await?
        .len())
}

/// Every queue as a row (the overview shows them too).
pub(crate) async fn rows(s: &UiState) -> Result<Vec<QueueRow>, UiError> {
    let now = s.ferry.now();
    let mut out = Vec::new();
    for v in s.ferry.queue_views().await? {
        let name = v.queue.name.to_string();
        let in_use = count_runs(
            s,
            &name,
            &[
                StateType::Pending,
                StateType::Running,
                StateType::Cancelling,
            ],
            RunWindow::All,
        )
        .await?;
        let waiting = count_runs(s, &name, &[StateType::Scheduled], RunWindow::DueBy(now)).await?;
        let late = count_runs(s, &name, &[StateType::Late], RunWindow::All).await?;
        out.push(QueueRow {
            limit: v
                .queue
                .concurrency_limit
                .map_or_else(|| "none".into(), |l| l.to_string()),
            in_use: count(in_use),
            waiting: count(waiting),
            late: count(late),
            late_count: late,
            paused: v.queue.paused,
            priority: v.queue.priority,
            agents: v.agents,
            last_polled: v
                .last_polled_at
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
