//! `/deployments` (schedules in words, next fire times, last states) and
//! `/deployments/<flow>/<name>` (upcoming runs, history, manifest, run now, pause/resume).

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Duration, Utc};
use ferry_app::{AppError, RunRequest};
use ferry_core::ports::{RunFilter, RunWindow};
use ferry_core::schedule::Schedule;
use ferry_core::validate::validate_spec;
use ferry_core::{Deployment, DeploymentId, FlowRun};

use crate::error::{with_status, UiError};
use crate::format::{self, html, Chrome};
use crate::runs::RunRow;
use crate::timeline::{fit_span, Bar, Timeline};
use crate::UiState;

/// Runs in a deployment's strip of last states.
const STRIP: usize = 10;
/// Next fire times shown per deployment.
const NEXT: usize = 3;

/// One past run in a strip of last states.
pub(crate) struct StripCell {
    pub href: String,
    pub state_class: &'static str,
    pub title: String,
}

fn strip(runs: &[FlowRun]) -> Vec<StripCell> {
    // Oldest first: the newest is at the right end, as people read a history.
    runs.iter()
        .rev()
        .map(|r| StripCell {
            href: format!("/runs/{}", r.id),
            state_class: r.state.as_str(),
            title: format!(
                "{} — {}",
                format::state_label(r.state),
                format::time(r.scheduled_time)
            ),
        })
        .collect()
}

/// The deployment's schedules, parsed (an invalid stored one is skipped: it never fires).
fn schedules(d: &Deployment) -> Vec<Schedule> {
    d.spec
        .schedules
        .iter()
        .filter_map(|s| Schedule::parse(s).ok())
        .collect()
}

/// The next `n` fire times after `now`, each on its schedule's wall clock.
fn next_fires(
    schedules: &[Schedule],
    now: DateTime<Utc>,
    n: usize,
) -> Vec<(DateTime<Utc>, String)> {
    let mut out: Vec<(DateTime<Utc>, String)> = schedules
        .iter()
        .filter(|s| s.spec().active)
        .flat_map(|s| {
            let tz = s.timezone().name().to_owned();
            s.iter_after(now)
                .take(n)
                .map(move |t| (t, format::time_in(t, &tz)))
                .collect::<Vec<_>>()
        })
        .collect();
    out.sort();
    out.dedup_by_key(|(t, _)| *t);
    out.truncate(n);
    out
}

struct DeploymentRow {
    id: String,
    description: String,
    queue: String,
    schedules: Vec<String>,
    next: Vec<String>,
    paused: bool,
    strip: Vec<StripCell>,
}

#[derive(Template)]
#[template(path = "deployments.html")]
struct DeploymentsPage {
    chrome: Chrome,
    rows: Vec<DeploymentRow>,
}

async fn last_runs(s: &UiState, id: &DeploymentId, n: usize) -> Result<Vec<FlowRun>, AppError> {
    s.ferry
        .list_runs(&RunFilter {
            deployment: Some(id.clone()),
            limit: n,
            window: RunWindow::DueBy(s.ferry.now()),
            ..RunFilter::default()
        })
        .await
}

/// `GET /deployments`.
pub(crate) async fn list(State(s): State<UiState>) -> Result<Response, UiError> {
    let now = s.ferry.now();
    let mut rows = Vec::new();
    for d in s.ferry.list_deployments().await? {
        let scheds = schedules(&d);
        let runs = last_runs(&s, &d.id, STRIP).await?;
        rows.push(DeploymentRow {
            id: d.id.to_string(),
            description: d.spec.description.clone().unwrap_or_default(),
            queue: d.spec.work_queue.to_string(),
            schedules: scheds.iter().map(Schedule::describe).collect(),
            next: if d.spec.paused {
                Vec::new()
            } else {
                next_fires(&scheds, now, NEXT)
                    .into_iter()
                    .map(|(t, wall)| format!("{wall} ({})", format::relative(t, now)))
                    .collect()
            },
            paused: d.spec.paused,
            strip: strip(&runs),
        });
    }
    Ok(html(&DeploymentsPage {
        chrome: Chrome::new(&s, "deployments"),
        rows,
    }))
}

/// An upcoming run: written already, or planned by a schedule.
struct Upcoming {
    when: String,
    relative: String,
    state: &'static str,
    state_class: &'static str,
    href: Option<String>,
}

#[derive(Template)]
#[template(path = "deployment.html")]
struct DeploymentPage {
    chrome: Chrome,
    id: String,
    flow: String,
    name: String,
    description: String,
    entrypoint: String,
    queue: String,
    revision: u64,
    paused: bool,
    tags: String,
    schedules: Vec<String>,
    upcoming: Vec<Upcoming>,
    timeline: Timeline,
    history: Vec<RunRow>,
    strip: Vec<StripCell>,
    manifest: String,
    parameters: String,
    error: Option<String>,
}

/// How far ahead the deployment page looks.
const AHEAD_HOURS: i64 = 24;
/// Most upcoming runs listed.
const UPCOMING: usize = 20;
/// Runs in the deployment's history table.
const HISTORY: usize = 50;

async fn deployment_page(
    s: &UiState,
    id: &DeploymentId,
    parameters: Option<String>,
    error: Option<String>,
) -> Result<DeploymentPage, UiError> {
    let d = s.ferry.get_deployment(id).await?;
    let now = s.ferry.now();
    let until = now + Duration::hours(AHEAD_HOURS);
    let written = s
        .ferry
        .list_runs(&RunFilter {
            deployment: Some(id.clone()),
            limit: UPCOMING,
            window: RunWindow::After(now),
            ..RunFilter::default()
        })
        .await?;
    // Times on the wall clock of the (first) schedule's time zone.
    let scheds = schedules(&d);
    let tz = scheds
        .first()
        .map_or_else(|| "UTC".to_owned(), |s| s.timezone().name().to_owned());
    let mut upcoming: Vec<(DateTime<Utc>, Upcoming)> = written
        .iter()
        .map(|r| {
            (
                r.scheduled_time,
                Upcoming {
                    when: format::time_in(r.scheduled_time, &tz),
                    relative: format::relative(r.scheduled_time, now),
                    state: format::state_label(r.state),
                    state_class: r.state.as_str(),
                    href: Some(format!("/runs/{}", r.id)),
                },
            )
        })
        .collect();
    // Fire times past what the tick has written yet ("planned": no run exists for them).
    if !d.spec.paused {
        if let Ok(valid) = validate_spec(&d.spec) {
            let from = d.scheduled_until.unwrap_or(now).max(now);
            for t in ferry_core::schedule::fire_times(&valid.schedules, from, until, UPCOMING) {
                upcoming.push((
                    t,
                    Upcoming {
                        when: format::time_in(t, &tz),
                        relative: format::relative(t, now),
                        state: "Planned",
                        state_class: "planned",
                        href: None,
                    },
                ));
            }
        }
    }
    upcoming.sort_by_key(|(t, _)| *t);
    upcoming.truncate(UPCOMING);
    let span = fit_span(
        now,
        upcoming.iter().map(|(t, _)| *t),
        Duration::minutes(5),
        Duration::hours(AHEAD_HOURS),
    );
    let timeline = Timeline::new(
        now,
        now + span,
        now,
        upcoming
            .iter()
            .filter(|(t, _)| *t <= now + span)
            .map(|(t, u)| Bar {
                row: d.id.to_string(),
                start: *t,
                end: None,
                class: u.state_class,
                title: format!("{} — {}", u.state, u.when),
                href: u.href.clone(),
            })
            .collect(),
    );
    let history = last_runs(s, id, HISTORY).await?;
    let manifest = serde_yaml_ng::to_string(&d.spec).unwrap_or_default();
    Ok(DeploymentPage {
        chrome: Chrome::new(s, "deployments"),
        id: d.id.to_string(),
        flow: d.spec.flow.clone(),
        name: d.spec.name.clone(),
        description: d.spec.description.clone().unwrap_or_default(),
        entrypoint: d.spec.entrypoint.to_string(),
        queue: d.spec.work_queue.to_string(),
        revision: d.revision,
        paused: d.spec.paused,
        tags: d.spec.tags.join(", "),
        schedules: scheds.iter().map(Schedule::describe).collect(),
        upcoming: upcoming.into_iter().map(|(_, u)| u).collect(),
        timeline,
        strip: strip(&history[..history.len().min(STRIP)]),
        history: history.iter().map(|r| RunRow::new(r, now)).collect(),
        manifest,
        parameters: parameters.unwrap_or_else(|| {
            serde_json::to_string_pretty(&d.spec.parameters).unwrap_or_else(|_| "{}".into())
        }),
        error,
    })
}

fn deployment_id(flow: &str, name: &str) -> Result<DeploymentId, UiError> {
    DeploymentId::new(flow, name).map_err(UiError::from_validation)
}

/// `GET /deployments/<flow>/<name>`.
pub(crate) async fn page(
    State(s): State<UiState>,
    Path((flow, name)): Path<(String, String)>,
) -> Result<Response, UiError> {
    let id = deployment_id(&flow, &name)?;
    Ok(html(&deployment_page(&s, &id, None, None).await?))
}

#[derive(serde::Deserialize)]
struct RunNowForm {
    #[serde(default)]
    parameters: String,
}

/// The form's `parameters`: a JSON object (empty = none).
fn parse_parameters(text: &str) -> Result<serde_json::Map<String, serde_json::Value>, UiError> {
    if text.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        Ok(_) => Err(UiError::invalid(
            "parameters",
            "must be a JSON object, such as {\"n\": 21}",
        )),
        Err(e) => Err(UiError::invalid(
            "parameters",
            format!("not valid JSON ({e}); write an object such as {{\"n\": 21}}"),
        )),
    }
}

/// `POST /deployments/<flow>/<name>/run` (form field `parameters`): a run now, with these
/// parameters over the deployment's defaults; on to its page. Refused input re-renders the
/// deployment's page with the message, and creates nothing.
pub(crate) async fn run_now(
    State(s): State<UiState>,
    Path((flow, name)): Path<(String, String)>,
    body: String,
) -> Result<Response, UiError> {
    let id = deployment_id(&flow, &name)?;
    let form: RunNowForm = serde_urlencoded::from_str(&body)
        .map_err(|e| UiError::invalid("parameters", format!("not a form: {e}")))?;
    let created = match parse_parameters(&form.parameters) {
        Ok(parameters) => s
            .ferry
            .create_run(
                &id,
                RunRequest {
                    parameters,
                    ..RunRequest::default()
                },
            )
            .await
            .map_err(UiError::from),
        Err(e) => Err(e),
    };
    match created {
        Ok((run, _)) => Ok(Redirect::to(&format!("/runs/{}", run.id)).into_response()),
        Err(e @ (UiError::Invalid { .. } | UiError::App(AppError::Invalid(_)))) => {
            let (status, message) = e.status_and_message();
            let page = deployment_page(&s, &id, Some(form.parameters), Some(message)).await?;
            Ok(with_status(status, &page))
        }
        Err(e) => Err(e),
    }
}

async fn set_paused(
    s: &UiState,
    flow: &str,
    name: &str,
    paused: bool,
) -> Result<Response, UiError> {
    let id = deployment_id(flow, name)?;
    s.ferry.set_deployment_paused(&id, paused).await?;
    Ok(Redirect::to(&format!("/deployments/{id}")).into_response())
}

/// `POST /deployments/<flow>/<name>/pause`.
pub(crate) async fn pause(
    State(s): State<UiState>,
    Path((flow, name)): Path<(String, String)>,
) -> Result<Response, UiError> {
    set_paused(&s, &flow, &name, true).await
}

/// `POST /deployments/<flow>/<name>/resume`.
pub(crate) async fn resume(
    State(s): State<UiState>,
    Path((flow, name)): Path<(String, String)>,
) -> Result<Response, UiError> {
    set_paused(&s, &flow, &name, false).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    #[test]
    fn parameters_must_be_a_json_object() {
        assert!(parse_parameters("").unwrap().is_empty());
        assert_eq!(parse_parameters("{\"n\": 21}").unwrap()["n"], 21);
        let e = parse_parameters("[1]").unwrap_err();
        assert_eq!(e.status_and_message().0, StatusCode::BAD_REQUEST);
        assert!(e
            .status_and_message()
            .1
            .starts_with("parameters: must be a JSON object"));
        let e = parse_parameters("{n: 21}").unwrap_err();
        assert!(e
            .status_and_message()
            .1
            .starts_with("parameters: not valid JSON"));
    }
}
