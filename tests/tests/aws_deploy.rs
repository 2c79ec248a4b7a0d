//! `ferry aws deploy` / `ferry aws destroy` against moto: the control-plane and agent stacks are
//! created, a second deploy with nothing changed changes nothing, destroy removes the stacks and
//! keeps the data unless asked. The function zips are stand-ins (moto runs no Lambda code; the
//! real binaries run behind a Lambda Runtime API in tests/tests/lambda.rs).

use std::path::Path;
use std::process::{Command, Output};

use ferry_tests::{ferry_bin, require_emulators};

/// Stand-in zips in cargo-lambda's layout.
fn zips(dir: &Path) {
    for bin in [
        "ferry-api-lambda",
        "ferry-tick-lambda",
        "ferry-dispatch-lambda",
    ] {
        let d = dir.join(bin);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("bootstrap"), format!("#!/bin/sh\necho {bin}\n")).unwrap();
        let ok = Command::new("python3")
            .args(["-m", "zipfile", "-c", "bootstrap.zip", "bootstrap"])
            .current_dir(&d)
            .status()
            .unwrap()
            .success();
        assert!(ok, "zipping {bin}");
    }
}

/// `ferry ARGS` with every AWS call on moto (CloudFormation creates the table in moto's
/// DynamoDB, so DynamoDB goes there too in these commands).
fn ferry(args: &[&str]) -> Output {
    let out = Command::new(ferry_bin())
        .args(args)
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .env_remove("FERRY_BACKEND")
        .output()
        .expect("running ferry");
    eprintln!(
        "ferry {args:?}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn ok(args: &[&str]) -> String {
    let out = ferry(args);
    assert!(out.status.success(), "ferry {args:?} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn the_control_plane_and_agent_stacks_deploy_redeploy_unchanged_and_destroy_on_aws() {
    require_emulators();
    let dir = tempfile::tempdir().unwrap();
    zips(dir.path());
    let functions = dir.path().to_str().unwrap();
    let stack = format!(
        "ferry-t{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    );
    let deploy = |extra: &[&str]| ok(&deploy_args(&stack, functions, extra));
    let first = deploy(&[]);
    assert!(
        first.contains(&format!("Stack {stack}: created")),
        "{first}"
    );
    for key in [
        "ApiUrl",
        "TableName",
        "BucketName",
        "ClusterName",
        "InfraCreateCommand",
    ] {
        assert!(first.contains(key), "output {key} missing: {first}");
    }
    assert!(first.contains("FERRY_API_AUTH=iam"), "{first}");
    // The default artifacts bucket is named after the account (moto's) and the region.
    assert!(
        String::from_utf8_lossy(&ferry(&deploy_args(&stack, functions, &[])).stderr)
            .contains("s3://ferry-artifacts-123456789012-"),
        "the default artifacts bucket"
    );
    let again = deploy(&[]);
    assert!(
        again.contains(&format!("Stack {stack}: unchanged")),
        "{again}"
    );
    let with_agent = deploy(&["--agent-stack", "--queue", "default"]);
    assert!(
        with_agent.contains(&format!("Stack {stack}-agent: created")),
        "{with_agent}"
    );
    let gone = ok(&["aws", "destroy", "--stack", &stack]);
    assert!(
        gone.contains(&format!("Stack {stack}-agent: deleted")),
        "{gone}"
    );
    assert!(gone.contains(&format!("Stack {stack}: deleted")), "{gone}");
    assert!(gone.contains("Kept the data"), "{gone}");
    let twice = ok(&["aws", "destroy", "--stack", &stack]);
    assert!(twice.contains("does not exist"), "{twice}");
    // Another stack, destroyed with its data: nothing of it is left. (The kept table and
    // bucket of the first would make a new stack of the same name fail: their names are
    // taken until they are removed or imported.)
    let other = format!("{stack}-b");
    let args = deploy_args(&other, functions, &[]);
    assert!(ok(&args).contains(&format!("Stack {other}: created")));
    let all = ok(&["aws", "destroy", "--stack", &other, "--delete-data"]);
    assert!(all.contains(&format!("Stack {other}: deleted")), "{all}");
    assert!(!all.contains("Kept the data"), "{all}");
    let bucket = format!("{other}-data-123456789012-us-east-1");
    let head = Command::new(venv_python())
        .args([
            "-c",
            &format!("import boto3,sys; s=boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1'); print([b['Name'] for b in s.list_buckets()['Buckets'] if b['Name']=='{bucket}'])"),
            &std::env::var("AWS_ENDPOINT_URL").unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&head.stdout).trim(),
        "[]",
        "{head:?}"
    );
}

/// `ferry aws deploy` of `stack` with the stand-in zips in `functions` and `extra` flags.
fn deploy_args<'a>(stack: &'a str, functions: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "aws",
        "deploy",
        "--stack",
        stack,
        "--functions",
        functions,
        "--image",
        "ferry-agent:dev",
        "--subnet",
        "subnet-0123",
        "--security-group",
        "sg-0123",
    ];
    args.extend_from_slice(extra);
    args
}

/// The emulators' venv python (boto3 comes with moto).
fn venv_python() -> std::path::PathBuf {
    let dir = std::env::var_os("FERRY_EMULATORS_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.emulators"));
    dir.join("venv/bin/python")
}

#[test]
fn a_deploy_without_function_zips_says_how_to_build_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(ferry_bin())
        .args(["aws", "deploy", "--functions", dir.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ferry-api-lambda/bootstrap.zip is missing")
            && err.contains("scripts/package-functions.sh"),
        "{err}"
    );
}
