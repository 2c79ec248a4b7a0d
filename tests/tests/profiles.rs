//! Infrastructure profiles through the real `ferry` binary (issue 9, item 1): `ferry infra
//! create | ls | inspect | delete`, and deployments naming one with `-ib` and `--override`.

use ferry_tests::{write_project, Server};
use serde_json::{json, Value};

fn deployments(s: &Server) -> Vec<Value> {
    s.json(&["deployment", "ls"]).as_array().unwrap().clone()
}

fn profiles(s: &Server) -> Vec<Value> {
    s.json(&["infra", "ls"]).as_array().unwrap().clone()
}

/// A server with a one-script project in `proj/`.
fn server_on(aws: bool) -> Server {
    let s = Server::start_on(aws);
    write_project(s.work.path(), &[("proj/run.sh", "#!/bin/sh\necho hi\n")]);
    s
}

/// `ferry deployment build run.sh -n daily --path proj EXTRA...`.
fn build<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "deployment",
        "build",
        "run.sh",
        "-n",
        "daily",
        "--path",
        "proj",
    ];
    args.extend_from_slice(extra);
    args
}

#[test]
fn a_process_profile_is_created_listed_inspected_updated_and_deleted() {
    let s = server_on(false);
    let out = s.ok(&[
        "infra",
        "create",
        "process/local",
        "--launch-lead",
        "5s",
        "--start-timeout",
        "2m",
        "--max-launches",
        "2",
    ]);
    assert_eq!(
        out.trim(),
        "Created infrastructure profile process/local (version 1)"
    );
    let out = s.ok(&[
        "infra",
        "create",
        "process/local",
        "--launch-lead",
        "5s",
        "--start-timeout",
        "2m",
        "--max-launches",
        "2",
    ]);
    assert_eq!(
        out.trim(),
        "Infrastructure profile process/local is unchanged (version 1)"
    );

    let table = s.ok(&["infra", "ls"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "KIND",
            "CLUSTER",
            "TASK DEFINITION",
            "LEAD",
            "START TIMEOUT",
            "MAX LAUNCHES",
            "UPDATED"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        row[..7],
        ["process/local", "process", "-", "-", "5s", "2m", "2"],
        "{table}"
    );
    assert_eq!(lines.next(), None, "{table}");

    let listed = profiles(&s);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "process/local");
    assert_eq!(
        listed[0]["spec"],
        json!({"launch_lead_seconds": 5, "start_timeout_seconds": 120, "max_launches": 2})
    );

    let shown = s.ok(&["infra", "inspect", "process/local"]);
    for line in [
        "name:          process/local",
        "kind:          process",
        "version:       1",
        "launch lead:   5s",
        "start timeout: 2m",
        "max launches:  2",
        "used by:       -",
        "  launch_lead_seconds: 5",
    ] {
        assert!(shown.contains(line), "{line:?} missing from:\n{shown}");
    }
    let shown = s.json(&["infra", "inspect", "process/local"]);
    assert_eq!(shown, listed[0]);

    // Create again with other settings: the profile is replaced whole (defaults for the rest).
    let out = s.ok(&["infra", "create", "process/local", "--max-launches", "4"]);
    assert_eq!(
        out.trim(),
        "Updated infrastructure profile process/local (version 2)"
    );
    let shown = s.json(&["infra", "inspect", "process/local"]);
    assert_eq!(shown["version"], 2);
    assert_eq!(
        shown["spec"],
        json!({"launch_lead_seconds": 90, "start_timeout_seconds": 300, "max_launches": 4})
    );

    let out = s.ok(&["infra", "delete", "process/local"]);
    assert_eq!(out.trim(), "Deleted infrastructure profile process/local");
    assert!(profiles(&s).is_empty());
    let err = s.fails(&["infra", "inspect", "process/local"]);
    assert!(
        err.contains("process/local") && err.contains("not found"),
        "{err}"
    );
    let err = s.fails(&["infra", "delete", "process/local"]);
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn an_ecs_profile_on_the_embedded_backend_is_refused_naming_the_aws_backend_and_nothing_is_written()
{
    let s = server_on(false);
    let err = s.fails(&[
        "infra",
        "create",
        "ecs/prod",
        "--cluster",
        "ferry",
        "--task-definition",
        "ferry-agent:3",
        "--subnet",
        "subnet-a,subnet-b",
        "--security-group",
        "sg-1",
    ]);
    assert!(err.contains("ecs/prod"), "{err}");
    assert!(err.contains("S3"), "{err}");
    assert!(err.contains("FERRY_BACKEND=aws"), "{err}");
    assert!(profiles(&s).is_empty());
}

#[test]
fn bad_profile_flags_are_refused_naming_the_flag_and_nothing_is_written() {
    let s = server_on(false);
    let cases: [(&[&str], &[&str]); 6] = [
        (
            &["process/local", "--cluster", "ferry", "--cpu", "1024"],
            &["--cluster, --cpu apply to ecs/NAME profiles only"],
        ),
        (
            &["process/local", "--assign-public-ip"],
            &["--assign-public-ip applies to ecs/NAME profiles only"],
        ),
        (
            &["ecs/prod", "--cluster", "ferry"],
            &["ecs/prod needs", "--task-definition", "--subnet"],
        ),
        (
            &[
                "ecs/prod",
                "--cluster",
                "c",
                "--task-definition",
                "t",
                "--subnet",
                "s",
                "--capacity-provider",
                "FARGATE_SPOT:lots",
            ],
            &[
                "--capacity-provider",
                "FARGATE|FARGATE_SPOT[:WEIGHT[:BASE]]",
            ],
        ),
        (&["k8s/prod"], &["ecs/NAME", "process/NAME"]),
        (
            &["process/local", "--launch-lead", "1500ms"],
            &["--launch-lead", "whole seconds"],
        ),
    ];
    for (args, says) in cases {
        let mut all = vec!["infra", "create"];
        all.extend_from_slice(args);
        let err = s.fails(&all);
        for part in says {
            assert!(err.contains(part), "{args:?}: {part:?} missing from {err}");
        }
    }
    // The server's own checks name the field and the range.
    let err = s.fails(&["infra", "create", "process/local", "--max-launches", "11"]);
    assert!(
        err.contains("max_launches") && err.contains("1-10"),
        "{err}"
    );
    assert!(profiles(&s).is_empty());
}

#[test]
fn a_deployment_on_a_missing_profile_is_refused_naming_infra_block_and_the_fix() {
    let s = server_on(false);
    let err = s.fails(&build(&["-ib", "process/missing", "-a"]));
    assert!(err.contains("infra_block"), "{err}");
    assert!(err.contains("ferry infra create process/missing"), "{err}");
    assert!(deployments(&s).is_empty());
}

#[test]
fn an_unknown_override_key_is_refused_naming_it_and_the_accepted_keys() {
    let s = server_on(false);
    s.ok(&["infra", "create", "process/local"]);
    let err = s.fails(&build(&[
        "-ib",
        "process/local",
        "--override",
        "colour=blue",
        "-a",
    ]));
    assert!(err.contains("colour"), "{err}");
    assert!(err.contains("cpu, memory, image or env.KEY"), "{err}");
    assert!(deployments(&s).is_empty());
}

#[test]
fn a_cpu_override_on_a_process_profile_is_refused_naming_infra_overrides_cpu() {
    let s = server_on(false);
    s.ok(&["infra", "create", "process/local"]);
    let err = s.fails(&build(&[
        "-ib",
        "process/local",
        "--override",
        "cpu=1024",
        "-a",
    ]));
    assert!(err.contains("infra_overrides.cpu"), "{err}");
    assert!(err.contains("ecs/NAME"), "{err}");
    assert!(deployments(&s).is_empty());
}

#[test]
fn a_profile_used_by_a_deployment_is_not_deleted_and_the_error_names_the_deployment() {
    let s = server_on(false);
    s.ok(&["infra", "create", "process/local"]);
    s.ok(&build(&["-ib", "process/local", "-a"]));
    let err = s.fails(&["infra", "delete", "process/local"]);
    assert!(err.contains("run/daily"), "{err}");
    assert_eq!(profiles(&s).len(), 1, "the profile is still there");
    let shown = s.ok(&["infra", "inspect", "process/local"]);
    assert!(shown.contains("used by:       run/daily"), "{shown}");

    // Once the deployment has moved off it, the profile can go.
    s.ok(&build(&["-a"]));
    s.ok(&["infra", "delete", "process/local"]);
    assert!(profiles(&s).is_empty());
}

#[test]
fn a_manifest_round_trips_infra_block_and_infra_overrides() {
    let s = server_on(false);
    s.ok(&["infra", "create", "process/local"]);
    s.ok(&build(&[
        "-ib",
        "process/local",
        "--override",
        "env.MODE=fast",
        "--override",
        "env.LEVEL=3",
        "-o",
        "x.yaml",
    ]));
    let manifest = std::fs::read_to_string(s.path("x.yaml")).unwrap();
    assert!(
        manifest.contains("infra_block: process/local"),
        "{manifest}"
    );
    assert!(manifest.contains("env.MODE: fast"), "{manifest}");
    assert!(
        deployments(&s).is_empty(),
        "build without -a applies nothing"
    );

    let out = s.ok(&["deployment", "apply", "x.yaml"]);
    assert!(out.contains("Created deployment run/daily"), "{out}");
    let d = s.json(&["deployment", "inspect", "run/daily"]);
    assert_eq!(d["spec"]["infra_block"], "process/local");
    assert_eq!(
        d["spec"]["infra_overrides"],
        json!({"env.LEVEL": "3", "env.MODE": "fast"})
    );
    let out = s.ok(&["deployment", "apply", "x.yaml"]);
    assert!(out.contains("unchanged"), "{out}");

    let shown = s.ok(&["deployment", "inspect", "run/daily"]);
    assert!(shown.contains("infra block:     process/local"), "{shown}");
    assert!(
        shown.contains("overrides:       env.LEVEL=3, env.MODE=fast"),
        "{shown}"
    );
    let table = s.ok(&["deployment", "ls"]);
    assert!(table.lines().next().unwrap().contains("INFRA"), "{table}");
    assert!(table.contains("process/local"), "{table}");

    // A manifest written by hand with a bad key is refused naming it.
    std::fs::write(
        s.path("bad.yaml"),
        manifest.replace("env.MODE: fast", "gpu: 1"),
    )
    .unwrap();
    let err = s.fails(&["deployment", "apply", "bad.yaml"]);
    assert!(err.contains("\"gpu\" is not an override"), "{err}");
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn an_ecs_profile_is_created_listed_and_used_with_overrides_on_aws() {
    ferry_tests::require_emulators();
    let s = server_on(true);
    let out = s.ok(&[
        "infra",
        "create",
        "ecs/prod",
        "--cluster",
        "ferry",
        "--task-definition",
        "ferry-agent:3",
        "--subnet",
        "subnet-a",
        "--subnet",
        "subnet-b",
        "--security-group",
        "sg-1,sg-2",
        "--capacity-provider",
        "FARGATE_SPOT:3,FARGATE:1:1",
        "--cpu",
        "512",
        "--memory",
        "1024",
        "--launch-lead",
        "60s",
    ]);
    assert_eq!(
        out.trim(),
        "Created infrastructure profile ecs/prod (version 1)"
    );
    let listed = profiles(&s);
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0]["spec"]["ecs"],
        json!({
            "cluster": "ferry", "task_definition": "ferry-agent:3", "container": "ferry",
            "subnets": ["subnet-a", "subnet-b"], "security_groups": ["sg-1", "sg-2"],
            "assign_public_ip": false,
            "capacity_providers": [{"name": "FARGATE_SPOT", "weight": 3, "base": 0},
                                   {"name": "FARGATE", "weight": 1, "base": 1}],
            "cpu": 512, "memory": 1024
        })
    );
    assert_eq!(listed[0]["spec"]["launch_lead_seconds"], 60);
    let table = s.ok(&["infra", "ls"]);
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(
        row[..5],
        ["ecs/prod", "ecs", "ferry", "ferry-agent:3", "1m"],
        "{table}"
    );

    let out = s.ok(&build(&[
        "-ib",
        "ecs/prod",
        "--override",
        "cpu=1024",
        "--override",
        "memory=4096",
        "-a",
    ]));
    assert!(out.contains("Created deployment run/daily"), "{out}");
    let d = s.json(&["deployment", "inspect", "run/daily"]);
    assert_eq!(d["spec"]["infra_block"], "ecs/prod");
    assert_eq!(
        d["spec"]["infra_overrides"],
        json!({"cpu": 1024, "memory": 4096})
    );
    let shown = s.ok(&["infra", "inspect", "ecs/prod"]);
    assert!(shown.contains("used by:       run/daily"), "{shown}");

    // 8 GiB does not fit 256 CPU units: refused naming the field and the sizes that fit.
    s.ok(&[
        "infra",
        "create",
        "ecs/small",
        "--cluster",
        "ferry",
        "--task-definition",
        "ferry-agent",
        "--subnet",
        "subnet-a",
        "--cpu",
        "256",
    ]);
    let err = s.fails(&[
        "deployment",
        "build",
        "run.sh",
        "-n",
        "small",
        "--path",
        "proj",
        "-ib",
        "ecs/small",
        "--override",
        "memory=8192",
        "-a",
    ]);
    assert!(err.contains("infra_overrides.memory"), "{err}");
    assert!(err.contains("512-2048"), "{err}");
    let names: Vec<Value> = deployments(&s).iter().map(|d| d["id"].clone()).collect();
    assert_eq!(names, [json!("run/daily")]);

    let err = s.fails(&["infra", "delete", "ecs/prod"]);
    assert!(err.contains("run/daily"), "{err}");
    s.ok(&["infra", "delete", "ecs/small"]);
    assert_eq!(profiles(&s).len(), 1);
}
