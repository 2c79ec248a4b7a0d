//! The agent's endpoints: what `ferry agent start` (the API path, the default) asks of the
//! control plane — claim, heartbeat, start, release, finish, log lines, bundle download. Each
//! calls the same use case as an agent on the direct path (`Ferry::claim_batch`, `heartbeat`,
//! `start`, `finish`...), so the conditional writes, leases and limits are the same; and each
//! acts on the run as stored, for the agent named in the path only when it holds the run's
//! lease (a copy of the run sent by a client is never written).

use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use ferry_app::Heartbeat;
use ferry_core::ports::LogLine;
use ferry_core::state::RunEvent;
use ferry_core::{Deployment, FlowRun, QueueName, RunId};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::extract::{JsonBody, PathParams};
use crate::long_poll::{next_claimable_in, WaitEnd, MAX_WAIT_SECONDS, WAIT_HEADER};
use crate::{ApiError, ApiState, ErrorBody};

type ApiResult<T> = Result<T, ApiError>;

/// Longest agent name.
pub const MAX_AGENT_NAME: usize = 200;
/// Most queues one agent serves.
pub const MAX_QUEUES: usize = 100;
/// Most runs one claim request may ask for.
pub const MAX_CLAIM: u32 = 1_000;
/// Longest look-ahead of a claim, in seconds.
pub const MAX_PREFETCH_SECONDS: f64 = 3_600.0;
/// Most log lines in one request.
pub const MAX_LOG_LINES: usize = 1_000;
/// Shortest and longest lease an agent may ask for, in seconds.
pub const LEASE_SECONDS: std::ops::RangeInclusive<f64> = 3.0..=3_600.0;
/// Longest reason of a run's end, in bytes.
pub const MAX_REASON_BYTES: usize = 4_096;

/// Largest finish body: a result of [`ferry_core::result::MAX_RESULT_BYTES`] and the rest.
pub const MAX_FINISH_BODY_BYTES: usize = ferry_core::result::MAX_RESULT_BYTES + 64 * 1024;

/// The agent routes, to be nested under `/v1`.
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/agents/{name}/claims", post(claim))
        .route("/agents/{name}/runs/{id}/heartbeat", post(heartbeat))
        .route("/agents/{name}/runs/{id}/start", post(start))
        .route("/agents/{name}/runs/{id}/release", post(release))
        .route(
            "/agents/{name}/runs/{id}/finish",
            post(finish.layer(DefaultBodyLimit::max(MAX_FINISH_BODY_BYTES))),
        )
        .route("/agents/{name}/runs/{id}/logs", post(append_logs))
        .route("/bundles/{sha256}/download-url", get(bundle_download_url))
}

fn bad(field: &str, message: String) -> ApiError {
    ApiError::BadRequest {
        field: field.into(),
        message: format!("{field}: {message}"),
    }
}

/// The agent name of the path: 1 to [`MAX_AGENT_NAME`] bytes, no control characters.
fn agent_name(name: &str) -> ApiResult<&str> {
    if name.is_empty() || name.len() > MAX_AGENT_NAME {
        return Err(bad(
            "name",
            format!("an agent name has 1 to {MAX_AGENT_NAME} bytes"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(bad(
            "name",
            "an agent name has no control characters".into(),
        ));
    }
    Ok(name)
}

fn agent_and_run(name: &str, id: &str) -> ApiResult<(String, RunId)> {
    let name = agent_name(name)?.to_owned();
    let id = id
        .parse()
        .map_err(|e: ferry_core::ValidationError| ApiError::App(e.into()))?;
    Ok((name, id))
}

/// Body of `POST /v1/agents/{name}/claims`: one poll.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimBody {
    /// Queues the agent serves (served by queue priority; missing and paused ones skipped).
    pub queues: Vec<String>,
    /// Look-ahead in seconds (0 to 3600): runs due within it may be claimed ahead, if they
    /// take no limited slot.
    #[schema(minimum = 0, maximum = 3600)]
    pub prefetch_seconds: f64,
    /// Most runs to claim (1 to 1000): the agent's free capacity.
    #[schema(minimum = 1, maximum = 1000)]
    pub free: u32,
    /// How long a claim lasts without a heartbeat, in seconds (3 to 3600; default: the
    /// server's, 30).
    #[serde(default)]
    #[schema(minimum = 3, maximum = 3600)]
    pub lease_seconds: Option<f64>,
    /// How long a claim that finds nothing may wait for work before it answers, in seconds
    /// (0 to 20; default 0: answer at once). The wait ends early when a run is created through
    /// this server, a run comes within the look-ahead, or an agent here finishes a run; the
    /// claim then tries once more. The API Lambda grants no wait (see the
    /// `ferry-wait-seconds` header of the answer).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 20)]
    pub wait_seconds: Option<f64>,
}

/// The use cases with the lease an agent asked for (`None`: the server's).
fn with_lease(s: &ApiState, lease_seconds: Option<f64>) -> ApiResult<ferry_app::Ferry> {
    let Some(secs) = lease_seconds else {
        return Ok(s.ferry.clone());
    };
    if !LEASE_SECONDS.contains(&secs) {
        return Err(bad(
            "lease_seconds",
            format!(
                "must be between {} and {}",
                LEASE_SECONDS.start(),
                LEASE_SECONDS.end()
            ),
        ));
    }
    let settings = ferry_app::Settings {
        lease: chrono::Duration::milliseconds((secs * 1000.0) as i64),
        ..s.ferry.settings().clone()
    };
    Ok(s.ferry.clone().with_settings(settings))
}

/// A claimed run and the deployment it runs.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClaimedRun {
    /// The run as stored, Pending and leased to the agent.
    pub run: FlowRun,
    /// Its deployment.
    pub deployment: Deployment,
}

/// Claims for agent `name` what fits from its queues (the same claim loop as an agent on the
/// direct path: `Ferry::claim_batch`). A lost answer leaves the runs leased to the agent
/// until the lease expires; the reaper then crashes them (and retries them when the
/// deployment has retries). With `wait_seconds`, a claim that finds nothing waits for work
/// and tries once more (a long poll: see [`crate::long_poll`]).
#[utoipa::path(post, path = "/v1/agents/{name}/claims", params(("name" = String, Path)),
    request_body = ClaimBody,
    responses((status = 200, body = Vec<ClaimedRun>, headers(
                  ("ferry-wait-seconds" = f64, description = "The wait granted, in seconds: the one asked for, or 0 where the server answers at once (the API Lambda)"))),
              (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn claim(
    State(s): State<ApiState>,
    PathParams(name): PathParams<String>,
    JsonBody(body): JsonBody<ClaimBody>,
) -> ApiResult<impl IntoResponse> {
    let name = agent_name(&name)?;
    if body.queues.is_empty() || body.queues.len() > MAX_QUEUES {
        return Err(bad("queues", format!("give 1 to {MAX_QUEUES} work queues")));
    }
    let queues = body
        .queues
        .iter()
        .enumerate()
        .map(|(i, q)| QueueName::parse(&format!("queues[{i}]"), q))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::App(e.into()))?;
    if !(0.0..=MAX_PREFETCH_SECONDS).contains(&body.prefetch_seconds) {
        return Err(bad(
            "prefetch_seconds",
            format!("must be between 0 and {MAX_PREFETCH_SECONDS}"),
        ));
    }
    if !(1..=MAX_CLAIM).contains(&body.free) {
        return Err(bad("free", format!("must be between 1 and {MAX_CLAIM}")));
    }
    let asked = body.wait_seconds.unwrap_or(0.0);
    if !(0.0..=MAX_WAIT_SECONDS).contains(&asked) {
        return Err(bad(
            "wait_seconds",
            format!("must be between 0 and {MAX_WAIT_SECONDS} (how long a claim that finds nothing waits for work)"),
        ));
    }
    let prefetch = std::time::Duration::from_secs_f64(body.prefetch_seconds);
    let wait = s
        .claim_waits
        .granted(std::time::Duration::from_secs_f64(asked));
    let ferry = with_lease(&s, body.lease_seconds)?;
    // Taken before the claim: a run created between the empty claim and the wait still wakes it.
    let ticket = s.claim_waits.ticket();
    let mut claimed = ferry
        .claim_batch(name, &queues, prefetch, body.free as usize)
        .await?;
    if claimed.is_empty() && !wait.is_zero() {
        let deadline = tokio::time::Instant::now() + wait;
        let due = next_claimable_in(&ferry, &queues, prefetch, wait)
            .await?
            .map(|d| tokio::time::Instant::now() + d);
        if ticket.wait(due, deadline).await != WaitEnd::Closing {
            claimed = ferry
                .claim_batch(name, &queues, prefetch, body.free as usize)
                .await?;
        }
    }
    let claimed: Vec<ClaimedRun> = claimed
        .into_iter()
        .map(|(run, deployment)| ClaimedRun { run, deployment })
        .collect();
    Ok((
        [(WAIT_HEADER, wait.as_secs_f64().to_string())],
        Json(claimed),
    ))
}

/// What a heartbeat found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HeartbeatOutcome {
    /// The lease is renewed.
    Renewed,
    /// A user asked to cancel: stop the process, then finish with `cancelled`.
    CancelRequested,
    /// The run is not the agent's any more (reaped, cancelled while pending, another agent's).
    Lost,
}

/// Answer of a heartbeat.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatAnswer {
    /// What the heartbeat found.
    pub outcome: HeartbeatOutcome,
    /// The run as stored.
    pub run: FlowRun,
}

/// Body of a heartbeat (may be empty).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatBody {
    /// The lease's new length from now, in seconds (3 to 3600; default: the server's, 30).
    #[serde(default)]
    #[schema(minimum = 3, maximum = 3600)]
    pub lease_seconds: Option<f64>,
}

/// Renews agent `name`'s lease on run `id` (a no-op answered `lost` if it does not hold it).
#[utoipa::path(post, path = "/v1/agents/{name}/runs/{id}/heartbeat",
    params(("name" = String, Path), ("id" = String, Path)), request_body = HeartbeatBody,
    responses((status = 200, body = HeartbeatAnswer), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 413, body = ErrorBody)))]
pub(crate) async fn heartbeat(
    State(s): State<ApiState>,
    PathParams((name, id)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<HeartbeatBody>,
) -> ApiResult<Json<HeartbeatAnswer>> {
    let (name, id) = agent_and_run(&name, &id)?;
    let ferry = with_lease(&s, body.lease_seconds)?;
    let (outcome, run) = match ferry.heartbeat_held(id, &name).await? {
        Heartbeat::Renewed(r) => (HeartbeatOutcome::Renewed, r),
        Heartbeat::CancelRequested(r) => (HeartbeatOutcome::CancelRequested, r),
        Heartbeat::Lost(r) => (HeartbeatOutcome::Lost, r),
    };
    Ok(Json(HeartbeatAnswer { outcome, run: *run }))
}

/// Answer of a start.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StartAnswer {
    /// The run, Running; `null` when it was cancelled or reaped meanwhile, or is not the
    /// agent's: do not run it.
    pub run: Option<FlowRun>,
}

/// Marks run `id` Running for agent `name`. Idempotent: a run it already started is answered
/// as started.
#[utoipa::path(post, path = "/v1/agents/{name}/runs/{id}/start",
    params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = StartAnswer), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn start(
    State(s): State<ApiState>,
    PathParams((name, id)): PathParams<(String, String)>,
) -> ApiResult<Json<StartAnswer>> {
    let (name, id) = agent_and_run(&name, &id)?;
    Ok(Json(StartAnswer {
        run: s.ferry.start_held(id, &name).await?,
    }))
}

/// Gives run `id`, claimed by agent `name` and not started, back to its queue. A run the
/// agent does not hold is answered as it is, unchanged.
#[utoipa::path(post, path = "/v1/agents/{name}/runs/{id}/release",
    params(("name" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = FlowRun), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn release(
    State(s): State<ApiState>,
    PathParams((name, id)): PathParams<(String, String)>,
) -> ApiResult<Json<FlowRun>> {
    let (name, id) = agent_and_run(&name, &id)?;
    let run = s.ferry.release_held(id, &name).await?;
    // Back in its queue: a waiting claim may take it.
    s.claim_waits.wake_all();
    Ok(Json(run))
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RunEnd {
    /// The process exited 0.
    Completed {
        /// What a `file.py:function` flow returned (absent: nothing to store). Recorded with
        /// the Completed state: inline, or in the code store beyond 16 KiB; at most 4 MiB of
        /// JSON (see docs/results.md).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        result: Option<FlowResult>,
    },
    /// The process failed (non-zero exit, signal, timeout, bundle refused).
    Failed {
        /// Its exit code, if it exited.
        #[serde(default)]
        exit_code: Option<i32>,
        /// Why (the run's state message), at most 4096 bytes.
        reason: String,
    },
    /// The run could not carry on (the agent shut down before it finished).
    Crashed {
        /// Why, at most 4096 bytes.
        reason: String,
    },
    /// Stopped after a user's cancel.
    Cancelled,
}

/// A flow's return value, wrapped so that a returned `None` (`{"value": null}`) differs from
/// no result at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FlowResult {
    /// The JSON value.
    #[schema(value_type = Value)]
    pub value: serde_json::Value,
}

impl RunEnd {
    /// The run event this end records; a completed end's result is placed by
    /// [`ferry_app::Ferry::complete`], not here (the event gets none).
    pub fn into_event(self) -> RunEvent {
        match self {
            RunEnd::Completed { .. } => RunEvent::Complete { result: None },
            RunEnd::Failed { exit_code, reason } => RunEvent::Fail { exit_code, reason },
            RunEnd::Crashed { reason } => RunEvent::Crash { reason },
            RunEnd::Cancelled => RunEvent::ConfirmCancelled,
        }
    }

    /// The end a run event records, if it ends a run.
    pub fn from_event(event: RunEvent) -> Option<Self> {
        match event {
            RunEvent::Complete { .. } => Some(RunEnd::Completed { result: None }),
            RunEvent::Fail { exit_code, reason } => Some(RunEnd::Failed { exit_code, reason }),
            RunEvent::Crash { reason } => Some(RunEnd::Crashed { reason }),
            RunEvent::ConfirmCancelled => Some(RunEnd::Cancelled),
            _ => None,
        }
    }
}

/// Body of `POST /v1/agents/{name}/runs/{id}/finish`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishBody {
    /// How the run ended.
    pub end: RunEnd,
}

/// Records how run `id`, held by agent `name`, ended — and its retry, in the same
/// transaction. Idempotent: a run the agent no longer holds (finished by a first try whose
/// answer was lost, or reaped) is answered as it is, unchanged.
#[utoipa::path(post, path = "/v1/agents/{name}/runs/{id}/finish",
    params(("name" = String, Path), ("id" = String, Path)), request_body = FinishBody,
    responses((status = 200, body = FlowRun), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 413, body = ErrorBody)))]
pub(crate) async fn finish(
    State(s): State<ApiState>,
    PathParams((name, id)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<FinishBody>,
) -> ApiResult<Json<FlowRun>> {
    let (name, id) = agent_and_run(&name, &id)?;
    if let RunEnd::Failed { reason, .. } | RunEnd::Crashed { reason } = &body.end {
        if reason.len() > MAX_REASON_BYTES {
            return Err(bad(
                "end.reason",
                format!("at most {MAX_REASON_BYTES} bytes"),
            ));
        }
    }
    if let RunEnd::Completed { result } = body.end {
        let value = result.map(|r| r.value);
        if let Some(v) = &value {
            let bytes = ferry_core::result::canonical(v).len();
            if bytes > ferry_core::result::MAX_RESULT_BYTES {
                return Err(bad(
                    "end.result",
                    format!(
                        "{bytes} bytes of JSON, over the {} bytes a result may have: send no result",
                        ferry_core::result::MAX_RESULT_BYTES
                    ),
                ));
            }
        }
        let run = s.ferry.complete_held(id, &name, value).await?;
        // A concurrency slot is free: a waiting claim may take the run behind it.
        s.claim_waits.wake_all();
        return Ok(Json(run));
    }
    let run = s
        .ferry
        .finish_held(id, &name, body.end.into_event())
        .await?;
    // A slot is free, or a retry is scheduled: a waiting claim may take it.
    s.claim_waits.wake_all();
    Ok(Json(run))
}

/// Body of `POST /v1/agents/{name}/runs/{id}/logs`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogLines {
    /// Lines to append, in order (at most 1000).
    pub lines: Vec<LogLine>,
}

/// Appends lines to the log of run `id`, which agent `name` must hold (409 if not). A retried
/// request whose first try landed appends its lines twice.
#[utoipa::path(post, path = "/v1/agents/{name}/runs/{id}/logs",
    params(("name" = String, Path), ("id" = String, Path)), request_body = LogLines,
    responses((status = 204, description = "appended"), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 413, body = ErrorBody)))]
pub(crate) async fn append_logs(
    State(s): State<ApiState>,
    PathParams((name, id)): PathParams<(String, String)>,
    JsonBody(body): JsonBody<LogLines>,
) -> ApiResult<StatusCode> {
    let (name, id) = agent_and_run(&name, &id)?;
    if body.lines.len() > MAX_LOG_LINES {
        return Err(bad(
            "lines",
            format!("at most {MAX_LOG_LINES} lines per request"),
        ));
    }
    if !body.lines.is_empty() {
        s.ferry.append_logs_held(id, &name, &body.lines).await?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Where to download a bundle.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DownloadUrl {
    /// A direct download (a presigned S3 GET, valid 15 minutes); `null`: download it with
    /// `GET /v1/bundles/{sha256}`. Verify the bytes against the digest either way.
    pub url: Option<String>,
}

/// Where an agent downloads bundle `sha256`: on AWS a presigned S3 URL (a Lambda answer is
/// capped at 6 MB), on the embedded server through `GET /v1/bundles/{sha256}`.
#[utoipa::path(get, path = "/v1/bundles/{sha256}/download-url", params(("sha256" = String, Path)),
    responses((status = 200, body = DownloadUrl), (status = 400, body = ErrorBody)))]
pub(crate) async fn bundle_download_url(
    State(s): State<ApiState>,
    PathParams(sha256): PathParams<String>,
) -> ApiResult<Json<DownloadUrl>> {
    Ok(Json(DownloadUrl {
        url: s.ferry.bundle_download_url(&sha256).await?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_end_maps_to_its_event_and_back() {
        for end in [
            RunEnd::Completed { result: None },
            RunEnd::Failed {
                exit_code: Some(3),
                reason: "exit code 3".into(),
            },
            RunEnd::Crashed {
                reason: "gone".into(),
            },
            RunEnd::Cancelled,
        ] {
            assert_eq!(RunEnd::from_event(end.clone().into_event()), Some(end));
        }
        assert_eq!(RunEnd::from_event(RunEvent::Release), None);
    }

    #[test]
    fn agent_names_are_bounded_and_printable() {
        assert!(agent_name("host-12").is_ok());
        assert!(agent_name("").is_err());
        assert!(agent_name(&"a".repeat(MAX_AGENT_NAME + 1)).is_err());
        assert!(agent_name("a\nb").is_err());
    }
}
