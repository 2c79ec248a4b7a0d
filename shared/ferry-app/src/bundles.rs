//! Code-bundle use cases: upload (checked against its digest), upload target, read.

use ferry_core::ports::{CodeStoreError, UploadTarget};
use ferry_core::ValidationError;

use crate::{AppError, Ferry};

impl Ferry {
    /// Stores a bundle after checking its digest.
    pub async fn put_bundle(&self, sha256: &str, bytes: &[u8]) -> Result<(), AppError> {
        if !ferry_core::digest::is_sha256_hex(sha256) {
            return Err(AppError::Invalid(ValidationError::new(
                "sha256",
                format!("{sha256:?} is not a lowercase hex sha256 (64 characters)"),
            )));
        }
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
        match self.code.put_bundle(sha256, bytes).await {
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
        if !ferry_core::digest::is_sha256_hex(sha256) {
            return Err(AppError::invalid(
                "sha256",
                format!("{sha256:?} is not a lowercase hex sha256 (64 characters)"),
            ));
        }
        Ok(self.code.upload_target(sha256).await?)
    }

    /// Whether a bundle is stored.
    pub async fn has_bundle(&self, sha256: &str) -> Result<bool, AppError> {
        Ok(self.code.has_bundle(sha256).await?)
    }

    /// A bundle's bytes.
    pub async fn get_bundle(&self, sha256: &str) -> Result<Vec<u8>, AppError> {
        self.code
            .get_bundle(sha256)
            .await?
            .ok_or_else(|| AppError::not_found("bundle", sha256))
    }
}
