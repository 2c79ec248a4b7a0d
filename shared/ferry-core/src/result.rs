//! Run results: the JSON value a `file.py:function` flow returned, recorded on its Completed
//! run — inline when small, as an object in the code store when larger, not at all past
//! [`MAX_RESULT_BYTES`]. See docs/results.md.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Largest result kept inline on the run (its canonical JSON text). A run is one DynamoDB item
/// (at most 400 KB) that also holds its parameters, history and state message, and every run
/// listing reads it: 16 KiB keeps a run item small while most results (a dict of counts, a few
/// ids) fit.
pub const MAX_INLINE_RESULT_BYTES: usize = 16 * 1024;

/// Largest result stored at all (its canonical JSON text): beyond it the run completes without
/// a result and its log says so. A Lambda answer (`GET /v1/flow-runs/{id}/result`) and a
/// Lambda request (the agent's finish through the API) are capped at 6 MB.
pub const MAX_RESULT_BYTES: usize = 4 * 1024 * 1024;

/// A Completed run's result: the value itself, or where it is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RunResult {
    /// At most [`MAX_INLINE_RESULT_BYTES`] of JSON, kept on the run.
    Inline {
        /// The value the flow returned (`null` for `None`).
        #[cfg_attr(feature = "openapi", schema(value_type = Value))]
        value: serde_json::Value,
    },
    /// An object in the code store, keyed by the run's id.
    Stored {
        /// Where it is (a file path under FERRY_HOME, or `s3://bucket/key`).
        location: String,
        /// Size of its JSON text.
        bytes: u64,
        /// SHA-256 of its JSON text (64 lowercase hex digits), checked when it is read.
        sha256: String,
    },
}

/// Where a result goes, decided by its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Inline on the run.
    Inline(serde_json::Value),
    /// An object of these bytes (the canonical JSON text) in the code store.
    Object {
        /// The JSON text to store.
        text: Vec<u8>,
        /// Its SHA-256, hex.
        sha256: String,
    },
    /// Over [`MAX_RESULT_BYTES`]: not stored.
    TooLarge {
        /// Size of its JSON text.
        bytes: usize,
    },
}

/// The canonical JSON text of a result: compact, object keys in sorted order (what every path
/// stores and serves, so a result reads back the same whichever agent path recorded it).
pub fn canonical(value: &serde_json::Value) -> Vec<u8> {
    // Serialising a `Value` cannot fail: its keys are strings and its numbers finite.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Where `value` goes: inline up to [`MAX_INLINE_RESULT_BYTES`], an object up to
/// [`MAX_RESULT_BYTES`], nowhere beyond.
pub fn place(value: serde_json::Value) -> Placement {
    let text = canonical(&value);
    if text.len() <= MAX_INLINE_RESULT_BYTES {
        Placement::Inline(value)
    } else if text.len() <= MAX_RESULT_BYTES {
        let sha256 = sha256_hex(&text);
        Placement::Object { text, sha256 }
    } else {
        Placement::TooLarge { bytes: text.len() }
    }
}

/// SHA-256 of `bytes`, 64 lowercase hex digits.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The log line of a result over the cap.
pub fn too_large_message(bytes: usize) -> String {
    format!(
        "ferry: the flow's return value is {bytes} bytes of JSON, over the {} MiB cap: no result stored",
        MAX_RESULT_BYTES / (1024 * 1024)
    )
}

/// Why a run has no result, for a user who asked for it: `state` is the run's, `python` whether
/// its deployment runs a `file.py:function` (`None`: the deployment is gone).
pub fn why_none(state: crate::state::StateType, python: Option<bool>) -> String {
    use crate::state::StateType;
    if !state.is_terminal() {
        return format!("it has not finished (it is {state}); ask again once it completed");
    }
    if state != StateType::Completed {
        return format!("it ended {state}: only a completed run has a result");
    }
    match python {
        Some(false) => "its flow is an executable, not a Python `file.py:function`: \
            only a Python flow's return value is stored"
            .into(),
        _ => format!(
            "its flow returned nothing Ferry could store: the return value was not \
             JSON-serialisable or over the {} MiB cap (the run's log says which)",
            MAX_RESULT_BYTES / (1024 * 1024)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_small_result_is_inline_a_larger_one_an_object_and_a_huge_one_not_stored() {
        assert_eq!(
            place(json!({"rows": 3})),
            Placement::Inline(json!({"rows": 3}))
        );
        assert_eq!(place(json!(null)), Placement::Inline(json!(null)));
        let edge = "x".repeat(MAX_INLINE_RESULT_BYTES - 2);
        assert!(matches!(place(json!(edge)), Placement::Inline(_)));
        let over = "x".repeat(MAX_INLINE_RESULT_BYTES - 1);
        match place(json!(over)) {
            Placement::Object { text, sha256 } => {
                assert_eq!(text.len(), MAX_INLINE_RESULT_BYTES + 1);
                assert_eq!(sha256, sha256_hex(&text));
            }
            other => panic!("expected an object, got {other:?}"),
        }
        let huge = "x".repeat(MAX_RESULT_BYTES - 1);
        assert_eq!(
            place(json!(huge)),
            Placement::TooLarge {
                bytes: MAX_RESULT_BYTES + 1
            }
        );
    }

    #[test]
    fn a_missing_result_names_why() {
        use crate::state::StateType;
        assert!(why_none(StateType::Running, Some(true)).contains("has not finished"));
        assert!(why_none(StateType::Failed, Some(true)).contains("ended failed"));
        assert!(why_none(StateType::Completed, Some(false)).contains("executable"));
        assert!(why_none(StateType::Completed, Some(true)).contains("not JSON-serialisable"));
    }

    #[test]
    fn a_result_reference_keeps_its_shape_through_json() {
        for r in [
            RunResult::Inline {
                value: json!([1, "two", {"three": 3.5}]),
            },
            RunResult::Stored {
                location: "s3://b/results/x.json".into(),
                bytes: 20_000,
                sha256: "ab".repeat(32),
            },
        ] {
            let text = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<RunResult>(&text).unwrap(), r);
        }
        assert_eq!(
            serde_json::to_value(RunResult::Inline { value: json!(1) }).unwrap(),
            json!({"kind": "inline", "value": 1})
        );
    }
}
