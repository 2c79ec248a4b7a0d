//! The deployments: items `DEPLOYMENTS` / `flow/name`, in the `horizon` index while they have a
//! next tick.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_core::ids::DeploymentId;
use ferry_core::ports::{DeploymentStore, StoreError, StoreResult};
use ferry_core::Deployment;

use super::codec::{decode, encode, n, s};
use super::errors::{classify, is_condition_failed};
use super::keys::{horizon_sk, horizon_upper, index, DEPLOYMENTS, HORIZON_PK};
use super::{DynamoStore, Item};

/// A deployment from its item: the body, with [`Deployment::version`] from the item's
/// `revision` attribute (the concurrency token; the user's revision is in the body).
fn decode_deployment(item: &Item) -> StoreResult<Deployment> {
    let mut d: Deployment = decode(item)?;
    d.version = item
        .get("revision")
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Corrupt {
            key: format!("{DEPLOYMENTS}/{}", d.id),
            message: "no revision attribute".into(),
        })?;
    Ok(d)
}

#[async_trait]
impl DeploymentStore for DynamoStore {
    async fn get_deployment(&self, id: &DeploymentId) -> StoreResult<Option<Deployment>> {
        self.get_item(DEPLOYMENTS, &id.to_string(), true)
            .await?
            .map(|i| decode_deployment(&i))
            .transpose()
    }

    async fn list_deployments(&self) -> StoreResult<Vec<Deployment>> {
        self.query_partition(DEPLOYMENTS)
            .await?
            .iter()
            .map(decode_deployment)
            .collect()
    }

    async fn put_deployment(
        &self,
        deployment: &Deployment,
        expected_version: Option<u64>,
    ) -> StoreResult<()> {
        let id = deployment.id.to_string();
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(DEPLOYMENTS))
            .item("sk", s(id.clone()))
            .item("body", s(encode(deployment)?))
            .item("revision", n(deployment.version));
        if let Some(t) = deployment.next_tick_at {
            req = req
                .item("h_pk", s(HORIZON_PK))
                .item("h_sk", s(horizon_sk(t, &id)));
        }
        req = match expected_version {
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

    async fn delete_deployment(&self, id: &DeploymentId, expected_version: u64) -> StoreResult<()> {
        let r = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(DEPLOYMENTS))
            .key("sk", s(id.to_string()))
            .condition_expression("revision = :r")
            .expression_attribute_values(":r", n(expected_version))
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
        let upper = horizon_upper(now);
        let items = self
            .query_index(
                index::HORIZON,
                "h_pk",
                HORIZON_PK,
                Some(("h_sk", &upper)),
                true,
                limit,
            )
            .await?;
        items.iter().map(decode_deployment).collect()
    }
}
