//! The table's DynamoDB stream, the trigger of dispatch (docs/fargate.md): which records name a
//! run that may need its task now ([`launchable_run`]), the shape of the event Lambda delivers
//! ([`StreamEvent`], for `ferry-dispatch-lambda`), and an in-process [`StreamReader`] that
//! follows every shard of the stream and hands those runs over — what `ferry server start` runs
//! on the AWS backend, so the whole loop works on one machine against DynamoDB Local.
//!
//! A record is only a hint: dispatch reads the run again (consistent) and launches it with a
//! conditional write, so a replayed, reordered or duplicated record launches nothing twice, and
//! a missed one is launched by the tick's pre-launch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodbstreams::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use ferry_core::RunId;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::dynamo::{run_id_of_pk, LAUNCHABLE_PK, RUN_SK};

/// An item's attributes as a stream record carries them (its `NewImage`), however they were
/// delivered: the streams SDK's map, the DynamoDB SDK's map, or Lambda's JSON.
pub trait Image {
    /// The string attribute `name` (`{"S": ...}`), if the item has one.
    fn string(&self, name: &str) -> Option<&str>;
}

impl Image for HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue> {
    fn string(&self, name: &str) -> Option<&str> {
        self.get(name)?.as_s().ok().map(String::as_str)
    }
}

impl Image for HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    fn string(&self, name: &str) -> Option<&str> {
        self.get(name)?.as_s().ok().map(String::as_str)
    }
}

/// Lambda's JSON image: `{"pk": {"S": "R#..."}, ...}`.
impl Image for serde_json::Map<String, serde_json::Value> {
    fn string(&self, name: &str) -> Option<&str> {
        self.get(name)?.get("S")?.as_str()
    }
}

/// The run a record's new image names, if that run may need its task now: a run item
/// (`sk = R`) in the launch index's waiting partition (`due_pk = X#W`: a Scheduled or Late run
/// of a launched deployment, not launched yet). Anything else — another item, a run agents
/// claim, a launched run already held or finished, a removal (no new image) — is `None`.
/// Whether it is due within its profile's lead is dispatch's call.
pub fn launchable_run(image: &impl Image) -> Option<RunId> {
    if image.string("sk")? != RUN_SK || image.string("due_pk")? != LAUNCHABLE_PK {
        return None;
    }
    run_id_of_pk(image.string("pk")?)
}

/// The same test as [`launchable_run`] as a Lambda event-source-mapping filter pattern
/// (`FilterCriteria`), so Lambda invokes dispatch only for such records.
pub const LAMBDA_FILTER_PATTERN: &str =
    r#"{"dynamodb":{"NewImage":{"sk":{"S":["R"]},"due_pk":{"S":["X#W"]}}}}"#;

/// The event Lambda delivers from a DynamoDB stream (the fields dispatch reads).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamEvent {
    /// The batch, in stream order per shard.
    #[serde(rename = "Records", default)]
    pub records: Vec<StreamEventRecord>,
}

/// One record of a [`StreamEvent`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamEventRecord {
    /// The record's id.
    #[serde(rename = "eventID", default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// `INSERT`, `MODIFY` or `REMOVE`.
    #[serde(rename = "eventName", default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    /// The change.
    #[serde(default)]
    pub dynamodb: StreamEventChange,
}

/// The change a [`StreamEventRecord`] carries.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamEventChange {
    /// The item after the change (absent on `REMOVE`, and on a `KEYS_ONLY` stream).
    #[serde(rename = "NewImage", default, skip_serializing_if = "Option::is_none")]
    pub new_image: Option<serde_json::Map<String, serde_json::Value>>,
    /// The record's sequence number: the `itemIdentifier` of a batch item failure.
    #[serde(
        rename = "SequenceNumber",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sequence_number: Option<String>,
}

impl StreamEventRecord {
    /// [`launchable_run`] of this record's new image.
    pub fn launchable_run(&self) -> Option<RunId> {
        launchable_run(self.dynamodb.new_image.as_ref()?)
    }
}

/// The ARN of `table`'s stream if it is enabled with new images (`NEW_IMAGE` or
/// `NEW_AND_OLD_IMAGES`), which [`launchable_run`] reads.
pub(crate) fn new_image_stream(table: &aws_sdk_dynamodb::types::TableDescription) -> Option<&str> {
    use aws_sdk_dynamodb::types::StreamViewType as View;
    let spec = table.stream_specification()?;
    let new_images = matches!(
        spec.stream_view_type(),
        Some(View::NewImage | View::NewAndOldImages)
    );
    table
        .latest_stream_arn()
        .filter(|_| spec.stream_enabled() && new_images)
}

/// The item the store writes for `run`, as Lambda's JSON image of it (`{"pk": {"S": ...},
/// ...}`): what a stream record's `NewImage` holds after that write. For tests and tools that
/// build stream events.
pub fn run_image(
    run: &ferry_core::FlowRun,
) -> Result<serde_json::Map<String, serde_json::Value>, ferry_core::ports::StoreError> {
    Ok(crate::dynamo::run_item(run)?
        .into_iter()
        .filter_map(|(k, v)| Some((k, json_value(&v)?)))
        .collect())
}

/// One attribute in DynamoDB's JSON (`{"S": ...}`, `{"N": ...}`, `{"SS": [...]}`); the types a
/// run item has.
fn json_value(v: &aws_sdk_dynamodb::types::AttributeValue) -> Option<serde_json::Value> {
    use aws_sdk_dynamodb::types::AttributeValue as Av;
    Some(match v {
        Av::S(s) => serde_json::json!({ "S": s }),
        Av::N(n) => serde_json::json!({ "N": n }),
        Av::Ss(ss) => serde_json::json!({ "SS": ss }),
        Av::Bool(b) => serde_json::json!({ "BOOL": b }),
        _ => return None,
    })
}

/// Why the stream cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The table has no stream (or a stream without new images).
    #[error("FERRY_TABLE={table}: the table has no stream with new images, which dispatch reads: enable it with `aws dynamodb update-table --table-name {table} --stream-specification StreamEnabled=true,StreamViewType=NEW_AND_OLD_IMAGES`, or deploy infra/storage.yaml (`ferry aws bootstrap` creates tables with it)")]
    NoStream {
        /// The table.
        table: String,
    },
    /// DynamoDB did not describe the table.
    #[error("FERRY_TABLE={table}: cannot describe the table to find its stream: check AWS_REGION, credentials and AWS_ENDPOINT_URL_DYNAMODB")]
    DescribeTable {
        /// The table.
        table: String,
        /// The SDK's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// DynamoDB Streams did not describe the stream.
    #[error("stream {arn}: cannot list its shards: check credentials (dynamodb:DescribeStream) and the streams endpoint (AWS_ENDPOINT_URL_DYNAMODB_STREAMS)")]
    DescribeStream {
        /// The stream.
        arn: String,
        /// The SDK's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A shard's first iterator could not be had.
    #[error("stream {arn}: cannot start reading shard {shard}")]
    ShardIterator {
        /// The stream.
        arn: String,
        /// The shard.
        shard: String,
        /// The SDK's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Follows the table's stream in-process (`ferry server start` on the AWS backend): every shard
/// open when it starts from its latest record, every shard that appears later (as old ones
/// close, about every four hours) from its beginning; and sends the run of each record
/// [`launchable_run`] keeps to a channel.
#[derive(Debug, Clone)]
pub struct StreamReader {
    streams: aws_sdk_dynamodbstreams::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    table: String,
    empty_pause: Duration,
    discover_every: Duration,
}

/// Where a shard is read from next.
#[derive(Debug, Clone)]
enum Position {
    Latest,
    TrimHorizon,
    After(String),
}

/// What every shard task shares.
struct Shared {
    streams: aws_sdk_dynamodbstreams::Client,
    arn: String,
    sink: mpsc::Sender<RunId>,
    stop: CancellationToken,
    empty_pause: Duration,
}

const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl StreamReader {
    /// A reader of `table`'s stream (the streams client from [`crate::config::dynamodb_streams_client`]).
    pub fn new(
        streams: aws_sdk_dynamodbstreams::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        table: impl Into<String>,
    ) -> Self {
        Self {
            streams,
            dynamodb,
            table: table.into(),
            empty_pause: Duration::from_millis(250),
            discover_every: Duration::from_secs(5),
        }
    }

    /// The table's current stream, or why there is none to read.
    pub async fn stream_arn(&self) -> Result<String, StreamError> {
        let out = self
            .dynamodb
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| StreamError::DescribeTable {
                table: self.table.clone(),
                source: Box::new(e),
            })?;
        out.table()
            .and_then(new_image_stream)
            .map(str::to_owned)
            .ok_or_else(|| StreamError::NoStream {
                table: self.table.clone(),
            })
    }

    /// Starts reading: finds the stream and positions a reader at the latest record of every
    /// open shard before returning (so every write after this returns is seen), then follows
    /// the stream in the background until `shutdown` is cancelled or `sink` is dropped. Errors
    /// after the start are logged and retried with backoff, never fatal: a record that was
    /// missed is launched by the tick.
    pub async fn start(
        self,
        sink: mpsc::Sender<RunId>,
        shutdown: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, StreamError> {
        let arn = self.stream_arn().await?;
        let shared = Arc::new(Shared {
            streams: self.streams.clone(),
            arn: arn.clone(),
            sink,
            stop: shutdown.child_token(),
            empty_pause: self.empty_pause,
        });
        let mut known = HashSet::new();
        let mut shards = JoinSet::new();
        for shard in describe_shards(&self.streams, &arn).await? {
            let Some(id) = shard.shard_id().map(str::to_owned) else {
                continue;
            };
            let open = shard
                .sequence_number_range()
                .is_some_and(|r| r.ending_sequence_number().is_none());
            if open {
                let iterator = shard_iterator(&shared, &id, &Position::Latest)
                    .await
                    .map_err(|e| StreamError::ShardIterator {
                        arn: arn.clone(),
                        shard: id.clone(),
                        source: Box::new(e),
                    })?;
                shards.spawn(follow_shard(
                    shared.clone(),
                    id.clone(),
                    Position::Latest,
                    iterator,
                ));
            }
            known.insert(id);
        }
        tracing::info!(stream = %arn, shards = shards.len(), "reading the table's stream");
        Ok(tokio::spawn(discover(
            shared,
            self.discover_every,
            known,
            shards,
        )))
    }
}

/// Polls the stream's shard list and follows each new shard from its beginning; ends (and
/// stops every shard task) on shutdown or when the sink is gone.
async fn discover(
    shared: Arc<Shared>,
    every: Duration,
    mut known: HashSet<String>,
    mut shards: JoinSet<()>,
) {
    loop {
        tokio::select! {
            () = shared.stop.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
        if shared.sink.is_closed() {
            break;
        }
        while let Some(done) = shards.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "a stream shard reader panicked");
            }
        }
        let listed = match describe_shards(&shared.streams, &shared.arn).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %ferry_core::error::error_chain(&e), "cannot list the stream's shards; trying again");
                continue;
            }
        };
        let mut current = HashSet::new();
        for shard in listed {
            let Some(id) = shard.shard_id().map(str::to_owned) else {
                continue;
            };
            current.insert(id.clone());
            if known.contains(&id) {
                continue;
            }
            tracing::info!(stream = %shared.arn, shard = %id, "following a new shard");
            shards.spawn(follow_shard(
                shared.clone(),
                id.clone(),
                Position::TrimHorizon,
                None,
            ));
            known.insert(id);
        }
        // Shards past the stream's 24 h retention are no longer listed.
        known.retain(|id| current.contains(id));
    }
    shared.stop.cancel();
    while let Some(done) = shards.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "a stream shard reader panicked");
        }
    }
    tracing::info!(stream = %shared.arn, "stopped reading the table's stream");
}

/// Every shard of the stream (all pages of `DescribeStream`).
async fn describe_shards(
    streams: &aws_sdk_dynamodbstreams::Client,
    arn: &str,
) -> Result<Vec<aws_sdk_dynamodbstreams::types::Shard>, StreamError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = streams
            .describe_stream()
            .stream_arn(arn)
            .set_exclusive_start_shard_id(after)
            .send()
            .await
            .map_err(|e| StreamError::DescribeStream {
                arn: arn.to_owned(),
                source: Box::new(e),
            })?;
        let Some(d) = page.stream_description() else {
            return Ok(out);
        };
        out.extend(d.shards().iter().cloned());
        after = d.last_evaluated_shard_id().map(str::to_owned);
        if after.is_none() {
            return Ok(out);
        }
    }
}

type IteratorError = SdkError<
    aws_sdk_dynamodbstreams::operation::get_shard_iterator::GetShardIteratorError,
    aws_sdk_dynamodbstreams::config::http::HttpResponse,
>;

/// A shard iterator at `position`; `None` when the shard has nothing more to give.
async fn shard_iterator(
    shared: &Shared,
    shard: &str,
    position: &Position,
) -> Result<Option<String>, IteratorError> {
    let req = shared
        .streams
        .get_shard_iterator()
        .stream_arn(&shared.arn)
        .shard_id(shard);
    let req = match position {
        Position::Latest => req.shard_iterator_type(ShardIteratorType::Latest),
        Position::TrimHorizon => req.shard_iterator_type(ShardIteratorType::TrimHorizon),
        Position::After(seq) => req
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(seq),
    };
    Ok(req.send().await?.shard_iterator().map(str::to_owned))
}

/// Sleeps `d`, or returns false at once on shutdown.
async fn pause(stop: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

fn next_backoff(b: Duration) -> Duration {
    (b * 2).clamp(Duration::from_millis(100), MAX_BACKOFF)
}

/// Reads one shard until it ends (closed and read through), shutdown, or the sink is gone.
async fn follow_shard(
    shared: Arc<Shared>,
    shard: String,
    mut position: Position,
    mut iterator: Option<String>,
) {
    let mut backoff = Duration::ZERO;
    loop {
        if shared.stop.is_cancelled() {
            return;
        }
        let Some(it) = iterator.take() else {
            match shard_iterator(&shared, &shard, &position).await {
                Ok(Some(it)) => {
                    iterator = Some(it);
                    backoff = Duration::ZERO;
                }
                Ok(None) => return,
                Err(e) if e.code() == Some("ResourceNotFoundException") => {
                    tracing::info!(shard, "shard no longer in the stream");
                    return;
                }
                Err(e) if e.code() == Some("TrimmedDataAccessException") => {
                    position = Position::TrimHorizon;
                }
                Err(e) => {
                    backoff = next_backoff(backoff);
                    tracing::warn!(shard, error = %ferry_core::error::error_chain(&e), backoff_ms = backoff.as_millis() as u64, "cannot get a shard iterator; trying again");
                    if !pause(&shared.stop, backoff).await {
                        return;
                    }
                }
            }
            continue;
        };
        let got = tokio::select! {
            () = shared.stop.cancelled() => return,
            got = shared.streams.get_records().shard_iterator(&it).send() => got,
        };
        let out = match got {
            Ok(out) => out,
            Err(e) => {
                let code = e.code().map(str::to_owned);
                match code.as_deref() {
                    // Iterators live 15 minutes; take up after the last record read.
                    Some("ExpiredIteratorException") => {
                        tracing::debug!(shard, "shard iterator expired; getting a new one");
                    }
                    Some("TrimmedDataAccessException") => {
                        tracing::warn!(
                            shard,
                            "records past the stream's retention; reading from the oldest kept"
                        );
                        position = Position::TrimHorizon;
                    }
                    Some("ResourceNotFoundException") => {
                        tracing::info!(shard, "shard no longer in the stream");
                        return;
                    }
                    _ => {
                        backoff = next_backoff(backoff);
                        tracing::warn!(shard, error = %ferry_core::error::error_chain(&e), backoff_ms = backoff.as_millis() as u64, "GetRecords failed; trying again");
                        iterator = Some(it);
                        if !pause(&shared.stop, backoff).await {
                            return;
                        }
                    }
                }
                continue;
            }
        };
        backoff = Duration::ZERO;
        for record in out.records() {
            let Some(change) = record.dynamodb() else {
                continue;
            };
            if let Some(seq) = change.sequence_number() {
                position = Position::After(seq.to_owned());
            }
            if let Some(id) = change.new_image().and_then(launchable_run) {
                tracing::debug!(run_id = %id, shard, "stream: launchable run");
                if shared.sink.send(id).await.is_err() {
                    return;
                }
            }
        }
        let Some(next) = out.next_shard_iterator() else {
            tracing::info!(shard, "shard closed and read through");
            return;
        };
        iterator = Some(next.to_owned());
        if out.records().is_empty() && !pause(&shared.stop, shared.empty_pause).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodbstreams::types::AttributeValue as Av;

    const ID: &str = "0190f5e2-7a00-7000-8000-000000000001";

    fn sdk_image(pairs: &[(&str, &str)]) -> HashMap<String, Av> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Av::S((*v).to_owned())))
            .collect()
    }

    fn json_image(pairs: &[(&str, &str)]) -> serde_json::Map<String, serde_json::Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::json!({ "S": v })))
            .collect()
    }

    fn waiting_launched() -> Vec<(&'static str, String)> {
        vec![
            ("pk", format!("R#{ID}")),
            ("sk", "R".into()),
            ("due_pk", "X#W".into()),
            ("state", "SCHEDULED".into()),
        ]
    }

    fn pairs<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        v.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    #[test]
    fn a_waiting_launched_run_is_kept_from_either_image_shape() {
        let item = waiting_launched();
        let id: RunId = ID.parse().unwrap();
        assert_eq!(launchable_run(&sdk_image(&pairs(&item))), Some(id));
        assert_eq!(launchable_run(&json_image(&pairs(&item))), Some(id));
    }

    #[test]
    fn runs_agents_claim_held_runs_and_other_items_are_dropped() {
        let with = |k: &'static str, v: &str| {
            let mut item = waiting_launched();
            item.retain(|(name, _)| *name != k);
            if !v.is_empty() {
                item.push((k, v.to_owned()));
            }
            launchable_run(&sdk_image(&pairs(&item)))
        };
        assert_eq!(with("due_pk", "Q#default"), None, "a run agents claim");
        assert_eq!(with("due_pk", "X#P"), None, "held by its launcher");
        assert_eq!(with("due_pk", ""), None, "not waiting (no due entry)");
        assert_eq!(with("sk", "I"), None, "an idempotency-key item");
        assert_eq!(with("pk", "R#not-a-uuid"), None, "a malformed key");
        assert_eq!(with("pk", "QUEUES"), None, "another partition");
        let mut numeric = sdk_image(&pairs(&waiting_launched()));
        numeric.insert("due_pk".into(), Av::N("1".into()));
        assert_eq!(launchable_run(&numeric), None, "a non-string attribute");
    }

    #[test]
    fn a_lambda_event_parses_and_a_removal_has_no_run() {
        let event: StreamEvent = serde_json::from_value(serde_json::json!({
            "Records": [
                {"eventID": "1", "eventName": "INSERT", "eventSource": "aws:dynamodb",
                 "dynamodb": {"Keys": {"pk": {"S": format!("R#{ID}")}, "sk": {"S": "R"}},
                              "NewImage": {"pk": {"S": format!("R#{ID}")}, "sk": {"S": "R"},
                                           "due_pk": {"S": "X#W"}, "version": {"N": "0"}},
                              "SequenceNumber": "100", "SizeBytes": 10,
                              "StreamViewType": "NEW_AND_OLD_IMAGES"}},
                {"eventID": "2", "eventName": "REMOVE",
                 "dynamodb": {"Keys": {"pk": {"S": format!("R#{ID}")}}, "SequenceNumber": "200"}}
            ]
        }))
        .unwrap();
        assert_eq!(event.records.len(), 2);
        assert_eq!(event.records[0].launchable_run(), Some(ID.parse().unwrap()));
        assert_eq!(
            event.records[0].dynamodb.sequence_number.as_deref(),
            Some("100")
        );
        assert_eq!(event.records[1].launchable_run(), None);
    }

    #[test]
    fn only_an_enabled_stream_with_new_images_is_readable() {
        use aws_sdk_dynamodb::types::{StreamSpecification, StreamViewType, TableDescription};
        let table = |enabled: bool, view: Option<StreamViewType>| {
            let spec = StreamSpecification::builder()
                .stream_enabled(enabled)
                .set_stream_view_type(view)
                .build()
                .unwrap();
            TableDescription::builder()
                .stream_specification(spec)
                .latest_stream_arn("arn:stream")
                .build()
        };
        for view in [StreamViewType::NewImage, StreamViewType::NewAndOldImages] {
            assert_eq!(
                new_image_stream(&table(true, Some(view))),
                Some("arn:stream")
            );
        }
        assert_eq!(new_image_stream(&table(false, None)), None, "stream off");
        for view in [StreamViewType::KeysOnly, StreamViewType::OldImage] {
            assert_eq!(new_image_stream(&table(true, Some(view))), None);
        }
        let none = TableDescription::builder().build();
        assert_eq!(new_image_stream(&none), None, "never had a stream");
    }

    #[test]
    fn the_image_of_a_stored_run_is_kept_only_while_it_waits_for_a_launch() {
        let t = chrono::DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let d = ferry_core::DeploymentId::new("etl", "nightly").unwrap();
        let mut run = ferry_core::testkit::adhoc_run(&d, "default", t, 1);
        let image = run_image(&run).unwrap();
        assert_eq!(image["sk"], serde_json::json!({"S": "R"}));
        assert_eq!(launchable_run(&image), None, "a run agents claim");
        run.infra = Some("process/x".parse().unwrap());
        assert_eq!(launchable_run(&run_image(&run).unwrap()), Some(run.id));
        let cancelled = ferry_core::state::transition(
            &run,
            ferry_core::state::RunEvent::Cancel {
                reason: "test".into(),
            },
            t,
        )
        .unwrap();
        assert_eq!(launchable_run(&run_image(&cancelled).unwrap()), None);
    }

    #[test]
    fn the_lambda_filter_pattern_names_the_same_attributes_as_the_filter() {
        let p: serde_json::Value = serde_json::from_str(LAMBDA_FILTER_PATTERN).unwrap();
        let image = &p["dynamodb"]["NewImage"];
        assert_eq!(image["sk"]["S"][0], RUN_SK);
        assert_eq!(image["due_pk"]["S"][0], LAUNCHABLE_PK);
    }
}
