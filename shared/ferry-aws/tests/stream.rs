//! The in-process reader of the table's stream against DynamoDB Local (which serves streams on
//! its own endpoint): it yields waiting runs of launched deployments and nothing else, and it
//! refuses a table without a stream, naming the fix. Each test gets its own table.

use std::time::Duration;

use chrono::Utc;
use ferry_aws::bootstrap::{self, CheckError};
use ferry_aws::stream::{StreamError, StreamReader};
use ferry_aws::{config, DynamoStore};
use ferry_core::launch::Launch;
use ferry_core::ports::{ClaimOutcome, RunStore};
use ferry_core::state::{transition, RunEvent, StateType};
use ferry_core::{DeploymentId, RunId};
use ferry_testkit::require_emulators;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Clients {
    dynamodb: aws_sdk_dynamodb::Client,
    streams: aws_sdk_dynamodbstreams::Client,
    s3: aws_sdk_s3::Client,
}

async fn clients() -> Clients {
    let sdk = config::sdk_config().await;
    Clients {
        dynamodb: config::dynamodb_client(&sdk),
        streams: config::dynamodb_streams_client(&sdk),
        s3: config::s3_client(&sdk),
    }
}

fn table_name() -> String {
    format!("ferry-stream-{}", uuid::Uuid::new_v4().simple())
}

/// Waits at most `secs` for the next id the reader sends.
async fn next_id(rx: &mut mpsc::Receiver<RunId>, secs: u64) -> Option<RunId> {
    tokio::time::timeout(Duration::from_secs(secs), rx.recv())
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn the_reader_yields_a_waiting_launched_run_and_never_a_plain_or_held_one() {
    require_emulators();
    let c = clients().await;
    let table = table_name();
    assert!(bootstrap::ensure_table(&c.dynamodb, &table).await.unwrap());
    let store = DynamoStore::new(c.dynamodb.clone(), &table);

    let (tx, mut rx) = mpsc::channel(16);
    let stop = CancellationToken::new();
    let reader = StreamReader::new(c.streams.clone(), c.dynamodb.clone(), &table)
        .start(tx, stop.clone())
        .await
        .unwrap();

    let d = DeploymentId::new("etl", "nightly").unwrap();
    let now = Utc::now();
    let plain = ferry_core::testkit::adhoc_run(&d, "default", now, 1);
    let mut launched = ferry_core::testkit::adhoc_run(&d, "default", now, 2);
    launched.infra = Some("process/x".parse().unwrap());
    store.insert_run(&plain).await.unwrap();
    store.insert_run(&launched).await.unwrap();

    // Stream order per item: were the plain run yielded, it would come first.
    let started = std::time::Instant::now();
    assert_eq!(next_id(&mut rx, 10).await, Some(launched.id));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    // Claimed for launch (Pending, held by launcher:1): no longer waiting, nothing to yield.
    let event = RunEvent::Launch {
        launch: Launch {
            infra: launched.infra.clone().unwrap(),
            attempt: 1,
            task: None,
            launched_at: now,
            start_deadline: now + chrono::Duration::minutes(5),
        },
        slots: vec![],
        message: "launched on process/x (launch 1 of 3)".into(),
    };
    let claimed = transition(&launched, event, now).unwrap();
    assert_eq!(claimed.state, StateType::Pending);
    assert!(matches!(
        store
            .claim_run(&claimed, launched.version, &[])
            .await
            .unwrap(),
        ClaimOutcome::Claimed(_)
    ));
    // A second launched run, written after the claim: DynamoDB Local keeps one shard, so its
    // record comes after the claim's, and the claim's yielded nothing if this one is next.
    let mut sentinel = ferry_core::testkit::adhoc_run(&d, "default", now, 3);
    sentinel.infra = launched.infra.clone();
    store.insert_run(&sentinel).await.unwrap();
    assert_eq!(
        next_id(&mut rx, 10).await,
        Some(sentinel.id),
        "a held run (and the plain one) yields nothing"
    );
    assert_eq!(next_id(&mut rx, 1).await, None);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the reader stops on shutdown")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn a_table_without_a_stream_is_refused_naming_the_fix() {
    require_emulators();
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let c = clients().await;
    let table = table_name();
    let mut req = c
        .dynamodb
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest);
    for (name, kind) in [("pk", KeyType::Hash), ("sk", KeyType::Range)] {
        req = req
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kind)
                    .build()
                    .unwrap(),
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .unwrap(),
            );
    }
    req.send().await.unwrap();

    let err = StreamReader::new(c.streams.clone(), c.dynamodb.clone(), &table)
        .start(mpsc::channel(1).0, CancellationToken::new())
        .await
        .unwrap_err();
    assert!(matches!(err, StreamError::NoStream { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("FERRY_TABLE={table}")) && msg.contains("StreamEnabled=true"),
        "{msg}"
    );

    let err = bootstrap::check(&c.dynamodb, &c.s3, &table, "no-bucket-needed")
        .await
        .unwrap_err();
    assert!(matches!(err, CheckError::StreamOff { .. }), "{err:?}");
    assert!(err.to_string().contains("infra/storage.yaml"), "{err}");
}
