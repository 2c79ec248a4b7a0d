//! Helpers shared by the schedule tests.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;

use super::{Schedule, ScheduleError, ScheduleSpec};

/// The property tests' configuration: no regression files (this crate's tree is shared;
/// failures print their input).
pub(super) fn proptest_config() -> ProptestConfig {
    ProptestConfig {
        cases: 192,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

pub(super) fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .unwrap_or_else(|e| panic!("bad test time {s:?}: {e}"))
        .with_timezone(&Utc)
}

pub(super) fn spec(json: serde_json::Value) -> ScheduleSpec {
    serde_json::from_value(json).unwrap()
}

pub(super) fn parse(json: serde_json::Value) -> Schedule {
    let spec = spec(json);
    Schedule::parse(&spec).unwrap_or_else(|e| panic!("{spec:?} rejected: {e}"))
}

pub(super) fn cron_in(expr: &str, tz: &str) -> Schedule {
    parse(serde_json::json!({ "cron": expr, "timezone": tz }))
}

pub(super) fn parse_err(json: serde_json::Value) -> ScheduleError {
    match Schedule::parse(&spec(json.clone())) {
        Ok(s) => panic!("{json} was accepted: {s:?}"),
        Err(e) => e,
    }
}

/// Asserts the first fire times strictly after `after` (instants written with offsets).
pub(super) fn assert_fires(schedule: &Schedule, after: &str, expected: &[&str]) {
    let got: Vec<_> = schedule
        .iter_after(at(after))
        .take(expected.len())
        .collect();
    let want: Vec<_> = expected.iter().map(|s| at(s)).collect();
    assert_eq!(
        got,
        want,
        "{:?} after {after}\n got: {:?}",
        schedule.spec(),
        got.iter()
            .map(|t| t.with_timezone(&schedule.timezone()).to_rfc3339())
            .collect::<Vec<_>>()
    );
    assert_eq!(schedule.next_after(at(after)), want.first().copied());
}

pub(super) fn rrule_in(rule: &str, tz: &str) -> Schedule {
    parse(serde_json::json!({ "rrule": rule, "timezone": tz }))
}

pub(super) fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    // 2000-01-01 .. 2040-01-01, to the millisecond.
    (946_684_800_000_i64..2_208_988_800_000_i64)
        .prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap())
}

pub(super) const ZONES: [Tz; 5] = [
    chrono_tz::UTC,
    chrono_tz::Europe::Berlin,
    chrono_tz::America::New_York,
    chrono_tz::Asia::Kolkata,
    chrono_tz::Australia::Lord_Howe,
];

/// Asserts each `(spec, field, needle)`: the spec is rejected, the error names `field` and its
/// message contains `needle`.
pub(super) fn assert_errors(cases: &[(serde_json::Value, &str, &str)]) {
    for (json, field, needle) in cases {
        let e = parse_err(json.clone());
        assert_eq!(e.field, *field, "{json}: {e}");
        assert!(e.message.contains(needle), "{json}: {e:?} lacks {needle:?}");
        assert_eq!(e.to_string(), format!("{}: {}", e.field, e.message));
    }
}
