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

/// A DynamoDB Streams client from the shared configuration. Its endpoint is
/// `AWS_ENDPOINT_URL_DYNAMODB_STREAMS` if set, else `AWS_ENDPOINT_URL_DYNAMODB` if set (DynamoDB
/// Local serves the table and its stream on one endpoint; without this the client would follow
/// `AWS_ENDPOINT_URL` to another emulator), else the SDK's default.
pub fn dynamodb_streams_client(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodbstreams::Client {
    let mut conf = aws_sdk_dynamodbstreams::config::Builder::from(sdk);
    if let Some(url) = streams_endpoint(|k| std::env::var(k).ok()) {
        conf = conf.endpoint_url(url);
    }
    aws_sdk_dynamodbstreams::Client::from_conf(conf.build())
}

/// The endpoint the streams client must be given explicitly: DynamoDB's, when only that one
/// is set (the SDK itself honours `AWS_ENDPOINT_URL_DYNAMODB_STREAMS`).
fn streams_endpoint(var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let set = |k: &str| var(k).filter(|v| !v.is_empty());
    match set("AWS_ENDPOINT_URL_DYNAMODB_STREAMS") {
        Some(_) => None,
        None => set("AWS_ENDPOINT_URL_DYNAMODB"),
    }
}

/// An ECS client from the shared configuration (endpoint from `AWS_ENDPOINT_URL_ECS` or
/// `AWS_ENDPOINT_URL`, like the other clients).
pub fn ecs_client(sdk: &aws_config::SdkConfig) -> aws_sdk_ecs::Client {
    aws_sdk_ecs::Client::new(sdk)
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
    /// The ECS task launcher (`ecs/NAME` profiles).
    pub ecs: std::sync::Arc<crate::EcsLauncher>,
    /// What a launched task needs to reach this backend: `FERRY_BACKEND=aws`, the table, the
    /// bucket and the region (names, never credentials: the task role provides those).
    pub launch_env: std::collections::BTreeMap<String, String>,
}

/// Why the AWS configuration cannot be read from the environment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A variable the AWS backend needs is unset or empty.
    #[error("{0} is not set: the AWS backend needs FERRY_TABLE and FERRY_BUCKET (create them with `ferry aws bootstrap` or infra/storage.yaml)")]
    Missing(&'static str),
}

impl AwsConfig {
    /// `FERRY_TABLE` and `FERRY_BUCKET` from the environment, with an error naming the missing
    /// variable and how to create the resources.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// [`AwsConfig::from_env`] over any variable lookup.
    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &'static str| {
            var(k)
                .filter(|v| !v.is_empty())
                .ok_or(ConfigError::Missing(k))
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
            ecs: std::sync::Arc::new(crate::EcsLauncher::new(ecs_client(sdk))),
            launch_env: self.launch_env(sdk),
        }
    }

    /// The environment of a launched task (see [`Adapters::launch_env`]).
    fn launch_env(
        &self,
        sdk: &aws_config::SdkConfig,
    ) -> std::collections::BTreeMap<String, String> {
        let mut env = std::collections::BTreeMap::from([
            ("FERRY_BACKEND".to_owned(), "aws".to_owned()),
            ("FERRY_TABLE".to_owned(), self.table.clone()),
            ("FERRY_BUCKET".to_owned(), self.bucket.clone()),
        ]);
        if let Some(region) = sdk.region() {
            env.insert("AWS_REGION".into(), region.to_string());
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars<'a>(set: &'a [(&str, &str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            set.iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_table_and_bucket_come_from_their_variables() {
        let cfg =
            AwsConfig::from_vars(vars(&[("FERRY_TABLE", "t"), ("FERRY_BUCKET", "b")])).unwrap();
        assert_eq!((cfg.table.as_str(), cfg.bucket.as_str()), ("t", "b"));
    }

    #[test]
    fn the_streams_client_follows_dynamodb_unless_its_own_endpoint_is_set() {
        let ddb = "http://127.0.0.1:8000";
        assert_eq!(
            streams_endpoint(vars(&[
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
                ("AWS_ENDPOINT_URL_DYNAMODB", ddb)
            ])),
            Some(ddb.to_owned())
        );
        let own = [
            ("AWS_ENDPOINT_URL_DYNAMODB", ddb),
            ("AWS_ENDPOINT_URL_DYNAMODB_STREAMS", "http://127.0.0.1:9000"),
        ];
        assert_eq!(
            streams_endpoint(vars(&own)),
            None,
            "the SDK reads its own variable"
        );
        assert_eq!(streams_endpoint(vars(&[])), None);
    }

    #[test]
    fn a_missing_or_empty_variable_is_named_with_the_fix() {
        let e = AwsConfig::from_vars(vars(&[("FERRY_BUCKET", "b")])).unwrap_err();
        assert_eq!(e, ConfigError::Missing("FERRY_TABLE"));
        let e =
            AwsConfig::from_vars(vars(&[("FERRY_TABLE", "t"), ("FERRY_BUCKET", "")])).unwrap_err();
        assert_eq!(e, ConfigError::Missing("FERRY_BUCKET"));
        let m = e.to_string();
        assert!(
            m.starts_with("FERRY_BUCKET is not set") && m.contains("ferry aws bootstrap"),
            "{m}"
        );
    }
}
