//! Deployments: a flow's entrypoint + code bundle + schedules + run settings, upserted by
//! `flow/name`.

use crate::ids::QueueName;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::ValidationError;
use crate::ids::DeploymentId;
use crate::schedule::ScheduleSpec;
use crate::slot::SlotKey;

/// A content-addressed code bundle (gzip'd tar of the project directory).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct BundleRef {
    /// Lowercase hex sha256 of the tar.gz bytes.
    pub sha256: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
}

/// How the agent runs the flow's process (wherever the agent runs: a host, or a task
/// launched on the deployment's `infra_block`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Infrastructure {
    /// A child process on the agent's machine.
    Process {
        /// Python interpreter for `file.py:function` entrypoints (else `FERRY_PYTHON`, else `python3`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        python: Option<String>,
    },
}

impl Default for Infrastructure {
    fn default() -> Self {
        Infrastructure::Process { python: None }
    }
}

/// What the tick does with fire times missed while nothing ticked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum CatchUp {
    /// Drop missed runs (default).
    #[default]
    Skip,
    /// Run only the most recent missed one.
    Latest,
    /// Run the most recent `max` missed ones.
    All {
        /// Cap on missed runs created in one go.
        max: u32,
    },
}

impl fmt::Display for CatchUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CatchUp::Skip => f.write_str("skip"),
            CatchUp::Latest => f.write_str("latest"),
            CatchUp::All { max } => write!(f, "all:{max}"),
        }
    }
}

impl FromStr for CatchUp {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            ValidationError::new(
                "catchup",
                format!("{s:?} is not a catch-up policy: use \"skip\", \"latest\", \"all\" or \"all:N\" (N from 1 to 1000)"),
            )
        };
        match s.trim() {
            "skip" => Ok(CatchUp::Skip),
            "latest" => Ok(CatchUp::Latest),
            "all" => Ok(CatchUp::All { max: 100 }),
            other => {
                let n = other.strip_prefix("all:").ok_or_else(bad)?;
                let max: u32 = n.parse().map_err(|_| bad())?;
                if !(1..=1000).contains(&max) {
                    return Err(bad());
                }
                Ok(CatchUp::All { max })
            }
        }
    }
}

impl TryFrom<String> for CatchUp {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<CatchUp> for String {
    fn from(c: CatchUp) -> Self {
        c.to_string()
    }
}

/// Parsed entrypoint. Serialised as its string form, and parsed (validated) whenever it is
/// deserialised, so a spec in hand never holds an entrypoint that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Entrypoint {
    /// `path/file.py:function`: the agent's Python shim imports the file and calls the function.
    Python {
        /// Path of the .py file relative to the bundle root.
        path: String,
        /// Function name.
        function: String,
    },
    /// A path to an executable relative to the bundle root.
    Executable {
        /// Path relative to the bundle root.
        path: String,
    },
}

impl fmt::Display for Entrypoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entrypoint::Python { path, function } => write!(f, "{path}:{function}"),
            Entrypoint::Executable { path } => f.write_str(path),
        }
    }
}

impl TryFrom<String> for Entrypoint {
    /// The reason alone: the deserialiser names the field.
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Entrypoint::parse(&s).map_err(|e| e.message)
    }
}

impl From<Entrypoint> for String {
    fn from(e: Entrypoint) -> String {
        e.to_string()
    }
}

impl Entrypoint {
    /// Parses and validates an entrypoint string.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let err = |m: String| ValidationError::new("entrypoint", m);
        let s = s.trim();
        if s.is_empty() {
            return Err(err(
                "is empty: give `path/file.py:function` or a path to an executable".into(),
            ));
        }
        if s.contains('\0') {
            return Err(err(format!(
                "{s:?} contains a NUL byte (\\0), which no file path can hold: remove it"
            )));
        }
        let (path, function) = match s.rsplit_once(':') {
            Some((p, f)) => (p, Some(f)),
            None => (s, None),
        };
        if path.starts_with('/') || path.split('/').any(|c| c == "..") || path.contains('\\') {
            return Err(err(format!(
                "{s:?}: the path must be relative to the project directory (--path), without '..'"
            )));
        }
        match function {
            Some(f) => {
                let ident = !f.is_empty()
                    && f.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !f.starts_with(|c: char| c.is_ascii_digit());
                if !path.ends_with(".py") || !ident {
                    return Err(err(format!(
                        "{s:?}: expected `path/file.py:function` with a Python identifier after ':'"
                    )));
                }
                Ok(Entrypoint::Python {
                    path: path.to_owned(),
                    function: f.to_owned(),
                })
            }
            None => Ok(Entrypoint::Executable {
                path: path.to_owned(),
            }),
        }
    }

    /// The flow name an entrypoint implies: the Python function (`_` → `-`), or the
    /// executable's file stem.
    pub fn default_flow_name(&self) -> String {
        match self {
            Entrypoint::Python { function, .. } => function.replace('_', "-"),
            Entrypoint::Executable { path } => {
                let file = path.rsplit('/').next().unwrap_or(path);
                let stem = file.split('.').next().unwrap_or(file);
                stem.to_owned()
            }
        }
    }
}

/// A deployment as the user declares it: the manifest (`ferry deployment build -o x.yaml`) and
/// the body of `PUT /v1/deployments`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    /// Flow name (first half of the id).
    pub flow: String,
    /// Deployment name (second half of the id).
    pub name: String,
    /// Free-form version, e.g. a git SHA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Free-form description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Tags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Work queue runs are due in.
    #[serde(default = "QueueName::default_queue")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub work_queue: QueueName,
    /// `path/file.py:function` or a path to an executable, relative to the bundle root;
    /// parsed when the spec is read (stored and shown as that string).
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub entrypoint: Entrypoint,
    /// The code bundle; without one the agent runs the entrypoint from its working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundle: Option<BundleRef>,
    /// Default parameters (a JSON object).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    /// Schedules; fire times of all active ones are merged.
    #[serde(default)]
    pub schedules: Vec<ScheduleSpec>,
    /// Environment variables for the flow process.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// How the agent runs the flow's process.
    #[serde(default)]
    pub infrastructure: Infrastructure,
    /// `ecs/NAME` or `process/NAME`: each run gets a task of its own on that profile
    /// (`ferry infra create`). Without one, long-running agents of the work queue claim runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, example = "ecs/prod"))]
    pub infra_block: Option<crate::infra::InfraName>,
    /// Overrides of the profile's task: `cpu`, `memory`, `image`, `env.KEY`.
    #[serde(default, skip_serializing_if = "crate::infra::Overrides::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub infra_overrides: crate::infra::Overrides,
    /// Retries after a failed or crashed attempt.
    #[serde(default)]
    pub retries: u32,
    /// Seconds between a failed attempt and its retry.
    #[serde(default)]
    pub retry_delay_seconds: u64,
    /// Seconds a run may take before it is killed and Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// Most runs of this deployment Pending/Running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_limit: Option<u32>,
    /// A paused deployment schedules nothing.
    #[serde(default)]
    pub paused: bool,
    /// What to do with fire times missed while nothing ticked.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "skip"))]
    pub catchup: CatchUp,
    /// Start runs warm (`file.py:function` only): the agent keeps a Python process that has
    /// imported the flow's module and forks each run from it (docs/agent.md, "Warm starts").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub warm: bool,
}

/// A stored deployment: the spec plus what the server keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Deployment {
    /// `flow/name`.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub id: DeploymentId,
    /// What the user declared.
    pub spec: DeploymentSpec,
    /// The user's revision: 1 at creation, +1 on every change a user makes (an apply that
    /// changes the spec, pause, resume). The tick's bookkeeping never changes it.
    pub revision: u64,
    /// The store's optimistic-concurrency token: +1 on every stored change, the tick's
    /// bookkeeping (`scheduled_until`, `next_tick_at`) included. Kept by the store beside the
    /// body (filled on every read), never shown: writers condition on it, users see `revision`.
    #[serde(skip)]
    pub version: u64,
    /// Digest of the active schedules; runs carry the digest that produced them.
    pub schedule_digest: String,
    /// Every fire time up to this instant has been written as a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_until: Option<DateTime<Utc>>,
    /// When the tick must next extend the horizon; `None` = nothing to schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_tick_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl Deployment {
    /// The concurrency slot of this deployment.
    pub fn slot_key(&self) -> SlotKey {
        SlotKey::Deployment(self.id.clone())
    }

    /// Whether replacing this deployment by `next` makes the runs its schedules wrote stale:
    /// the active schedules (their digest), the parameters, the work queue or the pause flag
    /// changed (pausing and resuming alike). Such a change removes the not-yet-due scheduled
    /// runs and restarts the horizon at now. The one rule for applying a spec and for a tick
    /// that lost a race to a change.
    pub fn reschedules(&self, next: &Deployment) -> bool {
        self.schedule_digest != next.schedule_digest
            || self.spec.paused != next.spec.paused
            || self.spec.parameters != next.spec.parameters
            || self.spec.work_queue != next.spec.work_queue
            || self.spec.infra_block != next.spec.infra_block
    }

    /// Whether runs of this deployment are launched (a task per run) rather than claimed.
    pub fn is_launched(&self) -> bool {
        self.spec.infra_block.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entrypoints_parse() {
        assert_eq!(
            Entrypoint::parse("flows/etl.py:main").unwrap(),
            Entrypoint::Python {
                path: "flows/etl.py".into(),
                function: "main".into()
            }
        );
        assert_eq!(
            Entrypoint::parse("bin/run.sh").unwrap().default_flow_name(),
            "run"
        );
        assert_eq!(
            Entrypoint::parse("a.py:load_data")
                .unwrap()
                .default_flow_name(),
            "load-data"
        );
        for bad in [
            "",
            "/abs.py:main",
            "../x.py:main",
            "x.py:",
            "x.txt:main",
            "x.py:1a",
            "x\0.py:main",
            "bin/run\0",
        ] {
            assert_eq!(
                Entrypoint::parse(bad).unwrap_err().field,
                "entrypoint",
                "{bad}"
            );
        }
    }

    /// Deserializes a minimal spec with `value` put at `path` (object keys); returns the error.
    fn spec_error_with(path: &[&str], value: serde_json::Value) -> String {
        let mut spec = serde_json::json!({
            "flow": "etl", "name": "nightly", "entrypoint": "flows/etl.py:main"
        });
        let mut at = &mut spec;
        for key in &path[..path.len() - 1] {
            at = &mut at[*key];
        }
        at[path[path.len() - 1]] = value;
        match serde_json::from_value::<DeploymentSpec>(spec.clone()) {
            Ok(parsed) => panic!("{spec} was accepted as {parsed:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_manifest_object_rejects_unknown_fields_naming_them() {
        use serde_json::json;
        let sha = "a".repeat(64);
        let cases = [
            (vec!["colour"], json!("blue"), "colour"),
            (
                vec!["schedules"],
                json!([{ "cron": "0 9 * * *", "time_zone": "Europe/Berlin" }]),
                "time_zone",
            ),
            (
                vec!["schedules"],
                json!([{ "interval": 60, "anchor": "2026-01-01T00:00:00Z" }]),
                "anchor",
            ),
            (
                vec!["infrastructure"],
                json!({ "type": "process", "pyhton": "/usr/bin/python3" }),
                "pyhton",
            ),
            (
                vec!["bundle"],
                json!({ "sha256": sha, "size": 1, "sha": sha }),
                "sha",
            ),
        ];
        for (path, value, field) in cases {
            let e = spec_error_with(&path, value);
            assert!(
                e.contains(&format!("unknown field `{field}`")),
                "{path:?}: {e}"
            );
        }
        // Catch-up is a string: an object is refused with the accepted forms.
        let e = spec_error_with(&["catchup"], json!({ "policy": "all" }));
        assert!(e.contains("invalid type: map"), "{e}");
        let e = spec_error_with(&["catchup"], json!("sometimes"));
        assert!(e.contains("\"skip\", \"latest\", \"all\""), "{e}");
        // An unknown infrastructure type names the ones there are.
        let e = spec_error_with(&["infrastructure"], json!({ "type": "lambda" }));
        assert!(
            e.contains("unknown variant `lambda`") && e.contains("`process`"),
            "{e}"
        );
    }

    #[test]
    fn catchup_round_trips() {
        for s in ["skip", "latest", "all:5"] {
            assert_eq!(s.parse::<CatchUp>().unwrap().to_string(), s);
        }
        assert_eq!("all".parse::<CatchUp>().unwrap(), CatchUp::All { max: 100 });
        assert!("all:0".parse::<CatchUp>().is_err());
        assert!("sometimes".parse::<CatchUp>().is_err());
    }

    fn deployment(spec: serde_json::Value) -> Deployment {
        let mut base = serde_json::json!({
            "flow": "etl", "name": "nightly", "entrypoint": "flows/etl.py:main",
            "schedules": [{ "cron": "0 9 * * *" }]
        });
        for (k, v) in spec.as_object().unwrap() {
            base[k] = v.clone();
        }
        let spec: DeploymentSpec = serde_json::from_value(base).unwrap();
        let at = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        Deployment {
            id: DeploymentId::new(&spec.flow, &spec.name).unwrap(),
            schedule_digest: crate::validate::schedule_digest(&spec),
            spec,
            revision: 1,
            version: 1,
            scheduled_until: Some(at),
            next_tick_at: Some(at),
            created_at: at,
            updated_at: at,
        }
    }

    #[test]
    fn what_reschedules_a_deployment() {
        use serde_json::json;
        let old = deployment(json!({}));
        let paused = deployment(json!({ "paused": true }));
        assert!(old.reschedules(&paused), "pausing");
        assert!(paused.reschedules(&old), "resuming");
        for change in [
            json!({ "schedules": [{ "cron": "0 10 * * *" }] }),
            json!({ "schedules": [{ "cron": "0 9 * * *", "timezone": "Europe/Berlin" }] }),
            json!({ "schedules": [{ "cron": "0 9 * * *", "active": false }] }),
            json!({ "parameters": { "n": 2 } }),
            json!({ "work_queue": "prod" }),
            json!({ "infra_block": "ecs/prod" }),
        ] {
            assert!(old.reschedules(&deployment(change.clone())), "{change}");
        }
        for same in [
            json!({}),
            json!({ "schedules": [{ "cron": "0 9 * * *" }, { "cron": "* * * * *", "active": false }] }),
            json!({ "description": "nightly ETL", "version": "abc", "tags": ["x"] }),
            json!({ "entrypoint": "flows/etl.py:run", "retries": 3, "catchup": "latest" }),
            json!({ "env": { "MODE": "fast" }, "timeout_seconds": 60, "concurrency_limit": 2 }),
        ] {
            assert!(!old.reschedules(&deployment(same.clone())), "{same}");
        }
    }
}
