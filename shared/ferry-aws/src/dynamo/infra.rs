//! Infrastructure profiles: items `INFRA` / `KIND/NAME`.

use async_trait::async_trait;
use ferry_core::infra::{InfraName, InfraProfile};
use ferry_core::ports::{InfraStore, StoreError, StoreResult};

use super::codec::{decode, encode, n, s};
use super::errors::{classify, is_condition_failed};
use super::keys::INFRA;
use super::DynamoStore;

#[async_trait]
impl InfraStore for DynamoStore {
    async fn put_infra(
        &self,
        profile: &InfraProfile,
        expected_version: Option<u64>,
    ) -> StoreResult<()> {
        let req = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(INFRA))
            .item("sk", s(profile.name.to_string()))
            .item("body", s(encode(profile)?))
            .item("version", n(profile.version));
        let req = match expected_version {
            None => req.condition_expression("attribute_not_exists(pk)"),
            Some(v) => req
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(v)),
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
                if self.get_infra(&profile.name).await?.as_ref() == Some(profile) {
                    return Ok(());
                }
                Err(StoreError::Conflict(format!(
                    "infrastructure profile {} changed, exists or is gone",
                    profile.name
                )))
            }
            Err(e) => Err(classify(e)),
        }
    }

    async fn get_infra(&self, name: &InfraName) -> StoreResult<Option<InfraProfile>> {
        self.get_item(INFRA, &name.to_string(), true)
            .await?
            .map(|i| decode(&i))
            .transpose()
    }

    async fn list_infra(&self) -> StoreResult<Vec<InfraProfile>> {
        self.query_partition(INFRA)
            .await?
            .iter()
            .map(decode)
            .collect()
    }

    async fn delete_infra(&self, name: &InfraName, expected_version: u64) -> StoreResult<()> {
        let r = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(INFRA))
            .key("sk", s(name.to_string()))
            .condition_expression("version = :v")
            .expression_attribute_values(":v", n(expected_version))
            .set_return_consumed_capacity(self.rcc())
            .send()
            .await
            .map(|o| self.metered(o));
        match r {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => {
                // Already gone (e.g. our own delete, retried after a lost response): done.
                if self.get_infra(name).await?.is_none() {
                    return Ok(());
                }
                Err(StoreError::Conflict(format!(
                    "infrastructure profile {name} changed"
                )))
            }
            Err(e) => Err(classify(e)),
        }
    }
}
