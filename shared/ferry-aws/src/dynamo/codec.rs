//! Items to and from domain values: attribute helpers, JSON bodies, the full run item.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use ferry_core::ports::{StoreError, StoreResult};
use ferry_core::FlowRun;
use sha2::{Digest, Sha256};

use super::keys::{
    all_runs_pk, by_deployment_pk, due_entry, lease_sk, run_pk, scheduled_sk, shard, LEASE_PK,
    RUN_SK,
};
use super::Item;

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}
pub(super) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}
pub(super) fn get_s<'a>(item: &'a Item, k: &str) -> Option<&'a str> {
    item.get(k).and_then(|v| v.as_s().ok()).map(String::as_str)
}

pub(super) fn decode<T: serde::de::DeserializeOwned>(item: &Item) -> StoreResult<T> {
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

pub(super) fn encode<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(StoreError::backend)
}

/// The full item of a run, with the index attributes its state calls for.
pub(crate) fn run_item(run: &FlowRun) -> StoreResult<Item> {
    let sched = scheduled_sk(run);
    let mut item: Item = HashMap::from([
        ("pk".into(), s(run_pk(run.id))),
        ("sk".into(), s(RUN_SK)),
        ("body".into(), s(encode(run)?)),
        ("version".into(), n(run.version)),
        ("state".into(), s(run.state.as_str())),
        ("dep_pk".into(), s(by_deployment_pk(&run.deployment))),
        ("dep_sk".into(), s(sched.clone())),
        ("all_pk".into(), s(all_runs_pk(shard(run.id)))),
        ("all_sk".into(), s(sched.clone())),
        ("wq".into(), s(run.work_queue.as_str())),
    ]);
    if let Some((pk, sk)) = due_entry(run) {
        item.insert("due_pk".into(), s(pk));
        item.insert("due_sk".into(), s(sk));
    }
    if let (true, Some(lease)) = (run.state.is_held(), &run.lease) {
        item.insert("lease_pk".into(), s(LEASE_PK));
        item.insert("lease_sk".into(), s(lease_sk(run.id)));
        item.insert(
            "lease_expires".into(),
            n(lease.expires_at.timestamp_millis()),
        );
    }
    if !run.slots.is_empty() {
        let slots = run.slots.iter().map(super::keys::slot_sk).collect();
        item.insert("slots".into(), AttributeValue::Ss(slots));
    }
    Ok(item)
}

pub(super) fn slots_of(item: &Item) -> Vec<String> {
    item.get("slots")
        .and_then(|v| v.as_ss().ok())
        .cloned()
        .unwrap_or_default()
}

/// A token that makes a retried transaction idempotent (DynamoDB applies a repeated
/// `ClientRequestToken` once within 10 minutes).
pub(super) fn request_token(parts: &[&str]) -> String {
    let d = Sha256::digest(parts.join("\0").as_bytes());
    hex::encode(&d[..16])
}
