//! How far ahead the tick writes runs, as a pure function of the schedules, the cursor and now.
//!
//! Like Prefect: at least [`MIN_RUNS`] runs and [`MIN_AHEAD`] ahead, at most [`MAX_RUNS`] runs
//! and [`MAX_AHEAD`]. The tick writes up to twice the minimum so that a deployment needs
//! extending only every so often, and records `next_tick_at`: the instant at which fewer than
//! the minimum would remain. The schedule-horizon index is keyed by that instant, so a tick
//! touches only deployments whose horizon needs extending.

use chrono::{DateTime, Duration, Utc};

use crate::deployment::CatchUp;
use crate::schedule::{fire_times, Schedule};

/// Fewest future runs kept written.
pub const MIN_RUNS: usize = 3;
/// Shortest look-ahead kept written.
pub const MIN_AHEAD: Duration = Duration::hours(1);
/// Most future runs written per deployment.
pub const MAX_RUNS: usize = 100;
/// Longest look-ahead.
pub const MAX_AHEAD: Duration = Duration::days(100);

/// What one tick should write for one deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HorizonPlan {
    /// Fire times to write as runs, ascending (missed ones first, per the catch-up policy).
    pub fire_times: Vec<DateTime<Utc>>,
    /// New cursor: every fire time up to here has been considered.
    pub scheduled_until: DateTime<Utc>,
    /// When the horizon next needs extending.
    pub next_tick_at: DateTime<Utc>,
}

/// Plans one tick for schedules whose fire times up to `cursor` are already written.
pub fn plan(
    schedules: &[Schedule],
    cursor: DateTime<Utc>,
    now: DateTime<Utc>,
    catchup: CatchUp,
) -> HorizonPlan {
    let mut out = Vec::new();
    let from = if cursor < now {
        let missed = fire_times(schedules, cursor, now, 10_000);
        let keep = match catchup {
            CatchUp::Skip => 0,
            CatchUp::Latest => 1,
            CatchUp::All { max } => max as usize,
        };
        out.extend(missed.iter().skip(missed.len().saturating_sub(keep)));
        now
    } else {
        cursor
    };
    let cap = now + MAX_AHEAD;
    let mut until = (now + MIN_AHEAD * 2).min(cap);
    // Runs already written between now and the cursor count toward the minimum.
    let upcoming = fire_times(schedules, now, cap, MAX_RUNS);
    if upcoming.len() >= MIN_RUNS * 2 {
        until = until.max(upcoming[MIN_RUNS * 2 - 1]);
    } else {
        until = cap;
    }
    if upcoming.len() == MAX_RUNS {
        until = until.min(upcoming[MAX_RUNS - 1]);
    }
    let until = until.max(from);
    let new: Vec<_> = upcoming
        .iter()
        .copied()
        .filter(|t| *t > from && *t <= until)
        .collect();
    out.extend(new);
    let written: Vec<_> = upcoming.into_iter().filter(|t| *t <= until).collect();
    let mut next = until - MIN_AHEAD;
    if written.len() >= MIN_RUNS {
        next = next.min(written[written.len() - MIN_RUNS]);
    }
    HorizonPlan {
        fire_times: out,
        scheduled_until: until,
        next_tick_at: next.max(now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::ScheduleSpec;
    use chrono::TimeZone;

    fn cron(expr: &str) -> Vec<Schedule> {
        let spec: ScheduleSpec =
            serde_json::from_value(serde_json::json!({ "cron": expr })).unwrap();
        vec![Schedule::parse(&spec).unwrap()]
    }

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 4, h, m, 0).unwrap()
    }

    #[test]
    fn minutely_schedule_writes_two_hours_and_comes_back_within_one() {
        let p = plan(&cron("* * * * *"), t(10, 0), t(10, 0), CatchUp::Skip);
        assert_eq!(p.fire_times.len(), 100); // capped at MAX_RUNS
        assert_eq!(p.fire_times[0], t(10, 1));
        assert!(p.next_tick_at <= p.scheduled_until - MIN_AHEAD);
        assert!(p.next_tick_at > t(10, 0));
    }

    #[test]
    fn daily_schedule_writes_at_least_three_runs() {
        let p = plan(&cron("0 2 * * *"), t(10, 0), t(10, 0), CatchUp::Skip);
        assert!(p.fire_times.len() >= MIN_RUNS);
        assert!(p.next_tick_at >= t(10, 0));
        // Re-planning from the new cursor at the same instant writes nothing new.
        let again = plan(
            &cron("0 2 * * *"),
            p.scheduled_until,
            t(10, 0),
            CatchUp::Skip,
        );
        assert!(again.fire_times.is_empty(), "{:?}", again.fire_times);
    }

    #[test]
    fn catchup_policies_pick_missed_runs() {
        let s = cron("0 * * * *");
        let skip = plan(&s, t(1, 30), t(6, 30), CatchUp::Skip);
        assert!(skip.fire_times.iter().all(|f| *f > t(6, 30)));
        let latest = plan(&s, t(1, 30), t(6, 30), CatchUp::Latest);
        assert_eq!(latest.fire_times[0], t(6, 0));
        assert!(latest.fire_times[1..].iter().all(|f| *f > t(6, 30)));
        let all = plan(&s, t(1, 30), t(6, 30), CatchUp::All { max: 3 });
        assert_eq!(&all.fire_times[..3], &[t(4, 0), t(5, 0), t(6, 0)]);
    }

    #[test]
    fn a_one_time_schedule_is_written_once_and_then_nothing() {
        let spec: ScheduleSpec =
            serde_json::from_value(serde_json::json!({ "schedule": "at(2026-05-04T12:00:00)" }))
                .unwrap();
        let once = vec![Schedule::parse(&spec).unwrap()];
        let p = plan(&once, t(10, 0), t(10, 0), CatchUp::Skip);
        assert_eq!(p.fire_times, [t(12, 0)]);
        assert!(p.next_tick_at > t(10, 0));
        // From the new cursor, and once it has passed: nothing more.
        let again = plan(&once, p.scheduled_until, t(13, 0), CatchUp::All { max: 5 });
        assert!(again.fire_times.is_empty(), "{:?}", again.fire_times);
        // Missed while nothing ticked: the catch-up policy decides, as for any schedule.
        let missed = plan(&once, t(9, 0), t(13, 0), CatchUp::Latest);
        assert_eq!(missed.fire_times, [t(12, 0)]);
        let skipped = plan(&once, t(9, 0), t(13, 0), CatchUp::Skip);
        assert!(skipped.fire_times.is_empty());
    }
}
