//! The `process/NAME` task launcher: a launched run's task is a local `ferry agent execute
//! RUN_ID --launch N` process of the same binary, started by the server that launches it — so
//! the whole launch path (pre-launch, dispatch, take-over, relaunch, cancel) runs on a laptop
//! and in the same tests as ECS.
//!
//! A task is known by its launch token (one process per run and launch, however often the
//! launch is retried); its output goes to `<dir>/<token>.log`. Tasks live in this process's
//! memory: after a restart an old task is "not found" (stopped), and the supervision relaunches
//! its run if the task did not take it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ferry_core::launch::{LaunchError, LaunchRequest, TaskLauncher, TaskRef, TaskStatus};

/// How long an exited task's status is kept for `describe`.
const KEEP_EXITED: Duration = Duration::from_secs(3600);
const PREFIX: &str = "process:";

#[derive(Debug, Clone)]
struct Task {
    pid: u32,
    /// `Some(code)` once exited (`None` inside: killed by a signal).
    exited: Option<(Option<i32>, Instant)>,
    stopped_by: Option<String>,
}

/// Starts launched runs as local `ferry agent execute` processes.
#[derive(Clone)]
pub struct ProcessLauncher {
    exe: PathBuf,
    dir: PathBuf,
    tasks: Arc<Mutex<HashMap<String, Task>>>,
}

impl std::fmt::Debug for ProcessLauncher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessLauncher")
            .field("exe", &self.exe)
            .field("dir", &self.dir)
            .finish()
    }
}

impl ProcessLauncher {
    /// Launches `exe agent execute ...` (the `ferry` binary), with task output under `dir`.
    pub fn new(exe: PathBuf, dir: PathBuf) -> Self {
        Self {
            exe,
            dir,
            tasks: Arc::default(),
        }
    }

    fn token_of(task: &TaskRef) -> &str {
        task.0.strip_prefix(PREFIX).unwrap_or(&task.0)
    }

    fn spawn(&self, request: &LaunchRequest, token: &str) -> Result<u32, LaunchError> {
        let permanent = |what: &str, e: std::io::Error| LaunchError::Permanent {
            message: format!("{what}: {e}"),
        };
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| permanent(&format!("cannot create {}", self.dir.display()), e))?;
        let log_path = self.dir.join(format!("{token}.log"));
        let log = std::fs::File::create(&log_path)
            .map_err(|e| permanent(&format!("cannot create {}", log_path.display()), e))?;
        let err_log = log
            .try_clone()
            .map_err(|e| permanent("cannot open the task log twice", e))?;
        let mut cmd = tokio::process::Command::new(&self.exe);
        cmd.args(request.command())
            .envs(&request.env)
            .envs(&request.overrides.env)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            permanent(
                &format!("cannot start {} agent execute", self.exe.display()),
                e,
            )
        })?;
        let pid = child.id().unwrap_or_default();
        let (tasks, key) = (self.tasks.clone(), token.to_owned());
        tokio::spawn(async move {
            let status = child.wait().await.ok();
            let code = status.and_then(|s| s.code());
            if let Some(t) = tasks.lock().unwrap().get_mut(&key) {
                t.exited = Some((code, Instant::now()));
            }
        });
        Ok(pid)
    }
}

#[async_trait]
impl TaskLauncher for ProcessLauncher {
    async fn launch(&self, request: &LaunchRequest) -> Result<TaskRef, LaunchError> {
        let token = request.client_token();
        {
            let mut tasks = self.tasks.lock().unwrap();
            tasks.retain(|_, t| t.exited.is_none_or(|(_, at)| at.elapsed() < KEEP_EXITED));
            if tasks.contains_key(&token) {
                return Ok(TaskRef(format!("{PREFIX}{token}")));
            }
            // Reserved before the spawn, so two concurrent launches of one token start one
            // process; a failed spawn removes it again.
            tasks.insert(
                token.clone(),
                Task {
                    pid: 0,
                    exited: None,
                    stopped_by: None,
                },
            );
        }
        match self.spawn(request, &token) {
            Ok(pid) => {
                if let Some(t) = self.tasks.lock().unwrap().get_mut(&token) {
                    t.pid = pid;
                }
                tracing::info!(run_id = %request.run, attempt = request.attempt, pid, "task process started");
                Ok(TaskRef(format!("{PREFIX}{token}")))
            }
            Err(e) => {
                self.tasks.lock().unwrap().remove(&token);
                Err(e)
            }
        }
    }

    async fn stop(&self, task: &TaskRef, reason: &str) -> Result<(), LaunchError> {
        let pid = {
            let mut tasks = self.tasks.lock().unwrap();
            let Some(t) = tasks.get_mut(Self::token_of(task)) else {
                return Ok(());
            };
            if t.exited.is_some() || t.pid == 0 {
                return Ok(());
            }
            t.stopped_by = Some(reason.to_owned());
            t.pid
        };
        let group = nix::unistd::Pid::from_raw(-(pid as i32));
        match nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(LaunchError::Retryable {
                message: format!("cannot signal task process {pid}: {e}"),
            }),
        }
    }

    async fn describe(&self, tasks: &[TaskRef]) -> Result<Vec<TaskStatus>, LaunchError> {
        let known = self.tasks.lock().unwrap();
        Ok(tasks
            .iter()
            .map(|t| match known.get(Self::token_of(t)) {
                None => TaskStatus::Stopped {
                    stop_code: Some("TaskNotFound".into()),
                    reason: Some("no such task process (the launching server restarted?)".into()),
                    exit_code: None,
                },
                Some(Task { exited: None, .. }) => TaskStatus::Running,
                Some(Task {
                    exited: Some((code, _)),
                    stopped_by,
                    ..
                }) => TaskStatus::Stopped {
                    stop_code: Some(
                        if stopped_by.is_some() {
                            "UserInitiated"
                        } else {
                            "EssentialContainerExited"
                        }
                        .into(),
                    ),
                    reason: Some(stopped_by.clone().unwrap_or_else(|| match code {
                        Some(c) => format!("the task process exited with code {c}"),
                        None => "the task process was killed by a signal".into(),
                    })),
                    exit_code: *code,
                },
            })
            .collect())
    }
}
