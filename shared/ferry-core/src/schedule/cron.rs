//! Cron schedules: 5-field POSIX/Vixie expressions, validated here and rewritten into
//! croner's canonical form, evaluated on the wall clock of the schedule's time zone.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::dst::{resolve_local, Ascending};
use super::ScheduleError;

const MAX_CRON_LEN: usize = 200;

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub(super) struct CronSchedule(croner::Cron);

impl CronSchedule {
    /// Validates `expr`; errors name the field and say how to fix it.
    pub(super) fn parse(expr: &str) -> Result<Self, ScheduleError> {
        parse_cron(expr).map(Self)
    }

    /// Fire times strictly after `after`, ascending.
    pub(super) fn iter_after(
        &self,
        tz: Tz,
        after: DateTime<Utc>,
    ) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut cursor = after.with_timezone(&tz).naive_local();
        Ascending::new(
            after,
            std::iter::from_fn(move || {
                // Any croner error (search limit, year 5000) ends the schedule.
                let next = self.0.find_next_occurrence(&cursor, false).ok()?;
                cursor = next;
                Some(next)
            })
            .map_while(move |wall| resolve_local(tz, wall)),
        )
    }
}

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

/// The five fields a nickname such as `@daily` stands for.
fn nickname(text: &str) -> Option<&'static str> {
    Some(match text.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => return None,
    })
}

/// `expr` (valid) in English words, as croner describes it ("At 09:00, on Monday"); the
/// expression itself if croner cannot.
pub(super) fn describe(expr: &str) -> String {
    let trimmed = expr.trim();
    let fields = nickname(trimmed).unwrap_or(trimmed);
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Disallowed)
        .year(croner::parser::Year::Disallowed)
        .dom_and_dow(false)
        .build()
        .parse(fields)
        .map(|c| c.describe().trim_end_matches('.').to_owned())
        .unwrap_or_else(|_| trimmed.to_owned())
}

fn parse_cron(expr: &str) -> Result<croner::Cron, ScheduleError> {
    let err = |m: String| ScheduleError::new("cron", m);
    if expr.len() > MAX_CRON_LEN {
        return Err(err(format!(
            "expression is {} characters long, at most {MAX_CRON_LEN} are allowed",
            expr.len()
        )));
    }
    let trimmed = expr.trim();
    let lower = trimmed.to_ascii_lowercase();
    if ["cron(", "rate(", "at("]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        return Err(err(format!(
            "{trimmed:?} is an EventBridge Scheduler expression, and `cron` takes 5-field POSIX \
             cron: give it as the schedule instead (--schedule '{trimmed}', or \
             `schedule: \"{trimmed}\"` in a manifest)"
        )));
    }
    let expanded = if trimmed.starts_with('@') {
        match nickname(trimmed) {
            Some(fields) => fields,
            None if trimmed.eq_ignore_ascii_case("@reboot") => {
                return Err(err(format!(
                    "{trimmed:?} is not supported: Ferry schedules are time-based; use e.g. @daily or \"0 3 * * *\""
                )))
            }
            None => {
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
        let hint = if fields.len() == 6 {
            format!(
                " (seconds and year fields are not supported here; if this is EventBridge cron \
                 (minutes hours day-of-month month day-of-week year, 1 = Sunday, ? in one day \
                 field), write it as --schedule 'cron({expanded})', or `schedule: \"cron(...)\"` \
                 in a manifest)"
            )
        } else if fields.len() == 7 {
            " (seconds and year fields are not supported; drop them)".to_string()
        } else {
            String::new()
        };
        return Err(err(format!(
            "{CRON_FORMS}, got {} fields in {expr:?}{hint}",
            fields.len()
        )));
    }
    let mut sets = [0_u64; 5];
    for (i, (text, spec)) in fields.iter().zip(FIELDS.iter()).enumerate() {
        sets[i] = parse_field(text, spec).map_err(|problem| {
            let eventbridge = if problem.contains("non-standard") {
                " — they are EventBridge (Quartz) cron, which has 6 fields: \
                 --schedule 'cron(minutes hours day-of-month month day-of-week year)', \
                 e.g. cron(0 12 ? * MON-FRI *)"
            } else {
                ""
            };
            err(format!(
                "invalid {} field {text:?} in {expr:?}: {problem} (allowed: {}; syntax: *, n, a-b, */n, a-b/n, comma lists){eventbridge}",
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
            "{s:?} uses a non-standard extension (L, W, #, ?), which 5-field cron does not support"
        ));
    }
    Err(format!("{s:?} is not a number or name"))
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, LocalResult, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Timelike};
    use proptest::prelude::*;

    use super::{DOW_NAMES, MONTH_NAMES};
    use crate::schedule::test_support::*;
    use crate::schedule::{Schedule, ScheduleSpec};

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

    #[test]
    fn cron_errors_name_the_field_and_say_how_to_fix_it() {
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
        assert_errors(&[
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
        ]);
    }

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

    proptest! {
        #![proptest_config(crate::schedule::test_support::proptest_config())]

        /// In UTC (no DST) the schedule agrees with a brute-force calendar search.
        #[test]
        fn cron_agrees_with_a_calendar_search(e in expr(), after in instant()) {
            let text = e.text();
            let spec = ScheduleSpec {
                cron: Some(text.clone()), interval: None, anchor_date: None, rrule: None, schedule: None,
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
                cron: Some(text.clone()), interval: None, anchor_date: None, rrule: None, schedule: None,
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

    }
}
