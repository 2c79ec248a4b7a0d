use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use ferry_app::{ApplyOutcome, RunRequest};
use ferry_core::deployment::{BundleRef, Entrypoint, Infrastructure};
use ferry_core::validate::validate_spec;
use ferry_core::{CatchUp, Deployment, DeploymentId, DeploymentSpec, FlowRun};
use reqwest::Method;

use crate::args::{BuildArgs, DeploymentCmd};
use crate::client::Client;
use crate::{entrypoint, manifest, output};

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
            } else if let Some(e) = &s.schedule {
                e.clone()
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

/// Checks the entrypoint against the project directory `root` (see [`entrypoint::check`]).
fn check_entrypoint_on_disk(root: &Path, entry: &Entrypoint) -> Result<()> {
    let rel = match entry {
        Entrypoint::Python { path, .. } | Entrypoint::Executable { path } => path,
    };
    let file = root.join(rel);
    let shown_root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    if !file.is_file() {
        let what = if file.is_dir() {
            "is a directory"
        } else {
            "does not exist"
        };
        bail!(
            "entrypoint: {rel} {what} in the project directory {} (--path {}; the entrypoint is relative to it)",
            shown_root.display(),
            root.display()
        );
    }
    let contents = std::fs::read(&file)
        .with_context(|| format!("entrypoint: cannot read {}", file.display()))?;
    let meta = std::fs::metadata(&file)
        .with_context(|| format!("entrypoint: cannot read {}", file.display()))?;
    let project_file = entrypoint::ProjectFile {
        contents: &contents,
        executable: is_executable(&meta),
    };
    entrypoint::check(entry, &project_file).map_err(|m| anyhow!("entrypoint: {m}"))
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_meta: &std::fs::Metadata) -> bool {
    true
}

/// Builds the spec from the flags and checks it completely before anything is written.
fn spec_from_build(args: &BuildArgs) -> Result<DeploymentSpec> {
    let entrypoint = Entrypoint::parse(&args.entrypoint).map_err(|e| anyhow!("{e}"))?;
    check_entrypoint_on_disk(&args.path, &entrypoint)?;
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
        warm: args.warm,
    };
    validate_spec(&spec).map_err(|e| anyhow!("{}", flag_error(&e)))?;
    Ok(spec)
}

/// A validation error of a spec built from flags, told with the flag (and the manifest field):
/// `--timeout: must be at least 1 ... (timeout_seconds in the manifest)`.
fn flag_error(e: &ferry_core::ValidationError) -> String {
    let field = e.field.as_str();
    let top = field.split(['.', '[']).next().unwrap_or(field);
    let flag = match top {
        "flow" => "--flow",
        "name" => "--name",
        "version" => "--version",
        "description" => "--description",
        "tags" => "--tag",
        "parameters" => "--param/--params-json",
        "env" => "--env",
        "infrastructure" => "--python",
        "infra_block" => "--infra-block (-ib)",
        "infra_overrides" => "--override",
        "retries" => "--retries",
        "retry_delay_seconds" => "--retry-delay",
        "timeout_seconds" => "--timeout",
        "concurrency_limit" => "--concurrency-limit",
        "catchup" => "--catchup",
        "warm" => "--warm",
        _ => return e.to_string(),
    };
    format!("{flag}: {} ({field} in the manifest)", e.message)
}

/// Packs the project, writes the bundle and the manifest beside it, and applies it with `-a`.
/// Without `-a` nothing talks to the API: the upload happens at apply.
async fn build(args: BuildArgs) -> Result<()> {
    let started = Instant::now();
    let mut spec = spec_from_build(&args)?;
    let out: PathBuf = args
        .output
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}-deployment.yaml", spec.name)));
    // The manifest and its bundle may be written inside the project: never packed (nor any
    // other manifest or bundle there; see ferry_bundle's docs).
    let exclude = vec![out.clone(), manifest::bundle_path(&out)];
    let root = args.path.clone();
    let packed =
        tokio::task::spawn_blocking(move || ferry_bundle::pack_dir_excluding(&root, &exclude))
            .await?
            .with_context(|| format!("packaging {}", args.path.display()))?;
    let size = packed.bytes.len() as u64;
    spec.bundle = Some(BundleRef {
        sha256: packed.sha256.clone(),
        size,
    });
    validate_spec(&spec).map_err(|e| anyhow!("{}", flag_error(&e)))?;
    manifest::write(&out, &spec, &packed.bytes)?;
    if args.json {
        let applied = if args.apply {
            apply_loaded(std::slice::from_ref(&out), false).await?.pop()
        } else {
            None
        };
        return output::json(&BuildReport {
            manifest: &out,
            bundle_file: manifest::bundle_path(&out),
            files: packed.files,
            left_out: &packed.left_out,
            spec: &spec,
            applied,
        });
    }
    println!(
        "Packaged {} files from {} ({} bytes, sha256 {})",
        packed.files,
        args.path.display(),
        size,
        packed.sha256
    );
    if !packed.left_out.is_empty() {
        println!(
            "Left out of the bundle (Ferry's manifests and bundles): {}",
            packed.left_out.join(", ")
        );
    }
    println!(
        "Wrote manifest {} and its bundle {}",
        out.display(),
        manifest::bundle_path(&out).display()
    );
    if args.apply {
        apply_files(std::slice::from_ref(&out), false).await?;
    } else {
        println!(
            "Apply it (uploads the bundle): ferry deployment apply {}",
            out.display()
        );
    }
    tracing::debug!(elapsed = ?started.elapsed(), "build done");
    Ok(())
}

/// A manifest read for apply, with its bundle when it lies beside it.
struct Loaded {
    file: PathBuf,
    spec: DeploymentSpec,
    bundle: Option<Vec<u8>>,
}

/// Reads a manifest and the bundle beside it, and checks them together: the bundle is the
/// one the manifest names, and the entrypoint is in it.
fn load_manifest(file: &Path) -> Result<Loaded> {
    let spec = manifest::read(file)?;
    let at = file.display();
    validate_spec(&spec).map_err(|e| anyhow!("{at}: {e}"))?;
    let Some(bundle_ref) = &spec.bundle else {
        return Ok(Loaded {
            file: file.to_path_buf(),
            spec,
            bundle: None,
        });
    };
    let path = manifest::bundle_path(file);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Loaded {
                file: file.to_path_buf(),
                spec,
                bundle: None,
            })
        }
        Err(e) => {
            return Err(e)
                .with_context(|| format!("{at}: cannot read its bundle {}", path.display()))
        }
    };
    let digest = ferry_bundle::sha256_hex(&bytes);
    if digest != bundle_ref.sha256 {
        bail!(
            "{at}: bundle.sha256: the manifest names {} but its bundle {} is {digest}: build again (`ferry deployment build`) to write both",
            bundle_ref.sha256,
            path.display()
        );
    }
    let rel = match &spec.entrypoint {
        Entrypoint::Python { path, .. } | Entrypoint::Executable { path } => path.clone(),
    };
    let found = ferry_bundle::read_bundled_file(&bytes, &rel)
        .with_context(|| format!("{at}: reading its bundle {}", path.display()))?;
    let Some(found) = found else {
        bail!(
            "{at}: entrypoint: {rel} is not in the bundle {} (packed from the project at build): fix the entrypoint, or build from the directory that holds it",
            path.display()
        );
    };
    let project_file = entrypoint::ProjectFile {
        contents: &found.contents,
        executable: found.executable,
    };
    entrypoint::check(&spec.entrypoint, &project_file)
        .map_err(|m| anyhow!("{at}: entrypoint: {m}"))?;
    Ok(Loaded {
        file: file.to_path_buf(),
        spec,
        bundle: Some(bytes),
    })
}

/// Puts a bundle where the server keeps bundles (unless it is there already).
async fn upload_bundle(client: &Client, sha256: &str, bytes: Vec<u8>) -> Result<()> {
    let key = format!("/bundles/{sha256}");
    // AWS mode hands out a presigned S3 PUT (API Gateway caps bodies at 10 MB); the embedded
    // server takes the bytes itself.
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
        Some(target) => client.put_direct(&target, bytes).await,
        None => client.put_bytes(&key, bytes).await,
    }
}

/// What `deployment build --json` prints.
#[derive(serde::Serialize)]
struct BuildReport<'a> {
    /// The manifest written.
    manifest: &'a Path,
    /// Its bundle, beside it.
    bundle_file: PathBuf,
    /// Files packed into the bundle.
    files: usize,
    /// Ferry's manifests and bundles left out of it.
    left_out: &'a [String],
    /// The manifest's deployment (its `bundle` names the bundle's digest and size).
    spec: &'a DeploymentSpec,
    /// With `-a`: what the apply did; else `null`.
    applied: Option<ApplyOutcome>,
}

async fn apply_files(files: &[PathBuf], json: bool) -> Result<()> {
    let outs = apply_loaded(files, !json).await?;
    if json {
        output::json(&outs)?;
    }
    Ok(())
}

/// Applies manifests (see [`apply_files`]), reporting each apply as it is done when `report`,
/// and returns what each apply did, in order.
async fn apply_loaded(files: &[PathBuf], report: bool) -> Result<Vec<ApplyOutcome>> {
    // Read and check every manifest (and its bundle) before applying any, so one bad file
    // changes nothing.
    let mut loaded: Vec<Loaded> = files
        .iter()
        .map(|f| load_manifest(f))
        .collect::<Result<_>>()?;
    let client = Client::from_env()?;
    // Every bundle is on the server, or beside its manifest to upload, before anything is
    // applied.
    let mut uploads = Vec::new();
    for l in &mut loaded {
        let Some(b) = &l.spec.bundle else { continue };
        if client.exists(&format!("/bundles/{}", b.sha256)).await? {
            continue;
        }
        match l.bundle.take() {
            Some(bytes) => uploads.push((b.sha256.clone(), bytes)),
            None => bail!(
                "{}: bundle.sha256: bundle {} is neither on the server nor beside the manifest ({}): build again with `ferry deployment build`",
                l.file.display(),
                b.sha256,
                manifest::bundle_path(&l.file).display()
            ),
        }
    }
    for (sha, bytes) in uploads {
        upload_bundle(&client, &sha, bytes)
            .await
            .with_context(|| format!("uploading bundle {sha}"))?;
    }
    let mut outs = Vec::new();
    for l in loaded {
        let out = apply(&client, &l.spec)
            .await
            .with_context(|| format!("applying {}", l.file.display()))?;
        if report {
            report_apply(&out);
        }
        outs.push(out);
    }
    Ok(outs)
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
            watch_timeout,
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
            let done = super::watch::watch(&client, &run, watch_timeout).await?;
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
