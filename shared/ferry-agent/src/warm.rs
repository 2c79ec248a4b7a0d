//! Warm starts: a Python process per (code, interpreter, entrypoint) that has imported the flow's
//! module once, and forks each run of a `warm: true` deployment from it (the shim's `--warm`
//! mode, `shim.py`).
//!
//! A forked run is still a process of its own: its own pid and process group, stdin on
//! `/dev/null`, its stdout/stderr on two FIFOs in its work directory that the agent reads like a
//! cold run's pipes, the deployment's environment and `FERRY_*` variables set in the child. The
//! warm process reaps it and reports its wait status, so exit codes, signals, cancel and timeout
//! (the agent signals the run's group) are the same as a cold run's ([`crate::process`]).
//!
//! A warm process is replaced when its code changes (a new bundle digest, or a changed file for
//! a deployment without a bundle: the key changes), after [`WarmLimits::max_runs`] forks, when its
//! resident memory is over [`WarmLimits::max_rss_kb`], when it was idle for
//! [`WarmLimits::idle`], and when it died. A replaced one forks no more and exits once its runs
//! are done. When a warm process cannot be had (the import fails, the module starts threads, the
//! interpreter is missing), [`WarmPool::fork`] says why and the run starts cold; the reason is
//! remembered for [`UNFIT_FOR`] so runs do not retry a broken import every time.

use std::collections::HashMap;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::oneshot;

use crate::process::{Output, Started, PYTHON_SHIM};

/// How long a reason a warm process could not be had is remembered for its key.
pub const UNFIT_FOR: Duration = Duration::from_secs(300);

/// Longest wait for a warm process to import its flow before its runs start cold.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// When a warm process is replaced.
#[derive(Debug, Clone, Copy)]
pub struct WarmLimits {
    /// Forks after which it is replaced.
    pub max_runs: u64,
    /// Resident memory (KiB) over which it is replaced.
    pub max_rss_kb: u64,
    /// Unused this long, it exits.
    pub idle: Duration,
}

impl Default for WarmLimits {
    fn default() -> Self {
        Self {
            max_runs: 1_000,
            max_rss_kb: 512 * 1024,
            idle: Duration::from_secs(600),
        }
    }
}

/// What a warm process is for: runs with the same key fork from the same process.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WarmKey {
    /// The interpreter.
    pub python: String,
    /// The code: `sha256:<bundle digest>`, or the entrypoint file's path, size and mtime for a
    /// deployment without a bundle.
    pub code: String,
    /// `file.py`, relative to the code's directory.
    pub path: String,
    /// The flow function.
    pub function: String,
}

impl WarmKey {
    /// The key of a deployment without a bundle, run from `dir`: the entry file's size and
    /// modification time stand for its code, so an edited file gets a fresh warm process.
    pub fn for_dir(python: &str, dir: &Path, path: &str, function: &str) -> Self {
        let file = dir.join(path);
        let stamp = std::fs::metadata(&file)
            .ok()
            .and_then(|m| Some((m.len(), m.modified().ok()?)))
            .map(|(len, t)| format!("{len}:{t:?}"))
            .unwrap_or_default();
        Self {
            python: python.into(),
            code: format!("{}@{stamp}", file.display()),
            path: path.into(),
            function: function.into(),
        }
    }
}

/// Where a warm process's code comes from when one must be started.
pub enum WarmCode {
    /// Unpack this bundle (its bytes) into a directory of the warm process's own.
    Bundle(Vec<u8>),
    /// Run in this directory (a deployment without a bundle).
    Dir(PathBuf),
}

/// A run forked from a warm process.
pub struct Forked {
    /// The run's process, for [`crate::process::supervise_started`].
    pub started: Started,
    /// The warm process's pid.
    pub server_pid: u32,
    /// Runs forked from it so far, this one included.
    pub nth: u64,
    /// Its resident memory when it forked this run, KiB.
    pub rss_kb: u64,
    /// The directory the run starts in (the warm process's).
    pub cwd: PathBuf,
}

/// The warm process of one key, if one is up; locked while one starts.
type Slot = Arc<tokio::sync::Mutex<Option<Arc<WarmProcess>>>>;

/// One agent's warm processes.
pub struct WarmPool {
    limits: WarmLimits,
    unpack_dir: PathBuf,
    slots: Mutex<HashMap<WarmKey, Slot>>,
    unfit: Mutex<HashMap<WarmKey, (Instant, String)>>,
    /// The key each deployment last ran with: a new key retires the old process.
    by_deployment: Mutex<HashMap<String, WarmKey>>,
    seq: AtomicU64,
}

impl WarmPool {
    /// A pool whose warm processes unpack their bundles under `work_dir/warm`.
    pub fn new(work_dir: &Path, limits: WarmLimits) -> Self {
        Self {
            limits,
            unpack_dir: work_dir.join("warm"),
            slots: Mutex::default(),
            unfit: Mutex::default(),
            by_deployment: Mutex::default(),
            seq: AtomicU64::new(0),
        }
    }

    /// Warm processes alive now: (pid, key, forks, RSS KiB).
    pub fn report(&self) -> Vec<(u32, WarmKey, u64, u64)> {
        let slots: Vec<_> = self.slots.lock().unwrap().values().cloned().collect();
        slots
            .iter()
            .filter_map(|s| s.try_lock().ok().and_then(|p| p.clone()))
            .filter(|p| p.alive())
            .map(|p| {
                (
                    p.pid,
                    p.key.clone(),
                    p.forks.load(Ordering::SeqCst),
                    p.rss_kb.load(Ordering::SeqCst),
                )
            })
            .collect()
    }

    /// Makes sure a warm process for `key` is up (started from `code` if needed), for a run due
    /// soon: its first fork then does not wait for the import. `Err` is why there is none.
    pub async fn prepare<F>(&self, deployment: &str, key: &WarmKey, code: F) -> Result<(), String>
    where
        F: std::future::Future<Output = Result<WarmCode, String>>,
    {
        self.process(deployment, key, code).await.map(|_| ())
    }

    /// Forks a run from the warm process for `key`, whose output goes to FIFOs created in
    /// `run_dir` and whose environment gets `env`. `Err` says why the run must start cold.
    pub async fn fork<F>(
        &self,
        deployment: &str,
        key: &WarmKey,
        code: F,
        run_id: &str,
        run_dir: &Path,
        env: &[(String, String)],
    ) -> Result<Forked, String>
    where
        F: std::future::Future<Output = Result<WarmCode, String>>,
    {
        let process = self.process(deployment, key, code).await?;
        match process.fork(run_id, run_dir, env).await {
            Ok(f) => Ok(f),
            Err(e) => {
                // A process that refuses (or died) is replaced for the next run.
                process.retire().await;
                Err(e)
            }
        }
    }

    async fn process<F>(
        &self,
        deployment: &str,
        key: &WarmKey,
        code: F,
    ) -> Result<Arc<WarmProcess>, String>
    where
        F: std::future::Future<Output = Result<WarmCode, String>>,
    {
        if let Some((at, why)) = self.unfit.lock().unwrap().get(key) {
            if at.elapsed() < UNFIT_FOR {
                return Err(why.clone());
            }
        }
        self.retire_stale(deployment, key).await;
        let slot = self
            .slots
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_default()
            .clone();
        let mut held = slot.lock().await;
        if let Some(p) = held.as_ref() {
            match p.worn_out(&self.limits) {
                None => return Ok(p.clone()),
                Some(why) => {
                    tracing::info!(pid = p.pid, why, "replacing a warm process");
                    p.retire().await;
                }
            }
        }
        *held = None;
        let seq = self.seq.fetch_add(1, Ordering::SeqCst);
        let started = async {
            let (dir, owned) = match code.await? {
                WarmCode::Dir(d) => (d, false),
                WarmCode::Bundle(bytes) => {
                    let dir = self
                        .unpack_dir
                        .join(format!("{}-{seq}", std::process::id()));
                    let dest = dir.clone();
                    tokio::task::spawn_blocking(move || ferry_bundle::unpack_into(&bytes, &dest))
                        .await
                        .map_err(|e| format!("bundle unpacking: {e}"))?
                        .map_err(|e| format!("bundle rejected: {e}"))?;
                    (dir, true)
                }
            };
            WarmProcess::start(key.clone(), dir, owned).await
        };
        match started.await {
            Ok(p) => {
                let p = Arc::new(p);
                *held = Some(p.clone());
                Ok(p)
            }
            Err(why) => {
                let why = format!("no warm process: {why}");
                let mut unfit = self.unfit.lock().unwrap();
                if unfit.len() > 1_000 {
                    unfit.clear();
                }
                unfit.insert(key.clone(), (Instant::now(), why.clone()));
                Err(why)
            }
        }
    }

    /// Retires the process `deployment` used before if its key changed (a new bundle, a new
    /// interpreter) and no other deployment uses it, and every process idle for too long.
    async fn retire_stale(&self, deployment: &str, key: &WarmKey) {
        let mut stale = Vec::new();
        {
            let mut by = self.by_deployment.lock().unwrap();
            if let Some(old) = by.insert(deployment.to_owned(), key.clone()) {
                if old != *key && !by.values().any(|k| *k == old) {
                    stale.push(old);
                }
            }
        }
        let slots: Vec<_> = {
            let mut all = self.slots.lock().unwrap();
            let mut out = Vec::new();
            for k in stale {
                if let Some(s) = all.remove(&k) {
                    out.push(s);
                }
            }
            let idle: Vec<WarmKey> = all
                .iter()
                .filter(|(_, s)| {
                    s.try_lock().is_ok_and(|p| {
                        p.as_ref()
                            .is_some_and(|p| p.idle_for() > self.limits.idle || !p.alive())
                    })
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in idle {
                if let Some(s) = all.remove(&k) {
                    out.push(s);
                }
            }
            out
        };
        for s in slots {
            if let Some(p) = s.lock().await.take() {
                tracing::info!(pid = p.pid, code = %p.key.code, "retiring a warm process: its code changed or it was idle");
                p.retire().await;
            }
        }
    }
}

/// A reply of the warm process.
#[derive(Deserialize)]
#[serde(untagged)]
enum Reply {
    Ready {
        ready: u32,
        rss_kb: u64,
    },
    Unfit {
        unfit: String,
    },
    Forked {
        forked: String,
        pid: u32,
        rss_kb: u64,
    },
    Refused {
        refused: String,
        error: String,
    },
    Exited {
        exited: u32,
        status: i32,
    },
}

type ForkAnswer = Result<(u32, u64, oneshot::Receiver<i32>), String>;

#[derive(Default)]
struct Waiting {
    forks: HashMap<String, oneshot::Sender<ForkAnswer>>,
    exits: HashMap<u32, oneshot::Sender<i32>>,
}

struct WarmProcess {
    key: WarmKey,
    pid: u32,
    dir: PathBuf,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    waiting: Arc<Mutex<Waiting>>,
    dead: Arc<AtomicBool>,
    retired: AtomicBool,
    forks: AtomicU64,
    rss_kb: Arc<AtomicU64>,
    last_used: Mutex<Instant>,
}

impl WarmProcess {
    /// Starts the shim's warm mode in `dir` and waits until it imported the flow.
    async fn start(key: WarmKey, dir: PathBuf, owned: bool) -> Result<Self, String> {
        let mut child = Command::new(&key.python)
            .args(["-u", "-c", PYTHON_SHIM, "--warm", &key.path, &key.function])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", key.python))?;
        let pid = child.id().unwrap_or_default();
        let stdin = child.stdin.take();
        let mut replies = BufReader::new(child.stdout.take().expect("piped")).lines();
        if let Some(err) = child.stderr.take() {
            // The module's own output at import, and anything the warm process says.
            tokio::spawn(async move {
                let mut lines = BufReader::new(err).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    tracing::info!(warm_pid = pid, "warm process: {line}");
                }
            });
        }
        let first = tokio::time::timeout(READY_TIMEOUT, replies.next_line()).await;
        let rss = match first {
            Ok(Ok(Some(line))) => match serde_json::from_str::<Reply>(&line) {
                Ok(Reply::Ready { rss_kb, .. }) => rss_kb,
                Ok(Reply::Unfit { unfit }) => {
                    reap(child, &dir, owned).await;
                    return Err(unfit);
                }
                _ => {
                    reap(child, &dir, owned).await;
                    return Err(format!("unexpected first reply {line:?}"));
                }
            },
            Ok(_) => {
                reap(child, &dir, owned).await;
                return Err(format!("{} exited while importing the flow", key.python));
            }
            Err(_) => {
                if let Err(e) = child.start_kill() {
                    tracing::warn!(error = %e, "cannot kill a warm process that did not start");
                }
                reap(child, &dir, owned).await;
                return Err(format!(
                    "importing the flow took over {}s",
                    READY_TIMEOUT.as_secs()
                ));
            }
        };
        tracing::info!(pid, python = %key.python, code = %key.code, rss_kb = rss, "warm process ready");
        let waiting: Arc<Mutex<Waiting>> = Arc::default();
        let dead = Arc::new(AtomicBool::new(false));
        let rss_kb = Arc::new(AtomicU64::new(rss));
        let (w, d, r, dir2) = (waiting.clone(), dead.clone(), rss_kb.clone(), dir.clone());
        tokio::spawn(async move {
            while let Ok(Some(line)) = replies.next_line().await {
                dispatch(&w, &r, &line);
            }
            // Gone: every run still waiting for it learns so (its sender is dropped).
            d.store(true, Ordering::SeqCst);
            *w.lock().unwrap() = Waiting::default();
            reap(child, &dir2, owned).await;
            tracing::info!(pid, "warm process exited");
        });
        Ok(Self {
            key,
            pid,
            dir,
            stdin: tokio::sync::Mutex::new(stdin),
            waiting,
            dead,
            retired: AtomicBool::new(false),
            forks: AtomicU64::new(0),
            rss_kb,
            last_used: Mutex::new(Instant::now()),
        })
    }

    fn alive(&self) -> bool {
        !self.dead.load(Ordering::SeqCst) && !self.retired.load(Ordering::SeqCst)
    }

    fn idle_for(&self) -> Duration {
        self.last_used.lock().unwrap().elapsed()
    }

    /// Why it must be replaced before the next fork, if it must.
    fn worn_out(&self, limits: &WarmLimits) -> Option<&'static str> {
        if !self.alive() {
            Some("it died")
        } else if self.forks.load(Ordering::SeqCst) >= limits.max_runs {
            Some("it forked its maximum number of runs")
        } else if self.rss_kb.load(Ordering::SeqCst) > limits.max_rss_kb {
            Some("its memory is over the limit")
        } else {
            None
        }
    }

    async fn fork(
        &self,
        run_id: &str,
        run_dir: &Path,
        env: &[(String, String)],
    ) -> Result<Forked, String> {
        *self.last_used.lock().unwrap() = Instant::now();
        let (out, err) = (run_dir.join("stdout.fifo"), run_dir.join("stderr.fifo"));
        let mut pipes = Vec::new();
        for path in [&out, &err] {
            nix::unistd::mkfifo(
                path,
                nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR,
            )
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
            // Opened before the fork request: the warm process opens the writing end at once.
            let rx = tokio::net::unix::pipe::OpenOptions::new()
                .open_receiver(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            pipes.push(rx);
        }
        let (tx, answer) = oneshot::channel();
        self.waiting
            .lock()
            .unwrap()
            .forks
            .insert(run_id.to_owned(), tx);
        let request = serde_json::json!({
            "fork": run_id,
            "cwd": self.dir,
            "out": out,
            "err": err,
            "env": env.iter().cloned().collect::<HashMap<_, _>>(),
        });
        let sent = self.send(&request).await;
        if let Err(e) = sent {
            self.waiting.lock().unwrap().forks.remove(run_id);
            return Err(e);
        }
        let (pid, rss_kb, exit) = match answer.await {
            Ok(Ok(a)) => a,
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(format!("the warm process (pid {}) died", self.pid)),
        };
        let nth = self.forks.fetch_add(1, Ordering::SeqCst) + 1;
        let server = self.pid;
        let stderr = pipes.pop().map(|p| Box::new(p) as Output);
        let stdout = pipes.pop().map(|p| Box::new(p) as Output);
        Ok(Forked {
            started: Started {
                pid,
                stdout,
                stderr,
                exit: Box::pin(async move {
                    exit.await.map(ExitStatus::from_raw).map_err(|_| {
                        io::Error::other(format!(
                            "the warm process it was forked from (pid {server}) died"
                        ))
                    })
                }),
                program: format!("{} (warm)", self.key.path),
            },
            server_pid: self.pid,
            nth,
            rss_kb,
            cwd: self.dir.clone(),
        })
    }

    async fn send(&self, request: &serde_json::Value) -> Result<(), String> {
        let mut line = request.to_string();
        line.push('\n');
        let mut stdin = self.stdin.lock().await;
        let Some(pipe) = stdin.as_mut() else {
            return Err("the warm process is retiring".into());
        };
        pipe.write_all(line.as_bytes())
            .await
            .map_err(|e| format!("the warm process (pid {}) does not listen: {e}", self.pid))
    }

    /// Forks no more; the process exits once its runs are done.
    async fn retire(&self) {
        if self.retired.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.send(&serde_json::json!({"retire": true})).await {
            tracing::debug!(pid = self.pid, error = %e, "retiring a warm process that is gone");
        }
        // Closing its stdin after "retire" is not the agent's death: it is already retiring.
        self.stdin.lock().await.take();
    }
}

fn dispatch(waiting: &Mutex<Waiting>, rss: &AtomicU64, line: &str) {
    let mut w = waiting.lock().unwrap();
    match serde_json::from_str::<Reply>(line) {
        Ok(Reply::Forked {
            forked,
            pid,
            rss_kb,
        }) => {
            rss.store(rss_kb, Ordering::SeqCst);
            let (tx, rx) = oneshot::channel();
            w.exits.insert(pid, tx);
            if let Some(s) = w.forks.remove(&forked) {
                if s.send(Ok((pid, rss_kb, rx))).is_err() {
                    tracing::warn!(pid, "a forked run nobody waits for");
                }
            }
        }
        Ok(Reply::Refused { refused, error }) => {
            if let Some(s) = w.forks.remove(&refused) {
                if s.send(Err(error)).is_err() {
                    tracing::debug!("a refused fork nobody waits for");
                }
            }
        }
        Ok(Reply::Exited { exited, status }) => {
            if let Some(s) = w.exits.remove(&exited) {
                if s.send(status).is_err() {
                    tracing::debug!(pid = exited, "an exit nobody waits for");
                }
            }
        }
        Ok(Reply::Ready { ready, .. }) => {
            tracing::warn!(pid = ready, "a warm process said ready twice")
        }
        Ok(Reply::Unfit { unfit }) => {
            tracing::warn!(%unfit, "a warm process said unfit after ready")
        }
        Err(e) => tracing::warn!(%line, error = %e, "an unreadable reply from a warm process"),
    }
}

/// Waits for a warm process to exit and removes the directory it unpacked its bundle into.
async fn reap(mut child: tokio::process::Child, dir: &Path, owned: bool) {
    if let Err(e) = child.wait().await {
        tracing::warn!(error = %e, "cannot wait for a warm process");
    }
    if owned {
        if let Err(e) = tokio::fs::remove_dir_all(dir).await {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a warm process's directory");
        }
    }
}
