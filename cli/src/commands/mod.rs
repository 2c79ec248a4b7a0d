pub(crate) mod agent;
mod deployment;
mod flow_run;
mod infra;
mod queue;
mod schedule;
mod watch;

use anyhow::Result;

pub(crate) use agent::{config as agent_config, with_lease};

use crate::args::{Cli, Command, ServerCmd};

pub async fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Server(ServerCmd::Start(args)) => crate::server::start(args).await,
        Command::Server(ServerCmd::Tick { late_after }) => {
            crate::server::tick_once(late_after).await
        }
        Command::WorkQueue(cmd) => queue::run(cmd).await,
        Command::Deployment(cmd) => deployment::run(cmd).await,
        Command::FlowRun(cmd) => flow_run::run(cmd).await,
        Command::Infra(cmd) => infra::run(cmd).await,
        Command::Schedule(cmd) => schedule::run(cmd),
        Command::Agent(cmd) => agent::run(cmd).await,
        Command::Dev(args) => crate::server::dev(args).await,
        Command::Aws(crate::args::AwsCmd::Bootstrap { table, bucket }) => {
            aws_bootstrap(&table, &bucket).await
        }
    }
}

/// Parses `KEY=VALUE` pairs; VALUE is JSON if it parses as JSON, else a string.
pub(crate) fn parse_params(
    json: Option<&str>,
    pairs: &[String],
) -> Result<serde_json::Map<String, serde_json::Value>> {
    let from_file;
    let json = match json {
        Some(path) if path.starts_with('@') => {
            from_file = std::fs::read_to_string(&path[1..])
                .map_err(|e| anyhow::anyhow!("--params-json {path}: cannot read the file: {e}"))?;
            Some(from_file.as_str())
        }
        other => other,
    };
    let mut out = match json {
        None => serde_json::Map::new(),
        Some(text) => match serde_json::from_str::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(m)) => m,
            Ok(_) => anyhow::bail!("--params-json: must be a JSON object like '{{\"n\": 3}}'"),
            Err(e) => anyhow::bail!("--params-json: not valid JSON: {e}"),
        },
    };
    for pair in pairs {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--param {pair:?}: expected KEY=VALUE"))?;
        if k.is_empty() {
            anyhow::bail!("--param {pair:?}: the key is empty");
        }
        let value = serde_json::from_str(v).unwrap_or_else(|_| serde_json::Value::String(v.into()));
        out.insert(k.to_owned(), value);
    }
    Ok(out)
}

async fn aws_bootstrap(table: &str, bucket: &str) -> Result<()> {
    use anyhow::Context;
    let sdk = ferry_aws::config::sdk_config().await;
    let region = sdk.region().map(|r| r.to_string());
    let created =
        ferry_aws::bootstrap::ensure_table(&ferry_aws::config::dynamodb_client(&sdk), table)
            .await
            .with_context(|| format!("creating table {table}"))?;
    println!(
        "Table {table}: {}",
        if created { "created" } else { "exists" }
    );
    let created = ferry_aws::bootstrap::ensure_bucket(
        &ferry_aws::config::s3_client(&sdk),
        bucket,
        region.as_deref(),
    )
    .await
    .with_context(|| format!("creating bucket {bucket}"))?;
    println!(
        "Bucket {bucket}: {}",
        if created { "created" } else { "exists" }
    );
    // The default queue exists from the start.
    let store = ferry_aws::DynamoStore::new(ferry_aws::config::dynamodb_client(&sdk), table);
    let q = ferry_core::WorkQueue::new(ferry_core::QueueName::default_queue(), chrono::Utc::now());
    match ferry_core::ports::QueueStore::create_queue(&store, &q).await {
        Ok(()) | Err(ferry_core::ports::StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
