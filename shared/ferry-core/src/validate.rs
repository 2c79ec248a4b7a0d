//! Validation of user input: everything is checked before anything is written.

use std::collections::BTreeMap;

use crate::deployment::{DeploymentSpec, Entrypoint, Infrastructure};
use crate::error::ValidationError;
use crate::ids::DeploymentId;
use crate::limits::*;
use crate::schedule::Schedule;

/// A spec that passed validation, with its parsed parts.
#[derive(Debug, Clone)]
pub struct ValidSpec {
    /// `flow/name`.
    pub id: DeploymentId,
    /// The parsed entrypoint.
    pub entrypoint: Entrypoint,
    /// Parsed schedules, in spec order.
    pub schedules: Vec<Schedule>,
}

/// Checks a parameters object against the size cap.
pub fn check_parameters(
    field: &str,
    params: &serde_json::Map<String, serde_json::Value>,
) -> Result<(), ValidationError> {
    let size = serde_json::to_vec(params)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_PARAMETERS_BYTES {
        return Err(ValidationError::new(
            field,
            format!(
                "{size} bytes of JSON exceeds the {MAX_PARAMETERS_BYTES}-byte limit: pass large data by reference (an S3 key, a path) instead"
            ),
        ));
    }
    Ok(())
}

/// Parses `value` as a JSON object of parameters.
pub fn parse_parameters(
    field: &str,
    value: &serde_json::Value,
) -> Result<serde_json::Map<String, serde_json::Value>, ValidationError> {
    match value {
        serde_json::Value::Object(m) => {
            check_parameters(field, m)?;
            Ok(m.clone())
        }
        other => Err(ValidationError::new(
            field,
            format!(
                "must be a JSON object like {{\"key\": 1}}, got {}",
                json_kind(other)
            ),
        )),
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Refuses a NUL byte in a value handed to a process (a path, an argument, an environment
/// variable): the OS cannot carry it, so the run would only fail later, on the agent. The
/// value is not echoed (it may be a secret).
fn check_no_nul(field: &str, value: &str, what: &str) -> Result<(), ValidationError> {
    if value.contains('\0') {
        return Err(ValidationError::new(
            field,
            format!("contains a NUL byte (\\0), which {what} cannot hold: remove it"),
        ));
    }
    Ok(())
}

pub(crate) fn check_env(
    field: &str,
    env: &BTreeMap<String, String>,
) -> Result<(), ValidationError> {
    for (k, v) in env {
        check_env_key(field, k)?;
        check_no_nul(&format!("{field}.{k}"), v, "an environment variable")?;
    }
    Ok(())
}

fn check_env_key(field: &str, key: &str) -> Result<(), ValidationError> {
    let ok = !key.is_empty()
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if !ok {
        return Err(ValidationError::new(
            field,
            format!("{key:?} is not a valid environment variable name (letters, digits, '_', not starting with a digit)"),
        ));
    }
    if key.starts_with("FERRY_") {
        return Err(ValidationError::new(
            field,
            format!(
                "{key:?}: names starting with FERRY_ are reserved for the variables the agent sets"
            ),
        ));
    }
    Ok(())
}

/// Validates a deployment spec completely (everything but the existence of its work queue,
/// which needs the store).
pub fn validate_spec(spec: &DeploymentSpec) -> Result<ValidSpec, ValidationError> {
    let id = DeploymentId::new(&spec.flow, &spec.name)?;
    let entrypoint = spec.entrypoint.clone();
    if let Some(v) = &spec.version {
        if v.len() > 200 {
            return Err(ValidationError::new(
                "version",
                "longer than 200 characters",
            ));
        }
    }
    if spec.tags.len() > MAX_TAGS {
        return Err(ValidationError::new(
            "tags",
            format!("at most {MAX_TAGS} tags"),
        ));
    }
    for (i, t) in spec.tags.iter().enumerate() {
        if t.is_empty() || t.len() > 100 || t.chars().any(|c| c.is_control() || c == ',') {
            return Err(ValidationError::new(
                format!("tags[{i}]"),
                format!("{t:?}: a tag is 1-100 printable characters without ','"),
            ));
        }
    }
    if let Some(b) = &spec.bundle {
        if crate::digest::BundleDigest::parse(&b.sha256).is_err() {
            return Err(ValidationError::new(
                "bundle.sha256",
                format!(
                    "{:?} is not a lowercase hex sha256 (64 characters)",
                    b.sha256
                ),
            ));
        }
    }
    check_parameters("parameters", &spec.parameters)?;
    let env_size: usize = spec.env.iter().map(|(k, v)| k.len() + v.len()).sum();
    if env_size > MAX_ENV_BYTES {
        return Err(ValidationError::new(
            "env",
            format!("{env_size} bytes exceeds the {MAX_ENV_BYTES}-byte limit"),
        ));
    }
    check_env("env", &spec.env)?;
    crate::secret::check_env_references(&spec.env)?;
    if let Infrastructure::Process { python: Some(p) } = &spec.infrastructure {
        check_no_nul("infrastructure.python", p, "an interpreter path")?;
    }
    if spec.warm && !matches!(spec.entrypoint, Entrypoint::Python { .. }) {
        return Err(ValidationError::new(
            "warm",
            "only a `file.py:function` entrypoint starts warm (an executable starts afresh each run): use a Python entrypoint, or drop warm",
        ));
    }
    if spec.warm && spec.infra_block.is_some() {
        return Err(ValidationError::new(
            "warm",
            "a run on an infrastructure profile gets a task of its own, where nothing stays warm: drop warm, or infra_block",
        ));
    }
    if spec.infra_block.is_none() && !spec.infra_overrides.is_empty() {
        return Err(ValidationError::new(
            "infra_overrides",
            "overrides apply to an infrastructure profile: set infra_block (`-ib ecs/NAME` at build), or drop the overrides",
        ));
    }
    spec.infra_overrides.validate()?;
    if spec.retries > 100 {
        return Err(ValidationError::new("retries", "at most 100"));
    }
    if spec.retry_delay_seconds > 7 * 86_400 {
        return Err(ValidationError::new(
            "retry_delay_seconds",
            "at most 604800 (7 days)",
        ));
    }
    if spec.timeout_seconds == Some(0) {
        return Err(ValidationError::new(
            "timeout_seconds",
            "must be at least 1 (omit it for no timeout)",
        ));
    }
    if spec.concurrency_limit == Some(0) {
        return Err(ValidationError::new(
            "concurrency_limit",
            "must be at least 1 (pause the deployment to stop its runs)",
        ));
    }
    if spec.schedules.len() > MAX_SCHEDULES {
        return Err(ValidationError::new(
            "schedules",
            format!("at most {MAX_SCHEDULES} schedules"),
        ));
    }
    let mut schedules = Vec::with_capacity(spec.schedules.len());
    for (i, s) in spec.schedules.iter().enumerate() {
        let parsed = Schedule::parse(s)
            .map_err(|e| ValidationError::new(format!("schedules[{i}].{}", e.field), e.message))?;
        schedules.push(parsed);
    }
    let size = serde_json::to_vec(spec)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_DEPLOYMENT_BYTES {
        return Err(ValidationError::new(
            "deployment",
            format!("{size} bytes exceeds the {MAX_DEPLOYMENT_BYTES}-byte limit"),
        ));
    }
    Ok(ValidSpec {
        id,
        entrypoint,
        schedules,
    })
}

/// Digest of the schedules that matter for scheduling (the active ones, in order). Runs written
/// from an older digest are stale when the digest changes.
pub fn schedule_digest(spec: &DeploymentSpec) -> String {
    use sha2::{Digest, Sha256};
    let active: Vec<_> = spec.schedules.iter().filter(|s| s.active).collect();
    let json = serde_json::to_vec(&active).unwrap_or_default();
    hex::encode(&Sha256::digest(&json)[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DeploymentSpec {
        serde_json::from_value(serde_json::json!({
            "flow": "etl", "name": "nightly", "entrypoint": "flows/etl.py:main"
        }))
        .unwrap()
    }

    fn refused(spec: &DeploymentSpec) -> ValidationError {
        match validate_spec(spec) {
            Ok(_) => panic!("{spec:?} was accepted"),
            Err(e) => e,
        }
    }

    #[test]
    fn nul_bytes_are_refused_where_a_process_would_carry_them() {
        assert!(validate_spec(&spec()).is_ok());
        let mut cases: Vec<(DeploymentSpec, &str)> = Vec::new();
        for entrypoint in ["flows/e\0tl.py:main", "bin/run\0.sh", "bin/run.sh\0"] {
            let e = Entrypoint::parse(entrypoint).unwrap_err();
            assert_eq!(e.field, "entrypoint", "{entrypoint:?}");
        }
        let mut s = spec();
        s.env.insert("TOKEN".into(), "abc\0def".into());
        cases.push((s, "env.TOKEN"));
        let mut s = spec();
        s.env.insert("TO\0KEN".into(), "abc".into());
        cases.push((s, "env"));
        let mut s = spec();
        s.infrastructure = Infrastructure::Process {
            python: Some("/usr/bin/python3\0".into()),
        };
        cases.push((s, "infrastructure.python"));
        let mut s = spec();
        s.infra_block = Some("ecs/prod".parse().unwrap());
        s.infra_overrides.set("image", "python:3.12\0").unwrap();
        cases.push((s, "infra_overrides.image"));
        let mut s = spec();
        s.infra_block = Some("ecs/prod".parse().unwrap());
        s.infra_overrides.set("env.MODE", "\0").unwrap();
        cases.push((s, "infra_overrides.env.MODE"));
        for (s, field) in cases {
            let e = refused(&s);
            assert_eq!(e.field, field, "{s:?}: {e}");
            if field != "env" {
                assert!(e.message.contains("NUL byte"), "{field}: {e}");
            }
            // An environment value may be a secret: never echoed.
            assert!(!e.message.contains("abc"), "{field}: {e}");
        }
    }

    #[test]
    fn a_malformed_secret_reference_in_env_is_refused_naming_the_variable() {
        let mut s = spec();
        s.env
            .insert("DB_PASSWORD".into(), "secretsmanager:prod/db#".into());
        let e = refused(&s);
        assert_eq!(e.field, "env.DB_PASSWORD");
        let mut s = spec();
        s.env
            .insert("DB_PASSWORD".into(), "ssm:/prod/db/password".into());
        s.env.insert("LITERAL".into(), "\\ssm:kept as text".into());
        assert!(validate_spec(&s).is_ok());
    }
}
