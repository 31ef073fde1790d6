//! The admin secret: where it comes from, re-reading it so that rotation
//! needs no restart, and comparing it in constant time.

use crate::config::{ConfigFile, Secret, read_secret_file};
use crate::error::{Kind, fail};
use anyhow::Result;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The request header that carries the secret.
pub const HEADER: &str = "x-hero-onboarding-admin-secret";

/// Where the admin secret comes from.
#[derive(Debug, Clone)]
pub enum SecretSource {
    /// A file, re-read on every request that needs it: rotate by replacing it.
    File(PathBuf),
    /// `HERO_ONBOARDING_ADMIN_SECRET`: fixed for the life of the process.
    Value(Secret),
}

impl SecretSource {
    /// `--admin-secret-file` > `HERO_ONBOARDING_ADMIN_SECRET` >
    /// `HERO_ONBOARDING_ADMIN_SECRET_FILE` > `admin_secret_file` in the
    /// config file; none is a configuration error (78). The secret is read
    /// once here so that a missing or empty file stops the start.
    pub fn resolve(flag: Option<&Path>, file: &ConfigFile) -> Result<SecretSource> {
        let source = if let Some(p) = flag {
            SecretSource::File(p.to_path_buf())
        } else if let Some(v) = std::env::var_os("HERO_ONBOARDING_ADMIN_SECRET")
            .map(|v| v.to_string_lossy().trim().to_string())
            .filter(|v| !v.is_empty())
        {
            SecretSource::Value(Secret::new(v))
        } else if let Some(p) =
            std::env::var_os("HERO_ONBOARDING_ADMIN_SECRET_FILE").filter(|p| !p.is_empty())
        {
            SecretSource::File(PathBuf::from(p))
        } else if let Some(p) = &file.admin_secret_file {
            SecretSource::File(p.clone())
        } else {
            return Err(fail(
                Kind::Config,
                "no admin secret: set --admin-secret-file, HERO_ONBOARDING_ADMIN_SECRET_FILE, \
                 HERO_ONBOARDING_ADMIN_SECRET or admin_secret_file in the config file; \
                 the shim does not start without one",
            ));
        };
        source.current()?;
        Ok(source)
    }

    /// The secret as it is now (a file is read again).
    pub fn current(&self) -> Result<Secret> {
        match self {
            SecretSource::File(p) => read_secret_file(p, "admin secret"),
            SecretSource::Value(s) => Ok(s.clone()),
        }
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
