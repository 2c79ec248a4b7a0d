//! Concurrency slots: items `SLOTS` / slot key whose `holders` set names the runs holding a
//! place. A claim adds its run in the claim transaction (`runs`); a run's writer releases its
//! slots after the write that left them; the sweeps clean up after writers that died between.

use std::collections::HashSet;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use ferry_core::ids::RunId;
use ferry_core::ports::StoreResult;
use ferry_core::FlowRun;

use super::codec::{get_s, s};
use super::errors::classify;
use super::keys::{run_pk, slot_sk, SLOTS};
use super::DynamoStore;

impl DynamoStore {
    pub(super) async fn release_slots(&self, run: RunId, keys: &[String]) -> StoreResult<()> {
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
            let pks: Vec<String> = holders.iter().map(run_pk).collect();
            let keep: HashSet<String> = self
                .batch_get_runs(&pks)
                .await?
                .into_iter()
                .filter(|r| {
                    let last_change = r.history.last().map(|h| h.at).unwrap_or(r.created_at);
                    (r.state.is_held() && r.slots.iter().any(|k| slot_sk(k) == key))
                        || last_change > settled
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

    /// Releases the slots a finished run still appears in (after a retried final write).
    pub(super) async fn sweep_run_slots(&self, run: &FlowRun) -> StoreResult<()> {
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

    /// How many runs hold a place in slot `key` (the body of `RunStore::slot_holders`).
    pub(super) async fn count_slot_holders(&self, key: &str) -> StoreResult<u32> {
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
