//! Test-only crash points and knobs. In debug builds, `HERO_USAGE_FAILPOINT=<name>` makes
//! the process abort (no destructors, no flush: like a power cut for the spool)
//! when it reaches `failpoint("<name>")`, and `HERO_USAGE_FAILPOINT=panic:<name>`
//! makes it panic there (a bug). Release builds compile this to nothing.

/// Abort here if the environment names this point (debug builds only), or
/// when this is the Nth crash point the process reaches and
/// `HERO_USAGE_CRASH_AT=N`: a test sweeps N over every step of a run, as a
/// kill -9 at each one would.
#[inline]
pub fn failpoint(name: &str) {
    #[cfg(debug_assertions)]
    {
        if let Some(wanted) = std::env::var_os("HERO_USAGE_FAILPOINT") {
            if wanted == name {
                std::process::abort();
            }
            if wanted.to_str().and_then(|w| w.strip_prefix("panic:")) == Some(name) {
                panic!("failpoint {name}");
            }
        }
        static REACHED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        if let Some(at) = std::env::var("HERO_USAGE_CRASH_AT")
            .ok()
            .and_then(|n| n.parse::<u64>().ok())
            && REACHED.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == at
        {
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
