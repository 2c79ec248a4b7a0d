//! Secrets of a run: the deployment's env values that are references (`ssm:`,
//! `secretsmanager:`, `secret:`, see [`ferry_core::secret`]) are resolved just before the flow's
//! process starts, into its environment only; the values are then masked (`***`) in the lines
//! captured from it (and so in the state message quoted from its last stderr line). A
//! reference that cannot be resolved fails the run with a message naming the variable and the
//! reference, never a value. Values never reach the agent's own logs.

use std::collections::HashMap;
use std::sync::Arc;

use ferry_core::secret::{parse_env_value, EnvValue, SecretError, SecretRef, SecretSource};

/// Where this agent resolves references.
#[derive(Clone, Default)]
pub struct SecretSources {
    /// `ssm:` and `secretsmanager:` (the agent's AWS configuration), if any.
    pub aws: Option<Arc<dyn SecretSource>>,
    /// `secret:` (the embedded store under the agent's FERRY_HOME); `None` on the AWS backend.
    pub embedded: Option<Arc<dyn SecretSource>>,
}

impl std::fmt::Debug for SecretSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSources")
            .field("aws", &self.aws.is_some())
            .field("embedded", &self.embedded.is_some())
            .finish()
    }
}

impl SecretSources {
    async fn resolve(&self, r: &SecretRef) -> Result<String, SecretError> {
        match r {
            SecretRef::Ssm { .. } | SecretRef::SecretsManager { .. } => match &self.aws {
                Some(s) => s.resolve(r).await,
                None => Err(SecretError::Unsupported(
                    "this agent has no AWS configuration to read it with".into(),
                )),
            },
            SecretRef::Embedded { .. } => match &self.embedded {
                Some(s) => s.resolve(r).await,
                None => Err(SecretError::Unsupported(
                    "secret: references are the embedded store's (`ferry secret set`); on the AWS backend use ssm:/path or secretsmanager:NAME[#key]".into(),
                )),
            },
        }
    }
}

/// Replaces every secret value with `***` in the lines it is applied to.
#[derive(Default)]
pub struct Masker {
    /// Longest first, so a value containing another is masked whole.
    needles: Vec<String>,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Masker({} values)", self.needles.len())
    }
}

/// What a masked value is replaced with.
pub const MASK: &str = "***";

impl Masker {
    /// A masker of `values`: each value whole, and each line of a multi-line value (output
    /// is captured line by line).
    pub fn new<'a>(values: impl IntoIterator<Item = &'a str>) -> Self {
        let mut needles: Vec<String> = Vec::new();
        for v in values {
            needles.push(v.to_owned());
            if v.contains('\n') {
                needles.extend(
                    v.lines()
                        .map(|l| l.trim_end_matches('\r'))
                        .filter(|l| !l.trim().is_empty())
                        .map(str::to_owned),
                );
            }
        }
        needles.retain(|n| !n.is_empty());
        needles.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        needles.dedup();
        Self { needles }
    }

    /// Whether there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.needles.is_empty()
    }

    /// `line` with every secret value replaced by [`MASK`].
    pub fn mask(&self, line: String) -> String {
        if self.needles.iter().any(|n| line.contains(n.as_str())) {
            let mut out = line;
            for n in &self.needles {
                if out.contains(n.as_str()) {
                    out = out.replace(n.as_str(), MASK);
                }
            }
            out
        } else {
            line
        }
    }
}

/// Resolves the references among `env`'s values in place (and removes the escape of escaped
/// literals). `Err` is the run's failure reason: the variable, the reference and why, never a
/// value. Each reference is fetched once per run.
pub(crate) async fn resolve_env(
    sources: &SecretSources,
    env: &mut [(String, String)],
) -> Result<Masker, String> {
    let mut resolved: HashMap<String, String> = HashMap::new();
    for (key, value) in env.iter_mut() {
        let field = format!("env.{key}");
        let reference = match parse_env_value(&field, value) {
            Ok(EnvValue::Literal(l)) => {
                *value = l;
                continue;
            }
            Ok(EnvValue::Secret(r)) => r,
            // Stored before references were checked: the same message as at build time.
            Err(e) => return Err(format!("{e}; fix the deployment and apply it again")),
        };
        let shown = reference.to_string();
        if let Some(v) = resolved.get(&shown) {
            *value = v.clone();
            continue;
        }
        match sources.resolve(&reference).await {
            Ok(v) => {
                tracing::info!(variable = %key, reference = %shown, "secret resolved");
                resolved.insert(shown, v.clone());
                *value = v;
            }
            Err(e) => {
                return Err(format!(
                    "cannot resolve {field} = {shown}: {}",
                    ferry_core::error::error_chain(&e)
                ))
            }
        }
    }
    Ok(Masker::new(resolved.values().map(String::as_str)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;

    struct Fixed;

    #[async_trait]
    impl SecretSource for Fixed {
        async fn resolve(&self, r: &SecretRef) -> Result<String, SecretError> {
            match r.to_string().as_str() {
                "secret:db" => Ok("hunter2".into()),
                "ssm:/multi" => Ok("line-one\nline-two\n".into()),
                _ => Err(SecretError::NotFound),
            }
        }
    }

    fn sources() -> SecretSources {
        SecretSources {
            aws: Some(Arc::new(Fixed)),
            embedded: Some(Arc::new(Fixed)),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[tokio::test]
    async fn references_are_replaced_by_their_values_and_escapes_by_their_text() {
        let mut e = env(&[
            ("A", "secret:db"),
            ("B", "\\ssm:kept"),
            ("C", "plain"),
            ("D", "secret:db"),
        ]);
        let masker = resolve_env(&sources(), &mut e).await.unwrap();
        assert_eq!(
            e,
            env(&[
                ("A", "hunter2"),
                ("B", "ssm:kept"),
                ("C", "plain"),
                ("D", "hunter2")
            ])
        );
        assert_eq!(masker.mask("pw=hunter2!".into()), "pw=***!");
        assert_eq!(format!("{masker:?}"), "Masker(1 values)");
    }

    #[tokio::test]
    async fn a_missing_secret_fails_naming_the_variable_and_the_reference() {
        let mut e = env(&[("A", "secret:db"), ("TOKEN", "secretsmanager:app#token")]);
        let reason = resolve_env(&sources(), &mut e).await.unwrap_err();
        assert_eq!(
            reason,
            "cannot resolve env.TOKEN = secretsmanager:app#token: not found"
        );
        assert!(!reason.contains("hunter2"));
    }

    #[tokio::test]
    async fn an_embedded_reference_without_the_embedded_store_says_to_use_ssm() {
        let only_aws = SecretSources {
            aws: Some(Arc::new(Fixed)),
            embedded: None,
        };
        let mut e = env(&[("A", "secret:db")]);
        let reason = resolve_env(&only_aws, &mut e).await.unwrap_err();
        assert!(
            reason.starts_with("cannot resolve env.A = secret:db: "),
            "{reason}"
        );
        assert!(
            reason.contains("use ssm:/path or secretsmanager:"),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn every_line_of_a_multi_line_value_is_masked() {
        let mut e = env(&[("CERT", "ssm:/multi")]);
        let masker = resolve_env(&sources(), &mut e).await.unwrap();
        assert_eq!(masker.mask("got line-two here".into()), "got *** here");
        assert_eq!(masker.mask("nothing secret".into()), "nothing secret");
    }

    #[test]
    fn a_longer_value_is_masked_whole_before_a_shorter_one_inside_it() {
        let m = Masker::new(["abc", "xabcx"]);
        assert_eq!(m.mask("1 xabcx 2 abc".into()), "1 *** 2 ***");
    }
}
