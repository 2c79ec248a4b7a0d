//! Time zones: IANA names, and wall-clock times resolved to instants by the DST policy of
//! the module docs (a skipped time fires at the end of the gap, a repeated one once).

use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;

use super::ScheduleError;

pub(super) fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    if let Ok(tz) = Tz::from_str(name) {
        return Ok(tz);
    }
    let examples = r#"e.g. "Europe/Berlin", "America/New_York", "UTC""#;
    let message = match suggest_timezone(name) {
        Some(close) => {
            format!("unknown IANA time zone {name:?}; did you mean {close:?}? ({examples})")
        }
        None => format!("unknown IANA time zone {name:?} ({examples})"),
    };
    Err(ScheduleError::new("timezone", message))
}

fn suggest_timezone(name: &str) -> Option<&'static str> {
    if name.is_empty() || name.len() > 64 {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| tz.name())
        .map(|candidate| {
            (
                edit_distance(&lower, &candidate.to_ascii_lowercase()),
                candidate,
            )
        })
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Keeps only times strictly after `after` and strictly after the previous one. Wall-clock
/// times map to instants monotonically (non-decreasing) under the DST policy, so this only
/// drops gap-collapsed duplicates and fold times already behind `after`.
pub(super) struct Ascending<I> {
    inner: I,
    last: DateTime<Utc>,
}

impl<I> Ascending<I> {
    pub(super) fn new(after: DateTime<Utc>, inner: I) -> Self {
        Self { inner, last: after }
    }
}

impl<I: Iterator<Item = DateTime<Utc>>> Iterator for Ascending<I> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        for t in self.inner.by_ref() {
            if t > self.last {
                self.last = t;
                return Some(t);
            }
        }
        None
    }
}

/// Resolves a wall-clock time in `tz` by the DST policy: a repeated time resolves to its
/// first occurrence, a skipped time to the first valid instant after the gap.
pub(super) fn resolve_local(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    match tz.from_local_datetime(&wall) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t.with_timezone(&Utc)),
        LocalResult::None => {
            let valid = |ns: i64| {
                wall.checked_add_signed(TimeDelta::nanoseconds(ns))
                    .is_some_and(|w| !matches!(tz.from_local_datetime(&w), LocalResult::None))
            };
            // Gaps last hours; find a valid time after it, then bisect to the gap's end.
            let hour = 3_600 * 1_000_000_000_i64;
            let mut hi = hour;
            while !valid(hi) {
                hi *= 2;
                if hi > 128 * hour {
                    return None;
                }
            }
            let mut lo = 0_i64;
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                if valid(mid) {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            let end = wall.checked_add_signed(TimeDelta::nanoseconds(hi))?;
            tz.from_local_datetime(&end)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeDelta};
    use proptest::prelude::*;

    use crate::schedule::test_support::*;

    // ---- DST -----------------------------------------------------------------------------------
    // Europe/Berlin 2026: 03-29 02:00 CET -> 03:00 CEST (01:00Z); 10-25 03:00 CEST -> 02:00 CET
    // (01:00Z). America/New_York 2026: 03-08 02:00 EST -> 03:00 EDT (07:00Z); 11-01 02:00 EDT
    // -> 01:00 EST (06:00Z).

    #[test]
    fn skipped_wall_time_fires_at_the_end_of_the_gap() {
        let s = cron_in("30 2 * * *", "Europe/Berlin");
        assert_fires(
            &s,
            "2026-03-27T12:00:00Z",
            &[
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00",
            ],
        );
        let s = cron_in("30 2 * * *", "America/New_York");
        assert_fires(
            &s,
            "2026-03-07T12:00:00Z",
            &["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"],
        );
        // A multi-hour expression (which croner alone would skip in the gap) too.
        let s = cron_in("30 2,14 * * *", "Europe/Berlin");
        assert_fires(
            &s,
            "2026-03-28T12:00:00Z",
            &[
                "2026-03-28T14:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T14:30:00+02:00",
            ],
        );
    }

    #[test]
    fn repeated_wall_time_fires_once_at_its_first_occurrence() {
        let s = cron_in("30 2 * * *", "Europe/Berlin");
        assert_fires(
            &s,
            "2026-10-23T12:00:00Z",
            &[
                "2026-10-24T02:30:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-26T02:30:00+01:00",
            ],
        );
        // From just after the first 02:30, and from inside the second (CET) 02:xx hour.
        assert_fires(
            &s,
            "2026-10-25T02:45:00+02:00",
            &["2026-10-26T02:30:00+01:00"],
        );
        assert_fires(
            &s,
            "2026-10-25T02:10:00+01:00",
            &["2026-10-26T02:30:00+01:00"],
        );
        let s = cron_in("30 1 * * *", "America/New_York");
        assert_fires(
            &s,
            "2026-10-31T12:00:00Z",
            &["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"],
        );
    }

    #[test]
    fn daily_cron_fires_once_per_local_day_in_both_transition_weeks() {
        for (tz, expr) in [
            ("Europe/Berlin", "30 2 * * *"),
            ("America/New_York", "30 1 * * *"),
            ("America/New_York", "30 2 * * *"),
        ] {
            let s = cron_in(expr, tz);
            for (from, to) in [
                ("2026-03-01T00:00:00Z", "2026-04-15T00:00:00Z"),
                ("2026-10-10T00:00:00Z", "2026-11-20T00:00:00Z"),
            ] {
                let fires: Vec<_> = s.iter_after(at(from)).take_while(|t| *t < at(to)).collect();
                let mut dates: Vec<NaiveDate> = fires
                    .iter()
                    .map(|t| t.with_timezone(&s.timezone()).date_naive())
                    .collect();
                let n = dates.len();
                dates.dedup();
                assert_eq!(dates.len(), n, "{tz} {expr}: a local date fired twice");
                let days = (dates[n - 1] - dates[0]).num_days() + 1;
                assert_eq!(days as usize, n, "{tz} {expr}: a local date was missed");
            }
        }
    }

    #[test]
    fn hourly_cron_runs_the_repeated_hour_once_and_merges_the_skipped_one() {
        let s = cron_in("0 * * * *", "Europe/Berlin");
        // Fall back: 02:00 CEST fires, 02:00 CET (01:00Z) does not, 03:00 CET does.
        assert_fires(
            &s,
            "2026-10-24T22:30:00Z",
            &[
                "2026-10-25T01:00:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T03:00:00+01:00",
                "2026-10-25T04:00:00+01:00",
            ],
        );
        // Spring forward: the skipped 02:00 becomes 03:00 CEST, which fires once.
        assert_fires(
            &s,
            "2026-03-28T23:30:00Z",
            &[
                "2026-03-29T01:00:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T04:00:00+02:00",
            ],
        );
        // Every quarter hour: the four skipped quarters collapse into one 03:00 fire.
        let s = cron_in("*/15 * * * *", "Europe/Berlin");
        assert_fires(
            &s,
            "2026-03-29T01:50:00+01:00",
            &["2026-03-29T03:00:00+02:00", "2026-03-29T03:15:00+02:00"],
        );
        // ... and the repeated quarters run once.
        assert_fires(
            &s,
            "2026-10-25T02:40:00+02:00",
            &["2026-10-25T02:45:00+02:00", "2026-10-25T03:00:00+01:00"],
        );
    }

    #[test]
    fn half_hour_dst_of_lord_howe() {
        // Australia/Lord_Howe: 2026-04-05 02:00 (+11) -> 01:30 (+10:30); 2026-10-04
        // 02:00 (+10:30) -> 02:30 (+11).
        let s = cron_in("45 1 * * *", "Australia/Lord_Howe");
        assert_fires(
            &s,
            "2026-04-04T00:00:00Z",
            &["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"],
        );
        let s = cron_in("15 2 * * *", "Australia/Lord_Howe");
        assert_fires(
            &s,
            "2026-10-03T00:00:00Z",
            &["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"],
        );
    }

    #[test]
    fn time_zone_errors_name_the_field_and_suggest_a_name() {
        use serde_json::json;
        assert_errors(&[(
            json!({ "cron": "* * * * *", "timezone": "Mars/Olympus" }),
            "timezone",
            "unknown IANA time zone \"Mars/Olympus\"",
        )]);
        let e = parse_err(json!({ "cron": "* * * * *", "timezone": "Europe/Berln" }));
        assert_eq!(e.field, "timezone");
        assert!(e.message.contains("did you mean \"Europe/Berlin\""), "{e}");
        let e = parse_err(json!({ "cron": "* * * * *", "timezone": "america/new_york" }));
        assert!(e.message.contains("\"America/New_York\""), "{e}");
    }

    proptest! {
        #![proptest_config(crate::schedule::test_support::proptest_config())]

        /// A daily `M H * * *` fires exactly once on each local calendar date.
        #[test]
        fn daily_cron_fires_once_per_local_date(
            m in 0..60_u32, h in 0..24_u32, start in instant(), zone in 0..ZONES.len()
        ) {
            let tz = ZONES[zone];
            let s = cron_in(&format!("{m} {h} * * *"), tz.name());
            let first_date = start.with_timezone(&tz).date_naive();
            let end = start + TimeDelta::days(400);
            let mut counts = std::collections::BTreeMap::new();
            for t in s.iter_after(start).take_while(|t| *t < end) {
                *counts.entry(t.with_timezone(&tz).date_naive()).or_insert(0) += 1;
            }
            // Dates wholly inside the window.
            for i in 1..399 {
                let d = first_date + TimeDelta::days(i);
                prop_assert_eq!(counts.get(&d).copied(), Some(1), "{} {} * * * in {} on {}", m, h, tz, d);
            }
            prop_assert!(counts.values().all(|c| *c == 1));
        }

        /// Daily rrules and whole-day intervals also fire once per local date.
        #[test]
        fn daily_rrule_and_day_interval_fire_once_per_local_date(
            m in 0..60_u32, h in 0..24_u32, start in instant(), zone in 0..ZONES.len()
        ) {
            let tz = ZONES[zone];
            let anchor = format!("2021-05-05T{h:02}:{m:02}:00Z");
            for s in [
                // An rrule has a start (not a phase): put it before every `start`.
                parse(serde_json::json!({
                    "rrule": format!("FREQ=DAILY;BYHOUR={h};BYMINUTE={m}"),
                    "anchor_date": "1990-01-01T00:00:00Z", "timezone": tz.name()
                })),
                parse(serde_json::json!({
                    "interval": 86400, "anchor_date": anchor, "timezone": tz.name()
                })),
            ] {
                let first_date = start.with_timezone(&tz).date_naive();
                let mut counts = std::collections::BTreeMap::new();
                for t in s.iter_after(start).take_while(|t| *t < start + TimeDelta::days(60)) {
                    *counts.entry(t.with_timezone(&tz).date_naive()).or_insert(0) += 1;
                }
                for i in 1..59 {
                    let d = first_date + TimeDelta::days(i);
                    prop_assert_eq!(counts.get(&d).copied(), Some(1), "{:?} on {}", s.spec(), d);
                }
            }
        }

    }
}
