//! Test-only crash points and knobs. In debug builds, `HERO_USAGE_FAILPOINT=<name>` makes
//! the process abort (no destructors, no flush: like a power cut for the spool)
//! when it reaches `failpoint("<name>")`. Release builds compile this to nothing.

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

/// A test knob: the value of the environment variable `name` in debug builds
/// (tests shorten waits with it); release builds never read it.
pub fn test_knob(name: &str) -> Option<String> {
    if cfg!(debug_assertions) {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    } else {
        None
    }
}
