//! `ferry aws bootstrap`: creates the table (with its indexes and its stream, which dispatch of
//! launched runs reads: `NEW_AND_OLD_IMAGES`, like infra/storage.yaml) and the bucket if
//! missing, idempotently. For development and tests; production creates them from
//! `infra/control-plane.yaml`.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus,
    TimeToLiveSpecification, TimeToLiveStatus,
};

use crate::dynamo::{index, BY_STATE_INCLUDES, TTL_ATTR};

/// Errors of bootstrap.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// A DynamoDB call failed.
    #[error("DynamoDB call failed")]
    Dynamo(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An S3 call failed.
    #[error("S3 call failed")]
    S3(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The table did not become ACTIVE in time.
    #[error("table {0} did not become ACTIVE within 60 s")]
    Timeout(String),
}

fn key(name: &str, kind: KeyType) -> KeySchemaElement {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .expect("key schema element")
}

fn gsi(name: &str, hash: &str, range: &str, projection: Projection) -> GlobalSecondaryIndex {
    GlobalSecondaryIndex::builder()
        .index_name(name)
        .key_schema(key(hash, KeyType::Hash))
        .key_schema(key(range, KeyType::Range))
        .projection(projection)
        .build()
        .expect("index")
}

fn projection(kind: ProjectionType, include: &[&str]) -> Projection {
    let mut p = Projection::builder().projection_type(kind);
    for a in include {
        p = p.non_key_attributes(*a);
    }
    p.build()
}

/// Creates the table if it does not exist and waits until it is ACTIVE. Returns whether it
/// was created.
pub async fn ensure_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<bool, BootstrapError> {
    let mut req = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .map_err(|e| BootstrapError::Dynamo(Box::new(e)))?,
        );
    for attr in [
        "pk", "sk", "due_pk", "due_sk", "lease_pk", "lease_sk", "h_pk", "h_sk", "dep_pk", "dep_sk",
        "all_pk", "all_sk", "state",
    ] {
        req = req.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attr)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| BootstrapError::Dynamo(Box::new(e)))?,
        );
    }
    req = req
        .global_secondary_indexes(gsi(
            index::DUE,
            "due_pk",
            "due_sk",
            projection(ProjectionType::All, &[]),
        ))
        .global_secondary_indexes(gsi(
            index::LEASES,
            "lease_pk",
            "lease_sk",
            projection(ProjectionType::KeysOnly, &[]),
        ))
        .global_secondary_indexes(gsi(
            index::HORIZON,
            "h_pk",
            "h_sk",
            projection(ProjectionType::All, &[]),
        ))
        .global_secondary_indexes(gsi(
            index::BY_DEPLOYMENT,
            "dep_pk",
            "dep_sk",
            projection(ProjectionType::KeysOnly, &[]),
        ))
        .global_secondary_indexes(gsi(
            index::ALL_RUNS,
            "all_pk",
            "all_sk",
            projection(ProjectionType::KeysOnly, &[]),
        ))
        .global_secondary_indexes(gsi(
            index::BY_STATE,
            "state",
            "all_sk",
            projection(ProjectionType::Include, &BY_STATE_INCLUDES),
        ));
    let created = match req.send().await {
        Ok(_) => true,
        Err(e) if e.code() == Some("ResourceInUseException") => false,
        Err(e) => return Err(BootstrapError::Dynamo(Box::new(e))),
    };
    for _ in 0..120 {
        let d = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| BootstrapError::Dynamo(Box::new(e)))?;
        if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            ensure_ttl(client, table).await?;
            if !created {
                ensure_runs_by_state(client, table, d.table()).await?;
            }
            return Ok(created);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(BootstrapError::Timeout(table.to_owned()))
}

/// Adds the `runs_by_state` index to a table made before it existed (one `UpdateTable`, which
/// DynamoDB fills from the run items' existing `state` and `all_sk`: no backfill) and waits
/// until it is ACTIVE. A table that has it is left alone.
async fn ensure_runs_by_state(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    described: Option<&aws_sdk_dynamodb::types::TableDescription>,
) -> Result<(), BootstrapError> {
    let has = |t: Option<&aws_sdk_dynamodb::types::TableDescription>| {
        t.map(|t| t.global_secondary_indexes())
            .unwrap_or_default()
            .iter()
            .find(|g| g.index_name() == Some(index::BY_STATE))
            .map(|g| g.index_status().cloned())
    };
    if has(described).is_none() {
        let dynamo = |e: aws_sdk_dynamodb::error::BuildError| BootstrapError::Dynamo(Box::new(e));
        let create = aws_sdk_dynamodb::types::CreateGlobalSecondaryIndexAction::builder()
            .index_name(index::BY_STATE)
            .key_schema(key("state", KeyType::Hash))
            .key_schema(key("all_sk", KeyType::Range))
            .projection(projection(ProjectionType::Include, &BY_STATE_INCLUDES))
            .build()
            .map_err(dynamo)?;
        let mut req = client
            .update_table()
            .table_name(table)
            .global_secondary_index_updates(
                aws_sdk_dynamodb::types::GlobalSecondaryIndexUpdate::builder()
                    .create(create)
                    .build(),
            );
        for attr in ["state", "all_sk"] {
            req = req.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attr)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(dynamo)?,
            );
        }
        req.send()
            .await
            .map_err(|e| BootstrapError::Dynamo(Box::new(e)))?;
        tracing::info!(table, index = index::BY_STATE, "index added");
    }
    for _ in 0..120 {
        let d = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| BootstrapError::Dynamo(Box::new(e)))?;
        match has(d.table()) {
            Some(None) | Some(Some(aws_sdk_dynamodb::types::IndexStatus::Active)) => return Ok(()),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
    Err(BootstrapError::Timeout(format!(
        "{table} (index {})",
        index::BY_STATE
    )))
}

/// Turns on the table's time to live on [`TTL_ATTR`] unless it is on (agents gone for a
/// week disappear), like infra/storage.yaml.
async fn ensure_ttl(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<(), BootstrapError> {
    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| BootstrapError::Dynamo(Box::new(e)))?;
    let on = ttl
        .time_to_live_description()
        .and_then(|d| d.time_to_live_status())
        .is_some_and(|s| matches!(s, TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling));
    if !on {
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TTL_ATTR)
                    .enabled(true)
                    .build()
                    .map_err(|e| BootstrapError::Dynamo(Box::new(e)))?,
            )
            .send()
            .await
            .map_err(|e| BootstrapError::Dynamo(Box::new(e)))?;
    }
    Ok(())
}

/// Creates the bucket if it does not exist. Returns whether it was created.
pub async fn ensure_bucket(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    region: Option<&str>,
) -> Result<bool, BootstrapError> {
    if client.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(false);
    }
    let mut req = client.create_bucket().bucket(bucket);
    if let Some(r) = region.filter(|r| *r != "us-east-1") {
        req = req.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(r))
                .build(),
        );
    }
    match req.send().await {
        Ok(_) => Ok(true),
        Err(e)
            if matches!(
                aws_sdk_s3::error::ProvideErrorMetadata::code(&e),
                Some("BucketAlreadyOwnedByYou")
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(BootstrapError::S3(Box::new(e))),
    }
}

/// Why the table or bucket a process is configured with cannot be used ([`check`]). Each
/// names the variable and the fix. When the service could not be asked, the SDK's error is the
/// source; when it answered "no such table", "no such bucket" or "denied", that answer is the
/// whole diagnosis (and the SDK's own chain would repeat it).
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// `FERRY_TABLE` names no table.
    #[error("FERRY_TABLE={table}: no such DynamoDB table in this account/region: create it with `ferry aws bootstrap` (development) or infra/storage.yaml")]
    TableMissing {
        /// The table.
        table: String,
    },
    /// The table has no stream with new images, which dispatch reads.
    #[error("FERRY_TABLE={table}: the table's stream is off (or carries no new images): dispatch of launched runs reads it; enable it with `aws dynamodb update-table --table-name {table} --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES`, or deploy infra/storage.yaml")]
    StreamOff {
        /// The table.
        table: String,
    },
    /// DynamoDB did not answer the table's description.
    #[error("FERRY_TABLE={table}: cannot reach DynamoDB: check AWS_REGION, credentials and AWS_ENDPOINT_URL_DYNAMODB")]
    DynamoUnreachable {
        /// The table.
        table: String,
        /// The SDK's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// `FERRY_BUCKET` names no bucket.
    #[error("FERRY_BUCKET={bucket}: no such S3 bucket: create it with `ferry aws bootstrap` (development) or infra/storage.yaml")]
    BucketMissing {
        /// The bucket.
        bucket: String,
    },
    /// The credentials may not list the bucket.
    #[error("FERRY_BUCKET={bucket}: access denied: the credentials need s3:ListBucket on it")]
    BucketDenied {
        /// The bucket.
        bucket: String,
    },
    /// S3 did not answer for the bucket.
    #[error("FERRY_BUCKET={bucket}: cannot reach S3: check AWS_REGION, credentials and AWS_ENDPOINT_URL")]
    S3Unreachable {
        /// The bucket.
        bucket: String,
        /// The SDK's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Checks that the table (with its stream) and bucket exist, so a process fails at start with a
/// message naming the missing resource and the fix, instead of on its first request.
pub async fn check(
    dynamodb: &aws_sdk_dynamodb::Client,
    s3: &aws_sdk_s3::Client,
    table: &str,
    bucket: &str,
) -> Result<(), CheckError> {
    let described = match dynamodb.describe_table().table_name(table).send().await {
        Ok(d) => d,
        Err(e) => {
            let table = table.to_owned();
            return Err(match e.code() {
                Some("ResourceNotFoundException") => CheckError::TableMissing { table },
                _ => CheckError::DynamoUnreachable {
                    table,
                    source: Box::new(e),
                },
            });
        }
    };
    if described
        .table()
        .and_then(crate::stream::new_image_stream)
        .is_none()
    {
        return Err(CheckError::StreamOff {
            table: table.to_owned(),
        });
    }
    if let Err(e) = s3.head_bucket().bucket(bucket).send().await {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let bucket = bucket.to_owned();
        return Err(match status {
            Some(404) => CheckError::BucketMissing { bucket },
            Some(403) => CheckError::BucketDenied { bucket },
            _ => CheckError::S3Unreachable {
                bucket,
                source: Box::new(e),
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_error_names_the_variable_and_the_fix_and_keeps_its_cause_apart() {
        let e = CheckError::DynamoUnreachable {
            table: "ferry".into(),
            source: Box::new(std::io::Error::other("connection refused")),
        };
        assert_eq!(
            e.to_string(),
            "FERRY_TABLE=ferry: cannot reach DynamoDB: check AWS_REGION, credentials and AWS_ENDPOINT_URL_DYNAMODB"
        );
        let chain = ferry_core::error::error_chain(&e);
        assert_eq!(chain.matches("connection refused").count(), 1, "{chain}");
    }
}
