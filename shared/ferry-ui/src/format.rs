//! What every page shares: the chrome (navigation, assets, sign-out), rendering a template
//! to an HTML answer, and how states, times and durations are written.

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use ferry_core::StateType;

use crate::assets;

/// The parts of the layout every page fills in (`templates/base.html`).
pub(crate) struct Chrome {
    /// The nav entry to highlight: "overview", "deployments", "runs", "work-queues".
    pub active: &'static str,
    /// Show "Sign out" (the server has a token, so there is a session).
    pub signed_in: bool,
    pub css: &'static str,
    pub js: &'static str,
}

impl Chrome {
    pub(crate) fn new(state: &crate::UiState, active: &'static str) -> Self {
        Self {
            active,
            signed_in: state.token.is_some(),
            ..Self::bare()
        }
    }

    /// No highlighted entry and no sign-out (error and sign-in pages).
    pub(crate) fn bare() -> Self {
        Self {
            active: "",
            signed_in: false,
            css: assets::css_url(),
            js: assets::js_url(),
        }
    }
}

/// `page` rendered as an HTML answer; a template that cannot render is a 500.
pub(crate) fn html(page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => Html(body).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a dashboard template failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "internal error: a page failed to render; see the server log",
            )
                .into_response()
        }
    }
}

/// "Completed", "Late", … as users read them.
pub(crate) fn state_label(s: StateType) -> &'static str {
    match s {
        StateType::Scheduled => "Scheduled",
        StateType::Late => "Late",
        StateType::Pending => "Pending",
        StateType::Running => "Running",
        StateType::Cancelling => "Cancelling",
        StateType::Completed => "Completed",
        StateType::Failed => "Failed",
        StateType::Crashed => "Crashed",
        StateType::Cancelled => "Cancelled",
    }
}

/// "2026-12-01 18:05:03 UTC".
pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// `t` on the wall clock of time zone `tz` (an IANA name; UTC when unknown):
/// "2026-12-02 09:00 CET" (with seconds when it has some: "18:34:20 UTC").
pub(crate) fn time_in(t: DateTime<Utc>, tz: &str) -> String {
    use chrono::Timelike;
    let fmt = if t.second() == 0 {
        "%Y-%m-%d %H:%M %Z"
    } else {
        "%Y-%m-%d %H:%M:%S %Z"
    };
    match tz.parse::<chrono_tz::Tz>() {
        Ok(z) => t.with_timezone(&z).format(fmt).to_string(),
        Err(_) => t.format(fmt).to_string(),
    }
}

/// `t` relative to `now`: "in 4m", "3h 2m ago", "now".
pub(crate) fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (t - now).num_seconds();
    if secs.abs() < 1 {
        return "now".into();
    }
    let span = duration_secs(secs.unsigned_abs());
    if secs > 0 {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// The run's duration so far or in all: "1m 05s"; empty before it started.
pub(crate) fn run_duration(
    started: Option<DateTime<Utc>>,
    ended: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> String {
    match started {
        Some(s) => {
            let ms = (ended.unwrap_or(now) - s).num_milliseconds().max(0);
            if ms < 10_000 {
                format!("{:.1}s", ms as f64 / 1000.0)
            } else {
                duration_secs((ms / 1000).unsigned_abs())
            }
        }
        None => String::new(),
    }
}

/// "45s", "4m 05s", "3h 02m", "2d 4h".
pub(crate) fn duration_secs(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s"),
        60..=3_599 => format!("{}m {:02}s", s / 60, s % 60),
        3_600..=86_399 => format!("{}h {:02}m", s / 3_600, (s % 3_600) / 60),
        _ => format!("{}d {}h", s / 86_400, (s % 86_400) / 3_600),
    }
}

/// A window's length: "15 minutes", "6 hours", "1h 06m".
pub(crate) fn span(secs: u64) -> String {
    let (h, m) = (secs / 3_600, (secs % 3_600) / 60);
    match (h, m) {
        (0, m) => format!("{} minutes", m.max(1)),
        (h, 0) => format!("{h} hour{}", if h == 1 { "" } else { "s" }),
        (h, m) => format!("{h}h {m:02}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_relative_times_read_as_people_write_them() {
        assert_eq!(duration_secs(45), "45s");
        assert_eq!(duration_secs(245), "4m 05s");
        assert_eq!(duration_secs(3 * 3600 + 125), "3h 02m");
        assert_eq!(duration_secs(2 * 86_400 + 4 * 3600), "2d 4h");
        let now = Utc::now();
        assert_eq!(
            relative(now + chrono::Duration::seconds(240), now),
            "in 4m 00s"
        );
        assert_eq!(
            relative(now - chrono::Duration::seconds(30), now),
            "30s ago"
        );
        assert_eq!(relative(now, now), "now");
        assert_eq!(span(900), "15 minutes");
        assert_eq!(span(6 * 3600), "6 hours");
        assert_eq!(span(3960), "1h 06m");
        let t = DateTime::parse_from_rfc3339("2026-12-02T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(time_in(t, "Europe/Berlin"), "2026-12-02 09:00 CET");
        assert_eq!(
            time_in(t + chrono::Duration::seconds(20), "UTC"),
            "2026-12-02 08:00:20 UTC"
        );
        assert_eq!(
            run_duration(Some(t), Some(t + chrono::Duration::milliseconds(1500)), now),
            "1.5s"
        );
        assert_eq!(run_duration(None, None, now), "");
    }
}
