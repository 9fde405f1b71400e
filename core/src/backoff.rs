//! Exponential backoff with "equal jitter", shared by the session and transfers so every
//! retry in the toolkit follows the one [`RetryPolicy`].

use std::time::Duration;

use crate::config::RetryPolicy;

/// A seeded jitter source (splitmix64): reproducible, no clock, no OS randomness.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    state: u64,
}

impl Backoff {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            state: seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// The wait before retrying after the `attempt`-th consecutive failure (1-based):
    /// between half and all of `initial_backoff * 2^(attempt-1)`, capped at `max_backoff`.
    pub(crate) fn delay(&mut self, policy: &RetryPolicy, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        let base = policy
            .initial_backoff
            .checked_mul(factor)
            .unwrap_or(policy.max_backoff)
            .min(policy.max_backoff);
        let half = base / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = if nanos == 0 {
            0
        } else {
            self.next() % nanos.saturating_add(1)
        };
        half.saturating_add(Duration::from_nanos(jitter))
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_growing() {
        let policy = RetryPolicy::new(10, Duration::from_millis(100), Duration::from_secs(1));
        let mut b = Backoff::new(1);
        for attempt in 1..40 {
            let d = b.delay(&policy, attempt);
            let base = (Duration::from_millis(100) * 2u32.saturating_pow(attempt - 1).min(1 << 20))
                .min(Duration::from_secs(1));
            assert!(d >= base / 2 && d <= base, "{attempt}: {d:?}");
        }
        let zero = RetryPolicy::new(1, Duration::ZERO, Duration::ZERO);
        assert_eq!(b.delay(&zero, u32::MAX), Duration::ZERO);
        // No overflow whatever the policy (Config refuses such values anyway).
        let huge = RetryPolicy::new(1, Duration::MAX, Duration::MAX);
        assert!(b.delay(&huge, 3) >= Duration::MAX / 2);
    }
}
