//! The agent in-process over the embedded store, with faults injected into the store.

use std::sync::Arc;
use std::time::Duration;

use ferry_agent::{Agent, AgentConfig};
use ferry_app::testkit::{FaultyStore, Op};
use ferry_app::{Ferry, RunRequest, SystemClock};
use ferry_core::ports::Store;
use ferry_core::{DeploymentId, StateType};
use ferry_embedded::{FsCodeStore, FsLogSink, SqliteStore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_start_cannot_be_recorded_leaves_no_work_directory_behind() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
    let faulty = FaultyStore::new(store);
    let ferry = Ferry::new(
        faulty.clone(),
        Arc::new(FsCodeStore::new(dir.path().join("bundles"))),
        Arc::new(FsLogSink::new(dir.path().join("logs"))),
        Arc::new(SystemClock),
    );
    ferry.ensure_default_queue().await.unwrap();
    let proj = dir.path().join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::write(proj.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    let packed = ferry_bundle::pack_dir(&proj).unwrap();
    ferry
        .put_bundle(&packed.sha256, &packed.bytes)
        .await
        .unwrap();
    let spec = serde_json::from_value(serde_json::json!({
        "flow": "etl", "name": "n", "entrypoint": "run.sh",
        "bundle": {"sha256": packed.sha256, "size": packed.bytes.len()}
    }))
    .unwrap();
    ferry.apply_deployment(spec).await.unwrap();
    let id = DeploymentId::new("etl", "n").unwrap();
    let (run, _) = ferry.create_run(&id, RunRequest::default()).await.unwrap();

    // Recording "Running" fails for good: the run's handling gives up after unpacking.
    faulty.fail(|op| matches!(op, Op::UpdateRun(r) if r.state == StateType::Running));
    let work = dir.path().join("work");
    let cfg = AgentConfig {
        queues: vec![ferry_core::QueueName::default_queue()],
        limit: 1,
        poll_interval: Duration::from_millis(50),
        prefetch: Duration::ZERO,
        name: "a1".into(),
        work_dir: work.clone(),
        cache_dir: dir.path().join("cache"),
        python: "python3".into(),
        kill_grace: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(1),
        heartbeat_every: Duration::from_secs(1),
        guard: None,
    };
    let agent = Agent::new(ferry.clone(), cfg);
    let (mut tasks, shutdown, kill) = (
        JoinSet::new(),
        CancellationToken::new(),
        CancellationToken::new(),
    );
    assert_eq!(
        agent.poll_once(&mut tasks, &shutdown, &kill).await.unwrap(),
        1
    );
    let finished = tokio::time::timeout(Duration::from_secs(60), tasks.join_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(!finished, "the run could not be started");
    assert_eq!(
        ferry.get_run(run.id).await.unwrap().state,
        StateType::Pending
    );
    let left: Vec<_> = std::fs::read_dir(&work)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "work directories left behind: {left:?}");
}
