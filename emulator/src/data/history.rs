//! When change events happen, which key they touch, and the schema versions of a table.

use super::catalog::{Field, FieldType, TableDef, opt};
use super::{DataParams, splitmix, table_seed};

/// When a table's change events happen: event `n` at
/// `origin + interval + floor(n * interval / per_interval)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeline {
    origin_ms: i64,
    interval_ms: u64,
    per_interval: u64,
}

impl Timeline {
    pub(crate) fn new(params: &DataParams, table: &TableDef) -> Self {
        Self {
            origin_ms: params.origin_ms,
            interval_ms: params.change_interval_ms.max(1),
            per_interval: u64::from(table.changes_per_interval.max(1)),
        }
    }

    /// Timestamp of event `n`.
    pub(crate) fn event_ts(&self, n: u64) -> i64 {
        let i = i128::from(self.interval_ms);
        let offset = i + i128::from(n) * i / i128::from(self.per_interval);
        let ts = i128::from(self.origin_ms) + offset;
        i64::try_from(ts).unwrap_or(i64::MAX)
    }

    /// Number of events with `ts < t`.
    pub(crate) fn events_before(&self, t: i64) -> u64 {
        let i = i128::from(self.interval_ms);
        let d = i128::from(t) - i128::from(self.origin_ms) - i;
        if d <= 0 {
            return 0;
        }
        let count = (d * i128::from(self.per_interval) + i - 1) / i;
        u64::try_from(count).unwrap_or(u64::MAX)
    }
}

/// Latest event index in `[a, b)` that touches key index `k` (of `rows`); event `n`
/// touches key index `n % rows`.
pub(crate) fn latest_event(k: u64, a: u64, b: u64, rows: u64) -> Option<u64> {
    if b == 0 || b <= a {
        return None;
    }
    let last = b - 1;
    let r = (last % rows + rows - k) % rows;
    let m = last.checked_sub(r)?;
    (m >= a).then_some(m)
}

/// Whether event `n` of `table` is an upsert or a delete (a sixth are deletes).
pub(crate) fn is_delete(table: &TableDef, n: u64) -> bool {
    splitmix(table_seed(table) ^ n.wrapping_mul(0xD6E8_FEB8_6659_FD93)) % 6 == 0
}

/// What one schema version adds to every table: a nullable column, and a value at the
/// end of the table's first enum column (if it has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Evolution {
    /// The column added.
    pub column: Field,
    /// The enum value added.
    pub enum_value: &'static str,
}

/// Enum values added by the schema versions, in order.
pub(crate) const EXTRA_ENUM_VALUES: &[&str] = &["archived", "under_review", "restored"];

/// The schema versions after a table's first: bump `i` (from 0) applies
/// `EVOLUTIONS[i]`. A table takes at most this many bumps.
pub const EVOLUTIONS: [Evolution; 3] = [
    Evolution {
        column: opt("external_reference", FieldType::Str(64)),
        enum_value: EXTRA_ENUM_VALUES[0],
    },
    Evolution {
        column: opt("review_priority", FieldType::Int32),
        enum_value: EXTRA_ENUM_VALUES[1],
    },
    Evolution {
        column: opt("weight_factor", FieldType::Float),
        enum_value: EXTRA_ENUM_VALUES[2],
    },
];

/// Why a schema bump was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BumpError {
    /// The table has had every schema version there is.
    #[error("the table has no further schema version (at most {max} bumps)")]
    NoFurtherVersion {
        /// The number of bumps a table can take.
        max: usize,
    },
    /// A bump must take effect after the previous one and after the emulator's now.
    #[error("a schema bump must take effect after {earliest} (ms since the epoch)")]
    TooEarly {
        /// The earliest instant allowed, exclusive.
        earliest: i64,
    },
}

/// The instants (milliseconds since the epoch, ascending) at which a table's later
/// schema versions took effect. The *epoch* of an instant is the number of bumps at or
/// before it; the schema version is the table's first version plus the epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SchemaHistory {
    bumps_ms: Vec<i64>,
}

impl SchemaHistory {
    /// The epoch at `t`: the number of bumps that took effect at or before `t`.
    pub fn epoch_at(&self, t: i64) -> u32 {
        u32::try_from(self.bumps_ms.partition_point(|&b| b <= t)).unwrap_or(u32::MAX)
    }

    /// The bump instants, ascending.
    pub fn bumps(&self) -> &[i64] {
        &self.bumps_ms
    }

    /// Adds a bump effective at `at_ms`, which must be later than `after_ms` and than
    /// every earlier bump. Returns the new number of bumps.
    pub fn bump(&mut self, at_ms: i64, after_ms: i64) -> Result<u32, BumpError> {
        if self.bumps_ms.len() >= EVOLUTIONS.len() {
            return Err(BumpError::NoFurtherVersion {
                max: EVOLUTIONS.len(),
            });
        }
        let earliest = self
            .bumps_ms
            .last()
            .copied()
            .unwrap_or(i64::MIN)
            .max(after_ms);
        if at_ms <= earliest {
            return Err(BumpError::TooEarly { earliest });
        }
        self.bumps_ms.push(at_ms);
        Ok(u32::try_from(self.bumps_ms.len()).unwrap_or(u32::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeline(per_interval: u64) -> Timeline {
        Timeline {
            origin_ms: 0,
            interval_ms: 1000,
            per_interval,
        }
    }

    #[test]
    fn events_before_counts() {
        let p = timeline(1);
        assert_eq!(p.events_before(0), 0);
        assert_eq!(p.events_before(1000), 0);
        assert_eq!(p.events_before(1001), 1);
        assert_eq!(p.events_before(2000), 1);
        assert_eq!(p.events_before(2001), 2);
        assert_eq!(p.event_ts(0), 1000);
        assert_eq!(p.event_ts(1), 2000);
    }

    #[test]
    fn events_before_agrees_with_event_ts_at_any_rate() {
        for k in [1, 3, 7, 1000, 2048] {
            let p = timeline(k);
            for n in (0..5000).step_by(37) {
                let ts = p.event_ts(n);
                assert!(p.events_before(ts + 1) > n, "k={k} n={n}");
                assert!(p.events_before(ts) <= n, "k={k} n={n}");
            }
        }
    }

    #[test]
    fn latest_event_finds_last_touch() {
        assert_eq!(latest_event(3, 0, 10, 7), Some(3));
        assert_eq!(latest_event(2, 0, 10, 7), Some(9));
        assert_eq!(latest_event(5, 6, 10, 7), None);
        assert_eq!(latest_event(5, 0, 3, 7), None);
    }

    #[test]
    fn bumps_move_forward_and_run_out() {
        let mut h = SchemaHistory::default();
        assert_eq!(h.epoch_at(i64::MAX), 0);
        assert_eq!(h.bump(5_000, 4_000), Ok(1));
        assert_eq!(
            h.bump(5_000, 0),
            Err(BumpError::TooEarly { earliest: 5_000 })
        );
        assert_eq!(
            h.bump(6_000, 7_000),
            Err(BumpError::TooEarly { earliest: 7_000 })
        );
        assert_eq!(h.bump(8_000, 7_000), Ok(2));
        assert_eq!(h.bump(9_000, 7_000), Ok(3));
        assert_eq!(
            h.bump(10_000, 0),
            Err(BumpError::NoFurtherVersion { max: 3 })
        );
        assert_eq!(
            [4_999, 5_000, 7_999, 8_000, 9_000].map(|t| h.epoch_at(t)),
            [0, 1, 1, 2, 3]
        );
    }
}
