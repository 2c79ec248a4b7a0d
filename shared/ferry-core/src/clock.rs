//! Time as a port: domain and application code never read the system clock directly.

use chrono::{DateTime, Utc};

/// Source of the current time.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> DateTime<Utc>;
}

/// A clock that tests move by hand (feature `testkit`).
#[cfg(any(test, feature = "testkit"))]
#[derive(Debug)]
pub struct MockClock(std::sync::Mutex<DateTime<Utc>>);

#[cfg(any(test, feature = "testkit"))]
impl MockClock {
    /// A clock frozen at `at`.
    pub fn at(at: DateTime<Utc>) -> Self {
        Self(std::sync::Mutex::new(at))
    }
    /// Moves the clock forward (or backward) by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        let mut t = self.0.lock().expect("mock clock poisoned");
        *t += by;
    }
    /// Sets the clock to `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.0.lock().expect("mock clock poisoned") = at;
    }
}

#[cfg(any(test, feature = "testkit"))]
impl Clock for MockClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().expect("mock clock poisoned")
    }
}
