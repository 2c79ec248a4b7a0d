//! `ferry agent install KIND` through the real binary: each kind's output is a valid file of
//! its format (systemd-analyze verify when the machine has it, a parse otherwise; Python's
//! configparser for supervisor, plistlib for launchd) that runs this very binary with the
//! queues, options and Ferry settings it was given and never a secret's value; and what it
//! runs, started as the service manager would start it, is an agent that reads its token from
//! the env file, serves the queues through the API and stops cleanly on SIGTERM.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use ferry_tests::{ferry_bin, process_gone, AgentProc, Server};
use serde_json::Value;

const TOKEN: &str = "tok-9f3c2a71-install-test";
const AWS_SECRET: &str = "aws-secret-5be1d0c4";

/// Reads a service file of KIND from stdin and prints what the service manager runs, as
/// JSON: argv, env, cwd, env files it loads itself, stop timeout (seconds) and the kind's own
/// settings. Each parse fails loudly on a malformed file.
const EXTRACT: &str = r##"
import configparser, json, plistlib, shlex, sys
kind, text = sys.argv[1], sys.stdin.read()
if kind == "systemd":
    sections, sec = {}, None
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("["):
            if not s.endswith("]"):
                sys.exit(f"line {n}: bad section header {s!r}")
            sec = s[1:-1]
            sections.setdefault(sec, {})
            continue
        k, sep, v = s.partition("=")
        if not sep or sec is None:
            sys.exit(f"line {n}: not KEY=VALUE in a section: {s!r}")
        sections[sec].setdefault(k.strip(), []).append(v.strip())
    svc = sections["Service"]
    unesc = lambda v: v.replace("%%", "%")
    env = {}
    for e in svc.get("Environment", []):
        for kv in shlex.split(e):
            k, _, v = kv.partition("=")
            env[k] = unesc(v)
    out = {
        "argv": [unesc(a).replace("$$", "$") for a in shlex.split(svc["ExecStart"][0])],
        "env": env,
        "cwd": unesc(svc["WorkingDirectory"][0]),
        "env_files": [unesc(f).lstrip("-") for f in svc.get("EnvironmentFile", [])],
        "stop": int(svc["TimeoutStopSec"][0].rstrip("s")),
        "sections": sorted(sections),
        "settings": {k: v[0] for k, v in svc.items() if len(v) == 1},
    }
elif kind == "supervisor":
    c = configparser.RawConfigParser()
    c.read_string(text)
    p = c["program:ferry-agent"]
    unesc = lambda v: v.replace("%%", "%")
    # supervisor's own reading of environment= (supervisor.datatypes.dict_of_key_value_pairs)
    lexer = shlex.shlex(unesc(p["environment"]))
    lexer.wordchars += "/.+-():"
    tokens, env, i = list(lexer), {}, 0
    while i < len(tokens):
        k, eq, v = tokens[i:i + 3]
        if eq != "=":
            sys.exit(f"environment=: not KEY=VALUE at {tokens[i:i + 3]}")
        env[k] = v.strip("'\"")
        i += 4
    out = {
        "argv": shlex.split(unesc(p["command"])),
        "env": env,
        "cwd": unesc(p["directory"]),
        "env_files": [],
        "stop": int(p["stopwaitsecs"]),
        "sections": c.sections(),
        "settings": dict(p),
    }
elif kind == "launchd":
    d = plistlib.loads(text.encode())
    out = {
        "argv": d["ProgramArguments"],
        "env": d["EnvironmentVariables"],
        "cwd": d["WorkingDirectory"],
        "env_files": [],
        "stop": d["ExitTimeOut"],
        "sections": [d["Label"]],
        "settings": {k: v for k, v in d.items() if isinstance(v, (str, int, bool, dict))},
    }
print(json.dumps(out))
"##;

/// `ferry agent install ARGS` in `dir` with this environment (and nothing else of the test's
/// but PATH and HOME).
fn install(dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(ferry_bin());
    cmd.env_clear()
        .args(["agent", "install"])
        .args(args)
        .current_dir(dir)
        .envs(
            ["PATH", "HOME"]
                .iter()
                .filter_map(|k| std::env::var(k).ok().map(|v| (*k, v))),
        )
        .envs(env.iter().copied());
    cmd.output().expect("running ferry agent install")
}

fn text(b: &[u8]) -> String {
    String::from_utf8(b.to_vec()).unwrap()
}

/// What the service of `kind` runs, read back from its file by [`EXTRACT`].
fn extract(kind: &str, file: &str) -> Value {
    let mut child = Command::new("python3")
        .args(["-c", EXTRACT, kind])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 is needed to read the service file");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(file.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the {kind} file does not parse: {}\n{file}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `systemd-analyze verify` on the unit, when the machine has it: no complaint about the unit.
/// Returns whether it ran.
fn systemd_verify(unit: &str) -> bool {
    let has = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has {
        return false;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry-agent.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let err = text(&out.stderr);
    let about_unit: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("ferry-agent.service"))
        .collect();
    assert!(
        out.status.success() && about_unit.is_empty(),
        "systemd-analyze verify: {err}\n{unit}"
    );
    true
}

fn canonical(p: &Path) -> PathBuf {
    p.canonicalize().unwrap()
}

/// Prints KIND's file for queues `prod` and `etl` against a token-protected server, checks
/// what it says and that it leaks no secret, then runs what it runs and checks the agent.
fn service_runs_the_agent_it_describes(kind: &str) {
    let s = Server::start_with(&["--tick-interval", "200ms"], &[("FERRY_API_TOKEN", TOKEN)]);
    s.ok(&["work-queue", "create", "prod"]);
    s.ok(&["work-queue", "create", "etl"]);
    let name = format!("installed-{kind}");
    let env_file = s.path("secrets/agent.env");
    let home = s.home.path().to_str().unwrap().to_owned();
    let out = install(
        s.work.path(),
        &[
            ("FERRY_HOME", home.as_str()),
            ("FERRY_API_URL", s.url.as_str()),
            ("FERRY_API_TOKEN", TOKEN),
            ("AWS_REGION", "eu-central-1"),
            ("AWS_SECRET_ACCESS_KEY", AWS_SECRET),
            ("FERRY_LOG", "warn"),
            ("USER", "ferry-svc"),
        ],
        &[
            kind,
            "-q",
            "prod",
            "-q",
            "etl",
            "--limit",
            "3",
            "--name",
            &name,
            "--poll-interval",
            "0.2",
            "--kill-grace",
            "2",
            "--shutdown-grace",
            "5",
            "--env-file",
            env_file.to_str().unwrap(),
        ],
    );
    let (file, notes) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{notes}");

    // No secret's value anywhere; the notes name the secrets and where they go.
    for secret in [TOKEN, AWS_SECRET] {
        assert!(
            !file.contains(secret) && !notes.contains(secret),
            "a secret leaked:\n{file}\n{notes}"
        );
    }
    for named in [
        "FERRY_API_TOKEN",
        "AWS_SECRET_ACCESS_KEY",
        env_file.to_str().unwrap(),
    ] {
        assert!(
            notes.contains(named),
            "{named} missing from the notes: {notes}"
        );
    }

    let svc = extract(kind, &file);
    if kind == "systemd" {
        let verified = systemd_verify(&file);
        eprintln!("systemd-analyze verify ran: {verified}");
        assert_eq!(
            svc["sections"],
            serde_json::json!(["Install", "Service", "Unit"])
        );
        let set = &svc["settings"];
        assert_eq!(set["KillSignal"], "SIGTERM");
        assert_eq!(
            set["KillMode"], "mixed",
            "SIGTERM to the agent, not its flows"
        );
        assert_eq!(set["Restart"], "on-failure");
        assert_eq!(set["StandardError"], "journal");
        assert_eq!(set["User"], "ferry-svc");
        assert_eq!(svc["env_files"], serde_json::json!([env_file]));
    }
    if kind == "supervisor" {
        let set = &svc["settings"];
        assert_eq!(set["stopsignal"], "TERM");
        assert_eq!(set["autorestart"], "unexpected");
        assert_eq!(
            set["stopasgroup"], "false",
            "SIGTERM to the agent, not its flows"
        );
        assert_eq!(set["user"], "ferry-svc");
        assert!(set["stdout_logfile"].as_str().unwrap().ends_with(".log"));
    }
    if kind == "launchd" {
        let set = &svc["settings"];
        assert_eq!(set["Label"], "dev.ferry.agent");
        assert_eq!(set["KeepAlive"]["SuccessfulExit"], false);
        assert!(set["StandardErrorPath"].as_str().unwrap().ends_with(".log"));
    }
    // The stop timeout outlasts the agent's shutdown grace and kill grace.
    assert!(svc["stop"].as_u64().unwrap() > 5 + 2, "{svc}");

    // It runs this very binary (directly, or exec'd by the script that reads the env file).
    let argv: Vec<String> = svc["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    let bin = canonical(&ferry_bin());
    let runs_ferry = argv[0] == bin.to_str().unwrap()
        || (argv[..2] == ["/bin/sh", "-c"]
            && argv[2].contains(&format!("exec {} agent start", bin.display()))
            && argv[2].contains(env_file.to_str().unwrap()));
    assert!(runs_ferry, "{argv:?}");
    let command = argv.join(" ");
    for part in [
        "agent start",
        "-q prod -q etl",
        "--limit 3",
        "--kill-grace 2",
        "--shutdown-grace 5",
    ] {
        assert!(command.contains(part), "{part} missing: {command}");
    }
    let env = svc["env"].as_object().unwrap();
    assert_eq!(env["FERRY_HOME"], home.as_str());
    assert_eq!(env["FERRY_API_URL"], s.url.as_str());
    assert_eq!(env["AWS_REGION"], "eu-central-1");
    assert!(!env.contains_key("FERRY_API_TOKEN"));
    assert_eq!(svc["cwd"], s.work.path().to_str().unwrap());

    // Run it as the service manager would: that environment only, plus the env file (read by
    // systemd itself, by the script for the others), which holds the token.
    std::fs::create_dir_all(env_file.parent().unwrap()).unwrap();
    std::fs::write(&env_file, format!("FERRY_API_TOKEN={TOKEN}\n")).unwrap();
    std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v.as_str().unwrap())))
        .current_dir(svc["cwd"].as_str().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for f in svc["env_files"].as_array().unwrap() {
        let vars = std::fs::read_to_string(f.as_str().unwrap()).unwrap();
        for line in vars.lines() {
            let (k, v) = line.split_once('=').unwrap();
            cmd.env(k, v);
        }
    }
    // Killed on the way out whatever happens (an assertion failing below included).
    let mut agent = AgentProc {
        child: cmd.spawn().expect("starting the service's command"),
    };
    let pid = agent.child.id();
    let seen = s.wait_for(Duration::from_secs(30), || {
        if let Ok(Some(status)) = agent.child.try_wait() {
            panic!("the service's agent exited early: {status}");
        }
        let agents = s.json(&["agent", "ls"]);
        agents
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name.as_str())
            .cloned()
    });
    assert_eq!(seen["queues"], serde_json::json!(["prod", "etl"]));
    assert_eq!(seen["limit"], 3);
    assert_eq!(seen["path"], "api");

    // A flow of queue prod runs on it.
    ferry_tests::write_project(
        &s.path("proj"),
        &[("job.sh", "#!/bin/sh\necho installed agent ran me\n")],
    );
    s.ok(&[
        "deployment",
        "build",
        "job.sh",
        "-n",
        "svc",
        "-q",
        "prod",
        "--path",
        "proj",
        "-a",
    ]);
    let id = s.ok(&["deployment", "run", "job/svc"]).trim().to_owned();
    // (`Server::run` reads without the token: the CLI sends it.)
    let run = s.wait_for(Duration::from_secs(30), || {
        let r = s.json(&["flow-run", "inspect", &id]);
        matches!(
            r["state"].as_str(),
            Some("completed" | "failed" | "crashed")
        )
        .then_some(r)
    });
    assert_eq!(
        run["state"],
        "completed",
        "{run}\nlog: {}",
        s.ok(&["flow-run", "logs", &id])
    );

    // SIGTERM (what each service manager sends) ends it cleanly, well within its stop timeout.
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let start = Instant::now();
    let status = loop {
        if let Some(st) = agent.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            start.elapsed() < Duration::from_secs(svc["stop"].as_u64().unwrap()),
            "the agent did not stop within the service's stop timeout"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "the agent ended {status} on SIGTERM");
    assert!(process_gone(pid));
}

#[test]
fn systemd_unit_verifies_and_runs_the_agent_with_its_queues_and_the_token_from_its_env_file() {
    service_runs_the_agent_it_describes("systemd");
}

#[test]
fn supervisor_program_parses_and_runs_the_agent_with_its_queues_and_the_token_from_its_env_file() {
    service_runs_the_agent_it_describes("supervisor");
}

#[test]
fn launchd_plist_parses_and_runs_the_agent_with_its_queues_and_the_token_from_its_env_file() {
    service_runs_the_agent_it_describes("launchd");
}

#[test]
fn special_characters_in_settings_survive_each_format() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("my ferry %h $HOME 'q' & <x>");
    let home = home.to_str().unwrap();
    for kind in ["systemd", "supervisor", "launchd"] {
        let out = install(
            dir.path(),
            &[
                ("FERRY_HOME", home),
                ("FERRY_API_URL", "http://10.0.0.5:4300"),
            ],
            &[kind, "-q", "default", "--name", "agent one"],
        );
        assert!(out.status.success(), "{kind}: {}", text(&out.stderr));
        let svc = extract(kind, &text(&out.stdout));
        assert_eq!(svc["env"]["FERRY_HOME"], home, "{kind}");
        let argv: Vec<&str> = svc["argv"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        if kind == "systemd" {
            let at = argv.iter().position(|a| *a == "--name").unwrap();
            assert_eq!(argv[at + 1], "agent one");
        } else {
            // The script, run by sh, passes the name as one word.
            assert!(argv[2].contains("--name 'agent one'"), "{kind}: {argv:?}");
            assert!(argv[2].contains("my ferry %h $HOME '\\''q'\\'' & <x>/agent.env"));
        }
    }
}

#[test]
fn fargate_prints_the_agent_stack_deploy_command_with_the_queues() {
    let dir = tempfile::tempdir().unwrap();
    let out = install(
        dir.path(),
        &[("FERRY_API_TOKEN", TOKEN)],
        &["fargate", "-q", "prod", "-q", "etl"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let cmd = text(&out.stdout);
    assert_eq!(
        cmd.trim(),
        "ferry aws deploy --stack ferry --agent-stack --queue prod --queue etl --image IMAGE_URI --subnet SUBNET_ID --security-group SECURITY_GROUP_ID"
    );
    let notes = text(&out.stderr);
    assert!(
        notes.contains("infra/agent.yaml") && !notes.contains(TOKEN),
        "{notes}"
    );
    // The printed command is one `ferry aws deploy` accepts (its --help parses the same flags).
    let args: Vec<&str> = cmd.split_whitespace().skip(1).collect();
    let mut check = args.clone();
    check.push("--help");
    let parsed = Command::new(ferry_bin()).args(&check).output().unwrap();
    assert!(parsed.status.success(), "{}", text(&parsed.stderr));
}

#[test]
fn bad_input_is_refused_naming_the_fix_and_prints_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&[&str], &str); 6] = [
        (
            &["upstart", "-q", "prod"],
            "possible values: systemd, supervisor, launchd, fargate",
        ),
        (
            &["systemd", "-q", "bad queue"],
            "--work-queue: \"bad queue\" is not a valid name",
        ),
        (&["launchd", "--bogus"], "unexpected argument '--bogus'"),
        (
            &["supervisor", "--limit", "0"],
            "--limit: must be at least 1",
        ),
        (
            &["systemd", "--lease", "1"],
            "--lease: must be at least 3 seconds",
        ),
        (
            &["fargate", "-q", "prod", "--limit", "4"],
            "--limit does not apply",
        ),
    ];
    for (args, says) in cases {
        let out = install(dir.path(), &[], args);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            out.stdout.is_empty(),
            "{args:?} printed {}",
            text(&out.stdout)
        );
        let err = text(&out.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let out = install(
        dir.path(),
        &[("FERRY_API_URL", "http://x\nExecStartPre=/bin/evil")],
        &["systemd"],
    );
    assert!(!out.status.success());
    assert!(out.stdout.is_empty());
    assert!(
        text(&out.stderr).contains("FERRY_API_URL holds a control character"),
        "{}",
        text(&out.stderr)
    );
}
