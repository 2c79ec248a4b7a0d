//! Who may see the dashboard (docs/dashboard.md, "Auth").
//!
//! With a server token every page needs a session: the `ferry_session` cookie, an expiry and
//! an HMAC of it keyed by the token (never the token itself, so a leaked cookie does not leak
//! the token, and rotating the token ends every session) — or the bearer header itself, which
//! is how `ferry ui` forwards requests. Every unsafe request also needs to come from the
//! dashboard's own origin (CSRF), whatever the auth.

use askama::Template;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::error::with_status;
use crate::format::{html, Chrome};
use crate::UiState;

/// The session cookie's name.
const COOKIE: &str = "ferry_session";
/// How long a session lasts.
const SESSION_SECS: i64 = 12 * 3600;
/// What the HMAC signs besides the expiry (so the MAC is useless anywhere else).
const PURPOSE: &str = "ferry-ui-session";

/// Whether an `Authorization` header value is `Bearer <token>` (scheme case-insensitive, RFC
/// 7235 §2.1), compared in constant time.
pub fn bearer_matches(value: Option<&HeaderValue>, token: &str) -> bool {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .is_some_and(|(_, given)| {
            bool::from(
                given
                    .trim_start_matches(' ')
                    .as_bytes()
                    .ct_eq(token.as_bytes()),
            )
        })
}

fn mac(token: &str, expires: i64) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut m = Hmac::<Sha256>::new_from_slice(token.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    m.update(format!("{PURPOSE}\0{expires}").as_bytes());
    m
}

/// A session value for `token` ending at `expires` (unix seconds): `<expires>.<hex mac>`.
fn session_value(token: &str, expires: i64) -> String {
    format!(
        "{expires}.{}",
        hex::encode(mac(token, expires).finalize().into_bytes())
    )
}

/// Whether `value` is a session `token` made that has not expired.
fn session_valid(value: &str, token: &str, now: i64) -> bool {
    let Some((exp, sig)) = value.split_once('.') else {
        return false;
    };
    let (Ok(expires), Ok(sig)) = (exp.parse::<i64>(), hex::decode(sig)) else {
        return false;
    };
    expires > now && mac(token, expires).verify_slice(&sig).is_ok()
}

/// The `ferry_session` cookie's value, if the request carries one.
fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// Whether an unsafe request comes from the dashboard's own pages: `Sec-Fetch-Site:
/// same-origin` (every current browser sends it), else an `Origin` equal to the request's own
/// scheme and host. A request with neither is refused: browsers send one of them on every
/// form POST.
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST))
    else {
        return false;
    };
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    let (Ok(origin), Ok(host)) = (origin.to_str(), host.to_str()) else {
        return false;
    };
    origin == format!("{scheme}://{host}")
}

/// Every dashboard route but sign-in and assets: a session (or the bearer token) when the
/// server has a token, and a same-origin request for every unsafe method.
pub(crate) async fn require_session(
    State(state): State<UiState>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    let bearer = state
        .token
        .as_deref()
        .is_some_and(|t| bearer_matches(headers.get(header::AUTHORIZATION), t));
    let signed_in = match &state.token {
        None => true,
        Some(t) => {
            bearer
                || session_cookie(headers)
                    .is_some_and(|v| session_valid(v, t, Utc::now().timestamp()))
        }
    };
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD);
    // A browser cannot add a bearer header to a cross-site request: it needs no origin check.
    if unsafe_method && !bearer && !same_origin(headers) {
        return refused(
            StatusCode::FORBIDDEN,
            "refused: this request did not come from the dashboard's own pages (Origin)",
        );
    }
    if signed_in {
        return next.run(req).await;
    }
    let path = req.uri().path();
    if req.method() == Method::GET && !path.ends_with("/live") {
        let next_path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let target = format!(
            "/sign-in?{}",
            serde_urlencoded::to_string([("next", next_path)]).unwrap_or_default()
        );
        return Redirect::to(&target).into_response();
    }
    refused(
        StatusCode::UNAUTHORIZED,
        "sign in first: this server needs its token (FERRY_API_TOKEN)",
    )
}

fn refused(status: StatusCode, message: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message,
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    chrome: Chrome,
    next: String,
    error: Option<String>,
    /// The server has no token: nothing to sign in to.
    open: bool,
}

#[derive(serde::Deserialize)]
pub(crate) struct NextQuery {
    #[serde(default)]
    next: Option<String>,
}

/// Where to go after signing in: a local path only (never `//host` or a URL: no open
/// redirect); `/` otherwise.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.into(),
        _ => "/".into(),
    }
}

/// `GET /sign-in`: the token form.
pub(crate) async fn sign_in_form(
    State(state): State<UiState>,
    Query(q): Query<NextQuery>,
) -> Response {
    html(&SignInPage {
        chrome: Chrome::bare(),
        next: local_path(q.next.as_deref()),
        error: None,
        open: state.token.is_none(),
    })
}

#[derive(serde::Deserialize)]
struct SignInForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /sign-in`: checks the token, sets the session cookie, goes to `next`.
pub(crate) async fn sign_in(
    State(state): State<UiState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if !same_origin(&headers) {
        return refused(
            StatusCode::FORBIDDEN,
            "refused: this request did not come from the dashboard's own pages (Origin)",
        );
    }
    let form: SignInForm = match serde_urlencoded::from_str(&body) {
        Ok(f) => f,
        Err(e) => {
            return crate::error::UiError::invalid("token", format!("not a form: {e}"))
                .into_response()
        }
    };
    let next = local_path(form.next.as_deref());
    let Some(token) = state.token.as_deref() else {
        return Redirect::to(&next).into_response();
    };
    if !bool::from(form.token.as_bytes().ct_eq(token.as_bytes())) {
        let page = SignInPage {
            chrome: Chrome::bare(),
            next,
            error: Some("token: wrong token; use the server's FERRY_API_TOKEN".into()),
            open: false,
        };
        return with_status(StatusCode::UNAUTHORIZED, &page);
    }
    let expires = Utc::now().timestamp() + SESSION_SECS;
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes() == b"https");
    let cookie = format!(
        "{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={SESSION_SECS}{}",
        session_value(token, expires),
        if secure { "; Secure" } else { "" }
    );
    ([(header::SET_COOKIE, cookie)], Redirect::to(&next)).into_response()
}

/// `POST /sign-out`: ends the session.
pub(crate) async fn sign_out() -> Response {
    let cookie = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/sign-in")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_holds_until_it_expires_and_only_for_its_token() {
        let v = session_value("s3cret", 2_000);
        assert!(session_valid(&v, "s3cret", 1_999));
        assert!(!session_valid(&v, "s3cret", 2_000), "expired");
        assert!(!session_valid(&v, "other", 1_000), "another token");
        // The expiry cannot be moved: it is signed.
        let forged = v.replacen("2000", "9000", 1);
        assert!(!session_valid(&forged, "s3cret", 1_000));
        assert!(!session_valid("garbage", "s3cret", 0));
        assert!(!v.contains("s3cret"));
    }

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_path(Some("/runs/abc?x=1")), "/runs/abc?x=1");
        for bad in ["//evil.example", "https://evil.example", "evil", "/\\evil"] {
            assert_eq!(local_path(Some(bad)), "/", "{bad}");
        }
        assert_eq!(local_path(None), "/");
    }

    #[test]
    fn bearer_matches_the_token_only() {
        let h = |v: &'static str| HeaderValue::from_static(v);
        assert!(bearer_matches(Some(&h("Bearer t0k")), "t0k"));
        assert!(bearer_matches(Some(&h("bearer t0k")), "t0k"));
        assert!(!bearer_matches(Some(&h("Bearer t0")), "t0k"));
        assert!(!bearer_matches(Some(&h("Basic t0k")), "t0k"));
        assert!(!bearer_matches(None, "t0k"));
    }
}
