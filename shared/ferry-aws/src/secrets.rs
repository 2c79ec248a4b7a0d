//! The AWS adapter of [`SecretSource`]: `ssm:` references through SSM GetParameter (with
//! decryption), `secretsmanager:` through Secrets Manager GetSecretValue (its `SecretString`,
//! or one key of it as a JSON object). The clients are built on the first reference, from the
//! default AWS configuration ([`crate::config::sdk_config`]): an agent whose runs have no
//! reference never loads it, and an agent on the embedded backend with AWS credentials resolves
//! these references too.

use async_trait::async_trait;
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use ferry_core::secret::{json_key, SecretError, SecretRef, SecretSource};
use tokio::sync::OnceCell;

/// SSM and Secrets Manager clients, built lazily.
#[derive(Default)]
pub struct AwsSecrets {
    clients: OnceCell<Clients>,
}

struct Clients {
    ssm: aws_sdk_ssm::Client,
    secretsmanager: aws_sdk_secretsmanager::Client,
}

impl AwsSecrets {
    /// Clients from the default AWS configuration, built on the first reference.
    pub fn new() -> Self {
        Self::default()
    }

    /// Clients from `sdk`, now.
    pub fn from_sdk(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            clients: OnceCell::new_with(Some(Clients::new(sdk))),
        }
    }

    async fn clients(&self) -> &Clients {
        self.clients
            .get_or_init(|| async { Clients::new(&crate::config::sdk_config().await) })
            .await
    }
}

impl Clients {
    fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            ssm: aws_sdk_ssm::Client::new(sdk),
            secretsmanager: aws_sdk_secretsmanager::Client::new(sdk),
        }
    }
}

/// The error of a failed call: not found and access denied by their codes, the rest kept
/// whole as the source.
fn classify<E>(e: aws_sdk_ssm::error::SdkError<E>, not_found: &[&str]) -> SecretError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = e.as_service_error().and_then(|s| s.code()).unwrap_or("");
    if not_found.contains(&code) {
        return SecretError::NotFound;
    }
    if code == "AccessDeniedException" || code == "AccessDenied" {
        let why = e
            .as_service_error()
            .and_then(|s| s.message())
            .unwrap_or("no message")
            .to_owned();
        return SecretError::AccessDenied(format!(
            "{why} (grant the agent's role ssm:GetParameter / secretsmanager:GetSecretValue on it, and kms:Decrypt on its key)"
        ));
    }
    SecretError::backend(e)
}

#[async_trait]
impl SecretSource for AwsSecrets {
    async fn resolve(&self, reference: &SecretRef) -> Result<String, SecretError> {
        match reference {
            SecretRef::Ssm { name } => {
                let out = self
                    .clients()
                    .await
                    .ssm
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| {
                        classify(e, &["ParameterNotFound", "ParameterVersionNotFound"])
                    })?;
                out.parameter
                    .and_then(|p| p.value)
                    .ok_or(SecretError::NotFound)
            }
            SecretRef::SecretsManager { id, key } => {
                let out = self
                    .clients()
                    .await
                    .secretsmanager
                    .get_secret_value()
                    .secret_id(id)
                    .send()
                    .await
                    .map_err(|e| classify(e, &["ResourceNotFoundException"]))?;
                let Some(s) = out.secret_string else {
                    return Err(SecretError::Unsupported(
                        "it holds a binary secret (SecretBinary): store it as a secret string"
                            .into(),
                    ));
                };
                match key {
                    Some(k) => json_key(&s, k),
                    None => Ok(s),
                }
            }
            SecretRef::Embedded { .. } => Err(SecretError::Unsupported(
                "secret: references are the embedded store's (`ferry secret set`); on AWS use ssm:/path or secretsmanager:NAME[#key]".into(),
            )),
        }
    }
}
