//! `ferry ui`: the dashboard on localhost, for an API the browser cannot authenticate to by
//! itself — the IAM-protected API Gateway of the AWS backend, or a token-protected server
//! without signing in. A reverse proxy for every path (pages, `/assets`, `/v1`, the pages'
//! live endpoint) to FERRY_API_URL, each request authenticated as the CLI's are (SigV4 when
//! FERRY_API_AUTH=iam, the bearer FERRY_API_TOKEN, or nothing), like `kubectl proxy`.
//!
//! Whoever can send requests to the proxy acts with the user's credentials, so it listens on
//! a loopback address only and refuses what a web page elsewhere could make a browser send
//! it: a `Host` that is not the proxy's own (DNS rebinding) and an unsafe method without a
//! same-origin `Origin` or `Sec-Fetch-Site: same-origin` (cross-site request forgery). The
//! browser's cookies and `Authorization` never go further; only the method, the path and
//! query, `Content-Type`, `Accept`, `Accept-Language` and the body do.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::args::UiArgs;
use crate::client::Client;

/// The largest request body forwarded (API Gateway's limit on a request's payload); a larger
/// one is answered 413 and goes nowhere.
pub const BODY_LIMIT: usize = 10 * 1024 * 1024;

/// Request headers forwarded from the browser; every other one stays with the proxy.
const FORWARDED_REQUEST_HEADERS: [HeaderName; 3] = [
    header::CONTENT_TYPE,
    header::ACCEPT,
    header::ACCEPT_LANGUAGE,
];

/// Headers that belong to one connection (RFC 9110 §7.6.1), never passed on either way.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

struct Proxy {
    client: Client,
    guard: Guard,
    /// The API's origin (`scheme://host[:port]`), sent as `Origin` with the unsafe requests
    /// the proxy vouches for.
    upstream_origin: HeaderValue,
}

/// `ferry ui`.
pub async fn run(args: UiArgs) -> Result<()> {
    let ip: IpAddr = args
        .bind
        .parse()
        .with_context(|| format!("--bind {:?} is not an IP address", args.bind))?;
    if !ip.is_loopback() {
        bail!(
            "--bind {ip}: `ferry ui` listens on a loopback address only (127.0.0.1 or ::1): \
             whoever reaches it acts with your credentials"
        );
    }
    let client = Client::from_env_for_proxy()?;
    client.check_auth().await?;
    let upstream_origin = origin_of(client.base_url())?;
    let addr = SocketAddr::new(ip, args.port);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow!(
            "--port {}: cannot listen on {addr} ({e}): another program has it; \
                 choose another port with --port",
            args.port
        )
    })?;
    let local = listener.local_addr().context("the proxy's address")?;
    let port = local.port();
    // The bound address first: the one the messages name.
    let hosts = vec![local.to_string(), format!("localhost:{port}")];
    println!(
        "dashboard at http://{local} ({})",
        client.auth_description()
    );
    let state = Arc::new(Proxy {
        client,
        guard: Guard { hosts },
        upstream_origin,
    });
    let app = Router::new()
        .fallback(proxy)
        .layer(axum::extract::DefaultBodyLimit::disable())
        .with_state(state);
    axum::serve(listener, app)
        .with_graceful_shutdown(crate::server::shutdown_signal())
        .await
        .context("serving the dashboard proxy")
}

/// `scheme://host[:port]` of the API's address.
fn origin_of(base: &str) -> Result<HeaderValue> {
    let url = reqwest::Url::parse(base)
        .with_context(|| format!("FERRY_API_URL={base:?} is not a URL"))?;
    HeaderValue::from_str(&url.origin().ascii_serialization())
        .with_context(|| format!("FERRY_API_URL={base:?}: its origin is not a header value"))
}

async fn proxy(State(p): State<Arc<Proxy>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    if let Err(refusal) = p.guard.check_host(&parts.headers, &parts.uri) {
        return refuse(refusal);
    }
    let unsafe_method = !matches!(parts.method, Method::GET | Method::HEAD);
    if unsafe_method {
        if let Err(refusal) = p.guard.check_same_origin(&parts.headers) {
            return refuse(refusal);
        }
    }
    let body = match read_body(&parts.headers, body).await {
        Ok(b) => b,
        Err(refusal) => return refusal,
    };
    let mut headers = HeaderMap::new();
    for name in FORWARDED_REQUEST_HEADERS {
        for value in parts.headers.get_all(&name) {
            headers.append(name.clone(), value.clone());
        }
    }
    if unsafe_method {
        // Checked above: the request comes from the dashboard's own pages. Say so to the API
        // as a browser on its own origin would.
        headers.insert(header::ORIGIN, p.upstream_origin.clone());
        headers.insert(
            HeaderName::from_static("sec-fetch-site"),
            HeaderValue::from_static("same-origin"),
        );
    }
    let target = parts
        .uri
        .path_and_query()
        .map(|pq| pq.as_str())
        .unwrap_or("/");
    let upstream = match p
        .client
        .forward(parts.method.clone(), target, headers, body.to_vec())
        .await
    {
        Ok(r) => r,
        Err(e) => return p.unreachable(&e),
    };
    let status = upstream.status();
    let mut out_headers = HeaderMap::new();
    let listed = connection_listed(upstream.headers());
    for (name, value) in upstream.headers() {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || listed.iter().any(|l| l == n)
            // The browser's cookies for the proxy are never sent on: none to set either.
            || name == header::SET_COOKIE
            // Set again from the body below (kept for HEAD, which has none).
            || (name == header::CONTENT_LENGTH && parts.method != Method::HEAD)
        {
            continue;
        }
        out_headers.append(name.clone(), value.clone());
    }
    let bytes = match upstream.bytes().await {
        Ok(b) => b,
        Err(e) => return p.unreachable(&anyhow!(e).context("reading the API's answer")),
    };
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    *resp.headers_mut() = out_headers;
    resp
}

/// The request's body, at most [`BODY_LIMIT`] bytes: 413 when its declared length or what
/// arrives is more (nothing is forwarded then).
async fn read_body(headers: &HeaderMap, body: Body) -> Result<Bytes, Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(too_large());
    }
    // The only error reading a body from the listener can have besides a length over the
    // limit is the browser going away, which reads no answer anyway.
    axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| too_large())
}

/// Names listed in `Connection` (hop-by-hop by declaration), lower-cased.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

/// What a request must show to be forwarded.
struct Guard {
    /// `Host` values the proxy answers to: `127.0.0.1:PORT`, `localhost:PORT`, and the bound
    /// address with its port.
    hosts: Vec<String>,
}

impl Guard {
    /// Refuses a `Host` (or an absolute request target's authority) that is not the proxy's.
    fn check_host(&self, headers: &HeaderMap, uri: &axum::http::Uri) -> Result<(), String> {
        let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
        let ok = |h: &str| self.hosts.iter().any(|mine| mine.eq_ignore_ascii_case(h));
        let authority = uri.authority().map(|a| a.as_str());
        match (host, authority) {
            (Some(h), None) if ok(h) => Ok(()),
            (Some(h), Some(a)) if ok(h) && ok(a) => Ok(()),
            (None, Some(a)) if ok(a) => Ok(()),
            _ => Err(format!(
                "ferry ui refused this request: its Host is {}, not this proxy's address ({}).\n\
                 Open the dashboard at http://{} — requests for another host name are refused \
                 so that no other site can reach your credentials through it (DNS rebinding).\n",
                host.map(|h| format!("{h:?}"))
                    .unwrap_or_else(|| "missing".into()),
                self.hosts.join(" or "),
                self.hosts[0],
            )),
        }
    }

    /// Refuses an unsafe method unless the browser says it comes from the proxy's own pages:
    /// an `Origin` of `http://<one of the proxy's hosts>`, or without `Origin`,
    /// `Sec-Fetch-Site: same-origin`.
    fn check_same_origin(&self, headers: &HeaderMap) -> Result<(), String> {
        let origin = headers
            .get(header::ORIGIN)
            .map(|v| v.to_str().unwrap_or("?"));
        let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        let ok = match origin {
            Some(o) => o
                .strip_prefix("http://")
                .is_some_and(|h| self.hosts.iter().any(|mine| mine.eq_ignore_ascii_case(h))),
            None => fetch_site == Some("same-origin"),
        };
        if ok {
            return Ok(());
        }
        Err(format!(
            "ferry ui refused this request: a change (any method but GET and HEAD) is accepted from \
             the dashboard's own pages only, and this one comes from {}.\nUse the dashboard at \
             http://{}; a script sends `Origin: http://{}`.\n",
            match origin {
                Some(o) => format!("the origin {o:?}"),
                None => "no origin (no Origin header, no Sec-Fetch-Site: same-origin)".to_owned(),
            },
            self.hosts[0],
            self.hosts[0],
        ))
    }
}

impl Proxy {
    /// 502: the API could not be reached (or the request not signed).
    fn unreachable(&self, e: &anyhow::Error) -> Response {
        let body = format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>API unreachable — \
             ferry ui</title></head><body>\n<h1>The Ferry API cannot be reached</h1>\n\
             <p><code>ferry ui</code> forwards to FERRY_API_URL=<code>{}</code>: {}</p>\n\
             <p>Check FERRY_API_URL and that the API is up, then reload.</p>\n</body></html>\n",
            escape(self.client.base_url()),
            escape(&format!("{e:#}")),
        );
        (
            StatusCode::BAD_GATEWAY,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response()
    }
}

fn refuse(text: String) -> Response {
    (
        StatusCode::FORBIDDEN,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

fn too_large() -> Response {
    (
        StatusCode::PAYLOAD_TOO_LARGE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!(
            "ferry ui refused this request: its body is larger than {} MiB, the most it forwards.\n",
            BODY_LIMIT / (1024 * 1024)
        ),
    )
        .into_response()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> Guard {
        Guard {
            hosts: vec!["127.0.0.1:4400".into(), "localhost:4400".into()],
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn only_the_proxys_own_host_is_accepted() {
        let p = guard();
        let uri: axum::http::Uri = "/runs".parse().unwrap();
        for ok in ["127.0.0.1:4400", "localhost:4400", "LOCALHOST:4400"] {
            assert!(
                p.check_host(&headers(&[("host", ok)]), &uri).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "evil.example:4400",
            "127.0.0.1:4401",
            "127.0.0.1",
            "localhost",
            "127.0.0.1:4400.evil.example",
        ] {
            assert!(
                p.check_host(&headers(&[("host", bad)]), &uri).is_err(),
                "{bad}"
            );
        }
        assert!(p.check_host(&HeaderMap::new(), &uri).is_err(), "no Host");
        let absolute: axum::http::Uri = "http://evil.example/runs".parse().unwrap();
        assert!(p
            .check_host(&headers(&[("host", "127.0.0.1:4400")]), &absolute)
            .is_err());
    }

    #[test]
    fn an_unsafe_method_needs_a_same_origin_origin_or_fetch_site() {
        let p = guard();
        for ok in [
            headers(&[("origin", "http://127.0.0.1:4400")]),
            headers(&[("origin", "http://localhost:4400")]),
            headers(&[("sec-fetch-site", "same-origin")]),
        ] {
            assert!(p.check_same_origin(&ok).is_ok(), "{ok:?}");
        }
        for bad in [
            HeaderMap::new(),
            headers(&[("origin", "http://evil.example")]),
            headers(&[("origin", "null")]),
            headers(&[("origin", "https://127.0.0.1:4400")]),
            headers(&[("origin", "http://127.0.0.1:4400.evil.example")]),
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
            // A foreign Origin wins over a same-origin claim.
            headers(&[
                ("origin", "http://evil.example"),
                ("sec-fetch-site", "same-origin"),
            ]),
        ] {
            assert!(p.check_same_origin(&bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_body_up_to_the_limit_is_read_and_a_longer_one_is_refused_with_413() {
        let at_limit = read_body(&HeaderMap::new(), Body::from(vec![b'x'; BODY_LIMIT]))
            .await
            .unwrap();
        assert_eq!(at_limit.len(), BODY_LIMIT);
        // No declared length (a chunked body): the length that arrives counts.
        let over = read_body(&HeaderMap::new(), Body::from(vec![b'x'; BODY_LIMIT + 1]))
            .await
            .unwrap_err();
        assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
        let declared = headers(&[("content-length", "10485761")]);
        let over = read_body(&declared, Body::empty()).await.unwrap_err();
        assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn names_listed_in_connection_are_hop_by_hop() {
        let h = headers(&[("connection", "close, X-Hop ,keep-alive")]);
        assert_eq!(connection_listed(&h), ["close", "x-hop", "keep-alive"]);
    }
}
