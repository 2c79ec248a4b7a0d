use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry_core::agent::{AgentPresence, AgentRecord};
use ferry_core::ids::{DeploymentId, RunId, RunIdPrefix};
use ferry_core::infra::{InfraName, InfraProfile};
use ferry_core::ports::{
    AgentStore, ClaimOutcome, DeploymentStore, DueCounts, InfraStore, InsertOutcome, QueueStore,
    RunFilter, RunStore, RunWindow, SlotTake, StateCounts, StoreError, StoreResult,
    AGENT_RETENTION,
};
use ferry_core::slot::SlotKey;
use ferry_core::state::StateType;
use ferry_core::{Deployment, FlowRun, WorkQueue};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

const SCHEMA: &str = r#"
PRAGMA journal_mode = WAL;
-- FULL: an acknowledged write survives a power loss (NORMAL syncs the WAL only at checkpoints
-- and can lose the last commits). Cost per run: docs/architecture.md, bench/durability.py.
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS queues (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS deployments (
    id TEXT PRIMARY KEY,
    -- The concurrency token, Deployment::version (the user's revision is in the body).
    revision INTEGER NOT NULL,
    next_tick_at INTEGER,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deployments_horizon ON deployments(next_tick_at)
    WHERE next_tick_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    deployment TEXT NOT NULL,
    queue TEXT NOT NULL,
    state TEXT NOT NULL,
    scheduled_time INTEGER NOT NULL,
    idempotency_key TEXT,
    lease_expires INTEGER,
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS runs_idempotency ON runs(deployment, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
DROP INDEX IF EXISTS runs_due;
CREATE INDEX IF NOT EXISTS runs_waiting ON runs(queue, state, scheduled_time, id)
    WHERE state IN ('scheduled', 'late');
CREATE INDEX IF NOT EXISTS runs_lease ON runs(lease_expires) WHERE lease_expires IS NOT NULL;
-- The run lists (`list_runs`): every one is ordered by (scheduled_time, id) and paged by a
-- keyset on it, so each index ends in those two columns. By state and by queue: a filtered
-- page reads about a page, not the table; by state also counts runs of a time window without
-- reading a row (covering).
DROP INDEX IF EXISTS runs_by_deployment;
DROP INDEX IF EXISTS runs_by_time;
CREATE INDEX IF NOT EXISTS runs_by_deployment_time ON runs(deployment, scheduled_time, id);
CREATE INDEX IF NOT EXISTS runs_by_time_id ON runs(scheduled_time, id);
CREATE INDEX IF NOT EXISTS runs_by_state ON runs(state, scheduled_time, id);
CREATE INDEX IF NOT EXISTS runs_by_queue ON runs(queue, scheduled_time, id);
CREATE TABLE IF NOT EXISTS slots (
    key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (key, run_id)
);
CREATE TABLE IF NOT EXISTS infra (
    name TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
-- Agents as last seen polling (body: their AgentPresence); times in ms. Rows older than
-- AGENT_RETENTION are pruned on every write.
CREATE TABLE IF NOT EXISTS agents (
    name TEXT PRIMARY KEY,
    first_seen INTEGER NOT NULL,
    last_poll INTEGER NOT NULL,
    body TEXT NOT NULL
);
"#;

/// Runs of launched deployments carry their profile in `infra` (added after the first
/// release: databases made before get the column on open). The launch index lists them; the
/// agents' due index (`runs_waiting` queries) skips them.
const LAUNCH_SCHEMA: &str = r#"
CREATE INDEX IF NOT EXISTS runs_launchable ON runs(state, scheduled_time, id)
    WHERE infra IS NOT NULL AND state IN ('scheduled', 'late');
CREATE INDEX IF NOT EXISTS runs_launched_pending ON runs(lease_expires)
    WHERE infra IS NOT NULL AND state = 'pending';
"#;

/// The embedded store: one SQLite file in WAL mode. Every port call is one transaction
/// (`BEGIN IMMEDIATE` for writes), run on the blocking pool.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

fn db_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(f, _) = &e {
        if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) {
            return StoreError::Unavailable {
                source: Box::new(e),
            };
        }
    }
    StoreError::backend(e)
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, body: &str) -> StoreResult<T> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        message: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(StoreError::backend)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::ConstraintViolation)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(StoreError::backend)?;
        }
        let conn = Connection::open(path).map_err(db_err)?;
        Self::init(conn)
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> StoreResult<Self> {
        Self::init(Connection::open_in_memory().map_err(db_err)?)
    }

    fn init(conn: Connection) -> StoreResult<Self> {
        conn.busy_timeout(Duration::from_secs(30)).map_err(db_err)?;
        conn.execute_batch(SCHEMA).map_err(db_err)?;
        let has_infra: bool = conn
            .prepare("SELECT 1 FROM pragma_table_info('runs') WHERE name = 'infra'")
            .and_then(|mut st| st.exists([]))
            .map_err(db_err)?;
        if !has_infra {
            conn.execute_batch("ALTER TABLE runs ADD COLUMN infra TEXT")
                .map_err(db_err)?;
        }
        conn.execute_batch(LAUNCH_SCHEMA).map_err(db_err)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn with<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(StoreError::backend)?
    }
}

fn runs_where(
    conn: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> StoreResult<Vec<FlowRun>> {
    bodies(conn, sql, args)
}

/// Decodes the `(key, body)` rows `sql` selects.
fn bodies<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let rows = stmt
        .query_map(args, |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, body) = row.map_err(db_err)?;
        out.push(decode(&id, &body)?);
    }
    Ok(out)
}

/// Decodes the `(id, body, revision)` deployment rows `sql` selects, the `revision` column
/// being the concurrency token ([`Deployment::version`]).
fn deployments_where(
    conn: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> StoreResult<Vec<Deployment>> {
    let mut stmt = conn.prepare_cached(sql).map_err(db_err)?;
    let rows = stmt
        .query_map(args, |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, body, version) = row.map_err(db_err)?;
        let mut d: Deployment = decode(&id, &body)?;
        d.version = u64::try_from(version).unwrap_or(0);
        out.push(d);
    }
    Ok(out)
}

fn write_run(tx: &Connection, run: &FlowRun, expected_version: u64) -> StoreResult<()> {
    let body = encode(run)?;
    let changed = tx
        .execute(
            "UPDATE runs SET state = ?2, scheduled_time = ?3, lease_expires = ?4, version = ?5,
                 queue = ?6, body = ?7
             WHERE id = ?1 AND version = ?8",
            params![
                run.id.to_string(),
                run.state.as_str(),
                ms(run.scheduled_time),
                run.lease.as_ref().map(|l| ms(l.expires_at)),
                run.version as i64,
                run.work_queue.as_str(),
                body,
                expected_version as i64
            ],
        )
        .map_err(db_err)?;
    if changed != 1 {
        return Err(StoreError::Conflict(format!(
            "run {} is not at version {expected_version}",
            run.id
        )));
    }
    // Slots the stored copy held and the new one does not are released.
    let held: Vec<String> = {
        let mut stmt = tx
            .prepare_cached("SELECT key FROM slots WHERE run_id = ?1")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([run.id.to_string()], |r| r.get(0))
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)?
    };
    let keep: Vec<String> = run.slots.iter().map(slot_column).collect();
    for key in held.iter().filter(|k| !keep.contains(k)) {
        tx.execute(
            "DELETE FROM slots WHERE key = ?1 AND run_id = ?2",
            params![key, run.id.to_string()],
        )
        .map_err(db_err)?;
    }
    Ok(())
}

/// How a slot is keyed in the `slots` table.
fn slot_column(key: &SlotKey) -> String {
    match key {
        SlotKey::Queue(q) => format!("Q#{q}"),
        SlotKey::Deployment(d) => format!("D#{d}"),
    }
}

fn insert_row(tx: &Connection, run: &FlowRun, body: &str) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO runs (id, deployment, queue, state, scheduled_time, idempotency_key,
             lease_expires, version, body, infra)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            run.id.to_string(),
            run.deployment.to_string(),
            run.work_queue.as_str(),
            run.state.as_str(),
            ms(run.scheduled_time),
            run.idempotency_key,
            run.lease.as_ref().map(|l| ms(l.expires_at)),
            run.version as i64,
            body,
            run.infra.as_ref().map(|i| i.to_string())
        ],
    )
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict(format!("run {} exists", run.id))
        } else {
            db_err(e)
        }
    })?;
    Ok(())
}

#[async_trait]
impl QueueStore for SqliteStore {
    async fn create_queue(&self, queue: &WorkQueue) -> StoreResult<()> {
        let body = encode(queue)?;
        let (name, version) = (queue.name.to_string(), queue.version as i64);
        self.with(move |c| {
            match c.execute(
                "INSERT INTO queues (name, version, body) VALUES (?1, ?2, ?3)",
                params![name, version, body],
            ) {
                Ok(_) => Ok(()),
                Err(e) if is_unique_violation(&e) => {
                    Err(StoreError::Conflict(format!("work queue {name} exists")))
                }
                Err(e) => Err(db_err(e)),
            }
        })
        .await
    }

    async fn update_queue(&self, queue: &WorkQueue, expected_version: u64) -> StoreResult<()> {
        let mut stored = queue.clone();
        stored.version = expected_version + 1;
        let body = encode(&stored)?;
        let name = queue.name.to_string();
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE queues SET version = ?2, body = ?3 WHERE name = ?1 AND version = ?4",
                    params![
                        name,
                        (expected_version + 1) as i64,
                        body,
                        expected_version as i64
                    ],
                )
                .map_err(db_err)?;
            if n != 1 {
                return Err(StoreError::Conflict(format!(
                    "work queue {name} changed or is gone"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn get_queue(&self, name: &str) -> StoreResult<Option<WorkQueue>> {
        let name = name.to_owned();
        self.with(move |c| {
            Ok(
                bodies(c, "SELECT name, body FROM queues WHERE name = ?1", &[&name])?
                    .into_iter()
                    .next(),
            )
        })
        .await
    }

    async fn list_queues(&self) -> StoreResult<Vec<WorkQueue>> {
        self.with(|c| bodies(c, "SELECT name, body FROM queues ORDER BY name", &[]))
            .await
    }

    async fn delete_queue(&self, name: &str) -> StoreResult<()> {
        let name = name.to_owned();
        self.with(move |c| {
            c.execute("DELETE FROM queues WHERE name = ?1", [&name])
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl DeploymentStore for SqliteStore {
    async fn get_deployment(&self, id: &DeploymentId) -> StoreResult<Option<Deployment>> {
        let id = id.to_string();
        self.with(move |c| {
            Ok(deployments_where(
                c,
                "SELECT id, body, revision FROM deployments WHERE id = ?1",
                &[&id],
            )?
            .into_iter()
            .next())
        })
        .await
    }

    async fn list_deployments(&self) -> StoreResult<Vec<Deployment>> {
        self.with(|c| {
            deployments_where(
                c,
                "SELECT id, body, revision FROM deployments ORDER BY id",
                &[],
            )
        })
        .await
    }

    async fn put_deployment(
        &self,
        deployment: &Deployment,
        expected_version: Option<u64>,
    ) -> StoreResult<()> {
        let body = encode(deployment)?;
        let id = deployment.id.to_string();
        let rev = deployment.version as i64;
        let next = deployment.next_tick_at.map(ms);
        self.with(move |c| {
            let result = match expected_version {
                None => c.execute(
                    "INSERT INTO deployments (id, revision, next_tick_at, body) VALUES (?1, ?2, ?3, ?4)",
                    params![id, rev, next, body],
                ),
                Some(expected) => c.execute(
                    "UPDATE deployments SET revision = ?2, next_tick_at = ?3, body = ?4
                     WHERE id = ?1 AND revision = ?5",
                    params![id, rev, next, body, expected as i64],
                ),
            };
            match result {
                Ok(1) => Ok(()),
                Ok(_) => Err(StoreError::Conflict(format!("deployment {id} changed or is gone"))),
                Err(e) if is_unique_violation(&e) => {
                    Err(StoreError::Conflict(format!("deployment {id} exists")))
                }
                Err(e) => Err(db_err(e)),
            }
        })
        .await
    }

    async fn delete_deployment(&self, id: &DeploymentId, expected_version: u64) -> StoreResult<()> {
        let id = id.to_string();
        self.with(move |c| {
            let n = c
                .execute(
                    "DELETE FROM deployments WHERE id = ?1 AND revision = ?2",
                    params![id, expected_version as i64],
                )
                .map_err(db_err)?;
            if n != 1 {
                return Err(StoreError::Conflict(format!(
                    "deployment {id} changed or is gone"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn deployments_due_for_tick(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<Deployment>> {
        self.with(move |c| {
            deployments_where(
                c,
                "SELECT id, body, revision FROM deployments WHERE next_tick_at IS NOT NULL
                 AND next_tick_at <= ?1 ORDER BY next_tick_at LIMIT ?2",
                &[&ms(now), &(limit as i64)],
            )
        })
        .await
    }
}

/// Runs per state scheduled in `[?1, ?2)`: one covering range of `runs_by_state` per state.
const COUNT_BY_STATE_SQL: &str = "SELECT state, COUNT(*) FROM runs INDEXED BY runs_by_state
    WHERE state IN ('scheduled', 'late', 'pending', 'running', 'cancelling', 'completed',
        'failed', 'crashed', 'cancelled')
    AND scheduled_time >= ?1 AND scheduled_time < ?2 GROUP BY state";

/// Late runs of queue `?1`, and its Scheduled runs due by `?2` (`runs_waiting`; runs of
/// launched deployments are not the queue's, as in `due_runs`).
const COUNT_DUE_SQL: &str = "SELECT
        COALESCE(SUM(state = 'late'), 0),
        COALESCE(SUM(state = 'scheduled' AND scheduled_time <= ?2), 0)
    FROM runs INDEXED BY runs_waiting
    WHERE queue = ?1 AND state IN ('scheduled', 'late') AND infra IS NULL";

/// The index a run list reads: one whose leading columns the filter fixes and that ends in
/// `(scheduled_time, id)`, so a page is an index range in order. Several states are left to
/// the planner (their runs are merged by a sort).
fn list_runs_index(filter: &RunFilter) -> Option<&'static str> {
    if filter.deployment.is_some() {
        Some("runs_by_deployment_time")
    } else if filter.states.len() == 1 {
        Some("runs_by_state")
    } else if filter.work_queue.is_some() && filter.states.is_empty() {
        Some("runs_by_queue")
    } else if filter.states.is_empty() {
        Some("runs_by_time_id")
    } else {
        None
    }
}

/// The query of `list_runs` and its arguments.
fn list_runs_sql(filter: &RunFilter) -> (String, Vec<Box<dyn rusqlite::ToSql>>) {
    let mut sql = String::from("SELECT id, body FROM runs");
    if let Some(index) = list_runs_index(filter) {
        sql.push_str(&format!(" INDEXED BY {index}"));
    }
    sql.push_str(" WHERE 1 = 1");
    let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
    if let Some(d) = &filter.deployment {
        args.push(Box::new(d.to_string()));
        sql.push_str(&format!(" AND deployment = ?{}", args.len()));
    }
    if let Some(q) = &filter.work_queue {
        args.push(Box::new(q.clone()));
        sql.push_str(&format!(" AND queue = ?{}", args.len()));
    }
    if !filter.states.is_empty() {
        let mut marks = Vec::new();
        for s in &filter.states {
            args.push(Box::new(s.as_str().to_owned()));
            marks.push(format!("?{}", args.len()));
        }
        sql.push_str(&format!(" AND state IN ({})", marks.join(", ")));
    }
    let descending = match filter.window {
        RunWindow::All => true,
        RunWindow::DueBy(t) => {
            args.push(Box::new(ms(t)));
            sql.push_str(&format!(" AND scheduled_time <= ?{}", args.len()));
            true
        }
        RunWindow::After(t) => {
            args.push(Box::new(ms(t)));
            sql.push_str(&format!(" AND scheduled_time > ?{}", args.len()));
            false
        }
        RunWindow::Between(lo, hi) => {
            args.push(Box::new(ms(lo)));
            args.push(Box::new(ms(hi)));
            sql.push_str(&format!(
                " AND scheduled_time >= ?{} AND scheduled_time < ?{}",
                args.len() - 1,
                args.len()
            ));
            true
        }
    };
    if let Some(after) = &filter.after {
        args.push(Box::new(ms(after.scheduled_time)));
        args.push(Box::new(after.id.to_string()));
        sql.push_str(&format!(
            " AND (scheduled_time, id) {} (?{}, ?{})",
            if descending { "<" } else { ">" },
            args.len() - 1,
            args.len()
        ));
    }
    let limit = if filter.limit == 0 {
        -1
    } else {
        filter.limit as i64
    };
    args.push(Box::new(limit));
    let order = if descending { "DESC" } else { "ASC" };
    sql.push_str(&format!(
        " ORDER BY scheduled_time {order}, id {order} LIMIT ?{}",
        args.len()
    ));
    (sql, args)
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn insert_run(&self, run: &FlowRun) -> StoreResult<InsertOutcome> {
        let run = run.clone();
        let body = encode(&run)?;
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let existing = if let Some(key) = &run.idempotency_key {
                runs_where(
                    &tx,
                    "SELECT id, body FROM runs WHERE id = ?1 OR (deployment = ?2 AND idempotency_key = ?3)",
                    &[&run.id.to_string(), &run.deployment.to_string(), key],
                )?
            } else {
                runs_where(
                    &tx,
                    "SELECT id, body FROM runs WHERE id = ?1",
                    &[&run.id.to_string()],
                )?
            };
            if let Some(found) = existing.into_iter().next() {
                return Ok(InsertOutcome::Exists(Box::new(found)));
            }
            insert_row(&tx, &run, &body)?;
            tx.commit().map_err(db_err)?;
            Ok(InsertOutcome::Inserted)
        })
        .await
    }

    async fn get_run(&self, id: RunId) -> StoreResult<Option<FlowRun>> {
        self.with(move |c| {
            Ok(runs_where(
                c,
                "SELECT id, body FROM runs WHERE id = ?1",
                &[&id.to_string()],
            )?
            .into_iter()
            .next())
        })
        .await
    }

    async fn update_run(&self, run: &FlowRun, expected_version: u64) -> StoreResult<()> {
        let run = run.clone();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            write_run(&tx, &run, expected_version)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn finish_with_retry(
        &self,
        held: &FlowRun,
        finished: &FlowRun,
        retry: &FlowRun,
    ) -> StoreResult<()> {
        let (expected, finished, retry) = (held.version, finished.clone(), retry.clone());
        let body = encode(&retry)?;
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            write_run(&tx, &finished, expected)?;
            insert_row(&tx, &retry, &body)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn delete_run(&self, id: RunId, expected_version: u64) -> StoreResult<()> {
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let n = tx
                .execute(
                    "DELETE FROM runs WHERE id = ?1 AND version = ?2",
                    params![id.to_string(), expected_version as i64],
                )
                .map_err(db_err)?;
            if n != 1 {
                return Err(StoreError::Conflict(format!(
                    "run {id} is not at version {expected_version}"
                )));
            }
            tx.execute("DELETE FROM slots WHERE run_id = ?1", [id.to_string()])
                .map_err(db_err)?;
            tx.commit().map_err(db_err)
        })
        .await
    }

    async fn list_runs(&self, filter: &RunFilter) -> StoreResult<Vec<FlowRun>> {
        let filter = filter.clone();
        self.with(move |c| {
            let (sql, args) = list_runs_sql(&filter);
            let refs: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a.as_ref()).collect();
            runs_where(c, &sql, &refs)
        })
        .await
    }

    async fn count_runs_by_state(
        &self,
        lo: DateTime<Utc>,
        hi: DateTime<Utc>,
    ) -> StoreResult<StateCounts> {
        self.with(move |c| {
            let mut stmt = c.prepare_cached(COUNT_BY_STATE_SQL).map_err(db_err)?;
            let rows = stmt
                .query_map(params![ms(lo), ms(hi)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
                })
                .map_err(db_err)?;
            let mut counts: StateCounts = StateType::ALL.iter().map(|s| (*s, 0)).collect();
            for row in rows {
                let (state, n) = row.map_err(db_err)?;
                let slot = counts
                    .iter_mut()
                    .find(|(s, _)| s.as_str() == state)
                    .ok_or_else(|| StoreError::Corrupt {
                        key: "runs.state".into(),
                        message: format!("{state:?} is not a state"),
                    })?;
                slot.1 = u64::try_from(n).unwrap_or(0);
            }
            Ok(counts)
        })
        .await
    }

    async fn count_due_runs(&self, queue: &str, now: DateTime<Utc>) -> StoreResult<DueCounts> {
        let queue = queue.to_owned();
        self.with(move |c| {
            let (late, scheduled): (i64, i64) = c
                .query_row(COUNT_DUE_SQL, params![queue, ms(now)], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(db_err)?;
            let late = u64::try_from(late).unwrap_or(0);
            Ok(DueCounts {
                due: late + u64::try_from(scheduled).unwrap_or(0),
                late,
            })
        })
        .await
    }

    async fn run_ids_with_prefix(
        &self,
        prefix: &RunIdPrefix,
        limit: usize,
    ) -> StoreResult<Vec<RunId>> {
        // Ids are stored in their canonical text form: the prefix is a range of the primary key.
        let lower = prefix.as_str().to_owned();
        let upper = format!("{lower}~");
        self.with(move |c| {
            let mut stmt = c
                .prepare("SELECT id FROM runs WHERE id >= ?1 AND id < ?2 ORDER BY id LIMIT ?3")
                .map_err(db_err)?;
            let ids = stmt
                .query_map(rusqlite::params![lower, upper, limit as i64], |r| {
                    r.get::<_, String>(0)
                })
                .map_err(db_err)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(db_err)?;
            ids.iter()
                .map(|id| {
                    id.parse()
                        .map_err(|e: ferry_core::ValidationError| StoreError::Corrupt {
                            key: format!("runs/{id}"),
                            message: e.message,
                        })
                })
                .collect()
        })
        .await
    }

    async fn due_runs_after(
        &self,
        queue: &str,
        before: DateTime<Utc>,
        after: Option<&FlowRun>,
        limit: usize,
    ) -> StoreResult<Vec<FlowRun>> {
        let queue = queue.to_owned();
        // 'late' sorts before 'scheduled': late runs first, as on DynamoDB.
        let after = after.map(|r| (r.state.as_str(), ms(r.scheduled_time), r.id.to_string()));
        let (state, time, id) = after.unwrap_or(("", i64::MIN, String::new()));
        self.with(move |c| {
            runs_where(
                c,
                "SELECT id, body FROM runs INDEXED BY runs_waiting
                 WHERE queue = ?1 AND state IN ('scheduled', 'late') AND scheduled_time <= ?2
                 AND (state, scheduled_time, id) > (?3, ?4, ?5) AND infra IS NULL
                 ORDER BY state, scheduled_time, id LIMIT ?6",
                &[&queue, &ms(before), &state, &time, &id, &(limit as i64)],
            )
        })
        .await
    }

    async fn scheduled_due(
        &self,
        queue: &str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Vec<FlowRun>> {
        let queue = queue.to_owned();
        self.with(move |c| {
            runs_where(
                c,
                "SELECT id, body FROM runs INDEXED BY runs_waiting
                 WHERE queue = ?1 AND state IN ('scheduled', 'late') AND state = 'scheduled'
                 AND scheduled_time <= ?2 AND infra IS NULL
                 ORDER BY scheduled_time, id LIMIT ?3",
                &[&queue, &ms(before), &(limit as i64)],
            )
        })
        .await
    }

    async fn launchable_after(
        &self,
        before: DateTime<Utc>,
        after: Option<&FlowRun>,
        limit: usize,
    ) -> StoreResult<Vec<FlowRun>> {
        let after = after.map(|r| (r.state.as_str(), ms(r.scheduled_time), r.id.to_string()));
        let (state, time, id) = after.unwrap_or(("", i64::MIN, String::new()));
        self.with(move |c| {
            runs_where(
                c,
                "SELECT id, body FROM runs INDEXED BY runs_launchable
                 WHERE infra IS NOT NULL AND state IN ('scheduled', 'late') AND scheduled_time <= ?1
                 AND (state, scheduled_time, id) > (?2, ?3, ?4)
                 ORDER BY state, scheduled_time, id LIMIT ?5",
                &[&ms(before), &state, &time, &id, &(limit as i64)],
            )
        })
        .await
    }

    async fn awaiting_tasks(&self, limit: usize) -> StoreResult<Vec<FlowRun>> {
        self.with(move |c| {
            runs_where(
                c,
                "SELECT id, body FROM runs INDEXED BY runs_launched_pending
                 WHERE infra IS NOT NULL AND state = 'pending'
                 AND json_extract(body, '$.lease.agent_id') LIKE 'launcher:%'
                 ORDER BY lease_expires LIMIT ?1",
                &[&(limit as i64)],
            )
        })
        .await
    }

    async fn waiting_runs_of(&self, deployment: &DeploymentId) -> StoreResult<Vec<FlowRun>> {
        let d = deployment.to_string();
        self.with(move |c| {
            runs_where(
                c,
                "SELECT id, body FROM runs WHERE deployment = ?1 AND state IN ('scheduled', 'late')
                 ORDER BY scheduled_time",
                &[&d],
            )
        })
        .await
    }

    async fn expired_leases(&self, now: DateTime<Utc>, limit: usize) -> StoreResult<Vec<FlowRun>> {
        self.with(move |c| {
            runs_where(
                c,
                "SELECT id, body FROM runs WHERE lease_expires IS NOT NULL AND lease_expires < ?1
                 AND state IN ('pending', 'running', 'cancelling') ORDER BY lease_expires LIMIT ?2",
                &[&ms(now), &(limit as i64)],
            )
        })
        .await
    }

    async fn claim_run(
        &self,
        claimed: &FlowRun,
        expected_version: u64,
        slots: &[SlotTake],
    ) -> StoreResult<ClaimOutcome> {
        let run = claimed.clone();
        let slots = slots.to_vec();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let current: Option<i64> = tx
                .query_row(
                    "SELECT version FROM runs WHERE id = ?1",
                    [run.id.to_string()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_err)?;
            if current != Some(expected_version as i64) {
                return Ok(ClaimOutcome::Lost);
            }
            for slot in &slots {
                let key = slot_column(&slot.key);
                let holders: i64 = tx
                    .query_row("SELECT COUNT(*) FROM slots WHERE key = ?1", [&key], |r| {
                        r.get(0)
                    })
                    .map_err(db_err)?;
                if holders >= i64::from(slot.limit) {
                    return Ok(ClaimOutcome::SlotFull(slot.key.clone()));
                }
                tx.execute(
                    "INSERT OR IGNORE INTO slots (key, run_id) VALUES (?1, ?2)",
                    params![key, run.id.to_string()],
                )
                .map_err(db_err)?;
            }
            write_run(&tx, &run, expected_version)?;
            tx.commit().map_err(db_err)?;
            Ok(ClaimOutcome::Claimed(Box::new(run)))
        })
        .await
    }

    async fn slot_holders(&self, key: &SlotKey) -> StoreResult<u32> {
        let key = slot_column(key);
        self.with(move |c| {
            let n: i64 = c
                .query_row("SELECT COUNT(*) FROM slots WHERE key = ?1", [&key], |r| {
                    r.get(0)
                })
                .map_err(db_err)?;
            Ok(n as u32)
        })
        .await
    }
}

#[async_trait]
impl InfraStore for SqliteStore {
    async fn put_infra(
        &self,
        profile: &InfraProfile,
        expected_version: Option<u64>,
    ) -> StoreResult<()> {
        let body = encode(profile)?;
        let (name, version) = (profile.name.to_string(), profile.version as i64);
        self.with(move |c| {
            let written = match expected_version {
                None => c.execute(
                    "INSERT INTO infra (name, version, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT(name) DO NOTHING",
                    params![name, version, body],
                ),
                Some(v) => c.execute(
                    "UPDATE infra SET version = ?2, body = ?3 WHERE name = ?1 AND version = ?4",
                    params![name, version, body, v as i64],
                ),
            }
            .map_err(db_err)?;
            if written != 1 {
                return Err(StoreError::Conflict(format!(
                    "infrastructure profile {name} changed, exists or is gone"
                )));
            }
            Ok(())
        })
        .await
    }

    async fn get_infra(&self, name: &InfraName) -> StoreResult<Option<InfraProfile>> {
        let name = name.to_string();
        self.with(move |c| {
            Ok(
                bodies(c, "SELECT name, body FROM infra WHERE name = ?1", &[&name])?
                    .into_iter()
                    .next(),
            )
        })
        .await
    }

    async fn list_infra(&self) -> StoreResult<Vec<InfraProfile>> {
        self.with(|c| bodies(c, "SELECT name, body FROM infra ORDER BY name", &[]))
            .await
    }

    async fn delete_infra(&self, name: &InfraName, expected_version: u64) -> StoreResult<()> {
        let name = name.to_string();
        self.with(move |c| {
            let n = c
                .execute(
                    "DELETE FROM infra WHERE name = ?1 AND version = ?2",
                    params![name, expected_version as i64],
                )
                .map_err(db_err)?;
            if n != 1 {
                return Err(StoreError::Conflict(format!(
                    "infrastructure profile {name} changed or is gone"
                )));
            }
            Ok(())
        })
        .await
    }
}

fn from_ms(key: &str, v: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_millis(v).ok_or_else(|| StoreError::Corrupt {
        key: key.to_owned(),
        message: format!("{v} is not a time in milliseconds"),
    })
}

#[async_trait]
impl AgentStore for SqliteStore {
    async fn record_agent(
        &self,
        presence: &AgentPresence,
        now: DateTime<Utc>,
    ) -> StoreResult<AgentRecord> {
        let body = encode(presence)?;
        let presence = presence.clone();
        self.with(move |c| {
            let tx = c
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            tx.execute(
                "DELETE FROM agents WHERE last_poll < ?1",
                [ms(now - AGENT_RETENTION)],
            )
            .map_err(db_err)?;
            let first_seen: i64 = tx
                .query_row(
                    "INSERT INTO agents (name, first_seen, last_poll, body) VALUES (?1, ?2, ?2, ?3)
                     ON CONFLICT(name) DO UPDATE SET last_poll = excluded.last_poll,
                         body = excluded.body
                     RETURNING first_seen",
                    params![presence.name, ms(now), body],
                    |r| r.get(0),
                )
                .map_err(db_err)?;
            tx.commit().map_err(db_err)?;
            let key = format!("agent {}", presence.name);
            Ok(AgentRecord {
                first_seen: from_ms(&key, first_seen)?,
                last_poll: from_ms(&key, ms(now))?,
                presence,
            })
        })
        .await
    }

    async fn list_agents(&self, since: DateTime<Utc>) -> StoreResult<Vec<AgentRecord>> {
        self.with(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT name, first_seen, last_poll, body FROM agents WHERE last_poll >= ?1
                     ORDER BY name",
                )
                .map_err(db_err)?;
            let rows = stmt
                .query_map([ms(since)], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                })
                .map_err(db_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (name, first_seen, last_poll, body) = row.map_err(db_err)?;
                let key = format!("agent {name}");
                out.push(AgentRecord {
                    presence: decode(&key, &body)?,
                    first_seen: from_ms(&key, first_seen)?,
                    last_poll: from_ms(&key, last_poll)?,
                });
            }
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod durability_tests {
    use super::*;

    #[test]
    fn every_commit_is_synced_to_disk() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("ferry.db")).unwrap();
        let conn = store.conn.lock().unwrap();
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "PRAGMA synchronous must be FULL (2), not {sync}");
    }
}

#[cfg(test)]
mod plan_tests {
    //! The run lists and counts read an index range in order (EXPLAIN QUERY PLAN): a page
    //! costs a page, whichever page and whichever single filter.
    use super::*;
    use chrono::TimeZone;
    use ferry_core::ports::RunCursor;

    fn plan(store: &SqliteStore, sql: &str, args: &[&dyn rusqlite::ToSql]) -> String {
        let conn = store.conn.lock().unwrap();
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = stmt.query_map(args, |r| r.get::<_, String>(3)).unwrap();
        rows.collect::<Result<Vec<_>, _>>().unwrap().join(" | ")
    }

    fn list_plan(store: &SqliteStore, filter: &RunFilter) -> String {
        let (sql, args) = list_runs_sql(filter);
        let refs: Vec<&dyn rusqlite::ToSql> = args.iter().map(|a| a.as_ref()).collect();
        plan(store, &sql, &refs)
    }

    #[test]
    fn filtered_pages_and_counts_are_index_ranges_without_a_sort() {
        let store = SqliteStore::in_memory().unwrap();
        let t = Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap();
        let cursor = Some(RunCursor {
            scheduled_time: t,
            id: RunId::adhoc(t, [1; 10]),
        });
        let cases = [
            (
                RunFilter {
                    states: vec![StateType::Failed],
                    limit: 50,
                    after: cursor,
                    ..Default::default()
                },
                "runs_by_state (state=? AND",
            ),
            (
                RunFilter {
                    work_queue: Some("gpu".into()),
                    limit: 50,
                    window: RunWindow::DueBy(t),
                    after: cursor,
                    ..Default::default()
                },
                "runs_by_queue (queue=? AND",
            ),
            (
                RunFilter {
                    limit: 50,
                    after: cursor,
                    ..Default::default()
                },
                "runs_by_time_id (",
            ),
            (
                RunFilter {
                    limit: 50,
                    window: RunWindow::After(t),
                    after: cursor,
                    ..Default::default()
                },
                "runs_by_time_id (",
            ),
            (
                RunFilter {
                    deployment: Some(DeploymentId::new("etl", "nightly").unwrap()),
                    limit: 50,
                    window: RunWindow::Between(t, t),
                    after: cursor,
                    ..Default::default()
                },
                "runs_by_deployment_time (deployment=? AND",
            ),
        ];
        for (filter, index) in cases {
            let p = list_plan(&store, &filter);
            assert!(
                p.starts_with("SEARCH runs USING INDEX ") && p.contains(index),
                "{filter:?}: {p}"
            );
            assert!(!p.contains("TEMP B-TREE"), "{filter:?} sorts: {p}");
        }
        let counts = plan(&store, COUNT_BY_STATE_SQL, &[&0i64, &1i64]);
        assert!(
            counts.contains("SEARCH runs USING COVERING INDEX runs_by_state (state=? AND scheduled_time>? AND scheduled_time<?)"),
            "{counts}"
        );
        assert!(!counts.contains("SCAN"), "{counts}");
        let due = plan(&store, COUNT_DUE_SQL, &[&"q", &0i64]);
        assert!(
            due.contains("SEARCH runs USING INDEX runs_waiting (queue=? AND state=?)"),
            "{due}"
        );
    }
}
