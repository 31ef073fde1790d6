//! Test-only hooks. In debug builds, `HERO_USAGE_FAILPOINT=<name>` makes the
//! process abort (no destructors, no flush: like a power cut for the spool)
//! when it reaches `failpoint("<name>")`, and `HERO_USAGE_TEST_<NAME>_MS`
//! shortens a wait (see [`wait`]) so that tests do not sleep for real.
//! Release builds compile this to nothing.

/// Abort here if the environment names this point (debug builds only).
#[inline]
pub fn failpoint(name: &str) {
    #[cfg(debug_assertions)]
    {
        if std::env::var_os("HERO_USAGE_FAILPOINT").is_some_and(|w| w == name) {
            std::process::abort();
        }
    }
    #[cfg(not(debug_assertions))]
    let _ = name;
}

/// How long to wait for `name` (e.g. `LOCK_WAIT`): `default`, or in debug
/// builds `HERO_USAGE_TEST_<name>_MS` milliseconds when that is set.
pub fn wait(name: &str, default: std::time::Duration) -> std::time::Duration {
    #[cfg(debug_assertions)]
    {
        if let Some(ms) = std::env::var(format!("HERO_USAGE_TEST_{name}_MS"))
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            return std::time::Duration::from_millis(ms);
        }
    }
    let _ = name;
    default
}
