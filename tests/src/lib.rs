//! Harness of the end-to-end tests: builds the real `ferry` binary once, starts
//! `ferry server start --port 0` in a fresh `FERRY_HOME` per test, and runs CLI commands
//! against it.

pub mod fargate_sim;
pub mod lambda_rt;
pub mod sigv4_check;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Path of the `ferry` binary, built once per test process (`FERRY_BIN` overrides).
pub fn ferry_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("FERRY_BIN") {
            return PathBuf::from(p);
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "ferry-cli", "--bin", "ferry"])
            .current_dir(&root)
            .status()
            .expect("running cargo build");
        assert!(status.success(), "cargo build of ferry failed");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        target.join("debug").join("ferry")
    })
    .clone()
}

/// A running `ferry server` with its own FERRY_HOME.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// FERRY_HOME of this server.
    pub home: tempfile::TempDir,
    /// A scratch directory for projects and manifests.
    pub work: tempfile::TempDir,
    token: Option<String>,
    env: Vec<(String, String)>,
}

pub use ferry_testkit::require_emulators;

impl Server {
    /// Starts a server on the AWS backend (DynamoDB Local + moto) with its own fresh table and
    /// bucket, created by `ferry aws bootstrap`. Panics (failing the test) when the emulators
    /// are not up: such tests are `#[ignore]`d and run by `scripts/test.sh` (`ferry_testkit`).
    pub fn start_aws() -> Self {
        Self::start_aws_with(&["--tick-interval", "200ms", "--late-after", "2s"])
    }

    /// [`Server::start_aws`] with these `ferry server start` flags.
    pub fn start_aws_with(args: &[&str]) -> Self {
        require_emulators();
        let id = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        let table = format!("ferry-e2e-{id}");
        let bucket = format!("ferry-e2e-{id}");
        let env = [
            ("FERRY_BACKEND", "aws"),
            ("FERRY_TABLE", table.as_str()),
            ("FERRY_BUCKET", bucket.as_str()),
        ];
        let out = Command::new(ferry_bin())
            .args(["aws", "bootstrap"])
            .envs(env)
            .output()
            .expect("running ferry aws bootstrap");
        assert!(
            out.status.success(),
            "bootstrap failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self::start_with(args, &env)
    }

    /// Starts a server on the embedded backend (`false`) or the AWS one (`true`, see
    /// [`Server::start_aws`]).
    pub fn start_on(aws: bool) -> Self {
        if aws {
            Self::start_aws()
        } else {
            Self::start()
        }
    }

    /// Starts a server on 127.0.0.1:0 with a fast tick.
    pub fn start() -> Self {
        Self::start_with(&["--tick-interval", "200ms", "--late-after", "2s"], &[])
    }

    /// Starts a server with extra arguments (`--port 0` unless they name a port) and
    /// environment.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Self {
        let home = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(ferry_bin());
        cmd.args(["server", "start"])
            .args(if args.contains(&"--port") {
                &[][..]
            } else {
                &["--port", "0"][..]
            })
            .args(args)
            .env("FERRY_HOME", home.path())
            .env("FERRY_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut token = None;
        let mut extra = Vec::new();
        for (k, v) in env {
            cmd.env(k, v);
            if *k == "FERRY_API_TOKEN" {
                token = Some(v.to_string());
            } else {
                extra.push((k.to_string(), v.to_string()));
            }
        }
        let mut child = cmd.spawn().expect("spawning ferry server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server printed no listening line");
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .expect("listening line has a URL")
            .to_owned();
        let url = url.replace("0.0.0.0", "127.0.0.1");
        Self {
            child,
            url,
            home,
            work,
            token,
            env: extra,
        }
    }

    /// Runs `ferry ARGS` against this server (in the scratch directory).
    pub fn ferry(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(ferry_bin());
        cmd.args(args)
            .current_dir(self.work.path())
            .env("FERRY_API_URL", &self.url)
            .env("FERRY_HOME", self.home.path())
            .env("FERRY_LOG", "warn");
        if let Some(t) = &self.token {
            cmd.env("FERRY_API_TOKEN", t);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.output().expect("running ferry")
    }

    /// Runs `ferry ARGS`, asserts success, returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ferry(args);
        assert!(
            out.status.success(),
            "ferry {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `ferry ARGS`, asserts failure, returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.ferry(args);
        assert!(
            !out.status.success(),
            "ferry {args:?} should have failed:\nstdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Runs `ferry ARGS --json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// A path in the scratch directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.work.path().join(rel)
    }

    /// An HTTP agent that reports every status instead of erroring on 4xx/5xx.
    pub fn http(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into()
    }

    /// Waits until `check` returns `Some`, or panics after `timeout`.
    pub fn wait_for<T>(&self, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
        let start = Instant::now();
        loop {
            if let Some(v) = check() {
                return v;
            }
            assert!(
                start.elapsed() < timeout,
                "condition not met within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A running `ferry agent start` sharing a server's FERRY_HOME.
pub struct AgentProc {
    /// The child process.
    pub child: Child,
}

impl AgentProc {
    /// Sends SIGKILL (the agent gets no chance to clean up).
    pub fn sigkill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    /// Sends SIGTERM and waits for the agent to exit; returns its stdout.
    pub fn sigterm_and_wait(mut self, timeout: Duration) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            assert!(
                start.elapsed() < timeout,
                "agent did not stop within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            use std::io::Read;
            let _ = o.read_to_string(&mut out);
        }
        out
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `ferry agent start ARGS` on this server's FERRY_HOME (fast polling, short lease):
    /// through this server's API on the embedded backend, directly on the AWS one (the
    /// agent's defaults).
    pub fn agent(&self, args: &[&str]) -> AgentProc {
        self.agent_via(None, args)
    }

    /// [`Server::agent`] with `--via VIA` (`api`, `direct`) when given.
    pub fn agent_via(&self, via: Option<&str>, args: &[&str]) -> AgentProc {
        let mut cmd = Command::new(ferry_bin());
        if let Some(t) = &self.token {
            cmd.env("FERRY_API_TOKEN", t);
        }
        let via: Vec<&str> = via.map(|v| vec!["--via", v]).unwrap_or_default();
        // A test's own `--lease` replaces the short default.
        let lease: &[&str] = if args.contains(&"--lease") {
            &[]
        } else {
            &["--lease", "3"]
        };
        // ...and so does its own `--poll-interval`.
        let poll: &[&str] = if args.contains(&"--poll-interval") {
            &[]
        } else {
            &["--poll-interval", "0.1"]
        };
        let child = cmd
            .args(["agent", "start", "--kill-grace", "1"])
            .args(poll)
            .args(lease)
            .args(via)
            .args(args)
            .current_dir(self.work.path())
            .env("FERRY_API_URL", &self.url)
            .env("FERRY_HOME", self.home.path())
            .env("FERRY_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawning ferry agent");
        AgentProc { child }
    }

    /// `POST /v1/deployments/{id}/runs` with `body`; returns the run id.
    pub fn create_run(&self, deployment: &str, body: serde_json::Value) -> String {
        let mut r = self
            .http()
            .post(format!("{}/v1/deployments/{deployment}/runs", self.url))
            .send_json(body)
            .unwrap();
        assert!(r.status().is_success(), "create run: {}", r.status());
        let v: serde_json::Value = r.body_mut().read_json().unwrap();
        v["id"].as_str().unwrap().to_owned()
    }

    /// `GET /v1/flow-runs/{id}`.
    pub fn run(&self, id: &str) -> serde_json::Value {
        let mut r = self
            .http()
            .get(format!("{}/v1/flow-runs/{id}", self.url))
            .call()
            .unwrap();
        r.body_mut().read_json().unwrap()
    }

    /// Waits until run `id` is in `state`.
    pub fn wait_state(&self, id: &str, state: &str, timeout: Duration) -> serde_json::Value {
        self.wait_for(timeout, || {
            let r = self.run(id);
            (r["state"] == state).then_some(r)
        })
    }
}

/// Whether process `pid` is gone (or a zombie).
pub fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .map(|rest| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `files` (path, content) under `dir`; `.sh` files are made executable.
pub fn write_project(dir: &Path, files: &[(&str, &str)]) {
    for (rel, content) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        #[cfg(unix)]
        if rel.ends_with(".sh") {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
}
