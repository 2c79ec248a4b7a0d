//! The DynamoDB store: one on-demand table, single-table design.
//!
//! | item | pk | sk | notes |
//! | --- | --- | --- | --- |
//! | work queue | `QUEUES` | name | `body`, `version` |
//! | deployment | `DEPLOYMENTS` | `flow/name` | `body`, `revision`; `h_pk`/`h_sk` while it has a `next_tick_at` |
//! | flow run | `R#<id>` | `R` | `body`, `version`, `state`; `due_*` while waiting, `lease_*` while held, `dep_*`, `all_*`, `slots` |
//! | idempotency key | `I#<flow/name>#<key>` | `I` | `run_id` |
//! | concurrency slot | `SLOTS` | slot key | `holders`: string set of run ids |
//!
//! Indexes (all sparse): `due` (`Q#<queue>` → `<scheduled ms>#<id>`, projection ALL: agents read
//! bodies straight from it), `leases` (`L` → run id, KEYS_ONLY: a heartbeat costs no index
//! write), `horizon` (`H` →
//! `<next_tick ms>#<id>`, ALL), `by_deployment` (`D#<id>` → `<scheduled ms>#<id>`, KEYS_ONLY)
//! and `all_runs` (8 shards `A#<n>` → `<scheduled ms>#<id>`, KEYS_ONLY). KEYS_ONLY indexes cost a
//! write only when a run is inserted or deleted, not on every state change. An index read is a
//! hint: every decision is a conditional write on the base item.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnConsumedCapacity, ReturnValue,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use ferry_core::ids::{DeploymentId, RunId};
use ferry_core::ports::{
    ClaimOutcome, DeploymentStore, InsertOutcome, QueueStore, RunFilter, RunStore, SlotTake,
    StoreError, StoreResult,
};
use ferry_core::state::StateType;
use ferry_core::{Deployment, FlowRun, WorkQueue};
use sha2::{Digest, Sha256};

type Item = HashMap<String, AttributeValue>;

const QUEUES: &str = "QUEUES";
const DEPLOYMENTS: &str = "DEPLOYMENTS";
const SLOTS: &str = "SLOTS";
/// Shards of the `all_runs` index (spreads insert load over partitions).
pub const ALL_SHARDS: u32 = 8;

/// Index names, for `bootstrap` and the template.
pub mod index {
    /// Waiting runs per queue.
    pub const DUE: &str = "due";
    /// Held runs (the reaper's view).
    pub const LEASES: &str = "leases";
    /// Deployments by `next_tick_at`.
    pub const HORIZON: &str = "horizon";
    /// Runs per deployment.
    pub const BY_DEPLOYMENT: &str = "by_deployment";
    /// All runs by scheduled time, sharded.
    pub const ALL_RUNS: &str = "all_runs";
}

/// A sort-key condition of an index query: `attr <= upper`, or `attr BETWEEN lower AND upper`.
struct SortRange<'a> {
    attr: &'a str,
    lower: Option<&'a str>,
    upper: &'a str,
}

/// Ferry's store on one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
    meter: Option<Arc<CapacityMeter>>,
}

/// Requests and capacity units consumed, as DynamoDB reports them (`ReturnConsumedCapacity`),
/// for benchmarks. Units are counted in thousandths.
#[derive(Debug, Default)]
pub struct CapacityMeter {
    /// Requests sent (successful ones; failed conditional writes are not reported back).
    pub requests: AtomicU64,
    /// Read capacity units × 1000.
    pub read_milli: AtomicU64,
    /// Write capacity units × 1000.
    pub write_milli: AtomicU64,
}

impl CapacityMeter {
    /// (requests, read units, write units) so far.
    pub fn snapshot(&self) -> (u64, f64, f64) {
        (
            self.requests.load(Ordering::Relaxed),
            self.read_milli.load(Ordering::Relaxed) as f64 / 1000.0,
            self.write_milli.load(Ordering::Relaxed) as f64 / 1000.0,
        )
    }
}

/// Outputs that carry consumed capacity: (units, is_write).
trait Consumed {
    fn consumed(&self) -> (f64, bool);
}

fn units(c: Option<&aws_sdk_dynamodb::types::ConsumedCapacity>) -> f64 {
    c.and_then(|c| c.capacity_units()).unwrap_or(0.0)
}

macro_rules! consumed {
    ($($t:ty => $write:expr),* $(,)?) => {$(
        impl Consumed for $t {
            fn consumed(&self) -> (f64, bool) {
                (units(self.consumed_capacity()), $write)
            }
        }
    )*};
}

consumed!(
    aws_sdk_dynamodb::operation::get_item::GetItemOutput => false,
    aws_sdk_dynamodb::operation::query::QueryOutput => false,
    aws_sdk_dynamodb::operation::put_item::PutItemOutput => true,
    aws_sdk_dynamodb::operation::update_item::UpdateItemOutput => true,
    aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput => true,
);

impl Consumed for aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput {
    fn consumed(&self) -> (f64, bool) {
        (
            self.consumed_capacity()
                .iter()
                .map(|c| c.capacity_units().unwrap_or(0.0))
                .sum(),
            false,
        )
    }
}

impl Consumed for aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput {
    fn consumed(&self) -> (f64, bool) {
        (
            self.consumed_capacity()
                .iter()
                .map(|c| c.capacity_units().unwrap_or(0.0))
                .sum(),
            true,
        )
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
fn ms_key(t: DateTime<Utc>) -> String {
    format!("{:015}", t.timestamp_millis().max(0))
}
fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

type HttpResponse = aws_sdk_dynamodb::config::http::HttpResponse;

fn classify<E>(e: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(se) => {
            matches!(
                se.err().code(),
                Some(
                    "ProvisionedThroughputExceededException"
                        | "ThrottlingException"
                        | "RequestLimitExceeded"
                        | "InternalServerError"
                        | "ServiceUnavailable"
                        | "TransactionInProgressException"
                )
            ) || se.raw().status().is_server_error()
        }
        _ => false,
    };
    if transient {
        StoreError::Unavailable {
            source: Box::new(e),
        }
    } else {
        StoreError::backend(e)
    }
}

type TransactError = aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

/// The cancellation reason of each item of a cancelled transaction, in order (`""` for none).
fn reasons_of(e: &TransactError) -> Vec<String> {
    match e {
        TransactError::TransactionCanceledException(t) => t
            .cancellation_reasons()
            .iter()
            .map(|r| r.code().unwrap_or_default().to_owned())
            .collect(),
        _ => Vec::new(),
    }
}

fn cancellation_codes(e: &SdkError<TransactError, HttpResponse>) -> Vec<String> {
    match e {
        SdkError::ServiceError(se) => reasons_of(se.err()),
        _ => Vec::new(),
    }
}

fn is_condition_failed<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> bool {
    matches!(e, SdkError::ServiceError(se) if se.err().code() == Some("ConditionalCheckFailedException"))
}

fn decode<T: serde::de::DeserializeOwned>(item: &Item) -> StoreResult<T> {
    let key = format!(
        "{}/{}",
        get_s(item, "pk").unwrap_or("?"),
        get_s(item, "sk").unwrap_or("?")
    );
    let body = get_s(item, "body").ok_or_else(|| StoreError::Corrupt {
        key: key.clone(),
        message: "no body".into(),
    })?;
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
        key,
        message: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(StoreError::backend)
}

fn run_pk(id: RunId) -> String {
    format!("R#{id}")
}

fn shard(id: RunId) -> u32 {
    let d = Sha256::digest(id.to_string().as_bytes());
    u32::from(d[0]) % ALL_SHARDS
}

/// The full item of a run, with the index attributes its state calls for.
fn run_item(run: &FlowRun) -> StoreResult<Item> {
    let sched = format!("{}#{}", ms_key(run.scheduled_time), run.id);
    let mut item: Item = HashMap::from([
        ("pk".into(), s(run_pk(run.id))),
        ("sk".into(), s("R")),
        ("body".into(), s(encode(run)?)),
        ("version".into(), n(run.version)),
        ("state".into(), s(run.state.as_str())),
        ("dep_pk".into(), s(format!("D#{}", run.deployment))),
        ("dep_sk".into(), s(sched.clone())),
        ("all_pk".into(), s(format!("A#{}", shard(run.id)))),
        ("all_sk".into(), s(sched.clone())),
    ]);
    if let Some(due) = due_key(run) {
        item.insert("due_pk".into(), s(due_pk(&run.work_queue)));
        item.insert("due_sk".into(), s(due));
    }
    if let (true, Some(lease)) = (run.state.is_held(), &run.lease) {
        item.insert("lease_pk".into(), s("L"));
        item.insert("lease_sk".into(), s(run.id.to_string()));
        item.insert(
            "lease_expires".into(),
            n(lease.expires_at.timestamp_millis()),
        );
    }
    if !run.slots.is_empty() {
        item.insert("slots".into(), AttributeValue::Ss(run.slots.clone()));
    }
    Ok(item)
}

fn due_pk(queue: &str) -> String {
    format!("Q#{queue}")
}

/// The run's sort key in the `due` index while it waits: Late runs (`L#…`) sort before
/// Scheduled ones (`S#…`), so agents read overdue runs first and late marking reads only the
/// `S#` range — the runs that can still become late, never the backlog already Late.
fn due_key(run: &FlowRun) -> Option<String> {
    let prefix = match run.state {
        StateType::Late => "L",
        StateType::Scheduled => "S",
        _ => return None,
    };
    Some(format!(
        "{prefix}#{}#{}",
        ms_key(run.scheduled_time),
        run.id
    ))
}

fn slots_of(item: &Item) -> Vec<String> {
    item.get("slots")
        .and_then(|v| v.as_ss().ok())
        .cloned()
        .unwrap_or_default()
}

/// A token that makes a retried transaction idempotent (DynamoDB applies a repeated
/// `ClientRequestToken` once within 10 minutes).
fn request_token(parts: &[&str]) -> String {
    let d = Sha256::digest(parts.join("\0").as_bytes());
    hex::encode(&d[..16])
}

impl DynamoStore {
    /// A store on `table`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            meter: None,
        }
    }

    /// Asks DynamoDB for the consumed capacity of every call and adds it to `meter`.
    pub fn with_meter(mut self, meter: Arc<CapacityMeter>) -> Self {
        self.meter = Some(meter);
        self
    }

    fn rcc(&self) -> Option<ReturnConsumedCapacity> {
        self.meter.as_ref().map(|_| ReturnConsumedCapacity::Total)
    }

    fn metered<O: Consumed>(&self, out: O) -> O {
        if let Some(m) = &self.meter {
            let (u, write) = out.consumed();
            m.requests.fetch_add(1, Ordering::Relaxed);
            let milli = (u * 1000.0).round() as u64;
            if write {
                m.write_milli.fetch_add(milli, Ordering::Relaxed);
            } else {
                m.read_milli.fetch_add(milli, Ordering::Relaxed);
            }
        }
        out
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn get_item(&self, pk: &str, sk: &str, consistent: bool) -> StoreResult<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(consistent)
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map(|o| self.metered(o))
            .map_err(classify)?;
        Ok(out.item)
    }

    /// Items of `pk` (all pages).
    async fn query_partition(&self, pk: &str) -> StoreResult<Vec<Item>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(pk))
                .set_exclusive_start_key(start)
                .set_return_consumed_capacity(self.rcc())
                .send()
                .await
                .map(|o| self.metered(o))
                .map_err(classify)?;
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    /// Items from an index query, newest or oldest first, at most `limit`.
    async fn query_index(
        &self,
        index: &str,
        hash_attr: &str,
        hash: &str,
        range: Option<(&str, &str)>,
        forward: bool,
        limit: usize,
    ) -> StoreResult<Vec<Item>> {
        let range = range.map(|(attr, upper)| SortRange {
            attr,
            lower: None,
            upper,
        });
        self.query_index_from(index, hash_attr, hash, range, None, forward, limit)
            .await
    }

    /// [`DynamoStore::query_index`] with a sort-key range that may have a lower bound, from
    /// after `start` (an `ExclusiveStartKey`).
    #[allow(clippy::too_many_arguments)]
    async fn query_index_from(
        &self,
        index: &str,
        hash_attr: &str,
        hash: &str,
        range: Option<SortRange<'_>>,
        mut start: Option<Item>,
        forward: bool,
        limit: usize,
    ) -> StoreResult<Vec<Item>> {
        let mut out = Vec::new();
        loop {
            let mut q = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .scan_index_forward(forward)
                .expression_attribute_values(":h", s(hash))
                .set_exclusive_start_key(start);
            let mut cond = format!("{hash_attr} = :h");
            if let Some(r) = &range {
                match r.lower {
                    Some(lower) => {
                        cond.push_str(&format!(" AND {} BETWEEN :l AND :r", r.attr));
                        q = q.expression_attribute_values(":l", s(lower));
                    }
                    None => cond.push_str(&format!(" AND {} <= :r", r.attr)),
                }
                q = q.expression_attribute_values(":r", s(r.upper));
            }
            let page = q
                .key_condition_expression(cond)
                .limit(i32::try_from(limit.min(1000)).unwrap_or(1000))
                .set_return_consumed_capacity(self.rcc())
                .send()
                .await
                .map(|o| self.metered(o))
                .map_err(classify)?;
            out.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if start.is_none() || out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
        }
    }

    /// Bodies of runs by id, in the order given (missing ones skipped).
    async fn batch_get_runs(&self, ids: &[String]) -> StoreResult<Vec<FlowRun>> {
        let mut found: HashMap<String, FlowRun> = HashMap::new();
        for chunk in ids.chunks(100) {
            let mut keys: Vec<Item> = chunk
                .iter()
                .map(|pk| HashMap::from([("pk".into(), s(pk.clone())), ("sk".into(), s("R"))]))
                .collect();
            let mut attempts = 0;
            while !keys.is_empty() {
                // Consistent: the reaper and the slot sweep act on what they read.
                let req = KeysAndAttributes::builder()
                    .set_keys(Some(keys.clone()))
                    .consistent_read(true)
                    .build()
                    .map_err(StoreError::backend)?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, req)
                    .set_return_consumed_capacity(self.rcc())
                    .send()
                    .await
                    .map(|o| self.metered(o))
                    .map_err(classify)?;
                for item in out
                    .responses
                    .unwrap_or_default()
                    .remove(&self.table)
                    .unwrap_or_default()
                {
                    let pk = get_s(&item, "pk").unwrap_or_default().to_owned();
                    found.insert(pk, decode(&item)?);
                }
                keys = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
                attempts += 1;
                if !keys.is_empty() {
                    if attempts > 8 {
                        return Err(StoreError::Unavailable {
                            source: "BatchGetItem left keys unprocessed after 8 attempts".into(),
                        });
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(20 << attempts)).await;
                }
            }
        }
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    async fn release_slots(&self, run: RunId, keys: &[String]) -> StoreResult<()> {
        for key in keys {
            self.client
                .update_item()
                .table_name(&self.table)
                .key("pk", s(SLOTS))
                .key("sk", s(key.clone()))
                .update_expression("DELETE holders :r")
                .expression_attribute_values(":r", AttributeValue::Ss(vec![run.to_string()]))
                .set_return_consumed_capacity(self.rcc())
                .send()
                .await
                .map(|o| self.metered(o))
                .map_err(classify)?;
        }
        Ok(())
    }

    /// Removes slot holders whose runs are no longer held (a writer that died between a run's
    /// final write and its slot release). Returns how many were removed.
    pub async fn sweep_stale_slots(&self, now: DateTime<Utc>) -> StoreResult<usize> {
        // Only holders whose run ended a while ago: a run that just ended is released by its
        // own writer a moment later.
        let settled = now - chrono::Duration::seconds(60);
        let mut removed = 0;
        for item in self.query_partition(SLOTS).await? {
            let key = get_s(&item, "sk").unwrap_or_default().to_owned();
            let holders = item
                .get("holders")
                .and_then(|v| v.as_ss().ok())
                .cloned()
                .unwrap_or_default();
            if holders.is_empty() {
                continue;
            }
            let pks: Vec<String> = holders.iter().map(|h| format!("R#{h}")).collect();
            let keep: HashSet<String> = self
                .batch_get_runs(&pks)
                .await?
                .into_iter()
                .filter(|r| {
                    let last_change = r.history.last().map(|h| h.at).unwrap_or(r.created_at);
                    (r.state.is_held() && r.slots.contains(&key)) || last_change > settled
                })
                .map(|r| r.id.to_string())
                .collect();
            for h in holders.iter().filter(|h| !keep.contains(*h)) {
                if let Ok(id) = h.parse() {
                    self.release_slots(id, std::slice::from_ref(&key)).await?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

#[async_trait]
impl QueueStore for DynamoStore {
    async fn create_queue(&self, queue: &WorkQueue) -> StoreResult<()> {
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(QUEUES))
            .item("sk", s(queue.name.clone()))
            .item("body", s(encode(queue)?))
            .item("version", n(queue.version))
            .condition_expression("attribute_not_exists(pk)")
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map(|o| self.metered(o));
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => {
                if self.get_queue(&queue.name).await?.as_ref() == Some(queue) {
                    return Ok(()); // our own create, retried after a lost response
                }
                Err(StoreError::Conflict(format!(
                    "work queue {} exists",
                    queue.name
                )))
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn update_queue(&self, queue: &WorkQueue, expected_version: u64) -> StoreResult<()> {
        let mut stored = queue.clone();
        stored.version = expected_version + 1;
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(QUEUES))
            .item("sk", s(queue.name.clone()))
            .item("body", s(encode(&stored)?))
            .item("version", n(stored.version))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(expected_version))
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map(|o| self.metered(o));
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Err(StoreError::Conflict(format!(
                "work queue {} changed or is gone",
                queue.name
            ))),
            Err(e) => Err(classify(e)),
        }
    }

    async fn get_queue(&self, name: &str) -> StoreResult<Option<WorkQueue>> {
        self.get_item(QUEUES, name, true)
            .await?
            .map(|i| decode(&i))
            .transpose()
    }

    async fn list_queues(&self) -> StoreResult<Vec<WorkQueue>> {
        self.query_partition(QUEUES)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    async fn delete_queue(&self, name: &str) -> StoreResult<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(QUEUES))
            .key("sk", s(name))
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map(|o| self.metered(o))
            .map_err(classify)?;
        Ok(())
    }
}

#[async_trait]
impl DeploymentStore for DynamoStore {
    async fn get_deployment(&self, id: &DeploymentId) -> StoreResult<Option<Deployment>> {
        self.get_item(DEPLOYMENTS, &id.to_string(), true)
            .await?
            .map(|i| decode(&i))
            .transpose()
    }

    async fn list_deployments(&self) -> StoreResult<Vec<Deployment>> {
        self.query_partition(DEPLOYMENTS)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    async fn put_deployment(
        &self,
        deployment: &Deployment,
        expected_revision: Option<u64>,
    ) -> StoreResult<()> {
        let id = deployment.id.to_string();
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(DEPLOYMENTS))
            .item("sk", s(id.clone()))
            .item("body", s(encode(deployment)?))
            .item("revision", n(deployment.revision));
        if let Some(t) = deployment.next_tick_at {
            req = req
                .item("h_pk", s("H"))
                .item("h_sk", s(format!("{}#{id}", ms_key(t))));
        }
        req = match expected_revision {
            None => req.condition_expression("attribute_not_exists(pk)"),
            Some(r) => req
                .condition_expression("revision = :r")
                .expression_attribute_values(":r", n(r)),
        };
        match req
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map(|o| self.metered(o))
        {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => {
                // A retry of our own write whose first attempt landed is a success.
                if self.get_deployment(&deployment.id).await?.as_ref() == Some(deployment) {
                    return Ok(());
                }
                Err(StoreError::Conflict(format!(
                    "deployment {id} changed, exists or is gone"
                )))
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn delete_deployment(
        &self,
        id: &DeploymentId,
        expected_revision: u64,
    ) -> StoreResult<()> {
        let r = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(DEPLOYMENTS))
            .key("sk", s(id.to_string()))
            .condition_expression("revision = :r")
            .expression_attribute_values(":r", n(expected_revision))
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map(|o| self.metered(o));
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => {
                // Already gone (e.g. our own delete, retried after a lost response): done.
                if self.get_deployment(id).await?.is_none() {
                    return Ok(());
                }
                Err(StoreError::Conflict(format!("deployment {id} changed")))
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn deployments_due_for_tick(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<Deployment>> {
        let upper = format!("{}#~", ms_key(now));
        let items = self
            .query_index(
                index::HORIZON,
                "h_pk",
                "H",
                Some(("h_sk", &upper)),
                true,
                limit,
            )
            .await?;
        items.iter().map(decode).collect()
    }
}

#[async_trait]
impl RunStore for DynamoStore {
    async fn insert_run(&self, run: &FlowRun) -> StoreResult<InsertOutcome> {
        let item = run_item(run)?;
        for _ in 0..3 {
            let Some(key) = &run.idempotency_key else {
                let r = self
                    .client
                    .put_item()
                    .table_name(&self.table)
                    .set_item(Some(item.clone()))
                    .condition_expression("attribute_not_exists(pk)")
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .set_return_consumed_capacity(self.rcc())
                    .send()
                    .await
                    .map(|o| self.metered(o));
                return match r {
                    Ok(_) => Ok(InsertOutcome::Inserted),
                    Err(e) if is_condition_failed(&e) => {
                        let existing = match self.get_run(run.id).await? {
                            Some(r) => r,
                            None => continue,
                        };
                        // Our own earlier attempt (retried after a lost response) counts as ours.
                        if existing == *run {
                            return Ok(InsertOutcome::Inserted);
                        }
                        Ok(InsertOutcome::Exists(Box::new(existing)))
                    }
                    Err(e) => Err(classify(e)),
                };
            };
            let idem_pk = format!("I#{}#{key}", run.deployment);
            let put_run = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(StoreError::backend)?;
            let put_key = Put::builder()
                .table_name(&self.table)
                .item("pk", s(idem_pk.clone()))
                .item("sk", s("I"))
                .item("run_id", s(run.id.to_string()))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(StoreError::backend)?;
            let r = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put_run).build())
                .transact_items(TransactWriteItem::builder().put(put_key).build())
                .client_request_token(request_token(&[
                    "insert",
                    &self.table,
                    get_s(&item, "body").unwrap_or_default(),
                ]))
                .set_return_consumed_capacity(self.rcc())
                .send()
                .await
                .map(|o| self.metered(o));
            match r {
                Ok(_) => return Ok(InsertOutcome::Inserted),
                Err(e) if e.code() == Some("TransactionCanceledException") => {
                    let owner: Option<RunId> = self
                        .get_item(&idem_pk, "I", true)
                        .await?
                        .and_then(|i| get_s(&i, "run_id").and_then(|s| s.parse().ok()));
                    let Some(owner) = owner else {
                        // The key is free: the transaction was cancelled for another reason
                        // (or the run id exists without the key). Look at the id, else retry.
                        if let Some(existing) = self.get_run(run.id).await? {
                            return Ok(InsertOutcome::Exists(Box::new(existing)));
                        }
                        continue;
                    };
                    if let Some(existing) = self.get_run(owner).await? {
                        return Ok(InsertOutcome::Exists(Box::new(existing)));
                    }
                    // The key points at a run that was deleted: free it — only if it still
                    // points there, so a key a concurrent create just took is never removed.
                    let r = self
                        .client
                        .delete_item()
                        .table_name(&self.table)
                        .key("pk", s(idem_pk))
                        .key("sk", s("I"))
                        .condition_expression("run_id = :stale")
                        .expression_attribute_values(":stale", s(owner.to_string()))
                        .set_return_consumed_capacity(self.rcc())
                        .send()
                        .await
                        .map(|o| self.metered(o));
                    match r {
                        Ok(_) => {}
                        Err(e) if is_condition_failed(&e) => {}
                        Err(e) => return Err(classify(e)),
                    }
                }
                Err(e) => return Err(classify(e)),
            }
        }
        Err(StoreError::Conflict(format!(
            "run {} could not be inserted",
            run.id
        )))
    }

    async fn get_run(&self, id: RunId) -> StoreResult<Option<FlowRun>> {
        self.get_item(&run_pk(id), "R", true)
            .await?
            .map(|i| decode(&i))
            .transpose()
    }

    async fn update_run(&self, run: &FlowRun, expected_version: u64) -> StoreResult<()> {
        let r = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(run_item(run)?))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(expected_version))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map(|o| self.metered(o));
        let old = match r {
            Ok(out) => out.attributes.unwrap_or_default(),
            Err(e) if is_condition_failed(&e) => {
                // A retry of our own write that already landed is a success.
                if let Some(current) = self.get_run(run.id).await? {
                    if current == *run {
                        let _ = self.sweep_run_slots(&current).await;
                        return Ok(());
                    }
                }
                return Err(StoreError::Conflict(format!(
                    "run {} is not at version {expected_version}",
                    run.id
                )));
            }
            Err(e) => return Err(classify(e)),
        };
        let released: Vec<String> = slots_of(&old)
            .into_iter()
            .filter(|k| !run.slots.contains(k))
            .collect();
        self.release_slots(run.id, &released).await
    }

    async fn finish_with_retry(
        &self,
        held: &FlowRun,
        finished: &FlowRun,
        retry: &FlowRun,
    ) -> StoreResult<()> {
        if retry.idempotency_key.is_some() {
            return Err(StoreError::backend(std::io::Error::other(
                "finish_with_retry: a retry carries no idempotency key",
            )));
        }
        let put_finished = Put::builder()
            .table_name(&self.table)
            .set_item(Some(run_item(finished)?))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(held.version))
            .build()
            .map_err(StoreError::backend)?;
        let put_retry = Put::builder()
            .table_name(&self.table)
            .set_item(Some(run_item(retry)?))
            .condition_expression("attribute_not_exists(pk)")
            .build()
            .map_err(StoreError::backend)?;
        let finished_body = encode(finished)?;
        let r = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_finished).build())
            .transact_items(TransactWriteItem::builder().put(put_retry).build())
            .client_request_token(request_token(&[
                "finish",
                &self.table,
                &held.version.to_string(),
                &finished_body,
            ]))
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map(|o| self.metered(o));
        match r {
            Ok(_) => {}
            Err(e) if e.code() == Some("TransactionCanceledException") => {
                // Our own write, replayed after a lost response, found both items in place.
                let ours = self.get_run(finished.id).await?.as_ref() == Some(finished)
                    && self.get_run(retry.id).await?.is_some();
                if !ours {
                    if !cancellation_codes(&e).contains(&"ConditionalCheckFailed".to_owned()) {
                        return Err(StoreError::Unavailable {
                            source: Box::new(e),
                        });
                    }
                    return Err(StoreError::Conflict(format!(
                        "run {} is not at version {} (or its retry {} exists)",
                        held.id, held.version, retry.id
                    )));
                }
            }
            Err(e) => return Err(classify(e)),
        }
        let released: Vec<String> = held
            .slots
            .iter()
            .filter(|k| !finished.slots.contains(k))
            .cloned()
            .collect();
        self.release_slots(finished.id, &released).await
    }

    async fn delete_run(&self, id: RunId, expected_version: u64) -> StoreResult<()> {
        let r = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(run_pk(id)))
            .key("sk", s("R"))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(expected_version))
            .return_values(ReturnValue::AllOld)
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map(|o| self.metered(o));
        match r {
            Ok(out) => {
                let old = out.attributes.unwrap_or_default();
                self.release_slots(id, &slots_of(&old)).await
            }
            Err(e) if is_condition_failed(&e) => Err(StoreError::Conflict(format!(
                "run {id} is not at version {expected_version}"
            ))),
            Err(e) => Err(classify(e)),
        }
    }

    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<FlowRun>> {
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        // Newest first; index pages are read until enough runs pass the filter.
        let mut keys: Vec<(String, String)> = Vec::new(); // (sort key, pk)
        let want = limit
            .saturating_mul(if filter.states.is_empty() && filter.work_queue.is_none() {
                1
            } else {
                20
            })
            .min(20_000);
        match &filter.deployment {
            Some(d) => {
                for it in self
                    .query_index(
                        index::BY_DEPLOYMENT,
                        "dep_pk",
                        &format!("D#{d}"),
                        None,
                        false,
                        want,
                    )
                    .await?
                {
                    keys.push((
                        get_s(&it, "dep_sk").unwrap_or_default().into(),
                        get_s(&it, "pk").unwrap_or_default().into(),
                    ));
                }
            }
            None => {
                for shard in 0..ALL_SHARDS {
                    for it in self
                        .query_index(
                            index::ALL_RUNS,
                            "all_pk",
                            &format!("A#{shard}"),
                            None,
                            false,
                            want,
                        )
                        .await?
                    {
                        keys.push((
                            get_s(&it, "all_sk").unwrap_or_default().into(),
                            get_s(&it, "pk").unwrap_or_default().into(),
                        ));
                    }
                }
            }
        }
        keys.sort_by(|a, b| b.0.cmp(&a.0));
        let mut out = Vec::new();
        for chunk in keys.chunks(100) {
            let pks: Vec<String> = chunk.iter().map(|k| k.1.clone()).collect();
            for r in self.batch_get_runs(&pks).await? {
                if (filter.states.is_empty() || filter.states.contains(&r.state))
                    && filter
                        .work_queue
                        .as_ref()
                        .is_none_or(|q| *q == r.work_queue)
                {
                    out.push(r);
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn due_runs_after(
        &self,
        queue: &str,
        before: DateTime<Utc>,
        after: Option<&FlowRun>,
        limit: usize,
    ) -> StoreResult<Vec<FlowRun>> {
        // Every `L#` key sorts below `S#`: late runs of any time, then scheduled ones due.
        let upper = format!("S#{}#~", ms_key(before));
        let pk = due_pk(queue);
        let start = after.and_then(|r| {
            let sk = due_key(r)?;
            Some(HashMap::from([
                ("due_pk".to_owned(), s(pk.clone())),
                ("due_sk".to_owned(), s(sk)),
                ("pk".to_owned(), s(run_pk(r.id))),
                ("sk".to_owned(), s("R")),
            ]))
        });
        let range = SortRange {
            attr: "due_sk",
            lower: None,
            upper: &upper,
        };
        let items = self
            .query_index_from(index::DUE, "due_pk", &pk, Some(range), start, true, limit)
            .await?;
        items.iter().map(decode).collect()
    }

    async fn scheduled_due(
        &self,
        queue: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<FlowRun>> {
        let upper = format!("S#{}#~", ms_key(before));
        let range = SortRange {
            attr: "due_sk",
            lower: Some("S#"),
            upper: &upper,
        };
        let items = self
            .query_index_from(
                index::DUE,
                "due_pk",
                &due_pk(queue),
                Some(range),
                None,
                true,
                limit,
            )
            .await?;
        items.iter().map(decode).collect()
    }

    async fn waiting_runs_of(&self, deployment: &DeploymentId) -> StoreResult<Vec<FlowRun>> {
        let keys = self
            .query_index(
                index::BY_DEPLOYMENT,
                "dep_pk",
                &format!("D#{deployment}"),
                None,
                true,
                100_000,
            )
            .await?;
        let pks: Vec<String> = keys
            .iter()
            .filter_map(|k| get_s(k, "pk").map(str::to_owned))
            .collect();
        Ok(self
            .batch_get_runs(&pks)
            .await?
            .into_iter()
            .filter(FlowRun::is_waiting)
            .collect())
    }

    async fn expired_leases(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<FlowRun>> {
        // The lease index is KEYS_ONLY with a stable key, so a heartbeat (which moves the
        // expiry) costs no index write; the reaper reads the held runs' bodies instead —
        // O(runs held right now), once per tick.
        let keys = self
            .query_index(index::LEASES, "lease_pk", "L", None, true, 100_000)
            .await?;
        let pks: Vec<String> = keys
            .iter()
            .filter_map(|k| get_s(k, "pk").map(str::to_owned))
            .collect();
        let mut expired: Vec<FlowRun> = self
            .batch_get_runs(&pks)
            .await?
            .into_iter()
            .filter(|r| r.state.is_held() && r.lease.as_ref().is_some_and(|l| l.expires_at < now))
            .collect();
        expired.truncate(limit);
        Ok(expired)
    }

    async fn claim_run(
        &self,
        claimed: &FlowRun,
        expected_version: u64,
        slots: &[SlotTake],
    ) -> StoreResult<ClaimOutcome> {
        if slots.is_empty() {
            return match self.update_run(claimed, expected_version).await {
                Ok(()) => Ok(ClaimOutcome::Claimed(Box::new(claimed.clone()))),
                Err(StoreError::Conflict(_)) => Ok(ClaimOutcome::Lost),
                Err(e) => Err(e),
            };
        }
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(run_item(claimed)?))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(expected_version))
            .build()
            .map_err(StoreError::backend)?;
        let mut tx = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build());
        let id = claimed.id.to_string();
        for slot in slots {
            let update = Update::builder()
                .table_name(&self.table)
                .key("pk", s(SLOTS))
                .key("sk", s(slot.key.clone()))
                .update_expression("ADD holders :r")
                .condition_expression("attribute_not_exists(holders) OR size(holders) < :limit")
                .expression_attribute_values(":r", AttributeValue::Ss(vec![id.clone()]))
                .expression_attribute_values(":limit", n(slot.limit))
                .build()
                .map_err(StoreError::backend)?;
            tx = tx.transact_items(TransactWriteItem::builder().update(update).build());
        }
        // The same claim replayed (a retried request) has the same token; any other differs.
        let body = encode(claimed)?;
        let token = request_token(&["claim", &self.table, &expected_version.to_string(), &body]);
        match tx
            .client_request_token(token)
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map(|o| self.metered(o))
        {
            Ok(_) => Ok(ClaimOutcome::Claimed(Box::new(claimed.clone()))),
            Err(SdkError::ServiceError(se))
                if se.err().code() == Some("TransactionCanceledException") =>
            {
                let reasons = reasons_of(se.err());
                let failed =
                    |i: usize| reasons.get(i).map(String::as_str) == Some("ConditionalCheckFailed");
                if failed(0) || reasons.is_empty() {
                    return Ok(ClaimOutcome::Lost);
                }
                for (i, slot) in slots.iter().enumerate() {
                    if failed(i + 1) {
                        return Ok(ClaimOutcome::SlotFull(slot.key.clone()));
                    }
                }
                // Cancelled for another reason (a concurrent transaction on the same items).
                Err(StoreError::Unavailable {
                    source: format!("claim transaction cancelled: {reasons:?}").into(),
                })
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn sweep_slots(&self, now: DateTime<Utc>) -> StoreResult<usize> {
        self.sweep_stale_slots(now).await
    }

    async fn slot_holders(&self, key: &str) -> StoreResult<u32> {
        Ok(self
            .get_item(SLOTS, key, true)
            .await?
            .and_then(|i| {
                i.get("holders")
                    .and_then(|v| v.as_ss().ok())
                    .map(|v| v.len() as u32)
            })
            .unwrap_or(0))
    }
}

impl DynamoStore {
    /// Releases the slots a finished run still appears in (after a retried final write).
    async fn sweep_run_slots(&self, run: &FlowRun) -> StoreResult<()> {
        if run.state.is_terminal() || run.state.is_waiting() {
            let keys: Vec<String> = self
                .query_partition(SLOTS)
                .await?
                .iter()
                .filter(|i| {
                    i.get("holders")
                        .and_then(|v| v.as_ss().ok())
                        .is_some_and(|h| h.contains(&run.id.to_string()))
                })
                .filter_map(|i| get_s(i, "sk").map(str::to_owned))
                .collect();
            self.release_slots(run.id, &keys).await?;
        }
        Ok(())
    }
}
