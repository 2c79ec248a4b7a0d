//! Infrastructure-profile use cases: create or update (`ferry infra create`), read, delete —
//! and the checks a deployment naming a profile must pass at apply.

use ferry_core::deployment::DeploymentSpec;
use ferry_core::infra::{validate_infra, InfraKind, InfraName, InfraProfile, InfraSpec};

use crate::retry::{landed, retry_on_conflict, Attempt};
use crate::{AppError, Ferry};

/// What `put_infra` did.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct InfraOutcome {
    /// The stored profile.
    pub profile: InfraProfile,
    /// Whether it was new.
    pub created: bool,
    /// Whether anything changed.
    pub changed: bool,
}

impl Ferry {
    /// Creates the profile `name`, or replaces its spec (launches read it when they happen, so
    /// a change applies to the next launch). Validated first; nothing is written on bad input.
    pub async fn put_infra(
        &self,
        name: &InfraName,
        spec: InfraSpec,
    ) -> Result<InfraOutcome, AppError> {
        validate_infra(name, &spec)?;
        if name.kind() == InfraKind::Ecs {
            self.check_ecs_backend("ecs", name)?;
        }
        let spec = &spec;
        retry_on_conflict(format!("infrastructure profile {name}"), || async move {
            let now = self.now();
            let (profile, expected) = match self.store.get_infra(name).await? {
                Some(old) if old.spec == *spec => {
                    return Ok(Attempt::Done(InfraOutcome {
                        profile: old,
                        created: false,
                        changed: false,
                    }))
                }
                Some(old) => (
                    InfraProfile {
                        spec: spec.clone(),
                        version: old.version + 1,
                        updated_at: now,
                        ..old
                    },
                    Some(old.version),
                ),
                None => (
                    InfraProfile {
                        name: name.clone(),
                        spec: spec.clone(),
                        version: 1,
                        created_at: now,
                        updated_at: now,
                    },
                    None,
                ),
            };
            if !landed(self.store.put_infra(&profile, expected).await)? {
                return Ok(Attempt::Lost);
            }
            tracing::info!(profile = %name, version = profile.version, "infrastructure profile written");
            Ok(Attempt::Done(InfraOutcome {
                profile,
                created: expected.is_none(),
                changed: true,
            }))
        })
        .await
    }

    /// The profile `name`.
    pub async fn get_infra(&self, name: &InfraName) -> Result<InfraProfile, AppError> {
        self.store
            .get_infra(name)
            .await?
            .ok_or_else(|| AppError::not_found("infrastructure profile", name))
    }

    /// All profiles, by name.
    pub async fn list_infra(&self) -> Result<Vec<InfraProfile>, AppError> {
        Ok(self.store.list_infra().await?)
    }

    /// Deletes a profile no deployment uses (a deployment that does must move first, or its
    /// runs could not be launched).
    pub async fn delete_infra(&self, name: &InfraName) -> Result<(), AppError> {
        let users: Vec<String> = self
            .store
            .list_deployments()
            .await?
            .into_iter()
            .filter(|d| d.spec.infra_block.as_ref() == Some(name))
            .map(|d| d.id.to_string())
            .collect();
        if !users.is_empty() {
            return Err(AppError::Conflict(format!(
                "infrastructure profile {name} is used by deployment(s) {}: apply them with another -ib (or none) first",
                users.join(", ")
            )));
        }
        retry_on_conflict(format!("infrastructure profile {name}"), || async move {
            let p = self.get_infra(name).await?;
            if !landed(self.store.delete_infra(name, p.version).await)? {
                return Ok(Attempt::Lost);
            }
            Ok(Attempt::Done(()))
        })
        .await
    }

    /// The checks of a spec's `infra_block`/`infra_overrides` at apply: the profile exists,
    /// the overrides fit it, and an ECS profile has its bundles where a task can fetch them.
    pub(crate) async fn check_infra_of(&self, spec: &DeploymentSpec) -> Result<(), AppError> {
        let Some(name) = &spec.infra_block else {
            return Ok(());
        };
        let Some(profile) = self.store.get_infra(name).await? else {
            let hint = match name.kind() {
                InfraKind::Ecs => format!(
                    "ferry infra create {name} --cluster C --task-definition FAMILY --subnet S"
                ),
                InfraKind::Process => format!("ferry infra create {name}"),
            };
            return Err(AppError::invalid(
                "infra_block",
                format!("infrastructure profile {name} does not exist: create it with `{hint}`"),
            ));
        };
        spec.infra_overrides.check_against(&profile)?;
        if name.kind() == InfraKind::Ecs {
            self.check_ecs_backend("infra_block", name)?;
        }
        Ok(())
    }

    /// An ECS task fetches its run's bundle from S3: a backend that keeps bundles on its own
    /// disk cannot serve it.
    fn check_ecs_backend(&self, field: &str, name: &InfraName) -> Result<(), AppError> {
        if self.code.is_remote() {
            return Ok(());
        }
        Err(AppError::invalid(
            field,
            format!("{name} runs each flow in an ECS task, which fetches the code bundle from S3, but this server keeps bundles on its local disk: use the AWS backend (FERRY_BACKEND=aws), or a process/NAME profile to launch local processes"),
        ))
    }
}
