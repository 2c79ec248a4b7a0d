//! `/runs` (the list, filtered, updating live) and `/runs/<id>` (one run: its states, its
//! parameters, its result, its log following live, cancel; `/runs/<id>/result` the raw result).

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use ferry_app::RunView;
use ferry_core::ports::{LogLine, LogStream, RunFilter};
use ferry_core::{DeploymentId, FlowRun, RunId, StateType};

use crate::error::{with_status, UiError};
use crate::format::{self, html, Chrome};
use crate::timeline::{Bar, Timeline};
use crate::UiState;

/// Runs per page of the list.
const PAGE: usize = 50;
/// Log lines per read.
const LOG_PAGE: usize = 5_000;
/// Most bytes of a result's pretty JSON shown in the page; the rest is behind the raw link.
pub(crate) const RESULT_PAGE_BYTES: usize = 4 * 1024;

/// One run as a row of a table.
pub(crate) struct RunRow {
    pub id: String,
    pub deployment: String,
    pub queue: String,
    pub state: &'static str,
    pub state_class: &'static str,
    pub scheduled: String,
    pub scheduled_rel: String,
    pub started: String,
    pub duration: String,
    pub message: String,
}

impl RunRow {
    pub(crate) fn new(r: &FlowRun, now: DateTime<Utc>) -> Self {
        Self {
            id: r.id.to_string(),
            deployment: r.deployment.to_string(),
            queue: r.work_queue.to_string(),
            state: format::state_label(r.state),
            state_class: r.state.as_str(),
            scheduled: format::time(r.scheduled_time),
            scheduled_rel: format::relative(r.scheduled_time, now),
            started: r.started_at.map(format::time).unwrap_or_default(),
            duration: format::run_duration(r.started_at, r.ended_at, now),
            message: r.state_message.clone().unwrap_or_default(),
        }
    }
}

#[derive(serde::Deserialize, Default)]
pub(crate) struct ListQuery {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    deployment: Option<String>,
    #[serde(default)]
    work_queue: Option<String>,
    #[serde(default)]
    view: Option<String>,
    /// `rows`: only the table's rows (what the page's script polls).
    #[serde(default)]
    fragment: Option<String>,
    /// The last run of the previous page: this page starts after it.
    #[serde(default)]
    before: Option<String>,
}

/// A select's option.
pub(crate) struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    chrome: Chrome,
    rows: Vec<RunRow>,
    states: Vec<Choice>,
    deployments: Vec<Choice>,
    queues: Vec<Choice>,
    views: Vec<Choice>,
    /// The list's own URL with `fragment=rows` (what the script polls; only on the first
    /// page: a later page keeps what it shows).
    poll_url: Option<String>,
    /// The next page's URL, when there is one.
    older: Option<String>,
    /// The first page's URL, on a later page.
    newest: Option<String>,
    empty: String,
}

#[derive(Template)]
#[template(path = "run_rows.html")]
struct RunRows {
    rows: Vec<RunRow>,
    empty: String,
}

fn nonempty(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

fn choices(values: Vec<(String, String)>, selected: Option<&str>, any: &str) -> Vec<Choice> {
    let mut out = vec![Choice {
        value: String::new(),
        label: any.into(),
        selected: selected.is_none(),
    }];
    out.extend(values.into_iter().map(|(value, label)| Choice {
        selected: selected == Some(value.as_str()),
        value,
        label,
    }));
    out
}

/// `GET /runs?state=&deployment=&work_queue=&view=`.
pub(crate) async fn list(
    State(s): State<UiState>,
    Query(q): Query<ListQuery>,
) -> Result<Response, UiError> {
    let state = nonempty(&q.state)
        .map(|v| {
            v.parse::<StateType>()
                .map_err(|m| UiError::invalid("state", m))
        })
        .transpose()?;
    let deployment = nonempty(&q.deployment)
        .map(|v| v.parse::<DeploymentId>().map_err(UiError::from_validation))
        .transpose()?;
    let queue = nonempty(&q.work_queue).map(str::to_owned);
    let view = match nonempty(&q.view) {
        None | Some("recent") => RunView::Recent,
        Some("upcoming") => RunView::Upcoming,
        Some("all") => RunView::All,
        Some(other) => {
            return Err(UiError::invalid(
                "view",
                format!("unknown view {other:?}: use recent, upcoming or all"),
            ))
        }
    };
    let before = nonempty(&q.before)
        .map(|v| {
            v.parse::<RunId>()
                .map_err(|e| UiError::invalid("before", format!("{e}: give a run id")))
        })
        .transpose()?;
    let filter = RunFilter {
        deployment: deployment.clone(),
        states: state.into_iter().collect(),
        work_queue: queue.clone(),
        limit: PAGE,
        ..RunFilter::default()
    };
    let now = s.ferry.now();
    let page = s.ferry.list_runs_page(filter, view, before).await?;
    let rows: Vec<RunRow> = page.runs.iter().map(|r| RunRow::new(r, now)).collect();
    let empty = match view {
        RunView::Upcoming => "No upcoming runs match.",
        _ => "No runs match.",
    }
    .to_owned();
    if q.fragment.as_deref() == Some("rows") {
        return Ok(html(&RunRows { rows, empty }));
    }
    let deployments = s.ferry.list_deployments().await?;
    let queues = s.ferry.list_queues().await?;
    let selected_view = match view {
        RunView::Recent => "recent",
        RunView::Upcoming => "upcoming",
        RunView::All => "all",
    };
    // The filters as query parameters, for the script's polls and the page links.
    let mut params = vec![("view", selected_view.to_owned())];
    if let Some(st) = state {
        params.push(("state", st.as_str().into()));
    }
    if let Some(d) = &deployment {
        params.push(("deployment", d.to_string()));
    }
    if let Some(qn) = &queue {
        params.push(("work_queue", qn.clone()));
    }
    let url = |extra: Option<(&'static str, String)>| {
        let mut p = params.clone();
        p.extend(extra);
        format!(
            "/runs?{}",
            serde_urlencoded::to_string(&p).unwrap_or_default()
        )
    };
    let older = page.next.map(|c| url(Some(("before", c.id.to_string()))));
    let (poll_url, newest) = match before {
        None => (Some(url(Some(("fragment", "rows".into())))), None),
        Some(_) => (None, Some(url(None))),
    };
    let page = RunsPage {
        chrome: Chrome::new(&s, "runs"),
        rows,
        states: choices(
            StateType::ALL
                .iter()
                .map(|t| (t.as_str().to_owned(), format::state_label(*t).to_owned()))
                .collect(),
            state.map(StateType::as_str),
            "any state",
        ),
        deployments: choices(
            deployments
                .iter()
                .map(|d| (d.id.to_string(), d.id.to_string()))
                .collect(),
            deployment.as_ref().map(|d| d.to_string()).as_deref(),
            "any deployment",
        ),
        queues: choices(
            queues
                .iter()
                .map(|w| (w.name.to_string(), w.name.to_string()))
                .collect(),
            queue.as_deref(),
            "any work queue",
        ),
        views: [
            ("recent", "Recent (scheduled up to now)"),
            ("upcoming", "Upcoming"),
            ("all", "All"),
        ]
        .into_iter()
        .map(|(v, l)| Choice {
            value: v.into(),
            label: l.into(),
            selected: v == selected_view,
        })
        .collect(),
        poll_url,
        older,
        newest,
        empty,
    };
    Ok(html(&page))
}

/// One state change of a run's history.
struct HistoryRow {
    state: &'static str,
    state_class: &'static str,
    at: String,
    message: String,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    chrome: Chrome,
    row: RunRow,
    attempt: u32,
    origin: String,
    retry_of: Option<String>,
    retried_by: Option<String>,
    exit_code: Option<i32>,
    ended: String,
    history: Vec<HistoryRow>,
    /// The states as consecutive bars from each change to the next (or now).
    states: Timeline,
    parameters: String,
    result: RunResultView,
    logs: Vec<String>,
    next_offset: u64,
    cancellable: bool,
    is_final: bool,
    live_url: String,
    error: Option<String>,
}

/// The run's result as the page shows it.
enum RunResultView {
    /// Pretty JSON, cut to [`RESULT_PAGE_BYTES`] when `truncated` (of `bytes` in all).
    Value {
        text: String,
        truncated: bool,
        bytes: usize,
    },
    /// Why there is none.
    None(String),
}

impl RunResultView {
    fn of(result: Result<serde_json::Value, ferry_app::AppError>) -> Result<Self, UiError> {
        match result {
            Ok(value) => {
                let pretty = serde_json::to_string_pretty(&value).unwrap_or_default();
                let bytes = pretty.len();
                let mut end = bytes.min(RESULT_PAGE_BYTES);
                while !pretty.is_char_boundary(end) {
                    end -= 1;
                }
                Ok(RunResultView::Value {
                    text: pretty[..end].to_owned(),
                    truncated: end < bytes,
                    bytes,
                })
            }
            Err(ferry_app::AppError::NoResult { why, .. }) => Ok(RunResultView::None(why)),
            Err(e) => Err(e.into()),
        }
    }
}

fn log_text(l: &LogLine) -> String {
    let stream = match l.stream {
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
        LogStream::Ferry => "ferry ",
    };
    format!("{} {stream} | {}", l.at.format("%H:%M:%S%.3f"), l.line)
}

/// The run's states as bars on one time axis, each from its change to the next (the last one
/// to its end, or to now while the run goes on).
fn state_timeline(run: &FlowRun, now: DateTime<Utc>) -> Timeline {
    let h = &run.history;
    let end = run
        .ended_at
        .unwrap_or(now)
        .max(h.last().map_or(now, |s| s.at));
    let bars = h
        .iter()
        .enumerate()
        .map(|(i, s)| Bar {
            row: "states".into(),
            start: s.at,
            end: Some(h.get(i + 1).map_or(end, |n| n.at)),
            class: s.state.as_str(),
            title: format!(
                "{} from {}",
                format::state_label(s.state),
                format::time(s.at)
            ),
            href: None,
        })
        .collect();
    let lo = h.first().map_or(now, |s| s.at);
    Timeline::new(lo, end.max(lo + chrono::Duration::seconds(1)), now, bars)
}

fn history(run: &FlowRun) -> Vec<HistoryRow> {
    run.history
        .iter()
        .map(|h| HistoryRow {
            state: format::state_label(h.state),
            state_class: h.state.as_str(),
            at: format::time(h.at),
            message: h.message.clone().unwrap_or_default(),
        })
        .collect()
}

async fn resolve(s: &UiState, id: &str) -> Result<RunId, UiError> {
    Ok(s.ferry.resolve_run_id(id).await?)
}

async fn run_page(s: &UiState, id: RunId, error: Option<String>) -> Result<RunPage, UiError> {
    let run = s.ferry.get_run(id).await?;
    let logs = s.ferry.run_logs(id, 0, LOG_PAGE).await?;
    let result = RunResultView::of(s.ferry.result_of(&run).await)?;
    let now = s.ferry.now();
    Ok(RunPage {
        chrome: Chrome::new(s, "runs"),
        row: RunRow::new(&run, now),
        attempt: run.attempt,
        origin: format!("{:?}", run.origin).to_lowercase(),
        retry_of: run.retry_of.map(|r| r.to_string()),
        retried_by: run.retried_by.map(|r| r.to_string()),
        exit_code: run.exit_code,
        ended: run.ended_at.map(format::time).unwrap_or_default(),
        history: history(&run),
        states: state_timeline(&run, now),
        parameters: serde_json::to_string_pretty(&run.parameters).unwrap_or_default(),
        result,
        logs: logs.lines.iter().map(log_text).collect(),
        next_offset: logs.next_offset,
        cancellable: !run.state.is_terminal() && run.state != StateType::Cancelling,
        is_final: run.state.is_terminal(),
        live_url: format!("/runs/{}/live", run.id),
        error,
    })
}

/// `GET /runs/<id>` (an id or a unique prefix of one).
pub(crate) async fn page(
    State(s): State<UiState>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let id = resolve(&s, &id).await?;
    Ok(html(&run_page(&s, id, None).await?))
}

#[derive(serde::Deserialize)]
pub(crate) struct LiveQuery {
    #[serde(default)]
    offset: u64,
}

/// What the run page's script polls: the run's state and its log from `offset`.
#[derive(serde::Serialize)]
pub(crate) struct Live {
    state: &'static str,
    state_label: &'static str,
    message: String,
    duration: String,
    history: Vec<LiveHistory>,
    lines: Vec<String>,
    next_offset: u64,
    #[serde(rename = "final")]
    is_final: bool,
    cancellable: bool,
}

#[derive(serde::Serialize)]
struct LiveHistory {
    state: &'static str,
    state_label: &'static str,
    at: String,
    message: String,
}

/// `GET /runs/<id>/live?offset=N`.
pub(crate) async fn live(
    State(s): State<UiState>,
    Path(id): Path<String>,
    Query(q): Query<LiveQuery>,
) -> Result<Json<Live>, LiveError> {
    let id = resolve(&s, &id).await.map_err(LiveError)?;
    let run = s.ferry.get_run(id).await.map_err(|e| LiveError(e.into()))?;
    let logs = s
        .ferry
        .run_logs(id, q.offset, LOG_PAGE)
        .await
        .map_err(|e| LiveError(e.into()))?;
    let now = s.ferry.now();
    Ok(Json(Live {
        state: run.state.as_str(),
        state_label: format::state_label(run.state),
        message: run.state_message.clone().unwrap_or_default(),
        duration: format::run_duration(run.started_at, run.ended_at, now),
        history: history(&run)
            .into_iter()
            .map(|h| LiveHistory {
                state: h.state_class,
                state_label: h.state,
                at: h.at,
                message: h.message,
            })
            .collect(),
        lines: logs.lines.iter().map(log_text).collect(),
        next_offset: logs.next_offset,
        is_final: run.state.is_terminal(),
        cancellable: !run.state.is_terminal() && run.state != StateType::Cancelling,
    }))
}

/// The live endpoint's errors: JSON `{"message": …}` with the page's status, for the script.
pub(crate) struct LiveError(UiError);

impl IntoResponse for LiveError {
    fn into_response(self) -> Response {
        let (status, message) = self.0.status_and_message();
        (status, Json(serde_json::json!({ "message": message }))).into_response()
    }
}

/// `GET /runs/<id>/result`: the run's result as raw JSON (what `GET /v1/flow-runs/<id>/result`
/// answers), behind the dashboard's own sign-in; a run without one is the HTML 404 naming why.
pub(crate) async fn result(
    State(s): State<UiState>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, UiError> {
    let id = resolve(&s, &id).await?;
    Ok(Json(s.ferry.run_result(id).await?))
}

/// `POST /runs/<id>/cancel`: back to the run's page; a run that already finished is shown
/// with the refusal (409).
pub(crate) async fn cancel(
    State(s): State<UiState>,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    let id = resolve(&s, &id).await?;
    match s.ferry.cancel_run(id).await {
        Ok(_) => Ok(Redirect::to(&format!("/runs/{id}")).into_response()),
        Err(e @ ferry_app::AppError::Conflict(_)) => {
            let (status, message) = UiError::from(e).status_and_message();
            Ok(with_status(status, &run_page(&s, id, Some(message)).await?))
        }
        Err(e) => Err(e.into()),
    }
}
