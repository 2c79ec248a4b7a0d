//! Ferry's dashboard (docs/dashboard.md): server-rendered pages over the same use cases as
//! the `/v1` API and the CLI, as a plain axum [`Router`] that `ferry-api` merges beside `/v1`
//! — so `ferry server start`, `ferry dev` and the API Lambda all serve it. Templates
//! (`templates/`) and assets (`assets/`) are compiled into the binary; nothing is loaded
//! from elsewhere.

mod assets;
mod auth;
mod deployments;
mod error;
mod format;
mod overview;
mod queues;
mod runs;
mod timeline;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderName, HeaderValue};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use ferry_app::Ferry;

pub use auth::bearer_matches;

/// What the pages need.
#[derive(Clone)]
pub struct UiState {
    /// The use cases.
    pub ferry: Ferry,
    /// The server's token (`FERRY_API_TOKEN`): with one, every page needs a session (or the
    /// bearer header, as `ferry ui` sends it). `None`: no sign-in (loopback, or IAM in front).
    pub token: Option<Arc<str>>,
}

/// The dashboard's routes over `state`, to merge into a router of any state.
pub fn router<S: Clone + Send + Sync + 'static>(state: UiState) -> Router<S> {
    let pages = Router::new()
        .route("/", get(overview::page))
        .route("/deployments", get(deployments::list))
        .route("/deployments/{flow}/{name}", get(deployments::page))
        .route("/deployments/{flow}/{name}/run", post(deployments::run_now))
        .route("/deployments/{flow}/{name}/pause", post(deployments::pause))
        .route(
            "/deployments/{flow}/{name}/resume",
            post(deployments::resume),
        )
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::page))
        .route("/runs/{id}/live", get(runs::live))
        .route("/runs/{id}/result", get(runs::result))
        .route("/runs/{id}/cancel", post(runs::cancel))
        .route("/work-queues", get(queues::list))
        .route("/work-queues/{name}/pause", post(queues::pause))
        .route("/work-queues/{name}/resume", post(queues::resume))
        .route("/sign-out", post(auth::sign_out))
        .layer(from_fn_with_state(state.clone(), auth::require_session));
    Router::new()
        .merge(pages)
        .route("/sign-in", get(auth::sign_in_form).post(auth::sign_in))
        .route("/assets/{file}", get(assets::serve))
        .route("/favicon.ico", get(assets::favicon))
        .layer(from_fn(security_headers))
        .with_state(state)
}

/// A page for a path nothing serves (the fallback of the merged router, for browsers).
pub fn not_found_page(path: &str) -> Response {
    let mut res = error::UiError::App(ferry_app::AppError::NotFound {
        kind: "page",
        id: path.to_owned(),
    })
    .into_response();
    harden(res.headers_mut());
    res
}

/// Headers on every dashboard answer.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    harden(res.headers_mut());
    res
}

/// Nothing inline, nothing from elsewhere, no framing, no sniffing; pages are never cached
/// (assets set their own, immutable, caching).
fn harden(h: &mut axum::http::HeaderMap) {
    let mut set = |k: HeaderName, v: &'static str| {
        h.entry(k).or_insert(HeaderValue::from_static(v));
    };
    set(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    );
    set(header::CACHE_CONTROL, "no-store");
    set(header::REFERRER_POLICY, "same-origin");
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff");
}
