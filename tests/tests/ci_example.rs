//! examples/ci/github-actions.yml cannot rot: its shape (push to main, OIDC role credentials,
//! the API with IAM auth) is checked, and its `run:` steps that call `ferry` are run as GitHub
//! Actions runs them (bash -eo pipefail, the workflow's, job's and step's env, the step's
//! working directory in a checkout of the repository) with the real binary against a local
//! `ferry server`, which takes SigV4-signed requests without checking them. The deployments
//! must then exist with version = GITHUB_SHA, and a second push moves them to its SHA.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use ferry_tests::{ferry_bin, Server};
use serde_yaml_ng::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn workflow() -> Value {
    let path = repo().join("examples/ci/github-actions.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A mapping's string values (an `env:` block), `${{ vars.NAME }}` replaced from `vars`;
/// any other expression fails the test (the runner would substitute something the test
/// does not know).
fn env_of(block: &Value, vars: &BTreeMap<&str, String>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(map) = block.as_mapping() else {
        return out;
    };
    for (k, v) in map {
        let k = k.as_str().unwrap().to_owned();
        let v = match v {
            Value::String(s) => s.clone(),
            Value::Bool(b) => b.to_string(),
            Value::Number(n) => n.to_string(),
            other => panic!("env {k}: {other:?}"),
        };
        out.insert(k, substitute(&v, vars));
    }
    out
}

fn substitute(s: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(at) = rest.find("${{") {
        out.push_str(&rest[..at]);
        let end = rest[at..].find("}}").expect("unclosed ${{") + at;
        let expr = rest[at + 3..end].trim();
        let name = expr
            .strip_prefix("vars.")
            .unwrap_or_else(|| panic!("the test knows only vars.*, not {expr}"));
        out.push_str(
            vars.get(name)
                .unwrap_or_else(|| panic!("unknown variable {name}")),
        );
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The steps of the `deploy` job.
fn steps(wf: &Value) -> Vec<Value> {
    wf["jobs"]["deploy"]["steps"]
        .as_sequence()
        .expect("jobs.deploy.steps")
        .clone()
}

#[test]
fn the_workflow_deploys_on_push_to_main_with_oidc_role_credentials_and_the_iam_api() {
    let wf = workflow();
    // serde_yaml_ng reads the key `on` as a string (YAML 1.2), as GitHub does.
    assert_eq!(
        wf["on"]["push"]["branches"],
        serde_yaml_ng::to_value(["main"]).unwrap()
    );
    assert_eq!(wf["permissions"]["id-token"], "write");
    assert_eq!(wf["env"]["FERRY_API_AUTH"], "iam");
    assert_eq!(wf["env"]["FERRY_API_URL"], "${{ vars.FERRY_API_URL }}");
    let steps = steps(&wf);
    let uses: Vec<&str> = steps.iter().filter_map(|s| s["uses"].as_str()).collect();
    assert!(uses.contains(&"actions/checkout@v4"), "{uses:?}");
    let creds = steps
        .iter()
        .position(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("aws-actions/configure-aws-credentials@"))
        })
        .expect("a configure-aws-credentials step");
    assert!(steps[creds]["with"]["role-to-assume"].as_str().is_some());
    assert!(steps[creds]["with"]["aws-region"].as_str().is_some());
    // ferry is built before it is used, and the role is assumed before the deploy.
    let build = steps
        .iter()
        .position(|s| {
            s["run"]
                .as_str()
                .is_some_and(|r| r.contains("cargo build") && r.contains("GITHUB_PATH"))
        })
        .expect("a step that builds ferry and puts it on the PATH");
    let deploy = steps
        .iter()
        .position(|s| {
            s["run"]
                .as_str()
                .is_some_and(|r| r.contains("ferry deployment build"))
        })
        .expect("a deploy step");
    assert!(build < deploy && creds < deploy);
    let run = steps[deploy]["run"].as_str().unwrap();
    assert_eq!(
        run.matches("-v \"$GITHUB_SHA\"").count(),
        run.matches("ferry deployment build").count(),
        "every deployment is stamped with the commit: {run}"
    );
}

/// Runs each `run:` step that calls `ferry` as the runner would, in `checkout` (a copy of the
/// repository's examples), with GITHUB_SHA = `sha`.
fn run_ferry_steps(s: &Server, checkout: &Path, runner_temp: &Path, sha: &str) {
    let wf = workflow();
    let vars = BTreeMap::from([
        ("FERRY_API_URL", s.url.clone()),
        (
            "FERRY_DEPLOY_ROLE_ARN",
            "arn:aws:iam::123456789012:role/ferry-deployer".to_owned(),
        ),
        ("AWS_REGION", "eu-central-1".to_owned()),
    ]);
    let workflow_env = env_of(&wf["env"], &vars);
    let job_env = env_of(&wf["jobs"]["deploy"]["env"], &vars);
    let bin_dir = ferry_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut ran = 0;
    for step in steps(&wf) {
        let Some(script) = step["run"].as_str() else {
            continue;
        };
        if !script.lines().any(|l| l.trim_start().starts_with("ferry ")) {
            continue; // building ferry: the test brings the binary
        }
        let dir = match step["working-directory"].as_str() {
            Some(d) => checkout.join(d),
            None => checkout.to_path_buf(),
        };
        let out = Command::new("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
            .current_dir(&dir)
            .env_clear()
            .env("PATH", &path)
            .env("HOME", runner_temp)
            .env("CI", "true")
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_SHA", sha)
            .env("GITHUB_WORKSPACE", checkout)
            .env("RUNNER_TEMP", runner_temp)
            // What aws-actions/configure-aws-credentials exports after assuming the role.
            .env("AWS_ACCESS_KEY_ID", "ASIAEXAMPLEEXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "example-secret-key")
            .env("AWS_SESSION_TOKEN", "example-session-token")
            .env("AWS_REGION", &vars["AWS_REGION"])
            .env("AWS_DEFAULT_REGION", &vars["AWS_REGION"])
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("FERRY_LOG", "warn")
            .envs(&workflow_env)
            .envs(&job_env)
            .envs(env_of(&step["env"], &vars))
            .output()
            .expect("running bash");
        assert!(
            out.status.success(),
            "step {:?} failed ({}):\n{script}\nstdout: {}\nstderr: {}",
            step["name"].as_str().unwrap_or("(unnamed)"),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    assert!(ran >= 1, "no `run:` step calls ferry");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn the_workflows_ferry_steps_apply_every_deployment_at_the_pushed_commit() {
    let s = Server::start();
    // The checkout: the repository's examples, as actions/checkout leaves them.
    let checkout = s.path("checkout");
    copy_dir(&repo().join("examples"), &checkout.join("examples"));
    let runner_temp = s.path("runner-temp");
    std::fs::create_dir_all(&runner_temp).unwrap();

    let first = "0123456789abcdef0123456789abcdef01234567";
    run_ferry_steps(&s, &checkout, &runner_temp, first);
    let deployments = s.json(&["deployment", "ls"]);
    let mut ids: Vec<&str> = deployments
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["backup/nightly", "hello/hourly"], "{deployments}");
    for id in &ids {
        let d = s.json(&["deployment", "inspect", id]);
        assert_eq!(d["spec"]["version"], first, "{id}: {d}");
        assert_eq!(d["revision"], 1, "{id}");
        assert!(
            d["spec"]["bundle"]["sha256"].as_str().is_some(),
            "{id}: {d}"
        );
    }

    // The next push: the same deployments, now at its commit.
    let second = "fedcba9876543210fedcba9876543210fedcba98";
    run_ferry_steps(&s, &checkout, &runner_temp, second);
    assert_eq!(
        s.json(&["deployment", "ls"]).as_array().unwrap().len(),
        2,
        "a push adds no deployment"
    );
    for id in &ids {
        let d = s.json(&["deployment", "inspect", id]);
        assert_eq!(d["spec"]["version"], second, "{id}: {d}");
        assert_eq!(d["revision"], 2, "{id}");
    }
    // A deployed flow runs as deployed.
    let id = s
        .ok(&["deployment", "run", "backup/nightly"])
        .trim()
        .to_owned();
    let _agent = s.agent(&["-q", "default"]);
    s.wait_state(&id, "completed", std::time::Duration::from_secs(30));
}
