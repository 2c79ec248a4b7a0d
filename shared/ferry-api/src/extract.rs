//! Extractors whose rejections are [`ApiError`]s, so a bad body, path or query string answers
//! with the JSON error shape (axum's own extractors answer `text/plain`).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::{ApiError, MAX_JSON_BODY_BYTES};

/// Reads a whole body within the route's [`axum::extract::DefaultBodyLimit`]; past it, 413
/// naming `limit` (reading stops at the limit, so a huge body is never buffered).
async fn body_within<S: Send + Sync>(
    req: Request,
    state: &S,
    limit: usize,
) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge { limit }
        } else {
            ApiError::BadRequest {
                field: "body".into(),
                message: format!("body: {}", e.body_text()),
            }
        }
    })
}

/// A JSON body (at most [`MAX_JSON_BODY_BYTES`]) whose parse errors become a 400 naming the
/// field at fault (its path, e.g. `schedules[0].cron`; `body` for the body as a whole) and
/// serde's message. An empty body reads as `{}`.
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_within(req, state, MAX_JSON_BODY_BYTES).await?;
        let bytes: &[u8] = if bytes.is_empty() { b"{}" } else { &bytes };
        let mut de = serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(&mut de)
            .map(JsonBody)
            .map_err(|e| {
                // Name the field at fault (`entrypoint`, `schedules[0]`), or `body` for the
                // body as a whole (not JSON, not an object).
                let field = match e.path().to_string() {
                    p if p == "." => "body".to_owned(),
                    p => p,
                };
                ApiError::BadRequest {
                    message: format!("invalid JSON body: {field}: {}", e.inner()),
                    field,
                }
            })
    }
}

/// A bundle body (at most [`ferry_core::limits::MAX_BUNDLE_BYTES`]).
pub(crate) struct BundleBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for BundleBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        body_within(req, state, ferry_core::limits::MAX_BUNDLE_BYTES)
            .await
            .map(BundleBody)
    }
}

/// A query string; a value that does not parse is a 400 naming the parameter.
pub(crate) struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(QueryParams)
            .map_err(|e| {
                let field = e.path().to_string();
                let field = if field == "." {
                    "query".to_owned()
                } else {
                    field
                };
                ApiError::BadRequest {
                    message: format!("{field}: {}", e.inner()),
                    field,
                }
            })
    }
}

/// Path segments; a segment that does not decode is a 400 naming the path.
pub(crate) struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathParams(p.0))
            .map_err(|e| ApiError::BadRequest {
                field: "path".into(),
                message: format!("path: {}", e.body_text()),
            })
    }
}
