//! Dashboard scale (run by `bench/dashboard_scale.py`): seeds N flow runs through the store
//! port, then times the use cases the dashboard pages call, on the embedded store (a SQLite
//! file) or on DynamoDB (the emulator environment: `eval "$(scripts/emulators.sh env)"`).
//! Prints one JSON object per line: first `{"seeded": ...}` (where the data is, and the
//! values the benchmark's URLs need), then one per query with its p50/p95 in ms and, on
//! DynamoDB, the calls and read capacity per query.
//!
//! `cargo run --release -p ferry-aws --example dashboard_scale -- --backend sqlite|dynamodb
//!  --home DIR [--table NAME] [--runs 10000] [--repeat 20]`
//!
//! The data stays (FERRY_HOME=DIR, or the table NAME) so the script can start `ferry server`
//! on it and time the pages' URLs too.
//!
//! Seeding goes through `RunStore::insert_run`, not the API: the API creates only Scheduled
//! ad-hoc runs, and a realistic mix of states (completed, failed, late, running) over a week
//! would need agents to run 10 000 flows. Runs are one a minute up to now (5 % upcoming), 20
//! deployments on 3 queues; the past ones mostly Completed with 3 % Failed, 1 % Crashed, 1 %
//! Cancelled; the last ten minutes Late, Running or Scheduled.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use ferry_app::{Ferry, RunView, SystemClock};
use ferry_aws::{bootstrap, config, CapacityMeter, DynamoStore};
use ferry_core::ports::{RunFilter, Store};
use ferry_core::run::RunLease;
use ferry_core::state::{transition, RunEvent};
use ferry_core::{DeploymentId, FlowRun, Origin, QueueName, RunId, StateType};

const DEPLOYMENTS: usize = 20;
const QUEUES: [&str; 3] = ["default", "gpu", "etl"];
const PAGE: usize = 50;

struct Args {
    backend: String,
    home: PathBuf,
    table: Option<String>,
    runs: usize,
    repeat: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args {
        backend: "sqlite".into(),
        home: PathBuf::new(),
        table: None,
        runs: 10_000,
        repeat: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        match flag.as_str() {
            "--backend" => a.backend = value,
            "--home" => a.home = value.into(),
            "--table" => a.table = Some(value),
            "--runs" => a.runs = value.parse()?,
            "--repeat" => a.repeat = value.parse()?,
            other => anyhow::bail!("unknown flag {other}: see the module docs"),
        }
    }
    anyhow::ensure!(
        !a.home.as_os_str().is_empty(),
        "--home DIR is needed (bundles, logs, and the SQLite database)"
    );
    Ok(a)
}

/// The state of run `i` scheduled `minutes` from now (negative: in the past).
fn state_of(i: usize, minutes: i64) -> StateType {
    if minutes > 0 {
        return StateType::Scheduled;
    }
    if minutes > -10 {
        return [StateType::Late, StateType::Running, StateType::Scheduled][i % 3];
    }
    match (i * 7919) % 100 {
        0..=2 => StateType::Failed,
        3 => StateType::Crashed,
        4 => StateType::Cancelled,
        _ => StateType::Completed,
    }
}

/// A run in `state` with the history its lifecycle gives it (bodies of a realistic size).
fn run(i: usize, at: DateTime<Utc>, state: StateType) -> anyhow::Result<FlowRun> {
    let dep = DeploymentId::new("bench", &format!("d{:02}", i % DEPLOYMENTS))?;
    let queue = QueueName::parse("work_queue", QUEUES[(i % DEPLOYMENTS) % QUEUES.len()])?;
    let r = FlowRun::new_scheduled(
        RunId::scheduled(&dep, at),
        dep,
        queue,
        Default::default(),
        at,
        Origin::Schedule,
        1,
        at,
    );
    let lease = RunLease {
        agent_id: "bench-agent".into(),
        // Far enough ahead that the reaper of `ferry server` (the HTTP half of the bench)
        // leaves the Running runs alone while they are measured.
        expires_at: at + Duration::hours(6),
    };
    let step = |r: &FlowRun, e: RunEvent, s: i64| transition(r, e, at + Duration::seconds(s));
    let claimed = |r: &FlowRun| {
        step(
            r,
            RunEvent::Claim {
                lease: lease.clone(),
                slots: vec![],
            },
            1,
        )
    };
    let running = |r: &FlowRun| -> anyhow::Result<FlowRun> {
        Ok(step(
            &claimed(r)?,
            RunEvent::Start {
                log_location: Some(format!("logs/{}", r.id)),
            },
            2,
        )?)
    };
    Ok(match state {
        StateType::Scheduled => r,
        StateType::Late => step(&r, RunEvent::MarkLate, 60)?,
        StateType::Running => running(&r)?,
        StateType::Completed => step(&running(&r)?, RunEvent::Complete { result: None }, 30)?,
        StateType::Failed => step(
            &running(&r)?,
            RunEvent::Fail {
                exit_code: Some(1),
                reason: "exit code 1".into(),
            },
            30,
        )?,
        StateType::Crashed => step(
            &running(&r)?,
            RunEvent::Crash {
                reason: "lease expired".into(),
            },
            90,
        )?,
        StateType::Cancelled => step(
            &r,
            RunEvent::Cancel {
                reason: "cancelled by user".into(),
            },
            5,
        )?,
        other => anyhow::bail!("the bench seeds no {other} run"),
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = args()?;
    std::fs::create_dir_all(&a.home)?;
    let meter = Arc::new(CapacityMeter::default());
    let (store, table): (Arc<dyn Store>, Option<String>) = match a.backend.as_str() {
        "sqlite" => (
            Arc::new(ferry_embedded::SqliteStore::open(&a.home.join("ferry.db"))?),
            None,
        ),
        "dynamodb" => {
            let sdk = config::sdk_config().await;
            let client = config::dynamodb_client(&sdk);
            let table = a
                .table
                .clone()
                .unwrap_or_else(|| format!("ferry-dash-{}", uuid::Uuid::new_v4().simple()));
            bootstrap::ensure_table(&client, &table).await?;
            (
                Arc::new(DynamoStore::new(client, &table).with_meter(meter.clone())),
                Some(table),
            )
        }
        other => anyhow::bail!("--backend {other}: use sqlite or dynamodb"),
    };
    let ferry = Ferry::new(
        store.clone(),
        Arc::new(ferry_embedded::FsCodeStore::new(a.home.join("bundles"))),
        Arc::new(ferry_embedded::FsLogSink::new(a.home.join("logs"))),
        Arc::new(SystemClock),
    );
    ferry.ensure_default_queue().await?;
    for q in &QUEUES[1..] {
        ferry.create_queue(q, Some(4), None).await?;
    }
    for i in 0..DEPLOYMENTS {
        let spec = serde_json::from_value(serde_json::json!({
            "flow": "bench", "name": format!("d{i:02}"), "entrypoint": "run.sh",
            "work_queue": QUEUES[i % QUEUES.len()],
        }))?;
        ferry.apply_deployment(spec).await?;
    }

    // Seed: 32 inserts in flight (the SQLite store serializes them itself).
    let now = Utc::now();
    let upcoming = a.runs / 20;
    let t = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..a.runs {
        let minutes = i as i64 - (a.runs - upcoming) as i64 + 1;
        let r = run(i, now + Duration::minutes(minutes), state_of(i, minutes))?;
        let store = store.clone();
        tasks.spawn(async move { store.insert_run(&r).await });
        while tasks.len() >= 32 {
            if let Some(done) = tasks.join_next().await {
                done??;
            }
        }
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let seed_s = t.elapsed().as_secs_f64();

    // The cursor of page 50 of the runs list (walked once, not timed).
    let first = RunFilter {
        limit: PAGE,
        ..Default::default()
    };
    let mut before = None;
    for _ in 0..49 {
        let page = ferry
            .list_runs_page(first.clone(), RunView::Recent, before)
            .await?;
        before = page.runs.last().map(|r| r.id);
    }
    let page50_before = before.ok_or_else(|| anyhow::anyhow!("fewer than 49 pages of runs"))?;
    println!(
        "{}",
        serde_json::json!({"seeded": {
            "backend": a.backend, "runs": a.runs, "seconds": seed_s,
            "home": a.home, "table": table,
            "page50_before": page50_before.to_string(),
            "deployment": "bench/d00", "queue": "gpu",
        }})
    );

    let queue = |q: &str| RunFilter {
        work_queue: Some(q.into()),
        limit: PAGE,
        ..Default::default()
    };
    let state = |s: StateType| RunFilter {
        states: vec![s],
        limit: PAGE,
        ..Default::default()
    };
    let dep: DeploymentId = "bench/d00".parse()?;
    macro_rules! time {
        ($name:expr, $call:expr) => {{
            let mut ms = Vec::new();
            let m0 = meter.snapshot();
            let mut rows = 0usize;
            for _ in 0..a.repeat {
                let t = Instant::now();
                rows = $call.await?;
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            let m1 = meter.snapshot();
            ms.sort_by(|x, y| x.total_cmp(y));
            let n = a.repeat as f64;
            println!(
                "{}",
                serde_json::json!({
                    "backend": a.backend, "query": $name, "rows": rows,
                    "p50_ms": percentile(&ms, 0.5), "p95_ms": percentile(&ms, 0.95),
                    "calls": (m1.0 - m0.0) as f64 / n, "rcu": (m1.1 - m0.1) / n,
                })
            );
        }};
    }
    let len = |p: ferry_app::RunPage| p.runs.len();
    time!("runs page 1 (50, recent)", async {
        ferry
            .list_runs_page(first.clone(), RunView::Recent, None)
            .await
            .map(len)
    });
    time!("runs page 50 (before=)", async {
        ferry
            .list_runs_page(first.clone(), RunView::Recent, Some(page50_before))
            .await
            .map(len)
    });
    time!("state=failed page 1", async {
        ferry
            .list_runs_page(state(StateType::Failed), RunView::All, None)
            .await
            .map(len)
    });
    time!("state=late page 1", async {
        ferry
            .list_runs_page(state(StateType::Late), RunView::All, None)
            .await
            .map(len)
    });
    time!("work_queue=gpu page 1", async {
        ferry
            .list_runs_page(queue("gpu"), RunView::All, None)
            .await
            .map(len)
    });
    time!("deployment history (10)", async {
        ferry
            .list_runs_page(
                RunFilter {
                    deployment: Some(dep.clone()),
                    limit: 10,
                    ..Default::default()
                },
                RunView::Recent,
                None,
            )
            .await
            .map(len)
    });
    time!("counts of the last 24 h by state", async {
        ferry
            .count_recent_runs(Duration::hours(24))
            .await
            .map(|c| c.total() as usize)
    });
    time!("queue stats (3 queues)", async {
        ferry.all_queue_run_stats().await.map(|q| q.len())
    });
    Ok(())
}
