//! Interval schedules: `anchor + k * interval` in absolute time, or in local calendar days
//! when the interval is a whole number of days.

use chrono::{DateTime, FixedOffset, NaiveDateTime, TimeDelta, Utc};
use chrono_tz::Tz;

use super::dst::{resolve_local, Ascending};
use super::{default_anchor, ScheduleError};

/// Longest accepted interval: ten years of 365 days.
pub(super) const MAX_INTERVAL_SECS: u64 = 3650 * 86_400;
const NANOS_PER_SEC: i128 = 1_000_000_000;

/// A parsed interval schedule.
#[derive(Debug, Clone)]
pub(super) enum Interval {
    /// `anchor + k * step` in absolute time (nanoseconds since the Unix epoch).
    Every { anchor_ns: i128, step_ns: i128 },
    /// `anchor + k * days` local calendar days, at the anchor's wall-clock time.
    EveryDays { anchor: NaiveDateTime, days: i64 },
}

impl Interval {
    pub(super) fn parse(
        interval: u64,
        anchor: Option<DateTime<FixedOffset>>,
        tz: Tz,
    ) -> Result<Self, ScheduleError> {
        if interval == 0 {
            return Err(ScheduleError::new("interval", "must be at least 1 second"));
        }
        if interval > MAX_INTERVAL_SECS {
            return Err(ScheduleError::new(
                "interval",
                format!(
                    "must be at most {MAX_INTERVAL_SECS} seconds (10 years), got {interval}; \
                     use a cron or rrule schedule for rarer runs"
                ),
            ));
        }
        let step = i64::try_from(interval).unwrap_or(i64::MAX);
        if interval.is_multiple_of(86_400) {
            let anchor = match anchor {
                Some(a) => a.with_timezone(&tz).naive_local(),
                None => default_anchor(),
            };
            Ok(Interval::EveryDays {
                anchor,
                days: step / 86_400,
            })
        } else {
            let anchor = match anchor {
                Some(a) => a.with_timezone(&Utc),
                None => resolve_local(tz, default_anchor()).unwrap_or_default(),
            };
            Ok(Interval::Every {
                anchor_ns: to_nanos(anchor),
                step_ns: i128::from(step) * NANOS_PER_SEC,
            })
        }
    }

    /// Every `secs` seconds in absolute time from `anchor` (default 2020-01-01T00:00 in `tz`),
    /// whole days included: an EventBridge `rate(1 day)` is 24 hours, not a calendar day.
    /// `secs` is checked by the caller (1 to 10 years).
    pub(super) fn absolute(secs: u64, anchor: Option<DateTime<FixedOffset>>, tz: Tz) -> Self {
        let anchor = match anchor {
            Some(a) => a.with_timezone(&Utc),
            None => resolve_local(tz, default_anchor()).unwrap_or_default(),
        };
        Interval::Every {
            anchor_ns: to_nanos(anchor),
            step_ns: i128::from(secs) * NANOS_PER_SEC,
        }
    }

    /// Fire times strictly after `after`, ascending.
    pub(super) fn iter_after(
        &self,
        tz: Tz,
        after: DateTime<Utc>,
    ) -> Box<dyn Iterator<Item = DateTime<Utc>>> {
        match *self {
            Interval::Every { anchor_ns, step_ns } => {
                let mut k = (to_nanos(after) - anchor_ns).div_euclid(step_ns) + 1;
                Box::new(std::iter::from_fn(move || {
                    let t = from_nanos(anchor_ns.checked_add(k.checked_mul(step_ns)?)?)?;
                    k += 1;
                    Some(t)
                }))
            }
            Interval::EveryDays { anchor, days } => {
                let local_after = after.with_timezone(&tz).naive_local();
                // The step whose date is on or before `after`'s local date, minus one: a wall
                // time on an earlier local date can never resolve past `after`.
                let diff = (local_after.date() - anchor.date()).num_days();
                let mut k = diff.div_euclid(days) - 1;
                Box::new(Ascending::new(
                    after,
                    std::iter::from_fn(move || {
                        let offset = TimeDelta::try_days(k.checked_mul(days)?)?;
                        k += 1;
                        anchor.checked_add_signed(offset)
                    })
                    .map_while(move |wall| resolve_local(tz, wall)),
                ))
            }
        }
    }
}

fn to_nanos(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * NANOS_PER_SEC + i128::from(t.timestamp_subsec_nanos())
}

fn from_nanos(ns: i128) -> Option<DateTime<Utc>> {
    let secs = i64::try_from(ns.div_euclid(NANOS_PER_SEC)).ok()?;
    let nanos = u32::try_from(ns.rem_euclid(NANOS_PER_SEC)).ok()?;
    DateTime::from_timestamp(secs, nanos)
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;
    use proptest::prelude::*;

    use crate::schedule::test_support::*;
    use crate::schedule::{Schedule, ScheduleSpec};

    #[test]
    fn sub_day_interval_steps_from_its_anchor_in_both_directions() {
        let s =
            parse(serde_json::json!({ "interval": 3600, "anchor_date": "2026-01-01T00:10:00Z" }));
        assert_fires(
            &s,
            "2026-05-04T10:20:00Z",
            &[
                "2026-05-04T11:10:00Z",
                "2026-05-04T12:10:00Z",
                "2026-05-04T13:10:00Z",
            ],
        );
        assert_fires(&s, "2026-05-04T11:10:00Z", &["2026-05-04T12:10:00Z"]);
        // Before the anchor: the anchor is a phase, not a start.
        assert_fires(
            &s,
            "2025-12-31T22:30:00Z",
            &["2025-12-31T23:10:00Z", "2026-01-01T00:10:00Z"],
        );
        // Far later: computed, not walked (would be ~10^5 steps).
        assert_fires(&s, "2040-07-01T05:59:59.999Z", &["2040-07-01T06:10:00Z"]);
    }

    #[test]
    fn sub_day_interval_steps_in_absolute_time_across_dst() {
        // 90 minutes from Berlin midnight 2026-03-29 (23:00Z): 00:30Z, 02:00Z, 03:30Z, which
        // is 01:30 CET, 04:00 CEST, 05:30 CEST.
        let s = parse(serde_json::json!({
            "interval": 5400, "anchor_date": "2026-03-29T00:00:00+01:00", "timezone": "Europe/Berlin"
        }));
        assert_fires(
            &s,
            "2026-03-28T23:00:00Z",
            &[
                "2026-03-29T01:30:00+01:00",
                "2026-03-29T04:00:00+02:00",
                "2026-03-29T05:30:00+02:00",
            ],
        );
        // 25 hours is not a whole number of days: absolute too.
        let s = parse(serde_json::json!({
            "interval": 90000, "anchor_date": "2026-03-28T00:00:00+01:00", "timezone": "Europe/Berlin"
        }));
        assert_fires(
            &s,
            "2026-03-27T23:00:00Z",
            &["2026-03-29T00:00:00Z", "2026-03-30T01:00:00Z"],
        );
    }

    #[test]
    fn whole_day_interval_keeps_the_local_time_across_dst() {
        let s = parse(serde_json::json!({
            "interval": 86400, "anchor_date": "2026-03-27T09:00:00+01:00", "timezone": "Europe/Berlin"
        }));
        assert_fires(
            &s,
            "2026-03-27T09:00:00+01:00",
            &[
                "2026-03-28T09:00:00+01:00",
                "2026-03-29T09:00:00+02:00",
                "2026-03-30T09:00:00+02:00",
            ],
        );
        assert_fires(&s, "2026-03-20T00:00:00Z", &["2026-03-20T09:00:00+01:00"]);
        assert_fires(
            &s,
            "2026-10-24T12:00:00Z",
            &["2026-10-25T09:00:00+01:00", "2026-10-26T09:00:00+01:00"],
        );
        // An anchor at 02:30 follows the gap/fold policy.
        let s = parse(serde_json::json!({
            "interval": 86400, "anchor_date": "2026-03-27T02:30:00+01:00", "timezone": "Europe/Berlin"
        }));
        assert_fires(
            &s,
            "2026-03-28T12:00:00Z",
            &["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"],
        );
        assert_fires(
            &s,
            "2026-10-24T12:00:00Z",
            &["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"],
        );
        // Weekly, anchored on Monday 2026-03-02 09:00 in New York.
        let s = parse(serde_json::json!({
            "interval": 604800, "anchor_date": "2026-03-02T09:00:00-05:00", "timezone": "America/New_York"
        }));
        assert_fires(
            &s,
            "2026-03-03T00:00:00Z",
            &["2026-03-09T09:00:00-04:00", "2026-03-16T09:00:00-04:00"],
        );
        // Every two days, exactly on a fire time: strictly after.
        let s =
            parse(serde_json::json!({ "interval": 172800, "anchor_date": "2026-01-01T06:00:00Z" }));
        assert_fires(&s, "2026-01-03T06:00:00Z", &["2026-01-05T06:00:00Z"]);
        assert_fires(&s, "2026-01-04T06:00:00Z", &["2026-01-05T06:00:00Z"]);
    }

    #[test]
    fn interval_default_anchor_is_2020_midnight_in_the_time_zone() {
        // 2020-01-01T00:00+05:30 is 18:30Z, so hourly fires at :30 UTC.
        let s = parse(serde_json::json!({ "interval": 3600, "timezone": "Asia/Kolkata" }));
        assert_fires(
            &s,
            "2026-06-01T10:00:00Z",
            &["2026-06-01T10:30:00Z", "2026-06-01T11:30:00Z"],
        );
        // Daily at local midnight.
        let s = parse(serde_json::json!({ "interval": 86400, "timezone": "America/New_York" }));
        assert_fires(
            &s,
            "2026-03-07T12:00:00Z",
            &["2026-03-08T00:00:00-05:00", "2026-03-09T00:00:00-04:00"],
        );
    }

    #[test]
    fn interval_errors_name_the_field_and_say_how_to_fix_it() {
        use serde_json::json;
        assert_errors(&[
            (
                json!({ "interval": 0 }),
                "interval",
                "must be at least 1 second",
            ),
            (
                json!({ "interval": 315_360_001_u64 }),
                "interval",
                "at most 315360000",
            ),
        ]);
    }

    proptest! {
        #![proptest_config(crate::schedule::test_support::proptest_config())]

        /// Interval fire times are anchor + k * interval, ascending, the first one right
        /// after `after`.
        #[test]
        fn sub_day_intervals_are_arithmetic(
            interval in 1..200_000_u64, anchor in instant(), after in instant(), zone in 0..ZONES.len()
        ) {
            prop_assume!(!interval.is_multiple_of(86_400));
            let spec = ScheduleSpec {
                cron: None, interval: Some(interval), anchor_date: Some(anchor.fixed_offset()),
                rrule: None, schedule: None, timezone: ZONES[zone].name().into(), active: true,
            };
            let s = Schedule::parse(&spec).unwrap();
            let fires: Vec<_> = s.iter_after(after).take(3).collect();
            let step = TimeDelta::seconds(interval as i64);
            prop_assert!(fires[0] > after && fires[0] - step <= after);
            prop_assert_eq!((fires[0] - anchor).num_milliseconds() % step.num_milliseconds(), 0);
            prop_assert_eq!(fires[1] - fires[0], step);
            prop_assert_eq!(fires[2] - fires[1], step);
        }
    }
}
