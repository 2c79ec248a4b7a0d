//! The agent through the real binaries: `ferry server start` + `ferry agent start` processes
//! sharing one FERRY_HOME, flows that record what happened to them.

use std::collections::HashMap;
use std::time::Duration;

use ferry_tests::{process_gone, write_project, AgentProc, Server};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(60);

/// How the agents of a test reach the control plane: through the server's API (`--via api`,
/// the default), or straight to its store (`--via direct`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Api,
    Direct,
}

/// `ferry agent start ARGS` on `s`, reaching it `via`.
fn start_agent(s: &Server, via: Via, args: &[&str]) -> AgentProc {
    let via = match via {
        Via::Api => "api",
        Via::Direct => "direct",
    };
    s.agent_via(Some(via), args)
}

/// A project whose `flow.sh` appends "<event> <run id> <attempt> <time>" lines to $OUT and
/// then does what $MODE says.
fn project(s: &Server) -> String {
    let dir = s.path("proj");
    write_project(
        &dir,
        &[
            (
                "flow.sh",
                r#"#!/bin/sh
echo "start $FERRY_RUN_ID $FERRY_ATTEMPT $(date +%s.%N)" >> "$OUT"
echo "running $FERRY_RUN_ID attempt $FERRY_ATTEMPT"
echo "to stderr" >&2
case "$MODE" in
  sleep) sleep "${SLEEP:-1}" ;;
  spawn) sleep 300 & echo $! > "$OUT.child"; wait ;;
  fail-first) if [ "$FERRY_ATTEMPT" = 1 ]; then echo "end $FERRY_RUN_ID $FERRY_ATTEMPT $(date +%s.%N)" >> "$OUT"; exit 3; fi ;;
  crash-first) if [ "$FERRY_ATTEMPT" = 1 ]; then sleep 300 & echo $! > "$OUT.child"; echo $$ > "$OUT.leader"; wait; fi ;;
esac
echo "end $FERRY_RUN_ID $FERRY_ATTEMPT $(date +%s.%N)" >> "$OUT"
"#,
            ),
            (
                "flows/params.py",
                "def main(n, word='hi'):\n    print(f'{word} {n * 2}')\n",
            ),
        ],
    );
    dir.to_string_lossy().into_owned()
}

fn build(s: &Server, proj: &str, name: &str, mode: &str, extra: &[&str]) -> String {
    let out = s
        .path(&format!("{name}.out"))
        .to_string_lossy()
        .into_owned();
    let mut args = vec![
        "deployment",
        "build",
        "flow.sh",
        "-n",
        name,
        "--path",
        proj,
        "-o",
    ];
    let manifest = format!("{name}.yaml");
    args.push(&manifest);
    args.push("-a");
    let env_out = format!("OUT={out}");
    let env_mode = format!("MODE={mode}");
    args.extend(["--env", &env_out, "--env", &env_mode]);
    args.extend_from_slice(extra);
    s.ok(&args);
    out
}

fn events(path: &str) -> Vec<(String, String, u32, f64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let p: Vec<_> = l.split_whitespace().collect();
            (
                p[0].to_owned(),
                p[1].to_owned(),
                p[2].parse().unwrap(),
                p[3].parse().unwrap(),
            )
        })
        .collect()
}

fn max_concurrency(ev: &[(String, String, u32, f64)]) -> usize {
    let mut points: Vec<(f64, i32)> = ev
        .iter()
        .map(|(k, _, _, t)| (*t, if k == "start" { 1 } else { -1 }))
        .collect();
    // Ends sort before starts at the same instant.
    points.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap().then(a.1.cmp(&b.1)));
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in points {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

#[test]
fn parameters_reach_a_python_function_and_watch_streams_logs() {
    parameters_reach_a_python_function_and_watch_streams_logs_on(false, Via::Api);
}

#[test]
fn parameters_reach_a_python_function_and_watch_streams_logs_direct() {
    parameters_reach_a_python_function_and_watch_streams_logs_on(false, Via::Direct);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn parameters_reach_a_python_function_and_watch_streams_logs_on_aws() {
    parameters_reach_a_python_function_and_watch_streams_logs_on(true, Via::Direct);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn parameters_reach_a_python_function_and_watch_streams_logs_on_aws_via_api() {
    parameters_reach_a_python_function_and_watch_streams_logs_on(true, Via::Api);
}

fn parameters_reach_a_python_function_and_watch_streams_logs_on(aws: bool, via: Via) {
    let s = Server::start_on(aws);
    let proj = project(&s);
    s.ok(&[
        "deployment",
        "build",
        "flows/params.py:main",
        "-n",
        "py",
        "--path",
        &proj,
        "--param",
        "word=\"hello\"",
        "-o",
        "py.yaml",
        "-a",
    ]);
    let _agent = start_agent(&s, via, &[]);
    let out = s.ok(&["deployment", "run", "main/py", "--param", "n=21", "--watch"]);
    assert!(out.contains("stdout | hello 42"), "{out}");
    assert!(
        out.contains("| running") && out.contains("| completed"),
        "{out}"
    );
    // A failing run makes --watch exit non-zero.
    let err = s.fails(&["deployment", "run", "main/py", "--watch"]); // n missing
    assert!(err.contains("failed"), "{err}");
    let runs = s.json(&[
        "flow-run",
        "ls",
        "--deployment",
        "main/py",
        "--state",
        "failed",
    ]);
    let id = runs[0]["id"].as_str().unwrap();
    let logs = s.ok(&["flow-run", "logs", id]);
    assert!(logs.contains("stderr | TypeError"), "{logs}");
    // The state message carries the exception's last line, not only the exit code.
    let message = runs[0]["state_message"].as_str().unwrap();
    assert!(
        message.starts_with("TypeError: ")
            && message.contains("'n'")
            && message.ends_with("(exit code 1)"),
        "{message}"
    );
    // The agent's closing line reaches the log (through the API: after the run ended).
    assert!(logs.contains("run ended: failed (TypeError"), "{logs}");
}

#[test]
fn three_agents_execute_each_of_210_runs_exactly_once() {
    three_agents_execute_each_of_210_runs_exactly_once_on(false, Via::Api);
}

#[test]
fn three_agents_execute_each_of_210_runs_exactly_once_direct() {
    three_agents_execute_each_of_210_runs_exactly_once_on(false, Via::Direct);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn three_agents_execute_each_of_210_runs_exactly_once_on_aws() {
    three_agents_execute_each_of_210_runs_exactly_once_on(true, Via::Direct);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn three_agents_execute_each_of_210_runs_exactly_once_on_aws_via_api() {
    three_agents_execute_each_of_210_runs_exactly_once_on(true, Via::Api);
}

fn three_agents_execute_each_of_210_runs_exactly_once_on(aws: bool, via: Via) {
    let s = Server::start_on(aws);
    let proj = project(&s);
    let out = build(&s, &proj, "many", "none", &[]);
    let ids: Vec<String> = (0..210)
        .map(|_| s.create_run("flow/many", json!({})))
        .collect();
    // This test is about exactly-once, not lease expiry (a_sigkilled_agent_s_run_… tests are): on a
    // loaded 2-core CI machine a heartbeat can stall for seconds (DynamoDB Local's JVM pauses,
    // SQLite writers queueing behind 24 runs' log writes), and a 3 s lease then crashes runs
    // (correctly, but this test wants them all to complete). So every variant holds 10 s leases.
    let lease = "10";
    let agents: Vec<_> = (0..3)
        .map(|i| {
            let name = format!("a{i}");
            start_agent(
                &s,
                via,
                &["--limit", "8", "--name", &name, "--lease", lease],
            )
        })
        .collect();
    s.wait_for(Duration::from_secs(240), || {
        let done = s.json(&["flow-run", "ls", "--state", "completed", "--limit", "1000"]);
        (done.as_array().unwrap().len() == 210).then_some(())
    });
    drop(agents);
    let ev = events(&out);
    let mut starts: HashMap<String, usize> = HashMap::new();
    for (kind, id, _, _) in &ev {
        if kind == "start" {
            *starts.entry(id.clone()).or_default() += 1;
        }
    }
    assert_eq!(starts.len(), 210, "runs executed");
    for id in &ids {
        assert_eq!(
            starts.get(id),
            Some(&1),
            "run {id} executed {:?} times",
            starts.get(id)
        );
    }
    // Work was spread over the agents.
    let runs = s.json(&["flow-run", "ls", "--limit", "1000"]);
    assert!(runs
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["state"] == "completed"));
}

#[test]
fn queue_and_deployment_limits_hold_across_agents() {
    queue_and_deployment_limits_hold_across_agents_on(false, Via::Api);
}

#[test]
fn queue_and_deployment_limits_hold_across_agents_direct() {
    queue_and_deployment_limits_hold_across_agents_on(false, Via::Direct);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn queue_and_deployment_limits_hold_across_agents_on_aws() {
    queue_and_deployment_limits_hold_across_agents_on(true, Via::Direct);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn queue_and_deployment_limits_hold_across_agents_on_aws_via_api() {
    queue_and_deployment_limits_hold_across_agents_on(true, Via::Api);
}

fn queue_and_deployment_limits_hold_across_agents_on(aws: bool, via: Via) {
    let s = Server::start_on(aws);
    let proj = project(&s);
    s.ok(&["work-queue", "create", "narrow", "--limit", "2"]);
    let q_out = build(
        &s,
        &proj,
        "q",
        "sleep",
        &["-q", "narrow", "--env", "SLEEP=0.4"],
    );
    let d_out = build(
        &s,
        &proj,
        "d",
        "sleep",
        &["--concurrency-limit", "1", "--env", "SLEEP=0.3"],
    );
    for _ in 0..10 {
        s.create_run("flow/q", json!({}));
        s.create_run("flow/d", json!({}));
    }
    let _agents: Vec<_> = (0..3)
        .map(|_| start_agent(&s, via, &["-q", "narrow", "-q", "default", "--limit", "6"]))
        .collect();
    s.wait_for(LONG, || {
        let done = s.json(&["flow-run", "ls", "--state", "completed", "--limit", "100"]);
        (done.as_array().unwrap().len() == 20).then_some(())
    });
    let q = events(&q_out);
    let d = events(&d_out);
    assert_eq!(q.len(), 20);
    assert_eq!(d.len(), 20);
    let (qc, dc) = (max_concurrency(&q), max_concurrency(&d));
    assert!(qc <= 2, "queue limit 2 exceeded: {qc}");
    assert!(dc <= 1, "deployment limit 1 exceeded: {dc}");
    assert_eq!(qc, 2, "the queue limit should allow 2 at once");
}

#[test]
fn a_sigkilled_agent_s_run_is_crashed_retried_and_its_slot_freed() {
    a_sigkilled_agent_s_run_is_crashed_retried_and_its_slot_freed_on(false, Via::Api);
}

#[test]
fn a_sigkilled_agent_s_run_is_crashed_retried_and_its_slot_freed_direct() {
    a_sigkilled_agent_s_run_is_crashed_retried_and_its_slot_freed_on(false, Via::Direct);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn a_sigkilled_agent_s_run_is_crashed_retried_and_its_slot_freed_on_aws() {
    a_sigkilled_agent_s_run_is_crashed_retried_and_its_slot_freed_on(true, Via::Direct);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn a_sigkilled_agent_s_run_is_crashed_retried_and_its_slot_freed_on_aws_via_api() {
    a_sigkilled_agent_s_run_is_crashed_retried_and_its_slot_freed_on(true, Via::Api);
}

fn a_sigkilled_agent_s_run_is_crashed_retried_and_its_slot_freed_on(aws: bool, via: Via) {
    let s = Server::start_on(aws);
    let proj = project(&s);
    let out = build(
        &s,
        &proj,
        "crashy",
        "crash-first",
        &["--retries", "1", "--concurrency-limit", "1"],
    );
    let id = s.create_run("flow/crashy", json!({}));
    let mut agent = start_agent(&s, via, &[]);
    s.wait_state(&id, "running", LONG);
    let pid_of = |file: &str| -> u32 {
        s.wait_for(Duration::from_secs(10), || {
            std::fs::read_to_string(file).ok()?.trim().parse().ok()
        })
    };
    let (leader, child) = (
        pid_of(&format!("{out}.leader")),
        pid_of(&format!("{out}.child")),
    );
    assert!(!process_gone(leader) && !process_gone(child));
    agent.sigkill();
    // A flow must not outlive its agent: its whole process group goes within the kill grace
    // (1 s here), before the lease ends and a retry could run beside it.
    s.wait_for(Duration::from_secs(2), || {
        (process_gone(leader) && process_gone(child)).then_some(())
    });
    let crashed = s.wait_state(&id, "crashed", Duration::from_secs(20));
    assert!(
        crashed["state_message"].as_str().unwrap().contains("lease"),
        "{crashed}"
    );
    // A retry (attempt 2) exists and, with the slot freed, a new agent runs it despite the
    // deployment limit of 1.
    // The retry is written right after the crash.
    let retry = s.wait_for(Duration::from_secs(20), || {
        let runs = s.json(&["flow-run", "ls", "--deployment", "flow/crashy"]);
        runs.as_array()
            .unwrap()
            .iter()
            .find(|r| r["attempt"] == 2)
            .cloned()
    });
    assert_eq!(retry["retry_of"], id.as_str());
    assert_eq!(retry["origin"], "retry");
    let _agent2 = start_agent(&s, via, &[]);
    s.wait_state(retry["id"].as_str().unwrap(), "completed", LONG);
    let ev = events(&out);
    assert_eq!(ev.iter().filter(|e| e.0 == "start").count(), 2);
}

#[test]
fn cancel_kills_the_whole_process_group() {
    cancel_kills_the_whole_process_group_on(false, Via::Api);
}

#[test]
fn cancel_kills_the_whole_process_group_direct() {
    cancel_kills_the_whole_process_group_on(false, Via::Direct);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn cancel_kills_the_whole_process_group_on_aws() {
    cancel_kills_the_whole_process_group_on(true, Via::Direct);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn cancel_kills_the_whole_process_group_on_aws_via_api() {
    cancel_kills_the_whole_process_group_on(true, Via::Api);
}

fn cancel_kills_the_whole_process_group_on(aws: bool, via: Via) {
    let s = Server::start_on(aws);
    let proj = project(&s);
    let out = build(&s, &proj, "spawner", "spawn", &[]);
    let _agent = start_agent(&s, via, &[]);
    let id = s.create_run("flow/spawner", json!({}));
    s.wait_state(&id, "running", LONG);
    let child_file = format!("{out}.child");
    let child: u32 = s.wait_for(LONG, || {
        std::fs::read_to_string(&child_file)
            .ok()
            .and_then(|c| c.trim().parse().ok())
    });
    assert!(!process_gone(child));
    let started = std::time::Instant::now();
    s.ok(&["flow-run", "cancel", &id]);
    let r = s.wait_state(&id, "cancelled", Duration::from_secs(15));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "cancel took {:?}",
        started.elapsed()
    );
    let states: Vec<_> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        states,
        ["scheduled", "pending", "running", "cancelling", "cancelled"]
    );
    s.wait_for(Duration::from_secs(5), || process_gone(child).then_some(()));
}

#[test]
fn a_timeout_fails_the_run_and_kills_the_whole_process_group() {
    a_timeout_fails_the_run_and_kills_the_whole_process_group_via(Via::Api);
}

#[test]
fn a_timeout_fails_the_run_and_kills_the_whole_process_group_direct() {
    a_timeout_fails_the_run_and_kills_the_whole_process_group_via(Via::Direct);
}

fn a_timeout_fails_the_run_and_kills_the_whole_process_group_via(via: Via) {
    let s = Server::start();
    let proj = project(&s);
    let out = build(&s, &proj, "slow", "spawn", &["--timeout", "1"]);
    let _agent = start_agent(&s, via, &[]);
    let id = s.create_run("flow/slow", json!({}));
    let r = s.wait_state(&id, "failed", Duration::from_secs(20));
    assert!(
        r["state_message"].as_str().unwrap().contains("timed out"),
        "{r}"
    );
    let child: u32 = std::fs::read_to_string(format!("{out}.child"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    s.wait_for(Duration::from_secs(5), || process_gone(child).then_some(()));
}

#[test]
fn a_failed_attempt_is_retried_after_the_delay() {
    a_failed_attempt_is_retried_after_the_delay_on(false, Via::Api);
}

#[test]
fn a_failed_attempt_is_retried_after_the_delay_direct() {
    a_failed_attempt_is_retried_after_the_delay_on(false, Via::Direct);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn a_failed_attempt_is_retried_after_the_delay_on_aws() {
    a_failed_attempt_is_retried_after_the_delay_on(true, Via::Direct);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn a_failed_attempt_is_retried_after_the_delay_on_aws_via_api() {
    a_failed_attempt_is_retried_after_the_delay_on(true, Via::Api);
}

fn a_failed_attempt_is_retried_after_the_delay_on(aws: bool, via: Via) {
    let s = Server::start_on(aws);
    let proj = project(&s);
    build(
        &s,
        &proj,
        "flaky",
        "fail-first",
        &["--retries", "2", "--retry-delay", "1"],
    );
    let _agent = start_agent(&s, via, &[]);
    let id = s.create_run("flow/flaky", json!({"parameters": {"x": 1}}));
    let failed = s.wait_state(&id, "failed", LONG);
    assert_eq!(failed["exit_code"], 3);
    let retry = s.wait_for(LONG, || {
        let runs = s.json(&[
            "flow-run",
            "ls",
            "--deployment",
            "flow/flaky",
            "--state",
            "completed",
        ]);
        runs.as_array().unwrap().first().cloned()
    });
    assert_eq!(retry["attempt"], 2);
    assert_eq!(retry["retry_of"], id.as_str());
    assert_eq!(retry["parameters"]["x"], 1);
    let ended = chrono::DateTime::parse_from_rfc3339(failed["ended_at"].as_str().unwrap()).unwrap();
    let due =
        chrono::DateTime::parse_from_rfc3339(retry["scheduled_time"].as_str().unwrap()).unwrap();
    assert_eq!((due - ended).num_seconds(), 1);
    let text = s.ok(&["flow-run", "inspect", retry["id"].as_str().unwrap()]);
    assert!(text.contains("retry 1 of 2"), "{text}");
}

#[test]
fn a_zip_slip_bundle_fails_the_run_with_a_clear_reason() {
    let s = Server::start();
    // A hand-made tar.gz whose entry escapes the work dir.
    let mut tar_bytes = Vec::new();
    {
        let mut header = [0u8; 512];
        let name = b"../../escaped.sh";
        header[..name.len()].copy_from_slice(name);
        header[100..107].copy_from_slice(b"0000755");
        header[108..115].copy_from_slice(b"0000000");
        header[116..123].copy_from_slice(b"0000000");
        header[124..135].copy_from_slice(b"00000000005");
        header[136..147].copy_from_slice(b"00000000000");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|b| *b as u32).sum();
        header[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        tar_bytes.extend_from_slice(&header);
        let mut body = b"evil\n".to_vec();
        body.resize(512, 0);
        tar_bytes.extend_from_slice(&body);
        tar_bytes.extend_from_slice(&[0u8; 1024]);
    }
    let gz = {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.tar");
        std::fs::write(&p, &tar_bytes).unwrap();
        std::process::Command::new("gzip")
            .arg("-n")
            .arg(&p)
            .status()
            .unwrap();
        std::fs::read(dir.path().join("b.tar.gz")).unwrap()
    };
    let sha = {
        let out = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(&gz)?;
                c.wait_with_output()
            })
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    let http = s.http();
    let r = http
        .put(format!("{}/v1/bundles/{sha}", s.url))
        .send(&gz[..])
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .put(format!("{}/v1/deployments", s.url))
        .send_json(json!({"flow": "evil", "name": "slip", "entrypoint": "escaped.sh", "bundle": {"sha256": sha}}))
        .unwrap();
    assert_eq!(r.status(), 201);
    let _agent = s.agent(&[]);
    let id = s.create_run("evil/slip", json!({}));
    let r = s.wait_state(&id, "failed", LONG);
    let msg = r["state_message"].as_str().unwrap();
    assert!(
        msg.contains("bundle rejected") && msg.contains(".."),
        "{msg}"
    );
    assert!(!s.home.path().join("escaped.sh").exists());
    assert!(!s.home.path().join("work").join("escaped.sh").exists());
}

#[test]
fn graceful_shutdown_finishes_running_runs_and_releases_prefetched_ones() {
    let s = Server::start();
    let proj = project(&s);
    build(&s, &proj, "g", "sleep", &["--env", "SLEEP=2"]);
    let agent = s.agent(&["--prefetch", "30"]);
    let running = s.create_run("flow/g", json!({}));
    let later = s.create_run("flow/g", json!({"start_in_seconds": 20}));
    s.wait_state(&running, "running", LONG);
    s.wait_state(&later, "pending", LONG);
    let out = agent.sigterm_and_wait(Duration::from_secs(30));
    assert!(out.contains("Agent stopped"), "{out}");
    assert_eq!(s.run(&running)["state"], "completed");
    let l = s.run(&later);
    assert_eq!(l["state"], "scheduled", "{l}");
    assert!(l.get("lease").is_none());
}

#[test]
fn a_prefetched_run_starts_at_its_scheduled_time_not_before() {
    let s = Server::start();
    let proj = project(&s);
    build(&s, &proj, "p", "none", &[]);
    let _agent = s.agent(&["--prefetch", "30"]);
    let id = s.create_run("flow/p", json!({"start_in_seconds": 3}));
    s.wait_state(&id, "pending", Duration::from_secs(10));
    let r = s.wait_state(&id, "completed", LONG);
    let due = chrono::DateTime::parse_from_rfc3339(r["scheduled_time"].as_str().unwrap()).unwrap();
    let started = chrono::DateTime::parse_from_rfc3339(r["started_at"].as_str().unwrap()).unwrap();
    assert!(started >= due, "started {started} before {due}");
    assert!(
        (started - due).num_milliseconds() < 1500,
        "started late: {started} vs {due}"
    );
}

#[test]
fn ferry_dev_runs_api_tick_and_agent_in_one_process() {
    let home = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let mut dev = std::process::Command::new(ferry_tests::ferry_bin())
        .args([
            "dev",
            "--port",
            "0",
            "--tick-interval",
            "200ms",
            "--poll-interval",
            "0.1",
        ])
        .env("FERRY_HOME", home.path())
        .env("FERRY_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(dev.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();
    let ferry = |args: &[&str]| {
        std::process::Command::new(ferry_tests::ferry_bin())
            .args(args)
            .current_dir(work.path())
            .env("FERRY_API_URL", &url)
            .env("FERRY_HOME", home.path())
            .output()
            .unwrap()
    };
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("examples");
    let out = ferry(&[
        "deployment",
        "build",
        "flows/hello.py:hello",
        "-n",
        "dev",
        "--path",
        examples.to_str().unwrap(),
        "--interval",
        "2",
        "-a",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ferry(&[
        "deployment",
        "run",
        "hello/dev",
        "--param",
        "name=\"test\"",
        "--watch",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("hello test (1/2)"), "{text}");
    // Scheduled runs complete too.
    let start = std::time::Instant::now();
    loop {
        let out = ferry(&["flow-run", "ls", "--state", "completed", "--json"]);
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        if v.as_array()
            .unwrap()
            .iter()
            .any(|r| r["origin"] == "schedule")
        {
            break;
        }
        assert!(start.elapsed() < LONG, "no scheduled run completed");
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = std::process::Command::new("kill")
        .args(["-INT", &dev.id().to_string()])
        .status();
    let status = dev.wait().unwrap();
    assert!(status.success(), "ferry dev exited with {status}");
}

#[test]
fn a_deployment_at_its_limit_does_not_starve_the_others_in_its_queue() {
    a_deployment_at_its_limit_does_not_starve_the_others_in_its_queue_on(false, Via::Api);
}

#[test]
fn a_deployment_at_its_limit_does_not_starve_the_others_in_its_queue_direct() {
    a_deployment_at_its_limit_does_not_starve_the_others_in_its_queue_on(false, Via::Direct);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn a_deployment_at_its_limit_does_not_starve_the_others_in_its_queue_on_aws() {
    a_deployment_at_its_limit_does_not_starve_the_others_in_its_queue_on(true, Via::Direct);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn a_deployment_at_its_limit_does_not_starve_the_others_in_its_queue_on_aws_via_api() {
    a_deployment_at_its_limit_does_not_starve_the_others_in_its_queue_on(true, Via::Api);
}

fn a_deployment_at_its_limit_does_not_starve_the_others_in_its_queue_on(aws: bool, via: Via) {
    let s = Server::start_on(aws);
    let proj = project(&s);
    // A: limit 1, 30 runs of 3 s each, due first. B: 3 trivial runs due after them.
    build(
        &s,
        &proj,
        "hog",
        "sleep",
        &["--concurrency-limit", "1", "--env", "SLEEP=3"],
    );
    build(&s, &proj, "quick", "none", &[]);
    for _ in 0..30 {
        s.create_run("flow/hog", json!({}));
    }
    std::thread::sleep(Duration::from_millis(20));
    let quick: Vec<String> = (0..3)
        .map(|_| s.create_run("flow/quick", json!({})))
        .collect();
    let _agent = start_agent(&s, via, &["--limit", "4"]);
    // Old behaviour: the agent only looked at the first `free * 2 + 4` due runs, all of the
    // hog, and B waited behind ~90 s of them. B must start at once.
    for id in &quick {
        s.wait_state(id, "completed", Duration::from_secs(10));
    }
}

/// Runs `ferry agent start ARGS` with the environment `env` (and FERRY_LOG=warn) and no server;
/// returns the child with piped stdout and stderr.
fn bare_agent(env: &[(&str, &str)], args: &[&str]) -> std::process::Child {
    std::process::Command::new(ferry_tests::ferry_bin())
        .args(["agent", "start", "--poll-interval", "0.1", "--lease", "3"])
        .args(args)
        .env_remove("FERRY_API_TOKEN")
        .env_remove("FERRY_BACKEND")
        .env("FERRY_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawning ferry agent")
}

/// Reads `pipe` line by line into a shared buffer (so a test can look while the agent runs).
fn collect(pipe: impl std::io::Read + Send + 'static) -> std::sync::Arc<std::sync::Mutex<String>> {
    let text = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
            let mut t = sink.lock().unwrap();
            t.push_str(&line);
            t.push('\n');
        }
    });
    text
}

#[test]
fn an_agent_that_cannot_reach_its_api_says_so_retries_and_works_once_the_server_is_up() {
    // A free port nothing listens on yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let home = tempfile::tempdir().unwrap();
    let mut child = bare_agent(
        &[
            ("FERRY_API_URL", url.as_str()),
            ("FERRY_HOME", home.path().to_str().unwrap()),
        ],
        &["--name", "patient"],
    );
    let stderr = collect(child.stderr.take().unwrap());
    let stdout = collect(child.stdout.take().unwrap());
    let waited = std::time::Instant::now();
    loop {
        let text = stderr.lock().unwrap().clone();
        if text.matches("cannot reach the Ferry API").count() >= 2 {
            assert!(
                text.contains(&url) && text.contains("retrying in"),
                "{text}"
            );
            break;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(20),
            "no retried 'cannot reach' message: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !stdout.lock().unwrap().contains("serving"),
        "the agent said it started without an API"
    );
    // The server comes up on that port: the agent connects (within its 30 s backoff cap)
    // and runs a run.
    let s = Server::start_with(
        &["--tick-interval", "200ms", "--port", &port.to_string()],
        &[],
    );
    assert_eq!(s.url, url);
    let proj = project(&s);
    build(&s, &proj, "late", "none", &[]);
    let id = s.create_run("flow/late", json!({}));
    let r = s.wait_state(&id, "completed", Duration::from_secs(60));
    assert_eq!(r["lease"], Value::Null);
    let out = stdout.lock().unwrap().clone();
    assert!(out.contains("through the API at"), "{out}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn an_agent_with_a_wrong_token_fails_naming_ferry_api_token() {
    let s = Server::start_with(
        &["--tick-interval", "200ms"],
        &[("FERRY_API_TOKEN", "right-token")],
    );
    let mut child = bare_agent(
        &[
            ("FERRY_API_URL", s.url.as_str()),
            ("FERRY_API_TOKEN", "wrong-token"),
            ("FERRY_HOME", s.home.path().to_str().unwrap()),
        ],
        &[],
    );
    let stderr = collect(child.stderr.take().unwrap());
    let status = s.wait_for(Duration::from_secs(20), || child.try_wait().unwrap());
    assert!(!status.success());
    let text = stderr.lock().unwrap().clone();
    assert!(
        text.contains("FERRY_API_TOKEN") && text.contains("HTTP 401"),
        "{text}"
    );
}

#[test]
fn a_direct_agent_refuses_a_ferry_home_without_a_database() {
    let home = tempfile::tempdir().unwrap();
    let missing = home.path().join("typo");
    let out = std::process::Command::new(ferry_tests::ferry_bin())
        .args(["agent", "start", "--via", "direct"])
        .env("FERRY_HOME", &missing)
        .env_remove("FERRY_BACKEND")
        .env("FERRY_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no Ferry database at")
            && err.contains(missing.to_str().unwrap())
            && err.contains("ferry server start"),
        "{err}"
    );
    assert!(!missing.exists(), "the agent created {}", missing.display());
}

#[test]
fn a_prefetched_run_does_not_hold_a_limited_slot_that_a_due_run_needs() {
    a_prefetched_run_does_not_hold_a_limited_slot_that_a_due_run_needs_via(Via::Api);
}

#[test]
fn a_prefetched_run_does_not_hold_a_limited_slot_that_a_due_run_needs_direct() {
    a_prefetched_run_does_not_hold_a_limited_slot_that_a_due_run_needs_via(Via::Direct);
}

fn a_prefetched_run_does_not_hold_a_limited_slot_that_a_due_run_needs_via(via: Via) {
    let s = Server::start();
    let proj = project(&s);
    s.ok(&["work-queue", "create", "one", "--limit", "1"]);
    build(&s, &proj, "one", "none", &["-q", "one"]);
    let scheduled = s.create_run("flow/one", json!({"start_in_seconds": 10}));
    let _agent = start_agent(&s, via, &["-q", "one", "--prefetch", "15"]);
    // The agent polls a few times with the scheduled run inside its look-ahead.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        s.run(&scheduled)["state"],
        "scheduled",
        "claimed ahead into the queue's only slot"
    );
    let adhoc = s.create_run("flow/one", json!({}));
    let done = s.wait_state(&adhoc, "completed", Duration::from_secs(8));
    let due = s.run(&scheduled);
    let ended = chrono::DateTime::parse_from_rfc3339(done["ended_at"].as_str().unwrap()).unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(due["scheduled_time"].as_str().unwrap()).unwrap();
    assert!(
        ended < at,
        "the ad-hoc run ended at {ended}, after the scheduled one's time {at}"
    );
    assert_eq!(due["state"], "scheduled");
    // The scheduled run still runs, once due.
    s.wait_state(&scheduled, "completed", Duration::from_secs(30));
}
