//! The flow runs: items `R#<id>` / `R` with their index attributes (see `codec::run_item`),
//! idempotency keys `I#<flow/name>#<key>` / `I`, and the claim and finish transactions that
//! write a run together with its slots or its retry.

use std::collections::{HashMap, HashSet, VecDeque};

use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use chrono::{DateTime, Utc};
use ferry_core::ids::{DeploymentId, RunId, RunIdPrefix};
use ferry_core::ports::{
    ClaimOutcome, DueCounts, InsertOutcome, RunFilter, RunStore, RunWindow, SlotTake, StateCounts,
    StoreError, StoreResult,
};
use ferry_core::slot::SlotKey;
use ferry_core::state::StateType;
use ferry_core::FlowRun;

use super::codec::{decode, encode, get_s, n, request_token, run_item, s, slots_of};
use super::errors::{cancellation_codes, classify, is_condition_failed, reasons_of};
use super::keys::{
    all_runs_pk, by_deployment_pk, due_entry, due_pk, due_upper, idempotency_pk, index, list_range,
    run_id_of_pk, run_pk, scheduled_sk_range, slot_sk, ListRange, ALL_SHARDS, AWAITING_TASK_PK,
    DUE_LATE_RANGE, DUE_SCHEDULED_FROM, IDEMPOTENCY_SK, LAUNCHABLE_PK, LEASE_PK, RUN_SK, SLOTS,
};
use super::{DynamoStore, Item, SortRange};

impl DynamoStore {
    /// A page of the `due` partition `pk` up to `before` (every `L#` key sorts below `S#`: late
    /// runs of any time, then scheduled ones due), after the run `after` of the last page.
    async fn due_page(
        &self,
        pk: &str,
        before: DateTime<Utc>,
        after: Option<&FlowRun>,
        limit: usize,
    ) -> StoreResult<Vec<FlowRun>> {
        let upper = due_upper(before);
        let start = after.and_then(|r| {
            let (_, sk) = due_entry(r)?;
            Some(HashMap::from([
                ("due_pk".to_owned(), s(pk)),
                ("due_sk".to_owned(), s(sk)),
                ("pk".to_owned(), s(run_pk(r.id))),
                ("sk".to_owned(), s(RUN_SK)),
            ]))
        });
        let range = SortRange {
            attr: "due_sk",
            lower: None,
            upper: &upper,
        };
        let items = self
            .query_index_from(index::DUE, "due_pk", pk, Some(range), start, true, limit)
            .await?;
        items.iter().map(decode).collect()
    }
}

/// One index partition a run list reads, merged with the others in sort-key order.
struct ListSource {
    index: &'static str,
    hash_attr: &'static str,
    hash: String,
    sort_attr: &'static str,
    buf: VecDeque<Item>,
    start: Option<Item>,
    done: bool,
}

impl ListSource {
    fn new(
        index: &'static str,
        hash_attr: &'static str,
        hash: String,
        sort_attr: &'static str,
    ) -> Self {
        Self {
            index,
            hash_attr,
            hash,
            sort_attr,
            buf: VecDeque::new(),
            start: None,
            done: false,
        }
    }

    fn head_sk(&self) -> Option<&str> {
        self.buf.front().and_then(|i| get_s(i, self.sort_attr))
    }
}

/// The index partitions a run list reads, and whether their entries are exactly the runs the
/// filter asks for (then a page reads `limit + 1` keys and `limit` bodies; otherwise index
/// pages of `4 × (limit + 1)` keys are read, and bodies in batches, until the page is full):
/// - states: one `runs_by_state` partition per state (deployment and queue checked on the
///   projected `dep_pk`/`wq` before any body is read);
/// - a deployment: its `by_deployment` partition (a queue checked on the bodies);
/// - a queue alone: every state's `runs_by_state` partition, merged, other queues' entries
///   dropped on the projected `wq` (index keys are read, not bodies);
/// - nothing: the 8 `all_runs` shards.
fn list_sources(filter: &RunFilter) -> (Vec<ListSource>, bool) {
    if !filter.states.is_empty() {
        let mut states = filter.states.clone();
        states.sort_by_key(|s| s.as_str());
        states.dedup();
        let sources = states
            .iter()
            .map(|st| ListSource::new(index::BY_STATE, "state", st.as_str().to_owned(), "all_sk"))
            .collect();
        let exact = filter.work_queue.is_none() && filter.deployment.is_none();
        return (sources, exact);
    }
    if let Some(d) = &filter.deployment {
        let exact = filter.work_queue.is_none();
        let src = ListSource::new(
            index::BY_DEPLOYMENT,
            "dep_pk",
            by_deployment_pk(d),
            "dep_sk",
        );
        return (vec![src], exact);
    }
    if filter.work_queue.is_some() {
        let sources = StateType::ALL
            .iter()
            .map(|st| ListSource::new(index::BY_STATE, "state", st.as_str().to_owned(), "all_sk"))
            .collect();
        return (sources, false);
    }
    let sources = (0..ALL_SHARDS)
        .map(|n| ListSource::new(index::ALL_RUNS, "all_pk", all_runs_pk(n), "all_sk"))
        .collect();
    (sources, true)
}

/// Whether an index entry can be one of the filter's runs, from the attributes it projects
/// (an attribute it lacks — a KEYS_ONLY index, or an item written before `wq` existed — is
/// left to the body check).
fn entry_may_match(item: &Item, filter: &RunFilter) -> bool {
    if let (Some(d), Some(v)) = (&filter.deployment, get_s(item, "dep_pk")) {
        if v != by_deployment_pk(d) {
            return false;
        }
    }
    if let (Some(q), Some(v)) = (&filter.work_queue, get_s(item, "wq")) {
        if v != q {
            return false;
        }
    }
    true
}

/// Whether a run (its body, the truth) passes the filter.
fn run_matches(run: &FlowRun, filter: &RunFilter) -> bool {
    (filter.states.is_empty() || filter.states.contains(&run.state))
        && filter
            .work_queue
            .as_ref()
            .is_none_or(|q| run.work_queue == q.as_str())
        && filter
            .deployment
            .as_ref()
            .is_none_or(|d| run.deployment == *d)
}

impl DynamoStore {
    /// Merges the sources' entries in the range's order, skipping the cursor, reads the bodies
    /// in batches and keeps the runs that pass the filter, until `filter.limit` (0: all).
    async fn merge_sources(
        &self,
        filter: &RunFilter,
        range: &ListRange,
        mut sources: Vec<ListSource>,
        exact: bool,
    ) -> StoreResult<Vec<FlowRun>> {
        let limit = if filter.limit == 0 {
            usize::MAX
        } else {
            filter.limit
        };
        // An exact source needs one key past the page at most (the cursor's own entry may
        // come first); a filtered one reads a few pages' worth at a time, entries of other
        // queues or deployments being dropped.
        let page_size = if exact {
            limit.saturating_add(1).min(1000)
        } else {
            limit.saturating_add(1).saturating_mul(4).clamp(100, 1000)
        };
        let mut out: Vec<FlowRun> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut batch: Vec<String> = Vec::new();
        loop {
            for src in sources.iter_mut().filter(|s| s.buf.is_empty() && !s.done) {
                let (items, next) = self
                    .query_sorted_page(
                        src.index,
                        src.hash_attr,
                        &src.hash,
                        src.sort_attr,
                        range.lower.as_deref(),
                        &range.upper,
                        range.forward,
                        src.start.take(),
                        page_size,
                    )
                    .await?;
                src.buf.extend(items);
                src.done = next.is_none();
                src.start = next;
            }
            // The next entry in order: the smallest head ascending, the largest descending.
            let pick = sources
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.head_sk().map(|sk| (i, sk)))
                .reduce(|a, b| {
                    let b_first = if range.forward { b.1 < a.1 } else { b.1 > a.1 };
                    if b_first {
                        b
                    } else {
                        a
                    }
                })
                .map(|(i, _)| i);
            let Some(i) = pick else {
                break;
            };
            let src = &mut sources[i];
            let Some(item) = src.buf.pop_front() else {
                break;
            };
            if range.skip.as_deref() == get_s(&item, src.sort_attr)
                || !entry_may_match(&item, filter)
            {
                continue;
            }
            let Some(pk) = get_s(&item, "pk") else {
                continue;
            };
            // An entry seen twice (the index moving it between states meanwhile) is read once.
            if !seen.insert(pk.to_owned()) {
                continue;
            }
            batch.push(pk.to_owned());
            if batch.len() >= (limit - out.len()).min(100) {
                self.read_batch(filter, &mut batch, &mut out, limit).await?;
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        self.read_batch(filter, &mut batch, &mut out, limit).await?;
        Ok(out)
    }

    /// Reads the bodies of `batch` (emptying it) and appends those that pass the filter to
    /// `out`, up to `limit`.
    async fn read_batch(
        &self,
        filter: &RunFilter,
        batch: &mut Vec<String>,
        out: &mut Vec<FlowRun>,
        limit: usize,
    ) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let pks = std::mem::take(batch);
        for run in self.batch_get_runs_read(&pks, false).await? {
            if out.len() >= limit {
                break;
            }
            if run_matches(&run, filter) {
                out.push(run);
            }
        }
        Ok(())
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
            let idem_pk = idempotency_pk(&run.deployment, key);
            let put_run = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item.clone()))
                .condition_expression("attribute_not_exists(pk)")
                .build()
                .map_err(StoreError::backend)?;
            let put_key = Put::builder()
                .table_name(&self.table)
                .item("pk", s(idem_pk.clone()))
                .item("sk", s(IDEMPOTENCY_SK))
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
                        .get_item(&idem_pk, IDEMPOTENCY_SK, true)
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
                        .key("sk", s(IDEMPOTENCY_SK))
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
        self.get_item(&run_pk(id), RUN_SK, true)
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
                        // The first attempt may have died before releasing its slots; a
                        // failure here is the caller's to retry (the write is idempotent).
                        self.sweep_run_slots(&current).await?;
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
        let keep: Vec<String> = run.slots.iter().map(slot_sk).collect();
        let released: Vec<String> = slots_of(&old)
            .into_iter()
            .filter(|k| !keep.contains(k))
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
            .map(slot_sk)
            .collect();
        self.release_slots(finished.id, &released).await
    }

    async fn delete_run(&self, id: RunId, expected_version: u64) -> StoreResult<()> {
        let r = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(run_pk(id)))
            .key("sk", s(RUN_SK))
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
        let Some(range) = list_range(filter.window, filter.after.as_ref()) else {
            return Ok(Vec::new());
        };
        let (sources, exact) = list_sources(filter);
        self.merge_sources(filter, &range, sources, exact).await
    }

    async fn count_runs_by_state(
        &self,
        lo: DateTime<Utc>,
        hi: DateTime<Utc>,
    ) -> StoreResult<StateCounts> {
        let range = list_range(RunWindow::Between(lo, hi), None);
        let mut counts = Vec::new();
        for state in StateType::ALL {
            let n = match &range {
                None => 0,
                Some(r) => {
                    self.count_index(
                        index::BY_STATE,
                        "state",
                        state.as_str(),
                        "all_sk",
                        r.lower.as_deref().unwrap_or(""),
                        &r.upper,
                    )
                    .await?
                }
            };
            counts.push((state, n));
        }
        Ok(counts)
    }

    async fn count_due_runs(&self, queue: &str, now: DateTime<Utc>) -> StoreResult<DueCounts> {
        let pk = due_pk(queue);
        let (late_lo, late_hi) = DUE_LATE_RANGE;
        let late = self
            .count_index(index::DUE, "due_pk", &pk, "due_sk", late_lo, late_hi)
            .await?;
        let scheduled = self
            .count_index(
                index::DUE,
                "due_pk",
                &pk,
                "due_sk",
                DUE_SCHEDULED_FROM,
                &due_upper(now),
            )
            .await?;
        Ok(DueCounts {
            due: late + scheduled,
            late,
        })
    }

    async fn run_ids_with_prefix(
        &self,
        prefix: &RunIdPrefix,
        limit: usize,
    ) -> StoreResult<Vec<RunId>> {
        // A run id's first 48 bits are its scheduled time: read that window of `all_runs` (its
        // sort keys carry the ids) and keep the ids that match. Every id in a window of a
        // prefix of up to 12 hex digits matches; a longer prefix's window is one millisecond.
        let (lo, hi) = prefix.time_window_ms();
        let (lower, upper) = scheduled_sk_range(lo, hi);
        // The first `limit` of every shard, merged: the `limit` smallest ids overall.
        let mut ids = Vec::new();
        for shard in 0..ALL_SHARDS {
            let mut found = 0;
            let mut start = None;
            loop {
                let (items, next) = self
                    .query_index_page(
                        index::ALL_RUNS,
                        "all_pk",
                        &all_runs_pk(shard),
                        SortRange {
                            attr: "all_sk",
                            lower: Some(&lower),
                            upper: &upper,
                        },
                        start,
                        limit.saturating_sub(found).max(1),
                    )
                    .await?;
                for id in items
                    .iter()
                    .filter_map(|it| get_s(it, "pk").and_then(run_id_of_pk))
                    .filter(|id| prefix.matches(*id))
                {
                    ids.push(id);
                    found += 1;
                }
                start = next;
                if start.is_none() || found >= limit {
                    break;
                }
            }
        }
        ids.sort();
        ids.truncate(limit);
        Ok(ids)
    }

    async fn due_runs_after(
        &self,
        queue: &str,
        before: DateTime<Utc>,
        after: Option<&FlowRun>,
        limit: usize,
    ) -> StoreResult<Vec<FlowRun>> {
        self.due_page(&due_pk(queue), before, after, limit).await
    }

    async fn launchable_after(
        &self,
        before: DateTime<Utc>,
        after: Option<&FlowRun>,
        limit: usize,
    ) -> StoreResult<Vec<FlowRun>> {
        self.due_page(LAUNCHABLE_PK, before, after, limit).await
    }

    async fn awaiting_tasks(&self, limit: usize) -> StoreResult<Vec<FlowRun>> {
        let items = self
            .query_index(index::DUE, "due_pk", AWAITING_TASK_PK, None, true, limit)
            .await?;
        items.iter().map(decode).collect()
    }

    async fn scheduled_due(
        &self,
        queue: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<FlowRun>> {
        let upper = due_upper(before);
        let range = SortRange {
            attr: "due_sk",
            lower: Some(DUE_SCHEDULED_FROM),
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
                &by_deployment_pk(deployment),
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
            .query_index(index::LEASES, "lease_pk", LEASE_PK, None, true, 100_000)
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
                .key("sk", s(slot_sk(&slot.key)))
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

    async fn slot_holders(&self, key: &SlotKey) -> StoreResult<u32> {
        self.count_slot_holders(&slot_sk(key)).await
    }
}
