//! A run's result on the agent's side: the file the Python shim writes the flow's return value
//! to (`FERRY_RESULT_PATH`, see [`crate::process::PYTHON_SHIM`]), read once the process exited
//! 0 and sent to the control plane with the completion. See docs/results.md.

use std::path::PathBuf;

use ferry_core::ports::{LogLine, LogStream};
use ferry_core::result::{canonical, too_large_message, MAX_RESULT_BYTES};
use ferry_core::state::RunEvent;
use ferry_core::{Entrypoint, FlowRun};

use crate::plane::{ControlPlane, PlaneError};

/// The environment variable naming the result file.
pub(crate) const RESULT_PATH_ENV: &str = "FERRY_RESULT_PATH";

/// Where a run's flow writes its result: `<work_dir>/<run-id>.result.json`, beside (not in)
/// the run's work directory, which is removed before the finish. Removed when dropped. `None`
/// for an executable entrypoint: only a Python flow has a result.
pub(crate) struct ResultFile(Option<PathBuf>);

impl ResultFile {
    /// The result file of `run` under the agent's `work_dir` (created if missing, so the
    /// flow can write there), if `entry` is a Python flow.
    pub(crate) fn new(work_dir: &std::path::Path, run: &FlowRun, entry: &Entrypoint) -> Self {
        if !matches!(entry, Entrypoint::Python { .. }) {
            return Self(None);
        }
        if let Err(e) = std::fs::create_dir_all(work_dir) {
            tracing::warn!(dir = %work_dir.display(), error = %e, "cannot create the agent's work directory: the run's result cannot be written");
        }
        Self(Some(work_dir.join(format!("{}.result.json", run.id))))
    }

    /// The variable the flow's process gets (none for an executable).
    pub(crate) fn env(&self) -> Option<(String, String)> {
        let path = self.0.as_ref()?;
        Some((RESULT_PATH_ENV.into(), path.to_string_lossy().into_owned()))
    }

    /// What the flow wrote: `Ok(None)` when nothing (an executable, a value that was not
    /// JSON-serialisable), `Err` with the warning for the run's log when the file is over the
    /// cap or not JSON.
    async fn read(&self) -> Result<Option<serde_json::Value>, String> {
        let Some(path) = &self.0 else { return Ok(None) };
        let size = match tokio::fs::metadata(path).await {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "ferry: cannot read the flow's return value: {e}: no result stored"
                ))
            }
        };
        // The shim writes compact JSON, within a few bytes of the canonical text; far over
        // the cap it is not even read.
        if size > 2 * MAX_RESULT_BYTES as u64 {
            return Err(too_large_message(size as usize));
        }
        let text = tokio::fs::read(path).await.map_err(|e| {
            format!("ferry: cannot read the flow's return value: {e}: no result stored")
        })?;
        let value: serde_json::Value = serde_json::from_slice(&text).map_err(|e| {
            format!("ferry: the flow's return value is not valid JSON ({e}): no result stored")
        })?;
        let bytes = canonical(&value).len();
        if bytes > MAX_RESULT_BYTES {
            return Err(too_large_message(bytes));
        }
        Ok(Some(value))
    }
}

impl Drop for ResultFile {
    fn drop(&mut self) {
        let Some(path) = &self.0 else { return };
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove the run's result file")
            }
        }
    }
}

/// Records how `run` ended: a completion carries what the flow wrote to `file` (a warning in
/// the run's log when that cannot be stored, and the run completes without a result); any
/// other end is finished as it is.
pub(crate) async fn finish(
    plane: &dyn ControlPlane,
    run: &FlowRun,
    event: RunEvent,
    file: &ResultFile,
) -> Result<FlowRun, PlaneError> {
    if !matches!(event, RunEvent::Complete { .. }) {
        return plane.finish(run, event).await;
    }
    let value = match file.read().await {
        Ok(v) => v,
        Err(warning) => {
            tracing::warn!(%warning, "no result stored");
            let line = LogLine {
                at: plane.now(),
                stream: LogStream::Ferry,
                line: warning,
            };
            if let Err(e) = plane.append_logs(run, &[line]).await {
                tracing::warn!(error = %ferry_core::error::error_chain(&e), "cannot write the run log");
            }
            None
        }
    };
    plane.complete(run, value).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_in(dir: &std::path::Path) -> (ResultFile, PathBuf) {
        let path = dir.join("r.result.json");
        (ResultFile(Some(path.clone())), path)
    }

    #[tokio::test]
    async fn a_written_value_is_read_and_the_file_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (f, path) = file_in(dir.path());
        assert_eq!(f.read().await, Ok(None), "nothing written: no result");
        std::fs::write(&path, r#"{"rows":3,"name":"é"}"#).unwrap();
        assert_eq!(
            f.read().await,
            Ok(Some(serde_json::json!({"rows": 3, "name": "é"})))
        );
        std::fs::write(&path, "null").unwrap();
        assert_eq!(f.read().await, Ok(Some(serde_json::Value::Null)));
        drop(f);
        assert!(!path.exists());
    }

    #[tokio::test]
    async fn an_executable_gets_no_result_file() {
        let dir = tempfile::tempdir().unwrap();
        let run = ferry_core::testkit::scheduled_run(
            &ferry_core::DeploymentId::new("f", "d").unwrap(),
            "default",
            chrono::Utc::now(),
            chrono::Utc::now(),
        );
        let exe = Entrypoint::Executable {
            path: "run.sh".into(),
        };
        let f = ResultFile::new(dir.path(), &run, &exe);
        assert_eq!(f.env(), None);
        assert_eq!(f.read().await, Ok(None));
    }

    #[tokio::test]
    async fn a_value_over_the_cap_or_not_json_is_a_warning() {
        let dir = tempfile::tempdir().unwrap();
        let (f, path) = file_in(dir.path());
        std::fs::write(&path, "{not json").unwrap();
        assert!(f.read().await.unwrap_err().contains("not valid JSON"));
        let huge = serde_json::to_vec(&"x".repeat(MAX_RESULT_BYTES)).unwrap();
        std::fs::write(&path, huge).unwrap();
        let warning = f.read().await.unwrap_err();
        assert!(warning.contains("over the 4 MiB cap"), "{warning}");
    }
}
