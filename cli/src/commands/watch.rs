use std::time::Duration;

use anyhow::Result;
use ferry_core::ports::{LogPage, LogStream};
use ferry_core::FlowRun;

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
            // Every transition, from the run's own history (none is missed between polls).
            for h in run.history.iter().skip(seen) {
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
            seen = run.history.len();
        }
        loop {
            let page: LogPage = client
                .get(&format!("/flow-runs/{id}/logs?offset={offset}&limit=5000"))
                .await?;
            print_page(&page);
            let more = page.next_offset > offset && page.lines.len() == 5000;
            offset = page.next_offset;
            if !more {
                break;
            }
        }
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
