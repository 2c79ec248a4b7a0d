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
    let run = bundled_script_run(&ferry, dir.path(), "n").await;

    // Recording "Running" fails for good: the run's handling gives up after unpacking.
    faulty.fail(|op| matches!(op, Op::UpdateRun(r) if r.state == StateType::Running));
    let work = dir.path().join("work");
    let finished = claim_and_run_one(&ferry, dir.path(), Duration::from_secs(1)).await;
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

/// An ad-hoc run of deployment `etl/NAME`, whose bundle (packed from `dir`/proj) holds an
/// executable `run.sh` that echoes a line; the default queue is made first.
async fn bundled_script_run(
    ferry: &Ferry,
    dir: &std::path::Path,
    name: &str,
) -> ferry_core::FlowRun {
    ferry.ensure_default_queue().await.unwrap();
    let proj = dir.join("proj");
    std::fs::create_dir_all(&proj).unwrap();
    std::fs::write(proj.join("run.sh"), "#!/bin/sh\necho hi\n").unwrap();
    std::fs::set_permissions(
        proj.join("run.sh"),
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .unwrap();
    let packed = ferry_bundle::pack_dir(&proj).unwrap();
    ferry
        .put_bundle(&packed.sha256, &packed.bytes)
        .await
        .unwrap();
    let spec = serde_json::from_value(serde_json::json!({
        "flow": "etl", "name": name, "entrypoint": "run.sh",
        "bundle": {"sha256": packed.sha256, "size": packed.bytes.len()}
    }))
    .unwrap();
    ferry.apply_deployment(spec).await.unwrap();
    let id = DeploymentId::new("etl", name).unwrap();
    ferry
        .create_run(&id, RunRequest::default())
        .await
        .unwrap()
        .0
}

/// An agent (one run at a time, work in `dir`/work) claims one run and runs it to its end;
/// whether it reached a final state there.
async fn claim_and_run_one(
    ferry: &Ferry,
    dir: &std::path::Path,
    heartbeat_every: Duration,
) -> bool {
    let cfg = AgentConfig {
        queues: vec![ferry_core::QueueName::default_queue()],
        limit: 1,
        poll_interval: Duration::from_millis(50),
        prefetch: Duration::ZERO,
        name: "a1".into(),
        work_dir: dir.join("work"),
        cache_dir: dir.join("cache"),
        python: "python3".into(),
        kill_grace: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(1),
        heartbeat_every,
        guard: None,
        secrets: Default::default(),
        warm: Default::default(),
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
    tokio::time::timeout(Duration::from_secs(60), tasks.join_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
}

/// The use cases over a fresh embedded store in `dir`.
fn embedded(dir: &std::path::Path) -> Ferry {
    Ferry::new(
        Arc::new(SqliteStore::open(&dir.join("db")).unwrap()),
        Arc::new(FsCodeStore::new(dir.join("bundles"))),
        Arc::new(FsLogSink::new(dir.join("logs"))),
        Arc::new(SystemClock),
    )
}

#[tokio::test]
async fn a_run_ahead_of_its_time_is_claimed_only_if_it_takes_no_limited_slot() {
    use ferry_agent::{ClaimRequest, ControlPlane, Direct};
    let dir = tempfile::tempdir().unwrap();
    let ferry = embedded(dir.path());
    ferry.ensure_default_queue().await.unwrap();
    ferry.create_queue("narrow", Some(1), None).await.unwrap();
    for (name, extra) in [
        ("free", serde_json::json!({})),
        ("limited", serde_json::json!({"concurrency_limit": 1})),
        ("narrow", serde_json::json!({"work_queue": "narrow"})),
    ] {
        let mut spec = serde_json::json!({"flow": "f", "name": name, "entrypoint": "run.sh"});
        spec.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        ferry
            .apply_deployment(serde_json::from_value(spec).unwrap())
            .await
            .unwrap();
    }
    let ahead = RunRequest {
        start_in_seconds: Some(10),
        ..RunRequest::default()
    };
    let mut later = std::collections::HashMap::new();
    for name in ["free", "limited", "narrow"] {
        let id = DeploymentId::new("f", name).unwrap();
        let (run, _) = ferry.create_run(&id, ahead.clone()).await.unwrap();
        later.insert(name, run.id);
    }
    let plane = Direct::new(ferry.clone());
    let req = ClaimRequest {
        agent: "a1".into(),
        queues: vec![
            ferry_core::QueueName::default_queue(),
            ferry_core::QueueName::parse("q", "narrow").unwrap(),
        ],
        prefetch: Duration::from_secs(15),
        free: 10,
    };
    let claimed = plane.claim(&req).await.unwrap();
    let ids: Vec<_> = claimed.iter().map(|(r, _)| r.id).collect();
    assert_eq!(
        ids,
        [later["free"]],
        "only the run that takes no limited slot is claimed ahead"
    );
    // Runs due now take the limited slots at once.
    let mut due = Vec::new();
    for name in ["limited", "narrow"] {
        let id = DeploymentId::new("f", name).unwrap();
        due.push(
            ferry
                .create_run(&id, RunRequest::default())
                .await
                .unwrap()
                .0
                .id,
        );
    }
    let mut ids: Vec<_> = plane
        .claim(&req)
        .await
        .unwrap()
        .into_iter()
        .map(|(r, _)| r.id)
        .collect();
    ids.sort();
    due.sort();
    assert_eq!(ids, due);
    for name in ["limited", "narrow"] {
        let r = ferry.get_run(later[name]).await.unwrap();
        assert_eq!(r.state, StateType::Scheduled, "{name}");
    }
}

/// A code store whose bundle downloads take `delay` (a large bundle on a slow link).
struct SlowCodeStore {
    inner: FsCodeStore,
    delay: Duration,
}

#[async_trait::async_trait]
impl ferry_core::ports::CodeStore for SlowCodeStore {
    async fn put_bundle(
        &self,
        digest: &ferry_core::digest::BundleDigest,
        bytes: &[u8],
    ) -> Result<(), ferry_core::ports::CodeStoreError> {
        self.inner.put_bundle(digest, bytes).await
    }
    async fn get_bundle(
        &self,
        digest: &ferry_core::digest::BundleDigest,
    ) -> Result<Option<Vec<u8>>, ferry_core::ports::CodeStoreError> {
        tokio::time::sleep(self.delay).await;
        self.inner.get_bundle(digest).await
    }
    async fn has_bundle(
        &self,
        digest: &ferry_core::digest::BundleDigest,
    ) -> Result<bool, ferry_core::ports::CodeStoreError> {
        self.inner.has_bundle(digest).await
    }
    async fn put_result(
        &self,
        run: ferry_core::RunId,
        json: &[u8],
    ) -> Result<String, ferry_core::ports::CodeStoreError> {
        self.inner.put_result(run, json).await
    }
    async fn get_result(
        &self,
        run: ferry_core::RunId,
    ) -> Result<Option<Vec<u8>>, ferry_core::ports::CodeStoreError> {
        self.inner.get_result(run).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_slower_to_fetch_than_the_lease_keeps_the_run_held() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::new(
        Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap()),
        Arc::new(SlowCodeStore {
            inner: FsCodeStore::new(dir.path().join("bundles")),
            delay: Duration::from_secs(3),
        }),
        Arc::new(FsLogSink::new(dir.path().join("logs"))),
        Arc::new(SystemClock),
    );
    // A 1 s lease, renewed every 200 ms; the download takes 3 s.
    let settings = ferry_app::Settings {
        lease: chrono::Duration::seconds(1),
        ..ferry.settings().clone()
    };
    let ferry = ferry.with_settings(settings);
    let run = bundled_script_run(&ferry, dir.path(), "slow").await;

    // The reaper runs throughout, as the server's tick does.
    let reaper = {
        let ferry = ferry.clone();
        tokio::spawn(async move {
            loop {
                ferry.tick().await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let finished = claim_and_run_one(&ferry, dir.path(), Duration::from_millis(200)).await;
    reaper.abort();
    let run = ferry.get_run(run.id).await.unwrap();
    assert!(finished, "the run ended elsewhere: {:?}", run.state_message);
    assert_eq!(run.state, StateType::Completed, "{:?}", run.state_message);
}
