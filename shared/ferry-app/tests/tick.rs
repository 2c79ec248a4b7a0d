//! The tick against the SQLite store with a mock clock.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Europe::Berlin;
use ferry_app::Ferry;
use ferry_core::clock::MockClock;
use ferry_core::ports::{CodeStore, RunFilter, Store};
use ferry_core::{DeploymentSpec, StateType};
use ferry_embedded::{FsCodeStore, FsLogSink, SqliteStore};

struct Env {
    ferry: Ferry,
    clock: Arc<MockClock>,
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    code: Arc<dyn CodeStore>,
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 20, 10, 0, 0).unwrap()
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ferry.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let code: Arc<dyn CodeStore> = Arc::new(FsCodeStore::new(dir.path().join("bundles")));
    let clock = Arc::new(MockClock::at(t0()));
    let ferry = Ferry::new(
        store,
        code.clone(),
        Arc::new(FsLogSink::new(dir.path().join("logs"))),
        clock.clone(),
    );
    ferry.ensure_default_queue().await.unwrap();
    Env {
        ferry,
        clock,
        _dir: dir,
        db,
        code,
    }
}

impl Env {
    /// A second Ferry over a separate connection to the same database (another tick process).
    fn second(&self) -> Ferry {
        Ferry::new(
            Arc::new(SqliteStore::open(&self.db).unwrap()),
            self.code.clone(),
            self.ferry.logs.clone(),
            self.clock.clone(),
        )
    }
}

fn spec(name: &str, schedule: serde_json::Value) -> DeploymentSpec {
    serde_json::from_value(serde_json::json!({
        "flow": "etl", "name": name, "entrypoint": "run.sh", "schedules": [schedule]
    }))
    .unwrap()
}

async fn runs(f: &Ferry) -> Vec<ferry_core::FlowRun> {
    let mut r = f
        .list_runs(&RunFilter {
            limit: 100_000,
            ..Default::default()
        })
        .await
        .unwrap();
    r.sort_by_key(|r| r.scheduled_time);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_ticks_at_once_write_each_run_once() {
    let e = env().await;
    for i in 0..20 {
        e.ferry
            .apply_deployment(spec(
                &format!("d{i}"),
                serde_json::json!({"cron": "*/10 * * * *"}),
            ))
            .await
            .unwrap();
    }
    let (a, b) = (e.ferry.clone(), e.second());
    let (ra, rb) = tokio::join!(
        tokio::spawn(async move { a.tick().await.unwrap() }),
        tokio::spawn(async move { b.tick().await.unwrap() })
    );
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let all = runs(&e.ferry).await;
    // Each deployment: every 10 minutes for 2 hours = 12 runs.
    assert_eq!(all.len(), 20 * 12);
    assert_eq!(ra.runs_created + rb.runs_created, all.len());
    let mut ids: Vec<_> = all.iter().map(|r| r.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), all.len());
}

#[tokio::test]
async fn a_steady_tick_touches_only_deployments_whose_horizon_needs_extending() {
    let e = env().await;
    for i in 0..30 {
        e.ferry
            .apply_deployment(spec(
                &format!("d{i}"),
                serde_json::json!({"cron": "0 * * * *"}),
            ))
            .await
            .unwrap();
    }
    let first = e.ferry.tick().await.unwrap();
    assert_eq!(first.deployments_extended, 30);
    let again = e.ferry.tick().await.unwrap();
    assert_eq!(again.deployments_extended, 0);
    assert_eq!(again.runs_created, 0);
    // Hours later, horizons need extending again and keep at least 3 runs / 1 hour ahead.
    for _ in 0..48 {
        e.clock.advance(Duration::minutes(30));
        e.ferry.tick().await.unwrap();
        let now = e.clock.now_utc();
        for i in 0..30 {
            let id = format!("etl/d{i}").parse().unwrap();
            let future: Vec<_> = e
                .ferry
                .list_runs(&RunFilter {
                    deployment: Some(id),
                    limit: 1000,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_iter()
                .filter(|r| r.scheduled_time > now)
                .collect();
            assert!(future.len() >= 3, "only {} runs ahead", future.len());
            assert!(future
                .iter()
                .any(|r| r.scheduled_time >= now + Duration::hours(1)));
        }
    }
}

trait NowUtc {
    fn now_utc(&self) -> DateTime<Utc>;
}
impl NowUtc for MockClock {
    fn now_utc(&self) -> DateTime<Utc> {
        ferry_core::clock::Clock::now(self)
    }
}

async fn missed_after_outage(policy: &str) -> Vec<DateTime<Utc>> {
    let e = env().await;
    let mut s = spec("hourly", serde_json::json!({"cron": "0 * * * *"}));
    s.catchup = policy.parse().unwrap();
    e.ferry.apply_deployment(s).await.unwrap();
    e.ferry.tick().await.unwrap(); // writes 11:00..=16:00 (6 runs ahead)
    e.clock.advance(Duration::hours(10)); // nothing ticks until 20:00
    let before: Vec<_> = runs(&e.ferry).await.iter().map(|r| r.id).collect();
    e.ferry.tick().await.unwrap();
    let now = e.clock.now_utc();
    runs(&e.ferry)
        .await
        .into_iter()
        .filter(|r| !before.contains(&r.id) && r.scheduled_time <= now)
        .map(|r| r.scheduled_time)
        .collect()
}

#[tokio::test]
async fn catch_up_policies_decide_what_happens_to_missed_runs() {
    let h = |h| Utc.with_ymd_and_hms(2026, 10, 20, h, 0, 0).unwrap();
    assert!(missed_after_outage("skip").await.is_empty());
    assert_eq!(missed_after_outage("latest").await, vec![h(20)]);
    assert_eq!(
        missed_after_outage("all:3").await,
        vec![h(18), h(19), h(20)]
    );
    assert_eq!(
        missed_after_outage("all").await,
        (17..=20).map(h).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn runs_past_due_turn_late_and_only_those() {
    let e = env().await;
    e.ferry
        .apply_deployment(spec("m", serde_json::json!({"cron": "*/5 * * * *"})))
        .await
        .unwrap();
    e.ferry.tick().await.unwrap();
    e.clock.advance(Duration::minutes(11));
    let report = e.ferry.tick().await.unwrap();
    assert_eq!(report.marked_late, 2); // 10:05 and 10:10
    let now = e.clock.now_utc();
    for r in runs(&e.ferry).await {
        let expect = if r.scheduled_time < now - Duration::seconds(30) {
            StateType::Late
        } else {
            StateType::Scheduled
        };
        assert_eq!(r.state, expect, "{}", r.scheduled_time);
    }
}

#[tokio::test]
async fn a_daily_job_runs_once_every_local_day_across_fall_back() {
    let e = env().await;
    e.ferry
        .apply_deployment(spec(
            "daily",
            serde_json::json!({"cron": "30 2 * * *", "timezone": "Europe/Berlin"}),
        ))
        .await
        .unwrap();
    // Tick every 20 minutes for 12 days across 2026-10-25 (Berlin falls back 03:00 -> 02:00).
    for _ in 0..(12 * 72) {
        e.ferry.tick().await.unwrap();
        e.clock.advance(Duration::minutes(20));
    }
    let mut per_day: BTreeMap<chrono::NaiveDate, usize> = BTreeMap::new();
    for r in runs(&e.ferry).await {
        let local = r.scheduled_time.with_timezone(&Berlin);
        assert_eq!(local.format("%H:%M").to_string(), "02:30");
        *per_day.entry(local.date_naive()).or_default() += 1;
    }
    assert!(per_day.len() >= 12, "{per_day:?}");
    assert!(per_day.values().all(|n| *n == 1), "{per_day:?}");
    assert!(per_day.contains_key(&chrono::NaiveDate::from_ymd_opt(2026, 10, 25).unwrap()));
}

#[tokio::test]
async fn a_concurrent_schedule_change_leaves_no_run_of_the_old_schedule() {
    let e = env().await;
    e.ferry
        .apply_deployment(spec("c", serde_json::json!({"cron": "0 * * * *"})))
        .await
        .unwrap();
    e.ferry.tick().await.unwrap();
    // Re-schedule, then tick from a second process while re-applying again.
    let changed = spec("c", serde_json::json!({"cron": "15 * * * *"}));
    let out = e.ferry.apply_deployment(changed.clone()).await.unwrap();
    assert!(out.removed_runs >= 2);
    let other = e.second();
    let (t, _) = tokio::join!(other.tick(), e.ferry.apply_deployment(changed));
    t.unwrap();
    e.ferry.tick().await.unwrap();
    let all = runs(&e.ferry).await;
    assert!(!all.is_empty());
    for r in all {
        assert_eq!(
            r.scheduled_time.format("%M").to_string(),
            "15",
            "stale run {}",
            r.scheduled_time
        );
    }
}

#[tokio::test]
async fn one_tick_drains_every_due_deployment_in_batches() {
    let mut e = env().await;
    let settings = ferry_app::Settings {
        tick_batch: 10,
        ..e.ferry.settings().clone()
    };
    e.ferry = e.ferry.with_settings(settings);
    for i in 0..25 {
        e.ferry
            .apply_deployment(spec(
                &format!("b{i}"),
                serde_json::json!({"cron": "0 * * * *"}),
            ))
            .await
            .unwrap();
    }
    let r = e.ferry.tick().await.unwrap();
    assert_eq!(r.deployments_extended, 25);
    assert_eq!(e.ferry.tick().await.unwrap().deployments_extended, 0);
}

/// An env whose store fails the writes a test picks.
async fn faulty_env() -> (Env, Arc<ferry_app::testkit::FaultyStore>) {
    let e = env().await;
    let faulty = ferry_app::testkit::FaultyStore::new(e.ferry.store.clone());
    let ferry = Ferry::new(
        faulty.clone(),
        e.code.clone(),
        e.ferry.logs.clone(),
        e.clock.clone(),
    );
    (Env { ferry, ..e }, faulty)
}

fn adhoc_run(i: u32, queue: &str, at: DateTime<Utc>) -> ferry_core::FlowRun {
    let d = ferry_core::DeploymentId::new("etl", "held").unwrap();
    ferry_core::testkit::adhoc_run(&d, queue, at, i)
}

#[tokio::test]
async fn late_marking_reaches_every_due_run_and_reads_only_those_becoming_late() {
    let (e, faulty) = faulty_env().await;
    e.ferry.create_queue("held", None, None).await.unwrap();
    let paused = ferry_app::QueuePatch {
        paused: Some(true),
        ..Default::default()
    };
    e.ferry.update_queue("held", paused).await.unwrap();
    for i in 0..1010 {
        let at = t0() - Duration::minutes(10) + Duration::milliseconds(i64::from(i));
        e.ferry
            .store
            .insert_run(&adhoc_run(i, "held", at))
            .await
            .unwrap();
    }
    let report = e.ferry.tick().await.unwrap();
    assert_eq!(report.marked_late, 1010, "{report:?}");
    let late = runs(&e.ferry).await;
    assert!(late.iter().all(|r| r.state == StateType::Late));
    // The next tick reads only the runs that became due since, not the 1 010 already Late.
    for i in 0..5 {
        let at = t0() + Duration::seconds(i64::from(i));
        e.ferry
            .store
            .insert_run(&adhoc_run(2000 + i, "held", at))
            .await
            .unwrap();
    }
    e.clock.advance(Duration::minutes(2));
    let before = faulty
        .due_rows_read
        .load(std::sync::atomic::Ordering::SeqCst);
    let report = e.ferry.tick().await.unwrap();
    let read = faulty
        .due_rows_read
        .load(std::sync::atomic::Ordering::SeqCst)
        - before;
    assert_eq!(report.marked_late, 5, "{report:?}");
    assert_eq!(read, 5, "late marking read {read} runs for 5 becoming late");
}

#[tokio::test]
async fn one_failing_deployment_does_not_stop_the_tick_and_is_reported_with_its_cause() {
    let (e, faulty) = faulty_env().await;
    for name in ["bad", "good"] {
        e.ferry
            .apply_deployment(spec(name, serde_json::json!({"cron": "*/5 * * * *"})))
            .await
            .unwrap();
    }
    // A run long overdue, to see that late marking still happens.
    e.ferry
        .store
        .insert_run(&adhoc_run(1, "default", t0() - Duration::hours(1)))
        .await
        .unwrap();
    faulty.fail(|op| {
        matches!(op, ferry_app::testkit::Op::InsertRun(r) if r.deployment.to_string() == "etl/bad")
    });
    let report = e.ferry.tick().await.unwrap();
    assert_eq!(report.deployments_extended, 1, "{report:?}");
    assert_eq!(report.marked_late, 1, "late marking ran: {report:?}");
    assert_eq!(report.failures.len(), 1, "{report:?}");
    let f = &report.failures[0];
    assert_eq!(
        (f.duty.as_str(), f.subject.as_str()),
        ("extend", "deployment etl/bad")
    );
    assert!(
        f.error.contains("injected fault"),
        "the cause is kept: {}",
        f.error
    );
    // Healed, the next tick extends it.
    faulty.heal();
    let report = e.ferry.tick().await.unwrap();
    assert_eq!(report.deployments_extended, 1, "{report:?}");
    assert!(report.failures.is_empty(), "{report:?}");
}

/// Claims and starts an ad-hoc run of a deployment with one retry.
async fn running_run(e: &Env) -> ferry_core::FlowRun {
    let mut s = spec("flaky", serde_json::json!({"cron": "0 0 1 1 *"}));
    s.retries = 1;
    s.retry_delay_seconds = 60;
    e.ferry.apply_deployment(s).await.unwrap();
    let id = ferry_core::DeploymentId::new("etl", "flaky").unwrap();
    let (run, _) = e
        .ferry
        .create_run(&id, ferry_app::RunRequest::default())
        .await
        .unwrap();
    let ferry_app::Claim::Claimed(run, _) = e.ferry.claim(&run, "agent-1").await.unwrap() else {
        panic!("not claimed")
    };
    e.ferry.start(*run, None).await.unwrap().unwrap()
}

fn retry_of(all: &[ferry_core::FlowRun], id: ferry_core::RunId) -> Option<&ferry_core::FlowRun> {
    all.iter().find(|r| r.retry_of == Some(id))
}

#[tokio::test]
async fn a_failed_run_and_its_retry_are_written_together_or_not_at_all() {
    let (e, faulty) = faulty_env().await;
    let run = running_run(&e).await;
    let fail = ferry_core::RunEvent::Fail {
        exit_code: Some(1),
        reason: "exit code 1".into(),
    };
    // The writer gives up (or dies) at the final write: the run stays Running, never Failed
    // without its retry, and the reaper finishes the job once the lease is over.
    faulty.fail(|op| matches!(op, ferry_app::testkit::Op::FinishWithRetry(..)));
    assert!(e.ferry.finish(run.clone(), fail.clone()).await.is_err());
    let now = e.ferry.get_run(run.id).await.unwrap();
    assert_eq!(now.state, StateType::Running);
    assert!(retry_of(&runs(&e.ferry).await, run.id).is_none());
    faulty.heal();
    e.clock.advance(Duration::minutes(5));
    let report = e.ferry.tick().await.unwrap();
    assert_eq!(report.reaped, 1, "{report:?}");
    let all = runs(&e.ferry).await;
    let crashed = all.iter().find(|r| r.id == run.id).unwrap();
    assert_eq!(crashed.state, StateType::Crashed);
    let retry = retry_of(&all, run.id).expect("the reaper wrote the retry with the crash");
    assert_eq!(retry.attempt, 2);

    // A store that refuses every separate insert cannot split a failure from its retry.
    let retry_run = {
        let ferry_app::Claim::Claimed(r, _) = e.ferry.claim(retry, "agent-2").await.unwrap() else {
            panic!("not claimed")
        };
        e.ferry.start(*r, None).await.unwrap().unwrap()
    };
    faulty.fail(|op| matches!(op, ferry_app::testkit::Op::InsertRun(_)));
    let done = e.ferry.finish(retry_run, fail).await.unwrap();
    assert_eq!(done.state, StateType::Failed);
    // Retries are used up (1 retry): none owed, none written.
    assert!(retry_of(&runs(&e.ferry).await, done.id).is_none());
}

#[tokio::test]
async fn a_run_failing_with_retries_left_gets_its_retry_even_when_separate_inserts_fail() {
    let (e, faulty) = faulty_env().await;
    let run = running_run(&e).await;
    faulty.fail(|op| matches!(op, ferry_app::testkit::Op::InsertRun(_)));
    let fail = ferry_core::RunEvent::Fail {
        exit_code: Some(1),
        reason: "exit code 1".into(),
    };
    let done = e.ferry.finish(run.clone(), fail).await.unwrap();
    assert_eq!(done.state, StateType::Failed);
    let all = runs(&e.ferry).await;
    let retry = retry_of(&all, run.id).expect("a failed run with retries left has its retry");
    assert_eq!(
        retry.scheduled_time,
        done.ended_at.unwrap() + Duration::seconds(60)
    );
}

#[tokio::test]
async fn deleting_a_deployment_reports_the_runs_it_could_not_delete() {
    let (e, faulty) = faulty_env().await;
    e.ferry
        .apply_deployment(spec("gone", serde_json::json!({"cron": "*/5 * * * *"})))
        .await
        .unwrap();
    e.ferry.tick().await.unwrap();
    let id = ferry_core::DeploymentId::new("etl", "gone").unwrap();
    let waiting = e.ferry.store.waiting_runs_of(&id).await.unwrap();
    assert!(!waiting.is_empty());
    // The backend fails the deletes: the caller hears of it (it used to get Ok with a count
    // that silently left runs behind).
    faulty.fail(|op| matches!(op, ferry_app::testkit::Op::DeleteRun(_)));
    let err = e.ferry.delete_deployment(&id).await.unwrap_err();
    assert!(
        ferry_core::error::error_chain(&err).contains("injected fault"),
        "{err}"
    );
    faulty.heal();
    // The runs left behind are cancelled by the first agent that reads them.
    let left = e.ferry.store.waiting_runs_of(&id).await.unwrap();
    assert_eq!(left.len(), waiting.len());
    assert!(matches!(
        e.ferry.claim(&left[0], "agent-1").await.unwrap(),
        ferry_app::Claim::Lost
    ));
    let cancelled = e.ferry.get_run(left[0].id).await.unwrap();
    assert_eq!(cancelled.state, StateType::Cancelled);
}
