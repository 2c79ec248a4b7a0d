//! CloudFormation stacks from the CLI (`ferry aws deploy`, `ferry aws destroy`): create or
//! update a stack and wait, printing its events as CloudFormation works; an update with
//! nothing to change is a success that changes nothing.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_cloudformation::error::ProvideErrorMetadata;
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus, Tag};
use aws_sdk_cloudformation::Client;

/// What a deploy did to a stack.
#[derive(Debug)]
pub struct Deployed {
    /// Created, updated, or unchanged.
    pub action: &'static str,
    /// The stack's outputs.
    pub outputs: BTreeMap<String, String>,
}

const POLL: Duration = Duration::from_secs(2);

/// The stack's status, or `None` when it does not exist.
async fn status(cf: &Client, name: &str) -> Result<Option<StackStatus>> {
    match cf.describe_stacks().stack_name(name).send().await {
        Ok(out) => Ok(out
            .stacks()
            .first()
            .and_then(|s| s.stack_status().cloned())
            .filter(|s| *s != StackStatus::DeleteComplete)),
        Err(e) if e.message().is_some_and(|m| m.contains("does not exist")) => Ok(None),
        Err(e) => Err(anyhow!("{}", ferry_core::error::error_chain(&e)))
            .with_context(|| format!("describing stack {name}")),
    }
}

/// The stack's outputs.
pub async fn outputs(cf: &Client, name: &str) -> Result<BTreeMap<String, String>> {
    let out = cf
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| anyhow!("{}", ferry_core::error::error_chain(&e)))
        .with_context(|| format!("reading the outputs of stack {name}"))?;
    Ok(out
        .stacks()
        .first()
        .map(|s| {
            s.outputs()
                .iter()
                .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
                .collect()
        })
        .unwrap_or_default())
}

/// Creates `name` from `template`, or updates it; waits until CloudFormation is done, printing
/// each stack event. A stack left in ROLLBACK_COMPLETE (a failed first create) cannot be
/// updated: the error says to destroy it first.
pub async fn deploy(
    cf: &Client,
    name: &str,
    template: &str,
    params: &[(&str, String)],
) -> Result<Deployed> {
    let parameters: Vec<Parameter> = params
        .iter()
        .map(|(k, v)| {
            Parameter::builder()
                .parameter_key(*k)
                .parameter_value(v)
                .build()
        })
        .collect();
    let digest = deploy_digest(template, params);
    let tag = Tag::builder().key(DIGEST_TAG).value(&digest).build();
    let seen = event_ids(cf, name).await?;
    let action = match status(cf, name).await? {
        None => {
            cf.create_stack()
                .stack_name(name)
                .template_body(template)
                .set_parameters(Some(parameters))
                .capabilities(Capability::CapabilityIam)
                .capabilities(Capability::CapabilityNamedIam)
                .tags(tag)
                .send()
                .await
                .map_err(|e| anyhow!("{}", ferry_core::error::error_chain(&e)))
                .with_context(|| format!("creating stack {name}"))?;
            "created"
        }
        Some(StackStatus::RollbackComplete) => bail!(
            "stack {name} is in ROLLBACK_COMPLETE (its first create failed; the events above or `aws cloudformation describe-stack-events --stack-name {name}` say why): remove it with `ferry aws destroy --stack {name}` and deploy again"
        ),
        Some(s) if s.as_str().ends_with("_IN_PROGRESS") => bail!(
            "stack {name} is busy ({}): wait until CloudFormation is done, then deploy again",
            s.as_str()
        ),
        Some(_) if same_as_deployed(cf, name, &digest).await? => {
            return Ok(Deployed {
                action: "unchanged",
                outputs: outputs(cf, name).await?,
            });
        }
        Some(_) => {
            let r = cf
                .update_stack()
                .stack_name(name)
                .template_body(template)
                .set_parameters(Some(parameters))
                .capabilities(Capability::CapabilityIam)
                .capabilities(Capability::CapabilityNamedIam)
                .tags(tag)
                .send()
                .await;
            match r {
                Ok(_) => "updated",
                Err(e)
                    if e
                        .message()
                        .is_some_and(|m| m.contains("No updates are to be performed")) =>
                {
                    return Ok(Deployed {
                        action: "unchanged",
                        outputs: outputs(cf, name).await?,
                    });
                }
                Err(e) => {
                    return Err(anyhow!("{}", ferry_core::error::error_chain(&e)))
                        .with_context(|| format!("updating stack {name}"))
                }
            }
        }
    };
    let end = wait(cf, name, seen).await?;
    if !matches!(
        end,
        StackStatus::CreateComplete | StackStatus::UpdateComplete
    ) {
        bail!(
            "stack {name} ended {} (the failed events above say why)",
            end.as_str()
        );
    }
    Ok(Deployed {
        action,
        outputs: outputs(cf, name).await?,
    })
}

/// The tag a deploy leaves on its stack: a digest of the template and the parameters it sent.
const DIGEST_TAG: &str = "ferry:deploy-digest";

fn deploy_digest(template: &str, params: &[(&str, String)]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(template.as_bytes());
    let mut sorted: Vec<_> = params.iter().collect();
    sorted.sort();
    for (k, v) in sorted {
        h.update(format!("\0{k}={v}").as_bytes());
    }
    hex::encode(h.finalize())
}

/// Whether the stack was last deployed with this very template and these parameters (its
/// digest tag), so a deploy with nothing changed sends no update at all. (CloudFormation would
/// refuse one with "No updates are to be performed", which is handled too.)
async fn same_as_deployed(cf: &Client, name: &str, digest: &str) -> Result<bool> {
    let out = cf
        .describe_stacks()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| anyhow!("{}", ferry_core::error::error_chain(&e)))?;
    Ok(out.stacks().first().is_some_and(|s| {
        s.tags()
            .iter()
            .any(|t| t.key() == Some(DIGEST_TAG) && t.value() == Some(digest))
    }))
}

/// Deletes `name` and waits; a stack that does not exist is already gone.
pub async fn destroy(cf: &Client, name: &str) -> Result<bool> {
    if status(cf, name).await?.is_none() {
        return Ok(false);
    }
    let seen = event_ids(cf, name).await?;
    cf.delete_stack()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| anyhow!("{}", ferry_core::error::error_chain(&e)))
        .with_context(|| format!("deleting stack {name}"))?;
    let end = wait(cf, name, seen).await?;
    if end != StackStatus::DeleteComplete {
        bail!("stack {name} ended {} while deleting", end.as_str());
    }
    Ok(true)
}

async fn event_ids(cf: &Client, name: &str) -> Result<HashSet<String>> {
    if status(cf, name).await?.is_none() {
        return Ok(HashSet::new());
    }
    let out = cf
        .describe_stack_events()
        .stack_name(name)
        .send()
        .await
        .map_err(|e| anyhow!("{}", ferry_core::error::error_chain(&e)))?;
    Ok(out
        .stack_events()
        .iter()
        .filter_map(|e| e.event_id().map(str::to_owned))
        .collect())
}

/// Polls until the stack is no longer in progress, printing events not seen before; returns
/// the final status (`DeleteComplete` once a deleted stack is gone).
async fn wait(cf: &Client, name: &str, mut seen: HashSet<String>) -> Result<StackStatus> {
    loop {
        let Some(now) = status(cf, name).await? else {
            return Ok(StackStatus::DeleteComplete);
        };
        if let Ok(out) = cf.describe_stack_events().stack_name(name).send().await {
            let mut fresh: Vec<_> = out
                .stack_events()
                .iter()
                .filter(|e| e.event_id().is_some_and(|id| seen.insert(id.to_owned())))
                .collect();
            fresh.reverse(); // oldest first
            for e in fresh {
                let reason = e
                    .resource_status_reason()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                eprintln!(
                    "  {:<28} {:<40} {}{reason}",
                    e.resource_status().map(|s| s.as_str()).unwrap_or("?"),
                    e.logical_resource_id().unwrap_or("?"),
                    e.resource_type().unwrap_or("")
                );
            }
        }
        if !now.as_str().ends_with("_IN_PROGRESS") {
            return Ok(now);
        }
        tokio::time::sleep(POLL).await;
    }
}
