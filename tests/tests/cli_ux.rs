//! The CLI as a newcomer meets it (issue 11 items 6-9 and 12): `flow-run ls` shows what
//! happened, run ids by prefix, cancelling twice, revisions that only users bump, empty
//! listings, closed pipes, a wrong FERRY_API_URL, and logs fit for files.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use ferry_tests::{ferry_bin, write_project, Server};
use serde_json::Value;

const LONG: Duration = Duration::from_secs(60);

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A deployment `main/every` scheduled every minute (the tick writes the next runs ahead),
/// whose flow fails with a long message when `n` is 2.
fn every_minute(s: &Server) {
    let dir = s.path("proj");
    write_project(
        &dir,
        &[(
            "flows/etl.py",
            "def main(n=1):\n    print('n =', n)\n    if n == 2:\n        raise ValueError('boom ' * 40)\n",
        )],
    );
    let out = s.ok(&[
        "deployment",
        "build",
        "flows/etl.py:main",
        "-n",
        "every",
        "--interval",
        "60",
        "--path",
        dir.to_str().unwrap(),
        "-a",
    ]);
    assert!(out.contains("revision 1"), "{out}");
}

/// The runs of `main/every` the tick wrote ahead (it runs every 200 ms in tests).
fn upcoming(s: &Server) -> Vec<Value> {
    s.wait_for(LONG, || {
        let v = s.json(&["flow-run", "ls", "--upcoming", "--limit", "5"]);
        let runs = v.as_array().unwrap().clone();
        (runs.len() == 5).then_some(runs)
    })
}

fn finished_run_is_listed_before_the_scheduled_ones(aws: bool) {
    let s = Server::start_on(aws);
    every_minute(&s);
    let ahead = upcoming(&s);
    let _agent = s.agent(&[]);
    let failed = s.ok(&["deployment", "run", "main/every", "-p", "n=2"]);
    let failed = failed.trim();
    s.wait_state(failed, "failed", LONG);

    // --json: what happened, newest first, nothing scheduled later.
    // (A run of the every-minute schedule may come due while the test runs: being scheduled
    // later than the failed run, it is listed before it; nothing else may be.)
    let recent = s.json(&["flow-run", "ls", "--limit", "5"]);
    let recent = recent.as_array().unwrap();
    let pos = recent
        .iter()
        .position(|r| r["id"] == failed)
        .unwrap_or_else(|| panic!("the failed run is listed: {recent:?}"));
    let failed_at = recent[pos]["scheduled_time"].as_str().unwrap().to_owned();
    assert!(
        pos <= 1
            && recent[..pos].iter().all(|r| r["origin"] == "schedule"
                && r["scheduled_time"].as_str().unwrap() > failed_at.as_str()),
        "newest first, the failed run first but for a run that came due since: {recent:?}"
    );
    let now = chrono::Utc::now();
    for r in recent {
        let at: chrono::DateTime<chrono::Utc> =
            r["scheduled_time"].as_str().unwrap().parse().unwrap();
        assert!(at <= now, "a run scheduled later is listed: {r}");
    }
    // --upcoming: soonest first, all later than now.
    let times: Vec<String> = ahead
        .iter()
        .map(|r| r["scheduled_time"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "upcoming runs are soonest first");

    // The table: STARTED, DURATION and MESSAGE (cut to one short line), then the next few.
    let table = s.ok(&["flow-run", "ls", "--limit", "5"]);
    let mut lines = table.lines();
    let header = lines.next().unwrap();
    for col in ["ID", "STATE", "SCHEDULED", "STARTED", "DURATION", "MESSAGE"] {
        assert!(header.contains(col), "{header}");
    }
    let first = lines
        .take(2)
        .find(|l| l.starts_with(failed))
        .unwrap_or_else(|| panic!("the failed run is listed first (or second): {table}"));
    assert!(first.contains("failed"), "{table}");
    assert!(
        first.contains("exit code 1") || first.contains("boom"),
        "{table}"
    );
    assert!(first.chars().count() < 250, "the message is cut: {first}");
    let next = table
        .split("Next scheduled")
        .nth(1)
        .unwrap_or_else(|| panic!("no next-scheduled section: {table}"));
    assert!(
        next.contains("scheduled") && next.contains("schedule"),
        "{table}"
    );

    // Every filter still applies, and an empty listing says so (the header alone would not).
    let out = s.ferry(&[
        "flow-run",
        "ls",
        "--deployment",
        "main/every",
        "--state",
        "cancelled",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains(
            "no flow runs scheduled up to now match (deployment=main/every, state=cancelled)"
        ),
        "{}",
        stderr(&out)
    );
    let json = s.json(&["flow-run", "ls", "--state", "cancelled"]);
    assert_eq!(json, serde_json::json!([]));
    let failed_only = s.json(&["flow-run", "ls", "--state", "failed", "-q", "default"]);
    assert_eq!(failed_only.as_array().unwrap().len(), 1, "{failed_only}");
}

#[test]
fn flow_run_ls_lists_a_finished_run_before_the_runs_scheduled_ahead() {
    finished_run_is_listed_before_the_scheduled_ones(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn flow_run_ls_lists_a_finished_run_before_the_runs_scheduled_ahead_on_aws() {
    ferry_testkit::require_emulators();
    finished_run_is_listed_before_the_scheduled_ones(true);
}

fn run_ids_by_prefix_and_cancelling_twice(aws: bool) {
    let s = Server::start_on(aws);
    every_minute(&s);
    let ahead = upcoming(&s);
    let id = ahead[0]["id"].as_str().unwrap().to_owned();

    // A unique prefix works wherever a run id is taken, and through the API.
    let prefix = &id[..14];
    let r = s.json(&["flow-run", "inspect", prefix]);
    assert_eq!(r["id"], id.as_str());
    assert!(s.ferry(&["flow-run", "logs", prefix]).status.success());
    let mut resp = s
        .http()
        .get(format!("{}/v1/flow-runs/{prefix}", s.url))
        .call()
        .unwrap();
    let body: Value = resp.body_mut().read_json().unwrap();
    assert_eq!(body["id"], id.as_str());

    // Too short: the minimum is named. Ambiguous: the candidates are listed.
    let err = s.fails(&["flow-run", "inspect", &id[..3]]);
    assert!(err.contains("at least 4 characters"), "{err}");
    let err = s.fails(&["flow-run", "inspect", &id[..4]]);
    assert!(err.contains("several flow runs"), "{err}");
    assert!(
        err.contains(ahead[0]["id"].as_str().unwrap())
            && err.contains(ahead[1]["id"].as_str().unwrap()),
        "{err}"
    );
    let err = s.fails(&["flow-run", "inspect", "ffffffff"]);
    assert!(err.contains("not found"), "{err}");

    // Cancelling: once it is done, twice it says so and succeeds.
    let out = s.ok(&["flow-run", "cancel", prefix]);
    assert!(out.contains(&id) && out.contains("cancelled"), "{out}");
    let out = s.ok(&["flow-run", "cancel", prefix]);
    assert!(out.contains("already Cancelled"), "{out}");
    assert_eq!(s.run(&id)["history"].as_array().unwrap().len(), 2);

    // A finished run cannot be cancelled: a non-zero exit naming its end.
    let _agent = s.agent(&[]);
    let done = s.ok(&["deployment", "run", "main/every"]);
    let done = done.trim();
    s.wait_state(done, "completed", LONG);
    let err = s.fails(&["flow-run", "cancel", done]);
    assert!(err.contains("already finished (completed"), "{err}");
}

#[test]
fn run_ids_are_taken_by_unique_prefix_and_a_cancelled_run_cancels_again_quietly() {
    run_ids_by_prefix_and_cancelling_twice(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn run_ids_are_taken_by_unique_prefix_and_a_cancelled_run_cancels_again_quietly_on_aws() {
    ferry_testkit::require_emulators();
    run_ids_by_prefix_and_cancelling_twice(true);
}

fn revision_moves_only_with_the_user(aws: bool) {
    let s = Server::start_on(aws);
    every_minute(&s);
    upcoming(&s); // the tick has written the horizon (and its bookkeeping) meanwhile
    let d = s.json(&["deployment", "inspect", "main/every"]);
    assert!(d["next_tick_at"].is_string(), "{d}");
    assert_eq!(d["revision"], 1, "{d}");
    assert!(
        d.get("version").is_none(),
        "the concurrency token is not shown: {d}"
    );
    // Applying the same manifest again changes nothing; an edit is the user's revision 2.
    let out = s.ok(&["deployment", "apply", "every-deployment.yaml"]);
    assert!(out.contains("unchanged (revision 1)"), "{out}");
    let out = s.ok(&[
        "deployment",
        "build",
        "flows/etl.py:main",
        "-n",
        "every",
        "--interval",
        "60",
        "--description",
        "edited",
        "--path",
        s.path("proj").to_str().unwrap(),
        "-a",
    ]);
    assert!(out.contains("(revision 2)"), "{out}");
    upcoming(&s);
    assert_eq!(
        s.json(&["deployment", "inspect", "main/every"])["revision"],
        2
    );
    // Pause and resume are the user's changes too; the ticks between them are not.
    s.ok(&["deployment", "pause", "main/every"]);
    assert_eq!(
        s.json(&["deployment", "inspect", "main/every"])["revision"],
        3
    );
    s.ok(&["deployment", "resume", "main/every"]);
    upcoming(&s);
    let table = s.ok(&["deployment", "inspect", "main/every"]);
    assert!(table.contains("revision:        4"), "{table}");
}

#[test]
fn a_deployment_revision_changes_only_when_a_user_changes_it() {
    revision_moves_only_with_the_user(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn a_deployment_revision_changes_only_when_a_user_changes_it_on_aws() {
    ferry_testkit::require_emulators();
    revision_moves_only_with_the_user(true);
}

#[test]
fn empty_listings_say_so_and_json_stays_an_empty_array() {
    let s = Server::start();
    for (args, says) in [
        (vec!["deployment", "ls"], "no deployments yet"),
        (vec!["infra", "ls"], "no infrastructure profiles yet"),
        (
            vec!["flow-run", "ls"],
            "no flow runs scheduled up to now match",
        ),
        (
            vec!["flow-run", "ls", "--upcoming"],
            "no upcoming flow runs match",
        ),
        (
            vec!["flow-run", "ls", "--all", "--state", "late"],
            "no flow runs match (state=late)",
        ),
    ] {
        let out = s.ferry(&args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert_eq!(stdout(&out), "", "{args:?} printed a bare header");
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
        assert_eq!(s.json(&args), serde_json::json!([]), "{args:?}");
    }
}

/// Runs `ferry ARGS` with its stdout a pipe whose reading end is closed before it writes.
fn with_stdout_closed(s: &Server, args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(ferry_bin())
        .args(args)
        .env("FERRY_API_URL", &s.url)
        .env("FERRY_HOME", s.home.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (out.status.code(), stderr(&out))
}

#[test]
fn output_into_a_closed_pipe_ends_quietly_with_141() {
    let s = Server::start();
    every_minute(&s);
    let id = upcoming(&s)[0]["id"].as_str().unwrap().to_owned();
    for args in [
        vec!["flow-run", "ls", "--all"],
        vec!["flow-run", "ls", "--json"],
        vec!["flow-run", "inspect", &id],
        vec!["deployment", "ls"],
        vec!["deployment", "inspect", "main/every"],
        vec!["work-queue", "ls"],
        vec!["schedule", "preview", "--cron", "* * * * *"],
    ] {
        let (code, err) = with_stdout_closed(&s, &args);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(code, Some(141), "{args:?}: {err}");
    }
    // The server (another process, writing to sockets) is untouched.
    assert!(s.ferry(&["work-queue", "ls"]).status.success());
}

fn ferry_at(url: &str, args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(ferry_bin())
        .args(args)
        .env("FERRY_API_URL", url)
        .env("FERRY_HOME", home.path())
        .output()
        .unwrap()
}

#[test]
fn a_wrong_ferry_api_url_gets_a_clear_error_and_a_trailing_v1_works() {
    let s = Server::start();
    for url in [
        format!("{}/v1", s.url),
        format!("{}/v1/", s.url),
        format!("{}/", s.url),
    ] {
        let out = ferry_at(&url, &["work-queue", "ls"]);
        assert!(out.status.success(), "{url}: {}", stderr(&out));
        assert!(stdout(&out).contains("default"), "{url}");
    }
    let bare = s.url.trim_start_matches("http://").to_owned();
    let out = ferry_at(&bare, &["work-queue", "ls"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("FERRY_API_URL") && err.contains(&format!("http://{bare}")),
        "{err}"
    );
    assert!(!err.contains("builder error"), "{err}");

    let out = ferry_at(&format!("{}/api", s.url), &["work-queue", "ls"]);
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(
        err.contains("no route for GET /api/v1/work-queues"),
        "{err}"
    );
    assert!(
        !err.contains("see GET /v1/openapi.json\" not found"),
        "{err}"
    );

    let mut r = s
        .http()
        .get(format!("{}/v1/v1/flow-runs", s.url))
        .call()
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.body_mut().read_json().unwrap();
    assert_eq!(body["kind"], "not_found");
    assert!(
        body["message"].as_str().unwrap().contains("/v1 twice"),
        "{body}"
    );
}

/// Starts a server with `env`, its stderr to a file; does a few things that log; returns
/// what it wrote to stderr.
fn server_log(env: &[(&str, &str)]) -> String {
    let home = tempfile::tempdir().unwrap();
    let log = home.path().join("stderr.log");
    let mut child = Command::new(ferry_bin())
        .args(["server", "start", "--port", "0", "--tick-interval", "200ms"])
        .env("FERRY_HOME", home.path().join("home"))
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    let ferry = |args: &[&str]| ferry_at(&url, args);
    let project = home.path().join("proj");
    write_project(&project, &[("flows/etl.py", "def main():\n    pass\n")]);
    let out = ferry(&[
        "deployment",
        "build",
        "flows/etl.py:main",
        "-n",
        "logged",
        "--path",
        project.to_str().unwrap(),
        "-o",
        project.join("logged.yaml").to_str().unwrap(),
        "-a",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = ferry(&["deployment", "run", "main/logged"]);
    assert!(out.status.success(), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(600));
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::read_to_string(&log).unwrap()
}

#[test]
fn server_logs_carry_no_colour_codes_off_a_terminal_and_json_logs_are_json_lines() {
    let text = server_log(&[("FERRY_LOG", "debug")]);
    assert!(!text.trim().is_empty(), "nothing logged");
    assert!(!text.contains("\x1b["), "ANSI codes in a file: {text}");

    let json = server_log(&[("FERRY_LOG", "debug"), ("FERRY_LOG_FORMAT", "json")]);
    assert!(!json.trim().is_empty(), "nothing logged");
    assert!(!json.contains("\x1b["), "{json}");
    for line in json.lines() {
        let v: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
    }

    let out = Command::new(ferry_bin())
        .args(["server", "start", "--port", "0"])
        .env("FERRY_LOG_FORMAT", "yaml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("FERRY_LOG_FORMAT=\"yaml\"") && stderr(&out).contains("`json`"),
        "{}",
        stderr(&out)
    );
}
