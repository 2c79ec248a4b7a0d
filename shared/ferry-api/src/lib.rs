//! Ferry's JSON API under `/v1`, as a plain axum [`Router`]. `ferry server start` serves it on
//! loopback; the Lambda entry point wraps the same router unchanged.

mod auth;
mod error;
mod handlers;
mod json;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use ferry_app::Ferry;
use utoipa::OpenApi;

pub use error::{ApiError, ErrorBody};

/// Shared state of the handlers.
#[derive(Clone)]
pub struct ApiState {
    /// The use cases.
    pub ferry: Ferry,
    /// Bearer token every request must carry (`None` = no auth, loopback only).
    pub token: Option<Arc<str>>,
    /// Name of the backend, shown by `/v1/health`.
    pub backend: &'static str,
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
        handlers::apply_deployment,
        handlers::list_deployments,
        handlers::get_deployment,
        handlers::delete_deployment,
        handlers::pause_deployment,
        handlers::resume_deployment,
        handlers::create_run,
        handlers::list_runs,
        handlers::get_run,
        handlers::cancel_run,
        handlers::run_logs,
        handlers::put_bundle,
        handlers::head_bundle,
        handlers::bundle_upload_url,
        handlers::get_bundle,
    ),
    components(schemas(ErrorBody))
)]
pub struct ApiDoc;

/// The `/v1` router over `state`.
pub fn router(state: ApiState) -> Router {
    use handlers::*;
    let v1 = Router::new()
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .route("/work-queues", get(list_queues).post(create_queue))
        .route("/work-queues/{name}", get(get_queue).patch(update_queue))
        .route("/work-queues/{name}/preview", get(preview_queue))
        .route("/deployments", get(list_deployments).put(apply_deployment))
        .route(
            "/deployments/{flow}/{name}",
            get(get_deployment).delete(delete_deployment),
        )
        .route("/deployments/{flow}/{name}/pause", post(pause_deployment))
        .route("/deployments/{flow}/{name}/resume", post(resume_deployment))
        .route("/deployments/{flow}/{name}/runs", post(create_run))
        .route("/flow-runs", get(list_runs))
        .route("/flow-runs/{id}", get(get_run))
        .route("/flow-runs/{id}/cancel", post(cancel_run))
        .route("/flow-runs/{id}/logs", get(run_logs))
        .route(
            "/bundles/{sha256}",
            put(put_bundle).head(head_bundle).get(get_bundle),
        )
        .route("/bundles/{sha256}/upload-url", post(bundle_upload_url))
        .layer(DefaultBodyLimit::max(
            ferry_core::limits::MAX_BUNDLE_BYTES + 1024,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::require_token,
        ));
    Router::new()
        .nest("/v1", v1)
        .fallback(handlers::not_found)
        .with_state(state)
}
