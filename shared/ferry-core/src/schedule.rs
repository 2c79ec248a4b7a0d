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
//! time in the schedule's time zone; a `TZID` must equal the schedule's `timezone`. The rule
//! is expanded on the wall clock by the `rrule` crate and resolved with the DST policy
//! above. Infinite rules are fine: rules without `COUNT` and with a frequency of `WEEKLY` or
//! finer start their expansion a whole number of periods before the requested instant, so a
//! minutely rule asked about 2030 does not walk from 2020.

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
    Cron(croner::Cron),
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
            Kind::Cron(parse_cron(cron)?)
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

fn default_anchor(tz: Tz) -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2020, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
        .and_local_timezone(tz)
        .earliest()
        .map(|t| t.naive_local())
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
    if interval % 86_400 == 0 {
        let anchor = match anchor {
            Some(a) => a.with_timezone(&tz).naive_local(),
            None => default_anchor(tz),
        };
        Ok(Kind::EveryDays {
            anchor,
            days: step / 86_400,
        })
    } else {
        let anchor = match anchor {
            Some(a) => a.with_timezone(&Utc),
            None => default_anchor(tz)
                .and_local_timezone(tz)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default(),
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
            let (a, b) = (parse_value(a, spec)?, parse_value(b, spec)?);
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
    if s.chars()
        .any(|c| matches!(c.to_ascii_uppercase(), 'L' | 'W' | '#' | '?'))
        && s.len() <= 4
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
                _ => return Err(err(format!(
                    "unsupported line {line:?}; expected RRULE:FREQ=…, DTSTART, RDATE or EXDATE \
                         (EXRULE is not supported)"
                ))),
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
            (None, None) => default_anchor(tz),
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
