//! Wiring shared by Ferry's Lambda entry points: configuration read once at cold start, SDK
//! clients built once and lent to the handlers, JSON logs. Handlers are plain async functions
//! a test calls with a constructed event; no business logic lives here. The functions: the API,
//! the tick, and dispatch on the table's stream.

use std::sync::Arc;

use ferry_app::{AppError, Ferry, LaunchOutcome, SystemClock, TickReport};
use ferry_aws::stream::StreamEvent;
use ferry_core::RunId;
use lambda_runtime::{Error, LambdaEvent};
use serde::{Deserialize, Serialize};

/// JSON structured logs (CloudWatch), one object per line and never a colour code; level
/// from `FERRY_LOG` (default info; a filter that does not parse is reported and `info` used,
/// so a typo cannot stop the function).
pub fn init_tracing() {
    let (filter, bad) = match std::env::var("FERRY_LOG") {
        Ok(v) if !v.trim().is_empty() => match tracing_subscriber::EnvFilter::try_new(&v) {
            Ok(f) => (f, None),
            Err(e) => (
                tracing_subscriber::EnvFilter::new("info"),
                Some(format!(
                    "FERRY_LOG={v:?} is not a log filter ({e}); using `info`"
                )),
            ),
        },
        _ => (tracing_subscriber::EnvFilter::new("info"), None),
    };
    let installed = tracing_subscriber::fmt()
        .json()
        .with_ansi(false)
        .with_env_filter(filter)
        .without_time() // CloudWatch stamps every line
        .try_init();
    if let Err(e) = installed {
        tracing::debug!("logging already set up: {e}");
    }
    if let Some(message) = bad {
        tracing::warn!("{message}");
    }
}

/// The use cases over DynamoDB and S3 from the function's environment (`FERRY_TABLE`,
/// `FERRY_BUCKET`), launching `ecs/NAME` runs as ECS tasks; fails fast with a message naming
/// what is missing.
pub async fn ferry_from_env() -> Result<Ferry, Error> {
    // The message, not the variant's Debug: `main` returning the error prints it with `{:?}`.
    let cfg = ferry_aws::AwsConfig::from_env().map_err(|e| e.to_string())?;
    let a = cfg.adapters(&ferry_aws::config::sdk_config().await);
    Ok(Ferry::new(a.store, a.code, a.logs, Arc::new(SystemClock))
        .with_launcher(ferry_core::infra::InfraKind::Ecs, a.ecs)
        .with_launch_env(a.launch_env))
}

/// The tick: one pass of horizon extension, late marking and lease reaping. The EventBridge
/// event carries nothing Ferry needs; the report is the function's result (and logged).
pub async fn tick_handler(
    ferry: &Ferry,
    _event: LambdaEvent<serde_json::Value>,
) -> Result<TickReport, Error> {
    // The whole cause chain: a Lambda error result shows only the top error's message.
    let report = ferry
        .tick()
        .await
        .map_err(|e| ferry_core::error::error_chain(&e))?;
    tracing::info!(?report, "tick");
    Ok(report)
}

/// What the dispatch function answers Lambda (`ReportBatchItemFailures`): the records to
/// deliver again. Lambda retries from the lowest sequence number listed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchResponse {
    /// The records whose dispatch failed for now.
    #[serde(rename = "batchItemFailures")]
    pub batch_item_failures: Vec<BatchItemFailure>,
}

/// One record to deliver again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchItemFailure {
    /// The record's `SequenceNumber`.
    #[serde(rename = "itemIdentifier")]
    pub item_identifier: String,
}

/// Runs one invocation dispatches at a time.
const DISPATCH_CONCURRENCY: usize = 4;

/// Dispatch, on the table's DynamoDB stream: launches each waiting run of a launched deployment
/// a record names ([`ferry_aws::stream::launchable_run`]) if it is due within its profile's
/// lead. A run named by several records of the batch is dispatched once. A record whose
/// dispatch failed for now (storage unavailable, throttled) is reported for Lambda to deliver
/// again; a replayed record finds its run launched already and launches nothing. Failures that
/// a retry cannot mend (a deleted profile, a corrupt item) are logged, not reported — they
/// would hold the shard back — and the tick's pre-launch meets the run again.
pub async fn dispatch_handler(
    ferry: &Ferry,
    event: LambdaEvent<StreamEvent>,
) -> Result<BatchResponse, Error> {
    let mut runs: Vec<(RunId, String)> = Vec::new();
    for record in &event.payload.records {
        let Some(id) = record.launchable_run() else {
            continue;
        };
        if runs.iter().any(|(r, _)| *r == id) {
            continue;
        }
        let Some(seq) = record.dynamodb.sequence_number.clone() else {
            return Err(format!(
                "stream record {} has no dynamodb.SequenceNumber: is this a DynamoDB stream event?",
                record.event_id.as_deref().unwrap_or("?")
            )
            .into());
        };
        runs.push((id, seq));
    }
    let mut failures = Vec::new();
    for chunk in runs.chunks(DISPATCH_CONCURRENCY) {
        let mut batch = tokio::task::JoinSet::new();
        for (id, seq) in chunk.iter().cloned() {
            let ferry = ferry.clone();
            batch.spawn(async move { (id, seq, ferry.dispatch(id).await) });
        }
        while let Some(done) = batch.join_next().await {
            let (id, seq, outcome) = done?;
            match outcome {
                Ok(outcome) => {
                    tracing::info!(run_id = %id, outcome = ?outcome_name(&outcome), "dispatched")
                }
                Err(e) if is_retryable(&e) => {
                    tracing::warn!(run_id = %id, error = %ferry_core::error::error_chain(&e), "dispatch failed for now: the record is delivered again");
                    failures.push(BatchItemFailure {
                        item_identifier: seq,
                    });
                }
                Err(e) => {
                    tracing::error!(run_id = %id, error = %ferry_core::error::error_chain(&e), "dispatch failed: not retried here, the tick's pre-launch meets the run again");
                }
            }
        }
    }
    Ok(BatchResponse {
        batch_item_failures: failures,
    })
}

fn is_retryable(e: &AppError) -> bool {
    matches!(e, AppError::Store(s) if s.is_retryable())
}

fn outcome_name(o: &LaunchOutcome) -> String {
    match o {
        LaunchOutcome::Launched(r) => format!("launched ({})", r.state),
        LaunchOutcome::Lost => "lost (launched elsewhere)".into(),
        LaunchOutcome::SlotFull => "slot full".into(),
        LaunchOutcome::Skipped(why) => format!("skipped: {why}"),
        LaunchOutcome::Failed(r) => format!("failed ({})", r.state),
    }
}
