//! The ECS (Fargate) adapter of the [`TaskLauncher`] port: `RunTask` per launch, `StopTask`,
//! `DescribeTasks`.
//!
//! - A launch is idempotent per (run, attempt): `RunTask` carries the request's `clientToken`,
//!   and before it the adapter looks for a task already started for the same token (by
//!   `startedBy`, which holds a prefix of the token). ECS honours `clientToken`; moto 5.2.5
//!   ignores it, and the lookup also covers a retry after the token's idempotency window.
//! - An `image` override runs on a task-definition revision registered once per (family,
//!   image): a copy of the profile's task definition with the container's image replaced, in
//!   the family `<family>-img-<sha256(image)[..12]>`. It is found again in ECS by that family
//!   (a new process does not register again) and cached in memory; a new revision is
//!   registered only when the base task definition changed.
//! - A task ARN names its cluster (`arn:…:task/CLUSTER/ID`), so stop and describe need no
//!   profile; an old-format ARN without a cluster is looked up in the `default` cluster.
//! - Errors say whether retrying can help ([`LaunchError::Retryable`]: throttling, 5xx,
//!   timeouts, no capacity) and, when not, what to fix on the profile.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_ecs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecs::operation::describe_task_definition::DescribeTaskDefinitionError;
use aws_sdk_ecs::operation::register_task_definition::RegisterTaskDefinitionError;
use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, ContainerOverride,
    DesiredStatus, Failure, KeyValuePair, LaunchType, NetworkConfiguration, PropagateTags, Tag,
    Task, TaskDefinition, TaskDefinitionField, TaskOverride,
};
use ferry_core::infra::EcsTarget;
use ferry_core::launch::{LaunchError, LaunchRequest, TaskLauncher, TaskRef, TaskStatus};
use sha2::{Digest, Sha256};

type HttpResponse = aws_sdk_ecs::config::http::HttpResponse;

/// ECS caps `startedBy` at 36 characters.
const STARTED_BY_MAX: usize = 36;
/// ECS caps a stop reason at 255 characters.
const STOP_REASON_MAX: usize = 255;
/// `DescribeTasks` takes at most 100 tasks.
const DESCRIBE_BATCH: usize = 100;
/// How long a registered image revision is reused without asking ECS whether the base task
/// definition changed.
const IMAGE_CACHE_TTL: Duration = Duration::from_secs(300);
/// Tag of an image revision: the base task definition it copies (`FAMILY:REV`).
pub const TAG_IMAGE_OF: &str = "ferry:image-of";
/// Tag of an image revision: its image (when it fits a tag value).
pub const TAG_IMAGE: &str = "ferry:image";

/// Launches one ECS task per run.
pub struct EcsLauncher {
    client: aws_sdk_ecs::Client,
    images: Mutex<HashMap<ImageKey, CachedRevision>>,
}

/// An image override of a profile's task definition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ImageKey {
    /// As the profile names it (`FAMILY` or `FAMILY:REV`).
    task_definition: String,
    container: String,
    image: String,
}

/// The revision registered for an [`ImageKey`], and when it was found.
struct CachedRevision {
    arn: String,
    at: Instant,
}

impl EcsLauncher {
    /// A launcher over `client` (see [`crate::config::ecs_client`]).
    pub fn new(client: aws_sdk_ecs::Client) -> Self {
        Self {
            client,
            images: Mutex::new(HashMap::new()),
        }
    }

    /// A task already started for this launch (same token), running or stopped.
    async fn started_for(
        &self,
        at: &Where<'_>,
        started_by: &str,
    ) -> Result<Option<String>, LaunchError> {
        for status in [DesiredStatus::Running, DesiredStatus::Stopped] {
            let out = self
                .client
                .list_tasks()
                .cluster(&at.target.cluster)
                .started_by(started_by)
                .desired_status(status)
                .send()
                .await
                .map_err(|e| at.error("ListTasks", e))?;
            if let Some(arn) = out.task_arns().first() {
                return Ok(Some(arn.clone()));
            }
        }
        Ok(None)
    }

    /// The task definition to run: the profile's, or the revision registered for `image`.
    async fn task_definition(
        &self,
        at: &Where<'_>,
        image: Option<&str>,
    ) -> Result<String, LaunchError> {
        let target = at.target;
        let Some(image) = image else {
            return Ok(target.task_definition.clone());
        };
        let key = ImageKey {
            task_definition: target.task_definition.clone(),
            container: target.container.clone(),
            image: image.to_owned(),
        };
        if let Some(cached) = self.cache().get(&key) {
            if cached.at.elapsed() < IMAGE_CACHE_TTL {
                return Ok(cached.arn.clone());
            }
        }
        let (base, base_tags) = self
            .describe_definition(&target.task_definition)
            .await
            .map_err(|e| at.error("DescribeTaskDefinition", e))?
            .ok_or_else(|| at.permanent(Problem::TaskDefinition, "DescribeTaskDefinition", None))?;
        let base_ref = format!("{}:{}", base.family().unwrap_or_default(), base.revision());
        if !base
            .container_definitions()
            .iter()
            .any(|c| c.name() == Some(target.container.as_str()))
        {
            return Err(at.permanent(Problem::Container, "DescribeTaskDefinition", None));
        }
        let family = image_family(base.family().unwrap_or_default(), image);
        let existing = self
            .describe_definition(&family)
            .await
            .map_err(|e| at.error("DescribeTaskDefinition", e))?;
        let arn = match existing {
            Some((def, tags))
                if is_image_copy(&def, &tags, &target.container, image, &base_ref) =>
            {
                def.task_definition_arn().unwrap_or_default().to_owned()
            }
            _ => {
                let arn = self
                    .register_image_copy(
                        &base,
                        base_tags,
                        &family,
                        &target.container,
                        image,
                        &base_ref,
                    )
                    .await
                    .map_err(|e| at.error("RegisterTaskDefinition", e))?;
                tracing::info!(base = %base_ref, image, task_definition = %arn, "registered a task definition revision for an image override");
                arn
            }
        };
        self.cache().insert(
            key,
            CachedRevision {
                arn: arn.clone(),
                at: Instant::now(),
            },
        );
        Ok(arn)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<ImageKey, CachedRevision>> {
        // A panic while holding the lock cannot leave the map half-written: recover it.
        self.images.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A task definition and its tags, `None` when ECS does not know it.
    async fn describe_definition(
        &self,
        name: &str,
    ) -> Result<
        Option<(TaskDefinition, Vec<Tag>)>,
        SdkError<DescribeTaskDefinitionError, HttpResponse>,
    > {
        match self
            .client
            .describe_task_definition()
            .task_definition(name)
            .include(TaskDefinitionField::Tags)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .task_definition()
                .cloned()
                .map(|d| (d, out.tags().to_vec()))),
            Err(SdkError::ServiceError(se)) if is_missing_definition(se.err().message()) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Registers `base` with `container`'s image replaced, in `family`; returns its ARN.
    async fn register_image_copy(
        &self,
        base: &TaskDefinition,
        base_tags: Vec<Tag>,
        family: &str,
        container: &str,
        image: &str,
        base_ref: &str,
    ) -> Result<String, SdkError<RegisterTaskDefinitionError, HttpResponse>> {
        let containers = base
            .container_definitions()
            .iter()
            .cloned()
            .map(|mut c| {
                if c.name.as_deref() == Some(container) {
                    c.image = Some(image.to_owned());
                }
                c
            })
            .collect();
        // `aws:` keys are reserved; ours replace any the base carries.
        let mut tags: Vec<Tag> = base_tags
            .into_iter()
            .filter(|t| {
                let k = t.key().unwrap_or_default();
                !k.starts_with("aws:") && k != TAG_IMAGE_OF && k != TAG_IMAGE
            })
            .collect();
        tags.push(tag(TAG_IMAGE_OF, base_ref));
        if image.len() <= 256 {
            tags.push(tag(TAG_IMAGE, image));
        }
        let out = self
            .client
            .register_task_definition()
            .family(family)
            .set_task_role_arn(base.task_role_arn().map(str::to_owned))
            .set_execution_role_arn(base.execution_role_arn().map(str::to_owned))
            .set_network_mode(base.network_mode().cloned())
            .set_container_definitions(Some(containers))
            .set_volumes(non_empty(base.volumes()))
            .set_placement_constraints(non_empty(base.placement_constraints()))
            .set_requires_compatibilities(non_empty(base.requires_compatibilities()))
            .set_cpu(base.cpu().map(str::to_owned))
            .set_memory(base.memory().map(str::to_owned))
            .set_pid_mode(base.pid_mode().cloned())
            .set_ipc_mode(base.ipc_mode().cloned())
            .set_proxy_configuration(base.proxy_configuration().cloned())
            .set_ephemeral_storage(base.ephemeral_storage().cloned())
            .set_runtime_platform(base.runtime_platform().cloned())
            .set_enable_fault_injection(base.enable_fault_injection())
            .set_tags(Some(tags))
            .send()
            .await?;
        Ok(out
            .task_definition()
            .and_then(|d| d.task_definition_arn())
            .unwrap_or(family)
            .to_owned())
    }

    /// A task's `lastStatus`; `None` when ECS does not know it (or its cluster).
    async fn last_status(&self, cluster: &str, arn: &str) -> Result<Option<String>, LaunchError> {
        match self
            .client
            .describe_tasks()
            .cluster(cluster)
            .tasks(arn)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .tasks()
                .first()
                .map(|t| t.last_status().unwrap_or("PENDING").to_owned())),
            Err(e) if code_of(&e) == Some("ClusterNotFoundException") => Ok(None),
            Err(e) => Err(task_error("DescribeTasks", cluster, e)),
        }
    }

    /// `DescribeTasks` of one cluster's tasks, in batches; a task ECS does not know is absent.
    async fn describe_in(
        &self,
        cluster: &str,
        arns: &[&str],
    ) -> Result<HashMap<String, TaskStatus>, LaunchError> {
        let mut found = HashMap::new();
        for batch in arns.chunks(DESCRIBE_BATCH) {
            let out = match self
                .client
                .describe_tasks()
                .cluster(cluster)
                .set_tasks(Some(batch.iter().map(|a| (*a).to_owned()).collect()))
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) if code_of(&e) == Some("ClusterNotFoundException") => {
                    // The cluster is gone, and its tasks with it.
                    for arn in batch {
                        found.insert((*arn).to_owned(), not_found(Some(cluster)));
                    }
                    continue;
                }
                Err(e) => return Err(task_error("DescribeTasks", cluster, e)),
            };
            for task in out.tasks() {
                if let Some(arn) = task.task_arn() {
                    found.insert(arn.to_owned(), status_of(task));
                }
            }
            for f in out.failures() {
                let arn = f.arn().unwrap_or_default().to_owned();
                if f.reason() == Some("MISSING") {
                    found.insert(arn, not_found(None));
                } else {
                    return Err(LaunchError::Retryable {
                        message: format!(
                            "ECS DescribeTasks on cluster {cluster} could not describe {arn}: {}",
                            failure_text(f)
                        ),
                    });
                }
            }
        }
        Ok(found)
    }
}

#[async_trait]
impl TaskLauncher for EcsLauncher {
    async fn launch(&self, request: &LaunchRequest) -> Result<TaskRef, LaunchError> {
        let profile = request.profile.name.to_string();
        let target = request.profile.spec.ecs.as_ref().ok_or_else(|| LaunchError::Permanent {
            message: format!(
                "{profile} has no ECS settings: an ECS launch needs an ecs/NAME profile with --cluster, --task-definition and --subnet"
            ),
        })?;
        let at = Where {
            profile: &profile,
            target,
        };
        let token = request.client_token();
        let started_by: String = token.chars().take(STARTED_BY_MAX).collect();
        if let Some(arn) = self.started_for(&at, &started_by).await? {
            tracing::info!(run = %request.run, attempt = request.attempt, task = %arn, "the task of this launch already exists");
            return Ok(TaskRef(arn));
        }
        let task_definition = self
            .task_definition(&at, request.overrides.image.as_deref())
            .await?;

        let mut env: BTreeMap<&str, &str> = request
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend(
            request
                .overrides
                .env
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let container = ContainerOverride::builder()
            .name(&target.container)
            .set_command(Some(request.command()))
            .set_environment(Some(
                env.into_iter()
                    .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
                    .collect(),
            ))
            .build();
        let overrides = TaskOverride::builder()
            .container_overrides(container)
            .set_cpu(request.overrides.cpu.or(target.cpu).map(|c| c.to_string()))
            .set_memory(
                request
                    .overrides
                    .memory
                    .or(target.memory)
                    .map(|m| m.to_string()),
            )
            .build();
        let vpc = AwsVpcConfiguration::builder()
            .set_subnets(Some(target.subnets.clone()))
            // Always sent, even empty: moto needs the key (ECS then uses the VPC's default group).
            .set_security_groups(Some(target.security_groups.clone()))
            .assign_public_ip(if target.assign_public_ip {
                AssignPublicIp::Enabled
            } else {
                AssignPublicIp::Disabled
            })
            .build()
            .map_err(|e| LaunchError::Permanent {
                message: format!("{profile}: cannot build the awsvpc configuration: {e}"),
            })?;
        let tags = [
            ("ferry:run", request.run.to_string()),
            ("ferry:deployment", request.deployment.clone()),
            ("ferry:queue", request.work_queue.clone()),
            ("ferry:launch", request.attempt.to_string()),
        ];

        let mut run = self
            .client
            .run_task()
            .cluster(&target.cluster)
            .task_definition(&task_definition)
            .count(1)
            .network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(vpc)
                    .build(),
            )
            .overrides(overrides)
            .client_token(&token)
            .started_by(&started_by)
            .enable_ecs_managed_tags(true)
            .propagate_tags(PropagateTags::TaskDefinition)
            .set_tags(Some(tags.iter().map(|(k, v)| tag(k, v)).collect()));
        if target.capacity_providers.is_empty() {
            run = run.launch_type(LaunchType::Fargate);
        }
        for p in &target.capacity_providers {
            let item = CapacityProviderStrategyItem::builder()
                .capacity_provider(&p.name)
                .weight(i32::try_from(p.weight).unwrap_or(i32::MAX))
                .base(i32::try_from(p.base).unwrap_or(i32::MAX))
                .build()
                .map_err(|e| LaunchError::Permanent {
                    message: format!("{profile}: bad capacity provider {:?}: {e}", p.name),
                })?;
            run = run.capacity_provider_strategy(item);
        }
        let out = run.send().await.map_err(|e| at.error("RunTask", e))?;
        if let Some(arn) = out.tasks().first().and_then(Task::task_arn) {
            tracing::info!(run = %request.run, attempt = request.attempt, task = %arn, %task_definition, "task launched");
            return Ok(TaskRef(arn.to_owned()));
        }
        Err(at.run_task_failures(out.failures()))
    }

    async fn stop(&self, task: &TaskRef, reason: &str) -> Result<(), LaunchError> {
        let cluster = cluster_of(&task.0);
        // Asked first: ECS answers an unknown task with an error (moto with a 500), and a
        // stopped task needs nothing. A task on its way down (DEACTIVATING, STOPPING) is still
        // told to stop: it may be stopping for another reason.
        match self.last_status(cluster, &task.0).await?.as_deref() {
            None | Some("STOPPED" | "DELETED") => return Ok(()),
            Some(_) => {}
        }
        let reason: String = reason.chars().take(STOP_REASON_MAX).collect();
        match self
            .client
            .stop_task()
            .cluster(cluster)
            .task(&task.0)
            .reason(reason)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // Gone between the two calls.
            Err(e) if is_task_gone(&e) => Ok(()),
            Err(e) => Err(task_error("StopTask", cluster, e)),
        }
    }

    async fn describe(&self, tasks: &[TaskRef]) -> Result<Vec<TaskStatus>, LaunchError> {
        let mut by_cluster: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for t in tasks {
            by_cluster.entry(cluster_of(&t.0)).or_default().push(&t.0);
        }
        let mut found = HashMap::new();
        for (cluster, arns) in by_cluster {
            found.extend(self.describe_in(cluster, &arns).await?);
        }
        Ok(tasks
            .iter()
            .map(|t| found.get(&t.0).cloned().unwrap_or_else(|| not_found(None)))
            .collect())
    }
}

/// What a profile's settings can fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    Cluster,
    TaskDefinition,
    Container,
    Subnet,
    SecurityGroup,
    Size,
    Platform,
    Permission,
}

/// The profile a call is made for: the context of its errors.
struct Where<'a> {
    profile: &'a str,
    target: &'a EcsTarget,
}

impl Where<'_> {
    /// An SDK error of `op`, classified, with what to fix when retrying cannot help.
    fn error<E>(&self, op: &str, e: SdkError<E, HttpResponse>) -> LaunchError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let said = ecs_said(&e);
        if is_retryable(&e) {
            return LaunchError::Retryable {
                message: format!(
                    "ECS {op} on cluster {} for {}: {said}",
                    self.target.cluster, self.profile
                ),
            };
        }
        let problem = problem_of(code_of(&e), &said);
        self.permanent_with(problem, op, &said)
    }

    /// A permanent error of `op` for `problem`, with ECS's words when there are some.
    fn permanent(&self, problem: Problem, op: &str, said: Option<&str>) -> LaunchError {
        let said = said.map(str::to_owned).unwrap_or_else(|| match problem {
            Problem::TaskDefinition => "the task definition does not exist".into(),
            Problem::Container => "no such container in the task definition".into(),
            _ => "refused".into(),
        });
        self.permanent_with(Some(problem), op, &said)
    }

    fn permanent_with(&self, problem: Option<Problem>, op: &str, said: &str) -> LaunchError {
        let (p, t) = (self.profile, self.target);
        let fix = match problem {
            Some(Problem::Cluster) => format!(
                "cluster {} not found: create it (infrastructure-as-code, e.g. infra/agent.yaml) or fix --cluster on {p}",
                t.cluster
            ),
            Some(Problem::TaskDefinition) => format!(
                "task definition {} not found (cluster {}): register it (infrastructure-as-code, e.g. infra/agent.yaml) or fix --task-definition on {p}",
                t.task_definition, t.cluster
            ),
            Some(Problem::Container) => format!(
                "task definition {} has no container named {:?}: name the container that runs ferry so, or set the container of {p} to its name",
                t.task_definition, t.container
            ),
            Some(Problem::Subnet) => format!(
                "a subnet of {p} ({}) was refused: fix --subnet on {p} (subnet ids of the cluster's VPC)",
                t.subnets.join(", ")
            ),
            Some(Problem::SecurityGroup) => format!(
                "a security group of {p} ({}) was refused: fix --security-group on {p}",
                t.security_groups.join(", ")
            ),
            Some(Problem::Size) => format!(
                "the task size was refused: fix --cpu/--memory on {p} or the deployment's cpu/memory overrides (a Fargate size)"
            ),
            Some(Problem::Platform) => format!(
                "task definition {} does not fit Fargate: register it with requiresCompatibilities FARGATE and networkMode awsvpc, or fix --task-definition on {p}",
                t.task_definition
            ),
            Some(Problem::Permission) => format!(
                "the launcher may not start tasks for {p}: grant it ecs:RunTask, ecs:DescribeTasks, ecs:ListTasks, ecs:StopTask, ecs:TagResource, ecs:DescribeTaskDefinition, ecs:RegisterTaskDefinition and iam:PassRole on the task definition's roles"
            ),
            None => format!(
                "check the ECS settings of {p} (ferry infra inspect {p})"
            ),
        };
        LaunchError::Permanent {
            message: format!("{fix} (ECS {op}: {said})"),
        }
    }

    /// `RunTask` answered without a task: its failures say why.
    fn run_task_failures(&self, failures: &[Failure]) -> LaunchError {
        let said = if failures.is_empty() {
            "no task and no failure in the answer".to_owned()
        } else {
            failures
                .iter()
                .map(failure_text)
                .collect::<Vec<_>>()
                .join("; ")
        };
        let retryable = failures.is_empty() || failures.iter().any(is_capacity_failure);
        if retryable {
            return LaunchError::Retryable {
                message: format!(
                    "ECS RunTask on cluster {} for {} started no task: {said}",
                    self.target.cluster, self.profile
                ),
            };
        }
        self.permanent_with(problem_of(None, &said), "RunTask", &said)
    }
}

/// Whether the same call may succeed later: throttling, ECS's own failures, timeouts, a
/// connection that failed.
fn is_retryable<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(se) => {
            let status = se.raw().status();
            matches!(
                se.err().code(),
                Some(
                    "ThrottlingException"
                        | "Throttling"
                        | "TooManyRequestsException"
                        | "RequestLimitExceeded"
                        | "ServerException"
                        | "ServiceUnavailable"
                        | "ServiceUnavailableException"
                        | "InternalFailure"
                )
            ) || status.is_server_error()
                || status.as_u16() == 429
                || se
                    .err()
                    .message()
                    .is_some_and(|m| m.contains("Rate exceeded"))
        }
        _ => false,
    }
}

fn code_of<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> Option<&str> {
    match e {
        SdkError::ServiceError(se) => se.err().code(),
        _ => None,
    }
}

/// ECS's words: `Code: message` for a service error, the cause chain otherwise.
fn ecs_said<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => format!("{c} (HTTP {})", se.raw().status().as_u16()),
                (None, Some(m)) => m.to_owned(),
                (None, None) => format!("HTTP {}", se.raw().status().as_u16()),
            }
        }
        other => ferry_core::error::error_chain(other),
    }
}

/// Which profile setting an ECS refusal is about, from its code and words.
fn problem_of(code: Option<&str>, said: &str) -> Option<Problem> {
    let s = said.to_ascii_lowercase();
    let problem = match code {
        Some("ClusterNotFoundException") => Problem::Cluster,
        Some("AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation") => {
            Problem::Permission
        }
        Some("PlatformUnknownException" | "PlatformTaskDefinitionIncompatibilityException") => {
            Problem::Platform
        }
        _ if s.contains("cluster not found") => Problem::Cluster,
        _ if s.contains("subnet") => Problem::Subnet,
        _ if s.contains("security group") || s.contains("securitygroup") => Problem::SecurityGroup,
        _ if s.contains("not authorized")
            || s.contains("access denied")
            || s.contains("passrole") =>
        {
            Problem::Permission
        }
        _ if (s.contains("task definition") || s.contains("taskdefinition"))
            && is_missing_definition(Some(said)) =>
        {
            Problem::TaskDefinition
        }
        _ if s.contains("revision is missing") => Problem::TaskDefinition,
        _ if s.contains("container")
            && (s.contains("override") || s.contains("not a container")) =>
        {
            Problem::Container
        }
        _ if s.contains("cpu") || s.contains("memory") => Problem::Size,
        _ if s.contains("fargate") || s.contains("compatib") || s.contains("networkmode") => {
            Problem::Platform
        }
        _ => return None,
    };
    Some(problem)
}

/// Whether ECS's words say a task definition does not exist.
fn is_missing_definition(message: Option<&str>) -> bool {
    let m = message.unwrap_or_default().to_ascii_lowercase();
    m.contains("unable to describe task definition")
        || m.contains("revision is missing")
        || (m.contains("task definition") || m.contains("taskdefinition"))
            && (m.contains("not found") || m.contains("does not exist") || m.contains("inactive"))
}

/// A `RunTask` failure that no capacity explains: placement may succeed later.
fn is_capacity_failure(f: &Failure) -> bool {
    let text = failure_text(f).to_ascii_lowercase();
    f.reason().is_some_and(|r| r.starts_with("RESOURCE:"))
        || text.contains("capacity")
        || text.contains("rate exceeded")
        || text.contains("throttl")
}

fn failure_text(f: &Failure) -> String {
    match (f.reason(), f.detail()) {
        (Some(r), Some(d)) => format!("{r} ({d})"),
        (Some(r), None) => r.to_owned(),
        (None, Some(d)) => d.to_owned(),
        (None, None) => "a failure without a reason".to_owned(),
    }
}

/// A stop or describe error (no profile at hand).
fn task_error<E>(op: &str, cluster: &str, e: SdkError<E, HttpResponse>) -> LaunchError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let message = format!("ECS {op} on cluster {cluster}: {}", ecs_said(&e));
    if is_retryable(&e) {
        LaunchError::Retryable { message }
    } else if matches!(problem_of(code_of(&e), &message), Some(Problem::Permission)) {
        LaunchError::Permanent {
            message: format!("{message}: grant the launcher ecs:{op} on the cluster's tasks"),
        }
    } else {
        LaunchError::Permanent { message }
    }
}

/// `StopTask` of a task ECS does not know (any more).
fn is_task_gone<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> bool {
    match e {
        SdkError::ServiceError(se) => se
            .err()
            .message()
            .is_some_and(|m| m.to_ascii_lowercase().contains("not found")),
        _ => false,
    }
}

/// The cluster named in a task ARN (`arn:…:task/CLUSTER/ID`); `default` for an old-format ARN.
fn cluster_of(task: &str) -> &str {
    let resource = task.rsplit(':').next().unwrap_or(task);
    let mut parts = resource.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("task"), Some(cluster), Some(_)) => cluster,
        _ => "default",
    }
}

fn not_found(cluster_gone: Option<&str>) -> TaskStatus {
    TaskStatus::Stopped {
        stop_code: None,
        reason: Some(match cluster_gone {
            Some(c) => format!("task not found: cluster {c} no longer exists"),
            None => "task not found".to_owned(),
        }),
        exit_code: None,
    }
}

/// A described task's status; the exit code is that of the container the launch overrode
/// (the profile's), else of a lone container.
fn status_of(task: &Task) -> TaskStatus {
    match task.last_status().unwrap_or_default() {
        "RUNNING" => TaskStatus::Running,
        "DEACTIVATING" | "STOPPING" | "DEPROVISIONING" | "STOPPED" | "DELETED" => {
            let ours = task
                .overrides()
                .and_then(|o| o.container_overrides().first())
                .and_then(|c| c.name());
            let container = match ours {
                Some(name) => task.containers().iter().find(|c| c.name() == Some(name)),
                None if task.containers().len() == 1 => task.containers().first(),
                None => None,
            };
            TaskStatus::Stopped {
                stop_code: task.stop_code().map(|c| c.as_str().to_owned()),
                reason: task
                    .stopped_reason()
                    .filter(|r| !r.is_empty())
                    .map(str::to_owned),
                exit_code: container.and_then(|c| c.exit_code()),
            }
        }
        // PROVISIONING, PENDING, ACTIVATING, or not said yet.
        _ => TaskStatus::Pending,
    }
}

/// The family of `base`'s revisions for `image`: `<base>-img-<sha256(image)[..12]>`.
pub fn image_family(base: &str, image: &str) -> String {
    let hash = hex::encode(Sha256::digest(image.as_bytes()));
    // A family has at most 255 characters.
    let base: String = base.chars().take(255 - 17).collect();
    format!("{base}-img-{}", &hash[..12])
}

/// Whether `def` is the image copy of `base_ref` for `image` (the family's hash could collide,
/// and the base may have a new revision since).
fn is_image_copy(
    def: &TaskDefinition,
    tags: &[Tag],
    container: &str,
    image: &str,
    base_ref: &str,
) -> bool {
    let same_image = def
        .container_definitions()
        .iter()
        .any(|c| c.name() == Some(container) && c.image() == Some(image));
    let same_base = tags
        .iter()
        .any(|t| t.key() == Some(TAG_IMAGE_OF) && t.value() == Some(base_ref));
    same_image && same_base
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

fn non_empty<T: Clone>(items: &[T]) -> Option<Vec<T>> {
    (!items.is_empty()).then(|| items.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_comes_from_the_task_arn() {
        assert_eq!(
            cluster_of("arn:aws:ecs:us-east-1:123456789012:task/prod/0123abcd"),
            "prod"
        );
        assert_eq!(
            cluster_of("arn:aws:ecs:us-east-1:123456789012:task/0123abcd"),
            "default"
        );
        assert_eq!(cluster_of("0123abcd"), "default");
    }

    #[test]
    fn an_image_family_is_stable_per_image_and_fits_ecs() {
        let a = image_family("ferry-agent", "123.dkr.ecr.us-east-1.amazonaws.com/agent:1");
        assert_eq!(
            a,
            image_family("ferry-agent", "123.dkr.ecr.us-east-1.amazonaws.com/agent:1")
        );
        assert!(
            a.starts_with("ferry-agent-img-") && a.len() == "ferry-agent-img-".len() + 12,
            "{a}"
        );
        assert_ne!(
            a,
            image_family("ferry-agent", "123.dkr.ecr.us-east-1.amazonaws.com/agent:2")
        );
        assert_eq!(image_family(&"f".repeat(300), "x").len(), 255);
    }

    #[test]
    fn refusals_are_matched_to_the_setting_that_fixes_them() {
        let cases = [
            (
                Some("ClusterNotFoundException"),
                "Cluster not found.",
                Some(Problem::Cluster),
            ),
            (
                Some("ClientException"),
                "Unable to describe task definition.",
                Some(Problem::TaskDefinition),
            ),
            (
                Some("ClientException"),
                "TaskDefinition is inactive",
                Some(Problem::TaskDefinition),
            ),
            (
                Some("InvalidSubnetID.NotFound"),
                "The subnet ID 'subnet-nope' does not exist",
                Some(Problem::Subnet),
            ),
            (
                Some("InvalidParameterException"),
                "Error retrieving security group information for [sg-1]",
                Some(Problem::SecurityGroup),
            ),
            (
                Some("AccessDeniedException"),
                "User is not authorized to perform ecs:RunTask",
                Some(Problem::Permission),
            ),
            (
                Some("InvalidParameterException"),
                "Override for container named ferry is not a container in the TaskDefinition.",
                Some(Problem::Container),
            ),
            (
                Some("ClientException"),
                "No Fargate configuration exists for given values: 256 CPU, 8192 memory.",
                Some(Problem::Size),
            ),
            (Some("ClientException"), "something else entirely", None),
        ];
        for (code, said, want) in cases {
            assert_eq!(problem_of(code, said), want, "{said}");
        }
    }

    #[test]
    fn only_capacity_failures_of_run_task_are_worth_a_retry() {
        let f = |reason: &str| Failure::builder().reason(reason).build();
        assert!(is_capacity_failure(&f("RESOURCE:MEMORY")));
        assert!(is_capacity_failure(&f("Capacity is unavailable at this time. Please try again later or in a different availability zone")));
        assert!(!is_capacity_failure(&f("MISSING")));
    }
}
