//! Concurrency slots: what a claim takes one holder of, at most `limit` holders at once.

use crate::ids::QueueName;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::DeploymentId;

/// The concurrency slot of a work queue or of a deployment. How a slot is keyed in storage is
/// each adapter's business; in a run's body it is `{"queue": "prod"}` or
/// `{"deployment": "etl/nightly"}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "StoredSlotKey")]
pub enum SlotKey {
    /// The slot of the work queue of this name.
    Queue(QueueName),
    /// The slot of this deployment.
    Deployment(DeploymentId),
}

impl fmt::Display for SlotKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotKey::Queue(q) => write!(f, "work queue {q}"),
            SlotKey::Deployment(d) => write!(f, "deployment {d}"),
        }
    }
}

/// What a run body may hold: the tagged form, or the `Q#<queue>` / `D#<flow/name>` strings
/// bodies written before slot keys were typed.
#[derive(Deserialize)]
#[serde(untagged)]
enum StoredSlotKey {
    Tagged(TaggedSlotKey),
    Legacy(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum TaggedSlotKey {
    Queue(QueueName),
    Deployment(DeploymentId),
}

impl TryFrom<StoredSlotKey> for SlotKey {
    type Error = String;
    fn try_from(v: StoredSlotKey) -> Result<Self, String> {
        match v {
            StoredSlotKey::Tagged(TaggedSlotKey::Queue(q)) => Ok(SlotKey::Queue(q)),
            StoredSlotKey::Tagged(TaggedSlotKey::Deployment(d)) => Ok(SlotKey::Deployment(d)),
            StoredSlotKey::Legacy(s) => match s.split_once('#') {
                Some(("Q", q)) => QueueName::try_from(q.to_owned()).map(SlotKey::Queue),
                Some(("D", d)) => d
                    .parse()
                    .map(SlotKey::Deployment)
                    .map_err(|e| e.to_string()),
                _ => Err(format!("{s:?} is not a slot key")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_keys_round_trip_and_legacy_strings_still_read() {
        let d = SlotKey::Deployment(DeploymentId::new("etl", "nightly").unwrap());
        let q = SlotKey::Queue(crate::testkit::queue("prod"));
        for k in [&d, &q] {
            let json = serde_json::to_string(k).unwrap();
            assert_eq!(&serde_json::from_str::<SlotKey>(&json).unwrap(), k);
        }
        assert_eq!(serde_json::to_string(&q).unwrap(), r#"{"queue":"prod"}"#);
        let legacy: Vec<SlotKey> = serde_json::from_str(r#"["Q#prod","D#etl/nightly"]"#).unwrap();
        assert_eq!(legacy, vec![q, d]);
        assert!(serde_json::from_str::<SlotKey>(r#""X#y""#).is_err());
    }
}
