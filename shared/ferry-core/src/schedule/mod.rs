//! Schedule math: when a deployment's schedules fire.
//!
//! A [`ScheduleSpec`] is what a user declares (exactly one of `cron`, `interval` or `rrule`,
//! plus a time zone); [`Schedule::parse`] validates it into a [`Schedule`], whose fire times
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
mod interval;
mod rrule;
#[cfg(test)]
mod test_support;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use self::cron::CronSchedule;
use self::dst::parse_timezone;
use self::interval::Interval;
use self::rrule::RRuleSchedule;

fn default_timezone() -> String {
    "UTC".to_string()
}

fn default_true() -> bool {
    true
}

/// A schedule as a user declares it (wire/YAML/JSON form). Exactly one of cron / interval / rrule.
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
    /// One of "cron", "interval", "anchor_date", "rrule", "timezone", "schedule".
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
}

impl Schedule {
    /// Validates a spec. Errors name the offending field and say how to fix it.
    pub fn parse(spec: &ScheduleSpec) -> Result<Schedule, ScheduleError> {
        let given: Vec<&str> = [
            ("cron", spec.cron.is_some()),
            ("interval", spec.interval.is_some()),
            ("rrule", spec.rrule.is_some()),
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
                    "exactly one of cron, interval or rrule is required, got {got} \
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
    /// "Every 1h 30m (UTC)", "RRULE FREQ=WEEKLY;BYDAY=MO (UTC)".
    pub fn describe(&self) -> String {
        let what = match (&self.spec.cron, self.spec.interval, &self.spec.rrule) {
            (Some(expr), _, _) => cron::describe(expr),
            (None, Some(secs), _) => format!("Every {}", compact_duration(secs)),
            (None, None, Some(rule)) => {
                format!(
                    "RRULE {}",
                    rule.split_whitespace().collect::<Vec<_>>().join(" ")
                )
            }
            (None, None, None) => String::new(),
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
