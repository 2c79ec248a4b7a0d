//! Secret references in a deployment's environment values, and the port that resolves them.
//!
//! A value `ssm:/path/name` (or `ssm:name`), `secretsmanager:NAME[#json-key]` (NAME may be an
//! ARN) or `secret:NAME` (the embedded store under FERRY_HOME) is a *reference*: the deployment
//! stores it as written and the agent resolves it just before the flow's process starts, into
//! that process's environment only. A value meant literally that starts like a reference is
//! written with a leading backslash: `\ssm:x` reaches the process as `ssm:x` (one leading
//! backslash is dropped from any value whose rest starts with `\` or a reference prefix, so
//! `\\ssm:x` gives `\ssm:x`). Every other value is passed as is.

use async_trait::async_trait;

use crate::error::ValidationError;

/// The prefix of an SSM Parameter Store reference.
pub const SSM_PREFIX: &str = "ssm:";
/// The prefix of a Secrets Manager reference.
pub const SECRETS_MANAGER_PREFIX: &str = "secretsmanager:";
/// The prefix of a reference to the embedded store (`ferry secret set NAME`).
pub const EMBEDDED_PREFIX: &str = "secret:";

/// Longest SSM parameter name or Secrets Manager id (an ARN included).
const MAX_REMOTE_NAME: usize = 2048;
/// Longest name in the embedded store.
pub const MAX_SECRET_NAME: usize = 128;

/// Where a secret lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// An SSM parameter, read with decryption (`ssm:/path/name`).
    Ssm {
        /// Parameter name (a path, a bare name or an ARN).
        name: String,
    },
    /// A Secrets Manager secret's `SecretString` (`secretsmanager:NAME[#key]`).
    SecretsManager {
        /// Secret name or ARN.
        id: String,
        /// With `#key`: the value of that key of the secret's JSON object.
        key: Option<String>,
    },
    /// A secret of the embedded store under FERRY_HOME (`secret:NAME`).
    Embedded {
        /// Its name (see [`check_secret_name`]).
        name: String,
    },
}

impl std::fmt::Display for SecretRef {
    /// The reference as written in the deployment (never a value).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretRef::Ssm { name } => write!(f, "{SSM_PREFIX}{name}"),
            SecretRef::SecretsManager { id, key: None } => {
                write!(f, "{SECRETS_MANAGER_PREFIX}{id}")
            }
            SecretRef::SecretsManager { id, key: Some(k) } => {
                write!(f, "{SECRETS_MANAGER_PREFIX}{id}#{k}")
            }
            SecretRef::Embedded { name } => write!(f, "{EMBEDDED_PREFIX}{name}"),
        }
    }
}

/// What an environment value means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// Passed to the process as this text (an escape already removed).
    Literal(String),
    /// Resolved by the agent at run time.
    Secret(SecretRef),
}

impl EnvValue {
    /// Whether the value is a secret reference.
    pub fn is_secret(&self) -> bool {
        matches!(self, EnvValue::Secret(_))
    }
}

fn starts_like_reference(v: &str) -> bool {
    [SSM_PREFIX, SECRETS_MANAGER_PREFIX, EMBEDDED_PREFIX]
        .iter()
        .any(|p| v.starts_with(p))
}

/// Parses environment value `value` of variable `field` (`env.KEY`): a literal, an escaped
/// literal (`\ssm:...`) or a secret reference. A malformed reference is an error naming
/// `field` and the fix, without echoing the value (it may be a literal secret).
pub fn parse_env_value(field: &str, value: &str) -> Result<EnvValue, ValidationError> {
    if let Some(rest) = value.strip_prefix('\\') {
        if rest.starts_with('\\') || starts_like_reference(rest) {
            return Ok(EnvValue::Literal(rest.to_owned()));
        }
        return Ok(EnvValue::Literal(value.to_owned()));
    }
    let p = prefix_of(value);
    let escape = format!("(or, for a literal value starting with {p:?}, write \\{p}...)");
    if let Some(name) = value.strip_prefix(SSM_PREFIX) {
        check_remote_name(
            field,
            name,
            "an SSM parameter name",
            "ssm:/prod/db/password",
            &escape,
            |c| c.is_ascii_alphanumeric() || "_.-/:".contains(c),
        )?;
        return Ok(EnvValue::Secret(SecretRef::Ssm {
            name: name.to_owned(),
        }));
    }
    if let Some(rest) = value.strip_prefix(SECRETS_MANAGER_PREFIX) {
        let (id, key) = match rest.split_once('#') {
            Some((id, key)) => (id, Some(key)),
            None => (rest, None),
        };
        check_remote_name(
            field,
            id,
            "a Secrets Manager secret name or ARN",
            "secretsmanager:prod/db#password",
            &escape,
            |c| c.is_ascii_alphanumeric() || "/_+=.@-:".contains(c),
        )?;
        if let Some(k) = key {
            if k.is_empty() || k.chars().any(char::is_control) {
                return Err(ValidationError::new(
                    field,
                    format!("the JSON key after '#' is empty or has control characters: write secretsmanager:NAME#KEY, or drop the '#' for the whole secret string {escape}"),
                ));
            }
        }
        return Ok(EnvValue::Secret(SecretRef::SecretsManager {
            id: id.to_owned(),
            key: key.map(str::to_owned),
        }));
    }
    if let Some(name) = value.strip_prefix(EMBEDDED_PREFIX) {
        check_secret_name(field, name)
            .map_err(|e| ValidationError::new(field, format!("{} {escape}", e.message)))?;
        return Ok(EnvValue::Secret(SecretRef::Embedded {
            name: name.to_owned(),
        }));
    }
    Ok(EnvValue::Literal(value.to_owned()))
}

fn prefix_of(value: &str) -> &str {
    [SSM_PREFIX, SECRETS_MANAGER_PREFIX, EMBEDDED_PREFIX]
        .into_iter()
        .find(|p| value.starts_with(p))
        .unwrap_or("")
}

fn check_remote_name(
    field: &str,
    name: &str,
    what: &str,
    example: &str,
    escape: &str,
    allowed: impl Fn(char) -> bool,
) -> Result<(), ValidationError> {
    let problem = if name.is_empty() {
        Some(format!("needs {what} after the prefix"))
    } else if name.len() > MAX_REMOTE_NAME {
        Some(format!("{what} has at most {MAX_REMOTE_NAME} characters"))
    } else {
        name.chars()
            .find(|c| !allowed(*c))
            .map(|c| format!("{c:?} cannot appear in {what}"))
    };
    match problem {
        Some(p) => Err(ValidationError::new(
            field,
            format!("{p}: write it like {example} {escape}"),
        )),
        None => Ok(()),
    }
}

/// Checks a name of the embedded store: 1 to [`MAX_SECRET_NAME`] characters among letters,
/// digits, `_`, `-` and `.`, not starting with `.` (each secret is a file of that name).
pub fn check_secret_name(field: &str, name: &str) -> Result<(), ValidationError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_SECRET_NAME
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            format!("a secret name has 1 to {MAX_SECRET_NAME} letters, digits, '_', '-' or '.', and does not start with '.' (e.g. secret:db_password)"),
        ))
    }
}

/// Why a reference could not be resolved. Messages name the reference's kind and the fix,
/// never a secret's value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// No such parameter, secret or embedded secret.
    #[error("not found")]
    NotFound,
    /// The caller may not read it.
    #[error("access denied: {0}")]
    AccessDenied(String),
    /// The secret's string is not a JSON object, or lacks the key.
    #[error("{0}")]
    Json(String),
    /// This kind of reference cannot be resolved here (and how to fix it).
    #[error("{0}")]
    Unsupported(String),
    /// The embedded store refuses to read a secret (its file's permissions), with the fix.
    #[error("{0}")]
    Refused(String),
    /// The backend failed (network, throttling past the SDK's retries, a server error).
    #[error("secret backend failure")]
    Backend {
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl SecretError {
    /// Wraps a backend error.
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        SecretError::Backend {
            source: Box::new(e),
        }
    }
}

/// Resolves secret references into values (SSM and Secrets Manager on AWS, the files under
/// FERRY_HOME). Implementations never log a value.
#[async_trait]
pub trait SecretSource: Send + Sync {
    /// The current value of `reference`.
    async fn resolve(&self, reference: &SecretRef) -> Result<String, SecretError>;
}

/// Checks every value of a deployment's `env` (field `env.KEY`).
pub(crate) fn check_env_references(
    env: &std::collections::BTreeMap<String, String>,
) -> Result<(), ValidationError> {
    for (k, v) in env {
        parse_env_value(&format!("env.{k}"), v)?;
    }
    Ok(())
}

/// The value of key `key` of JSON object `secret_string` (a Secrets Manager `#key`): a string
/// as is, any other JSON value as its JSON text.
pub fn json_key(secret_string: &str, key: &str) -> Result<String, SecretError> {
    let v: serde_json::Value = serde_json::from_str(secret_string).map_err(|_| {
        SecretError::Json(format!(
            "its secret string is not JSON, so it has no key {key:?}: drop '#{key}' for the whole string"
        ))
    })?;
    let serde_json::Value::Object(map) = v else {
        return Err(SecretError::Json(format!(
            "its secret string is not a JSON object, so it has no key {key:?}"
        )));
    };
    match map.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => {
            let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
            keys.sort_unstable();
            Err(SecretError::Json(format!(
                "its JSON object has no key {key:?} (keys: {})",
                keys.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Result<EnvValue, ValidationError> {
        parse_env_value("env.DB", v)
    }

    #[test]
    fn ssm_references_with_a_path_a_bare_name_or_an_arn_parse() {
        for name in [
            "/prod/db/password",
            "db_password",
            "arn:aws:ssm:us-east-1:123456789012:parameter/prod/db",
        ] {
            assert_eq!(
                parse(&format!("ssm:{name}")).unwrap(),
                EnvValue::Secret(SecretRef::Ssm { name: name.into() })
            );
        }
    }

    #[test]
    fn secretsmanager_references_keep_their_json_key() {
        assert_eq!(
            parse("secretsmanager:prod/db#password").unwrap(),
            EnvValue::Secret(SecretRef::SecretsManager {
                id: "prod/db".into(),
                key: Some("password".into())
            })
        );
        let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/db-AbCdEf";
        assert_eq!(
            parse(&format!("secretsmanager:{arn}")).unwrap(),
            EnvValue::Secret(SecretRef::SecretsManager {
                id: arn.into(),
                key: None
            })
        );
    }

    #[test]
    fn embedded_references_parse_and_display_as_written() {
        for v in [
            "secret:db_password",
            "ssm:/a/b",
            "secretsmanager:x#k",
            "secretsmanager:x",
        ] {
            match parse(v).unwrap() {
                EnvValue::Secret(r) => assert_eq!(r.to_string(), v),
                other => panic!("{v}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_references_name_the_variable_and_the_fix() {
        for (v, needle) in [
            ("ssm:", "needs an SSM parameter name"),
            ("ssm:/a b", "' ' cannot appear"),
            ("secretsmanager:", "needs a Secrets Manager"),
            ("secretsmanager:db#", "JSON key after '#' is empty"),
            ("secret:", "a secret name has"),
            ("secret:../x", "a secret name has"),
            ("secret:a/b", "a secret name has"),
        ] {
            let e = parse(v).unwrap_err();
            assert_eq!(e.field, "env.DB", "{v}");
            assert!(e.message.contains(needle), "{v}: {}", e.message);
        }
        let e = parse("ssm:").unwrap_err();
        assert!(e.message.contains("\\ssm:"), "{}", e.message);
    }

    #[test]
    fn a_leading_backslash_makes_a_reference_literal() {
        assert_eq!(
            parse("\\ssm:not-a-ref").unwrap(),
            EnvValue::Literal("ssm:not-a-ref".into())
        );
        assert_eq!(
            parse("\\\\ssm:x").unwrap(),
            EnvValue::Literal("\\ssm:x".into())
        );
        assert_eq!(parse("\\n").unwrap(), EnvValue::Literal("\\n".into()));
        assert_eq!(
            parse("plain value").unwrap(),
            EnvValue::Literal("plain value".into())
        );
        assert_eq!(
            parse("SSM:upper").unwrap(),
            EnvValue::Literal("SSM:upper".into())
        );
    }

    #[test]
    fn a_json_key_is_taken_from_the_secret_object() {
        let s = r#"{"user":"app","password":"hunter2","port":5432}"#;
        assert_eq!(json_key(s, "password").unwrap(), "hunter2");
        assert_eq!(json_key(s, "port").unwrap(), "5432");
        let missing = json_key(s, "host").unwrap_err().to_string();
        assert!(missing.contains("no key \"host\""), "{missing}");
        assert!(!missing.contains("hunter2"), "{missing}");
        let not_json = json_key("hunter2", "k").unwrap_err().to_string();
        assert!(!not_json.contains("hunter2"), "{not_json}");
    }
}
