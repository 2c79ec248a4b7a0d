//! Every key of the table and its indexes, in one place (the table in the module docs of
//! [`super`] says which item carries which). No other module builds a key by hand.

use std::fmt::Display;

use chrono::{DateTime, Utc};
use ferry_core::ids::{DeploymentId, RunId};
use ferry_core::ports::{RunCursor, RunWindow};
use ferry_core::state::StateType;
use ferry_core::FlowRun;
use sha2::{Digest, Sha256};

/// Partition of the work queues (sort key: the queue name).
pub(super) const QUEUES: &str = "QUEUES";
/// Partition of the deployments (sort key: the deployment id, `flow/name`).
pub(super) const DEPLOYMENTS: &str = "DEPLOYMENTS";
/// Partition of the infrastructure profiles (sort key: `KIND/NAME`).
pub(super) const INFRA: &str = "INFRA";
/// Partition of the concurrency slots (sort key: [`slot_sk`]).
pub(super) const SLOTS: &str = "SLOTS";
/// Partition of the agents as last seen polling (sort key: the agent's name).
pub(super) const AGENTS: &str = "AGENTS";
/// The table's time-to-live attribute (epoch seconds; the table's TTL setting names it, see
/// `bootstrap` and infra/storage.yaml): DynamoDB deletes an item some time after it. Only agent
/// items carry it.
pub const TTL_ATTR: &str = "expire_at";

/// The sort key of a concurrency slot's item, also how a run's `slots` attribute names it:
/// `Q#<queue>` or `D#<flow/name>`.
pub(super) fn slot_sk(key: &ferry_core::slot::SlotKey) -> String {
    match key {
        ferry_core::slot::SlotKey::Queue(q) => format!("Q#{q}"),
        ferry_core::slot::SlotKey::Deployment(d) => format!("D#{d}"),
    }
}
/// Sort key of a run item.
pub(crate) const RUN_SK: &str = "R";
/// Sort key of an idempotency-key item.
pub(super) const IDEMPOTENCY_SK: &str = "I";
/// The one partition of the `leases` index.
pub(super) const LEASE_PK: &str = "L";
/// The one partition of the `horizon` index.
pub(super) const HORIZON_PK: &str = "H";
/// The lower bound of the `due` index's Scheduled range (every Late key sorts below it).
pub(super) const DUE_SCHEDULED_FROM: &str = "S#";

/// Shards of the `all_runs` index (spreads insert load over partitions).
pub const ALL_SHARDS: u32 = 8;

/// Index names, for `bootstrap` and the template.
pub mod index {
    /// Waiting runs per queue.
    pub const DUE: &str = "due";
    /// Held runs (the reaper's view).
    pub const LEASES: &str = "leases";
    /// Deployments by `next_tick_at`.
    pub const HORIZON: &str = "horizon";
    /// Runs per deployment.
    pub const BY_DEPLOYMENT: &str = "by_deployment";
    /// All runs by scheduled time, sharded.
    pub const ALL_RUNS: &str = "all_runs";
    /// Runs per state by scheduled time (hash `state`, range `all_sk`; projects `dep_pk` and
    /// `wq`): a state filter reads a page of its state, a queue filter merges the states'
    /// partitions and drops other queues' entries before reading a body, and a window's
    /// counts per state are `COUNT` queries. Its keys are attributes every run item has had
    /// from the start, so adding it to an existing table needs no backfill.
    pub const BY_STATE: &str = "runs_by_state";
}

/// The attributes `runs_by_state` projects besides the keys, so a state page filtered by
/// deployment or queue drops other runs before reading bodies.
pub const BY_STATE_INCLUDES: [&str; 2] = ["dep_pk", "wq"];

/// A time as a sort-key prefix: milliseconds, zero-padded so keys sort by time.
pub(super) fn ms_key(t: DateTime<Utc>) -> String {
    format!("{:015}", t.timestamp_millis().max(0))
}

/// The partition of a run: `R#<id>`. Takes a typed id or one as stored in a slot's holders.
pub(super) fn run_pk(id: impl Display) -> String {
    format!("R#{id}")
}

/// The run id of a run partition ([`run_pk`]); `None` for any other partition.
pub(crate) fn run_id_of_pk(pk: &str) -> Option<RunId> {
    pk.strip_prefix("R#")?.parse().ok()
}

/// The partition of an idempotency key: `I#<flow/name>#<key>`.
pub(super) fn idempotency_pk(deployment: &DeploymentId, key: &str) -> String {
    format!("I#{deployment}#{key}")
}

/// The `all_runs` shard of a run.
pub(super) fn shard(id: RunId) -> u32 {
    let d = Sha256::digest(id.to_string().as_bytes());
    u32::from(d[0]) % ALL_SHARDS
}

/// The partition of an `all_runs` shard: `A#<n>`.
pub(super) fn all_runs_pk(shard: u32) -> String {
    format!("A#{shard}")
}

/// The partition of a deployment's runs in `by_deployment`: `D#<id>`.
pub(super) fn by_deployment_pk(deployment: &DeploymentId) -> String {
    format!("D#{deployment}")
}

/// The sort key of a run in `by_deployment` and `all_runs`: `<scheduled ms>#<id>`.
pub(super) fn scheduled_sk(run: &FlowRun) -> String {
    format!("{}#{}", ms_key(run.scheduled_time), run.id)
}

/// The `(lower, upper)` sort keys of `by_deployment`/`all_runs` bounding runs scheduled from
/// `lo_ms` to `hi_ms` (inclusive).
pub(super) fn scheduled_sk_range(lo_ms: i64, hi_ms: i64) -> (String, String) {
    (
        format!("{:015}#", lo_ms.max(0)),
        format!("{:015}#~", hi_ms.max(0)),
    )
}

/// The sort key of a page cursor in `by_deployment`, `all_runs` and `runs_by_state`.
pub(super) fn cursor_sk(after: &RunCursor) -> String {
    format!("{}#{}", ms_key(after.scheduled_time), after.id)
}

/// A range of the scheduled-time sort keys (`<ms>#<id>`) a run list reads, in its order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ListRange {
    /// Inclusive lower bound (`None`: from the start).
    pub lower: Option<String>,
    /// Inclusive upper bound.
    pub upper: String,
    /// Ascending (`After`) or descending (the others).
    pub forward: bool,
    /// The cursor's own key: the bound includes it, the page does not.
    pub skip: Option<String>,
}

/// The sort-key range and read direction of a [`RunWindow`] after a cursor; `None` when
/// nothing can match (an empty window, or a cursor past its end).
pub(super) fn list_range(window: RunWindow, after: Option<&RunCursor>) -> Option<ListRange> {
    let (mut lower, mut upper, forward) = match window {
        RunWindow::All => (None, "~".to_owned(), false),
        RunWindow::DueBy(t) => (None, format!("{}#~", ms_key(t)), false),
        RunWindow::After(t) => (Some(format!("{}#~", ms_key(t))), "~".to_owned(), true),
        RunWindow::Between(lo, hi) => {
            if hi <= lo {
                return None;
            }
            let last = hi - chrono::Duration::milliseconds(1);
            (
                Some(format!("{}#", ms_key(lo))),
                format!("{}#~", ms_key(last)),
                false,
            )
        }
    };
    let skip = after.map(cursor_sk);
    if let Some(c) = &skip {
        if forward {
            lower = Some(lower.map_or_else(|| c.clone(), |l| l.max(c.clone())));
        } else {
            upper = upper.min(c.clone());
        }
    }
    if lower.as_ref().is_some_and(|l| *l > upper) {
        return None;
    }
    Some(ListRange {
        lower,
        upper,
        forward,
        skip,
    })
}

/// The `due` sort-key range of Late runs (all of them sort below [`DUE_SCHEDULED_FROM`]).
pub(super) const DUE_LATE_RANGE: (&str, &str) = ("L#", "L#~");

/// The partition of a queue's waiting runs in `due`: `Q#<queue>`.
pub(super) fn due_pk(queue: &str) -> String {
    format!("Q#{queue}")
}

/// The run's sort key in the `due` index while it waits: Late runs (`L#…`) sort before
/// Scheduled ones (`S#…`), so agents read overdue runs first and late marking reads only the
/// `S#` range — the runs that can still become late, never the backlog already Late.
pub(super) fn due_sk(run: &FlowRun) -> Option<String> {
    let prefix = match run.state {
        StateType::Late => "L",
        StateType::Scheduled => "S",
        _ => return None,
    };
    Some(format!(
        "{prefix}#{}#{}",
        ms_key(run.scheduled_time),
        run.id
    ))
}

/// The `due` partition of launched runs waiting for a launcher (never a queue's: agents do not
/// see them). Sort keys as a queue's ([`due_sk`]).
pub(crate) const LAUNCHABLE_PK: &str = "X#W";
/// The `due` partition of launched runs held by their launcher until their task takes them
/// (sort key `<start deadline ms>#<id>`).
pub(super) const AWAITING_TASK_PK: &str = "X#P";

/// Where a run sits in the `due` index, if anywhere: a waiting run in its queue's partition,
/// or — a run of a launched deployment — in [`LAUNCHABLE_PK`] while it waits and in
/// [`AWAITING_TASK_PK`] while its launcher holds it.
pub(super) fn due_entry(run: &FlowRun) -> Option<(String, String)> {
    if run.infra.is_none() {
        return due_sk(run).map(|sk| (due_pk(&run.work_queue), sk));
    }
    if let Some(sk) = due_sk(run) {
        return Some((LAUNCHABLE_PK.to_owned(), sk));
    }
    match (&run.lease, run.state) {
        (Some(lease), StateType::Pending) if run.awaits_task() => Some((
            AWAITING_TASK_PK.to_owned(),
            format!("{}#{}", ms_key(lease.expires_at), run.id),
        )),
        _ => None,
    }
}

/// The upper bound of the `due` range of runs due by `before`: every Late key, then the
/// Scheduled ones up to `before`.
pub(super) fn due_upper(before: DateTime<Utc>) -> String {
    format!("S#{}#~", ms_key(before))
}

/// The sort key of a run in `leases`: its id (stable, so a heartbeat costs no index write).
pub(super) fn lease_sk(id: RunId) -> String {
    id.to_string()
}

/// The sort key of a deployment in `horizon`: `<next_tick ms>#<id>`.
pub(super) fn horizon_sk(next_tick_at: DateTime<Utc>, id: &str) -> String {
    format!("{}#{id}", ms_key(next_tick_at))
}

/// The upper bound of the `horizon` range of deployments due by `now`.
pub(super) fn horizon_upper(now: DateTime<Utc>) -> String {
    format!("{}#~", ms_key(now))
}
