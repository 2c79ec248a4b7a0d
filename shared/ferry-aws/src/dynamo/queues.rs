//! The work queues: items `QUEUES` / name.

use async_trait::async_trait;
use ferry_core::ports::{QueueStore, StoreError, StoreResult};
use ferry_core::WorkQueue;

use super::codec::{decode, encode, n, s};
use super::errors::{classify, is_condition_failed};
use super::keys::QUEUES;
use super::DynamoStore;

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
