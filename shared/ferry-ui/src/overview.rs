//! `/`: what happened in the last 24 hours and what needs attention — runs by state, late and
//! failing deployments, queue depths, agents and their last poll, a timeline of the last hours.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use ferry_core::ports::{RunFilter, RunWindow};
use ferry_core::{DeploymentId, FlowRun, StateType};

use crate::error::UiError;
use crate::format::{self, html, Chrome};
use crate::queues::{self, QueueRow};
use crate::runs::RunRow;
use crate::timeline::{fit_span, Bar, Timeline};
use crate::UiState;

/// Most hours the timeline shows.
const TIMELINE_HOURS: i64 = 6;

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

/// Most failed or late runs read to find the deployments needing attention.
const ATTENTION_READ: usize = 200;
/// Most deployments listed as needing attention.
const ATTENTION_ROWS: usize = 20;
/// Most runs the timeline reads.
const TIMELINE_READ: usize = 1_000;

/// Deployments whose last finished run failed or crashed in the last 24 h, and those with a
/// late run: the newest such run of each, newest first.
async fn needing_attention(
    s: &UiState,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<Attention>, UiError> {
    let upto = now + Duration::milliseconds(1);
    let failed = s
        .ferry
        .list_runs(&RunFilter {
            states: vec![StateType::Failed, StateType::Crashed],
            window: RunWindow::Between(since, upto),
            limit: ATTENTION_READ,
            ..RunFilter::default()
        })
        .await?;
    let mut seen: Vec<DeploymentId> = Vec::new();
    let mut out = Vec::new();
    for r in &failed {
        if seen.contains(&r.deployment) || seen.len() >= ATTENTION_ROWS {
            continue;
        }
        seen.push(r.deployment.clone());
        // Still failing: no later run of the deployment finished otherwise.
        let last_final = s
            .ferry
            .list_runs(&RunFilter {
                deployment: Some(r.deployment.clone()),
                window: RunWindow::Between(r.scheduled_time, upto),
                limit: 50,
                ..RunFilter::default()
            })
            .await?
            .into_iter()
            .find(|x| x.state.is_terminal());
        if let Some(last) =
            last_final.filter(|x| matches!(x.state, StateType::Failed | StateType::Crashed))
        {
            out.push(Attention {
                deployment: last.deployment.to_string(),
                what: format!(
                    "last run {}",
                    format::state_label(last.state).to_lowercase()
                ),
                run: RunRow::new(&last, now),
            });
        }
    }
    let late = s
        .ferry
        .list_runs(&RunFilter {
            states: vec![StateType::Late],
            window: RunWindow::DueBy(now),
            limit: ATTENTION_READ,
            ..RunFilter::default()
        })
        .await?;
    let mut late_seen: Vec<DeploymentId> = Vec::new();
    for r in late {
        if late_seen.contains(&r.deployment) || late_seen.len() >= ATTENTION_ROWS {
            continue;
        }
        late_seen.push(r.deployment.clone());
        out.push(Attention {
            deployment: r.deployment.to_string(),
            what: "late".into(),
            run: RunRow::new(&r, now),
        });
    }
    out.sort_by(|a, b| b.run.scheduled.cmp(&a.run.scheduled));
    Ok(out)
}

/// `GET /`.
pub(crate) async fn page(State(s): State<UiState>) -> Result<Response, UiError> {
    let now = s.ferry.now();
    let since = now - Duration::hours(24);
    let recent = s.ferry.count_recent_runs(Duration::hours(24)).await?;
    let counts = recent
        .counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(t, n)| StateCount {
            state: format::state_label(*t),
            state_class: t.as_str(),
            count: n.to_string(),
            href: format!("/runs?state={}", t.as_str()),
        })
        .collect();
    // The timeline: runs scheduled in the last hours (and an hour before, for runs that
    // started late), drawn from their start.
    let most = Duration::hours(TIMELINE_HOURS);
    let shown: Vec<FlowRun> = s
        .ferry
        .list_runs(&RunFilter {
            window: RunWindow::Between(
                now - most - Duration::hours(1),
                now + Duration::milliseconds(1),
            ),
            limit: TIMELINE_READ,
            ..RunFilter::default()
        })
        .await?;
    let span = fit_span(
        now,
        shown
            .iter()
            .filter_map(|r| r.started_at)
            .filter(|t| *t >= now - most),
        Duration::minutes(15),
        most,
    );
    let lo = now - span;
    let bars = shown
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
        total: recent.total().to_string(),
        counts,
        attention: needing_attention(&s, since, now).await?,
        queues: queues::rows(&s).await?,
        agents,
        timeline: Timeline::new(lo, now, now, bars),
        timeline_span: format::span(span.num_seconds().unsigned_abs()),
    }))
}
