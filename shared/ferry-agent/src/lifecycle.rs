//! One claimed run from claim to final state: wait for its scheduled time (renewing the
//! lease), fetch and unpack its bundle, start its process (`crate::process`), heartbeat, stream
//! its logs, stop it on cancel/timeout/shutdown, and record how it ended.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_app::Heartbeat;
use ferry_core::deployment::{Deployment, Infrastructure};
use ferry_core::ports::{LogLine, LogStream};
use ferry_core::state::RunEvent;
use ferry_core::FlowRun;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::agent::AgentConfig;
use crate::bundle_cache::BundleCache;
use crate::plane::{ControlPlane, PlaneError};
use crate::process::{self, ExecOutcome, ExecSpec, OutputLine, Stream};
use crate::warm_run as warm;

pub(crate) struct RunContext {
    pub plane: Arc<dyn ControlPlane>,
    pub cfg: Arc<AgentConfig>,
    pub cache: Arc<BundleCache>,
    /// The agent's warm processes; `None` where runs always start cold (a one-run agent).
    pub warm: Option<Arc<crate::warm::WarmPool>>,
    /// The agent stops claiming: prefetched runs not yet started are given back.
    pub shutdown: CancellationToken,
    /// The shutdown grace is over: running processes are killed.
    pub kill: CancellationToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    UserCancel,
    LeaseLost,
    Shutdown,
}

/// Runs one claimed run to its end. Returns whether it reached a final state here.
pub(crate) async fn execute(ctx: RunContext, run: FlowRun, deployment: Deployment) -> bool {
    let span = tracing::info_span!("run", run_id = %run.id, deployment = %run.deployment, queue = %run.work_queue);
    async move {
        match execute_inner(&ctx, run, deployment).await {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(error = %ferry_core::error::error_chain(&e), "run handling failed; the reaper will take over when the lease expires");
                false
            }
        }
    }
    .instrument(span)
    .await
}

async fn log(ctx: &RunContext, run: &FlowRun, line: String) {
    let l = LogLine {
        at: ctx.plane.now(),
        stream: LogStream::Ferry,
        line,
    };
    if let Err(e) = ctx.plane.append_logs(run, &[l]).await {
        tracing::warn!(error = %ferry_core::error::error_chain(&e), "cannot write the run log");
    }
}

async fn execute_inner(
    ctx: &RunContext,
    mut run: FlowRun,
    deployment: Deployment,
) -> Result<bool, PlaneError> {
    // The lease is renewed all along. The first renewal is at once when the claim took a third
    // of the lease to reach us (a slow store or API), else after one period.
    let mut hb = tokio::time::interval(ctx.cfg.heartbeat_every);
    let left = run
        .lease
        .as_ref()
        .and_then(|l| (l.expires_at - ctx.plane.now()).to_std().ok())
        .unwrap_or_default();
    if left > ctx.cfg.heartbeat_every * 4 {
        hb.tick().await;
    }

    // Removed whichever way this function returns.
    let work = WorkDir(ctx.cfg.work_dir.join(run.id.to_string()));
    let entry = &deployment.spec.entrypoint;
    let python = match &deployment.spec.infrastructure {
        Infrastructure::Process { python: Some(p) } => p.clone(),
        _ => ctx.cfg.python.clone(),
    };
    // Everything a run needs is made ready before its scheduled time (a prefetched run then
    // only forks or spawns when due): its code — a warm process, or the bundle unpacked —, its
    // environment, its secrets.
    let mut warm = warm::plan(ctx, &deployment, &python);
    if let Some(plan) = &warm {
        let ready = plan.prepare(ctx, &deployment);
        let (left, ready) = holding_lease(ctx, &mut run, &mut hb, ready).await;
        if left {
            return Ok(false);
        }
        if let Err(reason) = ready {
            log(ctx, &run, format!("cold start: {reason}")).await;
            warm = None;
        }
    }
    // A warm run starts in its warm process's directory: `cwd` is for a cold start (a warm run
    // that falls back unpacks its bundle then).
    let mut cwd = match (&warm, &deployment.spec.bundle) {
        (None, Some(b)) => {
            match unpack_holding_lease(ctx, &mut run, &mut hb, &b.sha256, &work).await {
                Some(Ok(())) => work.0.clone(),
                Some(Err(reason)) => return fail(ctx, run, None, reason).await,
                None => return Ok(false),
            }
        }
        _ => std::env::current_dir().unwrap_or_else(|_| ".".into()),
    };
    let mut env: Vec<(String, String)> = deployment
        .spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Secret references become values in the child's environment only, just before it starts.
    let resolved = crate::secrets::resolve_env(&ctx.cfg.secrets, &mut env);
    let (left, resolved) = holding_lease(ctx, &mut run, &mut hb, resolved).await;
    if left {
        return Ok(false);
    }
    let masker = match resolved {
        Ok(m) => Arc::new(m),
        Err(reason) => return fail(ctx, run, None, reason).await,
    };
    env.extend([
        ("FERRY_RUN_ID".into(), run.id.to_string()),
        ("FERRY_DEPLOYMENT".into(), run.deployment.to_string()),
        ("FERRY_ATTEMPT".into(), run.attempt.to_string()),
        (
            "FERRY_SCHEDULED_TIME".into(),
            run.scheduled_time.to_rfc3339(),
        ),
        (
            "FERRY_PARAMETERS".into(),
            serde_json::Value::Object(run.parameters.clone()).to_string(),
        ),
    ]);
    let result_file = crate::result::ResultFile::new(&ctx.cfg.work_dir, &run, entry);
    env.extend(result_file.env());
    let timeout = deployment.spec.timeout_seconds.map(Duration::from_secs);

    // A prefetched run starts at its scheduled time, not before.
    loop {
        let wait = (run.scheduled_time - ctx.plane.now())
            .to_std()
            .unwrap_or_default();
        if wait.is_zero() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = ctx.shutdown.cancelled() => {
                ctx.plane.release(&run).await?;
                tracing::info!("agent shutting down: released the run before its start");
                return Ok(false);
            }
            _ = hb.tick() => match ctx.plane.heartbeat(&run).await? {
                Heartbeat::Renewed(r) => run = *r,
                Heartbeat::CancelRequested(r) | Heartbeat::Lost(r) => {
                    // Cancelled while pending: it is already final (or someone else's).
                    tracing::info!(state = %r.state, "run left us before it started");
                    return Ok(false);
                }
            },
        }
    }

    let Some(started) = ctx.plane.start(&run).await? else {
        tracing::info!("run was cancelled before it started");
        return Ok(false);
    };
    run = started;
    tracing::info!("run started");

    // A warm run forks now; one that cannot starts cold (its bundle unpacked only now).
    let forked = match &warm {
        Some(plan) => match plan.fork(ctx, &deployment, &run, &work.0, &env).await {
            Ok(f) => {
                log(ctx, &run, f.note).await;
                Some(f.started)
            }
            Err(reason) => {
                log(ctx, &run, format!("cold start: {reason}")).await;
                if let Some(b) = &deployment.spec.bundle {
                    match unpack_holding_lease(ctx, &mut run, &mut hb, &b.sha256, &work).await {
                        Some(Ok(())) => cwd = work.0.clone(),
                        Some(Err(reason)) => return fail(ctx, run, None, reason).await,
                        None => return Ok(false),
                    }
                }
                None
            }
        },
        None => None,
    };
    let spec = ExecSpec {
        argv: process::entrypoint_argv(entry, &python),
        cwd,
        env,
        timeout,
        kill_grace: ctx.cfg.kill_grace,
    };

    let (tx, rx) = mpsc::channel::<OutputLine>(1024);
    let writer = tokio::spawn(write_logs(ctx.plane.clone(), run.clone(), rx, masker));
    let cancel = CancellationToken::new();
    let (guard, group) = (ctx.cfg.guard.clone(), Arc::new(AtomicU32::new(0)));
    let started_group = group.clone();
    let on_start = move |pid| {
        tracing::debug!(pid, "flow process started");
        if let Some(g) = guard {
            g.watch(pid);
        }
        started_group.store(pid, Ordering::SeqCst);
    };
    let exec_fut = async {
        match forked {
            Some(started) => {
                process::supervise_started(started, &spec, tx, cancel.clone(), on_start).await
            }
            None => process::run(spec.clone(), tx, cancel.clone(), on_start).await,
        }
    };
    tokio::pin!(exec_fut);
    let mut stop: Option<StopReason> = None;
    let outcome = loop {
        tokio::select! {
            o = &mut exec_fut => break o,
            _ = hb.tick() => match ctx.plane.heartbeat(&run).await {
                Ok(Heartbeat::Renewed(r)) => run = *r,
                Ok(Heartbeat::CancelRequested(r)) => {
                    run = *r;
                    if stop.is_none() {
                        tracing::info!("cancel requested: stopping the process group");
                        stop = Some(StopReason::UserCancel);
                        cancel.cancel();
                    }
                }
                Ok(Heartbeat::Lost(r)) => {
                    run = *r;
                    if stop.is_none() {
                        tracing::warn!(state = %run.state, "lost the run's lease: stopping the process group");
                        stop = Some(StopReason::LeaseLost);
                        cancel.cancel();
                    }
                }
                Err(e) => tracing::warn!(error = %ferry_core::error::error_chain(&e), "heartbeat failed; retrying"),
            },
            _ = ctx.kill.cancelled(), if stop.is_none() => {
                stop = Some(StopReason::Shutdown);
                cancel.cancel();
            }
        }
    };
    if let (Some(g), pid @ 1..) = (&ctx.cfg.guard, group.load(Ordering::SeqCst)) {
        g.release(pid); // process::run has killed what was left of the group
    }
    let last_stderr = match writer.await {
        Ok(last) => last,
        Err(e) => {
            tracing::error!(error = %e, "the log writer failed");
            None
        }
    };
    // A Python flow that raised ends its stderr with the exception ("ValueError: bad input").
    let python_error = match entry {
        ferry_core::deployment::Entrypoint::Python { .. } => last_stderr,
        _ => None,
    };
    drop(work);

    let event = match (&outcome, stop) {
        (_, Some(StopReason::LeaseLost)) => return Ok(false),
        (ExecOutcome::Cancelled, Some(StopReason::UserCancel)) => RunEvent::ConfirmCancelled,
        (ExecOutcome::Cancelled, Some(StopReason::Shutdown)) | (ExecOutcome::Cancelled, None) => {
            RunEvent::Crash {
                reason: "the agent shut down before the run finished".into(),
            }
        }
        (ExecOutcome::Exited(0), _) => RunEvent::Complete { result: None },
        (ExecOutcome::Exited(code), _) => RunEvent::Fail {
            exit_code: Some(*code),
            reason: match &python_error {
                Some(e) => format!("{e} (exit code {code})"),
                None => format!("exit code {code}"),
            },
        },
        (ExecOutcome::Signaled(sig), _) => RunEvent::Fail {
            exit_code: None,
            reason: format!("killed by signal {sig}"),
        },
        (ExecOutcome::TimedOut, _) => RunEvent::Fail {
            exit_code: None,
            reason: format!(
                "timed out after {}s: the process group was terminated",
                timeout.unwrap_or_default().as_secs()
            ),
        },
        (ExecOutcome::SpawnFailed(m), _) => RunEvent::Fail {
            exit_code: None,
            reason: m.clone(),
        },
    };
    let done = crate::result::finish(ctx.plane.as_ref(), &run, event, &result_file).await?;
    log(
        ctx,
        &done,
        format!(
            "run ended: {}{}",
            done.state,
            done.state_message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        ),
    )
    .await;
    tracing::info!(state = %done.state, "run ended");
    Ok(done.state.is_terminal())
}

/// A run's work directory, removed when dropped (on every way out of a run, errors included).
struct WorkDir(std::path::PathBuf);

impl Drop for WorkDir {
    fn drop(&mut self) {
        match std::fs::remove_dir_all(&self.0) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(dir = %self.0.display(), error = %e, "cannot remove the run's work directory")
            }
        }
    }
}

/// Logs the fetch, then fetches and unpacks bundle `sha256` into `work` while renewing the
/// lease. `None`: the run left this agent meanwhile; `Some(Err)`: the reason the run fails.
async fn unpack_holding_lease(
    ctx: &RunContext,
    run: &mut FlowRun,
    hb: &mut tokio::time::Interval,
    sha256: &str,
    work: &WorkDir,
) -> Option<Result<(), String>> {
    log(ctx, run, format!("fetching bundle sha256 {sha256}")).await;
    // A large bundle can take longer than a lease to fetch: the lease is renewed meanwhile.
    let (left, fetched) = holding_lease(ctx, run, hb, fetch_bundle(ctx, sha256, work)).await;
    (!left).then_some(fetched)
}

/// Fetches (through the cache) and unpacks bundle `sha256` into `work`; `Err` is the reason
/// the run fails.
async fn fetch_bundle(ctx: &RunContext, sha256: &str, work: &WorkDir) -> Result<(), String> {
    let bytes = ctx
        .cache
        .get(ctx.plane.as_ref(), sha256)
        .await
        .map_err(|e| ferry_core::error::error_chain(&e))?;
    let dest = work.0.clone();
    tokio::task::spawn_blocking(move || ferry_bundle::unpack_into(&bytes, &dest))
        .await
        .map_err(|e| format!("bundle unpacking: {e}"))?
        .map(|_stats| ())
        .map_err(|e| format!("bundle rejected: {}", ferry_core::error::error_chain(&e)))
}

/// Drives `work` to its end while renewing `run`'s lease on `hb`'s ticks. Returns whether the
/// run left this agent meanwhile (cancelled while pending, or its lease lost), and `work`'s
/// output. A failed renewal is retried on the next tick.
async fn holding_lease<T>(
    ctx: &RunContext,
    run: &mut FlowRun,
    hb: &mut tokio::time::Interval,
    work: impl std::future::Future<Output = T>,
) -> (bool, T) {
    tokio::pin!(work);
    let mut left = false;
    loop {
        tokio::select! {
            out = &mut work => return (left, out),
            _ = hb.tick(), if !left => match ctx.plane.heartbeat(run).await {
                Ok(Heartbeat::Renewed(r)) => *run = *r,
                Ok(Heartbeat::CancelRequested(r) | Heartbeat::Lost(r)) => {
                    tracing::info!(state = %r.state, "run left us before it started");
                    *run = *r;
                    left = true;
                }
                Err(e) => tracing::warn!(error = %ferry_core::error::error_chain(&e), "heartbeat failed; retrying"),
            },
        }
    }
}

async fn fail(
    ctx: &RunContext,
    run: FlowRun,
    exit_code: Option<i32>,
    reason: String,
) -> Result<bool, PlaneError> {
    log(ctx, &run, reason.clone()).await;
    tracing::warn!(%reason, "run failed before its process started");
    let done = ctx
        .plane
        .finish(&run, RunEvent::Fail { exit_code, reason })
        .await?;
    Ok(done.state.is_terminal())
}

/// Longest exception line kept in a state message.
const MAX_ERROR_LINE: usize = 500;

/// The last stderr line worth quoting in a state message: not blank, not indented (a
/// traceback's frames are), not the traceback's header; cut to [`MAX_ERROR_LINE`] bytes.
fn error_line(line: &str) -> Option<String> {
    let line = line.trim_end();
    if line.is_empty() || line.starts_with(char::is_whitespace) || line.starts_with("Traceback ") {
        return None;
    }
    let mut end = line.len().min(MAX_ERROR_LINE);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    Some(line[..end].to_owned())
}

/// Forwards output lines, secret values masked, to the log sink in batches (every 200 ms or
/// 500 lines). Returns the last stderr line worth quoting (see [`error_line`]).
async fn write_logs(
    plane: Arc<dyn ControlPlane>,
    run: FlowRun,
    mut rx: mpsc::Receiver<OutputLine>,
    masker: Arc<crate::secrets::Masker>,
) -> Option<String> {
    let mut last_error = None;
    let mut batch = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            line = rx.recv() => match line {
                Some(mut l) => {
                    l.line = masker.mask(l.line);
                    if l.stream == Stream::Stderr && !l.line.trim().is_empty() {
                        last_error = error_line(&l.line);
                    }
                    batch.push(LogLine {
                        at: l.at,
                        stream: match l.stream { Stream::Stdout => LogStream::Stdout, Stream::Stderr => LogStream::Stderr },
                        line: l.line,
                    });
                    if batch.len() >= 500 {
                        flush(plane.as_ref(), &run, &mut batch).await;
                    }
                }
                None => break,
            },
            _ = tick.tick() => flush(plane.as_ref(), &run, &mut batch).await,
        }
    }
    flush(plane.as_ref(), &run, &mut batch).await;
    last_error
}

async fn flush(plane: &dyn ControlPlane, run: &FlowRun, batch: &mut Vec<LogLine>) {
    if batch.is_empty() {
        return;
    }
    if let Err(e) = plane.append_logs(run, batch).await {
        tracing::warn!(error = %ferry_core::error::error_chain(&e), lines = batch.len(), "cannot write run logs; dropping this batch");
    }
    batch.clear();
}

#[cfg(test)]
mod tests {
    use super::error_line;

    #[test]
    fn the_exception_line_of_a_traceback_is_quoted_and_its_frames_are_not() {
        assert_eq!(
            error_line("ValueError: bad input").as_deref(),
            Some("ValueError: bad input")
        );
        assert_eq!(error_line("  File \"x.py\", line 3, in main"), None);
        assert_eq!(error_line("Traceback (most recent call last):"), None);
        assert_eq!(error_line("   "), None);
        assert_eq!(error_line(&"é".repeat(400)).unwrap().len(), 500);
    }
}
