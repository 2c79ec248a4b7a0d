use std::path::{Path, PathBuf};

use async_trait::async_trait;
use ferry_core::digest::{is_sha256_hex, verify};
use ferry_core::ports::{CodeStore, CodeStoreError};

/// Bundles as files `<root>/<sha[0..2]>/<sha>.tar.gz`, written atomically (temp file + rename).
#[derive(Debug, Clone)]
pub struct FsCodeStore {
    root: PathBuf,
}

impl FsCodeStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, sha256: &str) -> PathBuf {
        let prefix = sha256.get(..2).unwrap_or("xx");
        self.root.join(prefix).join(format!("{sha256}.tar.gz"))
    }
}

fn io(e: std::io::Error) -> CodeStoreError {
    CodeStoreError::Backend {
        source: Box::new(e),
    }
}

#[async_trait]
impl CodeStore for FsCodeStore {
    async fn put_bundle(&self, sha256: &str, bytes: &[u8]) -> Result<(), CodeStoreError> {
        verify(sha256, bytes)?;
        let path = self.path(sha256);
        if tokio::fs::try_exists(&path).await.map_err(io)? {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
        let tmp = dir.join(format!(".{sha256}.{}.tmp", std::process::id()));
        tokio::fs::write(&tmp, bytes).await.map_err(io)?;
        tokio::fs::rename(&tmp, &path).await.map_err(io)?;
        Ok(())
    }

    async fn get_bundle(&self, sha256: &str) -> Result<Option<Vec<u8>>, CodeStoreError> {
        if !is_sha256_hex(sha256) {
            return Ok(None);
        }
        match tokio::fs::read(self.path(sha256)).await {
            Ok(bytes) => {
                verify(sha256, &bytes)?;
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn has_bundle(&self, sha256: &str) -> Result<bool, CodeStoreError> {
        if !is_sha256_hex(sha256) {
            return Ok(false);
        }
        tokio::fs::try_exists(self.path(sha256)).await.map_err(io)
    }
}
