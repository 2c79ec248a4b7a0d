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

/// The AWS adapters of every port, built once from the shared SDK configuration.
pub struct Adapters {
    /// DynamoDB store.
    pub store: std::sync::Arc<crate::DynamoStore>,
    /// S3 bundles.
    pub code: std::sync::Arc<crate::S3CodeStore>,
    /// S3 run logs.
    pub logs: std::sync::Arc<crate::S3LogSink>,
}

impl AwsConfig {
    /// `FERRY_TABLE` and `FERRY_BUCKET` from the environment, with an error naming the missing
    /// variable and how to create the resources.
    pub fn from_env() -> Result<Self, String> {
        let get = |k: &str| {
            std::env::var(k).ok().filter(|v| !v.is_empty()).ok_or_else(|| {
                format!("{k} is not set: the AWS backend needs FERRY_TABLE and FERRY_BUCKET (create them with `ferry aws bootstrap` or infra/storage.yaml)")
            })
        };
        Ok(Self {
            table: get("FERRY_TABLE")?,
            bucket: get("FERRY_BUCKET")?,
        })
    }

    /// The adapters over this table and bucket.
    pub fn adapters(&self, sdk: &aws_config::SdkConfig) -> Adapters {
        let s3 = s3_client(sdk);
        Adapters {
            store: std::sync::Arc::new(crate::DynamoStore::new(dynamodb_client(sdk), &self.table)),
            code: std::sync::Arc::new(crate::S3CodeStore::new(s3.clone(), &self.bucket)),
            logs: std::sync::Arc::new(crate::S3LogSink::new(s3, &self.bucket)),
        }
    }
}
