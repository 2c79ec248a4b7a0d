//! AWS adapters of Ferry's ports: a DynamoDB store (one on-demand table, single-table design
//! owned by this crate), an S3 code store (bundles content-addressed by sha256) and an S3 log
//! sink (chunk objects readable while a run goes on), an ECS task launcher (a Fargate task per
//! run), `bootstrap` of the table and bucket, and the reader of the table's stream that
//! triggers dispatch (`stream`), and the resolver of `ssm:`/`secretsmanager:` secret references
//! (`secrets`).

pub mod bootstrap;
pub mod config;
pub mod dynamo;
pub mod ecs;
pub mod s3;
pub mod secrets;
pub mod stream;

pub use config::AwsConfig;
pub use dynamo::{CapacityMeter, DynamoStore};
pub use ecs::EcsLauncher;
pub use s3::{S3CodeStore, S3LogSink};
pub use secrets::AwsSecrets;
