//! The dispatch handler called with DynamoDB stream events as Lambda delivers them, built from
//! the items the store writes (`ferry_aws::stream::run_image`). A counting launcher stands in
//! for ECS (the real launchers are tested in ferry-aws and tests/); the store is SQLite, and
//! DynamoDB Local with its real stream in the `_on_aws` test.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use ferry_app::testkit::{FaultyStore, Op};
use ferry_app::{Ferry, RunRequest, SystemClock};
use ferry_aws::stream::{run_image, StreamEvent};
use ferry_core::infra::{InfraKind, InfraSpec};
use ferry_core::launch::{LaunchError, LaunchRequest, TaskLauncher, TaskRef, TaskStatus};
use ferry_core::ports::{CodeStore, LogSink, Store};
use ferry_core::{DeploymentId, DeploymentSpec, FlowRun, StateType};
use ferry_embedded::{FsCodeStore, FsLogSink, SqliteStore};
use ferry_functions::{dispatch_handler, BatchItemFailure, BatchResponse};
use lambda_runtime::{Context, LambdaEvent};

/// Counts launch calls; every task it "starts" is pending forever.
#[derive(Default)]
struct CountingLauncher {
    launches: AtomicUsize,
}

#[async_trait]
impl TaskLauncher for CountingLauncher {
    async fn launch(&self, r: &LaunchRequest) -> Result<TaskRef, LaunchError> {
        self.launches.fetch_add(1, Ordering::SeqCst);
        Ok(TaskRef(format!("task-{}", r.client_token())))
    }
    async fn stop(&self, _task: &TaskRef, _reason: &str) -> Result<(), LaunchError> {
        Ok(())
    }
    async fn describe(&self, tasks: &[TaskRef]) -> Result<Vec<TaskStatus>, LaunchError> {
        Ok(vec![TaskStatus::Pending; tasks.len()])
    }
}

struct Env {
    ferry: Ferry,
    launcher: Arc<CountingLauncher>,
    _dir: Option<tempfile::TempDir>,
}

const LAUNCHED: (&str, &str) = ("etl", "launched");
const PLAIN: (&str, &str) = ("etl", "plain");

/// A Ferry over `store` with a `process/x` profile, a deployment launched on it and one that
/// is not, and the counting launcher for `process` profiles.
async fn env_over(store: Arc<dyn Store>, code: Arc<dyn CodeStore>, logs: Arc<dyn LogSink>) -> Env {
    let launcher = Arc::new(CountingLauncher::default());
    let ferry = Ferry::new(store, code, logs, Arc::new(SystemClock))
        .with_launcher(InfraKind::Process, launcher.clone());
    ferry.ensure_default_queue().await.unwrap();
    ferry
        .put_infra(&"process/x".parse().unwrap(), InfraSpec::default())
        .await
        .unwrap();
    for ((flow, name), infra) in [(LAUNCHED, Some("process/x")), (PLAIN, None)] {
        let spec: DeploymentSpec = serde_json::from_value(serde_json::json!({
            "flow": flow, "name": name, "entrypoint": "run.sh", "infra_block": infra
        }))
        .unwrap();
        ferry.apply_deployment(spec).await.unwrap();
    }
    Env {
        ferry,
        launcher,
        _dir: None,
    }
}

async fn sqlite_env(faulty: bool) -> (Env, Option<Arc<FaultyStore>>) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
    let faults = faulty.then(|| FaultyStore::new(sqlite.clone()));
    let store = faults.clone().map_or(sqlite, |f| f as Arc<dyn Store>);
    let mut env = env_over(
        store,
        Arc::new(FsCodeStore::new(dir.path().join("b"))),
        Arc::new(FsLogSink::new(dir.path().join("l"))),
    )
    .await;
    env._dir = Some(dir);
    (env, faults)
}

impl Env {
    async fn create(&self, (flow, name): (&str, &str)) -> FlowRun {
        let id = DeploymentId::new(flow, name).unwrap();
        self.ferry
            .create_run(&id, RunRequest::default())
            .await
            .unwrap()
            .0
    }
    fn launches(&self) -> usize {
        self.launcher.launches.load(Ordering::SeqCst)
    }
    async fn dispatch(&self, event: &serde_json::Value) -> BatchResponse {
        let event: StreamEvent = serde_json::from_value(event.clone()).unwrap();
        dispatch_handler(&self.ferry, LambdaEvent::new(event, Context::default()))
            .await
            .unwrap()
    }
}

/// A stream record of `run`'s item as the store wrote it, as Lambda delivers it.
fn record(event_name: &str, run: &FlowRun, seq: u64) -> serde_json::Value {
    let image = run_image(run).unwrap();
    serde_json::json!({
        "eventID": format!("e{seq}"),
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1_795_514_400,
            "Keys": {"pk": image["pk"], "sk": image["sk"]},
            "NewImage": image,
            "SequenceNumber": seq.to_string(),
            "SizeBytes": 512,
            "StreamViewType": "NEW_AND_OLD_IMAGES"
        },
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/ferry/stream/2026-12-01T00:00:00.000"
    })
}

fn batch(records: Vec<serde_json::Value>) -> serde_json::Value {
    serde_json::json!({ "Records": records })
}

#[tokio::test]
async fn a_record_launches_its_run_once_however_often_the_batch_comes() {
    let (e, _) = sqlite_env(false).await;
    let run = e.create(LAUNCHED).await;
    let event = batch(vec![record("INSERT", &run, 100)]);

    let first = e.dispatch(&event).await;
    assert_eq!(first, BatchResponse::default(), "no failures");
    assert_eq!(e.launches(), 1);
    let launched = e.ferry.get_run(run.id).await.unwrap();
    assert_eq!(launched.state, StateType::Pending);
    assert_eq!(launched.lease.as_ref().unwrap().agent_id, "launcher:1");
    assert!(launched.launch.as_ref().unwrap().task.is_some());

    // Lambda delivers the same batch again (a retry, or a replay after a timeout).
    let again = e.dispatch(&event).await;
    assert_eq!(again, BatchResponse::default());
    assert_eq!(e.launches(), 1, "a replayed record launches nothing");
    let still = e.ferry.get_run(run.id).await.unwrap();
    assert_eq!(still.state, StateType::Pending);
    assert_eq!(still.lease.as_ref().unwrap().agent_id, "launcher:1");
    assert_eq!(still.version, launched.version, "nothing was written");
}

#[tokio::test]
async fn records_of_plain_runs_removals_and_repeats_launch_nothing_more() {
    let (e, _) = sqlite_env(false).await;
    let plain = e.create(PLAIN).await;
    let launched = e.create(LAUNCHED).await;
    let removal = serde_json::json!({
        "eventID": "e3", "eventName": "REMOVE",
        "dynamodb": {"Keys": {"pk": {"S": format!("R#{}", launched.id)}, "sk": {"S": "R"}},
                     "SequenceNumber": "3"}
    });
    let event = batch(vec![
        record("INSERT", &plain, 1),
        record("INSERT", &launched, 2),
        removal,
        // The same run again in the batch (a later write): dispatched once.
        record("MODIFY", &launched, 4),
    ]);
    assert_eq!(e.dispatch(&event).await, BatchResponse::default());
    assert_eq!(e.launches(), 1, "only the launched run, once");
    let plain_now = e.ferry.get_run(plain.id).await.unwrap();
    assert_eq!(plain_now.state, StateType::Scheduled, "left to the agents");
    assert!(plain_now.lease.is_none());
}

#[tokio::test]
async fn a_store_failure_reports_the_record_for_lambda_to_deliver_again() {
    let (e, faults) = sqlite_env(true).await;
    let faults = faults.unwrap();
    let ok = e.create(PLAIN).await;
    let run = e.create(LAUNCHED).await;
    // Recording the started task fails (the store is unavailable).
    faults.fail(|op| matches!(op, Op::UpdateRun(_)));
    let event = batch(vec![record("INSERT", &ok, 7), record("INSERT", &run, 8)]);
    let answer = e.dispatch(&event).await;
    assert_eq!(
        answer.batch_item_failures,
        vec![BatchItemFailure {
            item_identifier: "8".into()
        }]
    );
    let body = serde_json::to_value(&answer).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"batchItemFailures": [{"itemIdentifier": "8"}]})
    );
    assert_eq!(e.launches(), 1);
    // Delivered again once the store is back: the run is launched already (its task is
    // recorded by the launch supervision, with the same idempotency token).
    faults.heal();
    assert_eq!(e.dispatch(&event).await, BatchResponse::default());
    assert_eq!(e.launches(), 1);
}

#[tokio::test]
async fn an_event_that_is_not_a_dynamodb_stream_batch_is_refused() {
    let (e, _) = sqlite_env(false).await;
    let run = e.create(LAUNCHED).await;
    let mut rec = record("INSERT", &run, 1);
    rec["dynamodb"]
        .as_object_mut()
        .unwrap()
        .remove("SequenceNumber");
    let event: StreamEvent = serde_json::from_value(batch(vec![rec])).unwrap();
    let err = dispatch_handler(&e.ferry, LambdaEvent::new(event, Context::default()))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("SequenceNumber"), "{err}");
    assert_eq!(e.launches(), 0);
}

async fn next_id(
    rx: &mut tokio::sync::mpsc::Receiver<ferry_core::RunId>,
) -> Option<ferry_core::RunId> {
    tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .ok()
        .flatten()
}

/// The whole in-process loop on DynamoDB Local: a run created through the use cases, its
/// record read from the table's real stream, dispatched, launched once; the records of the
/// launch's own writes launch nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn the_stream_reader_feeds_dispatch_on_aws() {
    ferry_testkit::require_emulators();
    use ferry_aws::{bootstrap, config, stream::StreamReader, DynamoStore};
    let sdk = config::sdk_config().await;
    let dynamodb = config::dynamodb_client(&sdk);
    let table = format!("ferry-dispatch-{}", uuid::Uuid::new_v4().simple());
    bootstrap::ensure_table(&dynamodb, &table).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let e = env_over(
        Arc::new(DynamoStore::new(dynamodb.clone(), &table)),
        Arc::new(FsCodeStore::new(dir.path().join("b"))),
        Arc::new(FsLogSink::new(dir.path().join("l"))),
    )
    .await;

    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let stop = tokio_util::sync::CancellationToken::new();
    let reader = StreamReader::new(config::dynamodb_streams_client(&sdk), dynamodb, &table)
        .start(tx, stop.clone())
        .await
        .unwrap();
    let plain = e.create(PLAIN).await;
    let run = e.create(LAUNCHED).await;
    let got = next_id(&mut rx).await;
    assert_eq!(got, Some(run.id), "not the plain run {}", plain.id);
    let outcome = e.ferry.dispatch(run.id).await.unwrap();
    assert!(
        matches!(outcome, ferry_app::LaunchOutcome::Launched(_)),
        "{outcome:?}"
    );
    assert_eq!(e.launches(), 1);

    // The launch's own writes (claim, task recorded) name no launchable run: the next id is a
    // run created afterwards.
    let later = e.create(LAUNCHED).await;
    assert_eq!(next_id(&mut rx).await, Some(later.id));
    assert_eq!(e.launches(), 1);
    let held = e.ferry.get_run(run.id).await.unwrap();
    assert_eq!(held.lease.unwrap().agent_id, "launcher:1");

    stop.cancel();
    reader.await.unwrap();
}
