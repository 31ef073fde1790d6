//! How long and how often a run retries a commit, and the node's splay.
//!
//! Waits are random (so that nodes that lost a race to each other do not
//! meet again) and grow to at most [`RetryPolicy::max_wait`]; retries stop
//! once [`RetryPolicy::window`] has passed since the first failure.

use sha2::{Digest, Sha256};
use std::time::Duration;

/// `--retry-seconds` when not given.
pub const DEFAULT_RETRY_SECONDS: u64 = 300;
/// How long push-now (a person waiting on the shim) retries.
pub const PUSH_NOW_RETRY_SECONDS: u64 = 30;
/// Debug builds only: `FIRST_MS,MAX_MS` replaces the shipped waits, and
/// `FIRST_MS,MAX_MS,WINDOW_MS` also caps the retry window, so that tests
/// exercise retries without sleeping for seconds. Release builds ignore it.
pub const TEST_WAITS_ENV: &str = "HERO_USAGE_TEST_RETRY_MS";

/// The retry policy, as a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries stop once this much time has passed since the first failure.
    pub window: Duration,
    /// The first wait is at most this long; each later one at most twice
    /// the one before.
    pub first_wait: Duration,
    pub max_wait: Duration,
}

impl RetryPolicy {
    /// The shipped policy for a retry window: waits from up to 8 s (a tenth
    /// of the window when that is shorter, so push-now's 30 s still hold a
    /// few retries) growing to at most 60 s. Measured with 200 ms commits
    /// and the fleet started at once (scripts/bench_fleet.sh, fleet_sim.py
    /// table 6): 60 nodes landed with 3.9 attempts a commit from 2 s, under 3
    /// from 8 s. In debug builds [`TEST_WAITS_ENV`] may shorten them.
    pub fn for_window(window: Duration) -> RetryPolicy {
        let shipped = RetryPolicy::shipped(window);
        let Some(text) = crate::failpoint::test_knob(TEST_WAITS_ENV) else {
            return shipped;
        };
        let ms: Vec<u64> = text
            .split(',')
            .filter_map(|p| p.trim().parse::<u64>().ok())
            .collect();
        match ms[..] {
            [first, max, ref window @ ..] if first > 0 && max >= first => RetryPolicy {
                first_wait: Duration::from_millis(first),
                max_wait: Duration::from_millis(max),
                window: window.first().map_or(shipped.window, |&w| {
                    shipped.window.min(Duration::from_millis(w))
                }),
            },
            _ => shipped,
        }
    }

    /// What release builds use for `window`.
    fn shipped(window: Duration) -> RetryPolicy {
        RetryPolicy {
            window,
            first_wait: (window / 10).clamp(Duration::from_secs(1), Duration::from_secs(8)),
            max_wait: Duration::from_secs(60),
        }
    }

    /// The wait before retry number `n` (1 for the first): random between a
    /// quarter of and the whole of `first_wait * 2^(n-1)`, capped at `max_wait`.
    pub fn wait(&self, n: u32, rng: &mut Rng) -> Duration {
        let cap = self
            .first_wait
            .saturating_mul(1u32 << (n.saturating_sub(1)).min(20))
            .min(self.max_wait);
        let low = cap / 4;
        let span = (cap - low).as_millis() as u64;
        low + Duration::from_millis(rng.below(span + 1))
    }
}

/// A small random source (xorshift64*), seeded from the clock, the process
/// and the node: good enough to spread retries; no secret depends on it.
pub struct Rng(u64);

impl Rng {
    pub fn new(node: &str) -> Rng {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let seed = nanos ^ u64::from(std::process::id()).rotate_left(32) ^ node_hash(node);
        Rng(seed | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

fn node_hash(node: &str) -> u64 {
    let digest = Sha256::digest(node.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// `--splay`: the node's own delay in `0..seconds`, the same every run and
/// spread evenly over a fleet (a hash of the node name, to the millisecond).
pub fn splay_delay(node: &str, seconds: u64) -> Duration {
    let ms = seconds.saturating_mul(1000);
    if ms == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(node_hash(node) % ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_and_stay_under_the_cap() {
        let p = RetryPolicy {
            window: Duration::from_secs(300),
            first_wait: Duration::from_secs(1),
            max_wait: Duration::from_secs(60),
        };
        let mut rng = Rng::new("n1");
        for n in 1..40 {
            let w = p.wait(n, &mut rng);
            let cap = Duration::from_secs((1u64 << (n - 1).min(20)).min(60));
            assert!(w <= cap && w >= cap / 4, "retry {n}: {w:?}");
        }
    }

    #[test]
    fn the_first_wait_is_a_tenth_of_the_window_at_most_8_s() {
        let hourly = RetryPolicy::shipped(Duration::from_secs(300));
        assert_eq!(hourly.first_wait, Duration::from_secs(8));
        assert_eq!(hourly.max_wait, Duration::from_secs(60));
        let push_now = RetryPolicy::shipped(Duration::from_secs(30));
        assert_eq!(push_now.first_wait, Duration::from_secs(3));
    }

    #[test]
    fn splay_is_stable_per_node_and_spread_over_the_window() {
        assert_eq!(splay_delay("node-1", 3600), splay_delay("node-1", 3600));
        assert_eq!(splay_delay("node-1", 0), Duration::ZERO);
        let mut buckets = [0u32; 10];
        for i in 0..1000 {
            let d = splay_delay(&format!("node-{i}"), 3600);
            assert!(d < Duration::from_secs(3600));
            buckets[(d.as_secs() / 360) as usize] += 1;
        }
        // 100 a tenth on average; a uniform spread stays well inside this.
        assert!(
            buckets.iter().all(|&b| (50..=150).contains(&b)),
            "{buckets:?}"
        );
    }
}
