//! Agents (`PUT /v1/agents/{name}` on each poll, `GET /v1/agents`) and deleting a work queue
//! (`DELETE /v1/work-queues/{name}`). The queue views that show the agents serving each queue
//! are answered by `GET /v1/work-queues[/{name}]` (handlers.rs).

use axum::extract::State;
use axum::Json;
use ferry_app::AgentStatus;
use ferry_core::agent::{AgentPresence, AgentRecord};
use ferry_core::ids::QueueName;
use ferry_core::WorkQueue;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::extract::{JsonBody, PathParams, QueryParams};
use crate::{ApiError, ApiState, ErrorBody};

type ApiResult<T> = Result<T, ApiError>;

/// Records an agent's poll: what it serves and runs now. Agents call it at most every 10 s;
/// the body's `name` must be the path's.
#[utoipa::path(put, path = "/v1/agents/{name}", params(("name" = String, Path)),
    request_body = AgentPresence,
    responses((status = 200, body = AgentRecord), (status = 400, body = ErrorBody),
              (status = 413, body = ErrorBody)))]
pub(crate) async fn put_agent(
    State(s): State<ApiState>,
    PathParams(name): PathParams<String>,
    JsonBody(presence): JsonBody<AgentPresence>,
) -> ApiResult<Json<AgentRecord>> {
    if presence.name != name {
        return Err(ApiError::BadRequest {
            field: "name".into(),
            message: format!(
                "name: the body names agent {:?} but the path names {name:?}: send the same name in both",
                presence.name
            ),
        });
    }
    Ok(Json(s.ferry.agent_polled(presence).await?))
}

/// Query of the agent list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentsQuery {
    /// Only agents serving this work queue.
    pub work_queue: Option<String>,
}

/// Agents seen in the last 7 days, by name, and whether each is online (polled within 60 s).
#[utoipa::path(get, path = "/v1/agents", params(AgentsQuery),
    responses((status = 200, body = Vec<AgentStatus>), (status = 400, body = ErrorBody)))]
pub(crate) async fn list_agents(
    State(s): State<ApiState>,
    QueryParams(q): QueryParams<AgentsQuery>,
) -> ApiResult<Json<Vec<AgentStatus>>> {
    let queue = q
        .work_queue
        .as_deref()
        .map(|w| QueueName::parse("work_queue", w))
        .transpose()
        .map_err(|e| ApiError::App(e.into()))?;
    Ok(Json(s.ferry.list_agents(queue.as_ref()).await?))
}

/// Deletes a work queue; refused (409) for `default`, a queue a deployment uses, or one with
/// waiting runs. Answers the deleted queue.
#[utoipa::path(delete, path = "/v1/work-queues/{name}", params(("name" = String, Path)),
    responses((status = 200, body = WorkQueue), (status = 400, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn delete_queue(
    State(s): State<ApiState>,
    PathParams(name): PathParams<String>,
) -> ApiResult<Json<WorkQueue>> {
    Ok(Json(s.ferry.delete_queue(&name).await?))
}
