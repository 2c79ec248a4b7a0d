//! The CloudFormation template: it lints clean, deploys into moto, and creates the same table
//! shape (indexes, keys, projections, stream) as `ferry aws bootstrap`.

use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_tests::{ferry_bin, require_emulators};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn venv(bin: &str) -> PathBuf {
    let dir = std::env::var_os("FERRY_EMULATORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".emulators"));
    dir.join("venv").join("bin").join(bin)
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn the_storage_template_lints_clean() {
    // scripts/emulators.sh installs cfn-lint in the emulators' venv.
    require_emulators();
    let out = Command::new(venv("cfn-lint"))
        .arg(repo().join("infra/storage.yaml"))
        .output()
        .expect("running cfn-lint");
    assert!(
        out.status.success(),
        "cfn-lint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const DESCRIBE: &str = r#"
import json, os, sys, time, boto3
mode, name = sys.argv[1], sys.argv[2]
moto = os.environ["AWS_ENDPOINT_URL"]
if mode == "stack":
    cf = boto3.client("cloudformation", endpoint_url=moto)
    body = open(sys.argv[3]).read()
    cf.create_stack(StackName=name, TemplateBody=body, Capabilities=["CAPABILITY_IAM"],
                    Parameters=[{"ParameterKey": "TableName", "ParameterValue": name},
                                {"ParameterKey": "BucketName", "ParameterValue": name}])
    for _ in range(60):
        st = cf.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
        if st.endswith("COMPLETE") or st.endswith("FAILED"):
            break
        time.sleep(0.5)
    assert st == "CREATE_COMPLETE", st
    ddb = boto3.client("dynamodb", endpoint_url=moto)
    boto3.client("s3", endpoint_url=moto).head_bucket(Bucket=name)
else:
    ddb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"])
t = ddb.describe_table(TableName=name)["Table"]
shape = {
    "keys": sorted((k["AttributeName"], k["KeyType"]) for k in t["KeySchema"]),
    "indexes": sorted(
        (g["IndexName"], sorted((k["AttributeName"], k["KeyType"]) for k in g["KeySchema"]),
         g["Projection"]["ProjectionType"])
        for g in t.get("GlobalSecondaryIndexes", [])),
    "stream": t.get("StreamSpecification", {}).get("StreamViewType"),
    "billing": t.get("BillingModeSummary", {}).get("BillingMode", "PAY_PER_REQUEST"),
}
print(json.dumps(shape, sort_keys=True))
"#;

fn shape(args: &[&str]) -> serde_json::Value {
    let out = Command::new(venv("python"))
        .arg("-c")
        .arg(DESCRIBE)
        .args(args)
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn the_template_and_bootstrap_create_the_same_table() {
    require_emulators();
    let id = format!(
        "ferry-infra-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let template = repo().join("infra/storage.yaml");
    let from_stack = shape(&["stack", &id, template.to_str().unwrap()]);
    let out = Command::new(ferry_bin())
        .args(["aws", "bootstrap", "--table", &id, "--bucket", &id])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let from_bootstrap = shape(&["table", &id]);
    assert_eq!(from_stack, from_bootstrap);
    assert_eq!(from_stack["indexes"].as_array().unwrap().len(), 5);
    assert_eq!(from_stack["stream"], "NEW_AND_OLD_IMAGES");
}
