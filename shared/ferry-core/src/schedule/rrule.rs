//! RRULE schedules: RFC 5545 recurrence rules expanded on the wall clock by the `rrule`
//! crate and resolved by the DST policy.

use std::str::FromStr;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Timelike, Utc};
use chrono_tz::Tz;

use super::dst::{resolve_local, Ascending};
use super::{default_anchor, ScheduleError};

const MAX_RRULE_LEN: usize = 4000;

/// An rrule schedule, expanded on the wall clock: the `rrule` crate sees wall-clock times
/// dressed as UTC (so it never applies DST itself), and each result is resolved in the
/// schedule's time zone by the DST policy.
#[derive(Debug, Clone)]
pub(super) struct RRuleSchedule {
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
    rule: ::rrule::RRule<::rrule::Unvalidated>,
    until: Option<DateTime<Utc>>,
    /// Wall-clock seconds in one period, when DTSTART may be moved by whole periods: no
    /// COUNT (which counts from the real start) and a fixed-length period (MINUTELY to
    /// WEEKLY). Moving by whole periods keeps the INTERVAL phase, the week alignment and
    /// the BYxxx defaults the crate derives from DTSTART (time of day, weekday).
    period_secs: Option<i64>,
}

impl RRuleSchedule {
    pub(super) fn parse(
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

    pub(super) fn iter_after(
        &self,
        tz: Tz,
        after: DateTime<Utc>,
    ) -> impl Iterator<Item = DateTime<Utc>> + '_ {
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
        let rule: ::rrule::RRule<::rrule::Unvalidated> = kept
            .join(";")
            .parse()
            .map_err(|e: ::rrule::RRuleError| format!("{e} in {body:?}"))?;
        if rule.get_interval() == 0 {
            return Err(format!("INTERVAL must be at least 1 in {body:?}"));
        }
        // Validate once against the real start, so errors surface at parse time.
        rule.clone()
            .validate(fake_utc(start))
            .map_err(|e| format!("{e} in {body:?}"))?;
        let unit = match rule.get_freq() {
            ::rrule::Frequency::Secondly => {
                return Err(format!(
                    "FREQ=SECONDLY is not supported in {body:?}; use an interval schedule for \
                     sub-minute periods"
                ))
            }
            ::rrule::Frequency::Minutely => Some(60),
            ::rrule::Frequency::Hourly => Some(3_600),
            ::rrule::Frequency::Daily => Some(86_400),
            ::rrule::Frequency::Weekly => Some(7 * 86_400),
            ::rrule::Frequency::Monthly | ::rrule::Frequency::Yearly => None,
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
fn fake_utc(wall: NaiveDateTime) -> DateTime<::rrule::Tz> {
    ::rrule::Tz::UTC.from_utc_datetime(&wall)
}

/// Wall-clock occurrences of one rule, expanded from a whole number of periods before
/// `local_after` when the rule allows it (see [`RuleLine::period_secs`]).
fn rule_walls(
    rule: &RuleLine,
    start: NaiveDateTime,
    local_after: NaiveDateTime,
) -> ::rrule::RRuleSetIter {
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
        Err(_) => ::rrule::RRuleSet::new(fake_utc(start)),
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
    use chrono::{DateTime, TimeDelta, Utc};
    use proptest::prelude::*;

    use crate::schedule::test_support::*;
    use crate::schedule::Schedule;

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

    #[test]
    fn rrule_errors_name_the_field_and_say_how_to_fix_it() {
        use serde_json::json;
        assert_errors(&[
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
        ]);
    }

    proptest! {
        #![proptest_config(crate::schedule::test_support::proptest_config())]

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
            let set: ::rrule::RRuleSet = format!("DTSTART:{dtstart}\nRRULE:{body}").parse().unwrap();
            let want = (&set).into_iter().map(|d| d.with_timezone(&Utc)).find(|d| *d > after);
            let s = rrule_in(&format!("DTSTART:{dtstart}\nRRULE:{body}"), "UTC");
            prop_assert_eq!(s.next_after(after), want, "{} after {}", body, after);
        }

    }
}
