//! Ferry's JSON API under `/v1`, as a plain axum [`Router`]. `ferry server start` serves it on
//! loopback; the Lambda entry point wraps the same router unchanged.

pub mod agent_api;
mod agents_api;
mod auth;
mod error;
mod extract;
mod handlers;
pub mod long_poll;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::handler::Handler;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Router;
use ferry_app::Ferry;
use ferry_core::limits::{MAX_BUNDLE_BYTES, MAX_DEPLOYMENT_BYTES};
use utoipa::openapi::{RefOr, Response as OaResponse};
use utoipa::OpenApi;

pub use error::{ApiError, ErrorBody};
pub use long_poll::ClaimWaits;

/// Largest JSON request body (every route but the bundle upload). The largest JSON document is
/// a deployment spec, capped at [`MAX_DEPLOYMENT_BYTES`] serialized compactly; this leaves room
/// for indentation and escapes. A longer body is refused with 413 once this many bytes were
/// read, so it is never buffered whole.
pub const MAX_JSON_BODY_BYTES: usize = 1024 * 1024;
const _: () = assert!(MAX_JSON_BODY_BYTES >= 3 * MAX_DEPLOYMENT_BYTES);

/// Shared state of the handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The use cases.
    pub ferry: Ferry,
    /// Bearer token every request must carry (`None` = no auth, loopback only).
    pub token: Option<Arc<str>>,
    /// The backend, shown by `/v1/health`.
    pub backend: Backend,
    /// How long a claim that finds nothing may wait for work (a long poll), and what wakes
    /// it: [`ClaimWaits::wait_in_process`] for `ferry server`, [`ClaimWaits::answer_at_once`]
    /// for the API Lambda (billed while it waits).
    pub claim_waits: ClaimWaits,
}

/// Where Ferry keeps its state: `FERRY_BACKEND`, parsed once at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// SQLite and files under `FERRY_HOME` (the default).
    #[default]
    Embedded,
    /// DynamoDB and S3 (`FERRY_TABLE`, `FERRY_BUCKET`).
    Aws,
}

impl Backend {
    /// The name `FERRY_BACKEND` and `/v1/health` use: `embedded` or `aws`.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Aws => "aws",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `FERRY_BACKEND` value that names no backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("FERRY_BACKEND={0:?}: use \"embedded\" (default) or \"aws\"")]
pub struct UnknownBackend(pub String);

impl std::str::FromStr for Backend {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "embedded" => Ok(Backend::Embedded),
            "aws" => Ok(Backend::Aws),
            other => Err(UnknownBackend(other.to_owned())),
        }
    }
}

/// The OpenAPI document, generated from the handlers and types.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Ferry API",
        description = "Ferry's registration and control API."
    ),
    paths(
        handlers::health,
        handlers::list_queues,
        handlers::create_queue,
        handlers::get_queue,
        handlers::update_queue,
        handlers::preview_queue,
        agents_api::delete_queue,
        agents_api::put_agent,
        agents_api::list_agents,
        handlers::apply_deployment,
        handlers::list_deployments,
        handlers::get_deployment,
        handlers::delete_deployment,
        handlers::pause_deployment,
        handlers::resume_deployment,
        handlers::create_run,
        handlers::list_infra,
        handlers::put_infra,
        handlers::get_infra,
        handlers::delete_infra,
        handlers::list_runs,
        handlers::get_run,
        handlers::cancel_run,
        handlers::run_logs,
        handlers::run_result,
        handlers::put_bundle,
        handlers::head_bundle,
        handlers::bundle_upload_url,
        handlers::get_bundle,
        agent_api::claim,
        agent_api::heartbeat,
        agent_api::start,
        agent_api::release,
        agent_api::finish,
        agent_api::append_logs,
        agent_api::bundle_download_url,
    ),
    components(schemas(ErrorBody, ferry_core::infra::InfraKind)),
    modifiers(&AnyRouteErrors)
)]
pub struct ApiDoc;

/// Answers every operation may give: 401 (a token is configured and the request lacks it) and
/// 503 (storage busy).
struct AnyRouteErrors;

impl utoipa::Modify for AnyRouteErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let error = |description: &str| -> RefOr<OaResponse> {
            utoipa::openapi::ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                        .build(),
                )
                .build()
                .into()
        };
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
            ]
            .into_iter()
            .flatten()
            {
                let responses = &mut op.responses.responses;
                responses.entry("401".into()).or_insert_with(|| {
                    error("the server has a token (FERRY_API_TOKEN) and the request lacks it")
                });
                responses
                    .entry("503".into())
                    .or_insert_with(|| error("storage is busy; retry shortly"));
            }
        }
    }
}

/// Gives every 4xx the router answers itself (405 for a method a path lacks, ...) the JSON
/// error shape; answers that already are JSON, HEAD answers (no body), the dashboard's pages
/// (HTML, whoever asks) and its answers to a browser pass unchanged.
async fn uniform_errors(req: Request, next: Next) -> Response {
    // The dashboard's pages answer HTML, errors included; only the API is JSON.
    let api = req.uri().path().starts_with("/v1/") || !accepts_html(req.headers());
    let head = req.method() == Method::HEAD || !api;
    let res = next.run(req).await;
    let status = res.status();
    let is_json_or_page = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(b"application/json") || v.starts_with(b"text/html")
    });
    if !status.is_client_error() || is_json_or_page || head {
        return res;
    }
    let (parts, body) = res.into_parts();
    let text = axum::body::to_bytes(body, 16 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default();
    let message = match (status, text.is_empty()) {
        (axum::http::StatusCode::METHOD_NOT_ALLOWED, _) => format!(
            "method not allowed here; allowed: {} (see GET /v1/openapi.json)",
            parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
        ),
        (_, false) => text,
        (_, true) => status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_owned(),
    };
    let mut out = ApiError::Status { status, message }.into_response();
    if let Some(allow) = parts.headers.get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

/// Whether a request prefers HTML (a browser navigating), judged by its `Accept` header.
pub(crate) fn accepts_html(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// The `/v1` router over `state`, and the dashboard (`ferry_ui`) beside it.
pub fn router(state: ApiState) -> Router {
    use handlers::*;
    let v1 = Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .route("/work-queues", get(list_queues).post(create_queue))
        .route(
            "/work-queues/{name}",
            get(get_queue)
                .patch(update_queue)
                .delete(agents_api::delete_queue),
        )
        .route("/agents", get(agents_api::list_agents))
        .route("/agents/{name}", put(agents_api::put_agent))
        .route("/work-queues/{name}/preview", get(preview_queue))
        .route("/deployments", get(list_deployments).put(apply_deployment))
        .route(
            "/deployments/{flow}/{name}",
            get(get_deployment).delete(delete_deployment),
        )
        .route("/deployments/{flow}/{name}/pause", post(pause_deployment))
        .route("/deployments/{flow}/{name}/resume", post(resume_deployment))
        .route("/deployments/{flow}/{name}/runs", post(create_run))
        .route("/infra", get(list_infra))
        .route(
            "/infra/{kind}/{name}",
            get(get_infra).put(put_infra).delete(delete_infra),
        )
        .route("/flow-runs", get(list_runs))
        .route("/flow-runs/{id}", get(get_run))
        .route("/flow-runs/{id}/cancel", post(cancel_run))
        .route("/flow-runs/{id}/logs", get(run_logs))
        .route("/flow-runs/{id}/result", get(run_result))
        .route(
            "/bundles/{sha256}",
            put(put_bundle.layer(DefaultBodyLimit::max(MAX_BUNDLE_BYTES)))
                .head(head_bundle)
                .get(get_bundle),
        )
        .route("/bundles/{sha256}/upload-url", post(bundle_upload_url))
        .merge(agent_api::routes())
        .layer(DefaultBodyLimit::max(MAX_JSON_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    let ui = ferry_ui::router(ferry_ui::UiState {
        ferry: state.ferry.clone(),
        token: state.token.clone(),
    });
    Router::new()
        .nest("/v1", v1)
        .merge(ui)
        .fallback(handlers::not_found)
        .with_state(state)
        .layer(axum::middleware::from_fn(uniform_errors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_parses_from_the_name_it_displays() {
        for b in [Backend::Embedded, Backend::Aws] {
            assert_eq!(b.to_string().parse::<Backend>(), Ok(b));
        }
        assert_eq!(Backend::Aws.as_str(), "aws");
        assert_eq!(Backend::Embedded.as_str(), "embedded");
    }

    #[test]
    fn an_unknown_backend_names_the_variable_and_the_choices() {
        let e = "cloud".parse::<Backend>().unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"FERRY_BACKEND="cloud": use "embedded" (default) or "aws""#
        );
    }
}
