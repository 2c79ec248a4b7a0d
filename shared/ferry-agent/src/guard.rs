//! The process guard: a flow must not outlive its agent.
//!
//! Each flow runs in its own process group, a child of the agent (no wrapper process). If the
//! agent is killed (SIGKILL, OOM), nothing would stop those groups: they would run on as
//! orphans while the reaper retries their runs elsewhere — two copies of one run, and a
//! concurrency limit broken. So an agent starts one small guard process (the same binary,
//! `ferry agent guard`), in a process group of its own so that a terminal's Ctrl-C does not
//! reach it, and tells it over a pipe which groups are live. When the pipe closes — the agent
//! exited or was killed, the kernel closes its end either way — the guard sends SIGTERM to every
//! group still registered, SIGKILL after the kill grace, and exits.
//!
//! The agent's end of the pipe is close-on-exec (as every descriptor Rust opens), so flows do not
//! inherit it and cannot keep the guard waiting.

use std::io::{self, BufRead, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// The agent's handle on its guard process.
pub struct ProcessGuard {
    stdin: Mutex<Option<ChildStdin>>,
    child: Mutex<Child>,
}

impl std::fmt::Debug for ProcessGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProcessGuard")
    }
}

impl ProcessGuard {
    /// Starts `cmd` (which must run [`serve`]) as the guard, in its own process group.
    pub fn spawn(mut cmd: Command) -> io::Result<Self> {
        use std::os::unix::process::CommandExt;
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take();
        Ok(Self {
            stdin: Mutex::new(stdin),
            child: Mutex::new(child),
        })
    }

    /// The group `pgid` (a flow's) must die with the agent.
    pub fn watch(&self, pgid: u32) {
        self.send(&format!("+{pgid}"));
    }

    /// The group `pgid` is gone (its run ended); forget it.
    pub fn release(&self, pgid: u32) {
        self.send(&format!("-{pgid}"));
    }

    fn send(&self, line: &str) {
        let mut stdin = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        let Some(pipe) = stdin.as_mut() else { return };
        if let Err(e) = writeln!(pipe, "{line}") {
            tracing::error!(error = %e, "the process guard is gone: flows of this agent would outlive it if it were killed");
            *stdin = None;
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        // Closing the pipe tells the guard to finish (there is nothing left to kill on a clean
        // stop); reap it if it is already gone.
        drop(self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take());
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The guard's side: reads `+PGID` / `-PGID` lines until the input closes, then stops every
/// group still registered (SIGTERM, SIGKILL after `kill_grace`). Returns how many groups it
/// had to stop.
pub fn serve(input: impl BufRead, kill_grace: Duration) -> usize {
    let mut live: Vec<i32> = Vec::new();
    for line in input.lines() {
        let Ok(line) = line else { break };
        let (op, pgid) = line.split_at(line.len().min(1));
        let Ok(pgid) = pgid.trim().parse::<i32>() else {
            continue;
        };
        match op {
            "+" if pgid > 1 => live.push(pgid),
            "-" => live.retain(|g| *g != pgid),
            _ => {}
        }
    }
    let alive = |g: &i32| killpg(Pid::from_raw(*g), None::<Signal>).is_ok();
    live.retain(alive);
    if live.is_empty() {
        return 0;
    }
    eprintln!(
        "ferry agent guard: the agent is gone; stopping {} flow process group(s)",
        live.len()
    );
    for g in &live {
        let _ = killpg(Pid::from_raw(*g), Signal::SIGTERM);
    }
    let deadline = Instant::now() + kill_grace;
    while Instant::now() < deadline && live.iter().any(alive) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for g in live.iter().filter(|g| alive(g)) {
        let _ = killpg(Pid::from_raw(*g), Signal::SIGKILL);
    }
    live.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_still_registered_when_the_input_closes_are_killed_and_released_ones_spared() {
        use std::os::unix::process::CommandExt;
        let spawn = || {
            Command::new("sleep")
                .arg("30")
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let (mut doomed, mut spared) = (spawn(), spawn());
        let input = format!("+{}\n+{}\n-{}\n", doomed.id(), spared.id(), spared.id());
        let stopped = serve(input.as_bytes(), Duration::from_secs(1));
        assert_eq!(stopped, 1);
        let status = doomed.wait().unwrap();
        assert!(!status.success(), "the registered group was stopped");
        assert!(
            spared.try_wait().unwrap().is_none(),
            "a released group is left alone"
        );
        spared.kill().unwrap();
        spared.wait().unwrap();
    }
}
