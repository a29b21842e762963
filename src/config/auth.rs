//! `[auth]`: which password algorithms of RFC 8489 §18.5 the long-term
//! credential mechanism offers (PASSWORD-ALGORITHMS, §9.2.1, §14.11).

use serde::Deserialize;

/// One password algorithm (RFC 8489 §18.5), as the engine knows it.
pub use crate::core::auth_sha256::Algorithm as PasswordAlgorithm;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// The algorithms offered, in order of preference. SHA-1/MD5-only
    /// clients (no PASSWORD-ALGORITHM) need "md5".
    pub algorithms: Vec<PasswordAlgorithm>,
}

impl Default for Auth {
    fn default() -> Self {
        Auth {
            algorithms: vec![PasswordAlgorithm::Sha256, PasswordAlgorithm::Md5],
        }
    }
}

impl Auth {
    pub(super) fn check(&self) -> Result<(), String> {
        if self.algorithms.is_empty() {
            return Err("auth.algorithms must name at least one of \"sha256\", \"md5\"".into());
        }
        let a = &self.algorithms;
        if a.iter().enumerate().any(|(i, x)| a[..i].contains(x)) {
            return Err("auth.algorithms names an algorithm twice".into());
        }
        Ok(())
    }
}
