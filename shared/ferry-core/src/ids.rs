//! Identifiers: `flow/name` deployment ids and time-ordered run ids.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::error::ValidationError;

/// Checks a flow, deployment or queue name: 1–100 chars of `[A-Za-z0-9_.-]`, starting with a
/// letter or digit.
pub fn check_name(field: &str, value: &str) -> Result<(), ValidationError> {
    let ok_first = value
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if value.is_empty() || value.len() > 100 || !ok_first || !ok_rest {
        return Err(ValidationError::new(
            field,
            format!(
                "{value:?} is not a valid name: use 1-100 letters, digits, '-', '_' or '.', starting with a letter or digit"
            ),
        ));
    }
    Ok(())
}

/// A deployment's unique id, `flow/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeploymentId {
    flow: String,
    name: String,
}

impl DeploymentId {
    /// Builds and validates an id from its parts.
    pub fn new(flow: &str, name: &str) -> Result<Self, ValidationError> {
        check_name("flow", flow)?;
        check_name("name", name)?;
        Ok(Self {
            flow: flow.to_owned(),
            name: name.to_owned(),
        })
    }
    /// The flow part.
    pub fn flow(&self) -> &str {
        &self.flow
    }
    /// The deployment name part.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Display for DeploymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.flow, self.name)
    }
}

impl FromStr for DeploymentId {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (flow, name) = s.split_once('/').ok_or_else(|| {
            ValidationError::new(
                "deployment",
                format!("{s:?} is not FLOW/NAME (e.g. \"etl/nightly\")"),
            )
        })?;
        Self::new(flow, name)
    }
}

impl TryFrom<String> for DeploymentId {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DeploymentId> for String {
    fn from(id: DeploymentId) -> Self {
        id.to_string()
    }
}

/// A work queue's name, checked by [`check_name`]; only [`QueueName::parse`] makes one (and
/// deserialising, which parses). Reads as a `&str` wherever one is wanted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct QueueName(String);

impl QueueName {
    /// `s` as a queue name; the error names `field` (`work_queue`, `--work-queue`, `name`).
    pub fn parse(field: &str, s: &str) -> Result<Self, ValidationError> {
        check_name(field, s)?;
        Ok(Self(s.to_owned()))
    }

    /// `default`.
    pub fn default_queue() -> Self {
        Self(crate::queue::DEFAULT_QUEUE.to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for QueueName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for QueueName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for QueueName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for QueueName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for QueueName {
    /// The reason alone: the deserialiser names the field.
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        check_name("work_queue", &s).map_err(|e| e.message)?;
        Ok(Self(s))
    }
}

impl From<QueueName> for String {
    fn from(q: QueueName) -> String {
        q.0
    }
}

/// A flow run id: a UUID whose first 48 bits are a millisecond timestamp, so ids sort by time.
///
/// Scheduled runs get a *deterministic* id from deployment + scheduled time (UUIDv8 layout), so
/// two ticks racing to schedule the same slot write the same row once. Ad-hoc runs get a UUIDv7
/// from their scheduled time and caller-supplied randomness. Either way the first 48 bits are
/// the scheduled time, which is how a [`RunIdPrefix`] is found by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(Uuid);

impl RunId {
    /// The deterministic id of the run `deployment` has scheduled at `at`.
    pub fn scheduled(deployment: &DeploymentId, at: DateTime<Utc>) -> Self {
        Self::derived(
            at,
            &format!("schedule\0{deployment}\0{}", at.timestamp_millis()),
        )
    }

    /// The deterministic id of attempt `attempt` retrying `of`, due at `at`.
    pub fn retry(of: RunId, attempt: u32, at: DateTime<Utc>) -> Self {
        Self::derived(at, &format!("retry\0{of}\0{attempt}"))
    }

    /// A fresh id for an ad-hoc run scheduled at `now`; `random` is caller-supplied entropy.
    pub fn adhoc(now: DateTime<Utc>, random: [u8; 10]) -> Self {
        let ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        Self(uuid::Builder::from_unix_timestamp_millis(ms, &random).into_uuid())
    }

    fn derived(at: DateTime<Utc>, key: &str) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        let mut bytes = [0u8; 16];
        let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
        bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
        bytes[6..].copy_from_slice(&digest[..10]);
        Self(uuid::Builder::from_custom_bytes(bytes).into_uuid())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for RunId {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self).map_err(|_| {
            ValidationError::new("run_id", format!("{s:?} is not a flow run id (a UUID)"))
        })
    }
}

/// The start of a run id as a user types it (`0193f2a4`, `0193f2a4-5b6c`): at least
/// [`RunIdPrefix::MIN_LEN`] hex digits, hyphens optional, case-insensitive. A run id's first 12
/// hex digits are the run's scheduled time in milliseconds, so a prefix names a time window
/// ([`RunIdPrefix::time_window_ms`]) that stores look up by index instead of scanning every id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunIdPrefix {
    /// The prefix in the canonical hyphenated lowercase form of a run id.
    canonical: String,
    /// Its hex digits only.
    hex: String,
}

impl RunIdPrefix {
    /// The fewest hex digits a prefix may have.
    pub const MIN_LEN: usize = 4;

    /// Parses a prefix; `field` names the argument in the error.
    pub fn parse(field: &str, text: &str) -> Result<Self, ValidationError> {
        let hex: String = text
            .chars()
            .filter(|c| *c != '-')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        if let Some(bad) = hex.chars().find(|c| !c.is_ascii_hexdigit()) {
            return Err(ValidationError::new(
                field,
                format!("{text:?} is not a flow run id or the start of one ({bad:?} is not a hex digit)"),
            ));
        }
        if hex.len() < Self::MIN_LEN {
            return Err(ValidationError::new(
                field,
                format!(
                    "{text:?} is too short to name a flow run: give at least {} characters of its id (see `ferry flow-run ls`)",
                    Self::MIN_LEN
                ),
            ));
        }
        if hex.len() > 32 {
            return Err(ValidationError::new(
                field,
                format!("{text:?} is longer than a flow run id (32 hex digits)"),
            ));
        }
        let mut canonical = String::with_capacity(36);
        for (i, c) in hex.chars().enumerate() {
            if matches!(i, 8 | 12 | 16 | 20) {
                canonical.push('-');
            }
            canonical.push(c);
        }
        Ok(Self { canonical, hex })
    }

    /// The prefix as run ids are written (lowercase, hyphenated).
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// Whether `id` starts with this prefix.
    pub fn matches(&self, id: RunId) -> bool {
        id.to_string().starts_with(&self.canonical)
    }

    /// The first and last millisecond (Unix) a run id with this prefix can carry in its first
    /// 48 bits: its scheduled time.
    pub fn time_window_ms(&self) -> (i64, i64) {
        let digits = self.hex.len().min(12);
        let value = i64::from_str_radix(&self.hex[..digits], 16).unwrap_or(0);
        let free_bits = 4 * (12 - digits) as u32;
        let lo = value << free_bits;
        (lo, lo + (1i64 << free_bits) - 1)
    }
}

impl fmt::Display for RunIdPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

#[cfg(test)]
mod queue_name_tests {
    use super::QueueName;

    #[test]
    fn a_queue_name_is_parsed_once_and_reads_as_a_str() {
        let q = QueueName::parse("work_queue", "prio-1").unwrap();
        assert_eq!(q, "prio-1");
        assert_eq!(&*q, "prio-1");
        let e = QueueName::parse("--work-queue", "bad name").unwrap_err();
        assert_eq!(e.field, "--work-queue");
        let json = serde_json::to_string(&q).unwrap();
        assert_eq!(json, r#""prio-1""#);
        assert_eq!(serde_json::from_str::<QueueName>(&json).unwrap(), q);
        let e = serde_json::from_str::<QueueName>(r#""../etc""#).unwrap_err();
        assert!(e.to_string().contains("not a valid name"), "{e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn scheduled_ids_are_deterministic_and_time_ordered() {
        let d = DeploymentId::new("etl", "nightly").unwrap();
        let t1 = Utc.with_ymd_and_hms(2026, 1, 1, 2, 0, 0).unwrap();
        let t2 = Utc.with_ymd_and_hms(2026, 1, 2, 2, 0, 0).unwrap();
        assert_eq!(RunId::scheduled(&d, t1), RunId::scheduled(&d, t1));
        assert!(RunId::scheduled(&d, t1) < RunId::scheduled(&d, t2));
        let other = DeploymentId::new("etl", "hourly").unwrap();
        assert_ne!(RunId::scheduled(&d, t1), RunId::scheduled(&other, t1));
        let id = RunId::scheduled(&d, t1);
        assert_eq!(id.to_string().parse::<RunId>().unwrap(), id);
    }

    #[test]
    fn names_are_validated() {
        assert!(DeploymentId::new("etl", "nightly").is_ok());
        assert!("etl/nightly".parse::<DeploymentId>().is_ok());
        let err = "etl".parse::<DeploymentId>().unwrap_err();
        assert_eq!(err.field, "deployment");
        assert_eq!(DeploymentId::new("", "x").unwrap_err().field, "flow");
        assert_eq!(DeploymentId::new("a", "b c").unwrap_err().field, "name");
        assert!(check_name("queue", "-x").is_err());
    }
}

#[cfg(test)]
mod prefix_tests {
    use super::*;

    #[test]
    fn a_prefix_names_the_time_window_its_ids_were_scheduled_in() {
        let d = DeploymentId::new("etl", "hourly").unwrap();
        let at = DateTime::parse_from_rfc3339("2026-03-01T10:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        let id = RunId::scheduled(&d, at);
        let text = id.to_string();
        for len in [4, 8, 13, 20, 36] {
            let p = RunIdPrefix::parse("id", &text[..len]).unwrap();
            assert!(p.matches(id), "{len}");
            let (lo, hi) = p.time_window_ms();
            assert!(
                lo <= at.timestamp_millis() && at.timestamp_millis() <= hi,
                "{len}"
            );
        }
        let exact = RunIdPrefix::parse("id", &text[..14]).unwrap();
        assert_eq!(
            exact.time_window_ms(),
            (at.timestamp_millis(), at.timestamp_millis())
        );
        let unhyphenated =
            RunIdPrefix::parse("id", &text.replace('-', "").to_uppercase()[..16]).unwrap();
        assert_eq!(unhyphenated.as_str(), &text[..18]);
    }

    #[test]
    fn a_prefix_too_short_or_not_hex_is_refused_naming_the_minimum() {
        let e = RunIdPrefix::parse("id", "019").unwrap_err();
        assert!(e.message.contains("at least 4"), "{e}");
        let e = RunIdPrefix::parse("id", "01zz").unwrap_err();
        assert!(e.message.contains("'z'"), "{e}");
    }
}
