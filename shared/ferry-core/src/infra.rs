//! Infrastructure profiles (`-ib ecs/NAME`, `-ib process/NAME`): where a *launched*
//! deployment's runs get a task of their own, and the per-deployment overrides
//! (`--override cpu=1024`, `--override env.KEY=VALUE`, ...).
//!
//! A deployment without a profile keeps the long-running-agent behaviour: its runs wait in
//! their queue's due index until an agent claims them. A deployment with one is *launched*: a
//! launcher (the tick's pre-launch, or dispatch on the table's stream) starts one task per run,
//! running `ferry agent execute RUN_ID`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::check_name;

/// What kind of task a profile launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum InfraKind {
    /// An ECS (Fargate) task per run; needs bundles in S3 (the AWS backend).
    Ecs,
    /// A local `ferry agent execute` process per run, started by the server that launches it
    /// (the embedded default, or `ferry server start` on either backend).
    Process,
}

impl InfraKind {
    /// The stable lowercase name (`ecs`, `process`).
    pub fn as_str(self) -> &'static str {
        match self {
            InfraKind::Ecs => "ecs",
            InfraKind::Process => "process",
        }
    }
}

/// A profile's name, `KIND/NAME` (`ecs/prod`, `process/local`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InfraName {
    kind: InfraKind,
    name: String,
}

impl InfraName {
    /// Builds and validates a name from its parts.
    pub fn new(kind: InfraKind, name: &str) -> Result<Self, ValidationError> {
        check_name("infra_block", name)?;
        Ok(Self {
            kind,
            name: name.to_owned(),
        })
    }
    /// The kind part.
    pub fn kind(&self) -> InfraKind {
        self.kind
    }
    /// The name part.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for InfraName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind.as_str(), self.name)
    }
}

impl FromStr for InfraName {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ValidationError::new(
                "infra_block",
                format!("{s:?} is not KIND/NAME: use ecs/NAME (an ECS task per run) or process/NAME (a local process per run)"),
            )
        };
        let (kind, name) = s.split_once('/').ok_or_else(bad)?;
        let kind = match kind {
            "ecs" => InfraKind::Ecs,
            "process" => InfraKind::Process,
            _ => return Err(bad()),
        };
        Self::new(kind, name)
    }
}

impl TryFrom<String> for InfraName {
    /// The reason alone: the deserialiser names the field.
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse::<InfraName>().map_err(|e| e.message)
    }
}

impl From<InfraName> for String {
    fn from(n: InfraName) -> String {
        n.to_string()
    }
}

/// One entry of an ECS capacity provider strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CapacityProvider {
    /// `FARGATE` or `FARGATE_SPOT`.
    pub name: String,
    /// Relative share of tasks (default 1).
    #[serde(default = "one")]
    pub weight: u32,
    /// Tasks placed on this provider first (default 0).
    #[serde(default)]
    pub base: u32,
}

fn one() -> u32 {
    1
}

/// Where an `ecs/NAME` profile's tasks run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct EcsTarget {
    /// Cluster name or ARN.
    pub cluster: String,
    /// `FAMILY` (latest active revision) or `FAMILY:REV`, registered by infrastructure-as-code.
    pub task_definition: String,
    /// The container of the task definition that runs `ferry` (default `ferry`).
    #[serde(default = "default_container")]
    pub container: String,
    /// Subnet ids (awsvpc).
    pub subnets: Vec<String>,
    /// Security group ids.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// Give the task a public IP (needed in a public subnet without a NAT gateway).
    #[serde(default)]
    pub assign_public_ip: bool,
    /// Capacity provider strategy; empty = launch type FARGATE.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capacity_providers: Vec<CapacityProvider>,
    /// Default task CPU units (else the task definition's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    /// Default task memory in MiB (else the task definition's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
}

fn default_container() -> String {
    "ferry".into()
}

/// Default of `launch_lead_seconds`: Fargate takes 30–60 s to start a task.
pub const DEFAULT_LAUNCH_LEAD_SECONDS: u64 = 90;
/// Default of `start_timeout_seconds`.
pub const DEFAULT_START_TIMEOUT_SECONDS: u64 = 300;
/// Default of `max_launches`.
pub const DEFAULT_MAX_LAUNCHES: u32 = 3;

fn default_lead() -> u64 {
    DEFAULT_LAUNCH_LEAD_SECONDS
}
fn default_start_timeout() -> u64 {
    DEFAULT_START_TIMEOUT_SECONDS
}
fn default_max_launches() -> u32 {
    DEFAULT_MAX_LAUNCHES
}

/// A profile as the user declares it: the body of `PUT /v1/infra/{kind}/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct InfraSpec {
    /// The ECS settings; required for `ecs/NAME`, refused for `process/NAME`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecs: Option<EcsTarget>,
    /// Scheduled runs are launched this many seconds before they are due.
    #[serde(default = "default_lead")]
    #[cfg_attr(feature = "openapi", schema(maximum = 3600))]
    pub launch_lead_seconds: u64,
    /// A task that has not taken its run this long after its launch is launched again.
    #[serde(default = "default_start_timeout")]
    #[cfg_attr(feature = "openapi", schema(minimum = 10, maximum = 3600))]
    pub start_timeout_seconds: u64,
    /// Launches of one run (first + relaunches) before it ends Crashed.
    #[serde(default = "default_max_launches")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10))]
    pub max_launches: u32,
}

impl Default for InfraSpec {
    fn default() -> Self {
        Self {
            ecs: None,
            launch_lead_seconds: DEFAULT_LAUNCH_LEAD_SECONDS,
            start_timeout_seconds: DEFAULT_START_TIMEOUT_SECONDS,
            max_launches: DEFAULT_MAX_LAUNCHES,
        }
    }
}

/// A stored profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InfraProfile {
    /// `KIND/NAME`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub name: InfraName,
    /// What the user declared.
    pub spec: InfraSpec,
    /// Optimistic-concurrency version, +1 on every stored change.
    pub version: u64,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl InfraProfile {
    /// How long before its time a scheduled run is launched.
    pub fn launch_lead(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.spec.launch_lead_seconds as i64)
    }
    /// How long a launched task has to take its run.
    pub fn start_timeout(&self) -> chrono::Duration {
        chrono::Duration::seconds(self.spec.start_timeout_seconds as i64)
    }
}

const FARGATE_CPU: [u32; 7] = [256, 512, 1024, 2048, 4096, 8192, 16384];

/// Whether `memory` MiB is a Fargate size for `cpu` units; the sizes allowed otherwise.
fn fargate_memory_range(cpu: u32) -> (u32, u32, u32) {
    // (min, max, step) in MiB, per AWS's table of task sizes.
    match cpu {
        256 => (512, 2048, 512),
        512 => (1024, 4096, 1024),
        1024 => (2048, 8192, 1024),
        2048 => (4096, 16384, 1024),
        4096 => (8192, 30720, 1024),
        8192 => (16384, 61440, 4096),
        _ => (32768, 122880, 8192),
    }
}

fn check_cpu(field: &str, cpu: u32) -> Result<(), ValidationError> {
    if FARGATE_CPU.contains(&cpu) {
        return Ok(());
    }
    Err(ValidationError::new(
        field,
        format!("{cpu} is not a Fargate CPU size: use 256, 512, 1024, 2048, 4096, 8192 or 16384"),
    ))
}

fn check_memory(field: &str, memory: u32) -> Result<(), ValidationError> {
    if (512..=122_880).contains(&memory) {
        return Ok(());
    }
    Err(ValidationError::new(
        field,
        format!("{memory} MiB is outside Fargate's 512-122880 MiB range"),
    ))
}

/// Checks that `cpu` units and `memory` MiB make a Fargate task size; `field` is blamed.
pub fn check_fargate_size(field: &str, cpu: u32, memory: u32) -> Result<(), ValidationError> {
    let (min, max, step) = fargate_memory_range(cpu);
    if memory < min || memory > max || !memory.is_multiple_of(step) {
        return Err(ValidationError::new(
            field,
            format!(
                "{cpu} CPU units with {memory} MiB is not a Fargate task size: with {cpu} units use {min}-{max} MiB in steps of {step}"
            ),
        ));
    }
    Ok(())
}

fn check_text(field: &str, value: &str, what: &str) -> Result<(), ValidationError> {
    if value.trim().is_empty() {
        return Err(ValidationError::new(
            field,
            format!("is empty: give {what}"),
        ));
    }
    if value.contains('\0') || value.len() > 1024 {
        return Err(ValidationError::new(
            field,
            format!("is not {what} (at most 1024 characters, no NUL byte)"),
        ));
    }
    Ok(())
}

/// Validates a profile's spec for `name` (its kind decides what must be there).
pub fn validate_infra(name: &InfraName, spec: &InfraSpec) -> Result<(), ValidationError> {
    match (name.kind(), &spec.ecs) {
        (InfraKind::Ecs, None) => {
            return Err(ValidationError::new(
                "ecs",
                format!("{name} needs its ECS settings: --cluster, --task-definition and --subnet"),
            ))
        }
        (InfraKind::Process, Some(_)) => {
            return Err(ValidationError::new(
                "ecs",
                format!("{name} is a process profile: ECS settings belong to an ecs/NAME profile"),
            ))
        }
        (InfraKind::Ecs, Some(ecs)) => validate_ecs(ecs)?,
        (InfraKind::Process, None) => {}
    }
    if spec.launch_lead_seconds > 3600 {
        return Err(ValidationError::new(
            "launch_lead_seconds",
            "at most 3600 (1 hour): Fargate starts a task within minutes",
        ));
    }
    if !(10..=3600).contains(&spec.start_timeout_seconds) {
        return Err(ValidationError::new(
            "start_timeout_seconds",
            "must be 10-3600 seconds: long enough for an image pull, short enough to notice a task that never starts",
        ));
    }
    if !(1..=10).contains(&spec.max_launches) {
        return Err(ValidationError::new("max_launches", "must be 1-10"));
    }
    Ok(())
}

fn validate_ecs(ecs: &EcsTarget) -> Result<(), ValidationError> {
    check_text("ecs.cluster", &ecs.cluster, "a cluster name or ARN")?;
    check_text(
        "ecs.task_definition",
        &ecs.task_definition,
        "FAMILY or FAMILY:REVISION",
    )?;
    if let Some((family, rev)) = ecs.task_definition.rsplit_once(':') {
        if !ecs.task_definition.starts_with("arn:")
            && (family.is_empty() || rev.parse::<u32>().map_or(true, |r| r == 0))
        {
            return Err(ValidationError::new(
                "ecs.task_definition",
                format!(
                    "{:?} is not FAMILY or FAMILY:REVISION (a revision is a number from 1)",
                    ecs.task_definition
                ),
            ));
        }
    }
    check_text("ecs.container", &ecs.container, "the container's name")?;
    if ecs.subnets.is_empty() {
        return Err(ValidationError::new(
            "ecs.subnets",
            "give at least one subnet (--subnet subnet-...)",
        ));
    }
    for (i, s) in ecs.subnets.iter().enumerate() {
        check_text(&format!("ecs.subnets[{i}]"), s, "a subnet id")?;
    }
    for (i, g) in ecs.security_groups.iter().enumerate() {
        check_text(
            &format!("ecs.security_groups[{i}]"),
            g,
            "a security group id",
        )?;
    }
    for (i, p) in ecs.capacity_providers.iter().enumerate() {
        if !matches!(p.name.as_str(), "FARGATE" | "FARGATE_SPOT") {
            return Err(ValidationError::new(
                format!("ecs.capacity_providers[{i}]"),
                format!("{:?} is not FARGATE or FARGATE_SPOT", p.name),
            ));
        }
    }
    if let Some(c) = ecs.cpu {
        check_cpu("ecs.cpu", c)?;
    }
    if let Some(m) = ecs.memory {
        check_memory("ecs.memory", m)?;
    }
    if let (Some(c), Some(m)) = (ecs.cpu, ecs.memory) {
        check_fargate_size("ecs.memory", c, m)?;
    }
    Ok(())
}

/// A deployment's overrides of its profile, typed. In a manifest and on the wire they are a
/// flat map (`infra_overrides: {cpu: 1024, memory: 4096, image: URI, env.KEY: VALUE}`), the
/// form of `--override KEY=VALUE`; an unknown key is refused naming it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(
    try_from = "BTreeMap<String, serde_json::Value>",
    into = "BTreeMap<String, serde_json::Value>"
)]
pub struct Overrides {
    /// Task CPU units.
    pub cpu: Option<u32>,
    /// Task memory, MiB.
    pub memory: Option<u32>,
    /// Container image (a task definition revision per image is registered once).
    pub image: Option<String>,
    /// Container environment (`env.KEY`). Never secrets: they are visible in the task.
    pub env: BTreeMap<String, String>,
}

const OVERRIDE_KEYS: &str = "cpu, memory, image or env.KEY";

impl Overrides {
    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self == &Overrides::default()
    }

    /// Sets `key` (as spelled in `--override key=value`) to `value`.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ValidationError> {
        let field = format!("infra_overrides.{key}");
        let number = |v: &str| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| ValidationError::new(&field, format!("{v:?} is not a whole number")))
        };
        match key {
            "cpu" => self.cpu = Some(number(value)?),
            "memory" => self.memory = Some(number(value)?),
            "image" => self.image = Some(value.to_owned()),
            _ => match key.strip_prefix("env.") {
                Some(name) => {
                    self.env.insert(name.to_owned(), value.to_owned());
                }
                None => {
                    return Err(ValidationError::new(
                        field,
                        format!("{key:?} is not an override: use {OVERRIDE_KEYS}"),
                    ))
                }
            },
        }
        Ok(())
    }

    /// Parses `KEY=VALUE` (one `--override`).
    pub fn set_pair(&mut self, pair: &str) -> Result<(), ValidationError> {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            ValidationError::new(
                "infra_overrides",
                format!("{pair:?} is not KEY=VALUE (e.g. cpu=1024, env.MODE=fast)"),
            )
        })?;
        self.set(k.trim(), v)
    }

    /// Checks the overrides on their own; [`Overrides::check_against`] checks them with the
    /// profile they apply to.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(c) = self.cpu {
            check_cpu("infra_overrides.cpu", c)?;
        }
        if let Some(m) = self.memory {
            check_memory("infra_overrides.memory", m)?;
        }
        if let Some(i) = &self.image {
            check_text("infra_overrides.image", i, "an image reference")?;
        }
        crate::validate::check_env("infra_overrides.env", &self.env)
    }

    /// Checks the overrides against the profile they apply to: ECS-only keys need an ECS
    /// profile, and the resulting cpu/memory must make a Fargate size.
    pub fn check_against(&self, profile: &InfraProfile) -> Result<(), ValidationError> {
        match &profile.spec.ecs {
            None => {
                for (key, set) in [
                    ("cpu", self.cpu.is_some()),
                    ("memory", self.memory.is_some()),
                    ("image", self.image.is_some()),
                ] {
                    if set {
                        return Err(ValidationError::new(
                            format!("infra_overrides.{key}"),
                            format!(
                                "{} runs local processes: {key} applies to ecs/NAME profiles only",
                                profile.name
                            ),
                        ));
                    }
                }
                Ok(())
            }
            Some(ecs) => match (self.cpu.or(ecs.cpu), self.memory.or(ecs.memory)) {
                (Some(c), Some(m)) => check_fargate_size("infra_overrides.memory", c, m),
                _ => Ok(()),
            },
        }
    }
}

impl TryFrom<BTreeMap<String, serde_json::Value>> for Overrides {
    type Error = String;
    fn try_from(map: BTreeMap<String, serde_json::Value>) -> Result<Self, String> {
        let mut o = Overrides::default();
        for (k, v) in map {
            let text = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                other => {
                    return Err(format!(
                        "{k}: {other} is not a string or number: an override is KEY: VALUE"
                    ))
                }
            };
            o.set(&k, &text).map_err(|e| e.to_string())?;
        }
        Ok(o)
    }
}

impl From<Overrides> for BTreeMap<String, serde_json::Value> {
    fn from(o: Overrides) -> Self {
        let mut m = BTreeMap::new();
        if let Some(c) = o.cpu {
            m.insert("cpu".into(), c.into());
        }
        if let Some(mem) = o.memory {
            m.insert("memory".into(), mem.into());
        }
        if let Some(i) = o.image {
            m.insert("image".into(), i.into());
        }
        for (k, v) in o.env {
            m.insert(format!("env.{k}"), v.into());
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ecs() -> EcsTarget {
        serde_json::from_value(serde_json::json!({
            "cluster": "ferry", "task_definition": "ferry-agent", "subnets": ["subnet-1"]
        }))
        .unwrap()
    }

    fn profile(kind: &str, ecs_target: Option<EcsTarget>) -> InfraProfile {
        let t = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        InfraProfile {
            name: format!("{kind}/p").parse().unwrap(),
            spec: InfraSpec {
                ecs: ecs_target,
                ..InfraSpec::default()
            },
            version: 1,
            created_at: t,
            updated_at: t,
        }
    }

    #[test]
    fn names_are_kind_slash_name() {
        let n: InfraName = "ecs/prod".parse().unwrap();
        assert_eq!((n.kind(), n.name()), (InfraKind::Ecs, "prod"));
        assert_eq!(n.to_string(), "ecs/prod");
        for bad in ["prod", "lambda/prod", "ecs/", "ecs/a b", "/prod"] {
            let e = bad.parse::<InfraName>().unwrap_err();
            assert_eq!(e.field, "infra_block", "{bad}");
        }
        let e = "k8s/x".parse::<InfraName>().unwrap_err();
        assert!(e.message.contains("ecs/NAME"), "{e}");
    }

    #[test]
    fn a_profile_kind_decides_what_its_spec_must_hold() {
        let ecs_name: InfraName = "ecs/prod".parse().unwrap();
        let proc_name: InfraName = "process/local".parse().unwrap();
        let e = validate_infra(&ecs_name, &InfraSpec::default()).unwrap_err();
        assert_eq!(e.field, "ecs");
        let with_ecs = InfraSpec {
            ecs: Some(ecs()),
            ..InfraSpec::default()
        };
        assert!(validate_infra(&ecs_name, &with_ecs).is_ok());
        assert_eq!(
            validate_infra(&proc_name, &with_ecs).unwrap_err().field,
            "ecs"
        );
        assert!(validate_infra(&proc_name, &InfraSpec::default()).is_ok());
    }

    #[test]
    fn bad_ecs_settings_are_refused_naming_the_field() {
        let name: InfraName = "ecs/prod".parse().unwrap();
        type Change = fn(&mut EcsTarget);
        let cases: Vec<(Change, &str)> = vec![
            (|e| e.subnets.clear(), "ecs.subnets"),
            (|e| e.cluster = " ".into(), "ecs.cluster"),
            (
                |e| e.task_definition = "fam:0".into(),
                "ecs.task_definition",
            ),
            (
                |e| e.task_definition = "fam:x".into(),
                "ecs.task_definition",
            ),
            (|e| e.cpu = Some(300), "ecs.cpu"),
            (|e| e.memory = Some(100), "ecs.memory"),
            (
                |e| {
                    e.cpu = Some(256);
                    e.memory = Some(4096)
                },
                "ecs.memory",
            ),
            (
                |e| {
                    e.capacity_providers = vec![CapacityProvider {
                        name: "EC2".into(),
                        weight: 1,
                        base: 0,
                    }]
                },
                "ecs.capacity_providers[0]",
            ),
        ];
        for (change, field) in cases {
            let mut target = ecs();
            change(&mut target);
            let spec = InfraSpec {
                ecs: Some(target),
                ..InfraSpec::default()
            };
            assert_eq!(validate_infra(&name, &spec).unwrap_err().field, field);
        }
        let mut ok = ecs();
        ok.task_definition = "fam:3".into();
        ok.cpu = Some(1024);
        ok.memory = Some(4096);
        let spec = InfraSpec {
            ecs: Some(ok),
            ..InfraSpec::default()
        };
        assert!(validate_infra(&name, &spec).is_ok());
        let slow = InfraSpec {
            start_timeout_seconds: 5,
            ..spec
        };
        assert_eq!(
            validate_infra(&name, &slow).unwrap_err().field,
            "start_timeout_seconds"
        );
    }

    #[test]
    fn overrides_parse_from_pairs_and_maps_and_refuse_unknown_keys() {
        let mut o = Overrides::default();
        o.set_pair("cpu=1024").unwrap();
        o.set_pair("memory=4096").unwrap();
        o.set_pair("env.MODE=fast=yes").unwrap();
        o.set_pair("image=123.dkr.ecr/x:1").unwrap();
        assert_eq!(o.cpu, Some(1024));
        assert_eq!(o.env["MODE"], "fast=yes");
        let map: BTreeMap<String, serde_json::Value> = o.clone().into();
        assert_eq!(Overrides::try_from(map).unwrap(), o);
        let e = o.set_pair("colour=blue").unwrap_err();
        assert_eq!(e.field, "infra_overrides.colour");
        assert!(e.message.contains("cpu, memory, image or env.KEY"), "{e}");
        assert_eq!(
            o.set_pair("cpu=lots").unwrap_err().field,
            "infra_overrides.cpu"
        );
        assert_eq!(o.set_pair("cpu").unwrap_err().field, "infra_overrides");
        let e = serde_json::from_value::<Overrides>(serde_json::json!({"gpu": 1})).unwrap_err();
        assert!(e.to_string().contains("\"gpu\" is not an override"), "{e}");
    }

    #[test]
    fn overrides_are_checked_against_their_profile() {
        let mut o = Overrides::default();
        o.set_pair("memory=8192").unwrap();
        let mut small = ecs();
        small.cpu = Some(256);
        let e = o.check_against(&profile("ecs", Some(small))).unwrap_err();
        assert_eq!(e.field, "infra_overrides.memory");
        assert!(e.message.contains("512-2048"), "{e}");
        o.set_pair("cpu=2048").unwrap();
        let mut small = ecs();
        small.cpu = Some(256);
        assert!(o.check_against(&profile("ecs", Some(small))).is_ok());
        let e = o.check_against(&profile("process", None)).unwrap_err();
        assert_eq!(e.field, "infra_overrides.cpu");
        let mut env_only = Overrides::default();
        env_only.set_pair("env.A=1").unwrap();
        assert!(env_only.check_against(&profile("process", None)).is_ok());
    }
}
