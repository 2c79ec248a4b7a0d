use anyhow::Result;
use chrono::{DateTime, Utc};
use ferry_core::{FlowRun, StateType};
use reqwest::Method;

use crate::args::FlowRunCmd;
use crate::client::Client;
use crate::output;

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How many upcoming runs `flow-run ls` shows under what happened.
const NEXT_SCHEDULED: usize = 3;
/// The widest MESSAGE cell of `flow-run ls`.
const MESSAGE_WIDTH: usize = 48;

/// The filters of a listing as the empty message names them: `(deployment=x, state=Late)`.
fn filters_text(parts: &[(&str, &Option<String>)]) -> String {
    let set: Vec<String> = parts
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!(" ({})", set.join(", "))
    }
}

/// `1h02m`, `3m05s`, `12s`: how long a run ran (until now if it still runs).
fn duration(r: &FlowRun, now: DateTime<Utc>) -> String {
    let Some(start) = r.started_at else {
        return "-".into();
    };
    let end = r.ended_at.unwrap_or(now);
    let secs = (end - start).num_seconds().max(0);
    let text = match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    };
    if r.ended_at.is_none() && !r.state.is_terminal() {
        format!("{text}+")
    } else {
        text
    }
}

fn runs_table(runs: &[FlowRun]) {
    let now = Utc::now();
    output::table(
        &[
            "ID",
            "DEPLOYMENT",
            "STATE",
            "SCHEDULED",
            "STARTED",
            "DURATION",
            "ATTEMPT",
            "ORIGIN",
            "MESSAGE",
        ],
        runs.iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    r.deployment.to_string(),
                    r.state.to_string(),
                    output::time(r.scheduled_time),
                    output::opt_time(r.started_at),
                    duration(r, now),
                    r.attempt.to_string(),
                    serde_json::to_value(r.origin)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    output::truncate(r.state_message.as_deref().unwrap_or(""), MESSAGE_WIDTH),
                ]
            })
            .collect(),
    );
}

/// The run a user names by id or unique prefix, read from the API (which resolves prefixes).
async fn get_run(client: &Client, id: &str) -> Result<FlowRun> {
    client.get(&format!("/flow-runs/{}", enc(id))).await
}

pub async fn run(cmd: FlowRunCmd) -> Result<()> {
    let client = Client::from_env()?;
    match cmd {
        FlowRunCmd::Ls {
            deployment,
            state,
            work_queue,
            limit,
            upcoming,
            all,
            out,
        } => {
            let mut filter_q = String::new();
            if let Some(d) = &deployment {
                filter_q.push_str(&format!("&deployment={}", enc(d)));
            }
            if let Some(s) = &state {
                filter_q.push_str(&format!("&state={}", enc(s)));
            }
            if let Some(w) = &work_queue {
                filter_q.push_str(&format!("&work_queue={}", enc(w)));
            }
            let view = match (upcoming, all) {
                (true, _) => "upcoming",
                (_, true) => "all",
                _ => "recent",
            };
            let runs: Vec<FlowRun> = client
                .get(&format!("/flow-runs?limit={limit}{filter_q}&view={view}"))
                .await?;
            if out.json {
                return output::json(&runs);
            }
            let filters = filters_text(&[
                ("deployment", &deployment),
                ("state", &state),
                ("work-queue", &work_queue),
            ]);
            if upcoming || all {
                if runs.is_empty() {
                    let what = if upcoming {
                        "upcoming flow runs"
                    } else {
                        "flow runs"
                    };
                    output::empty(&format!("no {what} match{filters}"));
                } else {
                    runs_table(&runs);
                }
                return Ok(());
            }
            let next: Vec<FlowRun> = client
                .get(&format!(
                    "/flow-runs?limit={NEXT_SCHEDULED}{filter_q}&view=upcoming"
                ))
                .await?;
            if runs.is_empty() {
                output::empty(&format!("no flow runs scheduled up to now match{filters}"));
            } else {
                runs_table(&runs);
            }
            if !next.is_empty() {
                output::line("");
                output::line("Next scheduled (all of them: ferry flow-run ls --upcoming):");
                runs_table(&next);
            }
        }
        FlowRunCmd::Inspect { id, out } => {
            let r = get_run(&client, &id).await?;
            if out.json {
                return output::json(&r);
            }
            println!("id:             {}", r.id);
            println!("deployment:     {}", r.deployment);
            println!("work queue:     {}", r.work_queue);
            println!("state:          {}", r.state);
            if let Some(m) = &r.state_message {
                println!("message:        {m}");
            }
            println!("scheduled time: {}", output::time(r.scheduled_time));
            println!("attempt:        {}", r.attempt);
            if let Some(of) = r.retry_of {
                println!("retry of:       {of}");
            }
            if let Some(by) = r.retried_by {
                println!("retried by:     {by} (attempt {})", r.attempt + 1);
            }
            println!(
                "parameters:     {}",
                serde_json::Value::Object(r.parameters.clone())
            );
            println!("started:        {}", output::opt_time(r.started_at));
            println!("ended:          {}", output::opt_time(r.ended_at));
            if let Some(c) = r.exit_code {
                println!("exit code:      {c}");
            }
            match &r.result {
                Some(ferry_core::result::RunResult::Inline { value }) => {
                    let text = value.to_string();
                    if text.chars().count() > 80 {
                        let cut: String = text.chars().take(77).collect();
                        println!("result:         {cut}... (ferry flow-run result {})", r.id);
                    } else {
                        println!("result:         {text}");
                    }
                }
                Some(ferry_core::result::RunResult::Stored { bytes, .. }) => println!(
                    "result:         {bytes} bytes of JSON (ferry flow-run result {})",
                    r.id
                ),
                None => {}
            }
            println!("history:");
            output::table(
                &["  AT", "STATE", "MESSAGE"],
                r.history
                    .iter()
                    .map(|h| {
                        vec![
                            format!("  {}", output::time(h.at)),
                            h.state.to_string(),
                            h.message.clone().unwrap_or_default(),
                        ]
                    })
                    .collect(),
            );
        }
        FlowRunCmd::Result { id, json } => {
            let value: serde_json::Value = client
                .get(&format!("/flow-runs/{}/result", enc(&id)))
                .await?;
            if json {
                println!("{value}");
            } else {
                output::json(&value)?;
            }
        }
        FlowRunCmd::Logs { id, follow } => {
            let r = get_run(&client, &id).await?;
            super::watch::follow(&client, &r.id.to_string(), follow, false).await?;
        }
        FlowRunCmd::Cancel { id } => {
            let r = get_run(&client, &id).await?;
            if r.state == StateType::Cancelled {
                output::line(&format!("Flow run {} is already Cancelled", r.id));
                return Ok(());
            }
            let (_, after): (_, FlowRun) = client
                .send_json(
                    Method::POST,
                    &format!("/flow-runs/{}/cancel", r.id),
                    &serde_json::json!({}),
                )
                .await?;
            if r.state == StateType::Cancelling {
                output::line(&format!(
                    "Flow run {} is already Cancelling (its agent stops it)",
                    after.id
                ));
            } else {
                output::line(&format!("Flow run {} is {}", after.id, after.state));
            }
        }
    }
    Ok(())
}
