//! The run lifecycle's side of warm starts ([`crate::warm`]): which runs start warm, where
//! their code comes from, and the line their log gets.

use std::path::Path;
use std::sync::Arc;

use ferry_core::deployment::{Deployment, Entrypoint};
use ferry_core::FlowRun;

use crate::lifecycle::RunContext;
use crate::process::Started;
use crate::warm::{WarmCode, WarmKey, WarmPool};

/// A run that starts warm: the pool and its key.
pub(crate) struct Plan {
    pool: Arc<WarmPool>,
    key: WarmKey,
}

/// A forked run and the line that says so in its log.
pub(crate) struct Fork {
    pub started: Started,
    pub note: String,
}

/// The plan of a run of `deployment` if it starts warm: the deployment asks for it, its
/// entrypoint is a Python function, and this agent keeps warm processes.
pub(crate) fn plan(ctx: &RunContext, deployment: &Deployment, python: &str) -> Option<Plan> {
    if !deployment.spec.warm {
        return None;
    }
    let pool = ctx.warm.clone()?;
    let Entrypoint::Python { path, function } = &deployment.spec.entrypoint else {
        return None;
    };
    let key = match &deployment.spec.bundle {
        Some(b) => WarmKey {
            python: python.to_owned(),
            code: format!("sha256:{}", b.sha256),
            path: path.clone(),
            function: function.clone(),
        },
        None => WarmKey::for_dir(python, &here(), path, function),
    };
    Some(Plan { pool, key })
}

fn here() -> std::path::PathBuf {
    std::env::current_dir().unwrap_or_else(|_| ".".into())
}

impl Plan {
    /// Makes sure the warm process is up; `Err` is why the run starts cold.
    pub(crate) async fn prepare(
        &self,
        ctx: &RunContext,
        deployment: &Deployment,
    ) -> Result<(), String> {
        let code = code(ctx, deployment);
        self.pool
            .prepare(&deployment.id.to_string(), &self.key, code)
            .await
    }

    /// Forks the run, its FIFOs in `run_dir` (created); `Err` is why it starts cold.
    pub(crate) async fn fork(
        &self,
        ctx: &RunContext,
        deployment: &Deployment,
        run: &FlowRun,
        run_dir: &Path,
        env: &[(String, String)],
    ) -> Result<Fork, String> {
        tokio::fs::create_dir_all(run_dir)
            .await
            .map_err(|e| format!("cannot create {}: {e}", run_dir.display()))?;
        let code = code(ctx, deployment);
        let f = self
            .pool
            .fork(
                &deployment.id.to_string(),
                &self.key,
                code,
                &run.id.to_string(),
                run_dir,
                env,
            )
            .await?;
        let note = format!(
            "warm start: forked from warm process {} (its run {}, {} MiB resident)",
            f.server_pid,
            f.nth,
            f.rss_kb.div_ceil(1024)
        );
        Ok(Fork {
            started: f.started,
            note,
        })
    }
}

/// The code a warm process for `deployment` is started from (read only when one starts).
async fn code(ctx: &RunContext, deployment: &Deployment) -> Result<WarmCode, String> {
    match &deployment.spec.bundle {
        Some(b) => ctx
            .cache
            .get(ctx.plane.as_ref(), &b.sha256)
            .await
            .map(WarmCode::Bundle)
            .map_err(|e| ferry_core::error::error_chain(&e)),
        None => Ok(WarmCode::Dir(here())),
    }
}
