use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use ferry_core::schedule::{Schedule, ScheduleSpec};

use crate::args::{ScheduleArgs, ScheduleCmd};
use crate::output;

/// The schedule the flags describe (`None` when no --cron/--interval/--rrule is given).
pub(crate) fn spec_from_args(a: &ScheduleArgs) -> Result<Option<ScheduleSpec>> {
    if a.cron.is_none() && a.interval.is_none() && a.rrule.is_none() && a.schedule.is_none() {
        if a.anchor_date.is_some() || a.timezone.is_some() {
            bail!(
                "--anchor-date/--timezone need a schedule: add --cron, --interval, --rrule or --schedule"
            );
        }
        return Ok(None);
    }
    let anchor_date = a
        .anchor_date
        .as_deref()
        .map(DateTime::parse_from_rfc3339)
        .transpose()
        .map_err(|e| {
            anyhow!("--anchor-date: not an RFC 3339 time like 2026-01-01T00:00:00Z ({e})")
        })?;
    if anchor_date.is_some() && a.cron.is_some() {
        bail!("--anchor-date: only --interval and --rrule schedules take an anchor");
    }
    let spec = ScheduleSpec {
        cron: a.cron.clone(),
        schedule: a.schedule.clone(),
        interval: a.interval,
        anchor_date,
        rrule: a.rrule.clone(),
        timezone: a.timezone.clone().unwrap_or_else(|| "UTC".into()),
        active: true,
    };
    Schedule::parse(&spec)
        .map_err(|e| anyhow!("--{}: {}", e.field.replace('_', "-"), e.message))?;
    Ok(Some(spec))
}

pub fn run(cmd: ScheduleCmd) -> Result<()> {
    let ScheduleCmd::Preview {
        schedule,
        after,
        count,
        out,
    } = cmd;
    let spec = spec_from_args(&schedule)?.context(
        "give a schedule: --cron EXPR, --interval DURATION (e.g. 3600, 1h), --rrule RULE or \
         --schedule 'cron(...)'|'rate(...)'|'at(...)'",
    )?;
    let parsed = Schedule::parse(&spec).map_err(|e| anyhow!("--{}: {}", e.field, e.message))?;
    let after = match after {
        None => Utc::now(),
        Some(s) => DateTime::parse_from_rfc3339(&s)
            .map_err(|e| anyhow!("--after: not an RFC 3339 time ({e})"))?
            .with_timezone(&Utc),
    };
    if count == 0 || count > 10_000 {
        bail!("--count: must be between 1 and 10000");
    }
    let tz = parsed.timezone();
    let times: Vec<String> = parsed
        .iter_after(after)
        .take(count)
        .map(|t| {
            t.with_timezone(&tz)
                .to_rfc3339_opts(SecondsFormat::Secs, false)
        })
        .collect();
    if times.len() < count {
        // A one-time at(...) or a cron(...) whose years end: say why the list is short.
        let last = times.last().map_or_else(
            || format!("after {}", after.to_rfc3339_opts(SecondsFormat::Secs, true)),
            |t| format!("after {t}"),
        );
        eprintln!("the schedule fires no more {last}");
    }
    if out.json {
        return output::json(&times);
    }
    for t in times {
        println!("{t}");
    }
    Ok(())
}
