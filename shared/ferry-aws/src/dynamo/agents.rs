//! Agents as last seen polling: items `AGENTS` / name, with a TTL so an agent gone for
//! [`AGENT_RETENTION`] disappears (DynamoDB deletes expired items lazily, so reads filter too).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;
use chrono::{DateTime, Utc};
use ferry_core::agent::{AgentPresence, AgentRecord};
use ferry_core::ports::{AgentStore, StoreError, StoreResult, AGENT_RETENTION};

use super::codec::{decode, encode, get_s, n, s};
use super::errors::classify;
use super::keys::{AGENTS, TTL_ATTR};
use super::{DynamoStore, Item};

fn millis(item: &Item, attr: &str) -> StoreResult<DateTime<Utc>> {
    let key = format!("{AGENTS}/{}", get_s(item, "sk").unwrap_or("?"));
    item.get(attr)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .and_then(DateTime::from_timestamp_millis)
        .ok_or_else(|| StoreError::Corrupt {
            key,
            message: format!("no {attr} in milliseconds"),
        })
}

fn record(item: &Item) -> StoreResult<AgentRecord> {
    Ok(AgentRecord {
        presence: decode(item)?,
        first_seen: millis(item, "first_seen")?,
        last_poll: millis(item, "last_poll")?,
    })
}

#[async_trait]
impl AgentStore for DynamoStore {
    async fn record_agent(
        &self,
        presence: &AgentPresence,
        now: DateTime<Utc>,
    ) -> StoreResult<AgentRecord> {
        let now_ms = now.timestamp_millis();
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(AGENTS))
            .key("sk", s(presence.name.clone()))
            .update_expression(
                "SET body = :b, last_poll = :now, first_seen = if_not_exists(first_seen, :now), #ttl = :ttl",
            )
            .expression_attribute_names("#ttl", TTL_ATTR)
            .expression_attribute_values(":b", s(encode(presence)?))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":ttl", n((now + AGENT_RETENTION).timestamp()))
            .return_values(ReturnValue::AllNew)
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map(|o| self.metered(o))
            .map_err(classify)?;
        record(&out.attributes.unwrap_or_default())
    }

    async fn list_agents(&self, since: DateTime<Utc>) -> StoreResult<Vec<AgentRecord>> {
        let mut agents = Vec::new();
        for item in self.query_partition(AGENTS).await? {
            let agent = record(&item)?;
            if agent.last_poll >= since {
                agents.push(agent);
            }
        }
        agents.sort_by(|a, b| a.presence.name.cmp(&b.presence.name));
        Ok(agents)
    }
}
