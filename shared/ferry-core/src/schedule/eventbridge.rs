//! EventBridge Scheduler expressions: `cron(...)`, `rate(...)` and `at(...)`, with AWS's
//! semantics (see the module docs of `schedule` for the rules and the DST policy).
//!
//! `cron(...)` is validated here (so errors name the field and the fix) and evaluated by the
//! `cron` crate, which is Quartz-flavoured like AWS (day-of-week 1 = Sunday, a year field,
//! `?`). The crate has no `L`, `W` or `#`: for those the crate walks every day and a
//! [`DayRule`] here keeps the days that match, skipping whole days that do not.

use std::str::FromStr;

use chrono::{
    DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc, Weekday,
};
use chrono_tz::Tz;

use super::dst::Ascending;
use super::interval::Interval;
use super::ScheduleError;

const FIELD: &str = "schedule";
const MAX_LEN: usize = 300;
/// The `cron` crate's last year; AWS accepts up to 2199.
const LAST_ENGINE_YEAR: u32 = 2100;
const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];
const FORMS: &str = "cron(minutes hours day-of-month month day-of-week year), \
                     rate(N minutes|hours|days) or at(yyyy-mm-ddThh:mm:ss)";

fn err(message: impl Into<String>) -> ScheduleError {
    ScheduleError::new(FIELD, message)
}

/// A parsed EventBridge Scheduler expression.
#[derive(Debug, Clone)]
pub(super) enum Expression {
    Cron(Box<EbCron>),
    /// `rate(value unit)`: every `value` units in absolute time.
    Rate {
        every: Interval,
        value: u64,
        unit: &'static str,
    },
    /// `at(...)`: one fire time.
    At(DateTime<Utc>),
}

impl Expression {
    /// Parses `text`; `anchor` is the phase of a `rate(...)` (refused with the others).
    pub(super) fn parse(
        text: &str,
        anchor: Option<DateTime<FixedOffset>>,
        tz: Tz,
    ) -> Result<Self, ScheduleError> {
        if text.len() > MAX_LEN {
            return Err(err(format!(
                "expression is {} characters long, at most {MAX_LEN} are allowed",
                text.len()
            )));
        }
        let trimmed = text.trim();
        let (kind, inner) = match trimmed.split_once('(') {
            Some((kind, rest)) if rest.ends_with(')') => {
                (kind.trim(), rest[..rest.len() - 1].trim())
            }
            _ => return Err(not_an_expression(trimmed)),
        };
        let expr = match kind {
            "cron" => Expression::Cron(Box::new(EbCron::parse(inner, trimmed)?)),
            "rate" => parse_rate(inner, anchor, tz)?,
            "at" => Expression::At(parse_at(inner, tz)?),
            other if ["cron", "rate", "at"].contains(&other.to_ascii_lowercase().as_str()) => {
                return Err(err(format!(
                    "write {:?} in lower case, as AWS does: {}({inner})",
                    other,
                    other.to_ascii_lowercase()
                )))
            }
            _ => return Err(not_an_expression(trimmed)),
        };
        if anchor.is_some() && !matches!(expr, Expression::Rate { .. }) {
            return Err(ScheduleError::new(
                "anchor_date",
                "is only used with interval, rrule or rate(...) schedules; remove it",
            ));
        }
        Ok(expr)
    }

    /// Fire times strictly after `after`, ascending (finite for `at(...)`).
    pub(super) fn iter_after(
        &self,
        tz: Tz,
        after: DateTime<Utc>,
    ) -> Box<dyn Iterator<Item = DateTime<Utc>> + '_> {
        match self {
            Expression::Cron(cron) => Box::new(cron.iter_after(tz, after)),
            Expression::Rate { every, .. } => every.iter_after(tz, after),
            Expression::At(t) => Box::new((*t > after).then_some(*t).into_iter()),
        }
    }

    /// In words, without the time zone: "Every 5 minutes", "Once at 2027-01-01 09:00".
    pub(super) fn describe(&self, text: &str) -> String {
        match self {
            Expression::Cron(cron) => cron.describe(text),
            Expression::Rate { value: 1, unit, .. } => format!("Every {unit}"),
            Expression::Rate { value, unit, .. } => format!("Every {value} {unit}s"),
            Expression::At(_) => {
                let inner = text.trim().trim_start_matches("at(").trim_end_matches(')');
                format!("Once at {}", inner.trim().replacen('T', " ", 1))
            }
        }
    }
}

fn not_an_expression(text: &str) -> ScheduleError {
    let fields = text.split_whitespace().count();
    let hint = if text.starts_with('@') || fields == 5 {
        format!(
            "; {text:?} looks like POSIX cron: put it in `cron` (--cron) instead, \
             or write EventBridge cron with 6 fields, e.g. cron(0 12 ? * MON-FRI *)"
        )
    } else if fields == 6 {
        format!("; for EventBridge cron wrap it: cron({text})")
    } else {
        String::new()
    };
    err(format!(
        "{text:?} is not an EventBridge Scheduler expression: expected {FORMS}{hint}"
    ))
}

// ---- rate ----------------------------------------------------------------------------------

fn parse_rate(
    inner: &str,
    anchor: Option<DateTime<FixedOffset>>,
    tz: Tz,
) -> Result<Expression, ScheduleError> {
    let accepted = "AWS accepts rate(1 minute), rate(N minutes), rate(1 hour), rate(N hours), \
                    rate(1 day) and rate(N days) with N a whole number of at least 2";
    let mut words = inner.split_whitespace();
    let (Some(value), Some(unit), None) = (words.next(), words.next(), words.next()) else {
        return Err(err(format!(
            "rate({inner}) needs a value and a unit, e.g. rate(5 minutes): {accepted}"
        )));
    };
    let Some(value) = value
        .parse::<u64>()
        .ok()
        .filter(|v| *v >= 1 && value.bytes().all(|b| b.is_ascii_digit()))
    else {
        return Err(err(format!(
            "rate({inner}): {value:?} is not a whole number of at least 1; {accepted}"
        )));
    };
    let (singular, seconds): (&'static str, u64) = match unit.trim_end_matches('s') {
        "minute" => ("minute", 60),
        "hour" => ("hour", 3_600),
        "day" => ("day", 86_400),
        _ => {
            return Err(err(format!(
                "rate({inner}): unknown unit {unit:?}; {accepted}"
            )))
        }
    };
    let plural = unit.ends_with('s');
    if unit.ends_with("ss") || plural == (value == 1) {
        let right = if value == 1 {
            format!("rate(1 {singular})")
        } else {
            format!("rate({value} {singular}s)")
        };
        return Err(err(format!(
            "rate({inner}): write {right}; {accepted} (AWS refuses rate(1 minutes) and rate(5 minute))"
        )));
    }
    let secs = value
        .checked_mul(seconds)
        .filter(|s| *s <= super::interval::MAX_INTERVAL_SECS)
        .ok_or_else(|| {
            err(format!(
                "rate({inner}) is longer than 10 years; use a cron(...) schedule for rarer runs"
            ))
        })?;
    Ok(Expression::Rate {
        every: Interval::absolute(secs, anchor, tz),
        value,
        unit: singular,
    })
}

// ---- at ------------------------------------------------------------------------------------

fn parse_at(inner: &str, tz: Tz) -> Result<DateTime<Utc>, ScheduleError> {
    let wall = NaiveDateTime::parse_from_str(inner, "%Y-%m-%dT%H:%M:%S").map_err(|_| {
        err(format!(
            "at({inner}): expected a wall-clock time yyyy-mm-ddThh:mm:ss, e.g. \
             at(2027-01-01T09:00:00), without an offset (the time zone is `timezone`)"
        ))
    })?;
    // A repeated wall time fires once, at its first occurrence; a skipped one cannot fire.
    tz.from_local_datetime(&wall)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
        .ok_or_else(|| {
            err(format!(
                "at({inner}): {wall} does not exist in {tz} (the clocks spring forward over it); \
                 pick a time outside the gap"
            ))
        })
}

// ---- cron ----------------------------------------------------------------------------------

/// Which days a `cron(...)` fires on beyond what the `cron` crate evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DayRule {
    /// The crate's own day-of-month / day-of-week sets decide.
    Plain,
    /// `L` in day-of-month.
    LastDay,
    /// `LW` in day-of-month: the last Monday–Friday of the month.
    LastWeekday,
    /// `nW`: the Monday–Friday nearest to day n, within the month.
    NearestWeekday(u32),
    /// `nL` in day-of-week: the last such weekday of the month.
    LastOf(Weekday),
    /// `n#k`: the k-th such weekday of the month.
    Nth(Weekday, u32),
}

impl DayRule {
    fn matches(self, d: NaiveDate) -> bool {
        let last = last_day(d);
        match self {
            DayRule::Plain => true,
            DayRule::LastDay => d.day() == last,
            DayRule::LastWeekday => {
                let end = d.with_day(last).unwrap_or(d);
                let back = match end.weekday() {
                    Weekday::Sat => 1,
                    Weekday::Sun => 2,
                    _ => 0,
                };
                d.day() == last - back
            }
            DayRule::NearestWeekday(n) => {
                let Some(target) = d.with_day(n) else {
                    return false;
                };
                let day = match target.weekday() {
                    Weekday::Sat if n == 1 => 3,
                    Weekday::Sat => n - 1,
                    Weekday::Sun if n == last => n - 2,
                    Weekday::Sun => n + 1,
                    _ => n,
                };
                d.day() == day
            }
            DayRule::LastOf(w) => d.weekday() == w && d.day() + 7 > last,
            DayRule::Nth(w, k) => d.weekday() == w && (d.day() - 1) / 7 + 1 == k,
        }
    }
}

fn last_day(d: NaiveDate) -> u32 {
    (28..=31)
        .rev()
        .find(|n| d.with_day(*n).is_some())
        .unwrap_or(28)
}

/// A parsed `cron(...)`.
#[derive(Debug, Clone)]
pub(super) struct EbCron {
    engine: cron::Schedule,
    days: DayRule,
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    allowed: &'static str,
}

const MINUTES: FieldSpec = FieldSpec {
    name: "minutes",
    min: 0,
    max: 59,
    names: &[],
    allowed: "0-59",
};
const HOURS: FieldSpec = FieldSpec {
    name: "hours",
    min: 0,
    max: 23,
    names: &[],
    allowed: "0-23",
};
const DOM: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    allowed: "1-31, ?, L, LW or nW",
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
    allowed: "1-12 or JAN-DEC",
};
const DOW: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 1,
    max: 7,
    names: &DAYS,
    allowed: "1-7 with 1 = Sunday, SUN-SAT, ?, L, nL or n#k",
};
const YEAR: FieldSpec = FieldSpec {
    name: "year",
    min: 1970,
    max: 2199,
    names: &[],
    allowed: "1970-2199",
};

/// What a day field says.
enum Days {
    Any,
    Set(Vec<u32>),
    Rule(DayRule),
}

impl EbCron {
    fn parse(inner: &str, whole: &str) -> Result<Self, ScheduleError> {
        let fields: Vec<&str> = inner.split_whitespace().collect();
        if fields.len() != 6 {
            let hint = match fields.len() {
                5 => format!(
                    " — EventBridge cron has a year field and needs ? in day-of-month or \
                     day-of-week (e.g. cron(0 12 ? * MON-FRI *)); for 5-field POSIX cron \
                     ({inner}) use `cron` (--cron) instead"
                ),
                7 => " — EventBridge cron has no seconds field: drop the first one".to_string(),
                _ => String::new(),
            };
            return Err(err(format!(
                "{whole}: EventBridge cron has 6 fields (minutes hours day-of-month month \
                 day-of-week year), got {}{hint}",
                fields.len()
            )));
        }
        let field_err = |spec: &FieldSpec, text: &str, problem: String| {
            err(format!(
                "{whole}: invalid {} field {text:?}: {problem} (allowed: {}; syntax: *, n, a-b, \
                 */n, n/n, comma lists)",
                spec.name, spec.allowed
            ))
        };
        let plain = |spec: &FieldSpec, text: &str| {
            parse_list(text, spec).map_err(|p| field_err(spec, text, p))
        };
        let minutes = plain(&MINUTES, fields[0])?;
        let hours = plain(&HOURS, fields[1])?;
        let months = plain(&MONTH, fields[3])?;
        let years = plain(&YEAR, fields[5])?;
        let dom = parse_dom(fields[2]).map_err(|p| field_err(&DOM, fields[2], p))?;
        let dow = parse_dow(fields[4]).map_err(|p| field_err(&DOW, fields[4], p))?;
        let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        let (dom_text, dow_text, days) = match (dom, dow) {
            (Days::Any, Days::Any) => {
                return Err(err(format!(
                    "{whole}: ? is in both day-of-month and day-of-week; one of them must say \
                     which days, e.g. cron(0 12 * * ? *) for every day"
                )))
            }
            (Days::Any, Days::Set(d)) => ("?".to_string(), list(&d), DayRule::Plain),
            (Days::Set(d), Days::Any) => (list(&d), "?".to_string(), DayRule::Plain),
            (Days::Any, Days::Rule(r)) | (Days::Rule(r), Days::Any) => {
                ("*".to_string(), "?".to_string(), r)
            }
            _ => {
                return Err(err(format!(
                    "{whole}: EventBridge cron needs ? in exactly one of day-of-month and \
                     day-of-week (AWS cannot restrict both): e.g. cron(0 12 ? * MON-FRI *) for \
                     weekdays or cron(0 12 1 * ? *) for the 1st"
                )))
            }
        };
        let engine_years: Vec<u32> = years
            .iter()
            .copied()
            .filter(|y| *y <= LAST_ENGINE_YEAR)
            .collect();
        if engine_years.is_empty() {
            return Err(err(format!(
                "{whole}: fires only after {LAST_ENGINE_YEAR}; Ferry computes fire times up to \
                 the end of {LAST_ENGINE_YEAR}"
            )));
        }
        let text = format!(
            "0 {} {} {dom_text} {} {dow_text} {}",
            list(&minutes),
            list(&hours),
            list(&months),
            list(&engine_years)
        );
        let engine = cron::Schedule::from_str(&text)
            .map_err(|e| err(format!("{whole} was not accepted by the cron engine: {e}")))?;
        let parsed = EbCron { engine, days };
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or_default();
        if parsed.next_wall(epoch).is_none() {
            return Err(err(format!(
                "{whole} never fires: none of its months has any of its days (February has at \
                 most 29 days; April, June, September and November 30), or its years are past"
            )));
        }
        Ok(parsed)
    }

    /// The first matching wall-clock time strictly after `after`.
    fn next_wall(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut cursor = after.with_nanosecond(0)?;
        loop {
            let next = self.engine.after(&cursor.and_utc()).next()?.naive_utc();
            if self.days.matches(next.date()) {
                return Some(next);
            }
            // Not one of the rule's days: go on from that day's last second.
            cursor = next.date().and_hms_opt(23, 59, 59)?;
        }
    }

    /// Fire times strictly after `after`: wall-clock matches in `tz`, a skipped wall time
    /// skipped, a repeated one at its first occurrence only.
    fn iter_after(&self, tz: Tz, after: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut cursor = after.with_timezone(&tz).naive_local();
        Ascending::new(
            after,
            std::iter::from_fn(move || {
                let next = self.next_wall(cursor)?;
                cursor = next;
                Some(next)
            })
            .filter_map(move |wall| {
                tz.from_local_datetime(&wall)
                    .earliest()
                    .map(|t| t.with_timezone(&Utc))
            }),
        )
    }

    fn describe(&self, text: &str) -> String {
        let inner = text
            .trim()
            .trim_start_matches("cron(")
            .trim_end_matches(')')
            .trim();
        // croner describes Quartz syntax (1 = Sunday) given a seconds field.
        croner::parser::CronParser::builder()
            .seconds(croner::parser::Seconds::Required)
            .year(croner::parser::Year::Required)
            .alternative_weekdays(true)
            .build()
            .parse(&format!("0 {inner}"))
            .map(|c| c.describe().trim_end_matches('.').to_owned())
            .unwrap_or_else(|_| format!("cron({inner})"))
    }
}

/// A standard list field: `*`, `n`, `a-b` (wrapping past the maximum: hours `20-2`), `*/n`,
/// `a/n`, `a-b/n`, comma lists. Sorted, no duplicates.
fn parse_list(text: &str, spec: &FieldSpec) -> Result<Vec<u32>, String> {
    let mut out = Vec::new();
    for item in text.split(',') {
        if item.is_empty() {
            return Err("empty list element".into());
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step = step
                    .parse::<u32>()
                    .ok()
                    .filter(|s| *s >= 1 && step.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| format!("step {step:?} must be a whole number of at least 1"))?;
                (range, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (spec.min, spec.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, spec)?, value(b, spec)?)
        } else {
            let v = value(range, spec)?;
            // `5/15` starts at 5 and runs to the end of the field, as in AWS's `0/15`.
            (v, if step.is_some() { spec.max } else { v })
        };
        if lo > hi && spec.max == YEAR.max {
            return Err(format!("range {range:?} runs backwards; write it low-high"));
        }
        // A range past the maximum wraps around (`20-2` = 20..23 and 0..2).
        let width = spec.max - spec.min + 1;
        let len = (hi + width - lo) % width + 1;
        let step = step.unwrap_or(1) as usize;
        out.extend(
            (0..len)
                .step_by(step)
                .map(|i| spec.min + (lo - spec.min + i) % width),
        );
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

fn value(s: &str, spec: &FieldSpec) -> Result<u32, String> {
    if !s.is_empty() && s.len() <= 4 && s.bytes().all(|b| b.is_ascii_digit()) {
        let v: u32 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
        if spec.max == 7 && v == 0 {
            return Err(
                "0 is not a day: EventBridge day-of-week runs 1-7 with 1 = Sunday \
                        (write 1 or SUN for Sunday; 2-6 or MON-FRI for weekdays)"
                    .into(),
            );
        }
        if v < spec.min || v > spec.max {
            return Err(format!("{v} is out of range"));
        }
        return Ok(v);
    }
    if let Some(i) = spec.names.iter().position(|n| n.eq_ignore_ascii_case(s)) {
        return Ok(spec.min + i as u32);
    }
    if s.is_empty() {
        return Err("missing value".into());
    }
    if s == "?" {
        return Err("? is only allowed in day-of-month and day-of-week, alone".into());
    }
    if s.contains(['L', 'W', '#', 'l', 'w']) && (spec.name == DOM.name || spec.name == DOW.name) {
        return Err(format!(
            "{s:?}: L, W and # stand alone in the field (no lists or ranges)"
        ));
    }
    Err(format!("{s:?} is not a number or name"))
}

fn parse_dom(text: &str) -> Result<Days, String> {
    let upper = text.to_ascii_uppercase();
    Ok(match upper.as_str() {
        "?" => Days::Any,
        "L" => Days::Rule(DayRule::LastDay),
        "LW" => Days::Rule(DayRule::LastWeekday),
        _ => match upper.strip_suffix('W') {
            Some(n) if !n.contains([',', '-', '/', '*']) => {
                Days::Rule(DayRule::NearestWeekday(value(n, &DOM)?))
            }
            _ => Days::Set(parse_list(text, &DOM)?),
        },
    })
}

fn parse_dow(text: &str) -> Result<Days, String> {
    let upper = text.to_ascii_uppercase();
    let weekday = |s: &str| -> Result<Weekday, String> {
        let n = value(s, &DOW)?;
        Ok(Weekday::try_from((n as u8 + 5) % 7).unwrap_or(Weekday::Sun))
    };
    if upper == "?" {
        return Ok(Days::Any);
    }
    if upper == "L" {
        // The last day of the week: Saturday.
        return Ok(Days::Set(vec![7]));
    }
    if let Some((day, nth)) = upper.split_once('#') {
        if text.contains(',') {
            return Err("a # expression stands alone: AWS reads \"3#1,6#3\" as two \
                        expressions and refuses it"
                .into());
        }
        let k = nth
            .parse::<u32>()
            .ok()
            .filter(|k| (1..=5).contains(k))
            .ok_or_else(|| format!("in {text:?} the week number after # must be 1-5"))?;
        return Ok(Days::Rule(DayRule::Nth(weekday(day)?, k)));
    }
    if let Some(day) = upper.strip_suffix('L') {
        if !day.contains([',', '-', '/', '*']) {
            return Ok(Days::Rule(DayRule::LastOf(weekday(day)?)));
        }
    }
    Ok(Days::Set(parse_list(text, &DOW)?))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::schedule::test_support::*;

    fn eb(expr: &str, tz: &str) -> crate::schedule::Schedule {
        parse(json!({ "schedule": expr, "timezone": tz }))
    }

    // Calendar facts: 2026-06-01 is a Monday, 2026-06-05 a Friday; 2026-01-31, 02-28, 08-01,
    // 08-15 and 10-31 are Saturdays; 02-15, 03-15 and 05-31 Sundays; 2028-02-29 exists.

    /// The examples of AWS's "Cron expressions" table, with concrete fire times (UTC).
    #[test]
    fn aws_documented_cron_examples_fire_when_aws_says() {
        let table: &[(&str, &str, &[&str])] = &[
            // "Run at 10:00 am (UTC+0) every day"
            (
                "cron(0 10 * * ? *)",
                "2026-06-01T10:00:00Z",
                &["2026-06-02T10:00:00Z", "2026-06-03T10:00:00Z"],
            ),
            // "Run at 12:15 pm (UTC+0) every day"
            (
                "cron(15 12 * * ? *)",
                "2026-06-01T00:00:00Z",
                &["2026-06-01T12:15:00Z", "2026-06-02T12:15:00Z"],
            ),
            // "Run at 6:00 pm (UTC+0) every Monday through Friday": Friday evening -> Monday.
            (
                "cron(0 18 ? * MON-FRI *)",
                "2026-06-05T18:00:00Z",
                &[
                    "2026-06-08T18:00:00Z",
                    "2026-06-09T18:00:00Z",
                    "2026-06-10T18:00:00Z",
                    "2026-06-11T18:00:00Z",
                    "2026-06-12T18:00:00Z",
                    "2026-06-15T18:00:00Z",
                ],
            ),
            // "Run at 8:00 am (UTC+0) every 1st day of the month"
            (
                "cron(0 8 1 * ? *)",
                "2026-06-01T08:00:00Z",
                &["2026-07-01T08:00:00Z", "2026-08-01T08:00:00Z"],
            ),
            // "Run every 15 minutes"
            (
                "cron(0/15 * * * ? *)",
                "2026-06-01T10:07:00Z",
                &[
                    "2026-06-01T10:15:00Z",
                    "2026-06-01T10:30:00Z",
                    "2026-06-01T10:45:00Z",
                    "2026-06-01T11:00:00Z",
                ],
            ),
            // "Run every 10 minutes Monday through Friday": Friday's last, then Monday 00:00.
            (
                "cron(0/10 * ? * MON-FRI *)",
                "2026-06-05T23:45:00Z",
                &[
                    "2026-06-05T23:50:00Z",
                    "2026-06-08T00:00:00Z",
                    "2026-06-08T00:10:00Z",
                ],
            ),
            // "Run every 5 minutes Monday through Friday between 8:00 am and 5:55 pm (UTC+0)"
            (
                "cron(0/5 8-17 ? * MON-FRI *)",
                "2026-06-08T17:50:00Z",
                &[
                    "2026-06-08T17:55:00Z",
                    "2026-06-09T08:00:00Z",
                    "2026-06-09T08:05:00Z",
                ],
            ),
            (
                "cron(0/5 8-17 ? * MON-FRI *)",
                "2026-06-05T17:55:00Z",
                &["2026-06-08T08:00:00Z"],
            ),
            // "Run every 30 minutes Monday through Friday between 10:00 pm on the starting day
            // to 2:00 am on the following day": hours 20-2 wrap (20..23, 0..2) on weekdays.
            (
                "cron(0/30 20-2 ? * MON-FRI *)",
                "2026-06-05T01:45:00Z",
                &[
                    "2026-06-05T02:00:00Z",
                    "2026-06-05T02:30:00Z",
                    "2026-06-05T20:00:00Z",
                ],
            ),
            (
                "cron(0/30 20-2 ? * MON-FRI *)",
                "2026-06-05T23:15:00Z",
                &["2026-06-05T23:30:00Z", "2026-06-08T00:00:00Z"],
            ),
            // "Run at 9:00 a.m. (UTC+0) the first Monday of each month"
            (
                "cron(0 9 ? * 2#1 *)",
                "2026-06-01T09:00:00Z",
                &[
                    "2026-07-06T09:00:00Z",
                    "2026-08-03T09:00:00Z",
                    "2026-09-07T09:00:00Z",
                ],
            ),
            // "3#2 would be the second Tuesday of the month"
            (
                "cron(0 9 ? * 3#2 *)",
                "2026-06-01T00:00:00Z",
                &["2026-06-09T09:00:00Z", "2026-07-14T09:00:00Z"],
            ),
            // "L ... specifies the last day of the month": 2028 is a leap year.
            (
                "cron(0 0 L * ? *)",
                "2026-01-15T00:00:00Z",
                &[
                    "2026-01-31T00:00:00Z",
                    "2026-02-28T00:00:00Z",
                    "2026-03-31T00:00:00Z",
                    "2026-04-30T00:00:00Z",
                ],
            ),
            (
                "cron(0 0 L 2 ? *)",
                "2027-03-01T00:00:00Z",
                &["2028-02-29T00:00:00Z", "2029-02-28T00:00:00Z"],
            ),
            // "... or week": L in day-of-week is Saturday.
            (
                "cron(0 0 ? * L *)",
                "2026-06-01T00:00:00Z",
                &["2026-06-06T00:00:00Z", "2026-06-13T00:00:00Z"],
            ),
            // "3W specifies the weekday closest to the third day of the month"; 15W: Sunday
            // Feb 15 -> Monday 16, Saturday Aug 15 -> Friday 14, Monday Jun 15 itself.
            (
                "cron(0 9 15W * ? *)",
                "2026-02-01T00:00:00Z",
                &[
                    "2026-02-16T09:00:00Z",
                    "2026-03-16T09:00:00Z",
                    "2026-04-15T09:00:00Z",
                    "2026-05-15T09:00:00Z",
                    "2026-06-15T09:00:00Z",
                    "2026-07-15T09:00:00Z",
                    "2026-08-14T09:00:00Z",
                ],
            ),
            // 1W on Saturday Aug 1 moves forward to Monday 3 (not back into July).
            (
                "cron(0 9 1W * ? *)",
                "2026-07-02T00:00:00Z",
                &["2026-08-03T09:00:00Z", "2026-09-01T09:00:00Z"],
            ),
            // 31W on Sunday May 31 moves back to Friday 29; June has no 31st: no fire.
            (
                "cron(0 9 31W * ? *)",
                "2026-05-01T00:00:00Z",
                &["2026-05-29T09:00:00Z", "2026-07-31T09:00:00Z"],
            ),
            // LW: the last weekday of the month.
            (
                "cron(0 9 LW * ? *)",
                "2026-01-01T00:00:00Z",
                &[
                    "2026-01-30T09:00:00Z",
                    "2026-02-27T09:00:00Z",
                    "2026-03-31T09:00:00Z",
                    "2026-04-30T09:00:00Z",
                    "2026-05-29T09:00:00Z",
                ],
            ),
            // 6L: the last Friday of the month.
            (
                "cron(0 17 ? * 6L *)",
                "2026-01-01T00:00:00Z",
                &[
                    "2026-01-30T17:00:00Z",
                    "2026-02-27T17:00:00Z",
                    "2026-03-27T17:00:00Z",
                    "2026-04-24T17:00:00Z",
                ],
            ),
        ];
        for (expr, after, expected) in table {
            assert_fires(&eb(expr, "UTC"), after, expected);
        }
    }

    #[test]
    fn eventbridge_cron_numbers_sunday_1_names_years_and_ends() {
        let table: &[(&str, &str, &[&str])] = &[
            // 1 = Sunday, 2-6 = Monday-Friday, 7 = Saturday.
            (
                "cron(0 0 ? * 1 *)",
                "2026-06-01T00:00:00Z",
                &["2026-06-07T00:00:00Z", "2026-06-14T00:00:00Z"],
            ),
            (
                "cron(0 0 ? * 2-6 *)",
                "2026-06-05T12:00:00Z",
                &["2026-06-08T00:00:00Z", "2026-06-09T00:00:00Z"],
            ),
            (
                "cron(0 0 ? * 7 *)",
                "2026-06-01T00:00:00Z",
                &["2026-06-06T00:00:00Z"],
            ),
            // Names in their own fields, any case; Sundays in January and July.
            (
                "cron(30 6 ? jan,JUL sun *)",
                "2026-06-01T00:00:00Z",
                &[
                    "2026-07-05T06:30:00Z",
                    "2026-07-12T06:30:00Z",
                    "2026-07-19T06:30:00Z",
                    "2026-07-26T06:30:00Z",
                    "2027-01-03T06:30:00Z",
                ],
            ),
            // Ranges that wrap: FRI-MON is Friday to Monday.
            (
                "cron(0 0 ? * FRI-MON *)",
                "2026-06-01T00:00:00Z",
                &[
                    "2026-06-05T00:00:00Z",
                    "2026-06-06T00:00:00Z",
                    "2026-06-07T00:00:00Z",
                    "2026-06-08T00:00:00Z",
                    "2026-06-12T00:00:00Z",
                ],
            ),
            // `1/10` = 1, 11, 21, ... (AWS's own example); a list and a stepped range.
            (
                "cron(1/10 12 * * ? *)",
                "2026-06-01T12:30:00Z",
                &[
                    "2026-06-01T12:31:00Z",
                    "2026-06-01T12:41:00Z",
                    "2026-06-01T12:51:00Z",
                    "2026-06-02T12:01:00Z",
                ],
            ),
            (
                "cron(5,10-12 3 1-10/5 * ? *)",
                "2026-06-01T00:00:00Z",
                &[
                    "2026-06-01T03:05:00Z",
                    "2026-06-01T03:10:00Z",
                    "2026-06-01T03:11:00Z",
                    "2026-06-01T03:12:00Z",
                    "2026-06-06T03:05:00Z",
                ],
            ),
            // Sub-second `after` is still strictly after.
            (
                "cron(* * * * ? *)",
                "2026-06-01T10:00:00.500Z",
                &["2026-06-01T10:01:00Z"],
            ),
        ];
        for (expr, after, expected) in table {
            assert_fires(&eb(expr, "UTC"), after, expected);
        }
        // A year list ends the schedule.
        let s = eb("cron(0 9 1 1 ? 2027-2028)", "UTC");
        let all: Vec<_> = s.iter_after(at("2026-06-01T00:00:00Z")).collect();
        assert_eq!(
            all,
            [at("2027-01-01T09:00:00Z"), at("2028-01-01T09:00:00Z")]
        );
        assert_eq!(s.next_after(at("2028-01-01T09:00:00Z")), None);
        // The 31st every month: 30-day months are skipped, not moved.
        assert_fires(
            &eb("cron(0 0 31 * ? *)", "UTC"),
            "2026-06-01T00:00:00Z",
            &[
                "2026-07-31T00:00:00Z",
                "2026-08-31T00:00:00Z",
                "2026-10-31T00:00:00Z",
            ],
        );
    }

    #[test]
    fn eventbridge_cron_follows_the_wall_clock_of_its_time_zone() {
        assert_fires(
            &eb("cron(0 9 ? * MON-FRI *)", "America/New_York"),
            "2026-03-06T00:00:00Z",
            &["2026-03-06T09:00:00-05:00", "2026-03-09T09:00:00-04:00"],
        );
    }

    // Europe/Berlin 2026: 03-29 02:00 CET -> 03:00 CEST; 10-25 03:00 CEST -> 02:00 CET.

    #[test]
    fn eventbridge_cron_skips_a_wall_time_that_does_not_exist() {
        assert_fires(
            &eb("cron(30 2 * * ? *)", "Europe/Berlin"),
            "2026-03-27T12:00:00Z",
            &["2026-03-28T02:30:00+01:00", "2026-03-30T02:30:00+02:00"],
        );
        // An hourly job has no 02:00 that night; 03:00 CEST is the next hour.
        assert_fires(
            &eb("cron(0 * * * ? *)", "Europe/Berlin"),
            "2026-03-28T23:30:00Z",
            &[
                "2026-03-29T01:00:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T04:00:00+02:00",
            ],
        );
    }

    #[test]
    fn eventbridge_cron_fires_a_repeated_wall_time_once() {
        let s = eb("cron(30 2 * * ? *)", "Europe/Berlin");
        assert_fires(
            &s,
            "2026-10-23T12:00:00Z",
            &[
                "2026-10-24T02:30:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-26T02:30:00+01:00",
            ],
        );
        // From inside the repeated hour's second pass: not again that day.
        assert_fires(
            &s,
            "2026-10-25T02:10:00+01:00",
            &["2026-10-26T02:30:00+01:00"],
        );
        assert_fires(
            &eb("cron(0 * * * ? *)", "Europe/Berlin"),
            "2026-10-24T22:30:00Z",
            &[
                "2026-10-25T01:00:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T03:00:00+01:00",
            ],
        );
    }

    #[test]
    fn rate_steps_in_absolute_time_from_its_anchor() {
        // Default phase: 2020-01-01T00:00 in the zone, so every 5 minutes on :00, :05, ...
        assert_fires(
            &eb("rate(5 minutes)", "UTC"),
            "2026-06-01T10:07:00Z",
            &["2026-06-01T10:10:00Z", "2026-06-01T10:15:00Z"],
        );
        assert_fires(
            &eb("rate(1 minute)", "UTC"),
            "2026-06-01T10:07:30Z",
            &["2026-06-01T10:08:00Z", "2026-06-01T10:09:00Z"],
        );
        // Kolkata midnight is 18:30Z: hourly at :30 UTC.
        assert_fires(
            &eb("rate(1 hour)", "Asia/Kolkata"),
            "2026-06-01T10:00:00Z",
            &["2026-06-01T10:30:00Z", "2026-06-01T11:30:00Z"],
        );
        // anchor_date is the phase (AWS's StartDate); days are 24 hours, so across spring
        // forward a daily rate moves from 09:00 to 10:00 on the wall clock, as in AWS.
        let s = parse(json!({
            "schedule": "rate(1 day)", "anchor_date": "2026-03-27T09:00:00+01:00",
            "timezone": "Europe/Berlin"
        }));
        assert_fires(
            &s,
            "2026-03-27T09:00:00+01:00",
            &[
                "2026-03-28T09:00:00+01:00",
                "2026-03-29T10:00:00+02:00",
                "2026-03-30T10:00:00+02:00",
            ],
        );
        let s = parse(json!({
            "schedule": "rate(3 hours)", "anchor_date": "2026-01-01T01:00:00Z"
        }));
        assert_fires(
            &s,
            "2026-06-01T00:00:00Z",
            &["2026-06-01T01:00:00Z", "2026-06-01T04:00:00Z"],
        );
        assert_fires(
            &eb("rate(2 days)", "UTC"),
            "2026-01-01T00:00:00Z",
            &["2026-01-03T00:00:00Z", "2026-01-05T00:00:00Z"],
        );
    }

    #[test]
    fn at_fires_once_at_its_wall_time_and_then_never() {
        let s = eb("at(2027-01-01T09:00:00)", "Europe/Berlin");
        let all: Vec<_> = s.iter_after(at("2026-06-01T00:00:00Z")).collect();
        assert_eq!(all, [at("2027-01-01T09:00:00+01:00")]);
        assert_eq!(s.next_after(at("2027-01-01T08:00:00Z")), None);
        assert_eq!(s.next_after(at("2027-01-01T07:59:59Z")), Some(all[0]));
        // A repeated wall time: its first occurrence.
        assert_fires(
            &eb("at(2026-10-25T02:30:00)", "Europe/Berlin"),
            "2026-10-01T00:00:00Z",
            &["2026-10-25T02:30:00+02:00"],
        );
    }

    #[test]
    fn eventbridge_schedules_are_described_in_words() {
        let describe = |v: serde_json::Value| parse(v).describe();
        assert_eq!(
            describe(json!({"schedule": "rate(5 minutes)"})),
            "Every 5 minutes (UTC)"
        );
        assert_eq!(
            describe(json!({"schedule": "rate(1 day)", "timezone": "Europe/Berlin"})),
            "Every day (Europe/Berlin)"
        );
        assert_eq!(
            describe(json!({"schedule": "at(2027-01-01T09:00:00)", "active": false})),
            "Once at 2027-01-01 09:00:00 (UTC, inactive)"
        );
        let words = describe(json!({"schedule": "cron(0 12 ? * MON-FRI *)"}));
        assert!(words.contains("12:00"), "{words}");
        assert!(
            words.contains("Monday") && words.contains("Friday"),
            "{words}"
        );
        for (expr, want) in [
            (
                "cron(0 9 ? * 2#1 *)",
                "At 09:00, on the 1st Monday of the month (UTC)",
            ),
            (
                "cron(0 9 L * ? *)",
                "At 09:00, on the last day of the month (UTC)",
            ),
            (
                "cron(0 9 15W * ? *)",
                "At 09:00, on the weekday nearest day 15 (UTC)",
            ),
            (
                "cron(0 9 ? * 6L *)",
                "At 09:00, on the last Friday of the month (UTC)",
            ),
            // What croner cannot put in words (a wrapping range) is shown as written.
            (
                "cron(0/30 20-2 ? * MON-FRI *)",
                "cron(0/30 20-2 ? * MON-FRI *) (UTC)",
            ),
        ] {
            assert_eq!(describe(json!({ "schedule": expr })), want);
        }
    }

    #[test]
    fn eventbridge_errors_say_what_aws_accepts_and_how_to_fix_it() {
        assert_errors(&[
            // POSIX cron in an EventBridge wrapper.
            (
                json!({ "schedule": "cron(0 12 * * MON-FRI)" }),
                "schedule",
                "EventBridge cron has 6 fields (minutes hours day-of-month month day-of-week year), got 5",
            ),
            (
                json!({ "schedule": "cron(0 12 * * MON-FRI)" }),
                "schedule",
                "needs ? in day-of-month or day-of-week",
            ),
            (
                json!({ "schedule": "cron(0 12 * * MON-FRI)" }),
                "schedule",
                "use `cron` (--cron) instead",
            ),
            (
                json!({ "schedule": "cron(0 0 12 ? * MON-FRI *)" }),
                "schedule",
                "no seconds field",
            ),
            (
                json!({ "schedule": "cron(0 12 * * MON-FRI *)" }),
                "schedule",
                "needs ? in exactly one of day-of-month and day-of-week",
            ),
            (
                json!({ "schedule": "cron(0 12 ? * ? *)" }),
                "schedule",
                "? is in both day-of-month and day-of-week",
            ),
            (
                json!({ "schedule": "cron(0 12 ? * 0 *)" }),
                "schedule",
                "0 is not a day: EventBridge day-of-week runs 1-7 with 1 = Sunday",
            ),
            (
                json!({ "schedule": "cron(0 12 ? * 1-8 *)" }),
                "schedule",
                "8 is out of range",
            ),
            (
                json!({ "schedule": "cron(60 12 * * ? *)" }),
                "schedule",
                "invalid minutes field",
            ),
            (
                json!({ "schedule": "cron(0 0 L,15 * ? *)" }),
                "schedule",
                "stand alone",
            ),
            (
                json!({ "schedule": "cron(0 0 ? * 3#1,6#3 *)" }),
                "schedule",
                "a # expression stands alone",
            ),
            (
                json!({ "schedule": "cron(0 0 ? * 2#6 *)" }),
                "schedule",
                "must be 1-5",
            ),
            (
                json!({ "schedule": "cron(0 0 30 2 ? *)" }),
                "schedule",
                "never fires",
            ),
            (
                json!({ "schedule": "cron(0 0 1 1 ? 2150)" }),
                "schedule",
                "fires only after 2100",
            ),
            (
                json!({ "schedule": "cron(0 0 1 1 ? 2030-2020)" }),
                "schedule",
                "runs backwards",
            ),
            (
                json!({ "schedule": "cron(0 0 ? * MON ?)" }),
                "schedule",
                "? is only allowed in day-of-month and day-of-week",
            ),
            // Not wrapped, or a POSIX nickname.
            (
                json!({ "schedule": "0 12 * * *" }),
                "schedule",
                "looks like POSIX cron: put it in `cron` (--cron)",
            ),
            (
                json!({ "schedule": "@daily" }),
                "schedule",
                "looks like POSIX cron",
            ),
            (
                json!({ "schedule": "0 12 ? * MON-FRI *" }),
                "schedule",
                "wrap it: cron(0 12 ? * MON-FRI *)",
            ),
            (
                json!({ "schedule": "CRON(0 12 * * ? *)" }),
                "schedule",
                "in lower case",
            ),
            // rate: AWS's singular/plural rule, units, values.
            (
                json!({ "schedule": "rate(1 minutes)" }),
                "schedule",
                "write rate(1 minute); AWS accepts rate(1 minute), rate(N minutes)",
            ),
            (
                json!({ "schedule": "rate(5 minute)" }),
                "schedule",
                "write rate(5 minutes)",
            ),
            (
                json!({ "schedule": "rate(0 minutes)" }),
                "schedule",
                "not a whole number of at least 1",
            ),
            (
                json!({ "schedule": "rate(5 weeks)" }),
                "schedule",
                "unknown unit \"weeks\"",
            ),
            (
                json!({ "schedule": "rate(5)" }),
                "schedule",
                "needs a value and a unit",
            ),
            (
                json!({ "schedule": "rate(4000 days)" }),
                "schedule",
                "longer than 10 years",
            ),
            // at: format and the DST gap.
            (
                json!({ "schedule": "at(2027-01-01 09:00)" }),
                "schedule",
                "expected a wall-clock time yyyy-mm-ddThh:mm:ss",
            ),
            (
                json!({ "schedule": "at(2027-01-01T09:00:00Z)" }),
                "schedule",
                "without an offset",
            ),
            (
                json!({ "schedule": "at(2026-03-29T02:30:00)", "timezone": "Europe/Berlin" }),
                "schedule",
                "does not exist in Europe/Berlin",
            ),
            // anchor_date is a rate's phase only.
            (
                json!({ "schedule": "cron(0 12 * * ? *)", "anchor_date": "2026-01-01T00:00:00Z" }),
                "anchor_date",
                "only used with interval, rrule or rate(...)",
            ),
            (
                json!({ "schedule": "at(2027-01-01T09:00:00)", "anchor_date": "2026-01-01T00:00:00Z" }),
                "anchor_date",
                "only used with",
            ),
            (
                json!({ "schedule": "rate(5 minutes)", "cron": "* * * * *" }),
                "schedule",
                "exactly one of cron, interval, rrule or schedule is required, got cron and schedule",
            ),
        ]);
    }

    #[test]
    fn posix_cron_points_eventbridge_syntax_to_schedule() {
        assert_errors(&[
            (
                json!({ "cron": "0 12 ? * MON-FRI *" }),
                "cron",
                "if this is EventBridge cron (minutes hours day-of-month month day-of-week year, 1 = Sunday, ? in one day field), write it as --schedule 'cron(0 12 ? * MON-FRI *)'",
            ),
            (
                json!({ "cron": "cron(0 12 ? * MON-FRI *)" }),
                "cron",
                "is an EventBridge Scheduler expression, and `cron` takes 5-field POSIX cron: give it as the schedule instead (--schedule 'cron(0 12 ? * MON-FRI *)'",
            ),
            (
                json!({ "cron": "rate(5 minutes)" }),
                "cron",
                "--schedule 'rate(5 minutes)'",
            ),
            (
                json!({ "cron": "0 12 ? * MON" }),
                "cron",
                "they are EventBridge (Quartz) cron, which has 6 fields",
            ),
        ]);
    }
}
