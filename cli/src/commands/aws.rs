//! `ferry aws ...`: bootstrap the storage (development), deploy and destroy the serverless
//! control plane (infra/control-plane.yaml) and the one-click agent stack (infra/agent.yaml).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::args::{AwsCmd, DeployArgs};
use crate::stacks;

const CONTROL_PLANE: &str = include_str!("../../../infra/control-plane.yaml");
const AGENT: &str = include_str!("../../../infra/agent.yaml");

/// The three function zips, as the control-plane template's parameters name their S3 keys,
/// in cargo-lambda's layout (`<dir>/<binary>/bootstrap.zip`).
const FUNCTIONS: [(&str, &str); 3] = [
    ("ApiCodeKey", "ferry-api-lambda"),
    ("TickCodeKey", "ferry-tick-lambda"),
    ("DispatchCodeKey", "ferry-dispatch-lambda"),
];

pub async fn run(cmd: AwsCmd) -> Result<()> {
    match cmd {
        AwsCmd::Bootstrap { table, bucket } => bootstrap(&table, &bucket).await,
        AwsCmd::Deploy(args) => deploy(args).await,
        AwsCmd::Destroy { stack, delete_data } => destroy(&stack, delete_data).await,
    }
}

async fn bootstrap(table: &str, bucket: &str) -> Result<()> {
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

/// The parameters a template declares, and whether each has a default.
fn declared_parameters(template: &str) -> Result<BTreeMap<String, bool>> {
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(template).context("reading a bundled template")?;
    Ok(doc
        .get("Parameters")
        .and_then(|p| p.as_mapping())
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_owned(), v.get("Default").is_some())))
                .collect()
        })
        .unwrap_or_default())
}

/// The values for `template`'s parameters from `given` (only those it declares); a parameter
/// without a default and without a value is an error naming the flag.
fn parameters_for<'a>(
    template: &str,
    stack: &str,
    given: &'a BTreeMap<String, String>,
    flag_of: impl Fn(&str) -> &'static str,
) -> Result<Vec<(&'a str, String)>> {
    let mut out = Vec::new();
    for (name, has_default) in declared_parameters(template)? {
        match given.get_key_value(&name) {
            Some((k, v)) => out.push((k.as_str(), v.clone())),
            None if has_default => {}
            None => bail!(
                "stack {stack} needs {name}: give it with {}",
                flag_of(&name)
            ),
        }
    }
    Ok(out)
}

fn flag_of(param: &str) -> &'static str {
    match param {
        "AgentImage" | "Image" => {
            "--image URI (the agent image in a registry the tasks can pull from)"
        }
        "Subnets" => "--subnet SUBNET (repeatable)",
        "SecurityGroups" => "--security-group SG (repeatable)",
        "Queues" => "--queue NAME (repeatable)",
        _ => "the matching flag (see `ferry aws deploy --help`)",
    }
}

/// The zips to deploy: `--functions DIR`, else `target/lambda` if it holds all three, else
/// built with `scripts/package-functions.sh` from this checkout.
fn function_zips(dir: Option<&Path>) -> Result<Vec<(&'static str, &'static str, PathBuf)>> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let default = PathBuf::from("target/lambda");
            let complete = FUNCTIONS
                .iter()
                .all(|(_, bin)| default.join(bin).join("bootstrap.zip").is_file());
            if !complete {
                let script = Path::new("scripts/package-functions.sh");
                if !script.is_file() {
                    bail!("no function zips: build them in a Ferry checkout with `scripts/package-functions.sh` (target/lambda/<binary>/bootstrap.zip) and pass --functions DIR");
                }
                eprintln!("Building the function zips (scripts/package-functions.sh)...");
                let ok = std::process::Command::new("bash")
                    .arg(script)
                    .status()
                    .context("running scripts/package-functions.sh")?
                    .success();
                if !ok {
                    bail!("scripts/package-functions.sh failed (its output above says why)");
                }
            }
            default
        }
    };
    FUNCTIONS
        .iter()
        .map(|(param, bin)| {
            let zip = dir.join(bin).join("bootstrap.zip");
            if !zip.is_file() {
                bail!(
                    "--functions {}: {} is missing (cargo-lambda's layout: <dir>/<binary>/bootstrap.zip; `scripts/package-functions.sh` builds it)",
                    dir.display(),
                    zip.display()
                );
            }
            Ok((*param, *bin, zip))
        })
        .collect()
}

/// Uploads each zip under a key named by its digest (so an unchanged zip is an unchanged
/// parameter and CloudFormation leaves the function alone); returns the keys by parameter.
async fn upload_zips(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    zips: &[(&'static str, &'static str, PathBuf)],
) -> Result<BTreeMap<String, String>> {
    let mut keys = BTreeMap::new();
    for (param, bin, path) in zips {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let key = format!(
            "ferry/functions/{bin}/{}.zip",
            hex::encode(Sha256::digest(&bytes))
        );
        let there = s3
            .head_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .is_ok();
        if !there {
            s3.put_object()
                .bucket(bucket)
                .key(&key)
                .body(bytes.into())
                .send()
                .await
                .map_err(|e| anyhow!("{}", ferry_core::error::error_chain(&e)))
                .with_context(|| format!("uploading {} to s3://{bucket}/{key}", path.display()))?;
        }
        eprintln!(
            "{bin}: s3://{bucket}/{key} ({})",
            if there { "already there" } else { "uploaded" }
        );
        keys.insert((*param).to_owned(), key);
    }
    Ok(keys)
}

/// The account and region the deploy works in (the region is required; the account names the
/// default buckets).
async fn account_and_region(sdk: &aws_config::SdkConfig) -> Result<(String, String)> {
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .ok_or_else(|| anyhow!("no AWS region: set AWS_REGION (or a profile with a region)"))?;
    let who = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| anyhow!("{}", ferry_core::error::error_chain(&e)))
        .context("finding the AWS account (sts:GetCallerIdentity): are AWS credentials set?")?;
    Ok((who.account().unwrap_or("unknown").to_owned(), region))
}

async fn deploy(args: DeployArgs) -> Result<()> {
    let zips = function_zips(args.functions.as_deref())?;
    let sdk = ferry_aws::config::sdk_config().await;
    let cf = aws_sdk_cloudformation::Client::new(&sdk);
    let s3 = ferry_aws::config::s3_client(&sdk);
    let (account, region) = account_and_region(&sdk).await?;
    let artifacts = args
        .artifacts_bucket
        .clone()
        .unwrap_or_else(|| format!("ferry-artifacts-{account}-{region}"));
    ferry_aws::bootstrap::ensure_bucket(&s3, &artifacts, Some(&region))
        .await
        .with_context(|| format!("creating the artifacts bucket {artifacts}"))?;
    let mut given = upload_zips(&s3, &artifacts, &zips).await?;
    given.insert("CodeBucket".into(), artifacts);
    given.insert(
        "TableName".into(),
        args.table.clone().unwrap_or_else(|| args.stack.clone()),
    );
    given.insert(
        "BucketName".into(),
        args.bucket
            .clone()
            .unwrap_or_else(|| format!("{}-data-{account}-{region}", args.stack)),
    );
    if let Some(image) = &args.image {
        given.insert("AgentImage".into(), image.clone());
        given.insert("Image".into(), image.clone());
    }
    if !args.subnets.is_empty() {
        given.insert("Subnets".into(), args.subnets.join(","));
    }
    if !args.security_groups.is_empty() {
        given.insert("SecurityGroups".into(), args.security_groups.join(","));
    }
    let params = parameters_for(CONTROL_PLANE, &args.stack, &given, flag_of)?;
    eprintln!(
        "Deploying stack {} (infra/control-plane.yaml)...",
        args.stack
    );
    let cp = stacks::deploy(&cf, &args.stack, CONTROL_PLANE, &params).await?;
    println!("Stack {}: {}", args.stack, cp.action);
    let mut outputs = cp.outputs;
    if args.agent_stack {
        let name = format!("{}-agent", args.stack);
        let mut given = given.clone();
        given.extend(outputs.clone());
        if !args.queues.is_empty() {
            given.insert("Queues".into(), args.queues.join(","));
        }
        let params = parameters_for(AGENT, &name, &given, flag_of)?;
        eprintln!("Deploying stack {name} (infra/agent.yaml)...");
        let agent = stacks::deploy(&cf, &name, AGENT, &params).await?;
        println!("Stack {name}: {}", agent.action);
        outputs.extend(agent.outputs);
    }
    println!();
    let width = outputs.keys().map(String::len).max().unwrap_or(0);
    for (k, v) in &outputs {
        println!("{k:width$}  {v}");
    }
    if let Some(url) = outputs.get("ApiUrl") {
        println!();
        println!("Use it with:");
        println!("  export FERRY_API_URL={url} FERRY_API_AUTH=iam");
    }
    Ok(())
}

async fn destroy(stack: &str, delete_data: bool) -> Result<()> {
    let sdk = ferry_aws::config::sdk_config().await;
    let cf = aws_sdk_cloudformation::Client::new(&sdk);
    let agent = format!("{stack}-agent");
    if stacks::destroy(&cf, &agent).await? {
        println!("Stack {agent}: deleted");
    }
    let data = stacks::outputs(&cf, stack).await.unwrap_or_default();
    if stacks::destroy(&cf, stack).await? {
        println!("Stack {stack}: deleted");
    } else {
        println!("Stack {stack}: does not exist");
    }
    let (table, bucket) = (data.get("TableName"), data.get("BucketName"));
    if !delete_data {
        if let (Some(t), Some(b)) = (table, bucket) {
            println!("Kept the data: table {t} and bucket {b} (remove them with --delete-data)");
        }
        return Ok(());
    }
    if let Some(t) = table {
        let r = ferry_aws::config::dynamodb_client(&sdk)
            .delete_table()
            .table_name(t)
            .send()
            .await;
        match r {
            Ok(_) => println!("Table {t}: deleted"),
            Err(e) if format!("{e:?}").contains("ResourceNotFoundException") => {}
            Err(e) => {
                return Err(anyhow!("{}", ferry_core::error::error_chain(&e)))
                    .with_context(|| format!("deleting table {t}"))
            }
        }
    }
    if let Some(b) = bucket {
        if empty_and_delete_bucket(&ferry_aws::config::s3_client(&sdk), b).await? {
            println!("Bucket {b}: deleted");
        }
    }
    Ok(())
}

/// Empties and deletes `bucket`; `false` when it does not exist (any more).
async fn empty_and_delete_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<bool> {
    if s3.head_bucket().bucket(bucket).send().await.is_err() {
        return Ok(false);
    }
    loop {
        let page = s3
            .list_objects_v2()
            .bucket(bucket)
            .send()
            .await
            .map_err(|e| anyhow!("{}", ferry_core::error::error_chain(&e)))
            .with_context(|| format!("listing bucket {bucket}"))?;
        if page.contents().is_empty() {
            break;
        }
        for o in page.contents() {
            if let Some(k) = o.key() {
                s3.delete_object()
                    .bucket(bucket)
                    .key(k)
                    .send()
                    .await
                    .map_err(|e| anyhow!("{}", ferry_core::error::error_chain(&e)))
                    .with_context(|| format!("deleting s3://{bucket}/{k}"))?;
            }
        }
    }
    s3.delete_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(|e| anyhow!("{}", ferry_core::error::error_chain(&e)))
        .with_context(|| format!("deleting bucket {bucket}"))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = "Parameters:\n  CodeBucket: {Type: String}\n  Subnets: {Type: CommaDelimitedList}\n  LogRetention: {Type: Number, Default: 30}\nResources:\n  Table:\n    Type: AWS::DynamoDB::Table\n    Properties:\n      TableName: !Ref AWS::StackName\n";

    #[test]
    fn only_the_declared_parameters_are_sent_and_a_missing_one_names_its_flag() {
        let declared = declared_parameters(TEMPLATE).unwrap();
        assert_eq!(declared.get("LogRetention"), Some(&true));
        assert_eq!(declared.get("Subnets"), Some(&false));
        let mut given = BTreeMap::from([
            ("CodeBucket".to_owned(), "b".to_owned()),
            ("Image".to_owned(), "not declared".to_owned()),
        ]);
        let e = parameters_for(TEMPLATE, "ferry", &given, flag_of).unwrap_err();
        assert!(
            e.to_string().contains("needs Subnets") && e.to_string().contains("--subnet"),
            "{e}"
        );
        given.insert("Subnets".into(), "subnet-a,subnet-b".into());
        let params = parameters_for(TEMPLATE, "ferry", &given, flag_of).unwrap();
        assert_eq!(
            params,
            vec![
                ("CodeBucket", "b".to_owned()),
                ("Subnets", "subnet-a,subnet-b".to_owned())
            ]
        );
    }

    #[test]
    fn function_zips_must_all_be_there() {
        let dir = tempfile::tempdir().unwrap();
        for (_, bin) in &FUNCTIONS[..2] {
            std::fs::create_dir_all(dir.path().join(bin)).unwrap();
            std::fs::write(dir.path().join(bin).join("bootstrap.zip"), b"zip").unwrap();
        }
        let e = function_zips(Some(dir.path())).unwrap_err().to_string();
        assert!(
            e.contains("ferry-dispatch-lambda/bootstrap.zip is missing"),
            "{e}"
        );
        let bin = FUNCTIONS[2].1;
        std::fs::create_dir_all(dir.path().join(bin)).unwrap();
        std::fs::write(dir.path().join(bin).join("bootstrap.zip"), b"zip").unwrap();
        assert_eq!(function_zips(Some(dir.path())).unwrap().len(), 3);
    }
}
