//! Content addresses of code bundles: lowercase hex SHA-256.

use sha2::{Digest, Sha256};

use crate::ports::CodeStoreError;

/// Whether `s` is a bundle address: 64 lowercase hex digits.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// `Ok` if `bytes` hash to `expected`, else `DigestMismatch`.
pub fn verify(expected: &str, bytes: &[u8]) -> Result<(), CodeStoreError> {
    let actual = sha256_hex(bytes);
    if actual != expected {
        return Err(CodeStoreError::DigestMismatch {
            expected: expected.to_owned(),
            actual,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_are_lowercase_hex_sha256() {
        let d = super::sha256_hex(b"x");
        assert!(super::is_sha256_hex(&d));
        assert!(!super::is_sha256_hex(&d.to_uppercase()));
        assert!(!super::is_sha256_hex(&d[1..]));
        assert!(super::verify(&d, b"x").is_ok());
        assert!(super::verify(&d, b"y").is_err());
    }
}
