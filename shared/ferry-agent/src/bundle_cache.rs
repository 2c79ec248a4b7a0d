use std::path::{Path, PathBuf};

use ferry_core::digest::BundleDigest;
use ferry_core::ports::CodeStoreError;

use crate::plane::{ControlPlane, PlaneError};

/// Why a run's bundle could not be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BundleCacheError {
    /// The deployment names no valid digest.
    #[error("the deployment's bundle digest is invalid")]
    Invalid(#[source] ferry_core::ValidationError),
    /// The code store failed.
    #[error("cannot fetch bundle {sha256}")]
    Fetch {
        sha256: String,
        #[source]
        source: PlaneError,
    },
    /// The code store does not hold it.
    #[error(
        "bundle {0} is not in the code store: rebuild the deployment with `ferry deployment build`"
    )]
    Missing(String),
    /// The bytes fetched do not hash to the digest.
    #[error("bundle {sha256} is corrupt")]
    Corrupt {
        sha256: String,
        #[source]
        source: CodeStoreError,
    },
}

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
    pub(crate) async fn get(
        &self,
        plane: &dyn ControlPlane,
        sha256: &str,
    ) -> Result<Vec<u8>, BundleCacheError> {
        let digest = BundleDigest::parse(sha256).map_err(BundleCacheError::Invalid)?;
        let path = self.dir.join(format!("{digest}.tar.gz"));
        if let Ok(bytes) = tokio::fs::read(&path).await {
            if digest.verify(&bytes).is_ok() {
                return Ok(bytes);
            }
            tracing::warn!(path = %path.display(), "cached bundle is corrupt; fetching it again");
        }
        let bytes = plane
            .bundle(&digest)
            .await
            .map_err(|source| BundleCacheError::Fetch {
                sha256: sha256.to_owned(),
                source,
            })?
            .ok_or_else(|| BundleCacheError::Missing(sha256.to_owned()))?;
        digest
            .verify(&bytes)
            .map_err(|source| BundleCacheError::Corrupt {
                sha256: sha256.to_owned(),
                source,
            })?;
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
