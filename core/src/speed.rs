//! The low-speed rule and the meter that applies it to one response body.
//!
//! The rule looks back over a sliding window, so a stall is noticed one window (plus a
//! tenth) after the data stopped, whatever came before it: with fixed windows, a burst
//! just before a stall would fill the window it fell in and double the wait.

use std::time::{Duration, Instant};

use crate::error::{FailureKind, TransportFailure};

/// The low-speed rule: an attempt that receives fewer than `min_bytes` in any `window`
/// is abandoned (a download then resumes with `Range`, an API call is retried), so a
/// server that trickles a byte a second cannot hold a call for hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LowSpeed {
    /// Bytes that must arrive in every window.
    pub min_bytes: u64,
    /// The window (also the longest wait for any data at all).
    pub window: Duration,
}

impl LowSpeed {
    /// A meter applying this rule to one response body.
    pub fn meter(self) -> SpeedMeter {
        SpeedMeter {
            rule: self,
            start: None,
            slices: [0; SLOTS],
            last: 0,
        }
    }
}

impl Default for LowSpeed {
    /// 1 KiB in 30 s: far below any real network, far above a stalled one.
    fn default() -> Self {
        Self {
            min_bytes: 1024,
            window: Duration::from_secs(30),
        }
    }
}

/// Slices of a window the meter counts bytes in: a stall is noticed at most one slice
/// after a whole window of too few bytes.
const SLICES: u64 = 10;
/// One more slot than slices: the slice in progress.
const SLOTS: usize = SLICES as usize + 1;

/// Applies a [`LowSpeed`] rule to one response body: feed it every piece received.
/// Its memory is a fixed handful of counters, whatever the body's length.
#[derive(Debug, Clone)]
pub struct SpeedMeter {
    rule: LowSpeed,
    /// When the first piece (or the response head) arrived.
    start: Option<Instant>,
    /// Bytes received per slice, slice `i` in slot `i % SLOTS`.
    slices: [u64; SLOTS],
    /// The most recent slice that received anything.
    last: u64,
}

impl SpeedMeter {
    /// Counts `bytes` received at `now`; fails when the last whole window (measured in
    /// tenths) brought fewer bytes than the rule asks. Call it with 0 bytes when the
    /// response head arrives to start the clock there.
    pub fn observe(&mut self, bytes: u64, now: Instant) -> Result<(), TransportFailure> {
        let start = *self.start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        let slice = self.slice_of(elapsed);
        if slice > self.last {
            // Empty the slots of the slices that passed since the last piece.
            for s in (self.last + 1..=slice).take(SLOTS) {
                self.slices[slot(s)] = 0;
            }
            self.last = slice;
        }
        let counter = &mut self.slices[slot(slice)];
        *counter = counter.saturating_add(bytes);
        if elapsed < self.rule.window {
            return Ok(());
        }
        // The slots hold the slices that overlap the last window: at least a window's
        // worth, so a body at the limit rate is never cut.
        let recent = self
            .slices
            .iter()
            .fold(0u64, |sum, b| sum.saturating_add(*b));
        if recent >= self.rule.min_bytes {
            return Ok(());
        }
        *self = self.rule.meter();
        Err(TransportFailure::new(
            FailureKind::Stalled,
            format!(
                "fewer than {} bytes in {:?}",
                self.rule.min_bytes, self.rule.window
            ),
        ))
    }

    /// The longest wait for the next piece of the body: the window.
    pub fn read_timeout(&self) -> Duration {
        self.rule.window
    }

    /// The slice `elapsed` falls in.
    fn slice_of(&self, elapsed: Duration) -> u64 {
        // Rounded up, so that ten slices always span at least a window.
        let width = self
            .rule
            .window
            .as_nanos()
            .div_ceil(u128::from(SLICES))
            .max(1);
        u64::try_from(elapsed.as_nanos() / width).unwrap_or(u64::MAX)
    }
}

fn slot(slice: u64) -> usize {
    // The remainder is below SLOTS.
    usize::try_from(slice % SLOTS as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::origin;

    const KIB_IN_30S: LowSpeed = LowSpeed {
        min_bytes: 1024,
        window: Duration::from_secs(30),
    };

    /// Feeds `bytes` every `every` from `t0 + from` up to `t0 + to`; the instant of the
    /// first failure, if any.
    fn feed(
        meter: &mut SpeedMeter,
        t0: Instant,
        (from, to, every): (u64, u64, u64),
        bytes: u64,
    ) -> Option<u64> {
        (from..=to)
            .step_by(usize::try_from(every).unwrap())
            .find(|ms| {
                meter
                    .observe(bytes, t0 + Duration::from_millis(*ms))
                    .is_err()
            })
    }

    #[test]
    fn a_stall_after_a_burst_is_noticed_one_window_later() {
        let t0 = origin();
        let mut meter = KIB_IN_30S.meter();
        meter.observe(0, t0).unwrap();
        assert!(feed(&mut meter, t0, (0, 1_000, 100), 4096).is_none());
        // Then a byte a second: found after 30 s without a KiB, not after two windows.
        let failed = feed(&mut meter, t0, (2_000, 100_000, 1_000), 1).unwrap();
        assert!((31_000..=35_000).contains(&failed), "{failed}");
    }

    #[test]
    fn a_body_at_the_limit_rate_is_never_cut() {
        let t0 = origin();
        let mut meter = KIB_IN_30S.meter();
        // 35 bytes a second is 1,050 in any 30 s.
        assert!(feed(&mut meter, t0, (0, 600_000, 1_000), 35).is_none());
        // Ten-byte pieces every 100 ms: a KiB in 10 s.
        let mut meter = KIB_IN_30S.meter();
        assert!(feed(&mut meter, t0, (0, 600_000, 100), 10).is_none());
    }

    #[test]
    fn too_slow_from_the_start_fails_after_one_window() {
        let t0 = origin();
        let mut meter = KIB_IN_30S.meter();
        let failed = feed(&mut meter, t0, (0, 100_000, 1_000), 1).unwrap();
        assert_eq!(failed, 30_000);
        let fresh = meter.observe(1, t0 + Duration::from_secs(31));
        assert!(fresh.is_ok(), "a failure starts a fresh window");
    }

    #[test]
    fn a_long_silence_then_data_is_judged_on_the_window_before_it() {
        let t0 = origin();
        let mut meter = KIB_IN_30S.meter();
        meter.observe(100_000, t0).unwrap();
        // Nothing for an hour, then a piece: the last window held only that piece.
        let err = meter
            .observe(10, t0 + Duration::from_secs(3600))
            .unwrap_err();
        assert_eq!(err.kind(), FailureKind::Stalled);
        assert_eq!(err.detail(), "fewer than 1024 bytes in 30s");
    }

    #[test]
    fn zero_min_bytes_never_fails_and_tiny_windows_work() {
        let t0 = origin();
        let mut meter = LowSpeed {
            min_bytes: 0,
            window: Duration::from_secs(1),
        }
        .meter();
        assert!(feed(&mut meter, t0, (0, 10_000, 500), 0).is_none());
        let mut meter = LowSpeed {
            min_bytes: 2,
            window: Duration::from_nanos(3),
        }
        .meter();
        meter.observe(1, t0).unwrap();
        assert!(meter.observe(0, t0 + Duration::from_nanos(5)).is_err());
        let mut meter = KIB_IN_30S.meter();
        meter.observe(u64::MAX, t0).unwrap();
        meter.observe(u64::MAX, t0).unwrap();
        meter.observe(0, t0 + Duration::from_secs(31)).unwrap();
    }
}
