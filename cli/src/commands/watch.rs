use std::time::{Duration, Instant};

use anyhow::Result;
use ferry_core::ports::{LogPage, LogStream};
use ferry_core::{FlowRun, StateType};
use serde::Deserialize;

use crate::client::Client;
use crate::output;

fn print_page(page: &LogPage) {
    for l in &page.lines {
        let stream = match l.stream {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
            LogStream::Ferry => "ferry ",
        };
        println!("{} {stream} | {}", output::time_ms(l.at), l.line);
    }
}

/// Prints a run's log from the start; with `follow`, keeps printing new lines (and, with
/// `states`, state changes) until the run is final and its log drained. Returns the last
/// state of the run.
pub async fn follow(client: &Client, id: &str, follow: bool, states: bool) -> Result<FlowRun> {
    let mut offset = 0u64;
    let mut seen = 0usize;
    loop {
        let run: FlowRun = client.get(&format!("/flow-runs/{id}")).await?;
        if states {
            print_states(&run, &mut seen);
        }
        drain_logs(client, id, &mut offset).await?;
        if !follow || run.state.is_terminal() {
            if follow {
                // The agent flushes its last lines just before the final state: one more read.
                let page: LogPage = client
                    .get(&format!("/flow-runs/{id}/logs?offset={offset}&limit=10000"))
                    .await?;
                print_page(&page);
            }
            return Ok(run);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The exit code of `--watch` when `--watch-timeout` runs out (as `timeout(1)`'s).
pub const WATCH_TIMEOUT_EXIT: u8 = 124;

/// How often `--watch` asks whether an agent serves the run's queue while the run waits.
const AGENT_CHECK_EVERY: Duration = Duration::from_secs(5);

/// The part of `GET /v1/work-queues/{name}` the watch reads (`agents` is absent from servers
/// that predate it: then nothing is said).
#[derive(Deserialize)]
struct QueueAgents {
    #[serde(default)]
    agents: Option<Vec<String>>,
}

/// Prints every state change and log line of the run `first`, and follows it into its retries
/// (a failed run names its retry: `retried_by`) until the last attempt ends; returns that
/// attempt. While a run waits past its due time and no agent has polled its queue within the
/// last 60 s, says so once on stderr. With `timeout`, gives up after that long with exit code
/// [`WATCH_TIMEOUT_EXIT`] (the run goes on).
pub async fn watch(client: &Client, first: &FlowRun, timeout: Option<Duration>) -> Result<FlowRun> {
    let started = Instant::now();
    let mut id = first.id.to_string();
    let (mut offset, mut seen) = (0u64, 0usize);
    let mut warned = false;
    // A run an agent claims at once never waits this long: no question asked, no warning.
    let mut next_check = started + Duration::from_secs(1);
    loop {
        let run: FlowRun = client.get(&format!("/flow-runs/{id}")).await?;
        print_states(&run, &mut seen);
        drain_logs(client, &id, &mut offset).await?;
        if run.state.is_terminal() {
            // The agent flushes its last lines just before the final state: one more read.
            drain_logs(client, &id, &mut offset).await?;
            let Some(retry_id) = run.retried_by.filter(|_| run.state != StateType::Completed)
            else {
                return Ok(run);
            };
            let retry: FlowRun = client.get(&format!("/flow-runs/{retry_id}")).await?;
            println!(
                "attempt {} {}{}; following retry {} (attempt {}) scheduled at {}",
                run.attempt,
                run.state,
                run.state_message
                    .as_deref()
                    .map(|m| format!(": {m}"))
                    .unwrap_or_default(),
                retry.id,
                retry.attempt,
                output::time(retry.scheduled_time)
            );
            id = retry.id.to_string();
            (offset, seen) = (0, 0);
            continue;
        }
        let due = run.is_waiting() && run.scheduled_time <= chrono::Utc::now();
        if !warned && due && run.infra.is_none() && Instant::now() >= next_check {
            next_check = Instant::now() + AGENT_CHECK_EVERY;
            let queue: QueueAgents = client
                .get(&format!("/work-queues/{}", run.work_queue))
                .await?;
            if queue.agents.is_some_and(|a| a.is_empty()) {
                eprintln!("warning: {}", unserved(&run.work_queue));
                warned = true;
            }
        }
        if let Some(limit) = timeout.filter(|t| started.elapsed() >= *t) {
            return Err(super::agent::Exit {
                code: WATCH_TIMEOUT_EXIT,
                message: format!(
                    "--watch-timeout {}: flow run {} is still {} (it goes on: follow it with `ferry flow-run logs -f {}`)",
                    humantime::format_duration(limit),
                    run.id,
                    run.state,
                    run.id
                ),
            }
            .into());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The warning for a run due on `queue` that no online agent serves.
pub fn unserved(queue: &str) -> String {
    format!(
        "no agent has polled work queue '{queue}' in the last {}s: start one with `ferry agent start -q {queue}`",
        ferry_app::ONLINE_WITHIN.num_seconds()
    )
}

/// Prints the run's log lines from `offset` on, page by page, and moves `offset` past them.
/// Prints the run's state changes after the first `seen` of its history (every transition,
/// from the run's own history: none is missed between polls).
fn print_states(run: &FlowRun, seen: &mut usize) {
    for h in run.history.iter().skip(*seen) {
        println!(
            "{} state  | {}{}",
            output::time_ms(h.at),
            h.state,
            h.message
                .as_deref()
                .map(|m| format!(" ({m})"))
                .unwrap_or_default()
        );
    }
    *seen = run.history.len();
}

async fn drain_logs(client: &Client, id: &str, offset: &mut u64) -> Result<()> {
    loop {
        let page: LogPage = client
            .get(&format!("/flow-runs/{id}/logs?offset={offset}&limit=5000"))
            .await?;
        print_page(&page);
        let more = page.next_offset > *offset && page.lines.len() == 5000;
        *offset = page.next_offset;
        if !more {
            return Ok(());
        }
    }
}
