//! The admin secret: where it comes from, re-reading it so that rotation
//! needs no restart, and comparing it in constant time.

use crate::secret::Secret;
use crate::settings::SecretSource;
use crate::settings::secret::ADMIN_SECRET;
use anyhow::Result;
use sha2::{Digest, Sha256};

/// The request header that carries the secret.
pub const HEADER: &str = "x-hero-onboarding-admin-secret";

impl SecretSource {
    /// The admin secret as it is now (a file is read again).
    pub fn current(&self) -> Result<Secret> {
        self.read(ADMIN_SECRET.what)
    }
}

/// True when `given` is the secret. Both are hashed first, so the comparison
/// takes the same time whatever the lengths and wherever they differ.
pub fn matches(given: &[u8], secret: &Secret) -> bool {
    let a = Sha256::digest(given);
    let b = Sha256::digest(secret.expose().as_bytes());
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b.iter()) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_whole_values() {
        let s = Secret::new("s3cret-value".into());
        assert!(matches(b"s3cret-value", &s));
        assert!(!matches(b"s3cret-valu", &s));
        assert!(!matches(b"s3cret-value2", &s));
        assert!(!matches(b"", &s));
    }
}
