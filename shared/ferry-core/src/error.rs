//! Validation errors that name the offending field and say how to fix it.

/// Input rejected before anything is written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    /// The field at fault, as the user spells it (`schedules[0].cron`, `parameters`, `work_queue`).
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ValidationError {
    /// A new error for `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl From<crate::schedule::ScheduleError> for ValidationError {
    fn from(e: crate::schedule::ScheduleError) -> Self {
        Self::new(e.field, e.message)
    }
}

/// An error and its whole `source()` chain on one line, for logs and messages.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
