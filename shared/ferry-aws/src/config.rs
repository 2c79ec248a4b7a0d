//! SDK clients, built once from the standard AWS environment.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::BehaviorVersion;

/// Where Ferry's AWS state lives.
#[derive(Debug, Clone)]
pub struct AwsConfig {
    /// The DynamoDB table (`FERRY_TABLE`).
    pub table: String,
    /// The S3 bucket for bundles and logs (`FERRY_BUCKET`).
    pub bucket: String,
}

/// Shared SDK configuration: region, credentials and endpoints from the environment
/// (`AWS_REGION`, `AWS_ENDPOINT_URL*`, ...), standard retries with exponential backoff and jitter
/// for throttling, 5xx and timeouts, and bounded timeouts.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(8)
                .with_initial_backoff(Duration::from_millis(50))
                .with_max_backoff(Duration::from_secs(5)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(3))
                .operation_attempt_timeout(Duration::from_secs(10))
                .operation_timeout(Duration::from_secs(60))
                .build(),
        )
        .load()
        .await
}

/// A DynamoDB client from the shared configuration.
pub fn dynamodb_client(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(sdk)
}

/// An S3 client from the shared configuration (path-style addressing, which emulators and
/// custom endpoints need).
pub fn s3_client(sdk: &aws_config::SdkConfig) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(sdk)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}
