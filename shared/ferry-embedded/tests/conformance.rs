//! The storage-port conformance suite against the SQLite store (a file database, as in
//! production, so WAL and busy handling are exercised).

use std::sync::Arc;

use ferry_core::ports::Store;
use ferry_embedded::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let counter = std::sync::atomic::AtomicUsize::new(0);
    ferry_app::conformance::run_all(|| {
        let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let path = dir.path().join(format!("db-{n}.sqlite"));
        async move { Arc::new(SqliteStore::open(&path).unwrap()) as Arc<dyn Store> }
    })
    .await;
}

#[tokio::test]
async fn fs_code_store_and_log_sink_pass_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    ferry_app::conformance::code_store_suite(Arc::new(ferry_embedded::FsCodeStore::new(
        dir.path().join("bundles"),
    )))
    .await;
    ferry_app::conformance::log_sink_suite(Arc::new(ferry_embedded::FsLogSink::new(
        dir.path().join("logs"),
    )))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn claims_through_separate_connections_have_one_winner() {
    // Several SqliteStore handles on one file behave like several agent processes.
    use chrono::{TimeZone, Utc};
    use ferry_core::ports::ClaimOutcome;
    use ferry_core::run::RunLease;
    use ferry_core::state::{transition, RunEvent};
    use ferry_core::DeploymentId;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.sqlite");
    let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let d = DeploymentId::new("f", "d").unwrap();
    let first = SqliteStore::open(&path).unwrap();
    let mut runs = Vec::new();
    for i in 0..20 {
        let at = t + chrono::Duration::seconds(i);
        let r = ferry_core::testkit::scheduled_run(&d, "default", at, t);
        first.insert_run(&r).await.unwrap();
        runs.push(r);
    }
    use ferry_core::ports::RunStore;
    let mut tasks = Vec::new();
    for agent in 0..4 {
        let store = SqliteStore::open(&path).unwrap();
        let runs = runs.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = Vec::new();
            for r in runs {
                let c = transition(
                    &r,
                    RunEvent::Claim {
                        lease: RunLease {
                            agent_id: format!("a{agent}"),
                            expires_at: t,
                        },
                        slots: vec![],
                    },
                    t,
                )
                .unwrap();
                if let ClaimOutcome::Claimed(_) = store.claim_run(&c, 0, &[]).await.unwrap() {
                    won.push(r.id);
                }
            }
            won
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    let n = all.len();
    all.dedup();
    assert_eq!(n, 20, "every run claimed once");
    assert_eq!(all.len(), 20, "no run claimed twice");
}
