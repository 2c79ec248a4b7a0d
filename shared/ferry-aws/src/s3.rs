//! S3 adapters: the code store (bundles content-addressed by sha256) and the log sink (one
//! JSON-lines chunk object per append, readable while the run goes on).
//!
//! Layout in the bucket:
//! - `bundles/<sha256>.tar.gz` — a bundle, stored with its SHA-256 checksum
//!   (`x-amz-checksum-sha256`) so S3 itself checks the upload;
//! - `results/<run-id>.json` — a run's result too large to keep on the run (docs/results.md);
//! - `logs/<run-id>/<first-line-number, 12 digits>.jsonl` — one chunk per `append`, its lines
//!   numbered from the number in the key. A run's chunks hold at most
//!   [`MAX_RUN_LOG_BYTES`](ferry_core::log_cap::MAX_RUN_LOG_BYTES) in all (then a marker line,
//!   and later lines are dropped).
//!
//! Errors of the SDK are kept as the `source` of the port's error (never stringified). There is
//! no retry here: throttling, 5xx and timeouts were already retried by the SDK with backoff
//! (see [`crate::config::sdk_config`]); what still fails surfaces as `Backend` / [`LogError`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use base64::Engine as _;
use ferry_core::digest::BundleDigest;
use ferry_core::ids::RunId;
use ferry_core::log_cap::{encode_capped, MAX_RUN_LOG_BYTES};
use ferry_core::ports::{CodeStore, CodeStoreError, LogError, LogLine, LogPage, LogSink};

/// Key prefix of bundles.
const BUNDLES: &str = "bundles/";
/// Key prefix of run logs.
const LOGS: &str = "logs/";
/// Key prefix of run results.
const RESULTS: &str = "results/";
/// How many times an append re-reads the run's chunks after losing a conditional write.
const APPEND_ATTEMPTS: usize = 5;

/// A log chunk that could not be decoded.
#[derive(Debug, thiserror::Error)]
#[error("corrupt log chunk s3://{bucket}/{key}")]
pub struct CorruptChunk {
    /// Bucket.
    pub bucket: String,
    /// Key of the chunk.
    pub key: String,
    /// Why.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

/// Appends kept losing the race for the next chunk key.
#[derive(Debug, thiserror::Error)]
#[error("could not append to s3://{bucket}/{prefix}: another writer kept taking the next chunk")]
pub struct AppendContention {
    /// Bucket.
    pub bucket: String,
    /// The run's prefix.
    pub prefix: String,
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> CodeStoreError {
    CodeStoreError::Backend {
        source: Box::new(e),
    }
}

fn log_err(e: impl std::error::Error + Send + Sync + 'static) -> LogError {
    LogError {
        source: Box::new(e),
    }
}

/// Base64 of the raw digest, the form of `x-amz-checksum-sha256`.
fn checksum_b64(digest: &BundleDigest) -> Result<String, CodeStoreError> {
    let raw = hex::decode(digest.as_str()).map_err(backend)?;
    Ok(base64::engine::general_purpose::STANDARD.encode(raw))
}

/// The HTTP status of the response an SDK error came with, if any.
fn status_of<E>(e: &SdkError<E, HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// A presigned request for uploading a bundle straight to S3.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PresignedUpload {
    /// The URL (signature in the query string).
    pub url: String,
    /// The HTTP method (`PUT`).
    pub method: String,
    /// Headers the uploader must send as they are (they are signed), among them
    /// `x-amz-checksum-sha256`.
    pub headers: Vec<(String, String)>,
}

/// Bundles as objects `bundles/<sha256>.tar.gz` in one bucket.
#[derive(Debug, Clone)]
pub struct S3CodeStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3CodeStore {
    /// A store keeping bundles in `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    fn key(digest: &BundleDigest) -> String {
        format!("{BUNDLES}{digest}.tar.gz")
    }

    fn result_key(run: RunId) -> String {
        format!("{RESULTS}{run}.json")
    }

    /// A presigned PUT of the bundle `digest`, valid for
    /// `expires_in` (at most 7 days).
    ///
    /// API Gateway caps request bodies at 10 MB, so in AWS mode the CLI uploads bundles here
    /// rather than through the API. The signature covers the `x-amz-checksum-sha256` header
    /// (base64 of the raw digest), which the uploader must send as returned in
    /// [`PresignedUpload::headers`]: S3 computes the SHA-256 of the body it receives and
    /// rejects the upload (`400 BadDigest`) when it differs, so the URL can only store the
    /// bytes it was issued for — and omitting or changing the header breaks the signature
    /// (`403 SignatureDoesNotMatch`).
    ///
    /// moto (5.2.5) enforces none of this: it does not check presigned signatures at all (a
    /// tampered `X-Amz-Signature` is accepted) and ignores `x-amz-checksum-sha256` — other
    /// bytes, a wrong header value or no header are all stored with `200 OK`, and HeadObject
    /// returns no checksum afterwards. So do not trust an object's presence alone:
    /// [`CodeStore::get_bundle`] re-verifies the digest of what it reads (and fails with
    /// `DigestMismatch` on such an object), whatever the backend enforced.
    pub async fn presign_put(
        &self,
        digest: &BundleDigest,
        expires_in: Duration,
    ) -> Result<PresignedUpload, CodeStoreError> {
        let config = PresigningConfig::expires_in(expires_in).map_err(backend)?;
        let req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(Self::key(digest))
            .content_type("application/gzip")
            .checksum_sha256(checksum_b64(digest)?)
            .presigned(config)
            .await
            .map_err(backend)?;
        Ok(PresignedUpload {
            url: req.uri().to_owned(),
            method: req.method().to_owned(),
            headers: req
                .headers()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        })
    }

    /// The bytes of object `key` in the bucket; `None` when there is no such object.
    async fn get_object(&self, key: String) -> Result<Option<Vec<u8>>, CodeStoreError> {
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_no_such_key())
                    || status_of(&e) == Some(404) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(backend(e)),
        };
        Ok(Some(out.body.collect().await.map_err(backend)?.to_vec()))
    }
}

#[async_trait]
impl CodeStore for S3CodeStore {
    fn is_remote(&self) -> bool {
        true
    }
    async fn upload_target(
        &self,
        digest: &BundleDigest,
    ) -> Result<Option<ferry_core::ports::UploadTarget>, CodeStoreError> {
        let p = self
            .presign_put(digest, Duration::from_secs(15 * 60))
            .await?;
        Ok(Some(ferry_core::ports::UploadTarget {
            url: p.url,
            method: p.method,
            headers: p.headers,
        }))
    }

    async fn download_url(&self, digest: &BundleDigest) -> Result<Option<String>, CodeStoreError> {
        let config = PresigningConfig::expires_in(Duration::from_secs(15 * 60)).map_err(backend)?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(Self::key(digest))
            .presigned(config)
            .await
            .map_err(backend)?;
        Ok(Some(req.uri().to_owned()))
    }

    async fn put_bundle(&self, digest: &BundleDigest, bytes: &[u8]) -> Result<(), CodeStoreError> {
        digest.verify(bytes)?;
        if self.has_bundle(digest).await? {
            return Ok(());
        }
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(Self::key(digest))
            .content_type("application/gzip")
            .checksum_sha256(checksum_b64(digest)?)
            .body(ByteStream::from(bytes.to_vec()))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn get_bundle(&self, digest: &BundleDigest) -> Result<Option<Vec<u8>>, CodeStoreError> {
        let Some(bytes) = self.get_object(Self::key(digest)).await? else {
            return Ok(None);
        };
        digest.verify(&bytes)?;
        Ok(Some(bytes))
    }

    async fn has_bundle(&self, digest: &BundleDigest) -> Result<bool, CodeStoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(Self::key(digest))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error().is_some_and(|s| s.is_not_found())
                    || status_of(&e) == Some(404) =>
            {
                Ok(false)
            }
            Err(e) => Err(backend(e)),
        }
    }

    async fn put_result(&self, run: RunId, json: &[u8]) -> Result<String, CodeStoreError> {
        let key = Self::result_key(run);
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(json.to_vec()))
            .send()
            .await
            .map_err(backend)?;
        Ok(format!("s3://{}/{key}", self.bucket))
    }

    async fn get_result(&self, run: RunId) -> Result<Option<Vec<u8>>, CodeStoreError> {
        self.get_object(Self::result_key(run)).await
    }
}

/// Where a run's log ends: its next line number and its size in bytes.
#[derive(Debug, Clone, Copy)]
struct Tail {
    next_line: u64,
    bytes: u64,
}

/// The tail of a run's log, once known in this process (`None`: list the chunks first).
type RunTail = Arc<tokio::sync::Mutex<Option<Tail>>>;

/// Run logs as chunk objects `logs/<run-id>/<first-line:012>.jsonl`, one per `append`.
///
/// The tail of each run's log (next line number, bytes so far) is cached in memory. On the
/// first append for a run in this process (and after any failed append, whose outcome is
/// unknown) the sink lists the run's chunks and continues after the last one, so an agent
/// restart or a second writer does not overwrite. Chunks are written with `If-None-Match: *`:
/// a writer whose cache is stale loses with `412 Precondition Failed`, re-lists and writes the
/// next free chunk instead. A run's log keeps at most [`MAX_RUN_LOG_BYTES`] (or
/// [`S3LogSink::with_max_bytes`]); past it, appends are dropped without a request.
#[derive(Debug)]
pub struct S3LogSink {
    client: aws_sdk_s3::Client,
    bucket: String,
    max_bytes: u64,
    tails: Mutex<HashMap<RunId, RunTail>>,
}

/// One chunk in a listing: its first line number, key and size.
#[derive(Debug, Clone)]
struct Chunk {
    first: u64,
    key: String,
    size: u64,
}

impl S3LogSink {
    /// A sink keeping logs in `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            max_bytes: MAX_RUN_LOG_BYTES,
            tails: Mutex::new(HashMap::new()),
        }
    }

    /// The same sink keeping at most `max_bytes` of each run's log.
    pub fn with_max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = max_bytes;
        self
    }

    fn prefix(run: RunId) -> String {
        format!("{LOGS}{run}/")
    }

    fn chunk_key(run: RunId, first: u64) -> String {
        format!("{}{first:012}.jsonl", Self::prefix(run))
    }

    fn slot(&self, run: RunId) -> RunTail {
        let mut map = self.tails.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(run).or_default().clone()
    }

    /// The run's chunks, by first line number.
    async fn list_chunks(&self, run: RunId) -> Result<Vec<Chunk>, LogError> {
        let prefix = Self::prefix(run);
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        let mut chunks = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(log_err)?;
            for obj in page.contents() {
                let Some(key) = obj.key() else { continue };
                let first = key
                    .strip_prefix(&prefix)
                    .and_then(|rest| rest.strip_suffix(".jsonl"))
                    .and_then(|n| n.parse::<u64>().ok());
                if let Some(first) = first {
                    chunks.push(Chunk {
                        first,
                        key: key.to_owned(),
                        size: obj.size().and_then(|s| u64::try_from(s).ok()).unwrap_or(0),
                    });
                }
            }
        }
        chunks.sort_by_key(|c| c.first);
        Ok(chunks)
    }

    /// The lines of one chunk.
    async fn get_chunk(&self, key: &str) -> Result<Vec<LogLine>, LogError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(log_err)?;
        let bytes = out.body.collect().await.map_err(log_err)?.into_bytes();
        let corrupt = |source: Box<dyn std::error::Error + Send + Sync>| {
            log_err(CorruptChunk {
                bucket: self.bucket.clone(),
                key: key.to_owned(),
                source,
            })
        };
        let text = std::str::from_utf8(&bytes).map_err(|e| corrupt(Box::new(e)))?;
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| corrupt(Box::new(e))))
            .collect()
    }

    /// The tail of the run's log, from the chunks in the bucket.
    async fn tail_from_bucket(&self, run: RunId) -> Result<Tail, LogError> {
        let chunks = self.list_chunks(run).await?;
        let bytes = chunks.iter().map(|c| c.size).sum();
        let next_line = match chunks.last() {
            None => 0,
            Some(last) => last.first + self.get_chunk(&last.key).await?.len() as u64,
        };
        Ok(Tail { next_line, bytes })
    }

    /// Writes the chunk `first` unless it exists; `Ok(false)` if it does.
    async fn put_chunk(&self, run: RunId, first: u64, body: &[u8]) -> Result<bool, LogError> {
        let res = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(Self::chunk_key(run, first))
            .content_type("application/x-ndjson")
            .if_none_match("*")
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            // 412: the key exists; 409: a concurrent conditional write to it is in progress.
            Err(e)
                if matches!(status_of(&e), Some(412 | 409))
                    || matches!(
                        e.code(),
                        Some("PreconditionFailed" | "ConditionalRequestConflict")
                    ) =>
            {
                Ok(false)
            }
            Err(e) => Err(log_err(e)),
        }
    }
}

#[async_trait]
impl LogSink for S3LogSink {
    async fn append(&self, run: RunId, lines: &[LogLine]) -> Result<(), LogError> {
        if lines.is_empty() {
            return Ok(());
        }
        let slot = self.slot(run);
        let mut cached = slot.lock().await;
        for _ in 0..APPEND_ATTEMPTS {
            let tail = match *cached {
                Some(t) => t,
                None => self.tail_from_bucket(run).await?,
            };
            let batch = encode_capped(lines, tail.bytes, self.max_bytes).map_err(log_err)?;
            if batch.dropped > 0 {
                tracing::debug!(%run, dropped = batch.dropped, cap = self.max_bytes, "run log at its cap: lines dropped");
            }
            if batch.body.is_empty() {
                *cached = Some(tail);
                return Ok(());
            }
            // Until the write is known to have happened (or not), the cache is unknown.
            *cached = None;
            if self.put_chunk(run, tail.next_line, &batch.body).await? {
                *cached = Some(Tail {
                    next_line: tail.next_line + batch.line_ends.len() as u64,
                    bytes: tail.bytes + batch.body.len() as u64,
                });
                return Ok(());
            }
            tracing::debug!(%run, first = tail.next_line, "log chunk already exists; re-listing the run's chunks");
        }
        Err(log_err(AppendContention {
            bucket: self.bucket.clone(),
            prefix: Self::prefix(run),
        }))
    }

    async fn read(&self, run: RunId, offset: u64, limit: usize) -> Result<LogPage, LogError> {
        let mut page = LogPage {
            lines: Vec::new(),
            next_offset: offset,
        };
        if limit == 0 {
            return Ok(page);
        }
        let end = offset.saturating_add(limit as u64);
        let chunks = self.list_chunks(run).await?;
        for (i, chunk) in chunks.iter().enumerate() {
            // A chunk covers [first, next chunk's first); the last one is open-ended.
            let chunk_end = chunks.get(i + 1).map_or(u64::MAX, |c| c.first);
            if chunk_end <= offset {
                continue;
            }
            if chunk.first >= end || page.lines.len() >= limit {
                break;
            }
            let lines = self.get_chunk(&chunk.key).await?;
            for (n, line) in (chunk.first..).zip(lines) {
                if n < offset || n >= chunk_end {
                    continue;
                }
                if page.lines.len() >= limit {
                    break;
                }
                page.lines.push(line);
                page.next_offset = n + 1;
            }
        }
        Ok(page)
    }

    fn location(&self, run: RunId) -> String {
        format!("s3://{}/{}", self.bucket, Self::prefix(run))
    }
}
