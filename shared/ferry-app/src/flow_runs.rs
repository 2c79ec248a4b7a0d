//! The user-facing run use cases: create an ad-hoc run, read, list, cancel, read its log. (The
//! agent's — claim, start, heartbeat, finish — are in `agent_runs`.)

use chrono::{DateTime, Duration, Utc};
use ferry_core::ids::{DeploymentId, RunId, RunIdPrefix};
use ferry_core::ports::{
    DueCounts, InsertOutcome, LogPage, RunCursor, RunFilter, RunWindow, StateCounts,
};
use ferry_core::run::{FlowRun, Origin};
use ferry_core::state::{transition, RunEvent, StateType};
use ferry_core::validate::check_parameters;

use crate::retry::{landed, retry_on_conflict, Attempt};
use crate::{AppError, Ferry, RunRequest};

/// The most candidates an ambiguous run-id prefix lists.
const MAX_CANDIDATES: usize = 10;

/// Which runs a user lists, by scheduled time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RunView {
    /// Every run, newest scheduled first.
    #[default]
    All,
    /// What happened: runs scheduled up to now (finished, running, due or late), newest first.
    Recent,
    /// What comes: runs scheduled after now, soonest first.
    Upcoming,
}

impl RunView {
    /// The store's window for this view at `now`.
    pub fn window(self, now: DateTime<Utc>) -> RunWindow {
        match self {
            RunView::All => RunWindow::All,
            RunView::Recent => RunWindow::DueBy(now),
            RunView::Upcoming => RunWindow::After(now),
        }
    }
}

/// One page of a run list, and where the next page starts.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    /// At most the filter's `limit` runs, in the window's order.
    pub runs: Vec<FlowRun>,
    /// The cursor for the next page (the last run of this one); `None`: this is the last page.
    pub next: Option<RunCursor>,
}

/// Runs per state scheduled in a time window (the overview's "last 24 h").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowCounts {
    /// Runs scheduled at or after this time...
    pub from: DateTime<Utc>,
    /// ...and before this one.
    pub to: DateTime<Utc>,
    /// Per state, every state listed (0 when none), in [`StateType::ALL`] order.
    pub counts: StateCounts,
}

impl WindowCounts {
    /// Runs in `state`.
    pub fn of(&self, state: StateType) -> u64 {
        self.counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n)
    }
    /// Runs in the window.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, n)| n).sum()
    }
}

/// A work queue's runs as the work-queues page shows them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRunStats {
    /// The queue.
    pub queue: ferry_core::WorkQueue,
    /// Waiting runs due now (Scheduled and due, or Late), Late ones included.
    pub due: u64,
    /// Late runs.
    pub late: u64,
    /// Slots held (runs Pending/Running/Cancelling under the queue's limit); `None` when the
    /// queue has no limit, for then no slot is kept.
    pub in_use: Option<u32>,
}

impl std::str::FromStr for RunView {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Self::All),
            "recent" => Ok(Self::Recent),
            "upcoming" => Ok(Self::Upcoming),
            other => Err(format!(
                "{other:?} is not a view: use `recent` (scheduled up to now, newest first), `upcoming` (scheduled later, soonest first) or `all`"
            )),
        }
    }
}

impl Ferry {
    /// Creates an ad-hoc run; with an idempotency key, a repeat of the same request returns the
    /// first run (`false` = it existed), and a different request with that key is refused
    /// ([`AppError::IdempotencyKeyReused`]): its parameters would be dropped silently otherwise.
    pub async fn create_run(
        &self,
        id: &DeploymentId,
        req: RunRequest,
    ) -> Result<(FlowRun, bool), AppError> {
        let d = self.get_deployment(id).await?;
        if let Some(k) = &req.idempotency_key {
            if k.is_empty() || k.len() > ferry_core::limits::MAX_IDEMPOTENCY_KEY {
                return Err(AppError::invalid(
                    "idempotency_key",
                    format!(
                        "must be 1-{} characters",
                        ferry_core::limits::MAX_IDEMPOTENCY_KEY
                    ),
                ));
            }
        }
        let start_in = req.start_in_seconds.unwrap_or(0);
        if !(0..=366 * 86_400).contains(&start_in) {
            return Err(AppError::invalid(
                "start_in_seconds",
                "must be between 0 and 31622400 (366 days)",
            ));
        }
        let mut params = d.spec.parameters.clone();
        params.extend(req.parameters);
        check_parameters("parameters", &params)?;
        let now = self.now();
        let mut random = [0u8; 10];
        random.copy_from_slice(&uuid::Uuid::new_v4().as_bytes()[..10]);
        let scheduled = now + Duration::seconds(start_in);
        // The id carries the scheduled time, like a scheduled run's: how id prefixes are found.
        let mut run = FlowRun::new_scheduled(
            RunId::adhoc(scheduled, random),
            d.id.clone(),
            d.spec.work_queue.clone(),
            params,
            scheduled,
            Origin::Manual,
            1,
            now,
        );
        run.idempotency_key = req.idempotency_key;
        run.infra = d.spec.infra_block.clone();
        match self.store.insert_run(&run).await? {
            InsertOutcome::Inserted => {
                tracing::info!(run_id = %run.id, deployment = %run.deployment, "ad-hoc run created");
                self.notify_run_created();
                Ok((run, true))
            }
            InsertOutcome::Exists(existing) => match idempotent_repeat_differs(&existing, &run) {
                None => Ok((*existing, false)),
                Some(differs) => Err(AppError::IdempotencyKeyReused {
                    key: run.idempotency_key.unwrap_or_default(),
                    run: existing.id,
                    differs,
                }),
            },
        }
    }

    /// A run by id.
    pub async fn get_run(&self, id: RunId) -> Result<FlowRun, AppError> {
        self.store
            .get_run(id)
            .await?
            .ok_or_else(|| AppError::not_found("flow run", id))
    }

    /// The run a user names by its id or a unique prefix of it (at least
    /// [`RunIdPrefix::MIN_LEN`] hex digits). A prefix is looked up through the scheduled time
    /// the ids carry (an index range on every store); one that matches several runs is refused
    /// listing them.
    pub async fn resolve_run_id(&self, text: &str) -> Result<RunId, AppError> {
        if let Ok(id) = text.parse::<RunId>() {
            return Ok(id);
        }
        let prefix = RunIdPrefix::parse("run_id", text)?;
        let found = self
            .store
            .run_ids_with_prefix(&prefix, MAX_CANDIDATES + 1)
            .await?;
        match found.as_slice() {
            [] => Err(AppError::not_found("flow run", prefix)),
            [one] => Ok(*one),
            many => {
                let shown: Vec<String> = many
                    .iter()
                    .take(MAX_CANDIDATES)
                    .map(ToString::to_string)
                    .collect();
                let more = if many.len() > MAX_CANDIDATES {
                    " and more"
                } else {
                    ""
                };
                Err(AppError::invalid(
                    "run_id",
                    format!(
                        "{text:?} is the start of several flow runs' ids: {}{more}; give more characters",
                        shown.join(", ")
                    ),
                ))
            }
        }
    }

    /// Runs matching a filter.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<FlowRun>, AppError> {
        Ok(self.store.list_runs(filter).await?)
    }

    /// Runs matching a filter in one of the user's views: the filter's window is set from
    /// `view` and the clock.
    pub async fn list_runs_view(
        &self,
        filter: RunFilter,
        view: RunView,
    ) -> Result<Vec<FlowRun>, AppError> {
        let window = view.window(self.now());
        self.list_runs(&RunFilter { window, ..filter }).await
    }

    /// One page of runs matching `filter` (its window, its `after` cursor and its `limit`,
    /// which must be 1 or more), and the cursor of the next page. Keyset pagination: page N
    /// costs what page 1 costs on every store.
    pub async fn runs_page(&self, filter: RunFilter) -> Result<RunPage, AppError> {
        if filter.limit == 0 {
            return Err(AppError::invalid(
                "limit",
                "a page needs a limit of 1 or more",
            ));
        }
        let limit = filter.limit;
        // One run more than the page tells whether another page follows.
        let mut runs = self
            .store
            .list_runs(&RunFilter {
                limit: limit + 1,
                ..filter
            })
            .await?;
        let next = if runs.len() > limit {
            runs.truncate(limit);
            runs.last().map(RunCursor::of)
        } else {
            None
        };
        Ok(RunPage { runs, next })
    }

    /// One page of runs in one of the user's views, continuing after the run `before` (the
    /// last run of the previous page, as `GET /v1/flow-runs?before=` and the dashboard's
    /// "Older" link carry it; `None`: the first page). `filter.window` and `filter.after` are
    /// set from `view` and `before`.
    pub async fn list_runs_page(
        &self,
        filter: RunFilter,
        view: RunView,
        before: Option<RunId>,
    ) -> Result<RunPage, AppError> {
        let after = match before {
            None => None,
            Some(id) => Some(RunCursor::of(&self.store.get_run(id).await?.ok_or_else(
                || {
                    AppError::invalid(
                        "before",
                        format!("no flow run {id} (deleted since the page was shown?): start again from the first page, without `before`"),
                    )
                },
            )?)),
        };
        let window = view.window(self.now());
        self.runs_page(RunFilter {
            window,
            after,
            ..filter
        })
        .await
    }

    /// Runs scheduled in `[from, to)` per state, counted on an index (no run is read).
    pub async fn count_runs_by_state(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<WindowCounts, AppError> {
        if to < from {
            return Err(AppError::invalid(
                "to",
                format!("{to} is before from ({from}): give a window that ends after it starts"),
            ));
        }
        Ok(WindowCounts {
            from,
            to,
            counts: self.store.count_runs_by_state(from, to).await?,
        })
    }

    /// Runs scheduled in the last `span` up to now (now included) per state: the overview's
    /// "runs of the last 24 h by state" with `span` = 24 h.
    pub async fn count_recent_runs(&self, span: Duration) -> Result<WindowCounts, AppError> {
        let to = self.now() + Duration::milliseconds(1);
        self.count_runs_by_state(to - span, to).await
    }

    /// A queue's due and late runs (counted on the due index) and its slots in use.
    pub async fn queue_run_stats(&self, name: &str) -> Result<QueueRunStats, AppError> {
        let queue = self.get_queue(name).await?;
        self.stats_of(queue).await
    }

    /// [`Ferry::queue_run_stats`] of every queue, by name.
    pub async fn all_queue_run_stats(&self) -> Result<Vec<QueueRunStats>, AppError> {
        let mut out = Vec::new();
        for queue in self.list_queues().await? {
            out.push(self.stats_of(queue).await?);
        }
        Ok(out)
    }

    async fn stats_of(&self, queue: ferry_core::WorkQueue) -> Result<QueueRunStats, AppError> {
        let DueCounts { due, late } = self
            .store
            .count_due_runs(queue.name.as_str(), self.now())
            .await?;
        let in_use = match queue.concurrency_limit {
            Some(_) => Some(self.store.slot_holders(&queue.slot_key()).await?),
            None => None,
        };
        Ok(QueueRunStats {
            queue,
            due,
            late,
            in_use,
        })
    }

    /// Cancels a run: a waiting or Pending run is Cancelled at once; a Running one becomes
    /// Cancelling and its agent stops the process. A run already Cancelled or Cancelling is
    /// returned as it is (cancelling twice is no error); a finished one is a conflict.
    pub async fn cancel_run(&self, id: RunId) -> Result<FlowRun, AppError> {
        retry_on_conflict(format!("run {id}"), || async move {
            let run = self.get_run(id).await?;
            if matches!(run.state, StateType::Cancelling | StateType::Cancelled) {
                return Ok(Attempt::Done(run));
            }
            if run.state.is_terminal() {
                return Err(AppError::Conflict(format!(
                    "cannot cancel run {id}: it already finished ({}{})",
                    run.state,
                    run.ended_at
                        .map(|t| format!(
                            " at {}",
                            t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        ))
                        .unwrap_or_default()
                )));
            }
            let next = transition(
                &run,
                RunEvent::Cancel {
                    reason: "cancelled by user".into(),
                },
                self.now(),
            )
            .map_err(|e| {
                AppError::Conflict(format!("cannot cancel run {id}: it is {} ({e})", run.state))
            })?;
            if !landed(self.store.update_run(&next, run.version).await)? {
                return Ok(Attempt::Lost);
            }
            if next.state == StateType::Cancelled {
                self.stop_cancelled_task(&run).await;
            }
            Ok(Attempt::Done(next))
        })
        .await
    }

    /// A page of a run's log.
    pub async fn run_logs(
        &self,
        id: RunId,
        offset: u64,
        limit: usize,
    ) -> Result<LogPage, AppError> {
        self.get_run(id).await?;
        self.logs
            .read(id, offset, limit)
            .await
            .map_err(|e| AppError::Logs(Box::new(e)))
    }
}

/// What differs between the run an idempotency key created and a repeated request's would-be
/// run: its merged `parameters`, or its start offset (`start_in_seconds`, compared as the gap
/// between creation and scheduled time, whole seconds). `None`: the same request.
fn idempotent_repeat_differs(existing: &FlowRun, repeat: &FlowRun) -> Option<&'static str> {
    let start_in = |r: &FlowRun| {
        (r.scheduled_time - r.created_at)
            .num_milliseconds()
            .saturating_add(500)
            .div_euclid(1000)
    };
    if existing.parameters != repeat.parameters {
        Some("parameters")
    } else if start_in(existing) != start_in(repeat) {
        Some("start_in_seconds")
    } else {
        None
    }
}
