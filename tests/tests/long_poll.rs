//! Issue 14, agents woken at once, through the real binary: an agent that talks to the API
//! (`ferry agent start --via api`) long-polls `POST /v1/agents/{name}/claims`, so a run created
//! through the API, or one that comes due, starts at once, not at the agent's next poll. Every
//! agent polls every 60 s here: a run that starts within seconds was woken, not polled.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ferry_tests::{write_project, AgentProc, Server};
use serde_json::{json, Value};

/// A shell flow that appends "start|end <run id>" to $OUT and sleeps $SLEEP seconds; its
/// deployment `flow/NAME` on the default queue. Returns the path of $OUT.
fn deploy(s: &Server, name: &str, sleep: u32) -> String {
    let dir = s.path("proj");
    write_project(
        &dir,
        &[(
            "flow.sh",
            "#!/bin/sh\necho \"start $FERRY_RUN_ID\" >> \"$OUT\"\nsleep \"$SLEEP\"\necho \"end $FERRY_RUN_ID\" >> \"$OUT\"\n",
        )],
    );
    let out = s
        .path(&format!("{name}.out"))
        .to_string_lossy()
        .into_owned();
    let manifest = format!("{name}.yaml");
    s.ok(&[
        "deployment",
        "build",
        "flow.sh",
        "-n",
        name,
        "--flow",
        "flow",
        "--path",
        dir.to_str().unwrap(),
        "--env",
        &format!("OUT={out}"),
        "--env",
        &format!("SLEEP={sleep}"),
        "-o",
        &manifest,
        "-a",
    ]);
    out
}

/// `n` agents through the API that poll every 60 s (their long polls wake them), once all
/// of them reported and had a second to start their first long poll.
fn idle_api_agents(s: &Server, n: usize, extra: &[&str]) -> Vec<AgentProc> {
    let agents = (0..n)
        .map(|i| {
            let name = format!("lp{i}");
            let mut args = vec!["--poll-interval", "60", "--name", &name, "--lease", "10"];
            args.extend_from_slice(extra);
            s.agent_via(Some("api"), &args)
        })
        .collect();
    s.wait_for(Duration::from_secs(30), || {
        let online = s.json(&["agent", "ls"]);
        (online.as_array().unwrap().len() == n).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    agents
}

fn time_of(run: &Value, field: &str) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(run[field].as_str().unwrap_or_else(|| panic!("{run}")))
        .unwrap()
}

#[test]
fn an_api_agent_runs_a_run_created_through_the_api_long_before_its_next_poll() {
    an_api_agent_runs_a_new_run_at_once_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn an_api_agent_runs_a_run_created_through_the_api_long_before_its_next_poll_on_aws() {
    an_api_agent_runs_a_new_run_at_once_on(true);
}

fn an_api_agent_runs_a_new_run_at_once_on(aws: bool) {
    let s = Server::start_on(aws);
    deploy(&s, "now", 0);
    let _agent = idle_api_agents(&s, 1, &[]);
    let created = Instant::now();
    let id = s.create_run("flow/now", json!({}));
    // Its next poll is a minute away: only the long poll's wake-up runs it this soon.
    s.wait_state(&id, "completed", Duration::from_secs(15));
    assert!(created.elapsed() < Duration::from_secs(15));
}

#[test]
fn every_waiting_agent_wakes_and_each_run_runs_exactly_once() {
    every_waiting_agent_wakes_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn every_waiting_agent_wakes_and_each_run_runs_exactly_once_on_aws() {
    every_waiting_agent_wakes_on(true);
}

fn every_waiting_agent_wakes_on(aws: bool) {
    let s = Server::start_on(aws);
    let out = deploy(&s, "wide", 10);
    // Three agents of two slots each: six runs can all be running only if all three woke.
    let agents = idle_api_agents(&s, 3, &["--limit", "2"]);
    let ids: Vec<String> = (0..6)
        .map(|_| s.create_run("flow/wide", json!({})))
        .collect();
    let holders = s.wait_for(Duration::from_secs(8), || {
        let runs: Vec<Value> = ids.iter().map(|id| s.run(id)).collect();
        runs.iter().all(|r| r["state"] == "running").then(|| {
            let mut by_agent: HashMap<String, usize> = HashMap::new();
            for r in &runs {
                *by_agent
                    .entry(r["lease"]["agent_id"].as_str().unwrap_or("?").to_owned())
                    .or_default() += 1;
            }
            by_agent
        })
    });
    assert_eq!(holders.len(), 3, "each agent holds two runs: {holders:?}");
    for id in &ids {
        s.wait_state(id, "completed", Duration::from_secs(60));
    }
    drop(agents);
    let lines = std::fs::read_to_string(&out).unwrap();
    for id in &ids {
        let starts = lines
            .lines()
            .filter(|l| *l == format!("start {id}"))
            .count();
        assert_eq!(starts, 1, "run {id} executed {starts} times:\n{lines}");
    }
}

#[test]
fn a_long_polling_agent_starts_a_run_scheduled_ahead_when_it_comes_due() {
    a_run_scheduled_ahead_starts_when_due_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn a_long_polling_agent_starts_a_run_scheduled_ahead_when_it_comes_due_on_aws() {
    a_run_scheduled_ahead_starts_when_due_on(true);
}

fn a_run_scheduled_ahead_starts_when_due_on(aws: bool) {
    let s = Server::start_on(aws);
    deploy(&s, "ahead", 0);
    // No look-ahead: the run is claimed when it is due, by the claim that waits for it.
    let _agent = idle_api_agents(&s, 1, &["--prefetch", "0"]);
    let id = s.create_run("flow/ahead", json!({"start_in_seconds": 4}));
    let r = s.wait_state(&id, "completed", Duration::from_secs(20));
    let (due, started) = (time_of(&r, "scheduled_time"), time_of(&r, "started_at"));
    assert!(started >= due, "started {started} before {due}");
    assert!(
        (started - due).num_milliseconds() < 3000,
        "started {started}, due {due}: not woken when it came due"
    );
}

/// `POST /v1/agents/{agent}/claims` on the default queue: the status, the answer, the granted
/// wait (`ferry-wait-seconds`) and how long it took.
fn claim(s: &Server, agent: &str, body: Value) -> (u16, Value, String, Duration) {
    let started = Instant::now();
    let mut r = s
        .http()
        .post(format!("{}/v1/agents/{agent}/claims", s.url))
        .send_json(body)
        .unwrap();
    let took = started.elapsed();
    let granted = r
        .headers()
        .get("ferry-wait-seconds")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let v: Value = r.body_mut().read_json().unwrap();
    (r.status().as_u16(), v, granted, took)
}

fn waiting(wait: f64) -> Value {
    json!({"queues": ["default"], "prefetch_seconds": 0, "free": 2, "lease_seconds": 30,
           "wait_seconds": wait})
}

#[test]
fn a_waiting_claim_answers_when_a_run_is_created_and_empty_after_its_wait() {
    a_waiting_claim_answers_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn a_waiting_claim_answers_when_a_run_is_created_and_empty_after_its_wait_on_aws() {
    a_waiting_claim_answers_on(true);
}

fn a_waiting_claim_answers_on(aws: bool) {
    let s = Server::start_on(aws);
    deploy(&s, "d", 0);
    let first = s.create_run("flow/d", json!({}));

    // A wait out of range is refused naming the field, and claims nothing.
    for bad in [21.0, -1.0] {
        let (status, v, _, _) = claim(&s, "w0", waiting(bad));
        assert_eq!((status, &v["field"]), (400, &json!("wait_seconds")), "{v}");
        assert!(
            v["message"].as_str().unwrap().contains("between 0 and 20"),
            "{v}"
        );
    }
    assert_eq!(s.run(&first)["state"], "scheduled");
    let (_, v, _, _) = claim(&s, "w0", waiting(0.0));
    assert_eq!(v[0]["run"]["id"], json!(first), "{v}");

    // Nothing to claim: the answer is an empty list after the wait asked for.
    let (status, v, granted, took) = claim(&s, "w1", waiting(2.0));
    assert_eq!((status, &v, granted.as_str()), (200, &json!([]), "2"));
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(6),
        "answered after {took:?}"
    );

    // A claim waiting 15 s answers as soon as a run is created through the API.
    let url = s.url.clone();
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let mut r = ureq::post(format!("{url}/v1/agents/w2/claims"))
            .send_json(waiting(15.0))
            .unwrap();
        let v: Value = r.body_mut().read_json().unwrap();
        (v, started.elapsed())
    });
    std::thread::sleep(Duration::from_secs(1));
    let id = s.create_run("flow/d", json!({}));
    let (v, took) = waiter.join().unwrap();
    assert_eq!(v[0]["run"]["id"], json!(id), "{v}");
    assert!(took < Duration::from_secs(6), "woken after {took:?}");
}

#[test]
fn an_api_agent_stops_at_once_during_a_long_poll() {
    let s = Server::start();
    let mut agents = idle_api_agents(&s, 1, &[]);
    let started = Instant::now();
    let out = agents.remove(0).sigterm_and_wait(Duration::from_secs(10));
    assert!(out.contains("Agent stopped"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped after {:?}: it waited for its long poll",
        started.elapsed()
    );
}

#[test]
fn a_bad_long_poll_is_refused_naming_the_flag() {
    let s = Server::start();
    let err = s.fails(&["agent", "start", "--via", "api", "--long-poll", "21"]);
    assert!(
        err.contains("--long-poll") && err.contains("0 to 20"),
        "{err}"
    );
    let err = s.fails(&["agent", "start", "--via", "api", "--long-poll", "soon"]);
    assert!(err.contains("--long-poll"), "{err}");
    let err = s.fails(&["agent", "start", "--via", "direct", "--long-poll", "5"]);
    assert!(
        err.contains("--long-poll applies to agents that talk to the API"),
        "{err}"
    );
}
