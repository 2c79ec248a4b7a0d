//! `ferry deployment build` and manifests as a newcomer meets them (issue 11, items 5, 10, 11):
//! the entrypoint is checked at build, durations take units, Prefect's spellings work,
//! manifests are written offline, round-trip every flag and stay out of the next bundle.

use std::path::Path;

use ferry_tests::{write_project, Server};

/// Files in `dir`, recursively, relative and sorted.
fn files_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

const FLOW: &str =
    "import os\n\n\ndef main(n=1):\n    print(f\"n={n}\")\n\n\nasync def other():\n    pass\n";

#[test]
fn build_refuses_an_entrypoint_whose_function_or_file_is_missing_and_writes_nothing() {
    let s = Server::start();
    write_project(&s.path("proj"), &[("flows/x.py", FLOW)]);
    let before = files_in(s.work.path());

    let err = s.fails(&[
        "deployment",
        "build",
        "flows/x.py:nothere",
        "-n",
        "a",
        "--path",
        "proj",
    ]);
    assert!(
        err.contains("function 'nothere' is not defined in flows/x.py (defined: main, other)"),
        "{err}"
    );

    let err = s.fails(&[
        "deployment",
        "build",
        "flows/gone.py:main",
        "-n",
        "a",
        "--path",
        "proj",
    ]);
    assert!(
        err.contains("entrypoint: flows/gone.py does not exist"),
        "{err}"
    );
    let root = std::fs::canonicalize(s.path("proj")).unwrap();
    assert!(
        err.contains(&format!("project directory {}", root.display())),
        "names the project root: {err}"
    );

    // A Python file without `:function` is not an executable to chmod: the advice says both ways.
    let err = s.fails(&[
        "deployment",
        "build",
        "flows/x.py",
        "-n",
        "a",
        "--path",
        "proj",
    ]);
    assert!(
        err.contains(
            "flows/x.py is a Python file: name its function (`flows/x.py:main`) or make it executable (chmod +x) with a shebang"
        ),
        "{err}"
    );

    assert_eq!(
        files_in(s.work.path()),
        before,
        "a refused build writes nothing"
    );
    assert!(s.json(&["deployment", "ls"]).as_array().unwrap().is_empty());

    // The right entrypoint builds and applies.
    s.ok(&[
        "deployment",
        "build",
        "flows/x.py:main",
        "-n",
        "a",
        "--path",
        "proj",
        "-a",
    ]);
    assert_eq!(s.json(&["deployment", "ls"]).as_array().unwrap().len(), 1);
}

/// Runs `ferry ARGS` in the server's scratch directory with an API address nothing listens
/// on: what works here works offline.
fn offline(s: &Server, args: &[&str]) -> std::process::Output {
    std::process::Command::new(ferry_tests::ferry_bin())
        .args(args)
        .current_dir(s.work.path())
        .env("FERRY_API_URL", "http://127.0.0.1:9")
        .env("FERRY_LOG", "warn")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The digest `build` printed.
fn digest_of(stdout: &str) -> String {
    let at = stdout.find("sha256 ").expect("build prints the digest") + 7;
    stdout[at..at + 64].to_owned()
}

#[test]
fn build_works_offline_into_a_new_directory_and_apply_uploads_the_bundle() {
    build_works_offline_into_a_new_directory_and_apply_uploads_the_bundle_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn build_works_offline_into_a_new_directory_and_apply_uploads_the_bundle_on_aws() {
    build_works_offline_into_a_new_directory_and_apply_uploads_the_bundle_on(true);
}

fn build_works_offline_into_a_new_directory_and_apply_uploads_the_bundle_on(aws: bool) {
    let s = Server::start_on(aws);
    write_project(&s.path("proj"), &[("flows/x.py", FLOW)]);
    // The manifest goes into the project, in a directory that does not exist yet.
    let args = [
        "deployment",
        "build",
        "flows/x.py:main",
        "-n",
        "offline",
        "--path",
        "proj",
        "-o",
        "proj/deploy/x.yaml",
    ];
    let first = offline(&s, &args);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let first = text(&first.stdout);
    assert!(s.path("proj/deploy/x.yaml").is_file());
    assert!(s.path("proj/deploy/x.ferry-bundle.tar.gz").is_file());
    assert!(
        first.contains("ferry deployment apply proj/deploy/x.yaml"),
        "{first}"
    );

    // Built again: the manifest and bundle now in the project are not packed; same digest.
    let second = offline(&s, &args);
    assert!(second.status.success(), "{}", text(&second.stderr));
    let second = text(&second.stdout);
    assert_eq!(digest_of(&second), digest_of(&first), "{first}\n{second}");
    assert!(
        second.contains("Left out of the bundle (Ferry's manifests and bundles): deploy/x.ferry-bundle.tar.gz, deploy/x.yaml"),
        "{second}"
    );
    // Python's junk does not change it either.
    write_project(
        &s.path("proj"),
        &[
            ("flows/__pycache__/x.cpython-312.pyc", "junk"),
            (".venv/bin/python", "junk"),
        ],
    );
    let third = offline(&s, &args);
    assert_eq!(digest_of(&text(&third.stdout)), digest_of(&first));

    // Nothing reached the server; apply uploads the bundle and the flow runs from it.
    assert!(s.json(&["deployment", "ls"]).as_array().unwrap().is_empty());
    s.ok(&["deployment", "apply", "proj/deploy/x.yaml"]);
    let d = s.json(&["deployment", "inspect", "main/offline"]);
    assert_eq!(d["spec"]["bundle"]["sha256"], digest_of(&first).as_str());
    let _agent = s.agent(&["-q", "default"]);
    let out = s.ok(&[
        "deployment",
        "run",
        "main/offline",
        "--param",
        "n=7",
        "--watch",
    ]);
    assert!(out.contains("n=7"), "{out}");
}

/// `build --json` (what the Python package reads): one JSON object, offline without `-a`
/// (`applied` null), and with `-a` the apply's outcome beside the spec it applied.
#[test]
fn build_json_prints_the_files_the_spec_and_with_apply_the_stored_deployment() {
    let s = Server::start();
    write_project(&s.path("proj"), &[("flows/x.py", FLOW)]);
    let args = [
        "deployment",
        "build",
        "flows/x.py:main",
        "-n",
        "j",
        "--path",
        "proj",
        "-o",
        "out/j.yaml",
        "--cron",
        "0 2 * * *",
        "--param",
        "n=3",
    ];
    let offline_out = offline(&s, &[&args[..], &["--json"]].concat());
    assert!(
        offline_out.status.success(),
        "{}",
        text(&offline_out.stderr)
    );
    let built: serde_json::Value = serde_json::from_slice(&offline_out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {}", text(&offline_out.stdout)));
    assert_eq!(built["manifest"], "out/j.yaml");
    assert_eq!(built["bundle_file"], "out/j.ferry-bundle.tar.gz");
    assert_eq!(built["files"], 1);
    assert_eq!(built["spec"]["entrypoint"], "flows/x.py:main");
    assert_eq!(built["spec"]["parameters"]["n"], 3);
    assert_eq!(built["spec"]["schedules"][0]["cron"], "0 2 * * *");
    assert!(built["applied"].is_null(), "{built}");
    assert!(s.path("out/j.yaml").is_file());

    let with_apply = [&args[..], &["-a"]].concat();
    let applied = s.json(&with_apply);
    assert_eq!(applied["applied"]["created"], true, "{applied}");
    assert_eq!(applied["applied"]["deployment"]["id"], "main/j");
    assert_eq!(applied["applied"]["deployment"]["revision"], 1);
    assert_eq!(
        applied["applied"]["deployment"]["spec"]["bundle"]["sha256"],
        built["spec"]["bundle"]["sha256"]
    );
    let again = s.json(&with_apply);
    assert_eq!(again["applied"]["changed"], false, "{again}");
}

#[test]
fn apply_refuses_a_manifest_whose_bundle_is_missing_or_lacks_the_entrypoint() {
    apply_refuses_a_manifest_whose_bundle_is_missing_or_lacks_the_entrypoint_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn apply_refuses_a_manifest_whose_bundle_is_missing_or_lacks_the_entrypoint_on_aws() {
    apply_refuses_a_manifest_whose_bundle_is_missing_or_lacks_the_entrypoint_on(true);
}

fn apply_refuses_a_manifest_whose_bundle_is_missing_or_lacks_the_entrypoint_on(aws: bool) {
    let s = Server::start_on(aws);
    write_project(&s.path("proj"), &[("flows/x.py", FLOW)]);
    let built = offline(
        &s,
        &[
            "deployment",
            "build",
            "flows/x.py:main",
            "-n",
            "m",
            "--path",
            "proj",
            "-o",
            "m.yaml",
        ],
    );
    assert!(built.status.success(), "{}", text(&built.stderr));
    let manifest = std::fs::read_to_string(s.path("m.yaml")).unwrap();

    // The entrypoint is checked against the bundle: a function the file does not define...
    std::fs::write(
        s.path("m.yaml"),
        manifest.replace("flows/x.py:main", "flows/x.py:nothere"),
    )
    .unwrap();
    let err = s.fails(&["deployment", "apply", "m.yaml"]);
    assert!(
        err.contains("m.yaml: entrypoint: function 'nothere' is not defined in flows/x.py (defined: main, other)"),
        "{err}"
    );
    // ...or a file the bundle does not hold.
    std::fs::write(
        s.path("m.yaml"),
        manifest.replace("flows/x.py:main", "flows/y.py:main"),
    )
    .unwrap();
    let err = s.fails(&["deployment", "apply", "m.yaml"]);
    assert!(
        err.contains("m.yaml: entrypoint: flows/y.py is not in the bundle"),
        "{err}"
    );

    // Without its bundle, and the server lacking it, apply says where it looked.
    std::fs::write(s.path("m.yaml"), &manifest).unwrap();
    std::fs::remove_file(s.path("m.ferry-bundle.tar.gz")).unwrap();
    let err = s.fails(&["deployment", "apply", "m.yaml"]);
    assert!(err.contains("bundle.sha256: bundle "), "{err}");
    assert!(err.contains("m.ferry-bundle.tar.gz"), "{err}");
    assert!(s.json(&["deployment", "ls"]).as_array().unwrap().is_empty());
}

#[test]
fn a_manifest_built_with_every_flag_round_trips_through_apply_and_inspect() {
    a_manifest_built_with_every_flag_round_trips_through_apply_and_inspect_on(false);
}

#[test]
#[ignore = "needs the AWS emulators: scripts/test.sh runs it"]
fn a_manifest_built_with_every_flag_round_trips_through_apply_and_inspect_on_aws() {
    a_manifest_built_with_every_flag_round_trips_through_apply_and_inspect_on(true);
}

fn a_manifest_built_with_every_flag_round_trips_through_apply_and_inspect_on(aws: bool) {
    let s = Server::start_on(aws);
    write_project(&s.path("proj"), &[("flows/x.py", FLOW)]);
    s.ok(&["work-queue", "create", "prod"]);
    s.ok(&["infra", "create", "process/local"]);
    let out = s.ok(&[
        "deployment",
        "build",
        "flows/x.py:main",
        "-n",
        "full",
        "--path",
        "proj",
        "--flow",
        "etl",
        "-q",
        "prod",
        "-t",
        "a",
        "-t",
        "b",
        "-v",
        "1.2.3",
        "-d",
        "every flag",
        "--interval",
        "1h",
        "--anchor-date",
        "2026-01-01T00:30:00Z",
        "--timezone",
        "Europe/Berlin",
        "--param",
        "n=3",
        "--params",
        r#"{"m": "x"}"#,
        "--env",
        "MODE=fast",
        "--retries",
        "2",
        "--retry-delay",
        "30s",
        "--timeout",
        "10m",
        "--concurrency-limit",
        "3",
        "--catchup",
        "all:5",
        "--python",
        "/usr/bin/python3",
        "-ib",
        "process/local",
        "--override",
        "env.EXTRA=1",
        "-o",
        "deploy/full.yaml",
        "-a",
    ]);
    assert!(out.contains("Created deployment etl/full"), "{out}");
    let yaml = std::fs::read_to_string(s.path("deploy/full.yaml")).unwrap();
    let manifest: serde_json::Value = serde_yaml_ng::from_str(&yaml).unwrap();
    let spec = s.json(&["deployment", "inspect", "etl/full"])["spec"].clone();
    assert_eq!(spec, manifest, "the manifest is what the server holds");
    let expect = serde_json::json!({
        "flow": "etl", "name": "full", "work_queue": "prod", "tags": ["a", "b"],
        "version": "1.2.3", "description": "every flag", "entrypoint": "flows/x.py:main",
        "parameters": {"n": 3, "m": "x"}, "env": {"MODE": "fast"},
        "retries": 2, "retry_delay_seconds": 30, "timeout_seconds": 600,
        "concurrency_limit": 3, "catchup": "all:5",
        "infrastructure": {"type": "process", "python": "/usr/bin/python3"},
        "infra_block": "process/local", "infra_overrides": {"env.EXTRA": "1"},
        "paused": false,
    });
    for (k, v) in expect.as_object().unwrap() {
        assert_eq!(&spec[k], v, "{k} in {spec}");
    }
    let sched = &spec["schedules"][0];
    assert_eq!(sched["interval"], 3600);
    assert_eq!(sched["timezone"], "Europe/Berlin");
    assert!(
        sched["anchor_date"]
            .as_str()
            .unwrap()
            .starts_with("2026-01-01T00:30:00"),
        "{sched}"
    );

    // Applying the manifest again changes nothing: every value came back the same.
    let again = s.ok(&["deployment", "apply", "deploy/full.yaml"]);
    assert!(again.contains("is unchanged"), "{again}");
}

#[test]
fn errors_in_a_manifest_name_its_fields_and_errors_in_flags_name_the_flags() {
    let s = Server::start();
    write_project(&s.path("proj"), &[("flows/x.py", FLOW)]);
    for (yaml, field) in [
        ("timeout_seconds: 0", "timeout_seconds: must be at least 1"),
        (
            "concurrency_limit: 0",
            "concurrency_limit: must be at least 1",
        ),
        (
            "retry_delay_seconds: 99999999",
            "retry_delay_seconds: at most",
        ),
        (
            "infra_overrides: {cpu: 1024}",
            "infra_overrides: overrides apply to an infrastructure profile: set infra_block",
        ),
    ] {
        std::fs::write(
            s.path("m.yaml"),
            format!("flow: etl\nname: n\nentrypoint: flows/x.py:main\n{yaml}\n"),
        )
        .unwrap();
        let err = s.fails(&["deployment", "apply", "m.yaml"]);
        assert!(err.contains(&format!("m.yaml: {field}")), "{err}");
        assert!(
            !err.contains("--"),
            "a manifest's error names no flag: {err}"
        );
    }
    let err = s.fails(&[
        "deployment",
        "build",
        "flows/x.py:main",
        "-n",
        "a",
        "--path",
        "proj",
        "--timeout",
        "0",
    ]);
    assert!(
        err.contains("--timeout: must be at least 1")
            && err.contains("(timeout_seconds in the manifest)"),
        "{err}"
    );
    assert!(s.json(&["deployment", "ls"]).as_array().unwrap().is_empty());
}

#[test]
fn durations_take_units_everywhere_and_plain_numbers_stay_seconds() {
    let s = Server::start();
    let preview = |interval: &str| {
        s.json(&[
            "schedule",
            "preview",
            "--interval",
            interval,
            "--after",
            "2026-01-01T00:00:00Z",
            "-n",
            "2",
        ])
    };
    assert_eq!(preview("1h"), preview("3600"));
    assert_eq!(preview("60 minutes"), preview("3600"));
    assert_ne!(preview("1h 30m"), preview("3600"));

    write_project(&s.path("proj"), &[("flows/x.py", FLOW)]);
    s.ok(&[
        "deployment",
        "build",
        "flows/x.py:main",
        "-n",
        "d",
        "--path",
        "proj",
        "--interval",
        "1d",
        "--retry-delay",
        "2m",
        "--timeout",
        "1h 30m",
        "-a",
    ]);
    let spec = s.json(&["deployment", "inspect", "main/d"])["spec"].clone();
    assert_eq!(spec["schedules"][0]["interval"], 86_400);
    assert_eq!(spec["retry_delay_seconds"], 120);
    assert_eq!(spec["timeout_seconds"], 5400);

    // --start-in: with a unit, or plain seconds.
    for (start_in, secs) in [("5 minutes", 300), ("90", 90)] {
        let before = chrono::Utc::now();
        let run = s.json(&["deployment", "run", "main/d", "--start-in", start_in]);
        let at: chrono::DateTime<chrono::Utc> =
            run["scheduled_time"].as_str().unwrap().parse().unwrap();
        let ahead = (at - before).num_seconds();
        assert!(
            (secs - 5..=secs + 5).contains(&ahead),
            "{start_in}: {ahead}s ahead"
        );
    }

    // An agent started with durations in units (and Prefect's --prefetch-seconds) runs flows.
    let _agent = s.agent(&[
        "-q",
        "default",
        "--prefetch-seconds",
        "2s",
        "--shutdown-grace",
        "1m",
    ]);
    let out = s.ok(&["deployment", "run", "main/d", "--param", "n=4", "--watch"]);
    assert!(out.contains("n=4"), "{out}");

    // Server and agent timings take units and plain seconds alike (parsed: no usage error).
    let out = s.ferry(&["server", "tick", "--late-after", "90"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = s.ferry(&[
        "agent",
        "execute",
        "0190f3a0-0000-7000-8000-000000000000",
        "--lease",
        "1m",
        "--kill-grace",
        "500ms",
        "--shutdown-grace",
        "20",
    ]);
    assert_ne!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("invalid value"),
        "{}",
        text(&out.stderr)
    );

    // A bad duration names the flag and shows the forms it takes.
    for (flag, value, says) in [
        (
            "--interval",
            "1x",
            "give seconds (30) or a number with a unit (30s, 5m",
        ),
        ("--interval", "1.5", "not a whole number of seconds"),
        (
            "--retry-delay",
            "soon",
            "give seconds (30) or a number with a unit",
        ),
    ] {
        let err = s.fails(&[
            "deployment",
            "build",
            "flows/x.py:main",
            "-n",
            "d",
            "--path",
            "proj",
            flag,
            value,
        ]);
        assert!(err.contains(&format!("for '{flag} <")), "{err}");
        assert!(err.contains(says), "{err}");
    }
    let err = s.fails(&["agent", "start", "--lease", "2d"]);
    assert!(
        err.contains("for '--lease <") && err.contains("longer than a day"),
        "{err}"
    );
}

#[test]
fn prefect_spellings_work_and_suggestions_name_the_real_flag() {
    let s = Server::start();
    write_project(&s.path("proj"), &[("flows/x.py", FLOW)]);
    s.ok(&["infra", "create", "process/local"]);
    // --params (Prefect's) is --params-json; -ib and --override; -d; the manifest's names.
    s.ok(&[
        "deployment",
        "build",
        "flows/x.py:main",
        "-n",
        "p",
        "--path",
        "proj",
        "--params",
        r#"{"n": 2}"#,
        "-ib",
        "process/local",
        "--override",
        "env.MODE=fast",
        "-d",
        "from prefect",
        "--timeout-seconds",
        "60",
        "--retry-delay-seconds",
        "5",
        "-a",
    ]);
    let spec = s.json(&["deployment", "inspect", "main/p"])["spec"].clone();
    assert_eq!(spec["parameters"], serde_json::json!({"n": 2}));
    assert_eq!(spec["infra_block"], "process/local");
    assert_eq!(
        spec["infra_overrides"],
        serde_json::json!({"env.MODE": "fast"})
    );
    assert_eq!(spec["description"], "from prefect");
    assert_eq!(spec["timeout_seconds"], 60);
    assert_eq!(spec["retry_delay_seconds"], 5);
    let run = s.json(&["deployment", "run", "main/p", "--params", r#"{"n": 5}"#]);
    assert_eq!(run["parameters"]["n"], 5, "{run}");
    let help = s.ok(&["agent", "start", "--help"]);
    assert!(help.contains("--prefetch-seconds"), "{help}");

    for (wrong, tip) in [
        ("--param-json", "'--params-json'"),
        ("--infra", "'--infra-block'"),
        ("--work-queu", "'--work-queue'"),
    ] {
        let err = s.fails(&[
            "deployment",
            "build",
            "flows/x.py:main",
            "-n",
            "p",
            "--path",
            "proj",
            wrong,
            "x",
        ]);
        assert!(
            err.contains(&format!("tip: a similar argument exists: {tip}")),
            "{wrong}: {err}"
        );
    }
}

fn quickstart() -> std::process::Command {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut cmd = std::process::Command::new("bash");
    cmd.arg(root.join("examples/quickstart.sh"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("FERRY_BIN")
        .env("QUICKSTART_SECONDS", "0");
    cmd
}

#[test]
fn the_quickstart_refuses_a_port_that_is_taken_naming_it_and_how_to_pick_another() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let home = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = quickstart()
        .env("FERRY_PORT", port.to_string())
        .env("FERRY_BIN", ferry_tests::ferry_bin())
        .env("FERRY_HOME", home.path())
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}\n{}", text(&out.stdout));
    assert!(
        err.contains(&format!("port {port} on 127.0.0.1 is already in use")),
        "{err}"
    );
    assert!(err.contains(&format!("FERRY_PORT={}", port + 1)), "{err}");
    // Which process holds it, where `ss` can tell (this test's own).
    if which("ss") {
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        std::fs::read_dir(home.path()).unwrap().next().is_none(),
        "nothing was registered or written"
    );
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

#[cfg(unix)]
#[test]
fn the_quickstart_builds_into_and_runs_from_cargo_target_dir() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let stubs = dir.path().join("bin");
    let target = dir.path().join("elsewhere");
    std::fs::create_dir_all(&stubs).unwrap();
    std::fs::create_dir_all(target.join("release")).unwrap();
    let log = dir.path().join("log");
    let stub = |path: &Path, body: &str| {
        std::fs::write(
            path,
            format!(
                "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> '{}'\n{body}\n",
                log.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    };
    // A stand-in cargo that "builds"; the stand-in ferry in the target directory is what it built.
    stub(&stubs.join("cargo"), "exit 0");
    stub(&target.join("release/ferry"), "exit 1");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = format!("{}:{}", stubs.display(), std::env::var("PATH").unwrap());
    let out = quickstart()
        .env("PATH", path)
        .env("CARGO_TARGET_DIR", &target)
        .env("FERRY_PORT", port.to_string())
        .env("FERRY_HOME", dir.path().join("home"))
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let log = std::fs::read_to_string(&log).unwrap();
    assert!(
        log.contains("cargo build --release -p ferry-cli --bin ferry"),
        "{log}"
    );
    assert!(
        log.contains(&format!("ferry dev --port {port}")),
        "the binary in CARGO_TARGET_DIR ran: {log}"
    );
    assert!(
        err.contains("ferry dev exited before it served the API"),
        "{err}"
    );
}
