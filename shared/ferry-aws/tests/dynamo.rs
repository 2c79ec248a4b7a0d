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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn bootstrap_adds_runs_by_state_to_an_older_table_and_it_lists_runs_written_before_on_moto() {
    require_emulators();
    use chrono::{TimeZone, Utc};
    use ferry_core::ports::{RunFilter, RunStore};
    use ferry_core::StateType;

    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    // A table as made before the index existed (its other indexes do not matter here). On
    // moto's DynamoDB: DynamoDB Local leaves an index added to an existing table CREATING
    // and fails queries on it.
    let sdk = config::sdk_config().await;
    let moto = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL (moto) is set");
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .endpoint_url(moto)
            .build(),
    );
    let table = format!("ferry-test-{}", uuid::Uuid::new_v4().simple());
    let mut req = client
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest);
    for (attr, kind) in [("pk", KeyType::Hash), ("sk", KeyType::Range)] {
        req = req
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attr)
                    .key_type(kind)
                    .build()
                    .unwrap(),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attr)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            );
    }
    req.send().await.unwrap();
    let store = DynamoStore::new(client, &table);
    let index_names = |store: &DynamoStore| {
        let (client, table) = (store.client().clone(), store.table().to_owned());
        async move {
            client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .unwrap()
                .table()
                .unwrap()
                .global_secondary_indexes()
                .iter()
                .filter_map(|g| g.index_name().map(str::to_owned))
                .collect::<Vec<_>>()
        }
    };
    let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let d = ferry_core::DeploymentId::new("f", "d").unwrap();
    let mut failed = ferry_core::testkit::scheduled_run(&d, "q", t, t);
    failed.state = StateType::Failed;
    store.insert_run(&failed).await.unwrap();
    let ok = ferry_core::testkit::scheduled_run(&d, "q", t + chrono::Duration::seconds(1), t);
    store.insert_run(&ok).await.unwrap();

    assert!(!bootstrap::ensure_table(store.client(), store.table())
        .await
        .unwrap());
    assert!(index_names(&store)
        .await
        .contains(&ferry_aws::dynamo::index::BY_STATE.to_owned()));
    let listed = store
        .list_runs(&RunFilter {
            states: vec![StateType::Failed],
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![failed.id]
    );
    let counts = store
        .count_runs_by_state(t, t + chrono::Duration::seconds(2))
        .await
        .unwrap();
    assert!(
        counts.contains(&(StateType::Failed, 1)) && counts.contains(&(StateType::Scheduled, 1))
    );
}
