//! EventBridge Scheduler expressions (issue 13, item 4) through the real `ferry` binary:
//! `--schedule 'cron(...)' | 'rate(...)' | 'at(...)'` on `schedule preview` and
//! `deployment build`, `schedule:` in a manifest, stored and read back on both backends, and
//! written as runs by the tick.

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use ferry_tests::{write_project, Server};
use serde_json::{json, Value};

const FLOW: &str = "def main(n=1):\n    print(f\"n={n}\")\n";

/// `ferry ARGS` with no server at all (`schedule preview` is computed locally).
fn ferry(args: &[&str]) -> std::process::Output {
    let home = tempfile::tempdir().unwrap();
    std::process::Command::new(ferry_tests::ferry_bin())
        .args(args)
        .env("FERRY_HOME", home.path())
        .env("FERRY_API_URL", "http://127.0.0.1:9")
        .env("FERRY_LOG", "warn")
        .output()
        .unwrap()
}

fn preview(args: &[&str]) -> (Vec<String>, String) {
    let mut all = vec!["schedule", "preview"];
    all.extend_from_slice(args);
    let out = ferry(&all);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ferry {all:?}: {stderr}");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    (lines, stderr)
}

fn refused(args: &[&str]) -> String {
    let out = ferry(args);
    assert!(!out.status.success(), "ferry {args:?} was accepted");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn schedule_preview_computes_eventbridge_cron_rate_and_at() {
    // AWS's "6:00 pm every Monday through Friday", in Berlin's wall clock: Friday, then
    // Monday; 1 = Sunday in EventBridge cron.
    let (lines, _) = preview(&[
        "--schedule",
        "cron(0 18 ? * MON-FRI *)",
        "--timezone",
        "Europe/Berlin",
        "--after",
        "2026-06-05T00:00:00Z",
        "-n",
        "3",
    ]);
    assert_eq!(
        lines,
        [
            "2026-06-05T18:00:00+02:00",
            "2026-06-08T18:00:00+02:00",
            "2026-06-09T18:00:00+02:00"
        ]
    );
    let (lines, _) = preview(&[
        "--schedule",
        "cron(0 9 ? * 1 *)",
        "--after",
        "2026-06-01T00:00:00Z",
        "-n",
        "1",
    ]);
    assert_eq!(lines, ["2026-06-07T09:00:00+00:00"], "1 is Sunday");
    // The first Monday of the month (AWS's `2#1` example).
    let (lines, _) = preview(&[
        "--schedule",
        "cron(0 9 ? * 2#1 *)",
        "--after",
        "2026-06-01T10:00:00Z",
        "-n",
        "2",
    ]);
    assert_eq!(
        lines,
        ["2026-07-06T09:00:00+00:00", "2026-08-03T09:00:00+00:00"]
    );
    // EventBridge's DST rule: the skipped 02:30 of 2026-03-29 does not fire.
    let (lines, _) = preview(&[
        "--schedule",
        "cron(30 2 * * ? *)",
        "--timezone",
        "Europe/Berlin",
        "--after",
        "2026-03-27T12:00:00Z",
        "-n",
        "2",
    ]);
    assert_eq!(
        lines,
        ["2026-03-28T02:30:00+01:00", "2026-03-30T02:30:00+02:00"]
    );
    let (lines, _) = preview(&[
        "--schedule",
        "rate(5 minutes)",
        "--after",
        "2026-06-01T10:07:00Z",
        "-n",
        "2",
    ]);
    assert_eq!(
        lines,
        ["2026-06-01T10:10:00+00:00", "2026-06-01T10:15:00+00:00"]
    );
    // --anchor-date is a rate's phase.
    let (lines, _) = preview(&[
        "--schedule",
        "rate(1 hour)",
        "--anchor-date",
        "2026-01-01T00:20:00Z",
        "--after",
        "2026-06-01T10:07:00Z",
        "-n",
        "1",
    ]);
    assert_eq!(lines, ["2026-06-01T10:20:00+00:00"]);
    // A one-time schedule: one line, and a note on stderr that it ends.
    let (lines, stderr) = preview(&[
        "--schedule",
        "at(2027-01-01T09:00:00)",
        "--timezone",
        "America/New_York",
        "--after",
        "2026-06-01T00:00:00Z",
    ]);
    assert_eq!(lines, ["2027-01-01T09:00:00-05:00"]);
    assert!(
        stderr.contains("the schedule fires no more after 2027-01-01T09:00:00-05:00"),
        "{stderr}"
    );
    let (lines, stderr) = preview(&[
        "--schedule",
        "at(2027-01-01T09:00:00)",
        "--after",
        "2027-06-01T00:00:00Z",
        "--json",
    ]);
    let json: Value = serde_json::from_str(&lines.concat()).unwrap();
    assert_eq!(json, json!([]));
    assert!(
        stderr.contains("fires no more after 2027-06-01"),
        "{stderr}"
    );
    // Plain 5-field --cron keeps its POSIX meaning: 1-5 is Monday-Friday, 0 is Sunday.
    let (lines, _) = preview(&[
        "--cron",
        "0 9 * * 0",
        "--after",
        "2026-06-01T00:00:00Z",
        "-n",
        "1",
    ]);
    assert_eq!(lines, ["2026-06-07T09:00:00+00:00"]);
}

#[test]
fn errors_tell_posix_cron_and_eventbridge_cron_apart() {
    let err = refused(&["schedule", "preview", "--cron", "0 12 ? * MON-FRI *"]);
    assert!(
        err.contains("--cron: ")
            && err.contains("write it as --schedule 'cron(0 12 ? * MON-FRI *)'"),
        "{err}"
    );
    let err = refused(&["schedule", "preview", "--cron", "cron(0 12 ? * MON-FRI *)"]);
    assert!(
        err.contains("is an EventBridge Scheduler expression")
            && err.contains("--schedule 'cron(0 12 ? * MON-FRI *)'"),
        "{err}"
    );
    let err = refused(&[
        "schedule",
        "preview",
        "--schedule",
        "cron(0 12 * * MON-FRI)",
    ]);
    assert!(
        err.contains("--schedule: ")
            && err.contains("EventBridge cron has 6 fields")
            && err.contains("needs ? in day-of-month or day-of-week")
            && err.contains("use `cron` (--cron) instead"),
        "{err}"
    );
    let err = refused(&["schedule", "preview", "--schedule", "cron(0 12 ? * ? *)"]);
    assert!(err.contains("? is in both"), "{err}");
    let err = refused(&["schedule", "preview", "--schedule", "cron(0 12 ? * 0 *)"]);
    assert!(err.contains("1 = Sunday"), "{err}");
    let err = refused(&["schedule", "preview", "--schedule", "rate(5 minute)"]);
    assert!(err.contains("write rate(5 minutes)"), "{err}");
    let err = refused(&["schedule", "preview", "--schedule", "0 12 * * *"]);
    assert!(err.contains("looks like POSIX cron"), "{err}");
    let err = refused(&[
        "schedule",
        "preview",
        "--schedule",
        "cron(0 12 * * ? *)",
        "--anchor-date",
        "2026-01-01T00:00:00Z",
    ]);
    assert!(err.contains("--anchor-date: "), "{err}");
    let err = refused(&[
        "schedule",
        "preview",
        "--schedule",
        "rate(5 minutes)",
        "--cron",
        "* * * * *",
    ]);
    assert!(
        err.contains("--schedule") && err.contains("--cron"),
        "{err}"
    );
}

#[test]
fn deployments_take_eventbridge_schedules_from_flags_and_manifests() {
    deployments_take_eventbridge_schedules_from_flags_and_manifests_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn deployments_take_eventbridge_schedules_from_flags_and_manifests_on_aws() {
    deployments_take_eventbridge_schedules_from_flags_and_manifests_on(true);
}

fn deployments_take_eventbridge_schedules_from_flags_and_manifests_on(aws: bool) {
    let s = Server::start_on(aws);
    write_project(&s.path("proj"), &[("flows/x.py", FLOW)]);

    // --schedule on build: written into the manifest, stored, read back unchanged.
    let out = s.ok(&[
        "deployment",
        "build",
        "flows/x.py:main",
        "-n",
        "weekdays",
        "--path",
        "proj",
        "--schedule",
        "cron(0 12 ? * MON-FRI *)",
        "--timezone",
        "Europe/Berlin",
        "-o",
        "weekdays.yaml",
        "-a",
    ]);
    assert!(out.contains("Created deployment main/weekdays"), "{out}");
    let yaml = std::fs::read_to_string(s.path("weekdays.yaml")).unwrap();
    let manifest: Value = serde_yaml_ng::from_str(&yaml).unwrap();
    assert_eq!(
        manifest["schedules"][0]["schedule"], "cron(0 12 ? * MON-FRI *)",
        "{yaml}"
    );
    let spec = s.json(&["deployment", "inspect", "main/weekdays"])["spec"].clone();
    assert_eq!(
        spec["schedules"],
        json!([{"schedule": "cron(0 12 ? * MON-FRI *)", "timezone": "Europe/Berlin", "active": true}])
    );
    let again = s.ok(&["deployment", "apply", "weekdays.yaml"]);
    assert!(again.contains("is unchanged"), "{again}");
    let shown = s.ok(&["deployment", "inspect", "main/weekdays"]);
    assert!(
        shown.contains("cron(0 12 ? * MON-FRI *) (Europe/Berlin)"),
        "{shown}"
    );

    // A manifest with `schedule:` entries: a one-time at(...) two minutes ahead and an
    // inactive rate. The tick writes the at(...) run, once.
    let fire = (Utc::now() + chrono::Duration::minutes(2))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let fire_at = format!("{fire}Z");
    let bundle = std::fs::read_to_string(s.path("weekdays.yaml")).unwrap();
    let sha = bundle
        .lines()
        .find_map(|l| l.trim().strip_prefix("sha256: "))
        .expect("the manifest names its bundle")
        .to_owned();
    std::fs::write(
        s.path("once.yaml"),
        format!(
            "flow: main\nname: once\nentrypoint: flows/x.py:main\nbundle:\n  sha256: {sha}\n\
             schedules:\n  - schedule: \"at({fire})\"\n  - schedule: rate(5 minutes)\n    \
             active: false\n"
        ),
    )
    .unwrap();
    let out = s.ok(&["deployment", "apply", "once.yaml"]);
    assert!(out.contains("Created deployment main/once"), "{out}");
    let spec = s.json(&["deployment", "inspect", "main/once"])["spec"].clone();
    assert_eq!(
        spec["schedules"],
        json!([
            {"schedule": format!("at({fire})"), "timezone": "UTC", "active": true},
            {"schedule": "rate(5 minutes)", "timezone": "UTC", "active": false},
        ])
    );
    let runs = s.wait_for(Duration::from_secs(30), || {
        let runs = s
            .json(&["flow-run", "ls", "--deployment", "main/once", "--all"])
            .as_array()
            .unwrap()
            .clone();
        (!runs.is_empty()).then_some(runs)
    });
    assert_eq!(runs.len(), 1, "{runs:?}");
    let when =
        chrono::DateTime::parse_from_rfc3339(runs[0]["scheduled_time"].as_str().unwrap()).unwrap();
    assert_eq!(
        when.with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Secs, true),
        fire_at
    );

    // A bad expression in a manifest names the field, not a flag.
    std::fs::write(
        s.path("bad.yaml"),
        format!(
            "flow: main\nname: bad\nentrypoint: flows/x.py:main\nbundle:\n  sha256: {sha}\n\
             schedules:\n  - schedule: cron(0 12 * * MON-FRI)\n"
        ),
    )
    .unwrap();
    let err = s.fails(&["deployment", "apply", "bad.yaml"]);
    assert!(
        err.contains("bad.yaml: schedules[0].schedule: cron(0 12 * * MON-FRI): EventBridge cron has 6 fields"),
        "{err}"
    );
    let listed = s.json(&["deployment", "ls"]).to_string();
    assert!(
        listed.contains("\"once\"") && !listed.contains("\"bad\""),
        "a refused manifest writes nothing: {listed}"
    );
}
