use std::path::{Path, PathBuf};

use ferry_core::ports::CodeStore;

/// Bundles cached on the agent's disk by digest, verified on every use.
pub(crate) struct BundleCache {
    dir: PathBuf,
}

impl BundleCache {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    /// The bundle's bytes: from the cache if present and intact, else from the code store
    /// (then cached).
    pub(crate) async fn get(&self, code: &dyn CodeStore, sha256: &str) -> Result<Vec<u8>, String> {
        let path = self.dir.join(format!("{sha256}.tar.gz"));
        if let Ok(bytes) = tokio::fs::read(&path).await {
            if ferry_bundle::verify_digest(&bytes, sha256).is_ok() {
                return Ok(bytes);
            }
            tracing::warn!(path = %path.display(), "cached bundle is corrupt; fetching it again");
        }
        let bytes = code
            .get_bundle(sha256)
            .await
            .map_err(|e| format!("cannot fetch bundle {sha256}: {}", ferry_core::error::error_chain(&e)))?
            .ok_or_else(|| format!("bundle {sha256} is not in the code store: rebuild the deployment with `ferry deployment build`"))?;
        ferry_bundle::verify_digest(&bytes, sha256).map_err(|e| e.to_string())?;
        if let Err(e) = write_atomic(&self.dir, &path, &bytes).await {
            tracing::warn!(error = %e, "cannot cache bundle; continuing without the cache");
        }
        Ok(bytes)
    }
}

async fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        uuid::Uuid::new_v4(),
        std::process::id()
    ));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, path).await
}
