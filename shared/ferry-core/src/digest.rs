//! Content addresses of code bundles: lowercase hex SHA-256, parsed once into [`BundleDigest`].

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::error::ValidationError;
use crate::ports::CodeStoreError;

/// A bundle's address: the SHA-256 of its bytes as 64 lowercase hex digits. Only
/// [`BundleDigest::parse`] and [`BundleDigest::of`] make one, so every holder is well-formed;
/// there is one rule for what a digest is, everywhere (API path, manifest, stores, agent).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct BundleDigest(String);

impl BundleDigest {
    /// `s` as a digest: exactly 64 lowercase hex digits (no trimming, no case folding).
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        let ok = s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !ok {
            return Err(ValidationError::new(
                "sha256",
                "must be the bundle's SHA-256 as 64 lowercase hex digits",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }

    /// `Ok` if `bytes` hash to this digest, else `DigestMismatch`.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), CodeStoreError> {
        let actual = Self::of(bytes);
        if actual != *self {
            return Err(CodeStoreError::DigestMismatch {
                expected: self.0.clone(),
                actual: actual.0,
            });
        }
        Ok(())
    }

    /// The 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BundleDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for BundleDigest {
    type Err = ValidationError;
    fn from_str(s: &str) -> Result<Self, ValidationError> {
        Self::parse(s)
    }
}

impl TryFrom<String> for BundleDigest {
    type Error = ValidationError;
    fn try_from(s: String) -> Result<Self, ValidationError> {
        Self::parse(&s)
    }
}

impl From<BundleDigest> for String {
    fn from(d: BundleDigest) -> String {
        d.0
    }
}

#[cfg(test)]
mod tests {
    use super::BundleDigest;

    #[test]
    fn a_digest_is_64_lowercase_hex_digits_and_nothing_else() {
        let d = BundleDigest::of(b"x");
        assert_eq!(BundleDigest::parse(d.as_str()).unwrap(), d);
        for bad in [
            d.as_str().to_uppercase(),
            d.as_str()[1..].to_owned(),
            format!(" {d}"),
            format!("{d}\n"),
        ] {
            let e = BundleDigest::parse(&bad).unwrap_err();
            assert_eq!(e.field, "sha256", "{bad:?}");
        }
        assert!(d.verify(b"x").is_ok());
        assert!(d.verify(b"y").is_err());
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(serde_json::from_str::<BundleDigest>(&json).unwrap(), d);
        assert!(serde_json::from_str::<BundleDigest>(r#""ABC""#).is_err());
    }
}
