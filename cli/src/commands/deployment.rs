use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use ferry_app::{ApplyOutcome, RunRequest};
use ferry_core::deployment::{BundleRef, Entrypoint, Infrastructure};
use ferry_core::validate::validate_spec;
use ferry_core::{CatchUp, Deployment, DeploymentId, DeploymentSpec, FlowRun};
use reqwest::Method;

use crate::args::{BuildArgs, DeploymentCmd};
use crate::client::Client;
use crate::{manifest, output};

use super::parse_params;
use super::schedule::spec_from_args;

fn id_path(id: &str) -> Result<String> {
    let id: DeploymentId = id.parse().map_err(|e| anyhow!("{e}"))?;
    Ok(format!("/deployments/{}/{}", id.flow(), id.name()))
}

fn schedule_summary(d: &Deployment) -> String {
    let parts: Vec<String> = d
        .spec
        .schedules
        .iter()
        .map(|s| {
            let what = if let Some(c) = &s.cron {
                format!("cron {c}")
            } else if let Some(i) = s.interval {
                format!("every {i}s")
            } else if let Some(r) = &s.rrule {
                format!("rrule {r}")
            } else {
                "?".into()
            };
            let tz = if s.timezone == "UTC" {
                String::new()
            } else {
                format!(" ({})", s.timezone)
            };
            let off = if s.active { "" } else { " [inactive]" };
            format!("{what}{tz}{off}")
        })
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join("; ")
    }
}

async fn apply(client: &Client, spec: &DeploymentSpec) -> Result<ApplyOutcome> {
    let (_, out): (_, ApplyOutcome) = client.send_json(Method::PUT, "/deployments", spec).await?;
    Ok(out)
}

fn report_apply(out: &ApplyOutcome) {
    let d = &out.deployment;
    if out.created {
        println!("Created deployment {} (revision {})", d.id, d.revision);
    } else if out.changed {
        print!("Updated deployment {} (revision {})", d.id, d.revision);
        if out.removed_runs > 0 {
            print!(
                "; removed {} scheduled runs of the old spec",
                out.removed_runs
            );
        }
        println!();
    } else {
        println!("Deployment {} is unchanged (revision {})", d.id, d.revision);
    }
}

fn parse_env(pairs: &[String]) -> Result<BTreeMap<String, String>> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| anyhow!("--env {p:?}: expected KEY=VALUE"))
        })
        .collect()
}

/// Builds the spec from the flags and checks it completely before anything is written.
fn spec_from_build(args: &BuildArgs) -> Result<DeploymentSpec> {
    let entrypoint = Entrypoint::parse(&args.entrypoint).map_err(|e| anyhow!("{e}"))?;
    let rel = match &entrypoint {
        Entrypoint::Python { path, .. } | Entrypoint::Executable { path } => path.clone(),
    };
    let file = args.path.join(&rel);
    if !file.is_file() {
        bail!(
            "entrypoint: {} does not exist (the entrypoint is relative to --path {})",
            file.display(),
            args.path.display()
        );
    }
    let catchup: CatchUp = args.catchup.parse().map_err(|e| anyhow!("--{e}"))?;
    let infra_block = args
        .infra_block
        .as_deref()
        .map(|b| b.parse().map_err(|e| anyhow!("--infra-block (-ib): {e}")))
        .transpose()?;
    let mut infra_overrides = ferry_core::infra::Overrides::default();
    for pair in &args.overrides {
        infra_overrides
            .set_pair(pair)
            .map_err(|e| anyhow!("--override {pair:?}: {e}"))?;
    }
    let spec = DeploymentSpec {
        flow: args
            .flow
            .clone()
            .unwrap_or_else(|| entrypoint.default_flow_name()),
        name: args.name.clone(),
        version: args.version.clone(),
        description: args.description.clone(),
        tags: args.tags.clone(),
        work_queue: ferry_core::QueueName::parse("--work-queue", &args.work_queue)
            .map_err(|e| anyhow!("{e}"))?,
        entrypoint: entrypoint.clone(),
        bundle: None,
        parameters: parse_params(args.params_json.as_deref(), &args.params)?,
        schedules: spec_from_args(&args.schedule)?.into_iter().collect(),
        env: parse_env(&args.env)?,
        infrastructure: Infrastructure::Process {
            python: args.python.clone(),
        },
        infra_block,
        infra_overrides,
        retries: args.retries,
        retry_delay_seconds: args.retry_delay,
        timeout_seconds: args.timeout,
        concurrency_limit: args.concurrency_limit,
        paused: false,
        catchup,
    };
    validate_spec(&spec).map_err(|e| anyhow!("{e}"))?;
    Ok(spec)
}

async fn build(args: BuildArgs) -> Result<()> {
    let started = Instant::now();
    let mut spec = spec_from_build(&args)?;
    let client = Client::from_env()?;
    let root = args.path.clone();
    let packed = tokio::task::spawn_blocking(move || ferry_bundle::pack_dir(&root))
        .await?
        .with_context(|| format!("packaging {}", args.path.display()))?;
    let key = format!("/bundles/{}", packed.sha256);
    let size = packed.bytes.len() as u64;
    if !client.exists(&key).await? {
        // AWS mode hands out a presigned S3 PUT (API Gateway caps bodies at 10 MB); the
        // embedded server takes the bytes itself.
        let (_, upload): (_, serde_json::Value) = client
            .send_json(
                Method::POST,
                &format!("{key}/upload-url"),
                &serde_json::json!({}),
            )
            .await?;
        match serde_json::from_value::<Option<ferry_core::ports::UploadTarget>>(
            upload["target"].clone(),
        )? {
            Some(target) => client.put_direct(&target, packed.bytes).await?,
            None => client.put_bytes(&key, packed.bytes).await?,
        }
    }
    spec.bundle = Some(BundleRef {
        sha256: packed.sha256.clone(),
        size,
    });
    let out: PathBuf = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}-deployment.yaml", spec.name)));
    manifest::write(&out, &spec)?;
    println!(
        "Packaged {} files from {} ({} bytes, sha256 {})",
        packed.files,
        args.path.display(),
        size,
        packed.sha256
    );
    println!("Wrote manifest {}", out.display());
    if args.apply {
        report_apply(&apply(&client, &spec).await?);
    }
    tracing::debug!(elapsed = ?started.elapsed(), "build done");
    Ok(())
}

async fn apply_files(files: &[PathBuf], json: bool) -> Result<()> {
    // Read and parse every manifest before applying any, so one bad file changes nothing.
    let specs: Vec<(PathBuf, DeploymentSpec)> = files
        .iter()
        .map(|f| manifest::read(f).map(|s| (f.clone(), s)))
        .collect::<Result<_>>()?;
    for (f, s) in &specs {
        validate_spec(s).map_err(|e| anyhow!("{}: {e}", f.display()))?;
    }
    let client = Client::from_env()?;
    let mut outs = Vec::new();
    for (f, spec) in specs {
        let out = apply(&client, &spec)
            .await
            .with_context(|| format!("applying {}", f.display()))?;
        if !json {
            report_apply(&out);
        }
        outs.push(out);
    }
    if json {
        output::json(&outs)?;
    }
    Ok(())
}

fn print_deployment(d: &Deployment) -> Result<()> {
    println!("id:              {}", d.id);
    println!("revision:        {}", d.revision);
    println!("work queue:      {}", d.spec.work_queue);
    if let Some(b) = &d.spec.infra_block {
        println!("infra block:     {b}");
    }
    if !d.spec.infra_overrides.is_empty() {
        let pairs: BTreeMap<String, serde_json::Value> = d.spec.infra_overrides.clone().into();
        let pairs: Vec<String> = pairs
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        println!("overrides:       {}", pairs.join(", "));
    }
    println!("entrypoint:      {}", d.spec.entrypoint);
    if let Some(b) = &d.spec.bundle {
        println!("bundle:          sha256 {} ({} bytes)", b.sha256, b.size);
    }
    println!("schedules:       {}", schedule_summary(d));
    println!("paused:          {}", d.spec.paused);
    println!("catch-up:        {}", d.spec.catchup);
    println!("scheduled until: {}", output::opt_time(d.scheduled_until));
    println!("next tick at:    {}", output::opt_time(d.next_tick_at));
    println!("spec:");
    let yaml = serde_yaml_ng::to_string(&d.spec)?;
    for line in yaml.lines() {
        println!("  {line}");
    }
    Ok(())
}

pub async fn run(cmd: DeploymentCmd) -> Result<()> {
    match cmd {
        DeploymentCmd::Build(args) => build(*args).await,
        DeploymentCmd::Apply { files, out } => apply_files(&files, out.json).await,
        DeploymentCmd::Ls { out } => {
            let ds: Vec<Deployment> = Client::from_env()?.get("/deployments").await?;
            if out.json {
                return output::json(&ds);
            }
            if ds.is_empty() {
                output::empty("no deployments yet: create one with `ferry deployment build -a`");
                return Ok(());
            }
            output::table(
                &[
                    "DEPLOYMENT",
                    "QUEUE",
                    "INFRA",
                    "SCHEDULE",
                    "PAUSED",
                    "VERSION",
                ],
                ds.iter()
                    .map(|d| {
                        vec![
                            d.id.to_string(),
                            d.spec.work_queue.to_string(),
                            d.spec
                                .infra_block
                                .as_ref()
                                .map_or_else(|| "-".into(), |b| b.to_string()),
                            schedule_summary(d),
                            if d.spec.paused { "yes" } else { "no" }.into(),
                            d.spec.version.clone().unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect(),
            );
            Ok(())
        }
        DeploymentCmd::Inspect { id, out } => {
            let d: Deployment = Client::from_env()?.get(&id_path(&id)?).await?;
            if out.json {
                return output::json(&d);
            }
            print_deployment(&d)
        }
        DeploymentCmd::Pause { id } => {
            let (_, out): (_, ApplyOutcome) = Client::from_env()?
                .send_json(
                    Method::POST,
                    &format!("{}/pause", id_path(&id)?),
                    &serde_json::json!({}),
                )
                .await?;
            println!(
                "Paused deployment {} (removed {} scheduled runs)",
                out.deployment.id, out.removed_runs
            );
            Ok(())
        }
        DeploymentCmd::Resume { id } => {
            let (_, out): (_, ApplyOutcome) = Client::from_env()?
                .send_json(
                    Method::POST,
                    &format!("{}/resume", id_path(&id)?),
                    &serde_json::json!({}),
                )
                .await?;
            println!("Resumed deployment {}", out.deployment.id);
            Ok(())
        }
        DeploymentCmd::Delete { id } => {
            let (_, out): (_, serde_json::Value) = Client::from_env()?
                .send_json(Method::DELETE, &id_path(&id)?, &serde_json::json!({}))
                .await?;
            println!(
                "Deleted deployment {id} (removed {} waiting runs)",
                out.get("removed_runs")
                    .and_then(|v| v.as_u64())
                    .unwrap_or(0)
            );
            Ok(())
        }
        DeploymentCmd::Run {
            id,
            params,
            params_json,
            start_in,
            idempotency_key,
            watch,
            out,
        } => {
            let req = RunRequest {
                parameters: parse_params(params_json.as_deref(), &params)?,
                start_in_seconds: start_in.map(|d| d.as_secs() as i64),
                idempotency_key,
            };
            let client = Client::from_env()?;
            let (_, run): (_, FlowRun) = client
                .send_json(Method::POST, &format!("{}/runs", id_path(&id)?), &req)
                .await?;
            if !watch {
                if out.json {
                    return output::json(&run);
                }
                println!("{}", run.id);
                return Ok(());
            }
            println!("Flow run {} of {}", run.id, run.deployment);
            let done = super::watch::follow(&client, &run.id.to_string(), true, true).await?;
            if out.json {
                output::json(&done)?;
            }
            if done.state != ferry_core::StateType::Completed {
                anyhow::bail!(
                    "flow run {} ended {}{}",
                    done.id,
                    done.state,
                    done.state_message
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
    }
}
