pub(crate) mod agent;
mod aws;
mod deployment;
mod flow_run;
mod infra;
mod queue;
mod schedule;
mod secret;
mod ui;
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
        Command::Aws(cmd) => aws::run(cmd).await,
        Command::Ui(args) => ui::run(args).await,
        Command::Secret(cmd) => secret::run(cmd),
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
