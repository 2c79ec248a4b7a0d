//! The DynamoDB store: one on-demand table, single-table design.
//!
//! | item | pk | sk | notes |
//! | --- | --- | --- | --- |
//! | work queue | `QUEUES` | name | `body`, `version` |
//! | deployment | `DEPLOYMENTS` | `flow/name` | `body`, `revision` (the concurrency token, `Deployment::version`); `h_pk`/`h_sk` while it has a `next_tick_at` |
//! | flow run | `R#<id>` | `R` | `body`, `version`, `state`, `wq` (its queue); `due_*` while waiting, `lease_*` while held, `dep_*`, `all_*`, `slots` |
//! | idempotency key | `I#<flow/name>#<key>` | `I` | `run_id` |
//! | concurrency slot | `SLOTS` | slot key | `holders`: string set of run ids |
//! | infrastructure profile | `INFRA` | `KIND/NAME` | `body`, `version` |
//! | agent (last poll) | `AGENTS` | agent name | `body` (its presence), `first_seen`, `last_poll` (ms), `expire_at` (TTL, epoch s) |
//!
//! Indexes (all sparse): `due` (`Q#<queue>` → `L#` or `S#` + `<scheduled ms>#<id>`, Late runs
//! before Scheduled ones; projection ALL: agents read bodies straight from it; runs of launched
//! deployments sit in `X#W` instead, with the same sort keys, and in `X#P` → `<start deadline
//! ms>#<id>` while their launcher holds them), `leases` (`L` → run id, KEYS_ONLY: a heartbeat costs no index
//! write), `horizon` (`H` →
//! `<next_tick ms>#<id>`, ALL), `by_deployment` (`D#<id>` → `<scheduled ms>#<id>`, KEYS_ONLY)
//! and `all_runs` (8 shards `A#<n>` → `<scheduled ms>#<id>`, KEYS_ONLY). KEYS_ONLY indexes cost a
//! write only when a run is inserted or deleted, not on every state change. The run lists'
//! filters have their own, `runs_by_state` (`state` → `<scheduled ms>#<id>`, projecting
//! `dep_pk` and `wq`; an entry moves with every state change).
//! An index read is a hint: every decision is a conditional write on the base item.
//!
//! Every key format lives in `keys`; items to and from domain values in `codec`; SDK errors to
//! `StoreError` in `errors`; one file per port (`queues`, `deployments`, `runs`) and the slot
//! bookkeeping in `slots`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, ReturnConsumedCapacity};
use aws_sdk_dynamodb::Client;
use ferry_core::ports::{StoreError, StoreResult};
use ferry_core::FlowRun;

use codec::{decode, get_s, s};
use errors::classify;

mod agents;
mod codec;
mod deployments;
mod errors;
mod infra;
mod keys;
mod queues;
mod runs;
mod slots;

pub(crate) use codec::run_item;
pub use keys::{index, ALL_SHARDS, BY_STATE_INCLUDES, TTL_ATTR};
pub(crate) use keys::{run_id_of_pk, LAUNCHABLE_PK, RUN_SK};

type Item = HashMap<String, AttributeValue>;

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

    /// One page of at most `page_size` items of an index query in key order, and the key to
    /// read the next page from (`None` at the end).
    async fn query_index_page(
        &self,
        index: &str,
        hash_attr: &str,
        hash: &str,
        range: SortRange<'_>,
        start: Option<Item>,
        page_size: usize,
    ) -> StoreResult<(Vec<Item>, Option<Item>)> {
        let lower = range.lower.unwrap_or("");
        let page = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression(format!(
                "{hash_attr} = :h AND {} BETWEEN :l AND :r",
                range.attr
            ))
            .expression_attribute_values(":h", s(hash))
            .expression_attribute_values(":l", s(lower))
            .expression_attribute_values(":r", s(range.upper))
            .set_exclusive_start_key(start)
            .limit(i32::try_from(page_size.clamp(1, 1000)).unwrap_or(1000))
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map(|o| self.metered(o))
            .map_err(classify)?;
        Ok((page.items.unwrap_or_default(), page.last_evaluated_key))
    }

    /// One page of an index query over `sort_attr` in `[lower, upper]`, in the given order,
    /// and the key to read on from (`None` at the end). Attribute names go through
    /// placeholders (`state` is a reserved word).
    #[allow(clippy::too_many_arguments)]
    async fn query_sorted_page(
        &self,
        index: &str,
        hash_attr: &str,
        hash: &str,
        sort_attr: &str,
        lower: Option<&str>,
        upper: &str,
        forward: bool,
        start: Option<Item>,
        page_size: usize,
    ) -> StoreResult<(Vec<Item>, Option<Item>)> {
        let mut q = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .scan_index_forward(forward)
            .expression_attribute_names("#h", hash_attr)
            .expression_attribute_names("#s", sort_attr)
            .expression_attribute_values(":h", s(hash))
            .expression_attribute_values(":u", s(upper))
            .set_exclusive_start_key(start)
            .limit(i32::try_from(page_size.clamp(1, 1000)).unwrap_or(1000));
        q = match lower {
            Some(l) => q
                .key_condition_expression("#h = :h AND #s BETWEEN :l AND :u")
                .expression_attribute_values(":l", s(l)),
            None => q.key_condition_expression("#h = :h AND #s <= :u"),
        };
        let page = q
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map(|o| self.metered(o))
            .map_err(classify)?;
        Ok((page.items.unwrap_or_default(), page.last_evaluated_key))
    }

    /// How many entries of an index partition have `sort_attr` in `[lower, upper]`
    /// (`Select=COUNT`: no item is returned; every 1 MB page is one call).
    async fn count_index(
        &self,
        index: &str,
        hash_attr: &str,
        hash: &str,
        sort_attr: &str,
        lower: &str,
        upper: &str,
    ) -> StoreResult<u64> {
        let mut total = 0u64;
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(index)
                .select(aws_sdk_dynamodb::types::Select::Count)
                .key_condition_expression("#h = :h AND #s BETWEEN :l AND :u")
                .expression_attribute_names("#h", hash_attr)
                .expression_attribute_names("#s", sort_attr)
                .expression_attribute_values(":h", s(hash))
                .expression_attribute_values(":l", s(lower))
                .expression_attribute_values(":u", s(upper))
                .set_exclusive_start_key(start)
                .set_return_consumed_capacity(self.rcc())
                .send()
                .await
                .map(|o| self.metered(o))
                .map_err(classify)?;
            total += u64::try_from(page.count).unwrap_or(0);
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(total);
            }
        }
    }

    /// Bodies of runs by id, in the order given (missing ones skipped), read consistently: the
    /// reaper and the slot sweep act on what they read.
    async fn batch_get_runs(&self, ids: &[String]) -> StoreResult<Vec<FlowRun>> {
        self.batch_get_runs_read(ids, true).await
    }

    /// [`DynamoStore::batch_get_runs`], eventually consistent (half the read capacity) when
    /// `consistent` is false: for run lists, which come from an eventually consistent index
    /// anyway.
    async fn batch_get_runs_read(
        &self,
        ids: &[String],
        consistent: bool,
    ) -> StoreResult<Vec<FlowRun>> {
        let mut found: HashMap<String, FlowRun> = HashMap::new();
        for chunk in ids.chunks(100) {
            let mut keys: Vec<Item> = chunk
                .iter()
                .map(|pk| HashMap::from([("pk".into(), s(pk.clone())), ("sk".into(), s(RUN_SK))]))
                .collect();
            let mut attempts = 0;
            while !keys.is_empty() {
                let req = KeysAndAttributes::builder()
                    .set_keys(Some(keys.clone()))
                    .consistent_read(consistent)
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
}
