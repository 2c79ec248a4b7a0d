//! Run results: what a `file.py:function` flow returned, recorded with its Complete transition
//! (inline on the run, or as an object in the code store keyed by the run id), and read back.
//! See docs/results.md.

use ferry_core::result::{self, Placement, RunResult};
use ferry_core::state::RunEvent;
use ferry_core::{Entrypoint, FlowRun, RunId, StateType};

use crate::{AppError, Ferry};

impl Ferry {
    /// Completes `run` (held, Running or Cancelling) with the value its flow returned: kept
    /// inline when small, else first stored in the code store and referenced — in the write of
    /// the Completed state either way. A value over [`result::MAX_RESULT_BYTES`] is not stored
    /// (the agent checks first and says so in the run's log). Safe to repeat: the object is
    /// keyed by the run and a second put replaces it.
    pub async fn complete(
        &self,
        run: FlowRun,
        value: Option<serde_json::Value>,
    ) -> Result<FlowRun, AppError> {
        let result = self.place_result(run.id, value).await?;
        self.finish(run, RunEvent::Complete { result }).await
    }

    /// [`Ferry::complete`] of run `id` by `agent`. Idempotent: a run `agent` no longer holds
    /// (finished by a first try whose answer was lost, or reaped) is returned as it is, and
    /// nothing is stored.
    pub async fn complete_held(
        &self,
        id: RunId,
        agent: &str,
        value: Option<serde_json::Value>,
    ) -> Result<FlowRun, AppError> {
        match self.held_by(id, agent).await? {
            (run, true) => self.complete(run, value).await,
            (run, false) => Ok(run),
        }
    }

    async fn place_result(
        &self,
        id: RunId,
        value: Option<serde_json::Value>,
    ) -> Result<Option<RunResult>, AppError> {
        let Some(value) = value else { return Ok(None) };
        Ok(match result::place(value) {
            Placement::Inline(value) => Some(RunResult::Inline { value }),
            Placement::Object { text, sha256 } => {
                let location = self.code.put_result(id, &text).await?;
                Some(RunResult::Stored {
                    location,
                    bytes: text.len() as u64,
                    sha256,
                })
            }
            Placement::TooLarge { bytes } => {
                tracing::warn!(run_id = %id, bytes, "result over the cap: not stored");
                None
            }
        })
    }

    /// The result of run `id`: the JSON value its flow returned. [`AppError::NoResult`] names
    /// why there is none (not finished, not Completed, an executable, nothing storable).
    pub async fn run_result(&self, id: RunId) -> Result<serde_json::Value, AppError> {
        self.result_of(&self.get_run(id).await?).await
    }

    /// [`Ferry::run_result`] of a run already read.
    pub async fn result_of(&self, run: &FlowRun) -> Result<serde_json::Value, AppError> {
        let id = run.id;
        match &run.result {
            Some(RunResult::Inline { value }) => Ok(value.clone()),
            Some(RunResult::Stored { sha256, bytes, .. }) => {
                let text = self.code.get_result(id).await?.ok_or_else(|| {
                    AppError::Internal(format!(
                        "the result object of run {id} ({bytes} bytes) is missing from the code store"
                    ))
                })?;
                if result::sha256_hex(&text) != *sha256 {
                    return Err(AppError::Internal(format!(
                        "the result object of run {id} does not match its sha256 {sha256}"
                    )));
                }
                serde_json::from_slice(&text).map_err(|e| {
                    AppError::Internal(format!("the result object of run {id} is not JSON: {e}"))
                })
            }
            None => {
                let python = if run.state == StateType::Completed {
                    self.store
                        .get_deployment(&run.deployment)
                        .await?
                        .map(|d| matches!(d.spec.entrypoint, Entrypoint::Python { .. }))
                } else {
                    None
                };
                Err(AppError::NoResult {
                    run: id,
                    why: result::why_none(run.state, python),
                })
            }
        }
    }
}
