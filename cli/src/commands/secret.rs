//! `ferry secret set|ls|rm`: the embedded secret store under FERRY_HOME/secrets, and where an
//! agent resolves the secret references of its runs.

use std::io::{IsTerminal, Read, Write};
use std::sync::Arc;

use anyhow::{Context, Result};
use ferry_agent::SecretSources;
use ferry_embedded::FileSecretStore;

use crate::args::SecretCmd;
use crate::server::{backend, ferry_home};

/// The embedded store of this machine (FERRY_HOME/secrets).
fn store() -> Result<FileSecretStore> {
    Ok(FileSecretStore::new(ferry_home()?.join("secrets")))
}

/// Where an agent on this machine resolves references: `ssm:`/`secretsmanager:` with the
/// default AWS configuration (clients built on the first such reference, whatever the
/// backend), `secret:` in FERRY_HOME/secrets on the embedded backend only.
pub(crate) fn agent_sources() -> Result<SecretSources> {
    let embedded: Option<Arc<dyn ferry_core::secret::SecretSource>> = match backend()? {
        ferry_api::Backend::Embedded => Some(Arc::new(store()?)),
        ferry_api::Backend::Aws => None,
    };
    Ok(SecretSources {
        aws: Some(Arc::new(ferry_aws::AwsSecrets::new())),
        embedded,
    })
}

fn refuse_on_aws() -> Result<()> {
    anyhow::ensure!(
        backend()? == ferry_api::Backend::Embedded,
        "`ferry secret` manages the embedded store, and FERRY_BACKEND=aws agents do not read it: store the secret in SSM (aws ssm put-parameter --type SecureString --name /NAME --value ...) or Secrets Manager and reference it as ssm:/NAME or secretsmanager:NAME[#key]"
    );
    Ok(())
}

pub fn run(cmd: SecretCmd) -> Result<()> {
    refuse_on_aws()?;
    let store = store()?;
    match cmd {
        SecretCmd::Set { name } => {
            // The name first: a bad one is refused before a value is asked for.
            ferry_core::secret::check_secret_name("NAME", &name)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let value = read_value(&name)?;
            store.set(&name, &value)?;
            println!("Secret {name} stored: reference it as secret:{name}");
        }
        SecretCmd::Ls { out } => {
            let names = store.list()?;
            if out.json {
                println!("{}", serde_json::to_string(&names)?);
            } else if names.is_empty() {
                println!("No secrets: store one with `ferry secret set NAME`");
            } else {
                for n in names {
                    println!("{n}");
                }
            }
        }
        SecretCmd::Rm { name } => {
            anyhow::ensure!(
                store.remove(&name)?,
                "no secret named {name:?}: `ferry secret ls` lists them"
            );
            println!("Secret {name} removed");
        }
    }
    Ok(())
}

/// The value from stdin (one trailing newline dropped), or from a prompt without echo.
fn read_value(name: &str) -> Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut value = String::new();
        stdin
            .lock()
            .read_to_string(&mut value)
            .context("reading the secret's value from stdin (it must be UTF-8 text)")?;
        if value.ends_with('\n') {
            value.pop();
            if value.ends_with('\r') {
                value.pop();
            }
        }
        return Ok(value);
    }
    eprint!("Value of secret {name} (not shown): ");
    std::io::stderr().flush()?;
    read_line_without_echo()
}

fn read_line_without_echo() -> Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    let saved = tcgetattr(&stdin).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    quiet.local_flags.insert(LocalFlags::ECHONL);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).context("turning the terminal's echo off")?;
    let mut line = String::new();
    let read = stdin.read_line(&mut line);
    tcsetattr(&stdin, SetArg::TCSANOW, &saved).context("turning the terminal's echo back on")?;
    read.context("reading the secret's value")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
