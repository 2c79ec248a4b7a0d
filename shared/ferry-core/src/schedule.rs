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

use std::str::FromStr;

use chrono::{
    DateTime, FixedOffset, LocalResult, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Timelike,
    Utc,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

fn default_timezone() -> String {
    "UTC".to_string()
}

fn default_true() -> bool {
    true
}

/// A schedule as a user declares it (wire/YAML/JSON form). Exactly one of cron / interval / rrule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// Longest accepted interval: ten years of 365 days.
const MAX_INTERVAL_SECS: u64 = 3650 * 86_400;
const MAX_CRON_LEN: usize = 200;
const MAX_RRULE_LEN: usize = 4000;
const NANOS_PER_SEC: i128 = 1_000_000_000;

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
    Cron(Box<croner::Cron>),
    /// `anchor + k * step` in absolute time (nanoseconds since the Unix epoch).
    Every {
        anchor_ns: i128,
        step_ns: i128,
    },
    /// `anchor + k * days` local calendar days, at the anchor's wall-clock time.
    EveryDays {
        anchor: NaiveDateTime,
        days: i64,
    },
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
            Kind::Cron(Box::new(parse_cron(cron)?))
        } else if let Some(interval) = spec.interval {
            parse_interval(interval, spec.anchor_date, tz)?
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

    /// First fire time strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.iter_after(after).next()
    }

    /// Fire times strictly after `after`, ascending (lazy; may be infinite).
    pub fn iter_after(&self, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let tz = self.tz;
        let inner: Box<dyn Iterator<Item = DateTime<Utc>> + '_> = match &self.kind {
            Kind::Cron(cron) => {
                let mut cursor = after.with_timezone(&tz).naive_local();
                Box::new(Ascending::new(
                    after,
                    std::iter::from_fn(move || {
                        // Any croner error (search limit, year 5000) ends the schedule.
                        let next = cron.find_next_occurrence(&cursor, false).ok()?;
                        cursor = next;
                        Some(next)
                    })
                    .map_while(move |wall| resolve_local(tz, wall)),
                ))
            }
            Kind::Every { anchor_ns, step_ns } => {
                let (anchor_ns, step_ns) = (*anchor_ns, *step_ns);
                let mut k = (to_nanos(after) - anchor_ns).div_euclid(step_ns) + 1;
                Box::new(std::iter::from_fn(move || {
                    let t = from_nanos(anchor_ns.checked_add(k.checked_mul(step_ns)?)?)?;
                    k += 1;
                    Some(t)
                }))
            }
            Kind::EveryDays { anchor, days } => {
                let (anchor, days) = (*anchor, *days);
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

/// Keeps only times strictly after `after` and strictly after the previous one. Wall-clock
/// times map to instants monotonically (non-decreasing) under the DST policy, so this only
/// drops gap-collapsed duplicates and fold times already behind `after`.
struct Ascending<I> {
    inner: I,
    last: DateTime<Utc>,
}

impl<I> Ascending<I> {
    fn new(after: DateTime<Utc>, inner: I) -> Self {
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
fn resolve_local(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
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

fn to_nanos(t: DateTime<Utc>) -> i128 {
    i128::from(t.timestamp()) * NANOS_PER_SEC + i128::from(t.timestamp_subsec_nanos())
}

fn from_nanos(ns: i128) -> Option<DateTime<Utc>> {
    let secs = i64::try_from(ns.div_euclid(NANOS_PER_SEC)).ok()?;
    let nanos = u32::try_from(ns.rem_euclid(NANOS_PER_SEC)).ok()?;
    DateTime::from_timestamp(secs, nanos)
}

/// 2020-01-01T00:00:00 on the wall clock: the default interval anchor and rrule start.
fn default_anchor() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2020, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Time zone

fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
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

// ---------------------------------------------------------------------------------------------
// Interval

fn parse_interval(
    interval: u64,
    anchor: Option<DateTime<FixedOffset>>,
    tz: Tz,
) -> Result<Kind, ScheduleError> {
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
        Ok(Kind::EveryDays {
            anchor,
            days: step / 86_400,
        })
    } else {
        let anchor = match anchor {
            Some(a) => a.with_timezone(&Utc),
            None => resolve_local(tz, default_anchor()).unwrap_or_default(),
        };
        Ok(Kind::Every {
            anchor_ns: to_nanos(anchor),
            step_ns: i128::from(step) * NANOS_PER_SEC,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Cron

const FIELD_NAMES: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
const MONTH_NAMES: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DOW_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    /// Names for `min`, `min + 1`, ….
    names: &'static [&'static str],
    allowed: &'static str,
}

const FIELDS: [FieldSpec; 5] = [
    FieldSpec {
        name: FIELD_NAMES[0],
        min: 0,
        max: 59,
        names: &[],
        allowed: "0-59",
    },
    FieldSpec {
        name: FIELD_NAMES[1],
        min: 0,
        max: 23,
        names: &[],
        allowed: "0-23",
    },
    FieldSpec {
        name: FIELD_NAMES[2],
        min: 1,
        max: 31,
        names: &[],
        allowed: "1-31",
    },
    FieldSpec {
        name: FIELD_NAMES[3],
        min: 1,
        max: 12,
        names: &MONTH_NAMES,
        allowed: "1-12 or JAN-DEC",
    },
    FieldSpec {
        name: FIELD_NAMES[4],
        min: 0,
        max: 7,
        names: &DOW_NAMES,
        allowed: "0-7 (0 and 7 are Sunday) or SUN-SAT",
    },
];

const CRON_FORMS: &str =
    "expected 5 fields (minute hour day-of-month month day-of-week) or @hourly/@daily/@weekly/@monthly/@yearly";

fn parse_cron(expr: &str) -> Result<croner::Cron, ScheduleError> {
    let err = |m: String| ScheduleError::new("cron", m);
    if expr.len() > MAX_CRON_LEN {
        return Err(err(format!(
            "expression is {} characters long, at most {MAX_CRON_LEN} are allowed",
            expr.len()
        )));
    }
    let trimmed = expr.trim();
    let expanded = if trimmed.starts_with('@') {
        match trimmed.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            "@reboot" => {
                return Err(err(format!(
                    "{trimmed:?} is not supported: Ferry schedules are time-based; use e.g. @daily or \"0 3 * * *\""
                )))
            }
            _ => {
                return Err(err(format!(
                    "unknown nickname {trimmed:?}; use @hourly, @daily, @midnight, @weekly, @monthly, @yearly or @annually"
                )))
            }
        }
    } else {
        trimmed
    };
    let fields: Vec<&str> = expanded.split_whitespace().collect();
    if fields.len() != 5 {
        let hint = if fields.len() == 6 || fields.len() == 7 {
            " (seconds and year fields are not supported; drop them)"
        } else {
            ""
        };
        return Err(err(format!(
            "{CRON_FORMS}, got {} fields in {expr:?}{hint}",
            fields.len()
        )));
    }
    let mut sets = [0_u64; 5];
    for (i, (text, spec)) in fields.iter().zip(FIELDS.iter()).enumerate() {
        sets[i] = parse_field(text, spec).map_err(|problem| {
            err(format!(
                "invalid {} field {text:?} in {expr:?}: {problem} (allowed: {}; syntax: *, n, a-b, */n, a-b/n, comma lists)",
                spec.name, spec.allowed
            ))
        })?;
    }
    // Day-of-week 7 is Sunday, like 0.
    if sets[4] & (1 << 7) != 0 {
        sets[4] = (sets[4] & !(1 << 7)) | 1;
    }
    // Vixie cron: if either day field starts with `*`, both must match; otherwise either.
    let both_days = fields[2].starts_with('*') || fields[4].starts_with('*');
    if both_days && !can_ever_match(sets[3], sets[2]) {
        return Err(err(format!(
            "{expr:?} never fires: none of its months has any of its days \
             (February has at most 29 days; April, June, September and November 30)"
        )));
    }
    let list = |bits: u64| {
        (0..64)
            .filter(|v| bits & (1 << v) != 0)
            .map(|v: u32| v.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    // Explicit lists only, so croner's own `*` handling never applies; `+` selects AND.
    let canonical = format!(
        "{} {} {} {} {}{}",
        list(sets[0]),
        list(sets[1]),
        list(sets[2]),
        list(sets[3]),
        if both_days { "+" } else { "" },
        list(sets[4]),
    );
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .dom_and_dow(false)
        .alternative_weekdays(false)
        .build()
        .parse(&canonical)
        .map_err(|e| err(format!("{expr:?} was not accepted by the cron engine: {e}")))
}

/// Whether some month in `months` has some day in `days` (Feb 29 counts: leap years).
fn can_ever_match(months: u64, days: u64) -> bool {
    const LONGEST: [u32; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    (1..=12_usize)
        .any(|m| months & (1 << m) != 0 && (1..=LONGEST[m]).any(|d| days & (1_u64 << d) != 0))
}

fn parse_field(text: &str, spec: &FieldSpec) -> Result<u64, String> {
    let mut bits = 0_u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err("empty list element".to_string());
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step = parse_number(step)
                    .filter(|s| *s >= 1)
                    .ok_or_else(|| format!("step {step:?} must be a whole number of at least 1"))?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            let (a, mut b) = (parse_value(a, spec)?, parse_value(b, spec)?);
            // `FRI-SUN` (or `5-0`) ends on Sunday = 7.
            if spec.max == 7 && b == 0 && a > 0 {
                b = 7;
            }
            if a > b {
                return Err(format!(
                    "range {range:?} runs backwards; write it low-high (wrap-around ranges are not supported, use a list)"
                ));
            }
            (a, b)
        } else {
            let v = parse_value(range, spec)?;
            if step.is_some() {
                return Err(format!(
                    "a step needs a range: write {v}-{}/n or */n instead of {item:?}",
                    spec.max
                ));
            }
            (v, v)
        };
        let step = step.unwrap_or(1) as usize;
        for v in (lo..=hi).step_by(step) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

fn parse_number(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_value(s: &str, spec: &FieldSpec) -> Result<u32, String> {
    if let Some(v) = parse_number(s) {
        if v < spec.min || v > spec.max {
            return Err(format!("{v} is out of range"));
        }
        return Ok(v);
    }
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(spec.min + i as u32);
    }
    if s.is_empty() {
        return Err("missing value".to_string());
    }
    let quartz_suffix = s.len() > 1
        && s.ends_with(['L', 'l', 'W', 'w'])
        && s[..s.len() - 1].bytes().all(|b| b.is_ascii_digit());
    if s.contains(['#', '?'])
        || s.eq_ignore_ascii_case("L")
        || s.eq_ignore_ascii_case("LW")
        || quartz_suffix
    {
        return Err(format!(
            "{s:?} uses a non-standard extension (L, W, #, ?), which is not supported"
        ));
    }
    Err(format!("{s:?} is not a number or name"))
}

// ---------------------------------------------------------------------------------------------
// RRULE

/// An rrule schedule, expanded on the wall clock: the `rrule` crate sees wall-clock times
/// dressed as UTC (so it never applies DST itself), and each result is resolved in the
/// schedule's time zone by the DST policy.
#[derive(Debug, Clone)]
struct RRuleSchedule {
    /// DTSTART on the wall clock.
    start: NaiveDateTime,
    rules: Vec<RuleLine>,
    /// Resolved, sorted.
    rdates: Vec<DateTime<Utc>>,
    /// Resolved, sorted.
    exdates: Vec<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
struct RuleLine {
    /// The rule without UNTIL (which the crate would read in the machine's time zone).
    rule: rrule::RRule<rrule::Unvalidated>,
    until: Option<DateTime<Utc>>,
    /// Wall-clock seconds in one period, when DTSTART may be moved by whole periods: no
    /// COUNT (which counts from the real start) and a fixed-length period (MINUTELY to
    /// WEEKLY). Moving by whole periods keeps the INTERVAL phase, the week alignment and
    /// the BYxxx defaults the crate derives from DTSTART (time of day, weekday).
    period_secs: Option<i64>,
}

impl RRuleSchedule {
    fn parse(
        text: &str,
        anchor: Option<DateTime<FixedOffset>>,
        tz: Tz,
    ) -> Result<Self, ScheduleError> {
        let err = |m: String| ScheduleError::new("rrule", m);
        if text.len() > MAX_RRULE_LEN {
            return Err(err(format!(
                "is {} characters long, at most {MAX_RRULE_LEN} are allowed",
                text.len()
            )));
        }
        let mut start = None;
        let mut bodies = Vec::new();
        let mut rdates = Vec::new();
        let mut exdates = Vec::new();
        for line in text.split_whitespace() {
            // `NAME:value` or `NAME;params:value`; a bare `FREQ=…` is a rule.
            let end = line
                .find(|c: char| !c.is_ascii_alphabetic() && c != '-')
                .unwrap_or(line.len());
            let (name, rest) = match line[end..].chars().next() {
                Some(':' | ';') => (&line[..end], &line[end..]),
                _ => ("", line),
            };
            match name.to_ascii_uppercase().as_str() {
                "DTSTART" => {
                    if start.is_some() {
                        return Err(err("more than one DTSTART line; keep one".to_string()));
                    }
                    let mut walls = parse_date_line(rest, "DTSTART", tz).map_err(err)?;
                    if walls.len() != 1 {
                        return Err(err("DTSTART takes exactly one date-time".to_string()));
                    }
                    start = walls.pop();
                }
                "RRULE" => bodies.push(rest.trim_start_matches(':')),
                "RDATE" => rdates.extend(parse_date_line(rest, "RDATE", tz).map_err(err)?),
                "EXDATE" => exdates.extend(parse_date_line(rest, "EXDATE", tz).map_err(err)?),
                "" if line.contains('=') => bodies.push(line),
                _ => {
                    return Err(err(format!(
                    "unsupported line {line:?}; expected RRULE:FREQ=…, DTSTART, RDATE or EXDATE \
                         (EXRULE is not supported)"
                )))
                }
            }
        }
        if bodies.is_empty() {
            return Err(err(format!(
                "no rule found in {text:?}; write e.g. \"FREQ=WEEKLY;BYDAY=MO;BYHOUR=9;BYMINUTE=0\""
            )));
        }
        let start = match (start, anchor) {
            (Some(_), Some(_)) => {
                return Err(ScheduleError::new(
                    "anchor_date",
                    "conflicts with the DTSTART line in rrule; give the start in one place",
                ))
            }
            (Some(s), None) => s,
            (None, Some(a)) => a.with_timezone(&tz).naive_local(),
            (None, None) => default_anchor(),
        };
        let start = start.with_nanosecond(0).unwrap_or(start);
        let mut rules = Vec::new();
        for body in bodies {
            rules.push(RuleLine::parse(body, start, tz).map_err(err)?);
        }
        let resolve_all = |walls: Vec<NaiveDateTime>| {
            let mut v: Vec<_> = walls
                .into_iter()
                .filter_map(|w| resolve_local(tz, w))
                .collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let schedule = RRuleSchedule {
            start,
            rules,
            rdates: resolve_all(rdates),
            exdates: resolve_all(exdates),
        };
        let first = resolve_local(tz, start)
            .and_then(|s| s.checked_sub_signed(TimeDelta::seconds(1)))
            .and_then(|before| schedule.iter_after(tz, before).next());
        if first.is_none() {
            return Err(err(format!(
                "{text:?} never produces an occurrence on or after its start {start}; check BYxxx parts and UNTIL/COUNT"
            )));
        }
        Ok(schedule)
    }

    fn iter_after(&self, tz: Tz, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let local_after = after.with_timezone(&tz).naive_local();
        let mut sources: Vec<Box<dyn Iterator<Item = DateTime<Utc>> + '_>> = self
            .rules
            .iter()
            .map(|rule| {
                let until = rule.until;
                Box::new(
                    rule_walls(rule, self.start, local_after)
                        .map(|d| d.naive_utc())
                        .map_while(move |wall| resolve_local(tz, wall))
                        .take_while(move |t| until.is_none_or(|u| *t <= u)),
                ) as Box<dyn Iterator<Item = DateTime<Utc>> + '_>
            })
            .collect();
        sources.push(Box::new(self.rdates.iter().copied()));
        let exdates = &self.exdates;
        Ascending::new(after, MergeAscending::new(sources))
            .filter(move |t| exdates.binary_search(t).is_err())
    }
}

impl RuleLine {
    fn parse(body: &str, start: NaiveDateTime, tz: Tz) -> Result<Self, String> {
        let mut until = None;
        let mut kept = Vec::new();
        for part in body.split(';').filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((key, value)) if key.eq_ignore_ascii_case("UNTIL") => {
                    let wall = parse_ical_value(value, "UNTIL", tz)?;
                    until = resolve_local(tz, wall);
                }
                _ => kept.push(part.to_ascii_uppercase()),
            }
        }
        let rule: rrule::RRule<rrule::Unvalidated> = kept
            .join(";")
            .parse()
            .map_err(|e: rrule::RRuleError| format!("{e} in {body:?}"))?;
        if rule.get_interval() == 0 {
            return Err(format!("INTERVAL must be at least 1 in {body:?}"));
        }
        // Validate once against the real start, so errors surface at parse time.
        rule.clone()
            .validate(fake_utc(start))
            .map_err(|e| format!("{e} in {body:?}"))?;
        let unit = match rule.get_freq() {
            rrule::Frequency::Secondly => {
                return Err(format!(
                    "FREQ=SECONDLY is not supported in {body:?}; use an interval schedule for \
                     sub-minute periods"
                ))
            }
            rrule::Frequency::Minutely => Some(60),
            rrule::Frequency::Hourly => Some(3_600),
            rrule::Frequency::Daily => Some(86_400),
            rrule::Frequency::Weekly => Some(7 * 86_400),
            rrule::Frequency::Monthly | rrule::Frequency::Yearly => None,
        };
        let period_secs = match rule.get_count() {
            Some(_) => None,
            None => unit.map(|u| u * i64::from(rule.get_interval())),
        };
        Ok(RuleLine {
            rule,
            until,
            period_secs,
        })
    }
}

/// A wall-clock time dressed as UTC for the `rrule` crate.
fn fake_utc(wall: NaiveDateTime) -> DateTime<rrule::Tz> {
    rrule::Tz::UTC.from_utc_datetime(&wall)
}

/// Wall-clock occurrences of one rule, expanded from a whole number of periods before
/// `local_after` when the rule allows it (see [`RuleLine::period_secs`]).
fn rule_walls(
    rule: &RuleLine,
    start: NaiveDateTime,
    local_after: NaiveDateTime,
) -> rrule::RRuleSetIter {
    // Anything on or before `local_after` resolves to at most `after`; two days more keep
    // clear of any DST shift.
    let target = local_after
        .checked_sub_signed(TimeDelta::days(2))
        .unwrap_or(local_after);
    let start = rule
        .period_secs
        .and_then(|period| advance(start, period, target))
        .unwrap_or(start);
    // `limit()`: the crate stops after 100 000 consecutive empty periods instead of
    // spinning forever on a rule that stopped matching.
    let set = match rule.rule.clone().build(fake_utc(start)) {
        Ok(set) => set,
        // Validated at parse time against the original start; the moved start has the same
        // wall-clock time of day and weekday, so this does not happen. End the rule if it does.
        Err(_) => rrule::RRuleSet::new(fake_utc(start)),
    };
    (&set.limit()).into_iter()
}

/// `start` moved forward by the most whole periods that stay at or before `target`.
fn advance(start: NaiveDateTime, period: i64, target: NaiveDateTime) -> Option<NaiveDateTime> {
    let gap = (target - start).num_seconds();
    if gap <= period {
        return None;
    }
    let periods = gap / period;
    start.checked_add_signed(TimeDelta::try_seconds(periods.checked_mul(period)?)?)
}

/// Merges ascending iterators into one ascending iterator (duplicates kept).
struct MergeAscending<'a> {
    sources: Vec<std::iter::Peekable<Box<dyn Iterator<Item = DateTime<Utc>> + 'a>>>,
}

impl<'a> MergeAscending<'a> {
    fn new(sources: Vec<Box<dyn Iterator<Item = DateTime<Utc>> + 'a>>) -> Self {
        Self {
            sources: sources.into_iter().map(Iterator::peekable).collect(),
        }
    }
}

impl Iterator for MergeAscending<'_> {
    type Item = DateTime<Utc>;

    fn next(&mut self) -> Option<DateTime<Utc>> {
        let mut best: Option<(usize, DateTime<Utc>)> = None;
        for (i, source) in self.sources.iter_mut().enumerate() {
            if let Some(t) = source.peek() {
                if best.is_none_or(|(_, b)| *t < b) {
                    best = Some((i, *t));
                }
            }
        }
        let (i, _) = best?;
        self.sources[i].next()
    }
}

/// Parses the part of a DTSTART/RDATE/EXDATE line after its name (`;params:values`) into
/// wall-clock times in `tz`.
fn parse_date_line(rest: &str, property: &str, tz: Tz) -> Result<Vec<NaiveDateTime>, String> {
    let (params, values) = rest
        .split_once(':')
        .ok_or_else(|| format!("{property} line needs a ':' before its value"))?;
    for param in params.split(';').filter(|p| !p.is_empty()) {
        match param.split_once('=') {
            Some((k, v)) if k.eq_ignore_ascii_case("TZID") => {
                let named = Tz::from_str(v).map_err(|_| {
                    format!("{property} has unknown TZID {v:?}; use an IANA name such as \"Europe/Berlin\"")
                })?;
                if named != tz {
                    return Err(format!(
                        "{property} uses TZID {v:?} but the schedule's timezone is {:?}; \
                         set timezone: {v:?} (the schedule's time zone governs the wall clock) \
                         or drop the TZID",
                        tz.name()
                    ));
                }
            }
            Some((k, v))
                if k.eq_ignore_ascii_case("VALUE")
                    && (v.eq_ignore_ascii_case("DATE") || v.eq_ignore_ascii_case("DATE-TIME")) => {}
            _ => {
                return Err(format!(
                    "{property} parameter {param:?} is not supported (only TZID and VALUE=DATE/DATE-TIME)"
                ))
            }
        }
    }
    values
        .split(',')
        .filter(|v| !v.is_empty())
        .map(|v| parse_ical_value(v, property, tz))
        .collect()
}

/// Parses `YYYYMMDD`, `YYYYMMDDTHHMMSS` or `YYYYMMDDTHHMMSSZ` into a wall-clock time in `tz`
/// (a `Z` value is converted; anything else already is wall time in `tz`).
fn parse_ical_value(value: &str, property: &str, tz: Tz) -> Result<NaiveDateTime, String> {
    let bad = || {
        format!(
            "{property} value {value:?} is not a date-time; write YYYYMMDDTHHMMSS, \
             YYYYMMDDTHHMMSSZ or YYYYMMDD"
        )
    };
    let (body, zulu) = match value.strip_suffix(['Z', 'z']) {
        Some(b) => (b, true),
        None => (value, false),
    };
    let wall = if body.len() == 8 {
        NaiveDate::parse_from_str(body, "%Y%m%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    } else {
        NaiveDateTime::parse_from_str(&body.to_ascii_uppercase(), "%Y%m%dT%H%M%S").ok()
    }
    .ok_or_else(bad)?;
    Ok(if zulu {
        Utc.from_utc_datetime(&wall)
            .with_timezone(&tz)
            .naive_local()
    } else {
        wall
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Timelike};
    use proptest::prelude::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .unwrap_or_else(|e| panic!("bad test time {s:?}: {e}"))
            .with_timezone(&Utc)
    }

    fn spec(json: serde_json::Value) -> ScheduleSpec {
        serde_json::from_value(json).unwrap()
    }

    fn parse(json: serde_json::Value) -> Schedule {
        let spec = spec(json);
        Schedule::parse(&spec).unwrap_or_else(|e| panic!("{spec:?} rejected: {e}"))
    }

    fn cron_in(expr: &str, tz: &str) -> Schedule {
        parse(serde_json::json!({ "cron": expr, "timezone": tz }))
    }

    fn parse_err(json: serde_json::Value) -> ScheduleError {
        match Schedule::parse(&spec(json.clone())) {
            Ok(s) => panic!("{json} was accepted: {s:?}"),
            Err(e) => e,
        }
    }

    /// Asserts the first fire times strictly after `after` (instants written with offsets).
    fn assert_fires(schedule: &Schedule, after: &str, expected: &[&str]) {
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

    // ---- cron: standard semantics, checked against hand-derived calendars --------------------
    // Calendar facts used below: 2026-01-01 is a Thursday, so 2026-06-01 is a Monday
    // (31+28+31+30+31 = 151 days later, 151 = 21*7 + 4), 2026-07-01 a Wednesday,
    // 2026-08-01 a Saturday, 2027-01-01 a Friday. 2028 is the next leap year.

    #[test]
    fn cron_table() {
        let table: &[(&str, &str, &[&str])] = &[
            // dom AND dow both restricted: either matches. Mon 06-01 (both), Mondays, then
            // Wed 07-01 (only the 1st), then Mondays again.
            (
                "0 12 1 * MON",
                "2026-06-01T00:00:00Z",
                &[
                    "2026-06-01T12:00:00Z",
                    "2026-06-08T12:00:00Z",
                    "2026-06-15T12:00:00Z",
                    "2026-06-22T12:00:00Z",
                    "2026-06-29T12:00:00Z",
                    "2026-07-01T12:00:00Z",
                    "2026-07-06T12:00:00Z",
                ],
            ),
            // 1st, 15th or Friday: Fri 5, Fri 12, Mon 15, Fri 19, Fri 26, Wed Jul 1, Fri Jul 3.
            (
                "0 0 1,15 * 5",
                "2026-06-01T00:00:00Z",
                &[
                    "2026-06-05T00:00:00Z",
                    "2026-06-12T00:00:00Z",
                    "2026-06-15T00:00:00Z",
                    "2026-06-19T00:00:00Z",
                    "2026-06-26T00:00:00Z",
                    "2026-07-01T00:00:00Z",
                    "2026-07-03T00:00:00Z",
                ],
            ),
            // Vixie: dom starts with `*`, so both must match: days 1/11/21/31 that are Mondays.
            // Jun 1 is `after` itself; Jul 1 Wed, 11 Sat, 21 Tue, 31 Fri; Aug 1 Sat, 11 Tue,
            // 21 Fri, 31 Mon; Sep 1 Tue, 11 Fri, 21 Mon.
            (
                "0 0 */10 * MON",
                "2026-06-01T00:00:00Z",
                &["2026-08-31T00:00:00Z", "2026-09-21T00:00:00Z"],
            ),
            // Weekdays only, starting on Friday 06-05 after 09:00: Mon..Fri, then Mon.
            (
                "0 9 * * 1-5",
                "2026-06-05T10:00:00Z",
                &[
                    "2026-06-08T09:00:00Z",
                    "2026-06-09T09:00:00Z",
                    "2026-06-10T09:00:00Z",
                    "2026-06-11T09:00:00Z",
                    "2026-06-12T09:00:00Z",
                    "2026-06-15T09:00:00Z",
                ],
            ),
            (
                "0 9 * * mon-FRI",
                "2026-06-05T10:00:00Z",
                &["2026-06-08T09:00:00Z", "2026-06-09T09:00:00Z"],
            ),
            // Sunday as 0, 7, SUN and @weekly: Sundays 06-07 and 06-14.
            (
                "0 0 * * 0",
                "2026-06-01T00:00:00Z",
                &["2026-06-07T00:00:00Z", "2026-06-14T00:00:00Z"],
            ),
            (
                "0 0 * * 7",
                "2026-06-01T00:00:00Z",
                &["2026-06-07T00:00:00Z", "2026-06-14T00:00:00Z"],
            ),
            (
                "0 0 * * SUN",
                "2026-06-01T00:00:00Z",
                &["2026-06-07T00:00:00Z", "2026-06-14T00:00:00Z"],
            ),
            (
                "@weekly",
                "2026-06-01T00:00:00Z",
                &["2026-06-07T00:00:00Z", "2026-06-14T00:00:00Z"],
            ),
            // 5-7 = Fri, Sat, Sun; SAT-SUN = Sat, Sun.
            (
                "0 0 * * 5-7",
                "2026-06-01T00:00:00Z",
                &[
                    "2026-06-05T00:00:00Z",
                    "2026-06-06T00:00:00Z",
                    "2026-06-07T00:00:00Z",
                    "2026-06-12T00:00:00Z",
                ],
            ),
            (
                "0 0 * * 0-0",
                "2026-06-01T00:00:00Z",
                &["2026-06-07T00:00:00Z", "2026-06-14T00:00:00Z"],
            ),
            (
                "0 0 * * SAT-SUN",
                "2026-06-01T00:00:00Z",
                &[
                    "2026-06-06T00:00:00Z",
                    "2026-06-07T00:00:00Z",
                    "2026-06-13T00:00:00Z",
                ],
            ),
            (
                "*/15 * * * *",
                "2026-06-01T10:07:00Z",
                &[
                    "2026-06-01T10:15:00Z",
                    "2026-06-01T10:30:00Z",
                    "2026-06-01T10:45:00Z",
                    "2026-06-01T11:00:00Z",
                ],
            ),
            // Strictly after, also with sub-second instants.
            (
                "* * * * *",
                "2026-06-01T10:00:00Z",
                &["2026-06-01T10:01:00Z"],
            ),
            (
                "* * * * *",
                "2026-06-01T10:00:00.500Z",
                &["2026-06-01T10:01:00Z"],
            ),
            (
                "5,10-12 3 * * *",
                "2026-06-01T00:00:00Z",
                &[
                    "2026-06-01T03:05:00Z",
                    "2026-06-01T03:10:00Z",
                    "2026-06-01T03:11:00Z",
                    "2026-06-01T03:12:00Z",
                    "2026-06-02T03:05:00Z",
                ],
            ),
            (
                "0 8-18/5 * * *",
                "2026-06-01T00:00:00Z",
                &[
                    "2026-06-01T08:00:00Z",
                    "2026-06-01T13:00:00Z",
                    "2026-06-01T18:00:00Z",
                    "2026-06-02T08:00:00Z",
                ],
            ),
            // Leap day: next one is 2028, then 2032.
            (
                "0 0 29 2 *",
                "2026-03-01T00:00:00Z",
                &["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"],
            ),
            // The 31st skips 30-day months.
            (
                "0 0 31 * *",
                "2026-06-01T00:00:00Z",
                &[
                    "2026-07-31T00:00:00Z",
                    "2026-08-31T00:00:00Z",
                    "2026-10-31T00:00:00Z",
                    "2026-12-31T00:00:00Z",
                ],
            ),
            // Names; dom is `*`, so Sundays in January and July: Jul 5 (Jul 1 is a Wed),
            // 12, 19, 26, then 2027-01-03 (Jan 1 2027 is a Friday).
            (
                "30 6 * JAN,jul SUN",
                "2026-06-01T00:00:00Z",
                &[
                    "2026-07-05T06:30:00Z",
                    "2026-07-12T06:30:00Z",
                    "2026-07-19T06:30:00Z",
                    "2026-07-26T06:30:00Z",
                    "2027-01-03T06:30:00Z",
                ],
            ),
            (
                "0 0 1 jan *",
                "2026-06-01T00:00:00Z",
                &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"],
            ),
            (
                "@yearly",
                "2026-06-01T00:00:00Z",
                &["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"],
            ),
            (
                "@annually",
                "2026-06-01T00:00:00Z",
                &["2027-01-01T00:00:00Z"],
            ),
            (
                "@monthly",
                "2026-06-15T00:00:00Z",
                &["2026-07-01T00:00:00Z", "2026-08-01T00:00:00Z"],
            ),
            (
                "@daily",
                "2026-06-15T10:00:00Z",
                &["2026-06-16T00:00:00Z", "2026-06-17T00:00:00Z"],
            ),
            (
                "@midnight",
                "2026-06-15T10:00:00Z",
                &["2026-06-16T00:00:00Z"],
            ),
            (
                "@hourly",
                "2026-06-15T10:00:00Z",
                &["2026-06-15T11:00:00Z", "2026-06-15T12:00:00Z"],
            ),
            (
                "  59 23 31 12 *  ",
                "2026-06-01T00:00:00Z",
                &["2026-12-31T23:59:00Z", "2027-12-31T23:59:00Z"],
            ),
        ];
        for (expr, after, expected) in table {
            assert_fires(&cron_in(expr, "UTC"), after, expected);
        }
    }

    #[test]
    fn cron_follows_the_wall_clock_of_its_time_zone() {
        // 09:00 in Kolkata (+05:30, no DST) is 03:30Z.
        assert_fires(
            &cron_in("0 9 * * *", "Asia/Kolkata"),
            "2026-06-01T00:00:00Z",
            &["2026-06-01T09:00:00+05:30", "2026-06-02T09:00:00+05:30"],
        );
        // 09:00 in New York is 14:00Z in winter and 13:00Z in summer.
        assert_fires(
            &cron_in("0 9 * * *", "America/New_York"),
            "2026-03-07T00:00:00Z",
            &["2026-03-07T09:00:00-05:00", "2026-03-08T09:00:00-04:00"],
        );
    }

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

    // ---- interval -----------------------------------------------------------------------------

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

    // ---- rrule --------------------------------------------------------------------------------

    fn rrule_in(rule: &str, tz: &str) -> Schedule {
        parse(serde_json::json!({ "rrule": rule, "timezone": tz }))
    }

    #[test]
    fn rrule_weekly_by_day() {
        // Mondays and Wednesdays at 09:00: Mon 06-01, Wed 06-03, Mon 06-08, Wed 06-10.
        let expected = &[
            "2026-06-01T09:00:00Z",
            "2026-06-03T09:00:00Z",
            "2026-06-08T09:00:00Z",
            "2026-06-10T09:00:00Z",
        ];
        for rule in [
            "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE=0",
            "RRULE:FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE=0",
            "rrule:freq=weekly;byday=mo,we;byhour=9;byminute=0",
            "DTSTART:20260101T090000Z\nRRULE:FREQ=WEEKLY;BYDAY=MO,WE",
        ] {
            assert_fires(&rrule_in(rule, "UTC"), "2026-06-01T00:00:00Z", expected);
        }
        // DTSTART on a Wednesday is not itself an occurrence of a Mondays-only rule.
        let s = rrule_in(
            "DTSTART:20260603T090000Z\nRRULE:FREQ=WEEKLY;BYDAY=MO",
            "UTC",
        );
        assert_fires(
            &s,
            "2026-06-01T00:00:00Z",
            &["2026-06-08T09:00:00Z", "2026-06-15T09:00:00Z"],
        );
    }

    #[test]
    fn rrule_daily_follows_the_dst_policy() {
        let s = rrule_in("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "Europe/Berlin");
        // The crate alone would give 03:30 CEST on 03-29 (midnight + 2h30 of elapsed time).
        assert_fires(
            &s,
            "2026-03-27T12:00:00Z",
            &[
                "2026-03-28T02:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-30T02:30:00+02:00",
            ],
        );
        assert_fires(
            &s,
            "2026-10-23T12:00:00Z",
            &[
                "2026-10-24T02:30:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-26T02:30:00+01:00",
            ],
        );
        // Daily at 08:30 Berlin, however the start is given.
        let expected = &[
            "2026-03-28T08:30:00+01:00",
            "2026-03-29T08:30:00+02:00",
            "2026-03-30T08:30:00+02:00",
        ];
        for rule in [
            "DTSTART;TZID=Europe/Berlin:20260301T083000\nRRULE:FREQ=DAILY",
            "DTSTART:20260301T083000\nRRULE:FREQ=DAILY",
            "DTSTART:20260301T073000Z RRULE:FREQ=DAILY",
        ] {
            assert_fires(
                &rrule_in(rule, "Europe/Berlin"),
                "2026-03-28T00:00:00Z",
                expected,
            );
        }
        let s = parse(serde_json::json!({
            "rrule": "FREQ=DAILY", "anchor_date": "2026-03-01T08:30:00+01:00", "timezone": "Europe/Berlin"
        }));
        assert_fires(&s, "2026-03-28T00:00:00Z", expected);
    }

    #[test]
    fn rrule_count_until_rdate_exdate() {
        let all = |s: &Schedule, after: &str| s.iter_after(at(after)).collect::<Vec<_>>();
        let s = rrule_in("DTSTART:20260101T090000Z\nRRULE:FREQ=DAILY;COUNT=3", "UTC");
        assert_eq!(
            all(&s, "2025-06-01T00:00:00Z"),
            [
                at("2026-01-01T09:00:00Z"),
                at("2026-01-02T09:00:00Z"),
                at("2026-01-03T09:00:00Z"),
            ]
        );
        assert_eq!(
            all(&s, "2026-01-02T09:00:00Z"),
            [at("2026-01-03T09:00:00Z")]
        );
        let s = rrule_in(
            "DTSTART:20260101T090000Z\nRRULE:FREQ=DAILY;UNTIL=20260103T090000Z",
            "UTC",
        );
        assert_eq!(
            all(&s, "2025-06-01T00:00:00Z"),
            [
                at("2026-01-01T09:00:00Z"),
                at("2026-01-02T09:00:00Z"),
                at("2026-01-03T09:00:00Z"),
            ]
        );
        assert_eq!(s.next_after(at("2026-01-03T09:00:00Z")), None);
        // A floating UNTIL is wall time in the schedule's zone (09:00 CET = 08:00Z).
        let s = rrule_in(
            "DTSTART;TZID=Europe/Berlin:20260101T090000\nRRULE:FREQ=DAILY;UNTIL=20260102T090000",
            "Europe/Berlin",
        );
        assert_eq!(
            all(&s, "2025-06-01T00:00:00Z"),
            [at("2026-01-01T08:00:00Z"), at("2026-01-02T08:00:00Z"),]
        );
        // Mondays, minus 01-12, plus Wednesday 01-14 at noon.
        let s = rrule_in(
            "DTSTART:20260105T090000Z\nRRULE:FREQ=WEEKLY;BYDAY=MO\nEXDATE:20260112T090000Z\nRDATE:20260114T120000Z",
            "UTC",
        );
        assert_fires(
            &s,
            "2026-01-01T00:00:00Z",
            &[
                "2026-01-05T09:00:00Z",
                "2026-01-14T12:00:00Z",
                "2026-01-19T09:00:00Z",
                "2026-01-26T09:00:00Z",
            ],
        );
        // Two rules merge; a shared time fires once. Daily 09:00 and Mondays 09:00/17:00.
        let s = rrule_in(
            "DTSTART:20260601T090000Z\nRRULE:FREQ=DAILY\nRRULE:FREQ=WEEKLY;BYDAY=MO;BYHOUR=9,17",
            "UTC",
        );
        assert_fires(
            &s,
            "2026-06-01T00:00:00Z",
            &[
                "2026-06-01T09:00:00Z",
                "2026-06-01T17:00:00Z",
                "2026-06-02T09:00:00Z",
            ],
        );
    }

    #[test]
    fn rrule_far_after_its_start_keeps_its_phase() {
        // Default start 2020-01-01T00:00Z (a Wednesday). 2020-01-01 to 2030-01-01 is 3653
        // days = 87672 hours; 87672 = 5*17534 + 2, so every-5-hours fires at hour 87675.
        assert_fires(
            &rrule_in("FREQ=HOURLY;INTERVAL=5", "UTC"),
            "2030-01-01T00:00:00Z",
            &["2030-01-01T03:00:00Z", "2030-01-01T08:00:00Z"],
        );
        // 87672*60 = 5260320 minutes = 7*751474 + 2: every 7 minutes fires at +5 min.
        assert_fires(
            &rrule_in("FREQ=MINUTELY;INTERVAL=7", "UTC"),
            "2030-01-01T00:00:00Z",
            &["2030-01-01T00:05:00Z", "2030-01-01T00:12:00Z"],
        );
        // (The crate alone walks ~5 million minutes here: seconds in a debug build.)
        assert_fires(
            &rrule_in("FREQ=MINUTELY", "UTC"),
            "2030-01-01T00:00:30Z",
            &["2030-01-01T00:01:00Z", "2030-01-01T00:02:00Z"],
        );
        // 2020-01-01 to 2026-06-01 is 2343 days; 2343 = 14*167 + 5, so every other Wednesday
        // falls on day 2352 (2026-06-10) and 2366 (06-24).
        assert_fires(
            &rrule_in("FREQ=WEEKLY;INTERVAL=2", "UTC"),
            "2026-06-01T00:00:00Z",
            &["2026-06-10T00:00:00Z", "2026-06-24T00:00:00Z"],
        );
        assert_fires(
            &rrule_in("FREQ=MONTHLY;BYMONTHDAY=-1;BYHOUR=18;BYMINUTE=0", "UTC"),
            "2026-02-01T00:00:00Z",
            &["2026-02-28T18:00:00Z", "2026-03-31T18:00:00Z"],
        );
        // Fast-forward in a DST zone keeps the wall-clock time.
        assert_fires(
            &rrule_in(
                "FREQ=DAILY;INTERVAL=3;BYHOUR=2;BYMINUTE=30",
                "Europe/Berlin",
            ),
            "2026-03-27T00:00:00Z",
            // Day 2020-01-01 + 3k: 2026-03-27 is day 2277 = 3*759, so 03-27, 03-30 (gap
            // day 03-29 is not one of them), 04-02.
            &[
                "2026-03-27T02:30:00+01:00",
                "2026-03-30T02:30:00+02:00",
                "2026-04-02T02:30:00+02:00",
            ],
        );
    }

    // ---- errors -------------------------------------------------------------------------------

    #[test]
    fn errors_name_their_field_and_say_how_to_fix_it() {
        use serde_json::json;
        let e = parse_err(json!({ "cron": "0 0 2 * * *" }));
        assert_eq!(e.field, "cron");
        assert!(
            e.to_string().starts_with(
                "cron: expected 5 fields (minute hour day-of-month month day-of-week) or \
             @hourly/@daily/@weekly/@monthly/@yearly, got 6 fields in \"0 0 2 * * *\""
            ),
            "{e}"
        );
        let cases: &[(serde_json::Value, &str, &str)] = &[
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
            (json!({ "cron": "0 0 1 1 * 2030" }), "cron", "got 6 fields"),
            (
                json!({ "cron": "0 0 0 1 1 * 2030" }),
                "cron",
                "got 7 fields",
            ),
            (json!({ "cron": "" }), "cron", "got 0 fields"),
            (json!({ "cron": "@reboot" }), "cron", "not supported"),
            (json!({ "cron": "@every 5m" }), "cron", "unknown nickname"),
            (json!({ "cron": "60 * * * *" }), "cron", "minute field"),
            (json!({ "cron": "* 24 * * *" }), "cron", "hour field"),
            (json!({ "cron": "* * 0 * *" }), "cron", "day-of-month field"),
            (json!({ "cron": "* * * 13 *" }), "cron", "month field"),
            (json!({ "cron": "* * * * 8" }), "cron", "day-of-week field"),
            (json!({ "cron": "*/0 * * * *" }), "cron", "at least 1"),
            (json!({ "cron": "5/15 * * * *" }), "cron", "5-59/n"),
            (json!({ "cron": "10-5 * * * *" }), "cron", "backwards"),
            (
                json!({ "cron": "1,,2 * * * *" }),
                "cron",
                "empty list element",
            ),
            (json!({ "cron": "0 0 L * *" }), "cron", "non-standard"),
            (json!({ "cron": "0 0 ? * *" }), "cron", "non-standard"),
            (json!({ "cron": "0 0 * * 5L" }), "cron", "non-standard"),
            (json!({ "cron": "0 0 * * MON#2" }), "cron", "non-standard"),
            (
                json!({ "cron": "0 0 * * FOO" }),
                "cron",
                "not a number or name",
            ),
            (json!({ "cron": "0 0 * MON *" }), "cron", "month field"),
            (json!({ "cron": "0 0 30 2 *" }), "cron", "never fires"),
            (
                json!({ "cron": "0 0 31 4,6,9,11 *" }),
                "cron",
                "never fires",
            ),
            (
                json!({ "cron": "* * * * *", "timezone": "Mars/Olympus" }),
                "timezone",
                "unknown IANA time zone \"Mars/Olympus\"",
            ),
            (
                json!({ "cron": "* * * * *", "anchor_date": "2026-01-01T00:00:00Z" }),
                "anchor_date",
                "only used with interval or rrule",
            ),
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
            (
                json!({ "rrule": "FREQ=FORTNIGHTLY" }),
                "rrule",
                "FORTNIGHTLY",
            ),
            (
                json!({ "rrule": "FREQ=SECONDLY" }),
                "rrule",
                "interval schedule",
            ),
            (
                json!({ "rrule": "FREQ=DAILY;INTERVAL=0" }),
                "rrule",
                "INTERVAL",
            ),
            (
                json!({ "rrule": "FREQ=DAILY;BYHOUR=25" }),
                "rrule",
                "BYHOUR",
            ),
            (
                json!({ "rrule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30" }),
                "rrule",
                "never produces",
            ),
            (
                json!({ "rrule": "DTSTART:20260101T000000Z" }),
                "rrule",
                "no rule found",
            ),
            (
                json!({ "rrule": "EXRULE:FREQ=DAILY\nRRULE:FREQ=DAILY" }),
                "rrule",
                "EXRULE",
            ),
            (
                json!({ "rrule": "DTSTART:2026-01-01\nRRULE:FREQ=DAILY" }),
                "rrule",
                "YYYYMMDD",
            ),
            (
                json!({ "rrule": "DTSTART;TZID=Europe/Berlin:20260101T000000\nRRULE:FREQ=DAILY" }),
                "rrule",
                "set timezone: \"Europe/Berlin\"",
            ),
            (
                json!({ "rrule": "DTSTART:20260101T000000Z\nRRULE:FREQ=DAILY", "anchor_date": "2026-01-01T00:00:00Z" }),
                "anchor_date",
                "DTSTART",
            ),
        ];
        for (json, field, needle) in cases {
            let e = parse_err(json.clone());
            assert_eq!(e.field, *field, "{json}: {e}");
            assert!(e.message.contains(needle), "{json}: {e:?} lacks {needle:?}");
            assert_eq!(e.to_string(), format!("{}: {}", e.field, e.message));
        }
        let e = parse_err(json!({ "cron": "* * * * *", "timezone": "Europe/Berln" }));
        assert_eq!(e.field, "timezone");
        assert!(e.message.contains("did you mean \"Europe/Berlin\""), "{e}");
        let e = parse_err(json!({ "cron": "* * * * *", "timezone": "america/new_york" }));
        assert!(e.message.contains("\"America/New_York\""), "{e}");
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

    // ---- property tests -----------------------------------------------------------------------

    /// One comma-separated element of a cron field.
    #[derive(Debug, Clone)]
    enum Part {
        Star,
        StarStep(u32),
        Val(u32),
        Range(u32, u32),
        RangeStep(u32, u32, u32),
    }

    /// A random cron field, with the set it denotes computed independently of the parser.
    #[derive(Debug, Clone)]
    struct Field {
        text: String,
        set: Vec<bool>,
    }

    fn field(min: u32, max: u32, names: &'static [&'static str]) -> impl Strategy<Value = Field> {
        let part = prop_oneof![
            3 => Just(Part::Star),
            1 => (1..=max.max(2) / 2).prop_map(Part::StarStep),
            3 => (min..=max).prop_map(Part::Val),
            1 => (min..=max, min..=max).prop_map(|(a, b)| Part::Range(a.min(b), a.max(b))),
            1 => (min..=max, min..=max, 1..=7_u32)
                .prop_map(|(a, b, n)| Part::RangeStep(a.min(b), a.max(b), n)),
        ];
        (prop::collection::vec(part, 1..=3), any::<bool>()).prop_map(move |(parts, use_names)| {
            let name = |v: u32| match names.get((v - min) as usize) {
                Some(n) if use_names => n.to_string(),
                _ => v.to_string(),
            };
            let mut set = vec![false; max as usize + 1];
            let mut texts = Vec::new();
            for p in &parts {
                let (lo, hi, step, text) = match *p {
                    Part::Star => (min, max, 1, "*".to_string()),
                    Part::StarStep(n) => (min, max, n, format!("*/{n}")),
                    Part::Val(v) => (v, v, 1, name(v)),
                    Part::Range(a, b) => (a, b, 1, format!("{}-{}", name(a), name(b))),
                    Part::RangeStep(a, b, n) => (a, b, n, format!("{}-{}/{n}", name(a), name(b))),
                };
                let mut v = lo;
                while v <= hi {
                    set[v as usize] = true;
                    v += step;
                }
                texts.push(text);
            }
            Field {
                text: texts.join(","),
                set,
            }
        })
    }

    #[derive(Debug, Clone)]
    struct Expr {
        minute: Field,
        hour: Field,
        dom: Field,
        month: Field,
        dow: Field,
    }

    impl Expr {
        fn text(&self) -> String {
            format!(
                "{} {} {} {} {}",
                self.minute.text, self.hour.text, self.dom.text, self.month.text, self.dow.text
            )
        }

        /// Vixie cron's day rule, written from its description.
        fn day_matches(&self, d: NaiveDate) -> bool {
            let dom = self.dom.set[d.day() as usize];
            let w = d.weekday().num_days_from_sunday() as usize;
            let dow = self.dow.set[w] || (w == 0 && self.dow.set[7]);
            let month = self.month.set[d.month() as usize];
            let day = if self.dom.text.starts_with('*') || self.dow.text.starts_with('*') {
                dom && dow
            } else {
                dom || dow
            };
            month && day
        }

        fn matches(&self, t: NaiveDateTime) -> bool {
            t.second() == 0
                && self.minute.set[t.minute() as usize]
                && self.hour.set[t.hour() as usize]
                && self.day_matches(t.date())
        }

        /// The next matching wall time strictly after `after`, searching 45 years.
        fn oracle_next(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
            let floor = after.date().and_hms_opt(after.hour(), after.minute(), 0)?;
            let first = floor + TimeDelta::minutes(1);
            (0..366 * 45)
                .map(|i| first.date() + TimeDelta::days(i))
                .filter(|d| self.day_matches(*d))
                .find_map(|d| {
                    (0..24)
                        .filter(|h| self.hour.set[*h as usize])
                        .flat_map(|h| {
                            (0..60)
                                .filter(|m| self.minute.set[*m as usize])
                                .map(move |m| d.and_hms_opt(h, m, 0))
                        })
                        .flatten()
                        .find(|t| *t >= first)
                })
        }
    }

    fn expr() -> impl Strategy<Value = Expr> {
        (
            field(0, 59, &[]),
            field(0, 23, &[]),
            field(1, 31, &[]),
            field(1, 12, &MONTH_NAMES),
            field(0, 7, &DOW_NAMES),
        )
            .prop_map(|(minute, hour, dom, month, dow)| Expr {
                minute,
                hour,
                dom,
                month,
                dow,
            })
    }

    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        // 2000-01-01 .. 2040-01-01, to the millisecond.
        (946_684_800_000_i64..2_208_988_800_000_i64)
            .prop_map(|ms| DateTime::from_timestamp_millis(ms).unwrap())
    }

    const ZONES: [Tz; 5] = [
        chrono_tz::UTC,
        chrono_tz::Europe::Berlin,
        chrono_tz::America::New_York,
        chrono_tz::Asia::Kolkata,
        chrono_tz::Australia::Lord_Howe,
    ];

    proptest! {
        // No regression files: this crate's tree is shared; failures print their input.
        #![proptest_config(ProptestConfig {
            cases: 192,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// In UTC (no DST) the schedule agrees with a brute-force calendar search.
        #[test]
        fn cron_agrees_with_a_calendar_search(e in expr(), after in instant()) {
            let text = e.text();
            let spec = ScheduleSpec {
                cron: Some(text.clone()), interval: None, anchor_date: None, rrule: None,
                timezone: "UTC".into(), active: true,
            };
            let expected = e.oracle_next(after.naive_utc());
            match Schedule::parse(&spec) {
                Err(err) => prop_assert!(
                    expected.is_none() && err.message.contains("never fires"),
                    "{text:?} rejected ({err}) but fires at {expected:?}"
                ),
                Ok(s) => {
                    let mut cursor = after;
                    let mut want = expected;
                    for got in s.iter_after(after).take(4) {
                        prop_assert_eq!(Some(got.naive_utc()), want, "{} after {}", text, cursor);
                        cursor = got;
                        want = e.oracle_next(got.naive_utc());
                    }
                }
            }
        }

        /// In any zone: strictly increasing, after `after`, and every fire is either the first
        /// occurrence of a matching wall time or the end of a DST gap.
        #[test]
        fn cron_fires_ascend_and_match_their_wall_clock(
            e in expr(), after in instant(), zone in 0..ZONES.len()
        ) {
            let tz = ZONES[zone];
            let text = e.text();
            let spec = ScheduleSpec {
                cron: Some(text.clone()), interval: None, anchor_date: None, rrule: None,
                timezone: tz.name().into(), active: true,
            };
            if let Ok(s) = Schedule::parse(&spec) {
                let mut last = after;
                for t in s.iter_after(after).take(40) {
                    prop_assert!(t > last, "{} in {}: {} after {}", text, tz, t, last);
                    last = t;
                    let wall = t.with_timezone(&tz).naive_local();
                    let first_occurrence =
                        tz.from_local_datetime(&wall).earliest() == Some(t.with_timezone(&tz));
                    let gap_end = matches!(
                        tz.from_local_datetime(&(wall - TimeDelta::seconds(1))),
                        LocalResult::None
                    );
                    prop_assert!(
                        (e.matches(wall) && first_occurrence) || gap_end,
                        "{} in {}: {} (wall {}) does not match", text, tz, t, wall
                    );
                }
            }
        }

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

        /// Starting the expansion a whole number of periods later (the fast-forward) gives
        /// what the crate gives when walking from DTSTART.
        #[test]
        fn rrule_fast_forward_matches_a_walk_from_dtstart(
            freq in 0..4_usize, interval in 1..10_u32, byday in any::<bool>(),
            start_secs in 1_577_836_800_i64..1_735_689_600_i64, periods in 0..3000_i64,
            fraction in 0..1_000_000_i64,
        ) {
            let (name, unit) = [("MINUTELY", 60), ("HOURLY", 3600), ("DAILY", 86_400),
                                ("WEEKLY", 604_800)][freq];
            let start = DateTime::from_timestamp(start_secs, 0).unwrap();
            let period = unit * i64::from(interval);
            // `periods` whole periods plus a random fraction of one.
            let after = start + TimeDelta::seconds(periods * period + fraction * period / 1_000_000);
            let days = if byday && freq == 3 { ";BYDAY=MO,TH,SA" } else { "" };
            let body = format!("FREQ={name};INTERVAL={interval}{days}");
            let dtstart = start.format("%Y%m%dT%H%M%SZ");
            let set: rrule::RRuleSet = format!("DTSTART:{dtstart}\nRRULE:{body}").parse().unwrap();
            let want = (&set).into_iter().map(|d| d.with_timezone(&Utc)).find(|d| *d > after);
            let s = rrule_in(&format!("DTSTART:{dtstart}\nRRULE:{body}"), "UTC");
            prop_assert_eq!(s.next_after(after), want, "{} after {}", body, after);
        }

        /// Interval fire times are anchor + k * interval, ascending, the first one right
        /// after `after`.
        #[test]
        fn sub_day_intervals_are_arithmetic(
            interval in 1..200_000_u64, anchor in instant(), after in instant(), zone in 0..ZONES.len()
        ) {
            prop_assume!(!interval.is_multiple_of(86_400));
            let spec = ScheduleSpec {
                cron: None, interval: Some(interval), anchor_date: Some(anchor.fixed_offset()),
                rrule: None, timezone: ZONES[zone].name().into(), active: true,
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
