//! Code-bundle use cases: upload (checked against its digest), upload target, read.

use ferry_core::digest::BundleDigest;
use ferry_core::ports::{CodeStoreError, UploadTarget};

use crate::{AppError, Ferry};

impl Ferry {
    /// Stores a bundle after checking its digest.
    pub async fn put_bundle(&self, sha256: &str, bytes: &[u8]) -> Result<(), AppError> {
        let digest = BundleDigest::parse(sha256)?;
        if bytes.len() > ferry_core::limits::MAX_BUNDLE_BYTES {
            return Err(AppError::invalid(
                "bundle",
                format!(
                    "{} bytes exceeds the {}-byte limit: add large files to .ferryignore",
                    bytes.len(),
                    ferry_core::limits::MAX_BUNDLE_BYTES
                ),
            ));
        }
        match self.code.put_bundle(&digest, bytes).await {
            Err(CodeStoreError::DigestMismatch { expected, actual }) => Err(AppError::invalid(
                "sha256",
                format!("the uploaded bytes hash to {actual}, not {expected}: the bundle was corrupted or the digest is wrong; rebuild with `ferry deployment build`"),
            )),
            other => Ok(other?),
        }
    }

    /// Where the client should upload bundle `sha256` itself (`None`: through the API).
    pub async fn bundle_upload_target(
        &self,
        sha256: &str,
    ) -> Result<Option<UploadTarget>, AppError> {
        let digest = BundleDigest::parse(sha256)?;
        Ok(self.code.upload_target(&digest).await?)
    }

    /// Whether a bundle is stored (a malformed digest names no bundle).
    pub async fn has_bundle(&self, sha256: &str) -> Result<bool, AppError> {
        match BundleDigest::parse(sha256) {
            Ok(digest) => Ok(self.code.has_bundle(&digest).await?),
            Err(_) => Ok(false),
        }
    }

    /// A bundle's bytes (a malformed digest names no bundle: not found).
    pub async fn get_bundle(&self, sha256: &str) -> Result<Vec<u8>, AppError> {
        let missing = || AppError::not_found("bundle", sha256);
        let Ok(digest) = BundleDigest::parse(sha256) else {
            return Err(missing());
        };
        self.code.get_bundle(&digest).await?.ok_or_else(missing)
    }

    /// Where an agent may download bundle `sha256` itself (a presigned URL), or `None`: from
    /// `GET /v1/bundles/{sha256}`.
    pub async fn bundle_download_url(&self, sha256: &str) -> Result<Option<String>, AppError> {
        let digest = BundleDigest::parse(sha256)?;
        Ok(self.code.download_url(&digest).await?)
    }
}
