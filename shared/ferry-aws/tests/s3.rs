//! The S3 code store and log sink against moto (standard AWS environment pointing at the
//! emulator; see `scripts/emulators.sh`). Ignored by a plain test run: `scripts/test.sh` runs
//! them (`ferry_testkit`).

use ferry_core::digest::BundleDigest;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use chrono::{TimeZone, Utc};
use ferry_aws::s3::PresignedUpload;
use ferry_aws::{S3CodeStore, S3LogSink};
use ferry_core::ids::RunId;
use ferry_core::ports::{CodeStore, CodeStoreError, LogLine, LogSink, LogStream};
use sha2::{Digest, Sha256};

/// A client and a fresh bucket; fails the test when the emulators are not up.
async fn setup() -> (aws_sdk_s3::Client, String) {
    ferry_testkit::require_emulators();
    let sdk = ferry_aws::config::sdk_config().await;
    let client = ferry_aws::config::s3_client(&sdk);
    let bucket = format!("ferry-test-{}", uuid::Uuid::new_v4());
    client
        .create_bucket()
        .bucket(&bucket)
        .send()
        .await
        .expect("create bucket");
    (client, bucket)
}

fn sha(bytes: &[u8]) -> BundleDigest {
    BundleDigest::of(bytes)
}

fn bundle_key(sha256: &BundleDigest) -> String {
    format!("bundles/{sha256}.tar.gz")
}

async fn object_exists(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> bool {
    client
        .head_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .is_ok()
}

async fn upload(p: &PresignedUpload, body: Vec<u8>) -> reqwest::Response {
    let http = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(p.method.as_bytes()).unwrap();
    let mut req = http.request(method, &p.url).body(body);
    for (k, v) in &p.headers {
        req = req.header(k, v);
    }
    req.send().await.expect("send presigned request")
}

fn run_id(n: u8) -> RunId {
    RunId::adhoc(Utc::now(), [n; 10])
}

fn lines(from: usize, n: usize) -> Vec<LogLine> {
    (from..from + n)
        .map(|i| LogLine {
            at: Utc.timestamp_opt(1_700_000_000 + i as i64, 0).unwrap(),
            stream: if i % 2 == 0 {
                LogStream::Stdout
            } else {
                LogStream::Stderr
            },
            line: format!("line {i}"),
        })
        .collect()
}

fn texts(lines: &[LogLine]) -> Vec<String> {
    lines.iter().map(|l| l.line.clone()).collect()
}

fn expected_texts(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("line {i}")).collect()
}

#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn bundle_round_trip() {
    let (client, bucket) = setup().await;
    let store = S3CodeStore::new(client.clone(), &bucket);
    let bytes = b"not really a tarball, but bytes all the same".to_vec();
    let digest = sha(&bytes);

    assert!(!store.has_bundle(&digest).await.unwrap());
    assert_eq!(store.get_bundle(&digest).await.unwrap(), None);

    store.put_bundle(&digest, &bytes).await.unwrap();
    assert!(store.has_bundle(&digest).await.unwrap());
    assert_eq!(
        store.get_bundle(&digest).await.unwrap(),
        Some(bytes.clone())
    );
    assert!(object_exists(&client, &bucket, &bundle_key(&digest)).await);

    // Storing twice is a no-op.
    store.put_bundle(&digest, &bytes).await.unwrap();
    assert_eq!(store.get_bundle(&digest).await.unwrap(), Some(bytes));
}

#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn put_with_wrong_digest_is_refused_and_stores_nothing() {
    let (client, bucket) = setup().await;
    let store = S3CodeStore::new(client.clone(), &bucket);
    let claimed = sha(b"the bytes the caller meant");
    let err = store
        .put_bundle(&claimed, b"other bytes")
        .await
        .unwrap_err();
    match err {
        CodeStoreError::DigestMismatch { expected, actual } => {
            assert_eq!(expected, claimed.as_str());
            assert_eq!(actual, sha(b"other bytes").as_str());
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert!(!store.has_bundle(&claimed).await.unwrap());
    let listed = client
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.key_count(), Some(0));
}

#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn tampered_object_is_a_digest_mismatch() {
    let (client, bucket) = setup().await;
    let store = S3CodeStore::new(client.clone(), &bucket);
    let bytes = b"original bundle".to_vec();
    let digest = sha(&bytes);
    store.put_bundle(&digest, &bytes).await.unwrap();

    client
        .put_object()
        .bucket(&bucket)
        .key(bundle_key(&digest))
        .body(ByteStream::from_static(b"tampered bundle"))
        .send()
        .await
        .unwrap();

    match store.get_bundle(&digest).await {
        Err(CodeStoreError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, digest.as_str());
            assert_eq!(actual, sha(b"tampered bundle").as_str());
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn presigned_put_uploads_the_bundle() {
    let (client, bucket) = setup().await;
    let store = S3CodeStore::new(client, &bucket);
    let bytes = b"bundle uploaded by the CLI".to_vec();
    let digest = sha(&bytes);

    let p = store
        .presign_put(&digest, Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(p.method, "PUT");
    assert!(p.url.contains(&bundle_key(&digest)), "{}", p.url);
    assert!(p.url.contains("X-Amz-Signature="), "{}", p.url);
    // The checksum header is sent and signed.
    let checksum = p
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-amz-checksum-sha256"))
        .map(|(_, v)| v.clone())
        .expect("x-amz-checksum-sha256 header");
    use base64::Engine as _;
    assert_eq!(
        checksum,
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(&bytes))
    );
    assert!(
        p.url.to_ascii_lowercase().contains("x-amz-checksum-sha256"),
        "the checksum header must be among the signed headers: {}",
        p.url
    );
    // It survives the JSON trip to the CLI.
    let p: PresignedUpload = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();

    let resp = upload(&p, bytes.clone()).await;
    assert!(resp.status().is_success(), "{:?}", resp.text().await);
    assert!(store.has_bundle(&digest).await.unwrap());
    assert_eq!(store.get_bundle(&digest).await.unwrap(), Some(bytes));
}

/// Real S3 rejects a body whose SHA-256 differs from the signed `x-amz-checksum-sha256`
/// (400 BadDigest). moto 5.2.5 does not: it stores the other bytes. The store stays safe
/// because `get_bundle` re-verifies the digest.
#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn presigned_put_with_other_bytes_moto_accepts_but_get_refuses() {
    let (client, bucket) = setup().await;
    let store = S3CodeStore::new(client, &bucket);
    let bytes = b"the bytes the URL was issued for".to_vec();
    let digest = sha(&bytes);
    let p = store
        .presign_put(&digest, Duration::from_secs(300))
        .await
        .unwrap();

    let resp = upload(&p, b"something else entirely".to_vec()).await;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "moto 5.2.5 was observed to accept other bytes; now it answers {status}: {text}"
    );
    match store.get_bundle(&digest).await {
        Err(CodeStoreError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, digest.as_str());
            assert_eq!(actual, sha(b"something else entirely").as_str());
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
}

#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn logs_append_and_read_in_order() {
    let (client, bucket) = setup().await;
    let sink = S3LogSink::new(client.clone(), &bucket);
    let run = run_id(1);
    assert_eq!(sink.location(run), format!("s3://{bucket}/logs/{run}/"));

    let all = lines(0, 10);
    sink.append(run, &all[0..3]).await.unwrap();
    sink.append(run, &all[3..7]).await.unwrap();
    sink.append(run, &[]).await.unwrap();
    sink.append(run, &all[7..10]).await.unwrap();

    let page = sink.read(run, 0, 1000).await.unwrap();
    assert_eq!(page.lines, all);
    assert_eq!(page.next_offset, 10);

    // One object per non-empty append, named after its first line.
    let keys: Vec<String> = client
        .list_objects_v2()
        .bucket(&bucket)
        .prefix(format!("logs/{run}/"))
        .send()
        .await
        .unwrap()
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    assert_eq!(
        keys,
        vec![
            format!("logs/{run}/000000000000.jsonl"),
            format!("logs/{run}/000000000003.jsonl"),
            format!("logs/{run}/000000000007.jsonl"),
        ]
    );

    // At the end: nothing new, same offset.
    let page = sink.read(run, 10, 5).await.unwrap();
    assert!(page.lines.is_empty());
    assert_eq!(page.next_offset, 10);
}

#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn logs_read_from_the_middle_of_a_chunk() {
    let (client, bucket) = setup().await;
    let sink = S3LogSink::new(client, &bucket);
    let run = run_id(2);
    let all = lines(0, 10);
    sink.append(run, &all[0..3]).await.unwrap();
    sink.append(run, &all[3..7]).await.unwrap();
    sink.append(run, &all[7..10]).await.unwrap();

    // Inside the second chunk, within it.
    let page = sink.read(run, 4, 2).await.unwrap();
    assert_eq!(texts(&page.lines), expected_texts(4..6));
    assert_eq!(page.next_offset, 6);

    // Inside the first chunk, across two chunks.
    let page = sink.read(run, 1, 4).await.unwrap();
    assert_eq!(texts(&page.lines), expected_texts(1..5));
    assert_eq!(page.next_offset, 5);

    // Paging through with a small limit yields every line once.
    let mut offset = 0;
    let mut seen = Vec::new();
    loop {
        let page = sink.read(run, offset, 3).await.unwrap();
        if page.lines.is_empty() {
            break;
        }
        assert!(page.lines.len() <= 3);
        seen.extend(page.lines);
        offset = page.next_offset;
    }
    assert_eq!(seen, all);
    assert_eq!(offset, 10);
}

#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn a_second_sink_continues_numbering() {
    let (client, bucket) = setup().await;
    let run = run_id(3);
    let all = lines(0, 9);

    let first = S3LogSink::new(client.clone(), &bucket);
    first.append(run, &all[0..2]).await.unwrap();
    first.append(run, &all[2..5]).await.unwrap();

    // A new process (agent restart): it lists the chunks and continues after them.
    let second = S3LogSink::new(client.clone(), &bucket);
    second.append(run, &all[5..7]).await.unwrap();
    let page = second.read(run, 0, 100).await.unwrap();
    assert_eq!(page.lines, all[0..7].to_vec());
    assert_eq!(page.next_offset, 7);

    // The first sink's cache is now stale (it believes 5 is next): its conditional write of
    // chunk 5 loses, it re-lists and writes chunk 7 instead of overwriting.
    first.append(run, &all[7..9]).await.unwrap();
    let page = first.read(run, 0, 100).await.unwrap();
    assert_eq!(page.lines, all);
    assert_eq!(page.next_offset, 9);
}

#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn read_of_an_unknown_run_is_empty() {
    let (client, bucket) = setup().await;
    let sink = S3LogSink::new(client, &bucket);
    let run = run_id(4);
    let page = sink.read(run, 0, 100).await.unwrap();
    assert!(page.lines.is_empty());
    assert_eq!(page.next_offset, 0);
    let page = sink.read(run, 42, 100).await.unwrap();
    assert!(page.lines.is_empty());
    assert_eq!(page.next_offset, 42);
}

#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn s3_log_sink_keeps_its_cap() {
    let (client, bucket) = setup().await;
    let sink = S3LogSink::new(client, &bucket).with_max_bytes(700);
    ferry_app::conformance::log_sink_cap_suite(std::sync::Arc::new(sink), 700).await;
}

#[tokio::test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
async fn a_capped_log_stays_closed_for_a_second_sink() {
    let (client, bucket) = setup().await;
    let run = run_id(13);
    let first = S3LogSink::new(client.clone(), &bucket).with_max_bytes(200);
    first.append(run, &lines(0, 10)).await.unwrap();
    let closed = first.read(run, 0, 100).await.unwrap();
    assert_eq!(closed.lines.last().unwrap().stream, LogStream::Ferry);
    // A sink that never saw the run (an agent restart) learns the size from the bucket.
    let second = S3LogSink::new(client, &bucket).with_max_bytes(200);
    second.append(run, &lines(10, 5)).await.unwrap();
    assert_eq!(second.read(run, 0, 100).await.unwrap().lines, closed.lines);
}
