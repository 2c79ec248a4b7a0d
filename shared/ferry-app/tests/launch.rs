//! Launching a task per run, against the SQLite store with a mock clock and a scripted
//! launcher (it records every call and answers as the test says — the tasks' fate is what the
//! test controls; the real launchers are tested end to end in tests/ and ferry-aws).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Duration, TimeZone, Utc};
use ferry_app::{Ferry, LaunchOutcome, RunRequest};
use ferry_core::clock::MockClock;
use ferry_core::infra::{InfraKind, InfraSpec};
use ferry_core::launch::{LaunchError, LaunchRequest, TaskLauncher, TaskRef, TaskStatus};
use ferry_core::ports::Store;
use ferry_core::{DeploymentId, DeploymentSpec, FlowRun, StateType};
use ferry_embedded::{FsCodeStore, FsLogSink, SqliteStore};

/// What the scripted launcher answers.
#[derive(Default)]
struct Script {
    /// Launch calls: (run id, attempt, client token).
    launches: Vec<(String, u32, String)>,
    stops: Vec<String>,
    /// The next launches fail with this (consumed one per call).
    fail_next: Vec<LaunchError>,
    /// Status of every task by ref; unknown tasks are Pending.
    status: BTreeMap<String, TaskStatus>,
}

#[derive(Clone, Default)]
struct Scripted(Arc<Mutex<Script>>);

#[async_trait]
impl TaskLauncher for Scripted {
    async fn launch(&self, r: &LaunchRequest) -> Result<TaskRef, LaunchError> {
        let mut s = self.0.lock().unwrap();
        s.launches
            .push((r.run.to_string(), r.attempt, r.client_token()));
        if !s.fail_next.is_empty() {
            return Err(s.fail_next.remove(0));
        }
        Ok(TaskRef(format!("task-{}", r.client_token())))
    }
    async fn stop(&self, task: &TaskRef, _reason: &str) -> Result<(), LaunchError> {
        self.0.lock().unwrap().stops.push(task.0.clone());
        Ok(())
    }
    async fn describe(&self, tasks: &[TaskRef]) -> Result<Vec<TaskStatus>, LaunchError> {
        let s = self.0.lock().unwrap();
        Ok(tasks
            .iter()
            .map(|t| s.status.get(&t.0).cloned().unwrap_or(TaskStatus::Pending))
            .collect())
    }
}

struct Env {
    ferry: Ferry,
    clock: Arc<MockClock>,
    launcher: Scripted,
    _dir: tempfile::TempDir,
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 20, 10, 0, 0).unwrap()
}

async fn env(retries: u32) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("f.db")).unwrap());
    let clock = Arc::new(MockClock::at(t0()));
    let launcher = Scripted::default();
    let ferry = Ferry::new(
        store,
        Arc::new(FsCodeStore::new(dir.path().join("bundles"))),
        Arc::new(FsLogSink::new(dir.path().join("logs"))),
        clock.clone(),
    )
    .with_launcher(InfraKind::Process, Arc::new(launcher.clone()));
    ferry.ensure_default_queue().await.unwrap();
    let spec = InfraSpec {
        launch_lead_seconds: 60,
        start_timeout_seconds: 120,
        max_launches: 2,
        ..InfraSpec::default()
    };
    ferry
        .put_infra(&"process/local".parse().unwrap(), spec)
        .await
        .unwrap();
    let spec: DeploymentSpec = serde_json::from_value(serde_json::json!({
        "flow": "etl", "name": "launched", "entrypoint": "run.sh",
        "infra_block": "process/local", "retries": retries,
        "infra_overrides": {"env.MODE": "fast"}
    }))
    .unwrap();
    ferry.apply_deployment(spec).await.unwrap();
    Env {
        ferry,
        clock,
        launcher,
        _dir: dir,
    }
}

impl Env {
    async fn adhoc(&self, start_in: i64) -> FlowRun {
        let req = RunRequest {
            start_in_seconds: Some(start_in),
            ..RunRequest::default()
        };
        let id = DeploymentId::new("etl", "launched").unwrap();
        self.ferry.create_run(&id, req).await.unwrap().0
    }
    async fn run(&self, r: &FlowRun) -> FlowRun {
        self.ferry.get_run(r.id).await.unwrap()
    }
    fn launches(&self) -> Vec<(String, u32, String)> {
        self.launcher.0.lock().unwrap().launches.clone()
    }
}

#[tokio::test]
async fn a_dispatched_run_is_launched_once_however_often_its_record_comes() {
    let e = env(0).await;
    let run = e.adhoc(0).await;
    let agents_see = e
        .ferry
        .claimable_runs("default", t0() + Duration::hours(1), None, 10)
        .await
        .unwrap();
    assert!(agents_see.is_empty(), "agents never see launched runs");
    let first = e.ferry.dispatch(run.id).await.unwrap();
    let LaunchOutcome::Launched(launched) = first else {
        panic!("{first:?}")
    };
    assert_eq!(launched.state, StateType::Pending);
    assert_eq!(launched.lease.as_ref().unwrap().agent_id, "launcher:1");
    assert!(launched.launch.as_ref().unwrap().task.is_some());
    // The stream delivers the record again, and a tick runs: nothing more is launched.
    for _ in 0..3 {
        let again = e.ferry.dispatch(run.id).await.unwrap();
        assert!(
            matches!(again, LaunchOutcome::Skipped(_) | LaunchOutcome::Lost),
            "{again:?}"
        );
    }
    let report = e.ferry.tick().await.unwrap();
    assert_eq!((report.launched, report.relaunched), (0, 0), "{report:?}");
    assert_eq!(e.launches().len(), 1);
}

#[tokio::test]
async fn a_run_due_later_waits_for_its_lead_then_the_tick_launches_it() {
    let e = env(0).await;
    let run = e.adhoc(300).await;
    assert!(matches!(
        e.ferry.dispatch(run.id).await.unwrap(),
        LaunchOutcome::Skipped(_)
    ));
    assert_eq!(e.ferry.tick().await.unwrap().launched, 0);
    e.clock.advance(Duration::seconds(241)); // 59 s before its time, lead 60 s
    assert_eq!(e.ferry.tick().await.unwrap().launched, 1);
    let r = e.run(&run).await;
    let launch = r.launch.clone().unwrap();
    assert_eq!(
        launch.start_deadline,
        r.scheduled_time + Duration::seconds(120),
        "the start timeout counts from the run's time"
    );
    assert_eq!(e.launches().len(), 1);
}

#[tokio::test]
async fn a_refused_launch_is_retried_with_the_same_token_and_starts_one_task() {
    let e = env(0).await;
    e.launcher.0.lock().unwrap().fail_next = vec![LaunchError::Retryable {
        message: "Rate exceeded".into(),
    }];
    let run = e.adhoc(0).await;
    let out = e.ferry.dispatch(run.id).await.unwrap();
    let LaunchOutcome::Launched(held) = out else {
        panic!("{out:?}")
    };
    assert!(
        held.launch.as_ref().unwrap().task.is_none(),
        "not started yet"
    );
    e.clock.advance(Duration::seconds(31));
    e.ferry.tick().await.unwrap();
    let launches = e.launches();
    assert_eq!(launches.len(), 2);
    assert_eq!(launches[0].2, launches[1].2, "the same idempotency token");
    let r = e.run(&run).await;
    assert_eq!(r.state, StateType::Pending);
    assert!(r.launch.unwrap().task.is_some());
}

#[tokio::test]
async fn a_task_that_stops_before_taking_its_run_is_replaced_then_the_run_crashes() {
    let e = env(1).await;
    let run = e.adhoc(0).await;
    e.ferry.dispatch(run.id).await.unwrap();
    let task1 = e.run(&run).await.launch.unwrap().task.unwrap();
    e.launcher.0.lock().unwrap().status.insert(
        task1.clone(),
        TaskStatus::Stopped {
            stop_code: Some("TaskFailedToStart".into()),
            reason: Some("CannotPullContainerError: pull access denied".into()),
            exit_code: None,
        },
    );
    e.clock.advance(Duration::seconds(10));
    assert_eq!(e.ferry.tick().await.unwrap().relaunched, 1);
    let r = e.run(&run).await;
    assert_eq!(r.state, StateType::Pending);
    let launch = r.launch.clone().unwrap();
    assert_eq!(launch.attempt, 2);
    assert_ne!(launch.task.as_deref(), Some(task1.as_str()));
    let msg = r.history.last().unwrap().message.clone().unwrap();
    assert!(
        msg.contains("launch 2 of 2") && msg.contains("CannotPullContainerError"),
        "{msg}"
    );
    // The second task never takes the run: at its start deadline it is stopped and the run,
    // its launches used up, ends Crashed with the reason — and its retry is written.
    e.clock.advance(Duration::seconds(121));
    let report = e.ferry.tick().await.unwrap();
    assert_eq!(report.relaunched, 1, "{report:?}");
    let r = e.run(&run).await;
    assert_eq!(r.state, StateType::Crashed);
    let reason = r.state_message.clone().unwrap();
    assert!(
        reason.contains("launch 2 of 2 failed") && reason.contains("did not take the run"),
        "{reason}"
    );
    assert_eq!(
        e.launcher.0.lock().unwrap().stops,
        vec![launch.task.unwrap()]
    );
    let retries = e
        .ferry
        .list_runs(&ferry_core::ports::RunFilter {
            deployment: Some(run.deployment.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let retries: Vec<_> = retries.into_iter().filter(|r| r.id != run.id).collect();
    assert_eq!(retries.len(), 1);
    assert_eq!(retries[0].attempt, 2);
    // The same tick launched it: a retry of a launched run gets a task of its own.
    assert_eq!(retries[0].state, StateType::Pending);
    assert_eq!(e.launches().last().unwrap().0, retries[0].id.to_string());
    assert_eq!(
        retries[0].infra.as_ref().map(|i| i.to_string()).as_deref(),
        Some("process/local"),
        "the retry is launched too"
    );
}

#[tokio::test]
async fn a_launch_refused_for_good_crashes_the_run_with_the_reason() {
    let e = env(0).await;
    e.launcher.0.lock().unwrap().fail_next = vec![LaunchError::Permanent {
        message: "subnet subnet-bad does not exist".into(),
    }];
    let run = e.adhoc(0).await;
    let out = e.ferry.dispatch(run.id).await.unwrap();
    assert!(matches!(out, LaunchOutcome::Failed(_)), "{out:?}");
    let r = e.run(&run).await;
    assert_eq!(r.state, StateType::Crashed);
    assert!(
        r.state_message.unwrap().contains("subnet subnet-bad"),
        "the reason names what to fix"
    );
}

#[tokio::test]
async fn the_task_takes_its_run_once_and_a_stale_launch_takes_nothing() {
    let e = env(0).await;
    let run = e.adhoc(0).await;
    e.ferry.dispatch(run.id).await.unwrap();
    let stale = e.ferry.take_over(run.id, 2, "task-b").await.unwrap();
    assert!(
        matches!(stale, ferry_app::TakeOver::NothingToDo(ref w) if w.contains("launch 1")),
        "{stale:?}"
    );
    let taken = e.ferry.take_over(run.id, 1, "task-a").await.unwrap();
    assert!(matches!(taken, ferry_app::TakeOver::Taken(..)), "{taken:?}");
    let again = e.ferry.take_over(run.id, 1, "task-b").await.unwrap();
    assert!(
        matches!(again, ferry_app::TakeOver::NothingToDo(ref w) if w.contains("another task took it")),
        "{again:?}"
    );
    let r = e.run(&run).await;
    assert_eq!(r.lease.unwrap().agent_id, "task-a");
    // Taken runs are no longer the supervision's: a later tick leaves it alone.
    e.clock.advance(Duration::seconds(200));
    let report = e.ferry.tick().await.unwrap();
    assert_eq!(report.relaunched, 0);
}

#[tokio::test]
async fn cancelling_a_launched_run_stops_its_task() {
    let e = env(0).await;
    let run = e.adhoc(0).await;
    e.ferry.dispatch(run.id).await.unwrap();
    let task = e.run(&run).await.launch.unwrap().task.unwrap();
    let cancelled = e.ferry.cancel_run(run.id).await.unwrap();
    assert_eq!(cancelled.state, StateType::Cancelled);
    assert_eq!(e.launcher.0.lock().unwrap().stops, vec![task]);
    let after = e.ferry.take_over(run.id, 1, "late-task").await.unwrap();
    assert!(
        matches!(after, ferry_app::TakeOver::NothingToDo(ref w) if w.contains("already cancelled")),
        "{after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn launchers_racing_for_one_run_start_one_task() {
    let e = env(0).await;
    let run = e.adhoc(0).await;
    // Eight deliveries of its stream record and four ticks, all at once.
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..12 {
        let f = e.ferry.clone();
        racers.spawn(async move {
            if i % 3 == 0 {
                f.tick().await.map(|_| ())
            } else {
                f.dispatch(run.id).await.map(|_| ())
            }
        });
    }
    while let Some(r) = racers.join_next().await {
        r.unwrap().unwrap();
    }
    assert_eq!(e.launches().len(), 1, "{:?}", e.launches());
    let r = e.run(&run).await;
    assert_eq!(r.launch.unwrap().attempt, 1);
    assert_eq!(r.lease.unwrap().agent_id, "launcher:1");
}
