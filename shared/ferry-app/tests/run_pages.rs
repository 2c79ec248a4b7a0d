//! The dashboard's run use cases against the SQLite store with a mock clock: keyset pages
//! with their next cursor, counts of a recent window, and queue stats.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use ferry_app::{Ferry, RunView};
use ferry_core::clock::MockClock;
use ferry_core::ports::{RunCursor, RunFilter, Store};
use ferry_core::{DeploymentId, RunId, StateType};
use ferry_embedded::{FsCodeStore, FsLogSink, SqliteStore};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 10, 20, 10, 0, 0).unwrap()
}

async fn ferry(dir: &tempfile::TempDir) -> (Ferry, Arc<dyn Store>) {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("db")).unwrap());
    let ferry = Ferry::new(
        store.clone(),
        Arc::new(FsCodeStore::new(dir.path().join("bundles"))),
        Arc::new(FsLogSink::new(dir.path().join("logs"))),
        Arc::new(MockClock::at(t0())),
    );
    ferry.ensure_default_queue().await.unwrap();
    (ferry, store)
}

/// Five runs a minute apart up to now, in `states` order (oldest first), on `queue`.
async fn seed(store: &Arc<dyn Store>, queue: &str, states: &[StateType]) -> Vec<RunId> {
    let d = DeploymentId::new("etl", queue).unwrap();
    let mut ids = Vec::new();
    for (i, state) in states.iter().enumerate() {
        let at = t0() - Duration::minutes((states.len() - 1 - i) as i64);
        let mut r = ferry_core::testkit::scheduled_run(&d, queue, at, at);
        r.state = *state;
        store.insert_run(&r).await.unwrap();
        ids.push(r.id);
    }
    ids
}

#[tokio::test]
async fn pages_carry_the_next_cursor_until_the_last_page_even_when_it_is_full() {
    let dir = tempfile::tempdir().unwrap();
    let (ferry, store) = ferry(&dir).await;
    let mut ids = seed(&store, "default", &[StateType::Completed; 6]).await;
    ids.reverse(); // newest first, as the Recent view lists them
    for size in [1usize, 2, 3, 6, 7] {
        let mut seen = Vec::new();
        let mut before = None;
        let mut pages = 0;
        loop {
            let page = ferry
                .list_runs_page(
                    RunFilter {
                        limit: size,
                        ..Default::default()
                    },
                    RunView::Recent,
                    before,
                )
                .await
                .unwrap();
            pages += 1;
            seen.extend(page.runs.iter().map(|r| r.id));
            match page.next {
                Some(next) => {
                    assert_eq!(page.runs.len(), size, "a page before the last is full");
                    assert_eq!(Some(next), page.runs.last().map(RunCursor::of));
                    before = Some(next.id);
                }
                None => break,
            }
            assert!(pages <= 6, "pages never end");
        }
        assert_eq!(seen, ids, "pages of {size}");
        assert_eq!(
            pages,
            6usize.div_ceil(size),
            "pages of {size}: no empty last page"
        );
    }
    let zero = ferry
        .runs_page(RunFilter {
            limit: 0,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert!(zero.to_string().starts_with("limit"), "{zero}");
}

#[tokio::test]
async fn recent_counts_and_queue_stats_come_from_the_store_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (ferry, store) = ferry(&dir).await;
    ferry.create_queue("gpu", Some(2), None).await.unwrap();
    seed(
        &store,
        "default",
        &[
            StateType::Failed,
            StateType::Completed,
            StateType::Scheduled,
            StateType::Scheduled,
        ],
    )
    .await;
    // A day old: outside the last 24 h.
    let d = DeploymentId::new("etl", "old").unwrap();
    let old = t0() - Duration::hours(24) - Duration::seconds(1);
    store
        .insert_run(&ferry_core::testkit::scheduled_run(&d, "gpu", old, old))
        .await
        .unwrap();
    let counts = ferry.count_recent_runs(Duration::hours(24)).await.unwrap();
    assert_eq!(counts.total(), 4);
    assert_eq!(
        (
            counts.of(StateType::Failed),
            counts.of(StateType::Completed),
            counts.of(StateType::Scheduled)
        ),
        (1, 1, 2)
    );
    assert!(ferry.count_runs_by_state(t0(), old).await.is_err());

    let stats = ferry.all_queue_run_stats().await.unwrap();
    let names: Vec<&str> = stats.iter().map(|s| s.queue.name.as_str()).collect();
    assert_eq!(names, ["default", "gpu"]);
    assert_eq!((stats[0].due, stats[0].late, stats[0].in_use), (2, 0, None));
    assert_eq!(
        (stats[1].due, stats[1].late, stats[1].in_use),
        (1, 0, Some(0))
    );
    assert!(ferry.queue_run_stats("nope").await.is_err());
}
