//! Task-per-run benchmark against DynamoDB Local (with its stream) and moto (ECS), run by
//! `bench/launch.sh`: dispatch latency (run created → RunTask called) through the table's
//! stream and the dispatch use case, RunTask calls per run with every stream record delivered
//! twice, and DynamoDB requests / RCU / WCU per launched run (launch side and task side).
//! Prints a table.
//!
//! `cargo run --release -p ferry-aws --example launch -- [RUNS=100]` with the emulator
//! environment (`eval "$(scripts/emulators.sh env)"`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_ecs::types::{Compatibility, ContainerDefinition, NetworkMode};
use ferry_app::{Ferry, RunRequest, SystemClock, TakeOver};
use ferry_aws::{bootstrap, config, CapacityMeter, DynamoStore, EcsLauncher};
use ferry_core::infra::{EcsTarget, InfraKind, InfraSpec};
use ferry_core::launch::{LaunchError, LaunchRequest, TaskLauncher, TaskRef, TaskStatus};
use ferry_core::state::RunEvent;
use ferry_core::RunId;
use tokio_util::sync::CancellationToken;

type Snap = (u64, f64, f64);

fn delta(a: Snap, b: Snap) -> Snap {
    (b.0 - a.0, b.1 - a.1, b.2 - a.2)
}

/// The ECS launcher, noting when each run's first launch call came.
struct Timed {
    inner: EcsLauncher,
    first_call: Mutex<HashMap<RunId, Instant>>,
}

#[async_trait]
impl TaskLauncher for Timed {
    async fn launch(&self, r: &LaunchRequest) -> Result<TaskRef, LaunchError> {
        self.first_call
            .lock()
            .unwrap()
            .entry(r.run)
            .or_insert_with(Instant::now);
        self.inner.launch(r).await
    }
    async fn stop(&self, task: &TaskRef, reason: &str) -> Result<(), LaunchError> {
        self.inner.stop(task, reason).await
    }
    async fn describe(&self, tasks: &[TaskRef]) -> Result<Vec<TaskStatus>, LaunchError> {
        self.inner.describe(tasks).await
    }
}

/// A subnet moto's EC2 knows, through EC2's query API (no aws-sdk-ec2 in the build).
async fn default_subnet() -> anyhow::Result<String> {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")?;
    let xml = reqwest::Client::new()
        .post(endpoint)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0",
        )
        .body("Action=DescribeSubnets&Version=2016-11-15&Filter.1.Name=default-for-az&Filter.1.Value.1=true")
        .send()
        .await?
        .text()
        .await?;
    let start = xml
        .find("<subnetId>")
        .ok_or_else(|| anyhow::anyhow!("no default subnet in moto"))?
        + "<subnetId>".len();
    let end = start + xml[start..].find("</subnetId>").unwrap_or(0);
    Ok(xml[start..end].to_owned())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(100);
    let sdk = config::sdk_config().await;
    let dynamodb = config::dynamodb_client(&sdk);
    let ecs = config::ecs_client(&sdk);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let (table, bucket, cluster) = (
        format!("ferry-bench-{id}"),
        format!("ferry-bench-{id}"),
        format!("bench-{}", &id[..12]),
    );
    bootstrap::ensure_table(&dynamodb, &table).await?;
    bootstrap::ensure_bucket(&config::s3_client(&sdk), &bucket, None).await?;
    ecs.create_cluster().cluster_name(&cluster).send().await?;
    ecs.register_task_definition()
        .family("ferry-agent")
        .network_mode(NetworkMode::Awsvpc)
        .requires_compatibilities(Compatibility::Fargate)
        .cpu("256")
        .memory("512")
        .container_definitions(
            ContainerDefinition::builder()
                .name("ferry")
                .image("ferry-agent:dev")
                .memory(512)
                .essential(true)
                .build(),
        )
        .send()
        .await?;
    let meter = Arc::new(CapacityMeter::default());
    let store = Arc::new(DynamoStore::new(dynamodb.clone(), &table).with_meter(meter.clone()));
    let s3 = config::s3_client(&sdk);
    let launcher = Arc::new(Timed {
        inner: EcsLauncher::new(ecs.clone()),
        first_call: Mutex::default(),
    });
    let ferry = Ferry::new(
        store,
        Arc::new(ferry_aws::S3CodeStore::new(s3.clone(), &bucket)),
        Arc::new(ferry_aws::S3LogSink::new(s3, &bucket)),
        Arc::new(SystemClock),
    )
    .with_launcher(InfraKind::Ecs, launcher.clone());
    ferry.ensure_default_queue().await?;
    let target: EcsTarget = serde_json::from_value(serde_json::json!({
        "cluster": cluster, "task_definition": "ferry-agent",
        "subnets": [default_subnet().await?], "security_groups": ["sg-bench"]
    }))?;
    let spec = InfraSpec {
        ecs: Some(target),
        ..InfraSpec::default()
    };
    ferry.put_infra(&"ecs/bench".parse()?, spec).await?;
    ferry
        .apply_deployment(serde_json::from_value(serde_json::json!({
            "flow": "bench", "name": "launched", "entrypoint": "run.sh", "infra_block": "ecs/bench"
        }))?)
        .await?;
    let deployment: ferry_core::DeploymentId = "bench/launched".parse()?;

    // Dispatch as deployed: the table's stream → the dispatch use case; every record is
    // delivered twice (as Lambda may), concurrently.
    let stop = CancellationToken::new();
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    ferry_aws::stream::StreamReader::new(
        config::dynamodb_streams_client(&sdk),
        dynamodb.clone(),
        table.clone(),
    )
    .start(tx, stop.clone())
    .await?;
    let dispatcher = ferry.clone();
    tokio::spawn(async move {
        while let Some(id) = rx.recv().await {
            for _ in 0..2 {
                let f = dispatcher.clone();
                tokio::spawn(async move { f.dispatch(id).await });
            }
        }
    });

    let s0 = meter.snapshot();
    let mut created: Vec<(RunId, Instant)> = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (run, _) = ferry.create_run(&deployment, RunRequest::default()).await?;
        created.push((run.id, Instant::now()));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut done = 0;
        for (id, _) in &created {
            let r = ferry.get_run(*id).await?;
            if r.launch.as_ref().is_some_and(|l| l.task.is_some()) {
                done += 1;
            }
        }
        if done == runs {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {done} of {runs} launched");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // the duplicate deliveries settle
    let s1 = meter.snapshot();
    let calls = launcher.first_call.lock().unwrap().clone();
    let mut latency: Vec<f64> = created
        .iter()
        .map(|(id, at)| calls[id].duration_since(*at).as_secs_f64() * 1000.0)
        .collect();
    latency.sort_by(f64::total_cmp);

    // RunTask per run: the tasks moto holds on the cluster.
    let mut tasks = 0;
    let mut token = None;
    loop {
        let page = ecs
            .list_tasks()
            .cluster(&cluster)
            .set_next_token(token)
            .send()
            .await?;
        tasks += page.task_arns().len();
        token = page.next_token().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }

    // The task side, in-process: take over, start, one heartbeat, complete.
    let s2 = meter.snapshot();
    for (id, _) in &created {
        let TakeOver::Taken(run, _) = ferry.take_over(*id, 1, "bench-task").await? else {
            anyhow::bail!("take over of {id} refused");
        };
        let run = ferry.start(*run, None).await?.expect("started");
        let run = match ferry.heartbeat(run).await? {
            ferry_app::Heartbeat::Renewed(r) => *r,
            other => anyhow::bail!("heartbeat: {other:?}"),
        };
        ferry
            .finish(run, RunEvent::Complete { result: None })
            .await?;
    }
    let s3 = meter.snapshot();
    stop.cancel();

    let n = runs as f64;
    let per = |s: Snap| {
        format!(
            "{:.2} req, {:.2} RCU, {:.2} WCU",
            s.0 as f64 / n,
            s.1 / n,
            s.2 / n
        )
    };
    let launch_side = delta(s0, s1);
    let task_side = delta(s2, s3);
    let whole = (
        launch_side.0 + task_side.0,
        launch_side.1 + task_side.1,
        launch_side.2 + task_side.2,
    );
    let rows = [
        (
            format!("dispatch latency, run created → RunTask called ({runs} runs)"),
            format!(
                "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                percentile(&latency, 0.5),
                percentile(&latency, 0.99),
                latency[latency.len() - 1]
            ),
        ),
        (
            "RunTask calls per run (each stream record delivered twice)".into(),
            format!("{:.2} ({tasks} tasks for {runs} runs)", tasks as f64 / n),
        ),
        (
            "DynamoDB, launch side per run (create, 2× dispatch, claim, record task)".into(),
            per(launch_side),
        ),
        (
            "DynamoDB, task side per run (take over, start, heartbeat, complete)".into(),
            per(task_side),
        ),
        ("DynamoDB, whole launched run".into(), per(whole)),
    ];
    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(10);
    println!(
        "{:w$}  value",
        "measure (DynamoDB Local + stream, moto ECS, ReturnConsumedCapacity=TOTAL)"
    );
    println!("{}  -----", "-".repeat(w));
    for (k, v) in rows {
        println!("{k:w$}  {v}");
    }
    Ok(())
}
