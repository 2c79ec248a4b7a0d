use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use ferry_app::InfraOutcome;
use ferry_core::infra::{
    CapacityProvider, EcsTarget, InfraKind, InfraName, InfraProfile, InfraSpec,
};
use ferry_core::Deployment;
use reqwest::Method;

use crate::args::InfraCmd;
use crate::client::Client;
use crate::output;

/// Parses the NAME argument (`ecs/NAME`, `process/NAME`).
fn parse_name(name: &str) -> Result<InfraName> {
    name.parse::<InfraName>()
        .map_err(|e| anyhow!("NAME: {}", e.message))
}

fn path_of(name: &InfraName) -> String {
    format!("/infra/{}/{}", name.kind().as_str(), name.name())
}

/// Whole seconds of a `--launch-lead`/`--start-timeout` duration.
fn whole_seconds(flag: &str, d: Duration) -> Result<u64> {
    if d.subsec_nanos() != 0 {
        bail!(
            "{flag} {}: give whole seconds (e.g. 90s, 5m)",
            humantime::format_duration(d)
        );
    }
    Ok(d.as_secs())
}

/// `FARGATE|FARGATE_SPOT[:WEIGHT[:BASE]]`.
fn parse_capacity_provider(text: &str) -> Result<CapacityProvider> {
    let bad = |what: &str| {
        anyhow!("--capacity-provider {text:?}: {what}; use FARGATE|FARGATE_SPOT[:WEIGHT[:BASE]], e.g. FARGATE_SPOT:3 or FARGATE:1:1")
    };
    let mut parts = text.split(':');
    let name = parts.next().unwrap_or_default().trim().to_owned();
    let number = |part: Option<&str>, what: &str, default: u32| -> Result<u32> {
        match part {
            None => Ok(default),
            Some(p) => p
                .trim()
                .parse()
                .map_err(|_| bad(&format!("{what} {p:?} is not a whole number"))),
        }
    };
    let weight = number(parts.next(), "the weight", 1)?;
    let base = number(parts.next(), "the base", 0)?;
    if parts.next().is_some() {
        return Err(bad("too many ':'-separated parts"));
    }
    Ok(CapacityProvider { name, weight, base })
}

/// The profile `ferry infra create` asks for; ECS flags on a process profile, or a missing
/// required ECS flag, are refused before anything is sent.
fn spec_from_create(cmd: &InfraCmd) -> Result<(InfraName, InfraSpec)> {
    let InfraCmd::Create {
        name,
        cluster,
        task_definition,
        subnets,
        security_groups,
        assign_public_ip,
        capacity_providers,
        cpu,
        memory,
        container,
        launch_lead,
        start_timeout,
        max_launches,
        out: _,
    } = cmd
    else {
        bail!("not an infra create command");
    };
    let name = parse_name(name)?;
    let ecs = match name.kind() {
        InfraKind::Process => {
            let given: Vec<&str> = [
                ("--cluster", cluster.is_some()),
                ("--task-definition", task_definition.is_some()),
                ("--subnet", !subnets.is_empty()),
                ("--security-group", !security_groups.is_empty()),
                ("--assign-public-ip", *assign_public_ip),
                ("--capacity-provider", !capacity_providers.is_empty()),
                ("--cpu", cpu.is_some()),
                ("--memory", memory.is_some()),
                ("--container", container.is_some()),
            ]
            .into_iter()
            .filter_map(|(flag, set)| set.then_some(flag))
            .collect();
            if !given.is_empty() {
                bail!(
                    "{} {} to ecs/NAME profiles only: {name} runs each flow run as a local process (create ecs/{} for ECS tasks)",
                    given.join(", "),
                    if given.len() == 1 { "applies" } else { "apply" },
                    name.name()
                );
            }
            None
        }
        InfraKind::Ecs => {
            let missing: Vec<&str> = [
                ("--cluster CLUSTER", cluster.is_none()),
                ("--task-definition FAMILY[:REV]", task_definition.is_none()),
                ("--subnet SUBNET", subnets.is_empty()),
            ]
            .into_iter()
            .filter_map(|(flag, unset)| unset.then_some(flag))
            .collect();
            if !missing.is_empty() {
                bail!("{name} needs {}", missing.join(", "));
            }
            Some(EcsTarget {
                cluster: cluster.clone().unwrap_or_default(),
                task_definition: task_definition.clone().unwrap_or_default(),
                container: container.clone().unwrap_or_else(|| "ferry".into()),
                subnets: subnets.clone(),
                security_groups: security_groups.clone(),
                assign_public_ip: *assign_public_ip,
                capacity_providers: capacity_providers
                    .iter()
                    .map(|c| parse_capacity_provider(c))
                    .collect::<Result<_>>()?,
                cpu: *cpu,
                memory: *memory,
            })
        }
    };
    let defaults = InfraSpec::default();
    let spec = InfraSpec {
        ecs,
        launch_lead_seconds: launch_lead
            .map(|d| whole_seconds("--launch-lead", d))
            .transpose()?
            .unwrap_or(defaults.launch_lead_seconds),
        start_timeout_seconds: start_timeout
            .map(|d| whole_seconds("--start-timeout", d))
            .transpose()?
            .unwrap_or(defaults.start_timeout_seconds),
        max_launches: max_launches.unwrap_or(defaults.max_launches),
    };
    Ok((name, spec))
}

fn seconds(s: u64) -> String {
    humantime::format_duration(Duration::from_secs(s)).to_string()
}

fn row(p: &InfraProfile) -> Vec<String> {
    let ecs = p.spec.ecs.as_ref();
    vec![
        p.name.to_string(),
        p.name.kind().as_str().into(),
        ecs.map_or_else(|| "-".into(), |e| e.cluster.clone()),
        ecs.map_or_else(|| "-".into(), |e| e.task_definition.clone()),
        seconds(p.spec.launch_lead_seconds),
        seconds(p.spec.start_timeout_seconds),
        p.spec.max_launches.to_string(),
        output::time(p.updated_at),
    ]
}

const HEADER: [&str; 8] = [
    "NAME",
    "KIND",
    "CLUSTER",
    "TASK DEFINITION",
    "LEAD",
    "START TIMEOUT",
    "MAX LAUNCHES",
    "UPDATED",
];

fn print_profile(p: &InfraProfile, users: &[String]) -> Result<()> {
    println!("name:          {}", p.name);
    println!("kind:          {}", p.name.kind().as_str());
    println!("version:       {}", p.version);
    println!("created:       {}", output::time(p.created_at));
    println!("updated:       {}", output::time(p.updated_at));
    println!("launch lead:   {}", seconds(p.spec.launch_lead_seconds));
    println!("start timeout: {}", seconds(p.spec.start_timeout_seconds));
    println!("max launches:  {}", p.spec.max_launches);
    println!(
        "used by:       {}",
        if users.is_empty() {
            "-".into()
        } else {
            users.join(", ")
        }
    );
    println!("spec:");
    let yaml = serde_yaml_ng::to_string(&p.spec)?;
    for line in yaml.lines() {
        println!("  {line}");
    }
    Ok(())
}

pub async fn run(cmd: InfraCmd) -> Result<()> {
    let client = Client::from_env()?;
    match &cmd {
        InfraCmd::Create { out, .. } => {
            let (name, spec) = spec_from_create(&cmd)?;
            let (_, o): (_, InfraOutcome) = client
                .send_json(Method::PUT, &path_of(&name), &spec)
                .await?;
            if out.json {
                return output::json(&o);
            }
            let p = &o.profile;
            if o.created {
                println!(
                    "Created infrastructure profile {} (version {})",
                    p.name, p.version
                );
            } else if o.changed {
                println!(
                    "Updated infrastructure profile {} (version {})",
                    p.name, p.version
                );
            } else {
                println!(
                    "Infrastructure profile {} is unchanged (version {})",
                    p.name, p.version
                );
            }
        }
        InfraCmd::Ls { out } => {
            let ps: Vec<InfraProfile> = client.get("/infra").await?;
            if out.json {
                return output::json(&ps);
            }
            if ps.is_empty() {
                output::empty("no infrastructure profiles yet: create one with `ferry infra create process/NAME` (or `ecs/NAME`, see its --help)");
                return Ok(());
            }
            output::table(&HEADER, ps.iter().map(row).collect());
        }
        InfraCmd::Inspect { name, out } => {
            let p: InfraProfile = client.get(&path_of(&parse_name(name)?)).await?;
            if out.json {
                return output::json(&p);
            }
            let users: Vec<String> = client
                .get::<Vec<Deployment>>("/deployments")
                .await?
                .into_iter()
                .filter(|d| d.spec.infra_block.as_ref() == Some(&p.name))
                .map(|d| d.id.to_string())
                .collect();
            print_profile(&p, &users)?;
        }
        InfraCmd::Delete { name } => {
            let name = parse_name(name)?;
            client.delete(&path_of(&name)).await?;
            println!("Deleted infrastructure profile {name}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_capacity_provider_takes_an_optional_weight_and_base() {
        let p = parse_capacity_provider("FARGATE_SPOT").unwrap();
        assert_eq!((p.name.as_str(), p.weight, p.base), ("FARGATE_SPOT", 1, 0));
        let p = parse_capacity_provider("FARGATE:2:1").unwrap();
        assert_eq!((p.name.as_str(), p.weight, p.base), ("FARGATE", 2, 1));
        for bad in ["FARGATE:x", "FARGATE:1:y", "FARGATE:1:1:1"] {
            let e = parse_capacity_provider(bad).unwrap_err().to_string();
            assert!(
                e.contains("--capacity-provider") && e.contains("WEIGHT"),
                "{e}"
            );
        }
    }
}
