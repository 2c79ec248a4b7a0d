//! The ECS task launcher. Against moto (ignored by a plain test run: `scripts/test.sh` runs
//! them, `ferry_testkit`): what a launch asks of ECS, idempotency per (run, attempt), refusals,
//! image revisions registered once, stop and describe. Against a canned ECS inside the test
//! (no emulator): the exact RunTask request, throttling / 5xx / capacity / connection failures,
//! and the status of each lastStatus.
//!
//! moto 5.2.5 starts a Fargate task RUNNING and moves it one step per DescribeTasks that names
//! it (DEACTIVATING, STOPPING, DEPROVISIONING, STOPPED; desiredStatus stays RUNNING, exit code
//! 0), answers an unknown task by leaving it out (no `failures`), and ignores `clientToken`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ecs::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_ecs::types::{Compatibility, ContainerDefinition, NetworkMode, TaskField};
use chrono::Utc;
use ferry_aws::ecs::{image_family, EcsLauncher, TAG_IMAGE, TAG_IMAGE_OF};
use ferry_core::infra::{CapacityProvider, EcsTarget, InfraProfile, InfraSpec, Overrides};
use ferry_core::launch::{LaunchError, LaunchRequest, TaskLauncher, TaskRef, TaskStatus};
use ferry_core::RunId;
use ferry_testkit::require_emulators;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

// ------------------------------------------------------------------------------ moto fixture

/// A cluster and a task definition of their own in moto, and a launcher.
struct Fixture {
    ecs: aws_sdk_ecs::Client,
    launcher: EcsLauncher,
    cluster: String,
    family: String,
    subnet: String,
}

fn short_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

impl Fixture {
    async fn new() -> Self {
        require_emulators();
        let sdk = ferry_aws::config::sdk_config().await;
        let ecs = ferry_aws::config::ecs_client(&sdk);
        let id = short_id();
        let (cluster, family) = (format!("ferry-test-{id}"), format!("ferry-agent-{id}"));
        ecs.create_cluster()
            .cluster_name(&cluster)
            .send()
            .await
            .expect("create cluster");
        register_base(&ecs, &family, "ferry-agent:1").await;
        Self {
            launcher: EcsLauncher::new(ecs.clone()),
            ecs,
            cluster,
            family,
            subnet: default_subnet().await,
        }
    }

    fn target(&self) -> EcsTarget {
        EcsTarget {
            cluster: self.cluster.clone(),
            task_definition: self.family.clone(),
            container: "ferry".into(),
            subnets: vec![self.subnet.clone()],
            security_groups: vec![],
            assign_public_ip: false,
            capacity_providers: vec![],
            cpu: Some(256),
            memory: Some(512),
        }
    }

    fn request(&self) -> LaunchRequest {
        request_on(self.target())
    }

    /// A launcher as a new process (a new Lambda container) would have it: nothing cached.
    fn new_process(&self) -> EcsLauncher {
        EcsLauncher::new(self.ecs.clone())
    }

    async fn task_arns(&self) -> Vec<String> {
        let mut arns = Vec::new();
        for status in [
            aws_sdk_ecs::types::DesiredStatus::Running,
            aws_sdk_ecs::types::DesiredStatus::Stopped,
        ] {
            let out = self
                .ecs
                .list_tasks()
                .cluster(&self.cluster)
                .desired_status(status)
                .send()
                .await
                .unwrap();
            arns.extend(out.task_arns().iter().cloned());
        }
        arns
    }

    async fn task(&self, task: &TaskRef) -> aws_sdk_ecs::types::Task {
        let out = self
            .ecs
            .describe_tasks()
            .cluster(&self.cluster)
            .tasks(&task.0)
            .include(TaskField::Tags)
            .send()
            .await
            .unwrap();
        out.tasks().first().cloned().expect("moto holds the task")
    }

    /// The ARNs of the image revisions of this fixture's family.
    async fn image_revisions(&self) -> Vec<String> {
        let out = self.ecs.list_task_definitions().send().await.unwrap();
        let prefix = format!("task-definition/{}-img-", self.family);
        out.task_definition_arns()
            .iter()
            .filter(|a| a.contains(&prefix))
            .cloned()
            .collect()
    }
}

/// Registers the base task definition as infrastructure-as-code would (moto needs `memory` on
/// every container).
async fn register_base(ecs: &aws_sdk_ecs::Client, family: &str, image: &str) {
    ecs.register_task_definition()
        .family(family)
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(
            ContainerDefinition::builder()
                .name("ferry")
                .image(image)
                .memory(512)
                .essential(true)
                .build(),
        )
        .container_definitions(
            ContainerDefinition::builder()
                .name("log-router")
                .image("fluent-bit:3")
                .memory(64)
                .build(),
        )
        .send()
        .await
        .expect("register the base task definition");
}

/// A subnet moto's EC2 knows (its default VPC's), through EC2's query API: moto checks no
/// signature, and this keeps aws-sdk-ec2 out of the build.
async fn default_subnet() -> String {
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (moto)");
    let xml = reqwest::Client::new()
        .post(endpoint)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body("Action=DescribeSubnets&Version=2016-11-15&Filter.1.Name=default-for-az&Filter.1.Value.1=true")
        .send()
        .await
        .expect("moto EC2 DescribeSubnets")
        .text()
        .await
        .unwrap();
    let start = xml.find("<subnetId>").expect("a default subnet in moto") + "<subnetId>".len();
    let end = start + xml[start..].find("</subnetId>").unwrap();
    xml[start..end].to_owned()
}

fn request_on(target: EcsTarget) -> LaunchRequest {
    let now = Utc::now();
    let random: [u8; 10] = uuid::Uuid::new_v4().as_bytes()[..10].try_into().unwrap();
    LaunchRequest {
        run: RunId::adhoc(now, random),
        attempt: 1,
        deployment: "etl/nightly".into(),
        work_queue: "default".into(),
        profile: InfraProfile {
            name: "ecs/test".parse().unwrap(),
            spec: InfraSpec {
                ecs: Some(target),
                ..InfraSpec::default()
            },
            version: 1,
            created_at: now,
            updated_at: now,
        },
        overrides: Overrides::default(),
        env: BTreeMap::new(),
    }
}

fn env_of(task: &aws_sdk_ecs::types::Task) -> BTreeMap<String, String> {
    task.overrides()
        .and_then(|o| o.container_overrides().first())
        .map(|c| {
            c.environment()
                .iter()
                .map(|kv| {
                    (
                        kv.name().unwrap_or_default().to_owned(),
                        kv.value().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn permanent(e: LaunchError) -> String {
    match e {
        LaunchError::Permanent { message } => message,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

fn retryable(e: LaunchError) -> String {
    match e {
        LaunchError::Retryable { message } => message,
        other => panic!("expected a retryable error, got {other:?}"),
    }
}

// ------------------------------------------------------------------------------ against moto

#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn a_launch_runs_the_agent_command_with_merged_env_size_tags_and_network() {
    let fx = Fixture::new().await;
    let mut req = fx.request();
    req.attempt = 2;
    req.env.insert("FERRY_TABLE".into(), "ferry".into());
    req.env.insert("MODE".into(), "slow".into());
    req.overrides.set_pair("env.MODE=fast").unwrap();
    req.overrides.set_pair("cpu=1024").unwrap();

    let task = fx.launcher.launch(&req).await.unwrap();

    let t = fx.task(&task).await;
    assert_eq!(t.task_arn(), Some(task.0.as_str()));
    assert!(t
        .task_definition_arn()
        .unwrap()
        .ends_with(&format!("task-definition/{}:1", fx.family)));
    let o = t.overrides().expect("task overrides");
    let c = &o.container_overrides()[0];
    assert_eq!(c.name(), Some("ferry"));
    assert_eq!(c.command(), req.command().as_slice());
    assert_eq!(
        c.command(),
        ["agent", "execute", &req.run.to_string(), "--launch", "2"]
    );
    let env = env_of(&t);
    assert_eq!(env["MODE"], "fast", "the deployment's override wins");
    assert_eq!(env["FERRY_TABLE"], "ferry");
    // cpu overridden by the deployment, memory the profile's default.
    assert_eq!((o.cpu(), o.memory()), (Some("1024"), Some("512")));
    assert_eq!(t.launch_type().map(|l| l.as_str()), Some("FARGATE"));
    let started_by = t.started_by().unwrap();
    assert!(
        started_by.starts_with("ferry-") && started_by.len() <= 36,
        "{started_by}"
    );
    let subnet = t
        .attachments()
        .iter()
        .flat_map(|a| a.details())
        .find(|d| d.name() == Some("subnetId"))
        .and_then(|d| d.value());
    assert_eq!(subnet, Some(fx.subnet.as_str()));

    let tags: BTreeMap<String, String> = fx
        .ecs
        .list_tags_for_resource()
        .resource_arn(&task.0)
        .send()
        .await
        .unwrap()
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_owned(), t.value().unwrap().to_owned()))
        .collect();
    assert_eq!(tags["ferry:run"], req.run.to_string());
    assert_eq!(tags["ferry:deployment"], "etl/nightly");
    assert_eq!(tags["ferry:queue"], "default");
    assert_eq!(tags["ferry:launch"], "2");
}

#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn a_capacity_provider_strategy_replaces_the_launch_type() {
    let fx = Fixture::new().await;
    let mut target = fx.target();
    target.capacity_providers = vec![CapacityProvider {
        name: "FARGATE_SPOT".into(),
        weight: 1,
        base: 0,
    }];
    // moto refuses a launch type together with a strategy, as ECS does.
    let task = fx.launcher.launch(&request_on(target)).await.unwrap();
    let t = fx.task(&task).await;
    assert_eq!(t.capacity_provider_name(), Some("FARGATE_SPOT"));
    assert_ne!(t.launch_type().map(|l| l.as_str()), Some("FARGATE"));
}

#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn the_same_launch_twice_starts_one_task_and_the_next_attempt_another() {
    let fx = Fixture::new().await;
    let req = fx.request();
    let first = fx.launcher.launch(&req).await.unwrap();
    // The retry of the same launch, in this process and in a new one. moto ignores clientToken
    // (ECS honours it): the launcher finds the task by its startedBy.
    assert_eq!(fx.launcher.launch(&req).await.unwrap(), first);
    assert_eq!(fx.new_process().launch(&req).await.unwrap(), first);
    assert_eq!(fx.task_arns().await, vec![first.0.clone()]);

    // Still one after the task stopped.
    fx.launcher.stop(&first, "test").await.unwrap();
    assert_eq!(fx.launcher.launch(&req).await.unwrap(), first);

    let mut next = req.clone();
    next.attempt = 2;
    let second = fx.launcher.launch(&next).await.unwrap();
    assert_ne!(second, first);
    let mut arns = fx.task_arns().await;
    arns.sort();
    let mut want = vec![first.0, second.0];
    want.sort();
    assert_eq!(arns, want);
}

#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn refused_launches_are_permanent_and_name_what_to_fix() {
    let fx = Fixture::new().await;

    let mut bad_subnet = fx.target();
    bad_subnet.subnets = vec!["subnet-0nope".into()];
    let m = permanent(
        fx.launcher
            .launch(&request_on(bad_subnet))
            .await
            .unwrap_err(),
    );
    assert!(
        m.contains("subnet-0nope") && m.contains("fix --subnet on ecs/test"),
        "{m}"
    );

    let mut no_cluster = fx.target();
    no_cluster.cluster = format!("{}-gone", fx.cluster);
    let m = permanent(
        fx.launcher
            .launch(&request_on(no_cluster))
            .await
            .unwrap_err(),
    );
    assert!(
        m.contains(&format!("cluster {}-gone not found", fx.cluster))
            && m.contains("fix --cluster on ecs/test")
            && m.contains("Cluster not found."),
        "{m}"
    );

    let mut no_definition = fx.target();
    no_definition.task_definition = format!("{}:9", fx.family);
    let m = permanent(
        fx.launcher
            .launch(&request_on(no_definition.clone()))
            .await
            .unwrap_err(),
    );
    assert!(
        m.contains(&format!("task definition {}:9 not found", fx.family))
            && m.contains("fix --task-definition on ecs/test"),
        "{m}"
    );

    // The same for an image override, whose revision is copied from the task definition.
    let mut req = request_on(no_definition);
    req.overrides.set_pair("image=agent:2").unwrap();
    let m = permanent(fx.launcher.launch(&req).await.unwrap_err());
    assert!(m.contains("fix --task-definition on ecs/test"), "{m}");

    let mut no_container = fx.target();
    no_container.container = "agent".into();
    let mut req = request_on(no_container);
    req.overrides.set_pair("image=agent:2").unwrap();
    let m = permanent(fx.launcher.launch(&req).await.unwrap_err());
    assert!(m.contains("no container named \"agent\""), "{m}");

    let mut process = fx.request();
    process.profile.spec.ecs = None;
    let m = permanent(fx.launcher.launch(&process).await.unwrap_err());
    assert!(m.contains("has no ECS settings"), "{m}");

    assert!(
        fx.task_arns().await.is_empty(),
        "a refused launch started a task"
    );
}

#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn an_image_override_registers_one_revision_per_image_and_reuses_it() {
    let fx = Fixture::new().await;
    let with_image = |image: &str| {
        let mut r = fx.request();
        r.overrides.set_pair(&format!("image={image}")).unwrap();
        r
    };
    let image = "123456789012.dkr.ecr.us-east-1.amazonaws.com/agent:2";

    let a = fx.launcher.launch(&with_image(image)).await.unwrap();
    let revisions = fx.image_revisions().await;
    assert_eq!(revisions.len(), 1, "{revisions:?}");
    let family = image_family(&fx.family, image);
    assert!(
        revisions[0].ends_with(&format!("task-definition/{family}:1")),
        "{revisions:?}"
    );
    assert_eq!(
        fx.task(&a).await.task_definition_arn(),
        Some(revisions[0].as_str())
    );

    // The copy: the ferry container's image replaced, the rest as registered.
    let out = fx
        .ecs
        .describe_task_definition()
        .task_definition(&revisions[0])
        .include(aws_sdk_ecs::types::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    let def = out.task_definition().unwrap();
    let images: Vec<(&str, &str, i32)> = def
        .container_definitions()
        .iter()
        .map(|c| (c.name().unwrap(), c.image().unwrap(), c.memory().unwrap()))
        .collect();
    assert_eq!(
        images,
        vec![("ferry", image, 512), ("log-router", "fluent-bit:3", 64)]
    );
    assert_eq!(
        (
            def.cpu(),
            def.memory(),
            def.network_mode().map(|m| m.as_str())
        ),
        (Some("256"), Some("512"), Some("awsvpc"))
    );
    let tags: BTreeMap<&str, &str> = out
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert_eq!(tags[TAG_IMAGE_OF], format!("{}:1", fx.family));
    assert_eq!(tags[TAG_IMAGE], image);

    // Reused: by this launcher (cached) and by a new process (found in ECS).
    let b = fx.launcher.launch(&with_image(image)).await.unwrap();
    let c = fx.new_process().launch(&with_image(image)).await.unwrap();
    assert_eq!(fx.image_revisions().await, revisions);
    for t in [&b, &c] {
        assert_eq!(
            fx.task(t).await.task_definition_arn(),
            Some(revisions[0].as_str())
        );
    }

    // Another image: one more revision.
    fx.launcher.launch(&with_image("agent:3")).await.unwrap();
    fx.launcher.launch(&with_image("agent:3")).await.unwrap();
    assert_eq!(fx.image_revisions().await.len(), 2);

    // A new revision of the base (infrastructure-as-code changed it): the image gets a new
    // revision of its family, once.
    register_base(&fx.ecs, &fx.family, "ferry-agent:2").await;
    let d = fx.new_process().launch(&with_image(image)).await.unwrap();
    fx.new_process().launch(&with_image(image)).await.unwrap();
    let after = fx.image_revisions().await;
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!(
        fx.task(&d).await.task_definition_arn().unwrap(),
        after
            .iter()
            .find(|a| a.ends_with(&format!("{family}:2")))
            .unwrap()
    );
}

#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn a_stopped_task_is_described_stopped_with_its_reason_and_unknown_tasks_as_not_found() {
    let fx = Fixture::new().await;
    let task = fx.launcher.launch(&fx.request()).await.unwrap();
    let reason = format!("cancelled by a user {}", "x".repeat(300));
    fx.launcher.stop(&task, &reason).await.unwrap();

    let unknown = TaskRef(format!(
        "arn:aws:ecs:us-east-1:123456789012:task/{}/0123456789abcdef0123456789abcdef",
        fx.cluster
    ));
    let elsewhere =
        TaskRef("arn:aws:ecs:us-east-1:123456789012:task/no-such-cluster/0123456789abcdef".into());
    let statuses = fx
        .launcher
        .describe(&[unknown.clone(), task.clone(), elsewhere.clone()])
        .await
        .unwrap();
    let not_found = |why: &str| TaskStatus::Stopped {
        stop_code: None,
        reason: Some(why.into()),
        exit_code: None,
    };
    assert_eq!(statuses[0], not_found("task not found"));
    match &statuses[1] {
        TaskStatus::Stopped {
            reason: Some(r),
            exit_code,
            ..
        } => {
            assert_eq!(r.chars().count(), 255, "ECS caps a stop reason at 255");
            assert!(r.starts_with("cancelled by a user x"), "{r}");
            assert_eq!(*exit_code, Some(0), "moto's container exit code");
        }
        other => panic!("the stopped task: {other:?}"),
    }
    assert_eq!(
        statuses[2],
        not_found("task not found: cluster no-such-cluster no longer exists")
    );

    // Stopping what is stopped or unknown is Ok.
    fx.launcher.stop(&task, "again").await.unwrap();
    fx.launcher.stop(&unknown, "never ran").await.unwrap();
    fx.launcher.stop(&elsewhere, "never ran").await.unwrap();
    assert!(fx.launcher.describe(&[]).await.unwrap().is_empty());
}

// ------------------------------------------------------------------------------ canned ECS

/// A local ECS that answers each operation (`X-Amz-Target` suffix) with a canned status and
/// body, and 400 ThrottlingException for any other; it records every request.
struct CannedEcs {
    url: String,
    requests: Arc<Mutex<Vec<(String, Value)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CannedEcs {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const THROTTLED: (u16, &str) = (
    400,
    r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#,
);

impl CannedEcs {
    async fn start(answers: &[(&str, u16, Value)]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answers: Arc<BTreeMap<String, (u16, String)>> = Arc::new(
            answers
                .iter()
                .map(|(op, status, body)| ((*op).to_owned(), (*status, body.to_string())))
                .collect(),
        );
        let requests = Arc::new(Mutex::new(Vec::new()));
        let log = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let (answers, log) = (answers.clone(), log.clone());
                tokio::spawn(async move {
                    let Some((op, body)) = read_request(&mut sock).await else {
                        return;
                    };
                    let (status, answer) = answers
                        .get(&op)
                        .cloned()
                        .unwrap_or((THROTTLED.0, THROTTLED.1.to_owned()));
                    log.lock().unwrap().push((op, body));
                    let response = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                        answer.len()
                    );
                    sock.write_all(response.as_bytes()).await.unwrap();
                    sock.shutdown().await.unwrap();
                });
            }
        });
        Self {
            url,
            requests,
            task,
        }
    }

    fn ops(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|(op, _)| op.clone())
            .collect()
    }

    fn body_of(&self, op: &str) -> Value {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .find(|(o, _)| o == op)
            .map(|(_, b)| b.clone())
            .unwrap_or_else(|| panic!("no {op} request"))
    }

    /// A launcher talking to this ECS; `retries` attempts per call.
    fn launcher(&self, attempts: u32) -> EcsLauncher {
        EcsLauncher::new(client_at(&self.url, attempts))
    }
}

fn client_at(url: &str, attempts: u32) -> aws_sdk_ecs::Client {
    let conf = aws_sdk_ecs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(url)
        .retry_config(
            aws_sdk_ecs::config::retry::RetryConfig::standard()
                .with_max_attempts(attempts)
                .with_initial_backoff(Duration::from_millis(10)),
        )
        .timeout_config(
            aws_sdk_ecs::config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(Duration::from_secs(5))
                .build(),
        )
        .build();
    aws_sdk_ecs::Client::from_conf(conf)
}

/// One request: its operation (`RunTask`, ...) and JSON body.
async fn read_request(sock: &mut tokio::net::TcpStream) -> Option<(String, Value)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let length: usize = header("content-length")?.parse().ok()?;
    while buf.len() < head_end + length {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let op = header("x-amz-target")?.rsplit('.').next()?.to_owned();
    let body = serde_json::from_slice(&buf[head_end..head_end + length]).ok()?;
    Some((op, body))
}

fn canned_target() -> EcsTarget {
    EcsTarget {
        cluster: "prod".into(),
        task_definition: "ferry-agent:3".into(),
        container: "ferry".into(),
        subnets: vec!["subnet-a".into(), "subnet-b".into()],
        security_groups: vec![],
        assign_public_ip: true,
        capacity_providers: vec![],
        cpu: None,
        memory: None,
    }
}

const TASK_ARN: &str = "arn:aws:ecs:us-east-1:123456789012:task/prod/0a1b2c";

fn no_tasks() -> (&'static str, u16, Value) {
    ("ListTasks", 200, json!({"taskArns": []}))
}

#[tokio::test]
async fn run_task_carries_the_token_network_launch_type_and_no_size_unless_set() {
    let ecs = CannedEcs::start(&[
        no_tasks(),
        (
            "RunTask",
            200,
            json!({"tasks": [{"taskArn": TASK_ARN}], "failures": []}),
        ),
    ])
    .await;
    let req = request_on(canned_target());
    let task = ecs.launcher(1).launch(&req).await.unwrap();
    assert_eq!(task, TaskRef(TASK_ARN.into()));
    // Looked for a task of this launch first (running, then stopped), then ran one.
    assert_eq!(ecs.ops(), ["ListTasks", "ListTasks", "RunTask"]);
    let started_by: String = req.client_token().chars().take(36).collect();
    let list = ecs.body_of("ListTasks");
    assert_eq!(
        (list["cluster"].as_str(), list["startedBy"].as_str()),
        (Some("prod"), Some(started_by.as_str()))
    );

    let body = ecs.body_of("RunTask");
    assert_eq!(body["clientToken"], req.client_token());
    assert_eq!(body["startedBy"], started_by);
    assert_eq!(body["cluster"], "prod");
    assert_eq!(body["taskDefinition"], "ferry-agent:3");
    assert_eq!(body["count"], 1);
    assert_eq!(body["launchType"], "FARGATE");
    assert!(body.get("capacityProviderStrategy").is_none(), "{body}");
    assert_eq!(
        body["networkConfiguration"],
        json!({"awsvpcConfiguration": {
            "subnets": ["subnet-a", "subnet-b"],
            "securityGroups": [],
            "assignPublicIp": "ENABLED"
        }})
    );
    assert_eq!(body["enableECSManagedTags"], true);
    assert_eq!(body["propagateTags"], "TASK_DEFINITION");
    let o = &body["overrides"];
    assert!(o.get("cpu").is_none() && o.get("memory").is_none(), "{o}");
    assert_eq!(o["containerOverrides"][0]["name"], "ferry");
    assert_eq!(o["containerOverrides"][0]["command"], json!(req.command()));
}

#[tokio::test]
async fn throttling_is_retried_by_the_client_then_retryable() {
    let ecs = CannedEcs::start(&[]).await;
    // The production retry policy: 8 attempts with backoff, then the launcher's verdict.
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(&ecs.url)
        .load()
        .await;
    let retry = ferry_aws::config::sdk_config()
        .await
        .retry_config()
        .cloned()
        .expect("the shared configuration sets a retry policy");
    let conf = aws_sdk_ecs::config::Builder::from(&sdk)
        .retry_config(retry)
        .build();
    let launcher = EcsLauncher::new(aws_sdk_ecs::Client::from_conf(conf));
    let m = retryable(
        launcher
            .launch(&request_on(canned_target()))
            .await
            .unwrap_err(),
    );
    assert!(
        m.contains("ThrottlingException: Rate exceeded") && m.contains("cluster prod"),
        "{m}"
    );
    assert_eq!(ecs.ops().len(), 8, "{:?}", ecs.ops());
}

#[tokio::test]
async fn server_errors_capacity_failures_and_unreachable_ecs_are_retryable() {
    let server = CannedEcs::start(&[
        no_tasks(),
        (
            "RunTask",
            500,
            json!({"__type": "ServerException", "message": "Service unavailable"}),
        ),
    ])
    .await;
    let m = retryable(
        server
            .launcher(1)
            .launch(&request_on(canned_target()))
            .await
            .unwrap_err(),
    );
    assert!(m.contains("ServerException: Service unavailable"), "{m}");

    let capacity = CannedEcs::start(&[
        no_tasks(),
        (
            "RunTask",
            200,
            json!({"tasks": [], "failures": [{"arn": "arn:aws:ecs:us-east-1:1:container-instance/x", "reason": "RESOURCE:MEMORY"}]}),
        ),
    ])
    .await;
    let m = retryable(
        capacity
            .launcher(1)
            .launch(&request_on(canned_target()))
            .await
            .unwrap_err(),
    );
    assert!(m.contains("started no task: RESOURCE:MEMORY"), "{m}");

    // Nothing listens on a port just released.
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let launcher = EcsLauncher::new(client_at(&format!("http://127.0.0.1:{port}"), 1));
    let m = retryable(
        launcher
            .launch(&request_on(canned_target()))
            .await
            .unwrap_err(),
    );
    assert!(m.contains("dispatch failure"), "{m}");
}

#[tokio::test]
async fn client_errors_and_other_run_task_failures_are_permanent() {
    let denied = CannedEcs::start(&[
        no_tasks(),
        (
            "RunTask",
            400,
            json!({"__type": "AccessDeniedException", "message": "User: arn:aws:sts::1:assumed-role/l is not authorized to perform: ecs:RunTask"}),
        ),
    ])
    .await;
    let m = permanent(
        denied
            .launcher(1)
            .launch(&request_on(canned_target()))
            .await
            .unwrap_err(),
    );
    assert!(
        m.contains("grant it ecs:RunTask") && m.contains("is not authorized to perform"),
        "{m}"
    );
    assert_eq!(
        denied.ops(),
        ["ListTasks", "ListTasks", "RunTask"],
        "not retried"
    );

    let attribute = CannedEcs::start(&[
        no_tasks(),
        (
            "RunTask",
            200,
            json!({"tasks": [], "failures": [{"reason": "ATTRIBUTE", "detail": "requires ecs.capability.x"}]}),
        ),
    ])
    .await;
    let m = permanent(
        attribute
            .launcher(1)
            .launch(&request_on(canned_target()))
            .await
            .unwrap_err(),
    );
    assert!(m.contains("ATTRIBUTE (requires ecs.capability.x)"), "{m}");
}

#[tokio::test]
async fn each_last_status_maps_to_a_task_status_in_the_order_asked() {
    let arn = |id: &str| format!("arn:aws:ecs:us-east-1:123456789012:task/prod/{id}");
    let task = |id: &str, status: &str| {
        json!({"taskArn": arn(id), "lastStatus": status,
               "overrides": {"containerOverrides": [{"name": "ferry"}]},
               "containers": [{"name": "log-router", "exitCode": 0}, {"name": "ferry"}]})
    };
    let mut stopped = task("stopped", "STOPPED");
    stopped["stopCode"] = json!("TaskFailedToStart");
    stopped["stoppedReason"] = json!("CannotPullContainerError: pull access denied");
    stopped["containers"][1]["exitCode"] = json!(137);
    let ecs = CannedEcs::start(&[(
        "DescribeTasks",
        200,
        json!({
            "tasks": [stopped, task("running", "RUNNING"), task("provisioning", "PROVISIONING"),
                      task("activating", "ACTIVATING"), task("stopping", "STOPPING")],
            "failures": [{"arn": arn("missing"), "reason": "MISSING"}]
        }),
    )])
    .await;
    let asked: Vec<TaskRef> = [
        "missing",
        "running",
        "stopped",
        "absent",
        "provisioning",
        "activating",
        "stopping",
    ]
    .iter()
    .map(|id| TaskRef(arn(id)))
    .collect();
    let got = ecs.launcher(1).describe(&asked).await.unwrap();
    let not_found = TaskStatus::Stopped {
        stop_code: None,
        reason: Some("task not found".into()),
        exit_code: None,
    };
    assert_eq!(
        got,
        vec![
            not_found.clone(),
            TaskStatus::Running,
            TaskStatus::Stopped {
                stop_code: Some("TaskFailedToStart".into()),
                reason: Some("CannotPullContainerError: pull access denied".into()),
                exit_code: Some(137),
            },
            not_found,
            TaskStatus::Pending,
            TaskStatus::Pending,
            TaskStatus::Stopped {
                stop_code: None,
                reason: None,
                exit_code: None,
            },
        ]
    );
    // One call for the seven tasks of one cluster.
    assert_eq!(ecs.ops(), ["DescribeTasks"]);
    assert_eq!(
        ecs.body_of("DescribeTasks")["tasks"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
}

#[tokio::test]
async fn describe_asks_at_most_a_hundred_tasks_per_call_and_per_cluster() {
    let ecs =
        CannedEcs::start(&[("DescribeTasks", 200, json!({"tasks": [], "failures": []}))]).await;
    let mut asked: Vec<TaskRef> = (0..150)
        .map(|i| TaskRef(format!("arn:aws:ecs:us-east-1:1:task/a/{i:04}")))
        .collect();
    asked.push(TaskRef("arn:aws:ecs:us-east-1:1:task/b/x".into()));
    let got = ecs.launcher(1).describe(&asked).await.unwrap();
    assert_eq!(got.len(), 151);
    let calls: Vec<(String, usize)> = ecs
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|(_, b)| {
            (
                b["cluster"].as_str().unwrap().to_owned(),
                b["tasks"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        calls,
        [
            ("a".to_owned(), 100),
            ("a".to_owned(), 50),
            ("b".to_owned(), 1)
        ]
    );
}
