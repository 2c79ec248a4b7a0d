use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use ferry_core::digest::BundleDigest;
use ferry_core::ids::RunId;
use ferry_core::ports::{CodeStore, CodeStoreError};
use tokio::io::AsyncWriteExt;

/// Bundles as files `<root>/<sha[0..2]>/<sha>.tar.gz` and run results as
/// `<root>/results/<run-id>.json`, written atomically and durably (a temp file per upload,
/// fsync, rename, fsync of the directory).
#[derive(Debug, Clone)]
pub struct FsCodeStore {
    root: PathBuf,
}

impl FsCodeStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn path(&self, digest: &BundleDigest) -> PathBuf {
        let sha256 = digest.as_str();
        self.root
            .join(&sha256[..2])
            .join(format!("{sha256}.tar.gz"))
    }

    fn result_path(&self, run: RunId) -> PathBuf {
        self.root.join("results").join(format!("{run}.json"))
    }
}

/// Numbers the temp files of this process's uploads.
static NEXT_TEMP: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `tmp`, flushes them to disk, renames `tmp` to `path` and flushes the
/// directory, so an acknowledged upload survives a power loss.
async fn write_durably(tmp: &Path, bytes: &[u8], path: &Path) -> std::io::Result<()> {
    let mut f = tokio::fs::File::create(tmp).await?;
    f.write_all(bytes).await?;
    f.sync_all().await?;
    drop(f);
    tokio::fs::rename(tmp, path).await?;
    let dir = path.parent().unwrap_or(Path::new("."));
    tokio::fs::File::open(dir).await?.sync_all().await
}

fn io(e: std::io::Error) -> CodeStoreError {
    CodeStoreError::Backend {
        source: Box::new(e),
    }
}

#[async_trait]
impl CodeStore for FsCodeStore {
    async fn put_bundle(&self, digest: &BundleDigest, bytes: &[u8]) -> Result<(), CodeStoreError> {
        digest.verify(bytes)?;
        let path = self.path(digest);
        if tokio::fs::try_exists(&path).await.map_err(io)? {
            return Ok(());
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
        // Unique per upload: two uploads of the same bundle at once (one process or several)
        // each write their own temp file, and each rename atomically replaces the file with the
        // same bytes.
        let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{digest}.{}.{n}.tmp", std::process::id()));
        let written = write_durably(&tmp, bytes, &path).await;
        if written.is_err() {
            // The upload failed; its temp file is garbage whether or not it can be removed.
            tokio::fs::remove_file(&tmp).await.ok();
        }
        written.map_err(io)
    }

    async fn get_bundle(&self, digest: &BundleDigest) -> Result<Option<Vec<u8>>, CodeStoreError> {
        match tokio::fs::read(self.path(digest)).await {
            Ok(bytes) => {
                digest.verify(&bytes)?;
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    async fn has_bundle(&self, digest: &BundleDigest) -> Result<bool, CodeStoreError> {
        tokio::fs::try_exists(self.path(digest)).await.map_err(io)
    }

    async fn put_result(&self, run: RunId, json: &[u8]) -> Result<String, CodeStoreError> {
        let path = self.result_path(run);
        let dir = path.parent().unwrap_or(Path::new("."));
        tokio::fs::create_dir_all(dir).await.map_err(io)?;
        let n = NEXT_TEMP.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{run}.{}.{n}.tmp", std::process::id()));
        let written = write_durably(&tmp, json, &path).await;
        if written.is_err() {
            tokio::fs::remove_file(&tmp).await.ok();
        }
        written.map_err(io)?;
        Ok(path.display().to_string())
    }

    async fn get_result(&self, run: RunId) -> Result<Option<Vec<u8>>, CodeStoreError> {
        match tokio::fs::read(self.result_path(run)).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_uploads_of_the_same_bundle_all_succeed() {
        let dir = tempfile::tempdir().unwrap();
        // Large enough that writes overlap: one upload's rename can land mid-way through another.
        let bytes: Arc<Vec<u8>> = Arc::new((0..1 << 20).map(|i| (i % 251) as u8).collect());
        let sha256 = BundleDigest::of(&bytes);
        for round in 0..6 {
            let round_dir = dir.path().join(round.to_string());
            let store = Arc::new(FsCodeStore::new(&round_dir));
            let uploads: Vec<_> = (0..16)
                .map(|_| {
                    let (store, bytes, sha256) = (store.clone(), bytes.clone(), sha256.clone());
                    tokio::spawn(async move { store.put_bundle(&sha256, &bytes).await })
                })
                .collect();
            for (i, u) in uploads.into_iter().enumerate() {
                if let Err(e) = u.await.unwrap() {
                    panic!(
                        "round {round}: upload {i} failed: {}",
                        ferry_core::error::error_chain(&e)
                    );
                }
            }
            let stored = store.get_bundle(&sha256).await.unwrap().unwrap();
            assert!(stored == *bytes, "round {round}: stored bundle differs");
            let leftovers: Vec<_> = std::fs::read_dir(round_dir.join(&sha256.as_str()[..2]))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .filter(|n| n.to_string_lossy().ends_with(".tmp"))
                .collect();
            assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
        }
    }
}
