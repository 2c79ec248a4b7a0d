//! An agent's claim batch against a store so slow that time passes while it claims.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use ferry_app::{Ferry, RunRequest, Settings};
use ferry_core::clock::Clock;
use ferry_core::{DeploymentId, DeploymentSpec, QueueName};
use ferry_embedded::{FsCodeStore, FsLogSink, SqliteStore};

/// A clock that moves `step_seconds` every time it is read: each store call a use case makes
/// between two reads of the clock seems to take that long.
struct SlowWorld {
    now: Mutex<DateTime<Utc>>,
    step_seconds: AtomicI64,
}

impl Clock for SlowWorld {
    fn now(&self) -> DateTime<Utc> {
        let mut t = self.now.lock().unwrap();
        *t += Duration::seconds(self.step_seconds.load(Ordering::SeqCst));
        *t
    }
}

#[tokio::test]
async fn a_slow_claim_batch_stops_at_a_third_of_the_lease_so_no_run_reaches_its_agent_spent() {
    let dir = tempfile::tempdir().unwrap();
    let lease = Duration::seconds(30);
    let clock = Arc::new(SlowWorld {
        now: Mutex::new(Utc.with_ymd_and_hms(2026, 10, 20, 10, 0, 0).unwrap()),
        step_seconds: AtomicI64::new(0),
    });
    let ferry = Ferry::new(
        Arc::new(SqliteStore::in_memory().unwrap()),
        Arc::new(FsCodeStore::new(dir.path().join("bundles"))),
        Arc::new(FsLogSink::new(dir.path().join("logs"))),
        clock.clone(),
    )
    .with_settings(Settings {
        lease,
        ..Settings::default()
    });
    ferry.ensure_default_queue().await.unwrap();
    let spec: DeploymentSpec = serde_json::from_value(serde_json::json!({
        "flow": "etl", "name": "slow", "entrypoint": "run.sh"
    }))
    .unwrap();
    let id = DeploymentId::new("etl", "slow").unwrap();
    ferry.apply_deployment(spec).await.unwrap();
    for _ in 0..20 {
        ferry.create_run(&id, RunRequest::default()).await.unwrap();
    }
    let queues = [QueueName::parse("queue", "default").unwrap()];

    // Every clock read now costs 2 s: claiming 20 runs would take over a minute.
    clock.step_seconds.store(2, Ordering::SeqCst);
    let mut claimed_total = 0;
    for poll in 0.. {
        let claimed = ferry
            .claim_batch("a", &queues, std::time::Duration::ZERO, 20)
            .await
            .unwrap();
        let returned_at = clock.now();
        assert!(!claimed.is_empty(), "poll {poll} claimed nothing");
        assert!(claimed.len() < 20, "the batch did not stop early");
        for (run, _) in &claimed {
            let left = run.lease.as_ref().unwrap().expires_at - returned_at;
            assert!(
                left >= lease / 2,
                "run {} reached its agent with {left} of its {lease} lease",
                run.id
            );
        }
        claimed_total += claimed.len();
        if claimed_total == 20 {
            break;
        }
    }
}
