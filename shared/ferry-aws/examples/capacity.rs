//! DynamoDB cost benchmark against DynamoDB Local (run by `bench/aws.sh`): capacity per run
//! lifecycle (schedule → claim → running → heartbeat → completed), with and without a queue
//! limit, and the tick with many scheduled deployments. Prints a table.
//!
//! `cargo run --release -p ferry-aws --example capacity -- [DEPLOYMENTS]` with the emulator
//! environment (`eval "$(scripts/emulators.sh env)"`).

use std::sync::Arc;
use std::time::Instant;

use ferry_app::{Claim, Ferry, Heartbeat, SystemClock};
use ferry_aws::{bootstrap, config, CapacityMeter, DynamoStore};
use ferry_core::ports::RunFilter;
use ferry_core::state::RunEvent;

type Snap = (u64, f64, f64);

fn delta(a: Snap, b: Snap) -> Snap {
    (b.0 - a.0, b.1 - a.1, b.2 - a.2)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let deployments: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10_000);
    let sdk = config::sdk_config().await;
    let client = config::dynamodb_client(&sdk);
    let table = format!("ferry-bench-{}", uuid::Uuid::new_v4().simple());
    bootstrap::ensure_table(&client, &table).await?;
    let meter = Arc::new(CapacityMeter::default());
    let store = Arc::new(DynamoStore::new(client, &table).with_meter(meter.clone()));
    let dir = tempfile::tempdir()?;
    let ferry = Ferry::new(
        store.clone(),
        Arc::new(ferry_embedded::FsCodeStore::new(dir.path().join("b"))),
        Arc::new(ferry_embedded::FsLogSink::new(dir.path().join("l"))),
        Arc::new(SystemClock),
    );
    ferry.ensure_default_queue().await?;
    ferry.create_queue("limited", Some(1000), None).await?;
    let mut rows: Vec<(String, String)> = Vec::new();

    for (label, queue) in [
        ("no queue limit", "default"),
        ("queue limit (transaction)", "limited"),
    ] {
        let name = format!("life-{queue}");
        let spec = serde_json::from_value(serde_json::json!({
            "flow": "bench", "name": name, "entrypoint": "run.sh", "work_queue": queue,
            "schedules": [{"interval": 60}]
        }))?;
        ferry.apply_deployment(spec).await?;
        let id: ferry_core::DeploymentId = format!("bench/{name}").parse()?;
        let s0 = meter.snapshot();
        ferry.tick().await?;
        let s1 = meter.snapshot();
        let runs = ferry
            .list_runs(&RunFilter {
                deployment: Some(id),
                limit: 1000,
                ..Default::default()
            })
            .await?;
        let n = runs.len() as f64;
        let sched = delta(s0, s1);
        // Lifecycle of each run, as an agent does it (the due-index query is shared by a batch).
        let s2 = meter.snapshot();
        // As the agent does: the queue is read once per poll, then the due index.
        let q = ferry.store.get_queue(queue).await?;
        let due = ferry
            .store
            .due_runs(queue, chrono::Utc::now() + chrono::Duration::days(1), 1000)
            .await?;
        let s3 = meter.snapshot();
        let (mut claim, mut start, mut beat, mut finish) =
            ((0, 0.0, 0.0), (0, 0.0, 0.0), (0, 0.0, 0.0), (0, 0.0, 0.0));
        let add = |acc: &mut Snap, d: Snap| {
            acc.0 += d.0;
            acc.1 += d.1;
            acc.2 += d.2;
        };
        for run in &due {
            let a = meter.snapshot();
            let Claim::Claimed(r, _) = ferry.claim_in(run, "bench-agent", q.as_ref()).await? else {
                anyhow::bail!("claim lost")
            };
            let b = meter.snapshot();
            let r = ferry
                .start(*r, Some("s3://bucket/logs/x/".into()))
                .await?
                .expect("started");
            let c = meter.snapshot();
            let Heartbeat::Renewed(r) = ferry.heartbeat(r).await? else {
                anyhow::bail!("heartbeat")
            };
            let d = meter.snapshot();
            ferry
                .finish(*r, RunEvent::Complete { result: None })
                .await?;
            let e = meter.snapshot();
            add(&mut claim, delta(a, b));
            add(&mut start, delta(b, c));
            add(&mut beat, delta(c, d));
            add(&mut finish, delta(d, e));
        }
        let k = due.len() as f64;
        let per = |s: Snap, count: f64| {
            format!(
                "{:.2} req, {:.2} RCU, {:.2} WCU",
                s.0 as f64 / count,
                s.1 / count,
                s.2 / count
            )
        };
        rows.push((
            format!("[{label}] schedule (tick, {n} runs, per run)"),
            per(sched, n),
        ));
        rows.push((
            format!("[{label}] due-index query (per run, batch of {k})"),
            per(delta(s2, s3), k),
        ));
        rows.push((format!("[{label}] claim"), per(claim, k)));
        rows.push((format!("[{label}] start"), per(start, k)));
        rows.push((format!("[{label}] heartbeat"), per(beat, k)));
        rows.push((format!("[{label}] complete"), per(finish, k)));
        let total = (
            sched.0 as f64 / n
                + (s3.0 - s2.0) as f64 / k
                + (claim.0 + start.0 + beat.0 + finish.0) as f64 / k,
            sched.1 / n + (s3.1 - s2.1) / k + (claim.1 + start.1 + beat.1 + finish.1) / k,
            sched.2 / n + (s3.2 - s2.2) / k + (claim.2 + start.2 + beat.2 + finish.2) / k,
        );
        rows.push((
            format!("[{label}] WHOLE LIFECYCLE per run"),
            format!("{:.2} req, {:.2} RCU, {:.2} WCU", total.0, total.1, total.2),
        ));
    }

    // The tick with many scheduled deployments.
    let t = Instant::now();
    let crons = ["30 2 * * *", "0 9 * * 1-5", "0 0 * * 0", "15 3 1 * *"];
    for i in 0..deployments {
        let spec = serde_json::from_value(serde_json::json!({
            "flow": "many", "name": format!("d{i:05}"), "entrypoint": "run.sh",
            "schedules": [{"cron": crons[i % crons.len()], "timezone": "Europe/Berlin"}]
        }))?;
        ferry.apply_deployment(spec).await?;
    }
    rows.push((
        format!("apply {deployments} deployments"),
        format!("{:.1} s", t.elapsed().as_secs_f64()),
    ));
    let s0 = meter.snapshot();
    let t = Instant::now();
    let first = ferry.tick().await?;
    let d = delta(s0, meter.snapshot());
    rows.push((
        format!("first tick, {deployments} deployments"),
        format!(
            "{:.1} s, {} extended, {} runs written, {} req, {:.0} RCU, {:.0} WCU",
            t.elapsed().as_secs_f64(),
            first.deployments_extended,
            first.runs_created,
            d.0,
            d.1,
            d.2
        ),
    ));
    for i in 0..3 {
        let s0 = meter.snapshot();
        let t = Instant::now();
        let r = ferry.tick().await?;
        let d = delta(s0, meter.snapshot());
        rows.push((
            format!("steady tick #{} ({deployments} deployments)", i + 1),
            format!(
                "{:.3} s, {} extended, {} req, {:.1} RCU, {:.1} WCU",
                t.elapsed().as_secs_f64(),
                r.deployments_extended,
                d.0,
                d.1,
                d.2
            ),
        ));
    }

    let w = rows.iter().map(|r| r.0.len()).max().unwrap_or(10);
    println!(
        "{:w$}  value",
        "measure (DynamoDB Local, ReturnConsumedCapacity=TOTAL)"
    );
    println!("{}  -----", "-".repeat(w));
    for (k, v) in rows {
        println!("{k:w$}  {v}");
    }
    let _ = store;
    Ok(())
}
