//! The stylesheet and the script, compiled into the binary and served under `/assets/` with
//! a digest of their content in the URL, so browsers may cache them for good.

use std::sync::LazyLock;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

const APP_CSS: &str = include_str!("../assets/app.css");
const APP_JS: &str = include_str!("../assets/app.js");
const FAVICON: &str = include_str!("../assets/favicon.svg");

fn versioned(name: &str, body: &str) -> String {
    let digest = hex::encode(Sha256::digest(body.as_bytes()));
    format!("/assets/{name}?v={}", &digest[..12])
}

static CSS_URL: LazyLock<String> = LazyLock::new(|| versioned("app.css", APP_CSS));
static JS_URL: LazyLock<String> = LazyLock::new(|| versioned("app.js", APP_JS));

pub(crate) fn css_url() -> &'static str {
    CSS_URL.as_str()
}

pub(crate) fn js_url() -> &'static str {
    JS_URL.as_str()
}

/// `GET /favicon.ico`: browsers ask for it whatever the page links; the same icon.
pub(crate) async fn favicon() -> Response {
    serve(Path("favicon.svg".into())).await
}

/// `GET /assets/{file}`.
pub(crate) async fn serve(Path(file): Path<String>) -> Response {
    let (mime, body) = match file.as_str() {
        "app.css" => ("text/css; charset=utf-8", APP_CSS),
        "app.js" => ("text/javascript; charset=utf-8", APP_JS),
        "favicon.svg" => ("image/svg+xml", FAVICON),
        _ => {
            return (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "no such asset",
            )
                .into_response()
        }
    };
    (
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        body,
    )
        .into_response()
}
