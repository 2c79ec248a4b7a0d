//! `/`: what happened in the last 24 hours and what needs attention — runs by state, late and
//! failing deployments, queue depths, agents and their last poll, a timeline of the last hours.

use std::collections::{BTreeMap, HashMap};

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use chrono::Duration;
use ferry_core::ports::{RunFilter, RunWindow};
use ferry_core::{FlowRun, StateType};

use crate::error::UiError;
use crate::format::{self, html, Chrome};
use crate::queues::{self, QueueRow, COUNT_CAP};
use crate::runs::RunRow;
use crate::timeline::{fit_span, Bar, Timeline};
use crate::UiState;

/// Most hours the timeline shows.
const TIMELINE_HOURS: i64 = 6;
/// Most runs of the last 24 h read for the counts.
const RECENT_CAP: usize = 5 * COUNT_CAP;

struct StateCount {
    state: &'static str,
    state_class: &'static str,
    count: String,
    href: String,
}

struct Attention {
    deployment: String,
    what: String,
    run: RunRow,
}

struct AgentRow {
    name: String,
    queues: String,
    host: String,
    running: String,
    last_poll: String,
    online: bool,
    path: String,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    chrome: Chrome,
    counts: Vec<StateCount>,
    total: String,
    attention: Vec<Attention>,
    queues: Vec<QueueRow>,
    agents: Vec<AgentRow>,
    timeline: Timeline,
    timeline_span: String,
}

/// The latest run of each deployment that failed, crashed or is late (newest first).
fn needing_attention(runs: &[FlowRun], now: chrono::DateTime<chrono::Utc>) -> Vec<Attention> {
    // `runs` is newest scheduled first: the first finished run seen is the deployment's last.
    let mut last_final: BTreeMap<String, &FlowRun> = BTreeMap::new();
    let mut late: BTreeMap<String, &FlowRun> = BTreeMap::new();
    for r in runs {
        let d = r.deployment.to_string();
        if r.state.is_terminal() {
            last_final.entry(d).or_insert(r);
        } else if r.state == StateType::Late {
            late.entry(d).or_insert(r);
        }
    }
    let mut out: Vec<Attention> = last_final
        .into_values()
        .filter(|r| matches!(r.state, StateType::Failed | StateType::Crashed))
        .map(|r| Attention {
            deployment: r.deployment.to_string(),
            what: format!("last run {}", format::state_label(r.state).to_lowercase()),
            run: RunRow::new(r, now),
        })
        .collect();
    out.extend(late.into_values().map(|r| Attention {
        deployment: r.deployment.to_string(),
        what: "late".into(),
        run: RunRow::new(r, now),
    }));
    out.sort_by(|a, b| b.run.scheduled.cmp(&a.run.scheduled));
    out
}

/// `GET /`.
pub(crate) async fn page(State(s): State<UiState>) -> Result<Response, UiError> {
    let now = s.ferry.now();
    let since = now - Duration::hours(24);
    let recent: Vec<FlowRun> = s
        .ferry
        .list_runs(&RunFilter {
            limit: RECENT_CAP,
            window: RunWindow::DueBy(now),
            ..RunFilter::default()
        })
        .await?
        .into_iter()
        .filter(|r| r.scheduled_time >= since)
        .collect();
    let capped = recent.len() >= RECENT_CAP;
    let mut by_state: HashMap<StateType, usize> = HashMap::new();
    for r in &recent {
        *by_state.entry(r.state).or_default() += 1;
    }
    let plus = if capped { "+" } else { "" };
    let counts = StateType::ALL
        .iter()
        .filter_map(|t| {
            by_state.get(t).map(|n| StateCount {
                state: format::state_label(*t),
                state_class: t.as_str(),
                count: format!("{n}{plus}"),
                href: format!("/runs?state={}", t.as_str()),
            })
        })
        .collect();
    let span = fit_span(
        now,
        recent
            .iter()
            .filter_map(|r| r.started_at)
            .filter(|t| *t >= now - Duration::hours(TIMELINE_HOURS)),
        Duration::minutes(15),
        Duration::hours(TIMELINE_HOURS),
    );
    let lo = now - span;
    let bars = recent
        .iter()
        .filter_map(|r| {
            let start = r
                .started_at
                .or_else(|| (r.state == StateType::Late).then_some(r.scheduled_time))?;
            Some(Bar {
                row: r.deployment.to_string(),
                start,
                end: r.ended_at,
                class: r.state.as_str(),
                title: format!(
                    "{} {} — {} {}",
                    r.deployment,
                    r.id,
                    format::state_label(r.state),
                    format::run_duration(r.started_at, r.ended_at, now)
                ),
                href: Some(format!("/runs/{}", r.id)),
            })
        })
        .collect();
    let agents = s
        .ferry
        .list_agents(None)
        .await?
        .into_iter()
        .map(|a| {
            let p = &a.agent.presence;
            AgentRow {
                name: p.name.clone(),
                queues: p
                    .queues
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                host: p.host.clone(),
                running: format!("{}/{}", p.running, p.limit),
                last_poll: format::relative(a.agent.last_poll, now),
                online: a.online,
                path: format!("{:?}", p.path).to_lowercase(),
            }
        })
        .collect();
    Ok(html(&OverviewPage {
        chrome: Chrome::new(&s, "overview"),
        total: format!("{}{plus}", recent.len()),
        counts,
        attention: needing_attention(&recent, now),
        queues: queues::rows(&s).await?,
        agents,
        timeline: Timeline::new(lo, now, now, bars),
        timeline_span: format::span(span.num_seconds().unsigned_abs()),
    }))
}
