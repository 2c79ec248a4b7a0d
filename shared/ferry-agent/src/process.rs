//! Runs one flow run's process.
//!
//! The child runs in its own process group (so a Ctrl-C in the agent's terminal does not reach
//! it, and so the whole tree it starts can be signalled at once), with stdin on `/dev/null` and
//! stdout/stderr captured line by line with timestamps.
//!
//! Stopping (timeout or cancellation) signals the whole group: SIGTERM, then SIGKILL once the
//! grace period is over if anything in the group is still alive. When the main process exits on
//! its own, whatever it left behind in its group is killed too: a run's processes do not outlive
//! the run. Output still buffered in the pipes is read for a short while afterwards, but a
//! process that escaped the group and keeps a pipe open cannot make [`run`] hang.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ferry_core::deployment::Entrypoint;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Longest line sent as one [`OutputLine`]; longer lines are split.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// How long the pipes are still read once the main process has exited (or the group was
/// killed) before reading stops.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// How often the group is checked for survivors during the kill grace period.
const GROUP_POLL: Duration = Duration::from_millis(50);

/// The Python shim (`shim.py` beside this file), run with
/// `python -u -c PYTHON_SHIM <file.py> <function>` for a cold run and with `--warm` first for a
/// warm process ([`crate::warm`]).
///
/// It imports the file as module `__ferry_flow__` (the file's directory and the working directory
/// first on `sys.path`), calls `function(**parameters)` with the JSON object in
/// `FERRY_PARAMETERS`, and runs the result with `asyncio.run` if it is a coroutine. An exception
/// prints its traceback and exits 1; a missing function or bad parameters exit 2; `SystemExit`
/// keeps its code.
///
/// When `FERRY_RESULT_PATH` is set, the function's return value (the coroutine's, for an
/// `async def`) is written there as compact JSON, `None` as `null` (`crate::result` reads it).
/// A value `json.dumps` refuses (or NaN/Infinity, which are not JSON) is not written: a
/// `ferry:` warning on stderr names its type, and the run still completes.
pub const PYTHON_SHIM: &str = include_str!("shim.py");

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The child's standard output.
    Stdout,
    /// The child's standard error.
    Stderr,
}

/// One captured output line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputLine {
    /// When the agent read the line.
    pub at: DateTime<Utc>,
    /// Where it came from.
    pub stream: Stream,
    /// The line, without its line ending (`\n` or `\r\n`).
    pub line: String,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ExecSpec {
    /// Program and arguments. A bare program name is looked up on `PATH`; a relative path with a
    /// `/` is relative to `cwd`.
    pub argv: Vec<OsString>,
    /// Working directory of the child.
    pub cwd: PathBuf,
    /// Added to the inherited environment.
    pub env: Vec<(String, String)>,
    /// Kill the group after this long.
    pub timeout: Option<Duration>,
    /// Between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
}

/// How a run's process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    /// It exited with this code.
    Exited(i32),
    /// It was killed by a signal not sent by us (signal number).
    Signaled(i32),
    /// We killed it because of the timeout.
    TimedOut,
    /// We killed it because `cancel` fired.
    Cancelled,
    /// It could not be started (or, rarely, could no longer be waited for); the message names the
    /// program, the OS error and, when there is one, the likely fix.
    SpawnFailed(String),
}

/// Why we stopped the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Timeout,
    Cancel,
}

/// Kills the process group if the run's future is dropped before the leader was reaped.
struct GroupGuard {
    pgid: Pid,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            tracing::warn!(pgid = %self.pgid, "run abandoned: killing its process group");
            let _ = killpg(self.pgid, Signal::SIGKILL);
        }
    }
}

/// Runs the process to completion.
///
/// Every output line is sent to `lines` as soon as it is read (lines longer than
/// [`MAX_LINE_BYTES`] are split; invalid UTF-8 is replaced lossily; a final line without `\n` is
/// still sent). If the receiver is gone, output is still read (and dropped) so the child never
/// blocks on a full pipe. `on_start` gets the pid (which is also the process group id) once the
/// process is started; it is not called if it could not be started, or if `cancel` had already
/// fired (then nothing is started and the outcome is [`ExecOutcome::Cancelled`]).
///
/// Returns once the process has exited and both pipes are drained, reading them for at most
/// [`DRAIN_TIMEOUT`] after the main process exited or the group was killed. If the returned
/// future is dropped early, the process group is killed with SIGKILL.
pub async fn run(
    spec: ExecSpec,
    lines: mpsc::Sender<OutputLine>,
    cancel: CancellationToken,
    on_start: impl FnOnce(u32) + Send,
) -> ExecOutcome {
    if cancel.is_cancelled() {
        return ExecOutcome::Cancelled;
    }
    let mut child = match spawn(&spec).await {
        Ok(c) => c,
        Err(message) => return ExecOutcome::SpawnFailed(message),
    };
    let Some(pid) = child.id() else {
        // Only possible once the child was reaped, which has not happened yet.
        return ExecOutcome::SpawnFailed(format!(
            "cannot start {}: the process vanished",
            display_program(&spec.argv[0])
        ));
    };
    let started = Started {
        pid,
        stdout: child.stdout.take().map(|p| Box::new(p) as Output),
        stderr: child.stderr.take().map(|p| Box::new(p) as Output),
        exit: Box::pin(async move { child.wait().await }),
        program: display_program(&spec.argv[0]),
    };
    supervise_started(started, &spec, lines, cancel, on_start).await
}

/// A pipe the run's output is read from.
pub type Output = Box<dyn AsyncRead + Unpin + Send>;

/// A started process's exit status, once it exited and was reaped.
pub type Exit = std::pin::Pin<Box<dyn std::future::Future<Output = io::Result<ExitStatus>> + Send>>;

/// A run's process once started, however it was started (spawned here, or forked by a warm
/// process): its pid (also its process group id), its output pipes, and its exit status.
pub struct Started {
    /// The pid, which is also the process group id.
    pub pid: u32,
    /// The child's standard output.
    pub stdout: Option<Output>,
    /// The child's standard error.
    pub stderr: Option<Output>,
    /// Resolves once the process exited (and was reaped), with its status.
    pub exit: Exit,
    /// What it runs, for messages.
    pub program: String,
}

/// Drives a started run to its end, as [`run`] describes: output lines, timeout, cancel, the
/// group killed when the leader is gone.
pub async fn supervise_started(
    started: Started,
    spec: &ExecSpec,
    lines: mpsc::Sender<OutputLine>,
    cancel: CancellationToken,
    on_start: impl FnOnce(u32) + Send,
) -> ExecOutcome {
    let Started {
        pid,
        stdout,
        stderr,
        mut exit,
        program,
    } = started;
    let pgid = Pid::from_raw(pid as i32);
    let mut guard = GroupGuard { pgid, armed: true };
    on_start(pid);
    tracing::debug!(pid, "flow process started");

    let pumps = async {
        tokio::join!(
            pump(stdout, Stream::Stdout, &lines),
            pump(stderr, Stream::Stderr, &lines)
        )
    };
    tokio::pin!(pumps);
    let control = supervise(&mut exit, pgid, spec, &cancel);
    tokio::pin!(control);

    let mut drained = false;
    let (status, stop) = loop {
        tokio::select! {
            r = &mut control => break r,
            _ = &mut pumps, if !drained => drained = true,
        }
    };
    // The leader is reaped: its pid may only be reused once its group is empty.
    guard.armed = false;

    if !drained {
        drained = tokio::time::timeout(DRAIN_TIMEOUT, &mut pumps)
            .await
            .is_ok();
    }
    // Whatever the run left behind in its group goes with it.
    if killpg(pgid, Signal::SIGKILL).is_ok() {
        tracing::debug!(pid, "killed what was left of the run's process group");
    }
    if !drained
        && tokio::time::timeout(DRAIN_TIMEOUT, &mut pumps)
            .await
            .is_err()
    {
        tracing::warn!(
            pid,
            "a process outside the run's group keeps its output open: stopped reading"
        );
    }

    match (stop, status) {
        (Some(Stop::Timeout), _) => ExecOutcome::TimedOut,
        (Some(Stop::Cancel), _) => ExecOutcome::Cancelled,
        (None, Ok(status)) => outcome_of(status),
        (None, Err(e)) => {
            ExecOutcome::SpawnFailed(format!("lost track of {program} (pid {pid}): {e}"))
        }
    }
}

fn outcome_of(status: ExitStatus) -> ExecOutcome {
    match (status.code(), status.signal()) {
        (Some(code), _) => ExecOutcome::Exited(code),
        (None, Some(sig)) => ExecOutcome::Signaled(sig),
        // Neither: not possible for a terminated process on Unix.
        (None, None) => ExecOutcome::Exited(-1),
    }
}

/// Waits for the leader to exit, or stops the group on timeout or cancellation.
async fn supervise(
    exit: &mut Exit,
    pgid: Pid,
    spec: &ExecSpec,
    cancel: &CancellationToken,
) -> (io::Result<ExitStatus>, Option<Stop>) {
    let timeout = async {
        match spec.timeout {
            Some(t) => tokio::time::sleep(t).await,
            None => std::future::pending().await,
        }
    };
    let stop = tokio::select! {
        biased;
        status = &mut *exit => return (status, None),
        _ = cancel.cancelled() => Stop::Cancel,
        _ = timeout => Stop::Timeout,
    };
    tracing::info!(pgid = %pgid, reason = ?stop, "stopping the process group: SIGTERM");
    let _ = killpg(pgid, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + spec.kill_grace;

    let status = tokio::time::timeout_at(deadline, &mut *exit).await.ok();
    if status.is_some() {
        // The leader is gone; give the rest of the group the same grace.
        while group_alive(pgid) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(GROUP_POLL).await;
        }
    }
    if group_alive(pgid) {
        tracing::info!(pgid = %pgid, "process group still alive after the grace period: SIGKILL");
        let _ = killpg(pgid, Signal::SIGKILL);
    }
    let status = match status {
        Some(s) => s,
        None => exit.await,
    };
    (status, Some(stop))
}

fn group_alive(pgid: Pid) -> bool {
    killpg(pgid, None::<Signal>).is_ok()
}

/// Spawns the child in its own process group; retries briefly on ETXTBSY (a file just written
/// by this process can be briefly "busy" while another thread forks).
async fn spawn(spec: &ExecSpec) -> Result<Child, String> {
    let Some(program) = spec.argv.first() else {
        return Err("cannot start the flow: the command is empty".into());
    };
    let path = Path::new(program);
    let mut cmd = if path.is_relative() && path.components().count() > 1 {
        // Relative to the child's working directory, never looked up on PATH.
        let mut c = Command::new(spec.cwd.join(path));
        c.arg0(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(&spec.argv[1..])
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false);

    let mut attempt = 0;
    loop {
        match cmd.spawn() {
            Ok(child) => return Ok(child),
            Err(e) if e.raw_os_error() == Some(nix::libc::ETXTBSY) && attempt < 10 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
            }
            Err(e) => return Err(spawn_error(spec, program, &e)),
        }
    }
}

fn spawn_error(spec: &ExecSpec, program: &OsStr, e: &io::Error) -> String {
    let shown = display_program(program);
    if !spec.cwd.is_dir() {
        return format!(
            "cannot start {shown}: the working directory {} does not exist",
            spec.cwd.display()
        );
    }
    let path = Path::new(program);
    let bare = path.components().count() == 1 && path.is_relative();
    let file = spec.cwd.join(path);
    let hint = match e.kind() {
        io::ErrorKind::NotFound if bare => "not found on PATH".to_string(),
        io::ErrorKind::NotFound if file.exists() => {
            "the interpreter on its #! line was not found".to_string()
        }
        io::ErrorKind::NotFound => format!("no such file in {}", spec.cwd.display()),
        io::ErrorKind::PermissionDenied if file.is_dir() => "it is a directory".to_string(),
        io::ErrorKind::PermissionDenied => "make it executable (chmod +x)".to_string(),
        _ if e.raw_os_error() == Some(nix::libc::ENOEXEC) => {
            "it is not a program: start the script with a #! line (e.g. #!/bin/sh)".to_string()
        }
        _ => String::new(),
    };
    if hint.is_empty() {
        format!("cannot start {shown}: {e}")
    } else {
        format!("cannot start {shown}: {e}: {hint}")
    }
}

fn display_program(program: &OsStr) -> String {
    let s = program.to_string_lossy();
    s.strip_prefix("./").unwrap_or(&s).to_owned()
}

/// Reads one pipe to its end, sending each line.
async fn pump<R: AsyncRead + Unpin>(
    pipe: Option<R>,
    stream: Stream,
    tx: &mpsc::Sender<OutputLine>,
) {
    let Some(pipe) = pipe else { return };
    let mut reader = BufReader::with_capacity(MAX_LINE_BYTES, pipe);
    let mut out = LineSender {
        tx,
        stream,
        open: true,
    };
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let chunk = match reader.fill_buf().await {
            Ok([]) => break,
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(?stream, error = %e, "cannot read the flow's output");
                break;
            }
        };
        let room = MAX_LINE_BYTES - buf.len();
        // A newline right after a full buffer still ends that line.
        let window = &chunk[..chunk.len().min(room + 1)];
        if let Some(i) = window.iter().position(|&b| b == b'\n') {
            buf.extend_from_slice(&chunk[..i]);
            reader.consume(i + 1);
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            out.send(&buf).await;
            buf.clear();
        } else if room == 0 {
            // Split an over-long line, keeping a UTF-8 sequence cut in two for the next part.
            let keep = match std::str::from_utf8(&buf) {
                Err(e) if e.error_len().is_none() => buf.len() - e.valid_up_to(),
                _ => 0,
            };
            let tail = buf.split_off(buf.len() - keep);
            out.send(&buf).await;
            buf = tail;
        } else {
            let n = chunk.len().min(room);
            buf.extend_from_slice(&chunk[..n]);
            reader.consume(n);
        }
    }
    if !buf.is_empty() {
        out.send(&buf).await;
    }
}

struct LineSender<'a> {
    tx: &'a mpsc::Sender<OutputLine>,
    stream: Stream,
    /// False once the receiver is gone: lines are then read and dropped.
    open: bool,
}

impl LineSender<'_> {
    async fn send(&mut self, bytes: &[u8]) {
        if !self.open {
            return;
        }
        let line = OutputLine {
            at: Utc::now(),
            stream: self.stream,
            line: String::from_utf8_lossy(bytes).into_owned(),
        };
        if self.tx.send(line).await.is_err() {
            self.open = false;
        }
    }
}

/// The argv for an entrypoint: `path/file.py:function` →
/// `[python, "-u", "-c", PYTHON_SHIM, path, function]`; an executable path → `["./path"]`
/// (relative to the working directory, never looked up on `PATH`).
pub fn entrypoint_argv(entrypoint: &Entrypoint, python: &str) -> Vec<OsString> {
    match entrypoint {
        Entrypoint::Python { path, function } => vec![
            python.into(),
            "-u".into(),
            "-c".into(),
            PYTHON_SHIM.into(),
            path.into(),
            function.into(),
        ],
        Entrypoint::Executable { path } => {
            let path = path.strip_prefix("./").unwrap_or(path);
            vec![format!("./{path}").into()]
        }
    }
}
