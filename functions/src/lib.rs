//! Wiring shared by Ferry's Lambda entry points: configuration read once at cold start, SDK
//! clients built once and lent to the handlers, JSON logs. Handlers are plain async functions
//! a test calls with a constructed event; no business logic lives here.

use std::sync::Arc;

use ferry_app::{Ferry, SystemClock, TickReport};
use lambda_runtime::{Error, LambdaEvent};

/// JSON structured logs (CloudWatch), level from `FERRY_LOG` (default info).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .without_time() // CloudWatch stamps every line
        .try_init();
}

/// The use cases over DynamoDB and S3 from the function's environment (`FERRY_TABLE`,
/// `FERRY_BUCKET`), launching `ecs/NAME` runs as ECS tasks; fails fast with a message naming
/// what is missing.
pub async fn ferry_from_env() -> Result<Ferry, Error> {
    let cfg = ferry_aws::AwsConfig::from_env()?;
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
