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
    e.ferry.settings.tick_batch = 10;
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
