//! Python flows started cold and warm (`deployment build --warm`: forked from a warm process):
//! every test runs both ways and expects the same outcome — parameters, environment, exit
//! codes, exceptions, logs, results, cancel, timeout — plus what only a warm process has: it
//! dies, its bundle changes, its module starts a thread at import.

use std::time::Duration;

use ferry_tests::{process_gone, write_project, Server};
use serde_json::json;

const LONG: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, PartialEq, Debug)]
enum Start {
    Cold,
    Warm,
}

/// Defines `NAME_cold` and `NAME_warm` calling `NAME(Start::…)`.
macro_rules! cold_and_warm {
    ($($name:ident),* $(,)?) => {
        mod cold {
            $(#[test] fn $name() { super::$name(super::Start::Cold) })*
        }
        mod warm {
            $(#[test] fn $name() { super::$name(super::Start::Warm) })*
        }
    };
}

cold_and_warm!(
    parameters_environment_and_result_reach_the_flow,
    exit_codes_and_exceptions_end_the_run_as_they_say,
    stdout_and_stderr_are_captured_line_by_line,
    cancel_kills_the_run_s_process_group,
    a_timeout_fails_the_run_and_kills_its_process_group,
    a_changed_bundle_runs_the_new_code,
    a_module_that_starts_a_thread_at_import_still_runs,
);

const FLOWS: &str = r#"import os, sys, time

IMPORTED_BY = os.getpid()

def params(n, word="hi"):
    print(f"{word} {n * 2}")
    return {"n": n, "word": word}

def env():
    print("GREETING=" + os.environ["GREETING"])
    print("RUN=" + os.environ["FERRY_RUN_ID"])
    print("DEPLOYMENT=" + os.environ["FERRY_DEPLOYMENT"])
    print("ATTEMPT=" + os.environ["FERRY_ATTEMPT"])
    # Its own process and process group, whichever way it started.
    print(f"OWN_GROUP={os.getpgid(0) == os.getpid()}")
    print(f"STDIN={sys.stdin.read()!r}")

def exiting(code):
    sys.exit(code)

def boom():
    raise ValueError("bad input")

def chatty():
    for i in range(3):
        print(f"out {i}")
    print("err 0", file=sys.stderr)
    print("x" * 70000)
    print("unicode: été ✓")
    sys.stdout.write("no newline at the end")

def sleepy(pidfile, seconds=60):
    with open(pidfile, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(seconds)
"#;

/// A server, an agent, and the project `proj/flows.py`.
fn setup(aws: bool) -> (Server, ferry_tests::AgentProc) {
    let s = Server::start_on(aws);
    write_project(&s.path("proj"), &[("flows.py", FLOWS)]);
    let agent = s.agent(&["--limit", "4"]);
    (s, agent)
}

/// `deployment build flows.py:FUNCTION -n NAME -a` (with `--warm` for a warm start) plus `extra`.
fn build(s: &Server, start: Start, function: &str, name: &str, extra: &[&str]) {
    let entry = format!("flows.py:{function}");
    let proj = s.path("proj").to_string_lossy().into_owned();
    let manifest = format!("{name}.yaml");
    let mut args = vec![
        "deployment",
        "build",
        &entry,
        "-n",
        name,
        "--path",
        &proj,
        "-o",
        &manifest,
        "-a",
    ];
    if start == Start::Warm {
        args.push("--warm");
    }
    args.extend_from_slice(extra);
    s.ok(&args);
}

/// Runs `deployment` with `--watch` and returns (its output, the run id) — the output ends with
/// the run's logs. Fails the test if --watch's exit code does not match `ok`.
fn run_watched(s: &Server, deployment: &str, args: &[&str], ok: bool) -> (String, String) {
    let mut all = vec!["deployment", "run", deployment, "--watch"];
    all.extend_from_slice(args);
    let out = if ok { s.ok(&all) } else { s.fails(&all) };
    let runs = s.json(&["flow-run", "ls", "--deployment", deployment, "--limit", "1"]);
    (out, runs[0]["id"].as_str().unwrap().to_owned())
}

fn logs(s: &Server, id: &str) -> String {
    s.ok(&["flow-run", "logs", id])
}

/// The pid of the warm process a run was forked from (its log says), or `None` for a cold run.
fn warm_pid(log: &str) -> Option<u32> {
    let at = log.find("forked from warm process ")? + "forked from warm process ".len();
    log[at..].split(' ').next()?.parse().ok()
}

/// The run started the way it was asked to: a warm run's log says which process it was forked
/// from; a cold run's says nothing of warm processes.
fn assert_started(start: Start, log: &str) {
    match start {
        Start::Warm => assert!(warm_pid(log).is_some(), "not forked warm:\n{log}"),
        Start::Cold => assert!(!log.contains("warm"), "a cold run mentions warm:\n{log}"),
    }
}

fn parameters_environment_and_result_reach_the_flow(start: Start) {
    parameters_environment_and_result_reach_the_flow_on(false, start);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn parameters_environment_and_result_reach_the_flow_warm_on_aws() {
    parameters_environment_and_result_reach_the_flow_on(true, Start::Warm);
}

fn parameters_environment_and_result_reach_the_flow_on(aws: bool, start: Start) {
    let (s, _agent) = setup(aws);
    build(&s, start, "params", "p", &["--param", "word=\"hello\""]);
    let (out, id) = run_watched(&s, "params/p", &["--param", "n=21"], true);
    assert!(out.contains("stdout | hello 42"), "{out}");
    assert_started(start, &logs(&s, &id));
    let result = s.json(&["flow-run", "result", &id]);
    assert_eq!(result, json!({"n": 21, "word": "hello"}));
    // A second run of the same deployment: fresh parameters, the same warm process.
    let (out2, id2) = run_watched(
        &s,
        "params/p",
        &["--param", "n=1", "--param", "word=\"yo\""],
        true,
    );
    assert!(
        out2.contains("stdout | yo 2") && !out2.contains("hello"),
        "{out2}"
    );
    if start == Start::Warm {
        assert_eq!(warm_pid(&logs(&s, &id)), warm_pid(&logs(&s, &id2)));
    }

    build(&s, start, "env", "e", &["--env", "GREETING=bonjour"]);
    let (out, id) = run_watched(&s, "env/e", &[], true);
    for want in [
        "GREETING=bonjour".to_owned(),
        format!("RUN={id}"),
        "DEPLOYMENT=env/e".to_owned(),
        "ATTEMPT=1".to_owned(),
        "OWN_GROUP=True".to_owned(),
        "STDIN=''".to_owned(),
    ] {
        assert!(
            out.contains(&format!("stdout | {want}")),
            "{want} missing:\n{out}"
        );
    }
}

fn exit_codes_and_exceptions_end_the_run_as_they_say(start: Start) {
    let (s, _agent) = setup(false);
    build(&s, start, "exiting", "x", &[]);
    let (_, id) = run_watched(&s, "exiting/x", &["--param", "code=0"], true);
    assert_eq!(s.run(&id)["state"], "completed");
    assert_started(start, &logs(&s, &id));
    let (_, id) = run_watched(&s, "exiting/x", &["--param", "code=3"], false);
    let r = s.run(&id);
    assert_eq!(r["state"], "failed");
    assert_eq!(r["state_message"], "exit code 3", "{r}");

    build(&s, start, "boom", "b", &[]);
    let (_, id) = run_watched(&s, "boom/b", &[], false);
    let r = s.run(&id);
    assert_eq!(
        r["state_message"], "ValueError: bad input (exit code 1)",
        "{r}"
    );
    let log = logs(&s, &id);
    assert!(
        log.contains("stderr | Traceback (most recent call last):"),
        "{log}"
    );
    assert!(log.contains("in boom"), "{log}");
    // The shim's own frames are not in the traceback.
    assert!(!log.contains("<string>"), "{log}");

    // A missing parameter is the flow's TypeError, the same both ways.
    build(&s, start, "params", "p", &[]);
    let (_, id) = run_watched(&s, "params/p", &[], false);
    let message = s.run(&id)["state_message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("TypeError: ") && message.contains("'n'"),
        "{message}"
    );
}

fn stdout_and_stderr_are_captured_line_by_line(start: Start) {
    let (s, _agent) = setup(false);
    build(&s, start, "chatty", "c", &[]);
    let (_, id) = run_watched(&s, "chatty/c", &[], true);
    let log = logs(&s, &id);
    assert_started(start, &log);
    for want in [
        "stdout | out 0",
        "stdout | out 1",
        "stdout | out 2",
        "stderr | err 0",
        "stdout | unicode: été ✓",
        "stdout | no newline at the end",
    ] {
        assert!(log.contains(want), "{want} missing:\n{log}");
    }
    let out0 = log.find("stdout | out 0").unwrap();
    let out2 = log.find("stdout | out 2").unwrap();
    assert!(out0 < out2);
    // The 70 000-character line arrives whole, cut in two at the 64 KiB line limit.
    let xs: usize = log
        .lines()
        .filter(|l| l.contains("stdout | xxx"))
        .map(|l| l.split("stdout | ").nth(1).unwrap().len())
        .sum();
    assert_eq!(xs, 70_000, "{}", &log[..log.len().min(2000)]);
}

/// Starts `sleepy` and returns (run id, the flow's pid) once it runs.
fn start_sleepy(s: &Server, start: Start, name: &str, extra: &[&str]) -> (String, u32) {
    build(s, start, "sleepy", name, extra);
    let pidfile = s.path(&format!("{name}.pid"));
    let id = s.create_run(
        &format!("sleepy/{name}"),
        json!({"parameters": {"pidfile": pidfile}}),
    );
    let pid: u32 = s.wait_for(LONG, || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .and_then(|p| p.trim().parse().ok())
    });
    (id, pid)
}

fn cancel_kills_the_run_s_process_group(start: Start) {
    let (s, _agent) = setup(false);
    let (id, pid) = start_sleepy(&s, start, "c", &[]);
    assert!(!process_gone(pid));
    s.ok(&["flow-run", "cancel", &id]);
    s.wait_state(&id, "cancelled", LONG);
    s.wait_for(Duration::from_secs(10), || process_gone(pid).then_some(()));
    assert_started(start, &logs(&s, &id));
}

fn a_timeout_fails_the_run_and_kills_its_process_group(start: Start) {
    let (s, _agent) = setup(false);
    let (id, pid) = start_sleepy(&s, start, "t", &["--timeout", "5"]);
    let r = s.wait_state(&id, "failed", LONG);
    assert!(
        r["state_message"]
            .as_str()
            .unwrap()
            .contains("timed out after 5s"),
        "{r}"
    );
    s.wait_for(Duration::from_secs(10), || process_gone(pid).then_some(()));
    assert_started(start, &logs(&s, &id));
}

fn a_changed_bundle_runs_the_new_code(start: Start) {
    let (s, _agent) = setup(false);
    let proj = s.path("proj");
    write_project(&proj, &[("version.py", "def main():\n    print('v1')\n")]);
    let build_version = |s: &Server| {
        let mut args = vec![
            "deployment".to_owned(),
            "build".into(),
            "version.py:main".into(),
            "-n".into(),
            "v".into(),
            "--path".into(),
            proj.to_string_lossy().into_owned(),
            "-o".into(),
            "v.yaml".into(),
            "-a".into(),
        ];
        if start == Start::Warm {
            args.push("--warm".into());
        }
        s.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
    };
    build_version(&s);
    let (out, id1) = run_watched(&s, "main/v", &[], true);
    assert!(out.contains("stdout | v1"), "{out}");
    write_project(&proj, &[("version.py", "def main():\n    print('v2')\n")]);
    build_version(&s);
    let (out, id2) = run_watched(&s, "main/v", &[], true);
    assert!(out.contains("stdout | v2") && !out.contains("v1"), "{out}");
    let (log1, log2) = (logs(&s, &id1), logs(&s, &id2));
    assert_started(start, &log2);
    if start == Start::Warm {
        let (old, new) = (warm_pid(&log1).unwrap(), warm_pid(&log2).unwrap());
        assert_ne!(old, new, "the new bundle must fork from a new warm process");
        // The old one was retired and exits (it has no runs left).
        s.wait_for(Duration::from_secs(10), || process_gone(old).then_some(()));
    }
}

fn a_module_that_starts_a_thread_at_import_still_runs(start: Start) {
    let (s, _agent) = setup(false);
    write_project(
        &s.path("proj"),
        &[(
            "threaded.py",
            "import threading, time\n\
             threading.Thread(target=time.sleep, args=(600,), daemon=True).start()\n\
             def main():\n    print('ran')\n",
        )],
    );
    let proj = s.path("proj").to_string_lossy().into_owned();
    let mut args = vec![
        "deployment",
        "build",
        "threaded.py:main",
        "-n",
        "t",
        "--path",
        &proj,
        "-o",
        "t.yaml",
        "-a",
    ];
    if start == Start::Warm {
        args.push("--warm");
    }
    s.ok(&args);
    for _ in 0..2 {
        let (out, id) = run_watched(&s, "main/t", &[], true);
        assert!(out.contains("stdout | ran"), "{out}");
        let log = logs(&s, &id);
        // A process with threads is not forked: the run starts cold, and says why.
        assert!(warm_pid(&log).is_none(), "{log}");
        if start == Start::Warm {
            assert!(
                log.contains(
                    "cold start: no warm process: the flow's module started 1 thread(s) at import"
                ),
                "{log}"
            );
        }
    }
}

#[test]
fn a_killed_warm_process_fails_its_runs_and_the_next_run_gets_a_new_one() {
    let (s, _agent) = setup(false);
    let (id, pid) = start_sleepy(&s, Start::Warm, "k", &[]);
    let server = s.wait_for(LONG, || warm_pid(&logs(&s, &id)));
    nix_kill(server);
    let r = s.wait_state(&id, "failed", LONG);
    let message = r["state_message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "the warm process it was forked from (pid {server}) died"
        )),
        "{r}"
    );
    // Its run does not outlive it.
    s.wait_for(Duration::from_secs(10), || process_gone(pid).then_some(()));
    // The next run forks from a new warm process.
    build(&s, Start::Warm, "params", "p", &[]);
    let (_, id) = run_watched(&s, "params/p", &["--param", "n=2"], true);
    let next = warm_pid(&logs(&s, &id)).expect("forked warm");
    assert_ne!(next, server);
}

#[test]
fn a_module_that_fails_to_import_starts_cold_and_fails_with_its_exception() {
    let (s, _agent) = setup(false);
    write_project(
        &s.path("proj"),
        &[(
            "broken.py",
            "raise RuntimeError('no config')\ndef main():\n    pass\n",
        )],
    );
    let proj = s.path("proj").to_string_lossy().into_owned();
    s.ok(&[
        "deployment",
        "build",
        "broken.py:main",
        "-n",
        "b",
        "--path",
        &proj,
        "-o",
        "b.yaml",
        "-a",
        "--warm",
    ]);
    let (_, id) = run_watched(&s, "main/b", &[], false);
    let r = s.run(&id);
    assert_eq!(
        r["state_message"], "RuntimeError: no config (exit code 1)",
        "{r}"
    );
    let log = logs(&s, &id);
    assert!(
        log.contains(
            "cold start: no warm process: importing the flow failed (RuntimeError: no config)"
        ),
        "{log}"
    );
}

#[test]
fn warm_is_refused_for_an_executable_and_names_the_flag() {
    let s = Server::start();
    write_project(&s.path("proj"), &[("run.sh", "#!/bin/sh\necho hi\n")]);
    let proj = s.path("proj").to_string_lossy().into_owned();
    let err = s.fails(&[
        "deployment",
        "build",
        "run.sh",
        "-n",
        "x",
        "--path",
        &proj,
        "-o",
        "x.yaml",
        "-a",
        "--warm",
    ]);
    assert!(
        err.contains("--warm") && err.contains("file.py:function"),
        "{err}"
    );
    let listed = s.json(&["deployment", "ls"]);
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
}

fn nix_kill(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -9 {pid}");
}
