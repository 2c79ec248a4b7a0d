use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::{Mutex, OnceCell};

use crate::sigv4;

/// HTTP client of the Ferry API; finds the server through FERRY_API_URL and authenticates as
/// FERRY_API_AUTH says: `token` (the default) sends FERRY_API_TOKEN as a bearer token, `iam`
/// signs every request with SigV4 for API Gateway.
pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: Auth,
}

/// Default API address.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:4300";

enum Auth {
    None,
    Bearer(String),
    Iam(IamSigner),
}

impl Auth {
    fn from_env(mode: Option<&str>, token: Option<String>) -> Result<Self> {
        match (mode, token) {
            (None | Some("token"), None) => Ok(Self::None),
            (None | Some("token"), Some(t)) => Ok(Self::Bearer(t)),
            (Some("iam"), Some(_)) => bail!(
                "FERRY_API_AUTH=iam signs requests with AWS credentials, and FERRY_API_TOKEN is set too: \
                 unset FERRY_API_TOKEN, or unset FERRY_API_AUTH to use the token"
            ),
            (Some("iam"), None) => Ok(Self::Iam(IamSigner::default())),
            (Some(other), _) => bail!(
                "FERRY_API_AUTH={other:?} is not an authentication mode: use `token` (the default: \
                 FERRY_API_TOKEN as a bearer token) or `iam` (SigV4 with the standard AWS credentials)"
            ),
        }
    }
}

/// Signs with the credentials of the standard AWS configuration (environment, profile, SSO,
/// web identity, container or instance role), loaded on the first request. The region is the
/// one in the API's `execute-api` host name, else the configuration's.
#[derive(Default)]
struct IamSigner {
    source: OnceCell<(SharedCredentialsProvider, Option<String>)>,
    cached: Mutex<Option<Credentials>>,
}

/// Credentials that expire sooner than this are fetched again before signing.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

impl IamSigner {
    async fn source(&self) -> Result<&(SharedCredentialsProvider, Option<String>)> {
        self.source
            .get_or_try_init(|| async {
                let config = aws_config::load_from_env().await;
                let provider = config.credentials_provider().ok_or_else(|| {
                    anyhow!("FERRY_API_AUTH=iam: the AWS configuration has no credentials provider")
                })?;
                Ok((provider, config.region().map(|r| r.to_string())))
            })
            .await
    }

    async fn credentials(&self) -> Result<Credentials> {
        let (provider, _) = self.source().await?;
        let mut cached = self.cached.lock().await;
        let fresh = cached.as_ref().filter(|c| {
            c.expiry()
                .is_none_or(|at| at > SystemTime::now() + REFRESH_MARGIN)
        });
        if let Some(c) = fresh {
            return Ok(c.clone());
        }
        let c = provider.provide_credentials().await.context(
            "FERRY_API_AUTH=iam: no AWS credentials found (set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run `aws sso login`)",
        )?;
        *cached = Some(c.clone());
        Ok(c)
    }

    async fn region(&self, url: &reqwest::Url) -> Result<String> {
        if let Some(region) = url.host_str().and_then(sigv4::region_of_api_host) {
            return Ok(region.to_owned());
        }
        let (_, region) = self.source().await?;
        region.clone().ok_or_else(|| {
            anyhow!(
                "FERRY_API_AUTH=iam needs the API's region to sign for {url}: set AWS_REGION \
                 or `region` in your AWS profile"
            )
        })
    }

    async fn sign(&self, req: &mut reqwest::Request) -> Result<()> {
        let region = self.region(req.url()).await?;
        let creds = self.credentials().await?;
        let headers = req
            .headers()
            .iter()
            .map(|(name, value)| {
                value
                    .to_str()
                    .map(|v| (name.as_str(), v))
                    .with_context(|| format!("header {name} is not text and cannot be signed"))
            })
            .collect::<Result<Vec<_>>>()?;
        let signed = sigv4::sign(
            &sigv4::Request {
                method: req.method().as_str(),
                url: req.url().as_str(),
                headers: &headers,
                body: match req.body() {
                    None => Some(&[]),
                    Some(body) => body.as_bytes(),
                },
            },
            &creds,
            &region,
            SystemTime::now(),
        )?;
        for (name, value) in signed {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .with_context(|| format!("signed header name {name}"))?;
            let value = reqwest::header::HeaderValue::from_str(&value)
                .with_context(|| format!("value of the signed header {name}"))?;
            req.headers_mut().insert(name, value);
        }
        Ok(())
    }
}

impl Client {
    pub fn from_env() -> Result<Self> {
        Self::from_env_with(reqwest::Client::builder())
    }

    /// [`Client::from_env`] for `ferry ui`'s proxy: redirects are not followed, so that the
    /// browser gets them (and their `Location`) as the API sent them.
    pub fn from_env_for_proxy() -> Result<Self> {
        Self::from_env_with(reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()))
    }

    fn from_env_with(http: reqwest::ClientBuilder) -> Result<Self> {
        let base = match std::env::var("FERRY_API_URL") {
            Ok(v) if !v.trim().is_empty() => api_base(&v)?,
            _ => DEFAULT_API_URL.to_owned(),
        };
        let token = std::env::var("FERRY_API_TOKEN")
            .ok()
            .filter(|t| !t.is_empty());
        let mode = std::env::var("FERRY_API_AUTH")
            .ok()
            .filter(|m| !m.is_empty());
        let auth = Auth::from_env(mode.as_deref(), token)?;
        let http = http
            .timeout(std::time::Duration::from_secs(300))
            .build()
            .context("building the HTTP client")?;
        Ok(Self { http, base, auth })
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}/v1{path}", self.base));
        if let Auth::Bearer(t) = &self.auth {
            req = req.bearer_auth(t);
        }
        req
    }

    /// Sends an API request, signed when FERRY_API_AUTH=iam. The request is built first so
    /// that the signature covers exactly the URL, headers and body that go on the wire.
    async fn execute(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let mut req = req.build().context("building the API request")?;
        if let Auth::Iam(signer) = &self.auth {
            signer.sign(&mut req).await?;
        }
        self.http.execute(req).await.map_err(|e| {
            anyhow!(
                "cannot reach the Ferry API at {} ({e}): start it with `ferry server start` or set FERRY_API_URL",
                self.base
            )
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = self.execute(req).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let url = resp.url().clone();
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned));
        match message {
            Some(message) => Err(anyhow!("{message} (HTTP {})", status.as_u16())),
            // Not a Ferry error body: another server (or a proxy) answered.
            None => {
                Err(anyhow!(
                "{} {} answered HTTP {} without a Ferry error body{}: is FERRY_API_URL ({}) the \
                 Ferry API's address?",
                url.path(),
                url.host_str().map(|h| format!("on {h}")).unwrap_or_default(),
                status.as_u16(),
                excerpt(&text),
                self.base,
            ))
            }
        }
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self.send(self.request(Method::GET, path)).await?;
        resp.json().await.context("decoding the API response")
    }

    pub async fn send_json<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<(StatusCode, T)> {
        let resp = self.send(self.request(method, path).json(body)).await?;
        let status = resp.status();
        Ok((
            status,
            resp.json().await.context("decoding the API response")?,
        ))
    }

    /// `DELETE path`, for routes that answer without a body (204).
    pub async fn delete(&self, path: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, path)).await?;
        Ok(())
    }

    pub async fn exists(&self, path: &str) -> Result<bool> {
        let resp = self.execute(self.request(Method::HEAD, path)).await?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(anyhow!("HEAD {path} answered HTTP {}", s.as_u16())),
        }
    }

    /// Where requests go and how they are authenticated, in words (`ferry ui` prints it).
    pub fn auth_description(&self) -> String {
        let url = &self.base;
        match self.auth {
            Auth::None => format!("sending requests to {url} without credentials"),
            Auth::Bearer(_) => {
                format!("sending requests to {url} with FERRY_API_TOKEN as a bearer token")
            }
            Auth::Iam(_) => format!(
                "signing requests to {url} with your AWS credentials (SigV4, FERRY_API_AUTH=iam)"
            ),
        }
    }

    /// Loads what signing needs (FERRY_API_AUTH=iam: the AWS credentials and the API's region)
    /// now, so that a missing one is an error at start rather than on the first request.
    pub async fn check_auth(&self) -> Result<()> {
        if let Auth::Iam(signer) = &self.auth {
            let url = reqwest::Url::parse(&self.base)
                .with_context(|| format!("FERRY_API_URL={:?} is not a URL", self.base))?;
            signer.region(&url).await?;
            signer.credentials().await?;
        }
        Ok(())
    }

    /// `METHOD {FERRY_API_URL}{path_and_query}` with `headers` and `body`, for `ferry ui`'s
    /// proxy: any path (pages, assets, `/v1`), authenticated like every request — the bearer
    /// token replaces any `authorization` in `headers`, and SigV4 signs the URL, the headers and
    /// the body exactly as sent. The response whatever its status; an error only when the API
    /// cannot be reached or the request cannot be signed.
    pub async fn forward(
        &self,
        method: Method,
        path_and_query: &str,
        mut headers: reqwest::header::HeaderMap,
        body: Vec<u8>,
    ) -> Result<reqwest::Response> {
        headers.remove(reqwest::header::AUTHORIZATION);
        if !path_and_query.starts_with('/') {
            bail!("cannot forward {path_and_query:?}: not a path");
        }
        let mut req = self
            .http
            .request(method, format!("{}{path_and_query}", self.base))
            .headers(headers);
        if let Auth::Bearer(t) = &self.auth {
            req = req.bearer_auth(t);
        }
        if !body.is_empty() {
            req = req.body(body);
        }
        self.execute(req).await
    }

    /// Uploads to a presigned URL. Not the API: no bearer token, and no SigV4 signature on
    /// top of the one in the URL.
    pub async fn put_direct(
        &self,
        target: &ferry_core::ports::UploadTarget,
        bytes: Vec<u8>,
    ) -> Result<()> {
        let method = Method::from_bytes(target.method.as_bytes()).context("upload method")?;
        let mut req = self.http.request(method, &target.url).body(bytes);
        for (k, v) in &target.headers {
            req = req.header(k, v);
        }
        let resp = req.send().await.context("uploading the bundle")?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            return Err(anyhow!("bundle upload refused (HTTP {status}): {text}"));
        }
        Ok(())
    }

    /// The API's address (FERRY_API_URL without `/v1`).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `METHOD /v1{path}` with an optional JSON body, authenticated like every request; the
    /// response whatever its status (an error only when the API cannot be reached).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response> {
        let mut req = self.request(method, path);
        if let Some(b) = body {
            req = req.json(b);
        }
        self.execute(req).await
    }

    /// Downloads from a presigned URL. Not the API: no bearer token, no SigV4 signature.
    pub async fn get_direct(&self, url: &str) -> Result<Vec<u8>> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .context("downloading from the presigned URL")?;
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            return Err(anyhow!("download refused (HTTP {status}): {text}"));
        }
        Ok(resp.bytes().await.context("reading the download")?.to_vec())
    }

    pub async fn put_bytes(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.send(
            self.request(Method::PUT, path)
                .header("content-type", "application/gzip")
                .body(bytes),
        )
        .await?;
        Ok(())
    }
}

/// The API's base address from a FERRY_API_URL value: `http(s)://host[:port][/prefix]`, a
/// trailing `/` or `/v1` dropped (the client adds `/v1` to every route). A value without a
/// scheme is refused naming the fix.
fn api_base(value: &str) -> Result<String> {
    let value = value.trim();
    let lower = value.to_ascii_lowercase();
    if !(lower.starts_with("http://") || lower.starts_with("https://")) {
        bail!(
            "FERRY_API_URL={value:?} has no scheme: write it with http:// or https://, e.g. \
             FERRY_API_URL=http://{} (the default is {DEFAULT_API_URL})",
            if value.contains("://") {
                value
                    .split_once("://")
                    .map(|(_, rest)| rest)
                    .unwrap_or(value)
            } else {
                value
            }
            .trim_end_matches('/')
        );
    }
    let url = reqwest::Url::parse(value).map_err(|e| {
        anyhow!("FERRY_API_URL={value:?} is not a URL ({e}): write it like http://localhost:4300")
    })?;
    if url.host_str().is_none_or(str::is_empty) {
        bail!("FERRY_API_URL={value:?} names no host: write it like http://localhost:4300");
    }
    if url.query().is_some() || url.fragment().is_some() {
        bail!(
            "FERRY_API_URL={value:?} has a query or fragment: give the API's address only, \
             like http://localhost:4300"
        );
    }
    let mut base = value.trim_end_matches('/');
    if let Some(stripped) = base.strip_suffix("/v1") {
        base = stripped.trim_end_matches('/');
    }
    Ok(base.to_owned())
}

/// The start of a non-Ferry error body, for the message: `: <html>...`.
fn excerpt(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return String::new();
    }
    let cut: String = one_line.chars().take(120).collect();
    let more = if one_line.chars().count() > 120 {
        "…"
    } else {
        ""
    };
    format!(" ({cut}{more})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trailing_slash_or_v1_is_dropped_from_the_api_address() {
        for v in [
            "http://localhost:4300",
            "http://localhost:4300/",
            "http://localhost:4300/v1",
            "http://localhost:4300/v1/",
        ] {
            assert_eq!(api_base(v).unwrap(), "http://localhost:4300", "{v}");
        }
        assert_eq!(
            api_base("https://x.execute-api.eu-west-1.amazonaws.com/prod/v1").unwrap(),
            "https://x.execute-api.eu-west-1.amazonaws.com/prod"
        );
    }

    #[test]
    fn an_address_without_scheme_is_refused_naming_the_variable_and_the_fix() {
        let e = api_base("localhost:4300").unwrap_err().to_string();
        assert!(
            e.contains("FERRY_API_URL") && e.contains("http://localhost:4300"),
            "{e}"
        );
        let e = api_base("ftp://h:1").unwrap_err().to_string();
        assert!(e.contains("http://h:1"), "{e}");
    }

    fn err(mode: Option<&str>, token: Option<&str>) -> String {
        match Auth::from_env(mode, token.map(str::to_owned)) {
            Ok(_) => panic!("{mode:?} with token {token:?} should be refused"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn no_mode_or_token_mode_keeps_the_bearer_token() {
        for mode in [None, Some("token")] {
            assert!(matches!(
                Auth::from_env(mode, Some("t".into())).unwrap(),
                Auth::Bearer(t) if t == "t"
            ));
            assert!(matches!(Auth::from_env(mode, None).unwrap(), Auth::None));
        }
    }

    #[test]
    fn iam_mode_signs() {
        assert!(matches!(
            Auth::from_env(Some("iam"), None).unwrap(),
            Auth::Iam(_)
        ));
    }

    #[test]
    fn iam_mode_with_a_token_is_refused_naming_both_variables() {
        let e = err(Some("iam"), Some("t"));
        assert!(
            e.contains("FERRY_API_AUTH=iam") && e.contains("FERRY_API_TOKEN"),
            "{e}"
        );
    }

    #[test]
    fn an_unknown_mode_is_refused_naming_the_accepted_values() {
        let e = err(Some("IAM-ish"), None);
        assert!(
            e.contains("\"IAM-ish\"") && e.contains("`token`") && e.contains("`iam`"),
            "{e}"
        );
    }
}
