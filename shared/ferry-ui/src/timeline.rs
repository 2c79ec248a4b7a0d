//! A timeline (Gantt) laid out in Rust and drawn as inline SVG: one row per deployment, one
//! bar per run from its start to its end (or now), a marker for a run that has only a time.
//! Positions are SVG attributes, so the page needs no inline style and no script.

use chrono::{DateTime, Duration, Utc};

/// Width of the label column, px.
const LABEL: f64 = 200.0;
/// Width of the time axis, px.
const CHART: f64 = 880.0;
const ROW: f64 = 22.0;
const BAR: f64 = 14.0;
const AXIS: f64 = 20.0;
/// Narrowest bar drawn (a run of a few seconds over hours stays visible), px.
const MIN_BAR: f64 = 3.0;
/// Rows drawn at most; the rest are counted in a last row.
const MAX_ROWS: usize = 30;

/// A run to place.
pub(crate) struct Bar {
    /// The row it goes in (a deployment).
    pub row: String,
    pub start: DateTime<Utc>,
    /// `None`: a point in time (an upcoming run), or a run still going when `start` <= now.
    pub end: Option<DateTime<Utc>>,
    /// CSS class: the state's name.
    pub class: &'static str,
    /// Tooltip.
    pub title: String,
    pub href: Option<String>,
}

pub(crate) struct Rect {
    pub x: String,
    pub y: String,
    pub w: String,
    pub h: String,
    pub class: &'static str,
    pub title: String,
    pub href: Option<String>,
}

pub(crate) struct Label {
    pub y: String,
    pub text: String,
}

pub(crate) struct Tick {
    pub x: String,
    pub label: String,
}

/// What the template draws.
pub(crate) struct Timeline {
    pub width: String,
    pub height: String,
    pub axis_y: String,
    pub labels: Vec<Label>,
    pub rects: Vec<Rect>,
    pub ticks: Vec<Tick>,
    /// Where "now" is, when inside the window.
    pub now_x: Option<String>,
    pub empty: bool,
}

fn px(v: f64) -> String {
    format!("{v:.1}")
}

/// A tick step that gives at most about 8 ticks over `span`.
fn tick_step(span: Duration) -> Duration {
    let steps = [
        1, 2, 5, 10, 15, 30, 60, 120, 300, 900, 1800, 3600, 7200, 10_800, 21_600, 43_200, 86_400,
    ];
    let secs = span.num_seconds().max(1);
    let step = steps.into_iter().find(|s| secs / s <= 8).unwrap_or(86_400);
    Duration::seconds(step)
}

/// How much time a timeline shows: from now to the farthest of `times` and a tenth more,
/// within [`min`, `max`] — so a few minutes of history is not squeezed into the edge of a
/// six-hour axis.
pub(crate) fn fit_span(
    now: DateTime<Utc>,
    times: impl IntoIterator<Item = DateTime<Utc>>,
    min: Duration,
    max: Duration,
) -> Duration {
    times
        .into_iter()
        .map(|t| (t - now).abs())
        .max()
        .map_or(min, |far| (far + far / 10).clamp(min, max))
}

impl Timeline {
    /// Lays `bars` out over [`lo`, `hi`] at time `now`; bars wholly outside are dropped, the
    /// rest clipped.
    pub(crate) fn new(
        lo: DateTime<Utc>,
        hi: DateTime<Utc>,
        now: DateTime<Utc>,
        bars: Vec<Bar>,
    ) -> Self {
        let span = (hi - lo).num_milliseconds().max(1) as f64;
        let x = |t: DateTime<Utc>| {
            LABEL + ((t - lo).num_milliseconds() as f64 / span).clamp(0.0, 1.0) * CHART
        };
        let mut rows: Vec<String> = Vec::new();
        let mut rects = Vec::new();
        for b in bars {
            let end = b.end.unwrap_or(if b.start <= now { now } else { b.start });
            if end < lo || b.start > hi {
                continue;
            }
            let row = match rows.iter().position(|r| *r == b.row) {
                Some(i) => i,
                None if rows.len() < MAX_ROWS => {
                    rows.push(b.row.clone());
                    rows.len() - 1
                }
                None => continue,
            };
            let (x0, x1) = (x(b.start), x(end));
            rects.push(Rect {
                x: px(x0),
                y: px(AXIS + row as f64 * ROW + (ROW - BAR) / 2.0),
                w: px((x1 - x0).max(MIN_BAR)),
                h: px(BAR),
                class: b.class,
                title: b.title,
                href: b.href,
            });
        }
        let step = tick_step(hi - lo);
        let step_ms = step.num_milliseconds();
        let first = lo.timestamp_millis().div_euclid(step_ms) * step_ms + step_ms;
        let ticks = (0..)
            .map(|i| first + i * step_ms)
            .take_while(|ms| *ms < hi.timestamp_millis())
            .filter_map(DateTime::<Utc>::from_timestamp_millis)
            .map(|t| Tick {
                x: px(x(t)),
                label: t
                    .format(if step_ms < 60_000 {
                        "%H:%M:%S"
                    } else {
                        "%H:%M"
                    })
                    .to_string(),
            })
            .collect();
        let height = AXIS + rows.len().max(1) as f64 * ROW;
        Timeline {
            width: px(LABEL + CHART),
            height: px(height),
            axis_y: px(AXIS - 6.0),
            labels: rows
                .into_iter()
                .enumerate()
                .map(|(i, text)| Label {
                    y: px(AXIS + i as f64 * ROW + ROW / 2.0 + 4.0),
                    text,
                })
                .collect(),
            empty: rects.is_empty(),
            rects,
            ticks,
            now_x: (lo..=hi).contains(&now).then(|| px(x(now))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(h: i64, m: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp(1_800_000_000 - 1_800_000_000 % 86_400, 0).unwrap()
            + Duration::hours(h)
            + Duration::minutes(m)
    }

    fn bar(row: &str, start: DateTime<Utc>, end: Option<DateTime<Utc>>) -> Bar {
        Bar {
            row: row.into(),
            start,
            end,
            class: "completed",
            title: String::new(),
            href: None,
        }
    }

    #[test]
    fn bars_are_placed_on_the_time_axis_in_rows_by_deployment() {
        let tl = Timeline::new(
            t(0, 0),
            t(6, 0),
            t(5, 0),
            vec![
                bar("a/x", t(1, 0), Some(t(2, 0))),
                bar("b/y", t(3, 0), None),           // running: to now
                bar("a/x", t(5, 59), Some(t(7, 0))), // clipped at the right edge
                bar("c/z", t(7, 0), Some(t(8, 0))),  // outside: dropped
            ],
        );
        assert_eq!(tl.labels.len(), 2, "rows: a/x and b/y");
        assert_eq!(tl.rects.len(), 3);
        // 1 h of 6 h is 1/6 of the axis.
        assert_eq!(tl.rects[0].x, px(LABEL + CHART / 6.0));
        assert_eq!(tl.rects[0].w, px(CHART / 6.0));
        assert_eq!(tl.rects[1].w, px(CHART * 2.0 / 6.0), "running until now");
        assert_eq!(tl.rects[2].y, tl.rects[0].y, "same deployment, same row");
        assert_eq!(tl.now_x, Some(px(LABEL + CHART * 5.0 / 6.0)));
        // Hourly ticks over 6 h: 01:00 … 05:00.
        assert_eq!(tl.ticks.len(), 5);
        assert_eq!(tl.ticks[0].label, "01:00");
    }

    #[test]
    fn the_span_fits_the_runs_within_its_bounds() {
        let (min, max) = (Duration::minutes(15), Duration::hours(6));
        let now = t(12, 0);
        assert_eq!(fit_span(now, [t(11, 0)], min, max), Duration::minutes(66));
        assert_eq!(fit_span(now, [t(11, 59)], min, max), min);
        assert_eq!(fit_span(now, [t(1, 0), t(11, 0)], min, max), max);
        assert_eq!(fit_span(now, [], min, max), min);
    }

    #[test]
    fn ticks_of_a_few_seconds_carry_seconds() {
        let lo = t(1, 0);
        let tl = Timeline::new(
            lo,
            lo + Duration::seconds(3),
            lo,
            vec![bar("a/x", lo, None)],
        );
        assert_eq!(tl.ticks.len(), 2, "every second, inside the window");
        assert_eq!(tl.ticks[0].label, "01:00:01");
    }

    #[test]
    fn a_short_run_stays_visible_and_upcoming_points_are_markers() {
        let tl = Timeline::new(
            t(0, 0),
            t(24, 0),
            t(0, 0),
            vec![
                bar("a/x", t(1, 0), Some(t(1, 0) + Duration::seconds(2))),
                bar("a/x", t(3, 0), None),
            ],
        );
        assert!(tl.rects.iter().all(|r| r.w == px(MIN_BAR)));
        assert!(!tl.empty);
    }
}
