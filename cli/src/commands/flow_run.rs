use anyhow::Result;
use ferry_core::FlowRun;
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

pub async fn run(cmd: FlowRunCmd) -> Result<()> {
    let client = Client::from_env()?;
    match cmd {
        FlowRunCmd::Ls {
            deployment,
            state,
            work_queue,
            limit,
            out,
        } => {
            let mut q = format!("/flow-runs?limit={limit}");
            if let Some(d) = deployment {
                q.push_str(&format!("&deployment={}", enc(&d)));
            }
            if let Some(s) = state {
                q.push_str(&format!("&state={}", enc(&s)));
            }
            if let Some(w) = work_queue {
                q.push_str(&format!("&work_queue={}", enc(&w)));
            }
            let runs: Vec<FlowRun> = client.get(&q).await?;
            if out.json {
                return output::json(&runs);
            }
            output::table(
                &[
                    "ID",
                    "DEPLOYMENT",
                    "STATE",
                    "SCHEDULED",
                    "ATTEMPT",
                    "ORIGIN",
                ],
                runs.iter()
                    .map(|r| {
                        vec![
                            r.id.to_string(),
                            r.deployment.to_string(),
                            r.state.to_string(),
                            output::time(r.scheduled_time),
                            r.attempt.to_string(),
                            serde_json::to_value(r.origin)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default(),
                        ]
                    })
                    .collect(),
            );
        }
        FlowRunCmd::Inspect { id, out } => {
            let r: FlowRun = client.get(&format!("/flow-runs/{}", enc(&id))).await?;
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
        FlowRunCmd::Logs { id, follow } => {
            super::watch::follow(&client, &enc(&id), follow, false).await?;
        }
        FlowRunCmd::Cancel { id } => {
            let (_, r): (_, FlowRun) = client
                .send_json(
                    Method::POST,
                    &format!("/flow-runs/{}/cancel", enc(&id)),
                    &serde_json::json!({}),
                )
                .await?;
            println!("Flow run {} is {}", r.id, r.state);
        }
    }
    Ok(())
}
