//! Schedule math: when a deployment's schedules fire.
//!
//! A [`ScheduleSpec`] is what a user declares (exactly one of `cron`, `interval`, `rrule` or
//! `schedule`, plus a time zone); [`Schedule::parse`] validates it into a [`Schedule`], whose fire times
//! are computed here without I/O or clock reads (every instant comes in as an argument).
//!
//! # Cron
//!
//! Standard 5-field POSIX/Vixie cron: `minute hour day-of-month month day-of-week`, with
//! names (`JAN`–`DEC`, `SUN`–`SAT`, case-insensitive, only in their own fields), `*`, `n`,
//! `a-b`, `*/n`, `a-b/n` and comma lists, and the nicknames `@hourly`, `@daily`,
//! `@midnight`, `@weekly` (Sunday 00:00), `@monthly`, `@yearly` and `@annually`.
//! Day-of-week is 0–7 with both 0 and 7 meaning Sunday, so `1-5` is Monday–Friday.
//! When BOTH day-of-month and day-of-week are restricted, a day matches if EITHER matches
//! (`0 12 1 * MON` = noon on the 1st and on every Monday). As in Vixie cron and cronsim, a
//! field that starts with `*` (such as `*/2`) counts as unrestricted for that rule, and then
//! both fields must match (`0 0 */10 * MON` = the 1st/11th/21st/31st when it is a Monday).
//! Seconds or year fields (6 or 7 fields), `@reboot` and the Quartz extensions `L W # ?` are
//! rejected, as are expressions that can never fire (`0 0 30 2 *`). Cron follows the wall
//! clock in the schedule's time zone. The matching itself is done by `croner` on wall-clock
//! (naive) date-times; this module resolves those to instants with the policy below.
//!
//! # Daylight saving time (cron, whole-day intervals and rrule)
//!
//! Wall-clock times are turned into instants like Vixie cron and cronsim do:
//! - a wall time skipped by spring-forward fires once, at the first valid instant after the
//!   gap (`30 2 * * *` in Europe/Berlin fires at 03:00 CEST on 2026-03-29). Several skipped
//!   times (`*/15` during the gap, or an hourly job's 02:00) collapse into that single fire,
//!   which also coincides with a 03:00 fire if there is one;
//! - a wall time repeated by fall-back fires once, at its first occurrence (`30 2 * * *`
//!   fires at 02:30 CEST on 2026-10-25, not again at 02:30 CET). The whole repeated range
//!   runs once: an hourly `0 * * * *` fires at 02:00 CEST and next at 03:00 CET, two hours
//!   later in absolute time.
//!
//! So a daily job runs exactly once on every local calendar day, transition days included.
//!
//! # EventBridge Scheduler expressions (`schedule`)
//!
//! `schedule` holds what AWS users write in EventBridge Scheduler's `ScheduleExpression`, with
//! `timezone` as its `ScheduleExpressionTimezone`:
//! - `cron(minutes hours day-of-month month day-of-week year)`: AWS's (Quartz's) cron, NOT
//!   POSIX: six fields; day-of-week `1-7` with 1 = Sunday (`SUN`-`SAT`; `0` is refused);
//!   `?` in exactly one of the two day fields (the other field alone picks the days, there is
//!   no OR); `*`, `n`, `a-b`, `*/n`, `n/n` (from n to the end of the field), lists; ranges
//!   wrap (`20-2` in hours is 20:00-02:59, as in AWS's own example); years 1970-2199. Day
//!   rules, each alone in its field: `L` (last day of the month), `LW` (its last weekday),
//!   `nW` (the Monday-Friday nearest day n, not leaving the month; no fire in a month without
//!   day n), and in day-of-week `L` (Saturday), `nL` (the month's last such day), `n#k` (its
//!   k-th such day, k 1-5; a month without one has no fire). Matching is done by the `cron`
//!   crate (Quartz semantics, which lacks `L W #`: those filter its days here). Fire times are
//!   computed up to the end of 2100, the crate's last year.
//!   DST follows EventBridge Scheduler, NOT the policy below: a wall time skipped by
//!   spring-forward does not fire that day; a repeated wall time fires once, at its first
//!   occurrence.
//! - `rate(N unit)` with `minute`/`hour`/`day` singular for N = 1 and plural otherwise (as
//!   AWS demands): every N units in absolute time, days as 24 hours (as EventBridge Scheduler
//!   does: across DST a daily rate moves by an hour on the wall clock). The phase is
//!   `anchor_date` (AWS's `StartDate`), default 2020-01-01T00:00:00 in the time zone, so
//!   `rate(5 minutes)` fires at :00, :05, ... and `rate(1 hour)` on the hour.
//! - `at(yyyy-mm-ddThh:mm:ss)`: once, at that wall time in the time zone, then never; a wall
//!   time that is repeated fires at its first occurrence, one that does not exist is refused.
//!
//! # Interval
//!
//! `interval` seconds (1 s to 10 years) with `anchor_date` as the phase (default
//! 2020-01-01T00:00:00 in the schedule's time zone): fire times are `anchor + k * interval`
//! for every integer `k`, negative ones included (the anchor is a phase, not a start). An
//! interval that is a whole number of days steps in local calendar days, keeping the
//! anchor's wall-clock time (with the DST policy above); any other interval steps in
//! absolute time, so a 90-minute interval stays 90 minutes apart across DST (like Prefect).
//!
//! # RRULE
//!
//! An RFC 5545 recurrence rule, with or without the `RRULE:` prefix, optionally as several
//! lines (whitespace-separated) including `DTSTART`, further `RRULE`s, `RDATE` and `EXDATE`.
//! Without `DTSTART`, the start is `anchor_date` if set, else 2020-01-01T00:00:00 in the
//! schedule's time zone. A `DTSTART`/`RDATE`/`EXDATE`/`UNTIL` without `Z` or `TZID` is wall
//! time in the schedule's time zone; a `TZID` must equal the schedule's `timezone`. As in
//! python-dateutil, `DTSTART` is an occurrence only if it matches the rule. The rule is
//! expanded on the wall clock by the `rrule` crate and resolved with the DST policy above
//! (the crate alone would put a skipped 02:30 at 03:30). Infinite rules are fine: a rule
//! without `COUNT` and with a `MINUTELY` to `WEEKLY` frequency starts its expansion a whole
//! number of periods before the requested instant, so a minutely rule asked about 2030 does
//! not walk from 2020 (`MONTHLY`/`YEARLY` rules and rules with `COUNT` walk from `DTSTART`,
//! a few hundred periods per decade). `FREQ=SECONDLY` (use an interval) and `EXRULE` are
//! rejected, as are rules that never produce an occurrence. The crate stops a rule after
//! 100 000 consecutive empty periods (its guard against endless searches).

mod cron;
mod dst;
mod eventbridge;
mod interval;
mod rrule;
#[cfg(test)]
mod test_support;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use self::cron::CronSchedule;
use self::dst::parse_timezone;
use self::eventbridge::Expression;
use self::interval::Interval;
use self::rrule::RRuleSchedule;

fn default_timezone() -> String {
    "UTC".to_string()
}

fn default_true() -> bool {
    true
}

/// A schedule as a user declares it (wire/YAML/JSON form). Exactly one of cron / interval /
/// rrule / schedule.
/// Unknown fields are refused by name (a `time_zone` typo must not silently mean UTC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Standard 5-field cron expression or a nickname such as `@daily`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
    /// seconds
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    /// Phase of an interval schedule, or the default DTSTART of an rrule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_date: Option<DateTime<FixedOffset>>,
    /// RFC 5545 recurrence rule (optionally with DTSTART/RDATE/EXDATE lines).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rrule: Option<String>,
    /// EventBridge Scheduler expression: `cron(0 12 ? * MON-FRI *)`, `rate(5 minutes)` or
    /// `at(2027-01-01T09:00:00)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// IANA name, default "UTC"
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Inactive schedules are kept but never fire.
    #[serde(default = "default_true")]
    pub active: bool,
}

/// Why a [`ScheduleSpec`] is invalid; `message` says what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ScheduleError {
    /// One of "cron", "interval", "anchor_date", "rrule", "timezone", "schedule" (an
    /// EventBridge expression, or which kind is given).
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ScheduleError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// A parsed, validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    spec: ScheduleSpec,
    tz: Tz,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    /// Evaluated by croner on the wall clock.
    Cron(Box<CronSchedule>),
    /// Every `interval` seconds from an anchor.
    Interval(Interval),
    RRule(RRuleSchedule),
    /// EventBridge Scheduler `cron(...)`, `rate(...)` or `at(...)`.
    EventBridge(Expression),
}

impl Schedule {
    /// Validates a spec. Errors name the offending field and say how to fix it.
    pub fn parse(spec: &ScheduleSpec) -> Result<Schedule, ScheduleError> {
        let given: Vec<&str> = [
            ("cron", spec.cron.is_some()),
            ("interval", spec.interval.is_some()),
            ("rrule", spec.rrule.is_some()),
            ("schedule", spec.schedule.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect();
        if given.len() != 1 {
            let got = if given.is_empty() {
                "none".to_string()
            } else {
                given.join(" and ")
            };
            return Err(ScheduleError::new(
                "schedule",
                format!(
                    "exactly one of cron, interval, rrule or schedule is required, got {got} \
                     (use one schedule entry per kind)"
                ),
            ));
        }
        let tz = parse_timezone(&spec.timezone)?;
        let kind = if let Some(cron) = &spec.cron {
            if spec.anchor_date.is_some() {
                return Err(ScheduleError::new(
                    "anchor_date",
                    "is only used with interval or rrule schedules; remove it from this cron schedule",
                ));
            }
            Kind::Cron(Box::new(CronSchedule::parse(cron)?))
        } else if let Some(interval) = spec.interval {
            Kind::Interval(Interval::parse(interval, spec.anchor_date, tz)?)
        } else if let Some(text) = &spec.schedule {
            Kind::EventBridge(Expression::parse(text, spec.anchor_date, tz)?)
        } else {
            let text = spec.rrule.as_deref().unwrap_or_default();
            Kind::RRule(RRuleSchedule::parse(text, spec.anchor_date, tz)?)
        };
        Ok(Schedule {
            spec: spec.clone(),
            tz,
            kind,
        })
    }

    /// The time zone whose wall clock the schedule follows.
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The spec this schedule was parsed from.
    pub fn spec(&self) -> &ScheduleSpec {
        &self.spec
    }

    /// The schedule in words, with its time zone: "At 09:00, on Monday (Europe/Berlin)",
    /// "Every 1h 30m (UTC)", "RRULE FREQ=WEEKLY;BYDAY=MO (UTC)", "Every 5 minutes (UTC)",
    /// "Once at 2027-01-01 09:00:00 (UTC)".
    pub fn describe(&self) -> String {
        let what = match (&self.kind, &self.spec.cron, &self.spec.rrule) {
            (Kind::EventBridge(expr), _, _) => {
                expr.describe(self.spec.schedule.as_deref().unwrap_or_default())
            }
            (_, Some(expr), _) => cron::describe(expr),
            (Kind::Interval(_), _, _) => {
                format!(
                    "Every {}",
                    compact_duration(self.spec.interval.unwrap_or_default())
                )
            }
            (_, _, Some(rule)) => {
                format!(
                    "RRULE {}",
                    rule.split_whitespace().collect::<Vec<_>>().join(" ")
                )
            }
            _ => String::new(),
        };
        let off = if self.spec.active { "" } else { ", inactive" };
        format!("{what} ({}{off})", self.tz)
    }

    /// First fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.iter_after(after).next()
    }

    /// Fire times strictly after `after`, ascending (lazy; may be infinite).
    pub fn iter_after(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let tz = self.tz;
        let inner: Box<dyn Iterator<Item = DateTime<Utc>> + '_> = match &self.kind {
            Kind::Cron(cron) => Box::new(cron.iter_after(tz, after)),
            Kind::Interval(interval) => interval.iter_after(tz, after),
            Kind::RRule(rule) => Box::new(rule.iter_after(tz, after)),
            Kind::EventBridge(expr) => expr.iter_after(tz, after),
        };
        inner
    }
}

/// Merge the fire times of several schedules (only `active` ones), strictly after `after`, at
/// most `until` (inclusive), at most `max` items, ascending, de-duplicated.
pub fn fire_times(
    schedules: &[Schedule],
    after: DateTime<Utc>,
    until: DateTime<Utc>,
    max: usize,
) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    if max == 0 || until <= after {
        return out;
    }
    for schedule in schedules.iter().filter(|s| s.spec.active) {
        out.extend(
            schedule
                .iter_after(after)
                .take_while(|t| *t <= until)
                .take(max),
        );
    }
    out.sort_unstable();
    out.dedup();
    out.truncate(max);
    out
}

/// `5400` → "1h 30m", `86400` → "1d", `45` → "45s".
fn compact_duration(secs: u64) -> String {
    let parts = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let mut left = secs;
    let mut out = Vec::new();
    for (unit, name) in parts {
        if left >= unit {
            out.push(format!("{}{name}", left / unit));
            left %= unit;
        }
    }
    if out.is_empty() {
        "0s".into()
    } else {
        out.join(" ")
    }
}

/// 2020-01-01T00:00:00 on the wall clock: the default interval anchor and rrule start.
fn default_anchor() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2020, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn schedules_are_described_in_words_with_their_time_zone() {
        let describe = |v: serde_json::Value| {
            Schedule::parse(&serde_json::from_value(v).unwrap())
                .unwrap()
                .describe()
        };
        use serde_json::json;
        assert_eq!(
            describe(json!({"cron": "0 9 * * 1-5", "timezone": "Europe/Berlin"})),
            "At 09:00, on Monday, Tuesday, Wednesday, Thursday, and Friday (Europe/Berlin)"
        );
        assert_eq!(describe(json!({"cron": "@daily"})), "At 00:00 (UTC)");
        assert_eq!(
            describe(json!({"interval": 5400, "active": false})),
            "Every 1h 30m (UTC, inactive)"
        );
        assert_eq!(
            describe(json!({"rrule": "FREQ=WEEKLY;BYDAY=MO"})),
            "RRULE FREQ=WEEKLY;BYDAY=MO (UTC)"
        );
    }

    #[test]
    fn schedule_errors_name_their_field_and_say_how_to_fix_it() {
        use serde_json::json;
        assert_errors(&[
            (json!({}), "schedule", "got none"),
            (
                json!({ "cron": "* * * * *", "interval": 60 }),
                "schedule",
                "cron and interval",
            ),
            (
                json!({ "interval": 60, "rrule": "FREQ=DAILY" }),
                "schedule",
                "interval and rrule",
            ),
            (
                json!({ "cron": "* * * * *", "anchor_date": "2026-01-01T00:00:00Z" }),
                "anchor_date",
                "only used with interval or rrule",
            ),
        ]);
    }

    // ---- fire_times, spec, serde --------------------------------------------------------------

    #[test]
    fn fire_times_merges_active_schedules() {
        let hourly = cron_in("0 * * * *", "UTC");
        let half =
            parse(serde_json::json!({ "interval": 1800, "anchor_date": "2026-01-01T00:00:00Z" }));
        let off = parse(serde_json::json!({ "cron": "*/5 * * * *", "active": false }));
        let all = [hourly, half, off];
        let (after, until) = (at("2026-06-01T10:00:00Z"), at("2026-06-01T12:00:00Z"));
        let want = [
            at("2026-06-01T10:30:00Z"),
            at("2026-06-01T11:00:00Z"),
            at("2026-06-01T11:30:00Z"),
            at("2026-06-01T12:00:00Z"),
        ];
        assert_eq!(fire_times(&all, after, until, 100), want);
        assert_eq!(fire_times(&all, after, until, 2), want[..2]);
        assert!(fire_times(&all, after, until, 0).is_empty());
        assert!(fire_times(&all, until, after, 100).is_empty());
        assert!(fire_times(&[], after, until, 100).is_empty());
    }

    #[test]
    fn spec_defaults_accessors_and_round_trip() {
        let s = spec(serde_json::json!({ "cron": "0 9 * * 1-5" }));
        assert_eq!(s.timezone, "UTC");
        assert!(s.active);
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({ "cron": "0 9 * * 1-5", "timezone": "UTC", "active": true })
        );
        let parsed = Schedule::parse(&s).unwrap();
        assert_eq!(parsed.spec(), &s);
        assert_eq!(parsed.timezone(), chrono_tz::UTC);
        let s = spec(serde_json::json!({
            "interval": 600, "anchor_date": "2026-01-01T00:00:00+01:00", "timezone": "Europe/Berlin",
            "active": false
        }));
        let back: ScheduleSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        assert_eq!(
            Schedule::parse(&s).unwrap().timezone(),
            chrono_tz::Europe::Berlin
        );
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Schedule>();
    }
}
