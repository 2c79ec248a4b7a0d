use anyhow::{anyhow, Context, Result};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// HTTP client of the Ferry API; finds the server through FERRY_API_URL and FERRY_API_TOKEN.
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// Default API address.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:4300";

impl Client {
    pub fn from_env() -> Result<Self> {
        let base = std::env::var("FERRY_API_URL").unwrap_or_else(|_| DEFAULT_API_URL.into());
        let base = base.trim_end_matches('/').to_owned();
        let token = std::env::var("FERRY_API_TOKEN")
            .ok()
            .filter(|t| !t.is_empty());
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(300))
            .build()
            .context("building the HTTP client")?;
        Ok(Self { http, base, token })
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, format!("{}/v1{path}", self.base));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        req
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        let resp = req.send().await.map_err(|e| {
            anyhow!(
                "cannot reach the Ferry API at {} ({e}): start it with `ferry server start` or set FERRY_API_URL",
                self.base
            )
        })?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or(text);
        Err(anyhow!("{message} (HTTP {})", status.as_u16()))
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
        let resp = self
            .request(Method::HEAD, path)
            .send()
            .await
            .map_err(|e| anyhow!("cannot reach the Ferry API at {} ({e})", self.base))?;
        match resp.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s => Err(anyhow!("HEAD {path} answered HTTP {}", s.as_u16())),
        }
    }

    /// Uploads to a presigned URL (not the API: no bearer token).
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
