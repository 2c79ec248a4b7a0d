//! The storage-port conformance suite against DynamoDB Local. Ignored by a plain test run:
//! `scripts/test.sh` starts the emulators and runs it (`ferry_testkit`). Each check gets its
//! own table.

use std::sync::Arc;

use ferry_aws::{bootstrap, config, DynamoStore};
use ferry_core::ports::Store;
use ferry_testkit::require_emulators;

async fn fresh_store() -> DynamoStore {
    let sdk = config::sdk_config().await;
    let client = config::dynamodb_client(&sdk);
    let table = format!("ferry-test-{}", uuid::Uuid::new_v4().simple());
    assert!(bootstrap::ensure_table(&client, &table).await.unwrap());
    // Idempotent: a second bootstrap finds it.
    assert!(!bootstrap::ensure_table(&client, &table).await.unwrap());
    DynamoStore::new(client, table)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn dynamodb_store_passes_the_conformance_suite() {
    require_emulators();
    ferry_app::conformance::run_all(|| async { Arc::new(fresh_store().await) as Arc<dyn Store> })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn a_slot_left_by_a_dead_writer_is_swept() {
    require_emulators();
    use chrono::{TimeZone, Utc};
    use ferry_core::ports::{RunStore, SlotTake};
    use ferry_core::run::RunLease;
    use ferry_core::state::{transition, RunEvent};
    use ferry_core::DeploymentId;

    let store = fresh_store().await;
    let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let d = DeploymentId::new("f", "d").unwrap();
    let r = ferry_core::testkit::scheduled_run(&d, "q", t, t);
    store.insert_run(&r).await.unwrap();
    let slot = SlotTake {
        key: ferry_core::slot::SlotKey::Queue(ferry_core::testkit::queue("q")),
        limit: 1,
    };
    let claimed = transition(
        &r,
        RunEvent::Claim {
            lease: RunLease {
                agent_id: "a".into(),
                expires_at: t,
            },
            slots: vec![slot.key.clone()],
        },
        t,
    )
    .unwrap();
    store.claim_run(&claimed, 0, &[slot]).await.unwrap();
    assert_eq!(
        store
            .slot_holders(&ferry_core::slot::SlotKey::Queue(
                ferry_core::testkit::queue("q")
            ))
            .await
            .unwrap(),
        1
    );
    // Nothing to sweep while the run is held.
    let later = chrono::Utc::now() + chrono::Duration::minutes(5);
    assert_eq!(store.sweep_stale_slots(later).await.unwrap(), 0);
    // Simulate a writer that died between the final write and the slot release: write the
    // terminal run without going through update_run's release.
    let done = transition(&claimed, RunEvent::Crash { reason: "x".into() }, t).unwrap();
    store
        .client()
        .put_item()
        .table_name(store.table())
        .item(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("R#{}", r.id)),
        )
        .item("sk", aws_sdk_dynamodb::types::AttributeValue::S("R".into()))
        .item(
            "body",
            aws_sdk_dynamodb::types::AttributeValue::S(serde_json::to_string(&done).unwrap()),
        )
        .item(
            "version",
            aws_sdk_dynamodb::types::AttributeValue::N(done.version.to_string()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        store
            .slot_holders(&ferry_core::slot::SlotKey::Queue(
                ferry_core::testkit::queue("q")
            ))
            .await
            .unwrap(),
        1
    );
    // A run that just ended is left to its own writer for a minute...
    assert_eq!(store.sweep_stale_slots(t).await.unwrap(), 0);
    // ...after which its holder is freed.
    assert_eq!(store.sweep_stale_slots(later).await.unwrap(), 1);
    assert_eq!(
        store
            .slot_holders(&ferry_core::slot::SlotKey::Queue(
                ferry_core::testkit::queue("q")
            ))
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn s3_code_store_and_log_sink_pass_the_conformance_suite() {
    require_emulators();
    let sdk = config::sdk_config().await;
    let s3 = config::s3_client(&sdk);
    let bucket = format!("ferry-conf-{}", uuid::Uuid::new_v4().simple());
    assert!(bootstrap::ensure_bucket(&s3, &bucket, Some("us-east-1"))
        .await
        .unwrap());
    assert!(!bootstrap::ensure_bucket(&s3, &bucket, Some("us-east-1"))
        .await
        .unwrap());
    ferry_app::conformance::code_store_suite(Arc::new(ferry_aws::S3CodeStore::new(
        s3.clone(),
        &bucket,
    )))
    .await;
    ferry_app::conformance::log_sink_suite(Arc::new(ferry_aws::S3LogSink::new(s3, &bucket))).await;
}
