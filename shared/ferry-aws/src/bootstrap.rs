//! `ferry aws bootstrap`: creates the table (with its indexes and stream) and the bucket if
//! missing, idempotently. For development and tests; production creates them from
//! `infra/control-plane.yaml`.

use std::time::Duration;

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TableStatus,
};

use ferry_core::error::error_chain;

use crate::dynamo::index;

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
        "all_pk", "all_sk",
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
            return Ok(created);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(BootstrapError::Timeout(table.to_owned()))
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

/// Checks that the table and bucket exist, so a process fails at start with a message naming
/// the missing resource and the fix, instead of on its first request.
pub async fn check(
    dynamodb: &aws_sdk_dynamodb::Client,
    s3: &aws_sdk_s3::Client,
    table: &str,
    bucket: &str,
) -> Result<(), String> {
    if let Err(e) = dynamodb.describe_table().table_name(table).send().await {
        return Err(match e.code() {
            Some("ResourceNotFoundException") => format!(
                "FERRY_TABLE={table}: no such DynamoDB table in this account/region: create it with `ferry aws bootstrap` (development) or infra/storage.yaml"
            ),
            _ => format!(
                "FERRY_TABLE={table}: cannot reach DynamoDB ({}): check AWS_REGION, credentials and AWS_ENDPOINT_URL_DYNAMODB",
                error_chain(&e)
            ),
        });
    }
    if let Err(e) = s3.head_bucket().bucket(bucket).send().await {
        let status = e.raw_response().map(|r| r.status().as_u16());
        return Err(match status {
            Some(404) => format!(
                "FERRY_BUCKET={bucket}: no such S3 bucket: create it with `ferry aws bootstrap` (development) or infra/storage.yaml"
            ),
            Some(403) => format!("FERRY_BUCKET={bucket}: access denied: the credentials need s3:ListBucket on it"),
            _ => format!(
                "FERRY_BUCKET={bucket}: cannot reach S3 ({}): check AWS_REGION, credentials and AWS_ENDPOINT_URL",
                error_chain(&e)
            ),
        });
    }
    Ok(())
}
