//! The CloudFormation templates (`infra/`): the storage-only stack, the serverless control
//! plane and the one-click agent service. They lint clean (cfn-lint) and pass checkov with no
//! failed check; no IAM statement grants a wildcard action; every API route needs SigV4; the
//! dispatch filter is the stream filter of the code; the control plane's storage is
//! storage.yaml's. Deployed into moto, each stack is created with its outputs, the control
//! plane's table has the shape `ferry aws bootstrap` creates, its outputs' `ferry infra create`
//! line is accepted by Ferry, and the agent's container command is a `ferry agent start` the
//! real binary runs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ferry_tests::{ferry_bin, require_emulators, Server};
use serde_json::{json, Value};
use serde_yaml_ng::Value as Yaml;

const TEMPLATES: [&str; 3] = [
    "infra/storage.yaml",
    "infra/control-plane.yaml",
    "infra/agent.yaml",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn emulators_dir() -> PathBuf {
    std::env::var_os("FERRY_EMULATORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".emulators"))
}

/// A tool of the emulators' venv (moto, cfn-lint, boto3), installed by scripts/emulators.sh.
fn venv(bin: &str) -> PathBuf {
    emulators_dir().join("venv").join("bin").join(bin)
}

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
    )
}

fn template(rel: &str) -> Yaml {
    let text = std::fs::read_to_string(repo().join(rel)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn resources(t: &Yaml) -> Vec<(String, &Yaml)> {
    t["Resources"]
        .as_mapping()
        .expect("a template has Resources")
        .iter()
        .map(|(k, v)| (k.as_str().unwrap().to_owned(), v))
        .collect()
}

fn of_type<'a>(t: &'a Yaml, ty: &str) -> Vec<(String, &'a Yaml)> {
    resources(t)
        .into_iter()
        .filter(|(_, r)| r["Type"].as_str() == Some(ty))
        .collect()
}

/// Every value of `key` anywhere in `v` (through intrinsic functions' tags too).
fn find_all<'a>(v: &'a Yaml, key: &str, out: &mut Vec<&'a Yaml>) {
    match v {
        Yaml::Mapping(m) => {
            for (k, v) in m {
                if k.as_str() == Some(key) {
                    out.push(v);
                }
                find_all(v, key, out);
            }
        }
        Yaml::Sequence(s) => s.iter().for_each(|v| find_all(v, key, out)),
        Yaml::Tagged(t) => find_all(&t.value, key, out),
        _ => {}
    }
}

fn strings(v: &Yaml) -> Vec<String> {
    match v {
        Yaml::String(s) => vec![s.clone()],
        Yaml::Sequence(s) => s.iter().flat_map(strings).collect(),
        other => panic!("expected a string or a list of strings, got {other:?}"),
    }
}

/// The statements a (possibly conditional) statement stands for: both branches of an
/// `!If [Condition, A, B]`, without an `!Ref AWS::NoValue` branch.
fn unconditional(statement: &Yaml) -> Vec<&Yaml> {
    match statement {
        Yaml::Tagged(t) if t.tag == "If" => {
            let branches = t.value.as_sequence().expect("!If takes a list");
            assert_eq!(branches.len(), 3, "!If [Condition, A, B]: {statement:?}");
            branches[1..].iter().flat_map(unconditional).collect()
        }
        Yaml::Tagged(t) if t.tag == "Ref" && t.value.as_str() == Some("AWS::NoValue") => vec![],
        other => vec![other],
    }
}

// ---------------------------------------------------------------------------------------------
// What the templates say (no emulator needed).

#[test]
fn no_iam_statement_grants_a_wildcard_action() {
    for rel in TEMPLATES {
        let t = template(rel);
        let mut statements = Vec::new();
        find_all(&t, "Statement", &mut statements);
        let mut actions = 0;
        for statement in statements
            .iter()
            .flat_map(|s| s.as_sequence().unwrap())
            .flat_map(unconditional)
        {
            assert!(
                statement.get("NotAction").is_none(),
                "{rel}: NotAction grants everything else: {statement:?}"
            );
            for action in strings(&statement["Action"]) {
                assert!(
                    !action.contains('*'),
                    "{rel}: wildcard action {action:?} in {statement:?}"
                );
                actions += 1;
            }
        }
        assert!(actions > 0, "{rel}: no IAM statement found");
    }
}

#[test]
fn every_api_route_requires_iam_authorization() {
    let t = template("infra/control-plane.yaml");
    let routes = of_type(&t, "AWS::ApiGatewayV2::Route");
    assert!(!routes.is_empty(), "the control plane has no API route");
    for (name, route) in &routes {
        assert_eq!(
            route["Properties"]["AuthorizationType"].as_str(),
            Some("AWS_IAM"),
            "route {name} is not behind IAM authorization"
        );
    }
    let integrations = of_type(&t, "AWS::ApiGatewayV2::Integration");
    assert_eq!(integrations.len(), 1);
    assert_eq!(
        integrations[0].1["Properties"]["PayloadFormatVersion"].as_str(),
        Some("2.0"),
        "ferry-api-lambda reads API Gateway's payload 2.0"
    );
}

#[test]
fn dispatch_is_invoked_only_for_records_the_stream_filter_of_the_code_keeps() {
    let t = template("infra/control-plane.yaml");
    let mappings = of_type(&t, "AWS::Lambda::EventSourceMapping");
    assert_eq!(mappings.len(), 1);
    let p = &mappings[0].1["Properties"];
    let filters = p["FilterCriteria"]["Filters"].as_sequence().unwrap();
    assert_eq!(filters.len(), 1);
    let pattern: Value = serde_json::from_str(filters[0]["Pattern"].as_str().unwrap()).unwrap();
    let code: Value = serde_json::from_str(ferry_aws::stream::LAMBDA_FILTER_PATTERN).unwrap();
    assert_eq!(pattern, code);
    assert_eq!(
        strings(&p["FunctionResponseTypes"]),
        ["ReportBatchItemFailures"]
    );
    assert_eq!(p["BisectBatchOnFunctionError"].as_bool(), Some(true));
    let retries = p["MaximumRetryAttempts"].as_u64().expect("bounded retries");
    assert!((0..=10).contains(&retries), "{retries} retries");
    assert!(matches!(
        p["DestinationConfig"]["OnFailure"]["Destination"],
        Yaml::Tagged(_)
    ));
}

/// The container definitions of task definition `name` (one, named `ferry`) and its properties.
fn ferry_container<'a>(t: &'a Yaml, name: &str) -> (&'a Yaml, &'a Yaml) {
    let p = &t["Resources"][name]["Properties"];
    let containers = p["ContainerDefinitions"].as_sequence().unwrap();
    assert_eq!(containers.len(), 1, "{name}");
    assert_eq!(containers[0]["Name"].as_str(), Some("ferry"), "{name}");
    (p, &containers[0])
}

#[test]
fn runs_and_agents_are_fargate_tasks_of_the_agent_image_logging_to_cloudwatch() {
    for (rel, name, image) in [
        ("infra/control-plane.yaml", "TaskDefinition", "AgentImage"),
        ("infra/agent.yaml", "TaskDefinition", "Image"),
    ] {
        let t = template(rel);
        let (p, c) = ferry_container(&t, name);
        assert_eq!(strings(&p["RequiresCompatibilities"]), ["FARGATE"], "{rel}");
        assert_eq!(p["NetworkMode"].as_str(), Some("awsvpc"), "{rel}");
        for role in ["TaskRoleArn", "ExecutionRoleArn"] {
            assert!(matches!(p[role], Yaml::Tagged(_)), "{rel}: no {role}");
        }
        assert_eq!(c["Image"], template_ref(image), "{rel}");
        assert_eq!(c["LogConfiguration"]["LogDriver"].as_str(), Some("awslogs"));
        // No hard container limit: a run's `--override memory=...` resizes the whole task.
        assert!(c.get("Memory").is_none(), "{rel}");
    }
}

fn template_ref(name: &str) -> Yaml {
    serde_yaml_ng::from_str(&format!("!Ref {name}")).unwrap()
}

#[test]
fn the_agent_service_is_fargate_in_the_given_network_and_rolls_back_a_failed_deployment() {
    let t = template("infra/agent.yaml");
    let p = &t["Resources"]["Service"]["Properties"];
    assert_eq!(p["LaunchType"].as_str(), Some("FARGATE"));
    assert_eq!(p["DesiredCount"], template_ref("DesiredCount"));
    let breaker = &p["DeploymentConfiguration"]["DeploymentCircuitBreaker"];
    assert_eq!(breaker["Enable"].as_bool(), Some(true));
    assert_eq!(breaker["Rollback"].as_bool(), Some(true));
    let vpc = &p["NetworkConfiguration"]["AwsvpcConfiguration"];
    assert_eq!(vpc["Subnets"], template_ref("Subnets"));
    assert_eq!(vpc["SecurityGroups"], template_ref("SecurityGroups"));
    assert_eq!(vpc["AssignPublicIp"], template_ref("AssignPublicIp"));
}

#[test]
fn the_control_plane_holds_the_storage_templates_table_and_bucket() {
    let storage = template("infra/storage.yaml");
    let plane = template("infra/control-plane.yaml");
    for name in ["Table", "Bucket"] {
        assert_eq!(
            storage["Resources"][name], plane["Resources"][name],
            "{name} differs between infra/storage.yaml and infra/control-plane.yaml: keep them equal"
        );
    }
}

#[test]
fn every_checkov_skip_says_why() {
    for rel in TEMPLATES {
        let t = template(rel);
        for (name, r) in resources(&t) {
            let Some(skips) = r.get("Metadata").and_then(|m| m.get("checkov")) else {
                continue;
            };
            for skip in skips["skip"].as_sequence().unwrap() {
                let id = skip["id"].as_str().unwrap();
                assert!(id.starts_with("CKV"), "{rel} {name}: {id}");
                let why = skip["comment"].as_str().unwrap_or_default();
                assert!(
                    why.len() >= 40,
                    "{rel} {name}: skip of {id} needs its reason: {why:?}"
                );
            }
        }
    }
}

#[test]
fn the_templates_use_no_yaml_aliases() {
    // CloudFormation refuses them ("YAML aliases are not allowed"); serde and cfn-lint do not.
    for rel in TEMPLATES {
        let text = std::fs::read_to_string(repo().join(rel)).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split(" #").next().unwrap();
            for token in code.split_whitespace() {
                let mut chars = token.chars();
                let first = chars.next().unwrap();
                let anchor_or_alias =
                    matches!(first, '&' | '*') && chars.next().is_some_and(char::is_alphabetic);
                assert!(!anchor_or_alias, "{rel}:{}: {line}", n + 1);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tools: cfn-lint and checkov, from scripts/emulators.sh's venvs.

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn every_template_lints_clean() {
    // scripts/emulators.sh installs cfn-lint in the emulators' venv.
    require_emulators();
    for rel in TEMPLATES {
        let out = Command::new(venv("cfn-lint"))
            .arg(repo().join(rel))
            .output()
            .expect("running cfn-lint");
        assert!(
            out.status.success(),
            "cfn-lint {rel}:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `checkov`'s counts line: "Passed checks: P, Failed checks: F, Skipped checks: S".
fn checkov_counts(out: &str) -> Option<(u32, u32, u32)> {
    let line = out.lines().find(|l| l.starts_with("Passed checks:"))?;
    let n: Vec<u32> = line
        .split(',')
        .map(|part| part.rsplit(' ').next()?.trim().parse().ok())
        .collect::<Option<_>>()?;
    Some((n[0], n[1], n[2]))
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn every_template_passes_checkov_with_no_failed_check() {
    // scripts/emulators.sh installs checkov in a venv of its own.
    require_emulators();
    let checkov = emulators_dir()
        .join("checkov-venv")
        .join("bin")
        .join("checkov");
    for rel in TEMPLATES {
        let out = Command::new(&checkov)
            .args([
                "--framework",
                "cloudformation",
                "--skip-download",
                "--quiet",
            ])
            .args(["--compact", "-f"])
            .arg(repo().join(rel))
            .output()
            .expect("running checkov (scripts/emulators.sh install)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let (passed, failed, skipped) = checkov_counts(&stdout).unwrap_or_else(|| {
            panic!(
                "checkov {rel} printed no counts:\n{stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        println!("checkov {rel}: {passed} passed, {failed} failed, {skipped} skipped");
        assert!(
            out.status.success() && failed == 0,
            "checkov {rel}:\n{stdout}"
        );
        assert!(passed > 0, "checkov {rel} checked nothing:\n{stdout}");
    }
}

// ---------------------------------------------------------------------------------------------
// Deployed into moto.

/// Python (boto3 from the emulators' venv): the shape of a table, the same for DynamoDB Local
/// and moto.
const SHAPE: &str = r#"
import io, json, os, sys, time, zipfile, boto3
def shape(ddb, name):
    t = ddb.describe_table(TableName=name)["Table"]
    return {
        "keys": sorted((k["AttributeName"], k["KeyType"]) for k in t["KeySchema"]),
        "indexes": sorted(
            (g["IndexName"], sorted((k["AttributeName"], k["KeyType"]) for k in g["KeySchema"]),
             g["Projection"]["ProjectionType"])
            for g in t.get("GlobalSecondaryIndexes", [])),
        "stream": t.get("StreamSpecification", {}).get("StreamViewType"),
        "billing": t.get("BillingModeSummary", {}).get("BillingMode", "PAY_PER_REQUEST"),
    }
moto = os.environ["AWS_ENDPOINT_URL"]
def client(service):
    return boto3.client(service, endpoint_url=moto)
"#;

/// `python -c SHAPE+DESCRIBE table NAME`: the table's shape in DynamoDB Local.
const DESCRIBE: &str = r#"
ddb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"])
print(json.dumps(shape(ddb, sys.argv[2]), sort_keys=True))
"#;

/// `python -c SHAPE+DEPLOY NAME TEMPLATE PARAMS_JSON`: creates the stack in moto (first a
/// function-code bucket with a dummy zip per `*CodeKey` parameter, and the cluster a
/// `ClusterName` parameter names), waits for it, and prints what it made: status, outputs, and
/// per resource what the test checks. Parameter values `@subnet` and `@group` become a default
/// subnet and security group of moto's EC2. moto's CloudFormation skips some types (API
/// Gateway v2, CloudWatch alarms: counted in `not_made_by_moto`) and keeps only part of an ECS
/// task definition (family, containers) or service (cluster, task definition, count): the
/// rest is checked on the templates themselves.
const DEPLOY: &str = r##"
name, template, params = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
ec2 = client("ec2")
subnet = ec2.describe_subnets(
    Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"][0]["SubnetId"]
group = ec2.describe_security_groups(
    Filters=[{"Name": "group-name", "Values": ["default"]}])["SecurityGroups"][0]["GroupId"]
params = {k: {"@subnet": subnet, "@group": group}.get(v, v) for k, v in params.items()}
if "CodeBucket" in params:
    s3 = client("s3")
    s3.create_bucket(Bucket=params["CodeBucket"])
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\nexit 1\n")
    for k, v in params.items():
        if k.endswith("CodeKey"):
            s3.put_object(Bucket=params["CodeBucket"], Key=v, Body=zipped.getvalue())
if params.get("ClusterName"):
    client("ecs").create_cluster(clusterName=params["ClusterName"])
cf = client("cloudformation")
cf.create_stack(StackName=name, TemplateBody=open(template).read(),
                Capabilities=["CAPABILITY_IAM"],
                Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in params.items()])
for _ in range(120):
    st = cf.describe_stacks(StackName=name)["Stacks"][0]
    if st["StackStatus"].endswith("COMPLETE") or st["StackStatus"].endswith("FAILED"):
        break
    time.sleep(0.5)
out = {"status": st["StackStatus"], "reason": st.get("StackStatusReason"),
       "outputs": {o["OutputKey"]: o["OutputValue"] for o in st.get("Outputs", [])},
       "subnet": subnet, "group": group, "resources": {}, "not_made_by_moto": 0}
def get(d, key):  # moto keeps CloudFormation's capitalised keys in task definitions
    return d.get(key, d.get(key[0].upper() + key[1:]))
for r in cf.describe_stack_resources(StackName=name)["StackResources"]:
    if "LogicalResourceId" not in r:  # a type moto's CloudFormation skips
        out["not_made_by_moto"] += 1
        continue
    typ, pid = r["ResourceType"], r.get("PhysicalResourceId")
    d = {"type": typ, "id": pid}
    if typ == "AWS::Lambda::Function":
        c = client("lambda").get_function_configuration(FunctionName=pid)
        d.update(runtime=c["Runtime"], handler=c["Handler"],
                 architectures=c.get("Architectures"),
                 env=c.get("Environment", {}).get("Variables", {}),
                 role=c["Role"], memory=c["MemorySize"], timeout=c["Timeout"])
    elif typ == "AWS::Lambda::EventSourceMapping":
        m = client("lambda").get_event_source_mapping(UUID=pid)
        d.update({k: m.get(k) for k in [
            "FunctionArn", "EventSourceArn", "StartingPosition", "FilterCriteria",
            "FunctionResponseTypes", "BisectBatchOnFunctionError", "MaximumRetryAttempts",
            "DestinationConfig"]})
    elif typ == "AWS::Events::Rule":
        events = client("events")
        d.update(schedule=events.describe_rule(Name=pid).get("ScheduleExpression"),
                 targets=[t["Arn"] for t in events.list_targets_by_rule(Rule=pid)["Targets"]])
    elif typ == "AWS::ECS::TaskDefinition":
        t = client("ecs").describe_task_definition(taskDefinition=pid)["taskDefinition"]
        d.update(family=t["family"],
                 containers=[{"name": get(c, "name"), "image": get(c, "image"),
                              "command": get(c, "command"),
                              "log_driver": get(get(c, "logConfiguration") or {}, "logDriver")}
                             for c in t["containerDefinitions"]])
    elif typ == "AWS::ECS::Service":
        s = client("ecs").describe_services(
            cluster=out["outputs"]["ClusterName"], services=[pid])["services"][0]
        d.update(cluster=s["clusterArn"], desired=s["desiredCount"],
                 task_definition=s["taskDefinition"])
    elif typ == "AWS::DynamoDB::Table":
        d["shape"] = shape(client("dynamodb"), pid)
    out["resources"][r["LogicalResourceId"]] = d
print(json.dumps(out, sort_keys=True, default=str))
"##;

/// `python -c SHAPE+RUN_TASK CLUSTER FAMILY SUBNET`: RunTask as Ferry's ECS launcher calls it
/// (Fargate, awsvpc, the command of the container `ferry` overridden); prints the answer.
const RUN_TASK: &str = r#"
cluster, family, subnet = sys.argv[1:4]
r = client("ecs").run_task(
    cluster=cluster, taskDefinition=family, launchType="FARGATE", startedBy="infra-test",
    networkConfiguration={"awsvpcConfiguration": {
        "subnets": [subnet], "securityGroups": [], "assignPublicIp": "DISABLED"}},
    overrides={"containerOverrides": [
        {"name": "ferry", "command": ["agent", "execute", "RUN", "--launch", "1"]}]})
print(json.dumps({"tasks": [t["taskArn"] for t in r["tasks"]], "failures": r["failures"]}))
"#;

fn python(script: &str, args: &[&str]) -> Value {
    let out = Command::new(venv("python"))
        .arg("-c")
        .arg(format!("{SHAPE}{script}"))
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

/// Creates stack `name` from `rel` in moto and describes what it made (see [`DEPLOY`]).
fn deploy(name: &str, rel: &str, params: Value) -> Value {
    let path = repo().join(rel);
    let stack = python(DEPLOY, &[name, path.to_str().unwrap(), &params.to_string()]);
    assert_eq!(stack["status"], "CREATE_COMPLETE", "{stack:#}");
    stack
}

/// The table's shape in DynamoDB Local after `ferry aws bootstrap`.
fn bootstrap_shape(name: &str) -> Value {
    let out = Command::new(ferry_bin())
        .args(["aws", "bootstrap", "--table", name, "--bucket", name])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    python(DESCRIBE, &["table", name])
}

fn resource<'a>(stack: &'a Value, name: &str) -> &'a Value {
    let r = &stack["resources"][name];
    assert!(r.is_object(), "moto made no {name}: {stack:#}");
    r
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn the_storage_template_and_bootstrap_create_the_same_table() {
    require_emulators();
    let id = unique("ferry-infra");
    let stack = deploy(
        &id,
        "infra/storage.yaml",
        json!({"TableName": id, "BucketName": id}),
    );
    for key in [
        "TableName",
        "TableStreamArn",
        "BucketName",
        "AccessPolicyArn",
        "StreamReadPolicyArn",
    ] {
        assert!(stack["outputs"][key].is_string(), "no {key}: {stack:#}");
    }
    let from_stack = &resource(&stack, "Table")["shape"];
    let from_bootstrap = bootstrap_shape(&id);
    assert_eq!(*from_stack, from_bootstrap);
    assert_eq!(from_stack["indexes"].as_array().unwrap().len(), 6);
    assert_eq!(from_stack["stream"], "NEW_AND_OLD_IMAGES");
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn the_control_plane_deploys_its_functions_tick_dispatch_and_run_tasks_into_moto() {
    require_emulators();
    let id = unique("ferry-cp");
    let stack = deploy(
        &id,
        "infra/control-plane.yaml",
        json!({
            "TableName": id, "BucketName": id, "CodeBucket": format!("{id}-code"),
            "ApiCodeKey": "ferry-api-lambda/bootstrap.zip",
            "TickCodeKey": "ferry-tick-lambda/bootstrap.zip",
            "DispatchCodeKey": "ferry-dispatch-lambda/bootstrap.zip",
            "AgentImage": "ferry-agent:test", "Subnets": "@subnet", "SecurityGroups": "@group",
        }),
    );
    let (subnet, group) = (
        stack["subnet"].as_str().unwrap(),
        stack["group"].as_str().unwrap(),
    );
    let outputs = &stack["outputs"];
    for key in [
        "ApiUrl",
        "TableName",
        "BucketName",
        "ClusterName",
        "TaskDefinition",
        "InfraCreateCommand",
    ] {
        assert!(outputs[key].is_string(), "no output {key}: {stack:#}");
    }
    assert_eq!(outputs["TableName"], id.as_str());
    assert_eq!(outputs["BucketName"], id.as_str());
    assert_eq!(outputs["ClusterName"], format!("{id}-runs"));
    assert_eq!(outputs["TaskDefinition"], format!("{id}-run"));
    // moto's CloudFormation makes no API Gateway v2 resource, so the id stays unresolved there.
    let api_url = outputs["ApiUrl"].as_str().unwrap();
    assert!(
        api_url.starts_with("https://")
            && api_url.ends_with(".execute-api.us-east-1.amazonaws.com"),
        "{api_url}"
    );
    let infra_create = outputs["InfraCreateCommand"].as_str().unwrap();
    assert_eq!(
        infra_create,
        format!(
            "ferry infra create ecs/default --cluster {id}-runs --task-definition {id}-run \
             --subnet {subnet} --security-group {group}"
        )
    );

    // The three functions, as cargo-lambda builds them.
    for (name, function) in [
        ("ApiFunction", "api"),
        ("TickFunction", "tick"),
        ("DispatchFunction", "dispatch"),
    ] {
        let f = resource(&stack, name);
        assert_eq!(f["id"], format!("{id}-{function}"));
        assert_eq!(f["runtime"], "provided.al2023");
        assert_eq!(f["handler"], "bootstrap");
        assert_eq!(f["architectures"], json!(["x86_64"]));
        assert_eq!(
            f["env"],
            json!({"FERRY_TABLE": id, "FERRY_BUCKET": id}),
            "{name}"
        );
    }
    let roles: std::collections::BTreeSet<&str> =
        ["ApiFunction", "TickFunction", "DispatchFunction"]
            .iter()
            .map(|n| resource(&stack, n)["role"].as_str().unwrap())
            .collect();
    assert_eq!(roles.len(), 3, "each function has its own role");

    // The tick every minute; dispatch on the table's stream.
    let rule = resource(&stack, "TickSchedule");
    assert_eq!(rule["schedule"], "rate(1 minute)");
    assert_eq!(
        rule["targets"],
        json!([format!(
            "arn:aws:lambda:us-east-1:123456789012:function:{id}-tick"
        )])
    );
    let mapping = resource(&stack, "DispatchEventSourceMapping");
    assert_eq!(
        mapping["FunctionArn"],
        format!("arn:aws:lambda:us-east-1:123456789012:function:{id}-dispatch")
    );
    assert_eq!(mapping["EventSourceArn"], outputs["TableStreamArn"]);
    assert_eq!(mapping["StartingPosition"], "LATEST");
    assert_eq!(
        mapping["FilterCriteria"]["Filters"][0]["Pattern"],
        ferry_aws::stream::LAMBDA_FILTER_PATTERN
    );
    assert_eq!(
        mapping["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert_eq!(mapping["BisectBatchOnFunctionError"], true);
    assert_eq!(
        mapping["DestinationConfig"]["OnFailure"]["Destination"],
        format!("arn:aws:sqs:us-east-1:123456789012:{id}-dispatch-failed")
    );

    // The runs' task definition: the agent image in the container `ferry` (moto's
    // CloudFormation keeps the family and containers only; the rest is checked on the template).
    let task = resource(&stack, "TaskDefinition");
    assert_eq!(task["family"], format!("{id}-run"));
    assert_eq!(task["containers"][0]["name"], "ferry");
    assert_eq!(task["containers"][0]["image"], "ferry-agent:test");
    assert_eq!(task["containers"][0]["log_driver"], "awslogs");
    println!(
        "control plane: {} resources made by moto, {} of types moto skips (API Gateway v2, alarms)",
        stack["resources"].as_object().unwrap().len(),
        stack["not_made_by_moto"]
    );

    // A run's task starts from the outputs as Ferry's launcher starts it.
    let started = python(
        RUN_TASK,
        &[
            outputs["ClusterName"].as_str().unwrap(),
            outputs["TaskDefinition"].as_str().unwrap(),
            subnet,
        ],
    );
    assert_eq!(started["failures"], json!([]), "{started:#}");
    assert_eq!(started["tasks"].as_array().unwrap().len(), 1, "{started:#}");

    // The table is the one `ferry aws bootstrap` makes.
    assert_eq!(resource(&stack, "Table")["shape"], bootstrap_shape(&id));

    // The output's `ferry infra create` line is one Ferry accepts, as printed.
    let s = Server::start_aws();
    let args: Vec<&str> = infra_create.split_whitespace().skip(1).collect();
    s.ok(&args);
    let profile = s.json(&["infra", "inspect", "ecs/default"]);
    let text = profile.to_string();
    for part in [
        format!("{id}-runs"),
        format!("{id}-run"),
        subnet.into(),
        group.into(),
    ] {
        assert!(text.contains(&part), "{part} not in {profile:#}");
    }
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn the_agent_stack_deploys_a_service_whose_command_the_real_agent_runs_for_every_queue() {
    require_emulators();
    let id = unique("ferry-agent");
    let params = json!({
        "Queues": "etl,reports", "Limit": "3", "Image": "ferry-agent:test", "DesiredCount": "2",
        "Subnets": "@subnet", "SecurityGroups": "@group", "TableName": id, "BucketName": id,
    });
    let stack = deploy(&id, "infra/agent.yaml", params.clone());
    for key in [
        "ClusterName",
        "ServiceName",
        "TaskDefinition",
        "LogGroupName",
        "AgentCommand",
    ] {
        assert!(
            stack["outputs"][key].is_string(),
            "no output {key}: {stack:#}"
        );
    }
    assert_eq!(stack["outputs"]["ClusterName"], format!("{id}-agents"));
    assert_eq!(
        stack["outputs"]["AgentCommand"],
        "ferry agent start -q etl -q reports --limit 3"
    );
    // moto's CloudFormation keeps a service's cluster, task definition and count only; the
    // launch type, network and circuit breaker are checked on the template.
    let service = resource(&stack, "Service");
    assert_eq!(service["desired"], 2);
    assert!(service["cluster"]
        .as_str()
        .unwrap()
        .ends_with(&format!("cluster/{id}-agents")));
    assert!(service["task_definition"]
        .as_str()
        .unwrap()
        .contains(&format!("task-definition/{id}-agent:")));

    let task = resource(&stack, "TaskDefinition");
    let container = &task["containers"][0];
    assert_eq!(container["name"], "ferry");
    assert_eq!(container["image"], "ferry-agent:test");
    assert_eq!(container["log_driver"], "awslogs");
    let command: Vec<&str> = container["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        command,
        ["agent", "start", "-q", "etl", "-q", "reports", "--limit", "3"]
    );

    // The container's command is one the real agent runs (the image's entrypoint is `ferry`).
    let s = Server::start_aws();
    let agent = s.agent(&command[2..]);
    std::thread::sleep(Duration::from_secs(2));
    let mut agent = agent;
    assert!(
        agent.child.try_wait().unwrap().is_none(),
        "`ferry {}` exited",
        command.join(" ")
    );
    agent.sigterm_and_wait(Duration::from_secs(30));

    // In an existing cluster, the stack makes none.
    let id2 = unique("ferry-agent-in");
    let mut params = params;
    params["ClusterName"] = json!(format!("{id2}-existing"));
    let stack = deploy(&id2, "infra/agent.yaml", params);
    assert!(stack["resources"].get("Cluster").is_none(), "{stack:#}");
    assert!(resource(&stack, "Service")["cluster"]
        .as_str()
        .unwrap()
        .ends_with(&format!("cluster/{id2}-existing")));
}
