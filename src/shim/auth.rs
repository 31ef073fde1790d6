//! The admin secret: where it comes from, re-reading it so that rotation
//! needs no restart, and comparing it in constant time.

use crate::config::{ConfigFile, SecretSetting};
use crate::error::{Kind, fail};
use crate::secret::Secret;
use anyhow::Result;
use sha2::{Digest, Sha256};
use std::path::Path;

/// The request header that carries the secret.
pub const HEADER: &str = "x-hero-onboarding-admin-secret";

pub(crate) use crate::config::SecretSource;

/// The admin secret's setting.
pub const ADMIN_SECRET: SecretSetting = SecretSetting {
    what: "admin secret",
    flag: "--admin-secret-file",
    env_value: "HERO_ONBOARDING_ADMIN_SECRET",
    env_file: "HERO_ONBOARDING_ADMIN_SECRET_FILE",
    config_key: "admin_secret_file",
};

impl SecretSource {
    /// The admin secret through the one precedence chain of secrets
    /// ([`SecretSource::locate`]); none is a configuration error (78). The
    /// secret is read once here so that a missing or empty file stops the
    /// start.
    pub fn resolve(flag: Option<&Path>, file: &ConfigFile) -> Result<SecretSource> {
        let source = SecretSource::locate(&ADMIN_SECRET, flag, file.admin_secret_file.as_deref())
            .ok_or_else(|| {
            fail(
                Kind::Config,
                format!(
                    "no admin secret: set {}; the shim does not start without one",
                    SecretSource::ways(&ADMIN_SECRET)
                ),
            )
        })?;
        source.current()?;
        Ok(source)
    }

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
