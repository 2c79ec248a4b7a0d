use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ferry_app::{
    ApplyOutcome, InfraOutcome, PreviewItem, QueuePatch, QueueView, RunRequest, RunView,
};
use ferry_core::ids::DeploymentId;
use ferry_core::infra::{InfraKind, InfraName, InfraProfile, InfraSpec};
use ferry_core::ports::{LogPage, RunFilter};
use ferry_core::{Deployment, DeploymentSpec, FlowRun, StateType, WorkQueue};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use crate::extract::{BundleBody, JsonBody, PathParams, QueryParams};
use crate::{ApiDoc, ApiError, ApiState, ErrorBody};

type ApiResult<T> = Result<T, ApiError>;

fn deployment_id(flow: &str, name: &str) -> ApiResult<DeploymentId> {
    DeploymentId::new(flow, name).map_err(|e| ApiError::App(e.into()))
}

/// `value` if within `min..=max`, else a 400 naming the query parameter and its range.
fn in_range(field: &str, value: i64, min: i64, max: i64) -> ApiResult<i64> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::BadRequest {
            field: field.into(),
            message: format!("{field}: must be between {min} and {max}, not {value}"),
        })
    }
}

/// Health of the API.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the API answers.
    pub status: String,
    /// Ferry version.
    pub version: String,
    /// `embedded` or `aws`.
    pub backend: String,
}

#[utoipa::path(get, path = "/v1/health", responses((status = 200, body = Health)))]
pub(crate) async fn health(State(s): State<ApiState>) -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        backend: s.backend.to_string(),
    })
}

pub(crate) async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The answer to a path no route serves: names the request and where the routes are listed,
/// and spots the usual cause of a doubled `/v1` (a FERRY_API_URL that ends with it).
pub(crate) async fn not_found(
    method: axum::http::Method,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    let path = uri.path();
    if !path.starts_with("/v1") && crate::accepts_html(&headers) {
        return ferry_ui::not_found_page(path);
    }
    api_not_found(&method, path).into_response()
}

fn api_not_found(method: &axum::http::Method, path: &str) -> ApiError {
    let hint = if path.starts_with("/v1/v1/") || path == "/v1/v1" {
        " (the path has /v1 twice: the API's address, e.g. FERRY_API_URL, must not end with /v1)"
    } else if !path.starts_with("/v1/") {
        " (every API route is under /v1; the dashboard's pages are at /, /deployments, /runs and /work-queues)"
    } else {
        ""
    };
    ApiError::Status {
        status: StatusCode::NOT_FOUND,
        message: format!(
            "no route for {method} {path}{hint}; the routes are listed by GET /v1/openapi.json"
        ),
    }
}

// ------------------------------------------------------------------ work queues

/// Body of `POST /v1/work-queues`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateQueue {
    /// Queue name.
    pub name: String,
    /// Concurrency limit.
    #[serde(default)]
    pub concurrency_limit: Option<u32>,
    /// Priority (1 = highest).
    #[serde(default)]
    pub priority: Option<u32>,
}

/// Every queue, with the online agents serving it and when it was last polled.
#[utoipa::path(get, path = "/v1/work-queues", responses((status = 200, body = Vec<QueueView>)))]
pub(crate) async fn list_queues(State(s): State<ApiState>) -> ApiResult<Json<Vec<QueueView>>> {
    Ok(Json(s.ferry.queue_views().await?))
}

#[utoipa::path(post, path = "/v1/work-queues", request_body = CreateQueue,
    responses((status = 201, body = WorkQueue), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn create_queue(
    State(s): State<ApiState>,
    JsonBody(req): JsonBody<CreateQueue>,
) -> ApiResult<(StatusCode, Json<WorkQueue>)> {
    let q = s
        .ferry
        .create_queue(&req.name, req.concurrency_limit, req.priority)
        .await?;
    Ok((StatusCode::CREATED, Json(q)))
}

/// A queue, with the online agents serving it and when it was last polled.
#[utoipa::path(get, path = "/v1/work-queues/{name}", params(("name" = String, Path)),
    responses((status = 200, body = QueueView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_queue(
    State(s): State<ApiState>,
    PathParams(name): PathParams<String>,
) -> ApiResult<Json<QueueView>> {
    Ok(Json(s.ferry.queue_view(&name).await?))
}

#[utoipa::path(patch, path = "/v1/work-queues/{name}", params(("name" = String, Path)), request_body = QueuePatch,
    responses((status = 200, body = WorkQueue), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn update_queue(
    State(s): State<ApiState>,
    PathParams(name): PathParams<String>,
    JsonBody(patch): JsonBody<QueuePatch>,
) -> ApiResult<Json<WorkQueue>> {
    let queue = s.ferry.update_queue(&name, patch).await?;
    // A resumed queue, or a higher limit, may have runs to claim now.
    s.claim_waits.wake_all();
    Ok(Json(queue))
}

/// Query of the queue preview.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    /// Look-ahead in hours (default 24, at most 2400).
    #[param(minimum = 1, maximum = 2400)]
    pub hours: Option<i64>,
}

#[utoipa::path(get, path = "/v1/work-queues/{name}/preview", params(("name" = String, Path), PreviewQuery),
    responses((status = 200, body = Vec<PreviewItem>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn preview_queue(
    State(s): State<ApiState>,
    PathParams(name): PathParams<String>,
    QueryParams(q): QueryParams<PreviewQuery>,
) -> ApiResult<Json<Vec<PreviewItem>>> {
    let hours = in_range("hours", q.hours.unwrap_or(24), 1, 2400)?;
    Ok(Json(s.ferry.preview_queue(&name, hours as u32).await?))
}

// ------------------------------------------------------------------ deployments

#[utoipa::path(put, path = "/v1/deployments", request_body = DeploymentSpec,
    responses((status = 200, body = ApplyOutcome, description = "updated or unchanged"),
              (status = 201, body = ApplyOutcome, description = "created"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn apply_deployment(
    State(s): State<ApiState>,
    JsonBody(spec): JsonBody<DeploymentSpec>,
) -> ApiResult<(StatusCode, Json<ApplyOutcome>)> {
    let out = s.ferry.apply_deployment(spec).await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out)))
}

#[utoipa::path(get, path = "/v1/deployments", responses((status = 200, body = Vec<Deployment>)))]
pub(crate) async fn list_deployments(
    State(s): State<ApiState>,
) -> ApiResult<Json<Vec<Deployment>>> {
    Ok(Json(s.ferry.list_deployments().await?))
}

#[utoipa::path(get, path = "/v1/deployments/{flow}/{name}",
    params(("flow" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Deployment), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_deployment(
    State(s): State<ApiState>,
    PathParams((flow, name)): PathParams<(String, String)>,
) -> ApiResult<Json<Deployment>> {
    Ok(Json(
        s.ferry
            .get_deployment(&deployment_id(&flow, &name)?)
            .await?,
    ))
}

/// Result of deleting a deployment.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Deleted {
    /// Waiting runs removed with it.
    pub removed_runs: usize,
}

#[utoipa::path(delete, path = "/v1/deployments/{flow}/{name}",
    params(("flow" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = Deleted), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub(crate) async fn delete_deployment(
    State(s): State<ApiState>,
    PathParams((flow, name)): PathParams<(String, String)>,
) -> ApiResult<Json<Deleted>> {
    let removed_runs = s
        .ferry
        .delete_deployment(&deployment_id(&flow, &name)?)
        .await?;
    Ok(Json(Deleted { removed_runs }))
}

#[utoipa::path(post, path = "/v1/deployments/{flow}/{name}/pause",
    params(("flow" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = ApplyOutcome), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub(crate) async fn pause_deployment(
    State(s): State<ApiState>,
    PathParams((flow, name)): PathParams<(String, String)>,
) -> ApiResult<Json<ApplyOutcome>> {
    let id = deployment_id(&flow, &name)?;
    Ok(Json(s.ferry.set_deployment_paused(&id, true).await?))
}

#[utoipa::path(post, path = "/v1/deployments/{flow}/{name}/resume",
    params(("flow" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = ApplyOutcome), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub(crate) async fn resume_deployment(
    State(s): State<ApiState>,
    PathParams((flow, name)): PathParams<(String, String)>,
) -> ApiResult<Json<ApplyOutcome>> {
    let id = deployment_id(&flow, &name)?;
    let outcome = s.ferry.set_deployment_paused(&id, false).await?;
    s.claim_waits.wake_all();
    Ok(Json(outcome))
}

#[utoipa::path(post, path = "/v1/deployments/{flow}/{name}/runs",
    params(("flow" = String, Path), ("name" = String, Path)), request_body = RunRequest,
    responses((status = 201, body = FlowRun, description = "created"),
              (status = 200, body = FlowRun, description = "the run an earlier identical request with this idempotency key created"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "the idempotency key was used with other parameters or start time"),
              (status = 413, body = ErrorBody)))]
pub(crate) async fn create_run(
    State(s): State<ApiState>,
    PathParams((flow, name)): PathParams<(String, String)>,
    JsonBody(req): JsonBody<RunRequest>,
) -> ApiResult<(StatusCode, Json<FlowRun>)> {
    let id = deployment_id(&flow, &name)?;
    let (run, created) = s.ferry.create_run(&id, req).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(run)))
}

// ------------------------------------------------------------------ infrastructure profiles

/// The profile named by the path `/v1/infra/{kind}/{name}`; a bad segment is a 400 naming it.
fn infra_name(kind: &str, name: &str) -> ApiResult<InfraName> {
    let kind = match kind {
        "ecs" => InfraKind::Ecs,
        "process" => InfraKind::Process,
        other => {
            return Err(ApiError::BadRequest {
                field: "kind".into(),
                message: format!(
                    "kind: {other:?} is not a profile kind: use /v1/infra/ecs/NAME (an ECS task per run) or /v1/infra/process/NAME (a local process per run)"
                ),
            })
        }
    };
    InfraName::new(kind, name).map_err(|e| ApiError::BadRequest {
        field: "name".into(),
        message: format!("name: {}", e.message),
    })
}

#[utoipa::path(put, path = "/v1/infra/{kind}/{name}",
    params(("kind" = InfraKind, Path), ("name" = String, Path)), request_body = InfraSpec,
    responses((status = 201, body = InfraOutcome, description = "created"),
              (status = 200, body = InfraOutcome, description = "replaced or unchanged"),
              (status = 400, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 413, body = ErrorBody)))]
pub(crate) async fn put_infra(
    State(s): State<ApiState>,
    PathParams((kind, name)): PathParams<(String, String)>,
    JsonBody(spec): JsonBody<InfraSpec>,
) -> ApiResult<(StatusCode, Json<InfraOutcome>)> {
    let out = s.ferry.put_infra(&infra_name(&kind, &name)?, spec).await?;
    let status = if out.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(out)))
}

#[utoipa::path(get, path = "/v1/infra", responses((status = 200, body = Vec<InfraProfile>)))]
pub(crate) async fn list_infra(State(s): State<ApiState>) -> ApiResult<Json<Vec<InfraProfile>>> {
    Ok(Json(s.ferry.list_infra().await?))
}

#[utoipa::path(get, path = "/v1/infra/{kind}/{name}",
    params(("kind" = InfraKind, Path), ("name" = String, Path)),
    responses((status = 200, body = InfraProfile), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_infra(
    State(s): State<ApiState>,
    PathParams((kind, name)): PathParams<(String, String)>,
) -> ApiResult<Json<InfraProfile>> {
    Ok(Json(s.ferry.get_infra(&infra_name(&kind, &name)?).await?))
}

#[utoipa::path(delete, path = "/v1/infra/{kind}/{name}",
    params(("kind" = InfraKind, Path), ("name" = String, Path)),
    responses((status = 204, description = "deleted"), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "deployments still use the profile (they are named)")))]
pub(crate) async fn delete_infra(
    State(s): State<ApiState>,
    PathParams((kind, name)): PathParams<(String, String)>,
) -> ApiResult<StatusCode> {
    s.ferry.delete_infra(&infra_name(&kind, &name)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ------------------------------------------------------------------ flow runs

/// Query of the run list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// `flow/name`.
    pub deployment: Option<String>,
    /// Comma-separated states.
    pub state: Option<String>,
    /// Queue name.
    pub work_queue: Option<String>,
    /// At most this many (default 50, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
    /// `all` (the default: newest scheduled first), `recent` (scheduled up to now, newest
    /// first: what happened) or `upcoming` (scheduled later, soonest first).
    pub view: Option<String>,
    /// The next page: the id of the last run of the previous page (same filters and view);
    /// the runs that follow it in the view's order. A page is an index range whichever page
    /// it is. A run that no longer exists is refused (400): start from the first page.
    pub before: Option<String>,
}

#[utoipa::path(get, path = "/v1/flow-runs", params(RunsQuery),
    responses((status = 200, body = Vec<FlowRun>), (status = 400, body = ErrorBody)))]
pub(crate) async fn list_runs(
    State(s): State<ApiState>,
    QueryParams(q): QueryParams<RunsQuery>,
) -> ApiResult<Json<Vec<FlowRun>>> {
    let deployment = q
        .deployment
        .as_deref()
        .map(str::parse::<DeploymentId>)
        .transpose()
        .map_err(|e| ApiError::App(e.into()))?;
    let mut states = Vec::new();
    for part in q
        .state
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|p| !p.is_empty())
    {
        states.push(
            part.parse::<StateType>()
                .map_err(|m| ApiError::BadRequest {
                    field: "state".into(),
                    message: format!("state: {m}"),
                })?,
        );
    }
    let limit = in_range("limit", q.limit.unwrap_or(50), 1, 10_000)? as usize;
    let view = q
        .view
        .as_deref()
        .map(str::parse::<RunView>)
        .transpose()
        .map_err(|m| ApiError::BadRequest {
            field: "view".into(),
            message: format!("view: {m}"),
        })?
        .unwrap_or_default();
    let before = q
        .before
        .as_deref()
        .map(|b| {
            b.parse::<ferry_core::RunId>()
                .map_err(|_| ApiError::BadRequest {
                    field: "before".into(),
                    message: format!(
                        "before: {b:?} is not a flow run id (the `id` of the last run of the previous page)"
                    ),
                })
        })
        .transpose()?;
    let filter = RunFilter {
        deployment,
        states,
        work_queue: q.work_queue,
        limit,
        ..RunFilter::default()
    };
    if before.is_none() {
        return Ok(Json(s.ferry.list_runs_view(filter, view).await?));
    }
    Ok(Json(
        s.ferry.list_runs_page(filter, view, before).await?.runs,
    ))
}

#[utoipa::path(get, path = "/v1/flow-runs/{id}", params(("id" = String, Path)),
    responses((status = 200, body = FlowRun), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_run(
    State(s): State<ApiState>,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<FlowRun>> {
    Ok(Json(
        s.ferry.get_run(s.ferry.resolve_run_id(&id).await?).await?,
    ))
}

#[utoipa::path(post, path = "/v1/flow-runs/{id}/cancel", params(("id" = String, Path)),
    responses((status = 200, body = FlowRun), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub(crate) async fn cancel_run(
    State(s): State<ApiState>,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<FlowRun>> {
    Ok(Json(
        s.ferry
            .cancel_run(s.ferry.resolve_run_id(&id).await?)
            .await?,
    ))
}

/// Query of the log endpoint.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// First line number to return (0-based).
    #[param(minimum = 0)]
    pub offset: Option<u64>,
    /// At most this many lines (default 1000, at most 10000).
    #[param(minimum = 1, maximum = 10000)]
    pub limit: Option<i64>,
}

#[utoipa::path(get, path = "/v1/flow-runs/{id}/logs", params(("id" = String, Path), LogsQuery),
    responses((status = 200, body = LogPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn run_logs(
    State(s): State<ApiState>,
    PathParams(id): PathParams<String>,
    QueryParams(q): QueryParams<LogsQuery>,
) -> ApiResult<Json<LogPage>> {
    let limit = in_range("limit", q.limit.unwrap_or(1000), 1, 10_000)? as usize;
    Ok(Json(
        s.ferry
            .run_logs(
                s.ferry.resolve_run_id(&id).await?,
                q.offset.unwrap_or(0),
                limit,
            )
            .await?,
    ))
}

/// What run `id`'s flow returned (a `file.py:function` flow's JSON-serialisable return value,
/// `null` for `None`), as stored with its Completed state. 404 names why there is none: not
/// finished, not completed, an executable flow, or a value that was not JSON-serialisable or
/// over the 4 MiB cap (docs/results.md).
#[utoipa::path(get, path = "/v1/flow-runs/{id}/result", params(("id" = String, Path)),
    responses((status = 200, body = serde_json::Value, description = "the value the flow returned"),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn run_result(
    State(s): State<ApiState>,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let id = s.ferry.resolve_run_id(&id).await?;
    Ok(Json(s.ferry.run_result(id).await?))
}

// ------------------------------------------------------------------ bundles

/// Result of a bundle upload.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BundleStored {
    /// Digest.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

#[utoipa::path(put, path = "/v1/bundles/{sha256}", params(("sha256" = String, Path)),
    request_body(content = BundleBytes, content_type = "application/gzip"),
    responses((status = 201, body = BundleStored), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn put_bundle(
    State(s): State<ApiState>,
    PathParams(sha256): PathParams<String>,
    BundleBody(body): BundleBody,
) -> ApiResult<(StatusCode, Json<BundleStored>)> {
    s.ferry.put_bundle(&sha256, &body).await?;
    Ok((
        StatusCode::CREATED,
        Json(BundleStored {
            sha256,
            size: body.len() as u64,
        }),
    ))
}

/// A bundle: the gzip-compressed tar `ferry deployment build` packs, as raw bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct BundleBytes(#[allow(dead_code)] Vec<u8>);

/// Where to upload a bundle.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UploadUrl {
    /// A direct upload (presigned S3 PUT); `null`: upload with `PUT /v1/bundles/{sha256}`.
    pub target: Option<ferry_core::ports::UploadTarget>,
}

#[utoipa::path(post, path = "/v1/bundles/{sha256}/upload-url", params(("sha256" = String, Path)),
    responses((status = 200, body = UploadUrl), (status = 400, body = ErrorBody)))]
pub(crate) async fn bundle_upload_url(
    State(s): State<ApiState>,
    PathParams(sha256): PathParams<String>,
) -> ApiResult<Json<UploadUrl>> {
    Ok(Json(UploadUrl {
        target: s.ferry.bundle_upload_target(&sha256).await?,
    }))
}

#[utoipa::path(head, path = "/v1/bundles/{sha256}", params(("sha256" = String, Path)),
    responses((status = 200, description = "stored"), (status = 400, description = "a path segment that does not decode"),
              (status = 404, description = "not stored")))]
pub(crate) async fn head_bundle(
    State(s): State<ApiState>,
    PathParams(sha256): PathParams<String>,
) -> ApiResult<StatusCode> {
    Ok(if s.ferry.has_bundle(&sha256).await? {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    })
}

#[utoipa::path(get, path = "/v1/bundles/{sha256}", params(("sha256" = String, Path)),
    responses((status = 200, body = BundleBytes, content_type = "application/gzip"), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn get_bundle(
    State(s): State<ApiState>,
    PathParams(sha256): PathParams<String>,
) -> ApiResult<Response> {
    let bytes = s.ferry.get_bundle(&sha256).await?;
    Ok(([(header::CONTENT_TYPE, "application/gzip")], bytes).into_response())
}
