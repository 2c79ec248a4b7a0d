//! Secrets through the real binaries: `ferry secret set|ls|rm` (the embedded store), secret
//! references in a deployment's env resolved by a real agent into the flow's environment only
//! (the deployment keeps the reference), masked in the run's logs and state message, and a
//! reference that cannot be resolved failing the run naming the variable and the reference.
//! On the AWS backend: an SSM SecureString and a Secrets Manager JSON secret's key, in moto.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_tests::{ferry_bin, write_project, AgentProc, Server};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);

/// `ferry secret set NAME` with `stdin` piped in, on `s`'s FERRY_HOME.
fn secret_set(s: &Server, name: &str, stdin: &str, extra_env: &[(&str, &str)]) -> (bool, String) {
    let mut child = Command::new(ferry_bin())
        .args(["secret", "set", name])
        .env("FERRY_HOME", s.home.path())
        .env("FERRY_LOG", "warn")
        .envs(extra_env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A project whose Python flow writes `$PW` (and `$JPW` when set) to `$OUT`, prints them
/// and `$LIT`, then raises an exception quoting `$PW`.
fn project(s: &Server) -> String {
    let dir = s.path("proj");
    write_project(
        &dir,
        &[(
            "flows/leak.py",
            r#"import os

def main():
    pw = os.environ["PW"]
    jpw = os.environ.get("JPW", "")
    with open(os.environ["OUT"], "w") as f:
        f.write(pw + "|" + jpw)
    print(f"pw is {pw}", flush=True)
    print(f"jpw is {jpw}", flush=True)
    print(f"literal {os.environ.get('LIT', '')}", flush=True)
    raise ValueError(f"bad password {pw}")
"#,
        )],
    );
    dir.to_string_lossy().into_owned()
}

/// Builds and applies deployment `main/NAME` with `env` (KEY=VALUE); returns its $OUT path.
fn deploy(s: &Server, proj: &str, name: &str, env: &[&str]) -> std::path::PathBuf {
    let out = s.path(&format!("{name}.out"));
    let out_env = format!("OUT={}", out.display());
    let manifest = format!("{name}.yaml");
    let mut args = vec![
        "deployment",
        "build",
        "flows/leak.py:main",
        "-n",
        name,
        "--path",
        proj,
        "-o",
        &manifest,
        "-a",
        "--env",
        &out_env,
    ];
    for e in env {
        args.extend(["--env", e]);
    }
    s.ok(&args);
    out
}

/// Runs `main/NAME` once and waits for it to fail; returns the run as stored.
fn run_to_failure(s: &Server, name: &str) -> Value {
    let id = s.create_run(&format!("main/{name}"), serde_json::json!({}));
    s.wait_state(&id, "failed", LONG)
}

fn logs(s: &Server, run: &Value) -> String {
    s.ok(&["flow-run", "logs", run["id"].as_str().unwrap()])
}

fn agent(s: &Server, via: &str) -> AgentProc {
    s.agent_via(Some(via), &[])
}

#[test]
fn secret_set_ls_rm_store_values_owner_only_and_list_names_only() {
    let s = Server::start();
    let (ok, out) = secret_set(&s, "db_password", "hunter2-embedded\n", &[]);
    assert!(ok, "{out}");
    assert!(out.contains("secret:db_password"), "{out}");
    let dir = s.home.path().join("secrets");
    let file = dir.join("db_password");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&file), 0o600);
    // One trailing newline of stdin is dropped.
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "hunter2-embedded");
    assert!(secret_set(&s, "api.key", "k", &[]).0);

    let ls = s.ok(&["secret", "ls"]);
    assert_eq!(ls, "api.key\ndb_password\n");
    assert!(!ls.contains("hunter2"));
    assert_eq!(
        s.json(&["secret", "ls"]),
        serde_json::json!(["api.key", "db_password"])
    );

    // A bad name and an empty value are refused, and nothing is written.
    let (ok, out) = secret_set(&s, "../escape", "v", &[]);
    assert!(!ok && out.contains("a secret name has"), "{out}");
    let (ok, out) = secret_set(&s, "empty", "", &[]);
    assert!(!ok && out.contains("the value is empty"), "{out}");
    assert_eq!(s.ok(&["secret", "ls"]), "api.key\ndb_password\n");

    // On the AWS backend the embedded store is refused, pointing to SSM.
    let (ok, out) = secret_set(&s, "x", "v", &[("FERRY_BACKEND", "aws")]);
    assert!(!ok && out.contains("ssm:/NAME"), "{out}");

    s.ok(&["secret", "rm", "api.key"]);
    let err = s.fails(&["secret", "rm", "api.key"]);
    assert!(err.contains("no secret named \"api.key\""), "{err}");
    assert_eq!(s.ok(&["secret", "ls"]), "db_password\n");
}

#[test]
fn a_malformed_reference_is_refused_at_build_naming_the_variable_and_nothing_is_written() {
    let s = Server::start();
    let proj = project(&s);
    for (env, needle) in [
        ("PW=ssm:", "needs an SSM parameter name"),
        ("PW=secretsmanager:db#", "the JSON key after '#' is empty"),
        ("PW=secret:../x", "a secret name has"),
    ] {
        let err = s.fails(&[
            "deployment",
            "build",
            "flows/leak.py:main",
            "-n",
            "bad",
            "--path",
            &proj,
            "-o",
            "bad.yaml",
            "-a",
            "--env",
            env,
        ]);
        // The flag, and the manifest's field.
        assert!(
            err.contains("--env: ") && err.contains("(env.PW in the manifest)"),
            "{env}: {err}"
        );
        assert!(err.contains(needle), "{env}: {err}");
        assert!(
            err.contains("write \\"),
            "{env}: the escape is named: {err}"
        );
    }
    assert!(!s.path("bad.yaml").exists());
    assert_eq!(s.json(&["deployment", "ls"]), serde_json::json!([]));
}

#[test]
fn an_embedded_secret_reaches_the_flow_masked_in_logs_and_state_message() {
    an_embedded_secret_reaches_the_flow_masked_via("api");
}

#[test]
fn an_embedded_secret_reaches_the_flow_masked_in_logs_and_state_message_direct() {
    an_embedded_secret_reaches_the_flow_masked_via("direct");
}

fn an_embedded_secret_reaches_the_flow_masked_via(via: &str) {
    let s = Server::start();
    let proj = project(&s);
    assert!(secret_set(&s, "db_password", "hunter2-embedded", &[]).0);
    let out = deploy(
        &s,
        &proj,
        "leak",
        &["PW=secret:db_password", "LIT=\\ssm:not-a-reference"],
    );
    // The deployment keeps the reference, never the value.
    let d = s.json(&["deployment", "inspect", "main/leak"]);
    assert_eq!(d["spec"]["env"]["PW"], "secret:db_password", "{d}");
    assert!(!d.to_string().contains("hunter2"), "{d}");

    let _agent = agent(&s, via);
    let run = run_to_failure(&s, "leak");
    // The flow got the value...
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "hunter2-embedded|");
    // ...and nobody else sees it.
    let message = run["state_message"].as_str().unwrap();
    assert_eq!(message, "ValueError: bad password *** (exit code 1)");
    let logs = logs(&s, &run);
    assert!(logs.contains("stdout | pw is ***"), "{logs}");
    assert!(
        logs.contains("stdout | literal ssm:not-a-reference"),
        "{logs}"
    );
    assert!(
        logs.contains("stderr | ValueError: bad password ***"),
        "{logs}"
    );
    assert!(!logs.contains("hunter2"), "{logs}");
}

#[test]
fn a_missing_or_unreadable_embedded_secret_fails_the_run_naming_variable_and_reference() {
    let s = Server::start();
    let proj = project(&s);
    let out = deploy(&s, &proj, "missing", &["PW=secret:nope"]);
    let _agent = agent(&s, "api");
    let run = run_to_failure(&s, "missing");
    assert_eq!(
        run["state_message"], "cannot resolve env.PW = secret:nope: not found",
        "{run}"
    );
    assert!(!out.exists(), "the flow must not have started");
    assert!(logs(&s, &run).contains("cannot resolve env.PW = secret:nope"));

    // A secret file its group may read is refused, naming the chmod.
    assert!(secret_set(&s, "loose", "hunter2-loose", &[]).0);
    let file = s.home.path().join("secrets").join("loose");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = deploy(&s, &proj, "loose", &["PW=secret:loose"]);
    let run = run_to_failure(&s, "loose");
    let message = run["state_message"].as_str().unwrap();
    assert!(
        message.starts_with("cannot resolve env.PW = secret:loose: ")
            && message.contains(&format!("chmod 600 {}", file.display())),
        "{message}"
    );
    assert!(!message.contains("hunter2"), "{message}");
    assert!(!out.exists(), "the flow must not have started");
}

/// An SSM SecureString and a Secrets Manager JSON secret in moto, named after `tag`.
fn put_aws_secrets(tag: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let sdk = ferry_aws::config::sdk_config().await;
        aws_sdk_ssm::Client::new(&sdk)
            .put_parameter()
            .name(format!("/ferry-test/{tag}/db"))
            .value("hunter2-ssm")
            .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
            .send()
            .await
            .expect("put_parameter in moto");
        aws_sdk_secretsmanager::Client::new(&sdk)
            .create_secret()
            .name(format!("ferry-test/{tag}/app"))
            .secret_string(r#"{"user":"app","password":"hunter2-json"}"#)
            .send()
            .await
            .expect("create_secret in moto");
    });
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn ssm_and_secretsmanager_references_resolve_masked_on_aws() {
    ssm_and_secretsmanager_references_resolve_masked_on_aws_via("direct");
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn ssm_and_secretsmanager_references_resolve_masked_on_aws_via_api() {
    ssm_and_secretsmanager_references_resolve_masked_on_aws_via("api");
}

fn ssm_and_secretsmanager_references_resolve_masked_on_aws_via(via: &str) {
    let s = Server::start_aws();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    put_aws_secrets(&tag);
    let proj = project(&s);
    let pw = format!("PW=ssm:/ferry-test/{tag}/db");
    let jpw = format!("JPW=secretsmanager:ferry-test/{tag}/app#password");
    let out = deploy(&s, &proj, "aws", &[&pw, &jpw]);
    let d = s.json(&["deployment", "inspect", "main/aws"]);
    assert_eq!(
        d["spec"]["env"]["JPW"],
        format!("secretsmanager:ferry-test/{tag}/app#password")
    );
    let _agent = agent(&s, via);

    let run = run_to_failure(&s, "aws");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        "hunter2-ssm|hunter2-json"
    );
    assert_eq!(
        run["state_message"], "ValueError: bad password *** (exit code 1)",
        "{run}"
    );
    let logs = logs(&s, &run);
    assert!(logs.contains("stdout | pw is ***"), "{logs}");
    assert!(logs.contains("stdout | jpw is ***"), "{logs}");
    assert!(!logs.contains("hunter2"), "{logs}");

    // A missing parameter, a missing JSON key and a `secret:` reference fail the run, naming
    // the variable and the reference; the flow never starts.
    let missing = format!("PW=ssm:/ferry-test/{tag}/nope");
    let no_key = format!("PW=secretsmanager:ferry-test/{tag}/app#host");
    let no_secret = format!("PW=secretsmanager:ferry-test/{tag}/none");
    for (name, env, expected) in [
        (
            "nossm",
            missing.as_str(),
            format!("cannot resolve env.PW = ssm:/ferry-test/{tag}/nope: not found"),
        ),
        (
            "nokey",
            no_key.as_str(),
            format!("cannot resolve env.PW = secretsmanager:ferry-test/{tag}/app#host: its JSON object has no key \"host\" (keys: password, user)"),
        ),
        (
            "nosm",
            no_secret.as_str(),
            format!("cannot resolve env.PW = secretsmanager:ferry-test/{tag}/none: not found"),
        ),
        (
            "embedded",
            "PW=secret:db_password",
            "cannot resolve env.PW = secret:db_password: secret: references are the embedded store's (`ferry secret set`); on the AWS backend use ssm:/path or secretsmanager:NAME[#key]".to_owned(),
        ),
    ] {
        let out = deploy(&s, &proj, name, &[env]);
        let run = run_to_failure(&s, name);
        assert_eq!(run["state_message"], expected.as_str(), "{name}: {run}");
        assert!(!out.exists(), "{name}: the flow must not have started");
    }
}
