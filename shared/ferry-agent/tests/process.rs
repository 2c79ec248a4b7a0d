//! Tests of `ferry_agent::process`: output capture, exit codes, timeouts and cancellation that kill
//! the whole process group, spawn errors, and the Python shim.

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_agent::process::{self, ExecOutcome, ExecSpec, OutputLine, Stream};
use ferry_core::deployment::Entrypoint;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn sh(script: &str, cwd: &Path) -> ExecSpec {
    ExecSpec {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        cwd: cwd.to_path_buf(),
        env: vec![],
        timeout: None,
        kill_grace: Duration::from_secs(1),
    }
}

struct Ran {
    outcome: ExecOutcome,
    lines: Vec<OutputLine>,
    elapsed: Duration,
    pid: Option<u32>,
}

impl Ran {
    fn stream(&self, s: Stream) -> Vec<&str> {
        self.lines
            .iter()
            .filter(|l| l.stream == s)
            .map(|l| l.line.as_str())
            .collect()
    }
}

async fn run_with(spec: ExecSpec, cancel: CancellationToken) -> Ran {
    let (tx, mut rx) = mpsc::channel(16);
    let collector = tokio::spawn(async move {
        let mut v = Vec::new();
        while let Some(l) = rx.recv().await {
            v.push(l);
        }
        v
    });
    let pid = Arc::new(AtomicU32::new(0));
    let p = pid.clone();
    let start = Instant::now();
    let outcome = process::run(spec, tx, cancel, move |id| p.store(id, Ordering::SeqCst)).await;
    let elapsed = start.elapsed();
    let lines = collector.await.unwrap();
    let pid = match pid.load(Ordering::SeqCst) {
        0 => None,
        p => Some(p),
    };
    Ran {
        outcome,
        lines,
        elapsed,
        pid,
    }
}

async fn run(spec: ExecSpec) -> Ran {
    run_with(spec, CancellationToken::new()).await
}

/// Dead = no /proc entry, or a zombie waiting for its (new) parent to reap it.
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // "pid (comm) S ..." — comm may contain spaces, so look after the last ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

async fn assert_dies(pid: u32) {
    for _ in 0..40 {
        if is_dead(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("process {pid} is still alive");
}

fn read_pid(file: &Path) -> u32 {
    std::fs::read_to_string(file)
        .unwrap_or_else(|e| panic!("no pid file {}: {e}", file.display()))
        .trim()
        .parse()
        .unwrap()
}

fn write_file(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn stdout_and_stderr_are_captured_per_stream_with_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(sh(
        "echo out1; echo err1 >&2; echo out2; echo err2 >&2; exit 3",
        dir.path(),
    ))
    .await;
    assert_eq!(r.outcome, ExecOutcome::Exited(3));
    assert_eq!(r.stream(Stream::Stdout), ["out1", "out2"]);
    assert_eq!(r.stream(Stream::Stderr), ["err1", "err2"]);
    assert!(r.pid.is_some(), "on_start was not called");

    let r = run(sh("echo fine", dir.path())).await;
    assert_eq!(r.outcome, ExecOutcome::Exited(0));
    assert_eq!(r.stream(Stream::Stdout), ["fine"]);
    assert!(r.stream(Stream::Stderr).is_empty());
}

#[tokio::test]
async fn final_line_without_newline_is_captured() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(sh(
        "printf 'a\\r\\nb\\nlast'; printf 'e-last' >&2",
        dir.path(),
    ))
    .await;
    assert_eq!(r.outcome, ExecOutcome::Exited(0));
    assert_eq!(r.stream(Stream::Stdout), ["a", "b", "last"]);
    assert_eq!(r.stream(Stream::Stderr), ["e-last"]);
}

#[tokio::test]
async fn long_lines_are_split_and_invalid_utf8_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    // 150000 'a's then a newline, then an invalid byte.
    let r = run(sh(
        "head -c 150000 /dev/zero | tr '\\000' a; echo; printf '\\377ok\\n'",
        dir.path(),
    ))
    .await;
    assert_eq!(r.outcome, ExecOutcome::Exited(0));
    let lens: Vec<usize> = r.stream(Stream::Stdout).iter().map(|l| l.len()).collect();
    assert_eq!(lens[..3], [65536, 65536, 150000 - 2 * 65536]);
    assert!(r.stream(Stream::Stdout)[..3]
        .iter()
        .all(|l| l.bytes().all(|b| b == b'a')));
    assert_eq!(r.stream(Stream::Stdout)[3], "\u{FFFD}ok");
    assert_eq!(lens.len(), 4);
}

#[tokio::test]
async fn a_line_of_exactly_the_limit_is_not_followed_by_an_empty_line() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(sh(
        "head -c 65536 /dev/zero | tr '\\000' b; echo; echo next",
        dir.path(),
    ))
    .await;
    let out = r.stream(Stream::Stdout);
    assert_eq!(
        out.len(),
        2,
        "{:?}",
        out.iter().map(|l| l.len()).collect::<Vec<_>>()
    );
    assert_eq!(out[0].len(), 65536);
    assert_eq!(out[1], "next");
}

#[tokio::test]
async fn env_reaches_the_child_and_cwd_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("marker.txt"), "here").unwrap();
    let mut spec = sh(
        "echo \"$FERRY_TEST_VAR\"; cat marker.txt; echo; pwd",
        dir.path(),
    );
    spec.env = vec![("FERRY_TEST_VAR".into(), "hello world".into())];
    let r = run(spec).await;
    assert_eq!(r.outcome, ExecOutcome::Exited(0));
    let out = r.stream(Stream::Stdout);
    assert_eq!(out[0], "hello world");
    assert_eq!(out[1], "here");
    assert_eq!(
        PathBuf::from(out[2]).canonicalize().unwrap(),
        dir.path().canonicalize().unwrap()
    );
}

#[tokio::test]
async fn the_child_has_its_own_process_group_and_null_stdin() {
    let dir = tempfile::tempdir().unwrap();
    // `ps -o pgid= -p $$` is not everywhere; /proc/self/stat field 5 is the pgid.
    let r = run(sh(
        "echo $$; cut -d' ' -f5 /proc/$$/stat; cat; echo stdin-done",
        dir.path(),
    ))
    .await;
    assert_eq!(r.outcome, ExecOutcome::Exited(0));
    let out = r.stream(Stream::Stdout);
    assert_eq!(out[0], out[1], "pid != pgid: not a group leader");
    assert_eq!(out[0].parse::<u32>().unwrap(), r.pid.unwrap());
    let own_pgid = nix::unistd::getpgrp().as_raw().to_string();
    assert_ne!(out[1], own_pgid);
    assert_eq!(out[2], "stdin-done");
}

#[tokio::test]
async fn timeout_kills_the_whole_group() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = sh(
        "sleep 300 & echo $! > grandchild.pid; echo started; wait",
        dir.path(),
    );
    spec.timeout = Some(Duration::from_secs(1));
    let r = run(spec).await;
    assert_eq!(r.outcome, ExecOutcome::TimedOut);
    assert!(
        r.elapsed >= Duration::from_millis(950) && r.elapsed < Duration::from_secs(3),
        "{:?}",
        r.elapsed
    );
    assert_eq!(r.stream(Stream::Stdout), ["started"]);
    assert_dies(read_pid(&dir.path().join("grandchild.pid"))).await;
    assert_dies(r.pid.unwrap()).await;
}

#[tokio::test]
async fn cancel_kills_the_whole_group_after_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    // The shell traps SIGTERM (it must receive one) and reports it; its child dies from it.
    let spec = sh(
        "trap 'echo got-term; exit 0' TERM; sleep 300 & echo $! > grandchild.pid; wait",
        dir.path(),
    );
    let cancel = CancellationToken::new();
    let c = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        c.cancel();
    });
    let r = run_with(spec, cancel).await;
    assert_eq!(r.outcome, ExecOutcome::Cancelled);
    assert!(
        r.elapsed >= Duration::from_millis(950) && r.elapsed < Duration::from_secs(3),
        "{:?}",
        r.elapsed
    );
    // Output written in response to SIGTERM is still drained.
    assert_eq!(r.stream(Stream::Stdout), ["got-term"]);
    assert_dies(read_pid(&dir.path().join("grandchild.pid"))).await;
}

#[tokio::test]
async fn already_cancelled_token_starts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    let r = run_with(sh("touch started", dir.path()), cancel).await;
    assert_eq!(r.outcome, ExecOutcome::Cancelled);
    assert!(r.pid.is_none());
    assert!(!dir.path().join("started").exists());
}

#[tokio::test]
async fn sigterm_ignoring_group_is_sigkilled_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    // SIG_IGN is inherited: the background sleep ignores SIGTERM too.
    let mut spec = sh(
        "trap '' TERM; sleep 60 & echo $! > grandchild.pid; sleep 60",
        dir.path(),
    );
    spec.timeout = Some(Duration::from_millis(500));
    spec.kill_grace = Duration::from_secs(1);
    let r = run(spec).await;
    assert_eq!(r.outcome, ExecOutcome::TimedOut);
    assert!(
        r.elapsed >= Duration::from_millis(1450) && r.elapsed < Duration::from_secs(4),
        "SIGKILL should come after timeout + grace: {:?}",
        r.elapsed
    );
    assert_dies(read_pid(&dir.path().join("grandchild.pid"))).await;
}

#[tokio::test]
async fn a_grandchild_that_ignores_sigterm_is_killed_even_if_the_leader_exits() {
    let dir = tempfile::tempdir().unwrap();
    // The leader dies on SIGTERM at once; the grandchild ignores it and holds the pipes.
    let mut spec = sh(
        "(trap '' TERM; exec sleep 60) & echo $! > grandchild.pid; sleep 60",
        dir.path(),
    );
    spec.timeout = Some(Duration::from_millis(300));
    spec.kill_grace = Duration::from_millis(700);
    let r = run(spec).await;
    assert_eq!(r.outcome, ExecOutcome::TimedOut);
    assert!(r.elapsed < Duration::from_secs(3), "{:?}", r.elapsed);
    assert_dies(read_pid(&dir.path().join("grandchild.pid"))).await;
}

#[tokio::test]
async fn leftovers_do_not_outlive_a_normal_exit_nor_block_it() {
    let dir = tempfile::tempdir().unwrap();
    // The background sleep keeps stdout open after the leader exited.
    let r = run(sh(
        "sleep 300 & echo $! > grandchild.pid; echo done",
        dir.path(),
    ))
    .await;
    assert_eq!(r.outcome, ExecOutcome::Exited(0));
    assert_eq!(r.stream(Stream::Stdout), ["done"]);
    assert!(r.elapsed < Duration::from_secs(3), "{:?}", r.elapsed);
    assert_dies(read_pid(&dir.path().join("grandchild.pid"))).await;
}

#[tokio::test]
async fn dropping_the_future_kills_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("grandchild.pid");
    let (tx, _rx) = mpsc::channel(16);
    let leader = Arc::new(AtomicU32::new(0));
    let l = leader.clone();
    let task = tokio::spawn(process::run(
        sh("sleep 300 & echo $! > grandchild.pid; wait", dir.path()),
        tx,
        CancellationToken::new(),
        move |pid| l.store(pid, Ordering::SeqCst),
    ));
    for _ in 0..100 {
        if std::fs::read_to_string(&pid_file).is_ok_and(|s| s.ends_with('\n')) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_dies(read_pid(&pid_file)).await;
    assert_dies(leader.load(Ordering::SeqCst)).await;
}

#[tokio::test]
async fn killed_by_an_outside_signal_is_signaled() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(sh("kill -9 $$", dir.path())).await;
    assert_eq!(r.outcome, ExecOutcome::Signaled(9));
}

#[tokio::test]
async fn spawn_failures_name_the_program_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let spec = |argv: Vec<OsString>| ExecSpec {
        argv,
        cwd: dir.path().to_path_buf(),
        env: vec![],
        timeout: None,
        kill_grace: Duration::from_secs(1),
    };

    let r = run(spec(vec!["./flows/missing.sh".into()])).await;
    let ExecOutcome::SpawnFailed(m) = &r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert!(m.contains("flows/missing.sh"), "{m}");
    assert!(m.contains("No such file"), "{m}");
    assert!(r.pid.is_none());

    let r = run(spec(vec!["ferry-no-such-program-x1".into()])).await;
    let ExecOutcome::SpawnFailed(m) = &r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert!(
        m.contains("ferry-no-such-program-x1") && m.contains("PATH"),
        "{m}"
    );

    std::fs::create_dir(dir.path().join("flows")).unwrap();
    write_file(
        &dir.path().join("flows/run.sh"),
        "#!/bin/sh\necho hi\n",
        0o644,
    );
    let r = run(spec(vec!["./flows/run.sh".into()])).await;
    let ExecOutcome::SpawnFailed(m) = &r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert!(m.contains("flows/run.sh"), "{m}");
    assert!(
        m.contains("Permission denied") && m.contains("chmod +x"),
        "{m}"
    );
    assert!(r.pid.is_none());

    let mut s = spec(vec!["sh".into()]);
    s.cwd = dir.path().join("nope");
    let r = run(s).await;
    let ExecOutcome::SpawnFailed(m) = &r.outcome else {
        panic!("{:?}", r.outcome)
    };
    assert!(m.contains("working directory"), "{m}");
}

#[tokio::test]
async fn executable_entrypoints_run_relative_to_cwd_not_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("bin")).unwrap();
    write_file(
        &dir.path().join("bin/run.sh"),
        "#!/bin/sh\necho \"ran $0 $FERRY_X\"\n",
        0o755,
    );
    let entry = Entrypoint::parse("bin/run.sh").unwrap();
    let argv = process::entrypoint_argv(&entry, "python3");
    assert_eq!(argv, [OsString::from("./bin/run.sh")]);

    let spec = ExecSpec {
        argv,
        cwd: dir.path().to_path_buf(),
        env: vec![("FERRY_X".into(), "x".into())],
        timeout: None,
        kill_grace: Duration::from_secs(1),
    };
    let r = run(spec).await;
    assert_eq!(r.outcome, ExecOutcome::Exited(0), "{:?}", r.lines);
    let out = r.stream(Stream::Stdout);
    assert!(
        out[0].starts_with("ran ") && out[0].ends_with("bin/run.sh x"),
        "{out:?}"
    );

    // A single-component path is still relative to cwd, not a PATH lookup.
    let entry = Entrypoint::parse("sh").unwrap();
    assert_eq!(
        process::entrypoint_argv(&entry, "python3"),
        [OsString::from("./sh")]
    );
    let r = run(ExecSpec {
        argv: process::entrypoint_argv(&entry, "python3"),
        cwd: dir.path().to_path_buf(),
        env: vec![],
        timeout: None,
        kill_grace: Duration::from_secs(1),
    })
    .await;
    assert!(
        matches!(r.outcome, ExecOutcome::SpawnFailed(_)),
        "{:?}",
        r.outcome
    );
}

#[tokio::test]
async fn lines_are_delivered_while_the_process_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::channel(16);
    let spec = sh("echo first; sleep 2; echo second", dir.path());
    let handle = tokio::spawn(process::run(spec, tx, CancellationToken::new(), |_| {}));
    let first = tokio::time::timeout(Duration::from_millis(1500), rx.recv())
        .await
        .expect("the first line did not arrive while the process was running")
        .unwrap();
    assert_eq!(first.line, "first");
    assert!(
        !handle.is_finished(),
        "run() returned before the process ended"
    );
    let second = rx.recv().await.unwrap();
    assert_eq!(second.line, "second");
    assert!(second.at - first.at >= chrono::Duration::milliseconds(1500));
    assert_eq!(handle.await.unwrap(), ExecOutcome::Exited(0));
    assert!(rx.recv().await.is_none());
}

// ---------- Python shim ----------

fn python_flow(dir: &Path, file: &str, code: &str, function: &str) -> ExecSpec {
    let path = dir.join(file);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, code).unwrap();
    let entry = Entrypoint::parse(&format!("{file}:{function}")).unwrap();
    ExecSpec {
        argv: process::entrypoint_argv(&entry, "python3"),
        cwd: dir.to_path_buf(),
        env: vec![],
        timeout: Some(Duration::from_secs(20)),
        kill_grace: Duration::from_secs(1),
    }
}

#[test]
fn python_argv_shape() {
    let entry = Entrypoint::parse("flows/etl.py:main").unwrap();
    let argv = process::entrypoint_argv(&entry, "/opt/py/bin/python");
    let expected: Vec<OsString> = vec![
        "/opt/py/bin/python".into(),
        "-u".into(),
        "-c".into(),
        process::PYTHON_SHIM.into(),
        "flows/etl.py".into(),
        "main".into(),
    ];
    assert_eq!(argv, expected);
}

#[tokio::test]
async fn python_function_gets_parameters() {
    let dir = tempfile::tempdir().unwrap();
    // A sibling module is importable (the file's directory is on sys.path).
    std::fs::create_dir(dir.path().join("flows")).unwrap();
    std::fs::write(dir.path().join("flows/helper.py"), "SUFFIX = '!'\n").unwrap();
    let mut spec = python_flow(
        dir.path(),
        "flows/double.py",
        "import helper\n\ndef main(n, name=\"x\"):\n    print(n * 2, name)\n    print(__name__ + helper.SUFFIX)\n",
        "main",
    );
    spec.env = vec![("FERRY_PARAMETERS".into(), r#"{"n": 21}"#.into())];
    let r = run(spec).await;
    assert_eq!(r.outcome, ExecOutcome::Exited(0), "{:?}", r.lines);
    assert_eq!(r.stream(Stream::Stdout), ["42 x", "__ferry_flow__!"]);
}

#[tokio::test]
async fn python_exception_exits_1_with_traceback() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(python_flow(
        dir.path(),
        "flow.py",
        "def main():\n    raise ValueError('bad input')\n",
        "main",
    ))
    .await;
    assert_eq!(r.outcome, ExecOutcome::Exited(1), "{:?}", r.lines);
    let err = r.stream(Stream::Stderr);
    assert!(
        err.iter().any(|l| l.contains("ValueError: bad input")),
        "{err:?}"
    );
    assert!(err.iter().any(|l| l.contains("flow.py")), "{err:?}");
}

#[tokio::test]
async fn python_missing_function_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(python_flow(
        dir.path(),
        "flow.py",
        "def main():\n    pass\n",
        "absent",
    ))
    .await;
    assert_eq!(r.outcome, ExecOutcome::Exited(2), "{:?}", r.lines);
    assert_eq!(
        r.stream(Stream::Stderr),
        ["ferry: module flow.py has no function absent"]
    );
}

#[tokio::test]
async fn python_async_function_is_awaited() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = python_flow(
        dir.path(),
        "flow.py",
        "import asyncio\n\nasync def main(word):\n    await asyncio.sleep(0.01)\n    print('async', word)\n",
        "main",
    );
    spec.env = vec![("FERRY_PARAMETERS".into(), r#"{"word": "ok"}"#.into())];
    let r = run(spec).await;
    assert_eq!(r.outcome, ExecOutcome::Exited(0), "{:?}", r.lines);
    assert_eq!(r.stream(Stream::Stdout), ["async ok"]);
}

#[tokio::test]
async fn python_sys_exit_keeps_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let r = run(python_flow(
        dir.path(),
        "flow.py",
        "import sys\n\ndef main():\n    print('before')\n    sys.exit(4)\n",
        "main",
    ))
    .await;
    assert_eq!(r.outcome, ExecOutcome::Exited(4), "{:?}", r.lines);
    assert_eq!(r.stream(Stream::Stdout), ["before"]);
}
