//! The agent's control plane over the `/v1` API (`ferry agent start`'s default path): the
//! HTTP adapter of `ferry_agent::ControlPlane`. One request per poll (`POST
//! /v1/agents/{name}/claims`), one per heartbeat, start, finish and log batch; the server runs
//! the same use cases as an agent with direct access. Authentication is the CLI's
//! ([`Client`]: FERRY_API_TOKEN, or SigV4 with FERRY_API_AUTH=iam).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_agent::{ClaimRequest, ControlPlane, PlaneError};
use ferry_api::agent_api::{
    ClaimBody, ClaimedRun, DownloadUrl, FinishBody, FlowResult, HeartbeatAnswer, HeartbeatBody,
    HeartbeatOutcome, LogLines, RunEnd, StartAnswer, MAX_LOG_LINES,
};
use ferry_api::long_poll::WAIT_HEADER;
use ferry_app::Heartbeat;
use ferry_core::agent::{AgentPath, AgentPresence};
use ferry_core::digest::BundleDigest;
use ferry_core::ports::LogLine;
use ferry_core::state::RunEvent;
use ferry_core::{Deployment, FlowRun};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

use crate::client::Client;

/// Longest wait for one answer of the API.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Tries of a run write (heartbeat, start, release, finish) that found the API unreachable or
/// busy; the server makes each of them safe to repeat.
const WRITE_TRIES: u32 = 5;

/// Largest log request body the adapter sends (the API takes 1 MiB).
const MAX_LOG_BODY_BYTES: usize = 512 * 1024;

/// The control plane through the API at FERRY_API_URL.
pub struct ApiPlane {
    client: Client,
    agent: String,
    lease: Duration,
    /// How long a claim that finds nothing asks the server to wait (0: plain polling).
    long_poll: Duration,
    /// Whether the server granted the last claim a wait (the API Lambda answers at once).
    server_waits: AtomicBool,
    /// Whether the server refused `wait_seconds` (a server from before long polls).
    wait_refused: AtomicBool,
}

impl ApiPlane {
    /// The API client `client` acting for the agent named `agent`, whose claims last `lease`
    /// without a heartbeat and wait up to `long_poll` for work (`--long-poll`; zero: none).
    pub fn new(client: Client, agent: String, lease: Duration, long_poll: Duration) -> Self {
        Self {
            client,
            agent,
            lease,
            long_poll,
            server_waits: AtomicBool::new(!long_poll.is_zero()),
            wait_refused: AtomicBool::new(false),
        }
    }

    /// The API's address.
    pub fn url(&self) -> &str {
        self.client.base_url()
    }

    /// `GET /v1/health`: the API answers and takes this agent's credentials.
    pub async fn health(&self) -> Result<serde_json::Value, PlaneError> {
        self.request(Method::GET, "/health", None).await
    }

    fn run_path(&self, run: &FlowRun, what: &str) -> String {
        format!(
            "/agents/{}/runs/{}/{what}",
            path_segment(&self.agent),
            run.id
        )
    }

    /// One request; its answer decoded, or the error sorted by what the agent should do.
    async fn request<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, PlaneError> {
        let resp = self.send(method, path, body).await?;
        resp.json()
            .await
            .map_err(|e| PlaneError::Unavailable(format!("decoding the answer to {path}: {e}")))
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, PlaneError> {
        self.send_within(REQUEST_TIMEOUT, method, path, body).await
    }

    /// [`ApiPlane::send`] waiting up to `timeout` for the answer.
    async fn send_within(
        &self,
        timeout: Duration,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, PlaneError> {
        let url = self.client.base_url();
        let resp = tokio::time::timeout(timeout, self.client.call(method, path, body.as_ref()))
            .await
            .map_err(|_| {
                PlaneError::Unavailable(format!(
                    "the Ferry API at {url} did not answer within {}s",
                    timeout.as_secs()
                ))
            })?
            .map_err(|e| PlaneError::Unavailable(format!("{e:#}")))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str()).map(str::to_owned))
            .unwrap_or(text);
        let message = format!("{message} (HTTP {} from {url}/v1{path})", status.as_u16());
        Err(match status {
            StatusCode::UNAUTHORIZED => PlaneError::Refused(format!(
                "the Ferry API at {url} refused the agent's credentials: set FERRY_API_TOKEN to the server's token ({message})"
            )),
            StatusCode::FORBIDDEN => PlaneError::Refused(format!(
                "the Ferry API at {url} refused the agent's credentials: with FERRY_API_AUTH=iam the AWS identity needs execute-api:Invoke on the API; otherwise set FERRY_API_TOKEN ({message})"
            )),
            StatusCode::NOT_FOUND => PlaneError::NotFound(message),
            s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                PlaneError::Unavailable(message)
            }
            _ => PlaneError::Refused(message),
        })
    }

    /// `request`, tried again (with a growing pause) while the API is unreachable or busy.
    /// Only for the run writes the server makes safe to repeat.
    async fn retried<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, PlaneError> {
        let mut tries = 0;
        loop {
            match self.request(Method::POST, path, body.clone()).await {
                Err(PlaneError::Unavailable(m)) if tries + 1 < WRITE_TRIES => {
                    let pause = Duration::from_millis(250 * 2u64.pow(tries));
                    tracing::warn!("{m}; trying again in {:.1}s", pause.as_secs_f64());
                    tokio::time::sleep(pause).await;
                    tries += 1;
                }
                other => return other,
            }
        }
    }
}

impl ApiPlane {
    /// Records whether the server grants long polls (its [`WAIT_HEADER`]); says once when it
    /// does not (the API Lambda), as the agent then polls every `--poll-interval`.
    fn note_granted_wait(&self, resp: &reqwest::Response) {
        let granted = resp
            .headers()
            .get(WAIT_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|secs| secs > 0.0);
        if self.server_waits.swap(granted, Ordering::Relaxed) && !granted {
            tracing::info!(
                "the Ferry API at {} answers claims at once (no long poll: the API Lambda); polling every --poll-interval",
                self.client.base_url()
            );
        }
    }
}

/// `s` as one URL path segment (everything but unreserved characters percent-encoded).
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `lines` cut into request-sized batches: at most [`MAX_LOG_LINES`] lines and about
/// [`MAX_LOG_BODY_BYTES`] each (a single line is never cut: it is at most 64 KiB).
fn log_batches(lines: &[LogLine]) -> Vec<&[LogLine]> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, l) in lines.iter().enumerate() {
        let size = l.line.len() + 64;
        if i > start && (i - start >= MAX_LOG_LINES || bytes + size > MAX_LOG_BODY_BYTES) {
            batches.push(&lines[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < lines.len() {
        batches.push(&lines[start..]);
    }
    batches
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, PlaneError> {
    serde_json::to_value(v).map_err(|e| PlaneError::Refused(format!("encoding the request: {e}")))
}

#[async_trait]
impl ControlPlane for ApiPlane {
    fn path(&self) -> AgentPath {
        AgentPath::Api
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn long_polls(&self) -> bool {
        self.server_waits.load(Ordering::Relaxed)
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<(FlowRun, Deployment)>, PlaneError> {
        // Not retried: a claim whose answer was lost holds its runs until their leases expire.
        let long_poll = if self.wait_refused.load(Ordering::Relaxed) {
            Duration::ZERO
        } else {
            self.long_poll
        };
        let body = ClaimBody {
            queues: req.queues.iter().map(|q| q.to_string()).collect(),
            prefetch_seconds: req.prefetch.as_secs_f64(),
            free: u32::try_from(req.free).unwrap_or(u32::MAX).min(1000),
            lease_seconds: Some(self.lease.as_secs_f64()),
            wait_seconds: (!long_poll.is_zero()).then_some(long_poll.as_secs_f64()),
        };
        let path = format!("/agents/{}/claims", path_segment(&req.agent));
        // The answer of a long poll comes after its wait.
        let sent = self
            .send_within(
                long_poll + REQUEST_TIMEOUT,
                Method::POST,
                &path,
                Some(to_json(&body)?),
            )
            .await;
        let resp = match sent {
            // A server from before long polls refuses the unknown field (nothing was claimed):
            // poll it the old way from now on.
            Err(PlaneError::Refused(why))
                if !long_poll.is_zero() && why.contains("wait_seconds") =>
            {
                self.wait_refused.store(true, Ordering::Relaxed);
                self.server_waits.store(false, Ordering::Relaxed);
                tracing::warn!(
                    "the Ferry API at {} does not take long polls ({why}): polling every --poll-interval; upgrade the server, or pass --long-poll 0",
                    self.client.base_url()
                );
                return Ok(Vec::new());
            }
            other => other?,
        };
        if !long_poll.is_zero() {
            self.note_granted_wait(&resp);
        }
        let claimed: Vec<ClaimedRun> = resp
            .json()
            .await
            .map_err(|e| PlaneError::Unavailable(format!("decoding the answer to {path}: {e}")))?;
        Ok(claimed.into_iter().map(|c| (c.run, c.deployment)).collect())
    }

    async fn heartbeat(&self, run: &FlowRun) -> Result<Heartbeat, PlaneError> {
        let body = to_json(&HeartbeatBody {
            lease_seconds: Some(self.lease.as_secs_f64()),
        })?;
        let a: HeartbeatAnswer = self
            .retried(&self.run_path(run, "heartbeat"), Some(body))
            .await?;
        let r = Box::new(a.run);
        Ok(match a.outcome {
            HeartbeatOutcome::Renewed => Heartbeat::Renewed(r),
            HeartbeatOutcome::CancelRequested => Heartbeat::CancelRequested(r),
            HeartbeatOutcome::Lost => Heartbeat::Lost(r),
        })
    }

    async fn release(&self, run: &FlowRun) -> Result<FlowRun, PlaneError> {
        self.retried(&self.run_path(run, "release"), None).await
    }

    async fn start(&self, run: &FlowRun) -> Result<Option<FlowRun>, PlaneError> {
        let a: StartAnswer = self.retried(&self.run_path(run, "start"), None).await?;
        Ok(a.run)
    }

    async fn finish(&self, run: &FlowRun, event: RunEvent) -> Result<FlowRun, PlaneError> {
        let end = RunEnd::from_event(event)
            .ok_or_else(|| PlaneError::Refused("only a final event ends a run".into()))?;
        let end = match end {
            RunEnd::Failed { exit_code, reason } => RunEnd::Failed {
                exit_code,
                reason: cut(reason),
            },
            RunEnd::Crashed { reason } => RunEnd::Crashed {
                reason: cut(reason),
            },
            other => other,
        };
        let body = to_json(&FinishBody { end })?;
        self.retried(&self.run_path(run, "finish"), Some(body))
            .await
    }

    async fn complete(
        &self,
        run: &FlowRun,
        result: Option<serde_json::Value>,
    ) -> Result<FlowRun, PlaneError> {
        let end = RunEnd::Completed {
            result: result.map(|value| FlowResult { value }),
        };
        let body = to_json(&FinishBody { end })?;
        self.retried(&self.run_path(run, "finish"), Some(body))
            .await
    }

    async fn append_logs(&self, run: &FlowRun, lines: &[LogLine]) -> Result<(), PlaneError> {
        // Not retried: a batch whose answer was lost would be appended twice.
        for batch in log_batches(lines) {
            let body = to_json(&LogLines {
                lines: batch.to_vec(),
            })?;
            self.send(Method::POST, &self.run_path(run, "logs"), Some(body))
                .await?;
        }
        Ok(())
    }

    async fn bundle(&self, digest: &BundleDigest) -> Result<Option<Vec<u8>>, PlaneError> {
        let sha = digest.to_string();
        let target: DownloadUrl = self
            .request(Method::GET, &format!("/bundles/{sha}/download-url"), None)
            .await?;
        if let Some(url) = target.url {
            return self
                .client
                .get_direct(&url)
                .await
                .map(Some)
                .map_err(|e| PlaneError::Unavailable(format!("bundle {sha}: {e:#}")));
        }
        match self
            .send(Method::GET, &format!("/bundles/{sha}"), None)
            .await
        {
            Ok(resp) => resp
                .bytes()
                .await
                .map(|b| Some(b.to_vec()))
                .map_err(|e| PlaneError::Unavailable(format!("reading bundle {sha}: {e}"))),
            Err(PlaneError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn report_presence(&self, presence: &AgentPresence) -> Result<(), PlaneError> {
        let path = format!("/agents/{}", path_segment(&presence.name));
        self.send(Method::PUT, &path, Some(to_json(presence)?))
            .await?;
        Ok(())
    }
}

/// A reason cut to what the API takes (4096 bytes), on a character boundary.
fn cut(mut reason: String) -> String {
    let max = ferry_api::agent_api::MAX_REASON_BYTES;
    if reason.len() > max {
        let mut end = max - 3;
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        reason.truncate(end);
        reason.push_str("...");
    }
    reason
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> LogLine {
        LogLine {
            at: Utc::now(),
            stream: ferry_core::ports::LogStream::Stdout,
            line: "x".repeat(n),
        }
    }

    #[test]
    fn log_batches_keep_every_line_in_order_within_the_request_limits() {
        let lines: Vec<_> = (0..2500).map(|i| line(i % 7)).collect();
        let batches = log_batches(&lines);
        assert_eq!(batches.len(), 3);
        assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), 2500);
        assert!(batches.iter().all(|b| b.len() <= MAX_LOG_LINES));
        let big: Vec<_> = (0..40).map(|_| line(64 * 1024)).collect();
        let batches = log_batches(&big);
        assert!(batches.len() >= 5, "{}", batches.len());
        assert_eq!(batches.concat(), big);
        assert!(log_batches(&[]).is_empty());
    }

    #[test]
    fn agent_names_are_percent_encoded_as_one_path_segment() {
        assert_eq!(path_segment("host-1.a_b~"), "host-1.a_b~");
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        let r = cut("é".repeat(5000));
        assert!(r.len() <= ferry_api::agent_api::MAX_REASON_BYTES && r.ends_with("..."));
        assert_eq!(cut("short".into()), "short");
    }
}
