//! The chain of queries that keeps a replica of a table up to date, as pure decisions.
//!
//! A replica (a directory of files, a database table) starts from a snapshot and then
//! applies incrementals, each starting where the previous data ended: the snapshot's
//! `at`, then each incremental's `until`, always as the server reported them, never from
//! a local clock. That instant is the replica's *position*.
//!
//! ```text
//!  no position ──────────────► snapshot ──accept──► replace the replica, position = at
//!  position P ─► incremental(since P) ──accept──► apply the changes, position = until
//!                     │ SnapshotRequired / OutOfRange
//!                     └──────► snapshot ──accept──► replace the replica, position = at
//! ```
//!
//! Every returned range is checked against the query before the caller changes
//! anything ([`Chain::accept`]). DAP answers an identical query with the job it already
//! has, so a snapshot asked for now may come back as of an earlier instant: such a
//! snapshot is refused when it is older than the position, as is an incremental that
//! does not start where it was asked to or ends before it starts. A refused range leaves
//! the replica and its position as they were.
//!
//! ```
//! use dap_proto::chain::{Chain, Apply};
//! use dap_proto::{DataRange, Format};
//!
//! let position = "2026-11-28T00:00:00Z".parse()?;
//! let chain = Chain::new(Format::Jsonl, Some(position));
//! let step = chain.next(false);
//! assert_eq!(step.query.format(), Format::Jsonl);
//! // ... run step.query; the job reports what it covers:
//! let range = DataRange::Incremental { since: position, until: "2026-11-29T00:00:00Z".parse()? };
//! let advance = chain.accept(&step, &range)?;
//! assert_eq!(advance.apply, Apply::Changes);
//! assert_eq!(advance.position.to_string(), "2026-11-29T00:00:00Z");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use jiff::Timestamp;

use crate::error::DapErrorKind;
use crate::model::{DataRange, Format, Mode, Query, QueryRange};

/// The chain of one table: its format (and CSV/TSV layout) and its position, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chain {
    format: Format,
    mode: Option<Mode>,
    position: Option<Timestamp>,
}

/// The next query of a chain and why it is the one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The query to run.
    pub query: Query,
    /// Why.
    pub reason: Reason,
}

/// Why a step queries what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reason {
    /// The replica has no position yet: it starts from a snapshot.
    First,
    /// The caller asked for a snapshot although the chain could continue.
    Forced,
    /// The chain continues from its position.
    Continue {
        /// The position.
        since: Timestamp,
    },
    /// The position could not be continued; a snapshot replaces the replica.
    Recover(Recovery),
}

/// Why a position could not be continued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// DAP reloaded the table (`SnapshotRequired`).
    SnapshotRequired,
    /// The position is older than the data DAP retains (`OutOfRange`).
    OutOfRange,
}

/// How an accepted result changes the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Apply {
    /// A snapshot: the result replaces the replica's contents.
    Replace,
    /// An incremental: upserts and deletes applied on top of the replica.
    Changes,
}

/// An accepted result: how to apply it and the position afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    /// How the result changes the replica.
    pub apply: Apply,
    /// The position once the result is applied: the snapshot's `at` or the
    /// incremental's `until`.
    pub position: Timestamp,
}

/// A result that does not continue the chain; nothing may be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The snapshot is older than the position it would replace: DAP reused the job of
    /// an earlier identical query.
    #[error(
        "DAP returned a snapshot as of {at}, older than the stored position {position} (it \
         reused the job of an earlier identical query); applying it would move the table \
         backwards, so nothing was changed; run again once that job has expired (24 hours \
         after it started)"
    )]
    StaleSnapshot {
        /// The snapshot's instant.
        at: Timestamp,
        /// The position it would have replaced.
        position: Timestamp,
    },
    /// A snapshot was asked for and an incremental came back, or the reverse.
    #[error("DAP returned {got} data for {asked} query; nothing was changed")]
    WrongKind {
        /// What the query asked for.
        asked: &'static str,
        /// What the job covered.
        got: &'static str,
    },
    /// The incremental does not cover the window asked for.
    #[error(
        "DAP returned changes from {since} to {until} for a query from {asked_since}{}; \
         nothing was changed",
        asked_until.map(|u| format!(" to {u}")).unwrap_or_default()
    )]
    WindowMismatch {
        /// The `since` asked for.
        asked_since: Timestamp,
        /// The `until` asked for, if any.
        asked_until: Option<Timestamp>,
        /// The job's `since`.
        since: Timestamp,
        /// The job's `until`.
        until: Timestamp,
    },
}

impl Chain {
    /// The chain of a table kept in `format`, at `position` (`None` before the first
    /// snapshot).
    pub fn new(format: Format, position: Option<Timestamp>) -> Self {
        Self {
            format,
            mode: None,
            position,
        }
    }

    /// Sets the CSV/TSV layout of every query (ignored for other formats).
    pub fn with_mode(mut self, mode: Mode) -> Self {
        if self.format.accepts_mode() {
            self.mode = Some(mode);
        }
        self
    }

    /// The position.
    pub fn position(&self) -> Option<Timestamp> {
        self.position
    }

    /// The next query: a snapshot without a position or when `force_snapshot` is set,
    /// otherwise an incremental from the position.
    pub fn next(&self, force_snapshot: bool) -> Step {
        match self.position {
            None => self.snapshot(Reason::First),
            Some(_) if force_snapshot => self.snapshot(Reason::Forced),
            Some(since) => Step {
                query: self.shape(Query::incremental(self.format, since)),
                reason: Reason::Continue { since },
            },
        }
    }

    /// The step after `step` failed with `error`: a snapshot when the error means the
    /// position can no longer be continued (`SnapshotRequired`, `OutOfRange`) and the
    /// failed step was an incremental; `None` when the failure is final.
    pub fn recover(&self, step: &Step, error: &DapErrorKind) -> Option<Step> {
        let recovery = match error {
            DapErrorKind::SnapshotRequired { .. } => Recovery::SnapshotRequired,
            DapErrorKind::OutOfRange { .. } => Recovery::OutOfRange,
            _ => return None,
        };
        match step.query.range() {
            QueryRange::Incremental { .. } => Some(self.snapshot(Reason::Recover(recovery))),
            _ => None,
        }
    }

    /// Checks what a job covered against the step that asked for it and the position.
    ///
    /// # Errors
    /// A [`ChainError`] when the range does not continue the chain; nothing may be
    /// applied then.
    pub fn accept(&self, step: &Step, range: &DataRange) -> Result<Advance, ChainError> {
        match (step.query.range(), *range) {
            (QueryRange::Snapshot, DataRange::Snapshot { at }) => match self.position {
                Some(position) if at < position => Err(ChainError::StaleSnapshot { at, position }),
                _ => Ok(Advance {
                    apply: Apply::Replace,
                    position: at,
                }),
            },
            (
                QueryRange::Incremental {
                    since: asked_since,
                    until: asked_until,
                },
                DataRange::Incremental { since, until },
            ) => {
                let fits = since == asked_since
                    && until >= since
                    && asked_until.is_none_or(|limit| until <= limit);
                if fits {
                    Ok(Advance {
                        apply: Apply::Changes,
                        position: until,
                    })
                } else {
                    Err(ChainError::WindowMismatch {
                        asked_since,
                        asked_until,
                        since,
                        until,
                    })
                }
            }
            (asked, got) => Err(ChainError::WrongKind {
                asked: match asked {
                    QueryRange::Snapshot => "a snapshot",
                    _ => "an incremental",
                },
                got: match got {
                    DataRange::Snapshot { .. } => "snapshot",
                    _ => "incremental",
                },
            }),
        }
    }

    fn snapshot(&self, reason: Reason) -> Step {
        Step {
            query: self.shape(Query::snapshot(self.format)),
            reason,
        }
    }

    fn shape(&self, query: Query) -> Query {
        match self.mode {
            // `with_mode` kept the mode only for formats that accept one.
            Some(mode) => query.mode(mode).unwrap_or(query),
            None => query,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::First => f.write_str("first sync of the table"),
            Self::Forced => f.write_str("a new snapshot was asked for"),
            Self::Continue { since } => write!(f, "continuing from {since}"),
            Self::Recover(r) => write!(f, "{r}"),
        }
    }
}

impl fmt::Display for Recovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SnapshotRequired => "the server required a new snapshot (SnapshotRequired)",
            Self::OutOfRange => "the stored position was out of range (OutOfRange)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn snapshot(at: &str) -> DataRange {
        DataRange::Snapshot { at: ts(at) }
    }

    fn changes(since: &str, until: &str) -> DataRange {
        DataRange::Incremental {
            since: ts(since),
            until: ts(until),
        }
    }

    const P: &str = "2026-11-28T00:00:00Z";

    #[test]
    fn first_step_is_a_snapshot_then_incrementals_from_the_position() {
        let first = Chain::new(Format::Tsv, None).next(false);
        assert_eq!(first.query, Query::snapshot(Format::Tsv));
        assert_eq!(first.reason, Reason::First);
        let chain = Chain::new(Format::Tsv, Some(ts(P)));
        let step = chain.next(false);
        assert_eq!(step.query, Query::incremental(Format::Tsv, ts(P)));
        assert_eq!(step.reason, Reason::Continue { since: ts(P) });
        assert_eq!(chain.next(true).reason, Reason::Forced);
        assert_eq!(chain.next(true).query, Query::snapshot(Format::Tsv));
    }

    #[test]
    fn mode_applies_to_csv_and_tsv_only() {
        let tsv = Chain::new(Format::Tsv, Some(ts(P))).with_mode(Mode::Condensed);
        assert_eq!(tsv.next(false).query.layout(), Some(Mode::Condensed));
        assert_eq!(tsv.next(true).query.layout(), Some(Mode::Condensed));
        let jsonl = Chain::new(Format::Jsonl, None).with_mode(Mode::Condensed);
        assert_eq!(jsonl.next(false).query.layout(), None);
    }

    #[test]
    fn accepted_ranges_move_the_position_forward() {
        let chain = Chain::new(Format::Jsonl, Some(ts(P)));
        let step = chain.next(false);
        let advance = chain
            .accept(&step, &changes(P, "2026-11-29T00:00:00Z"))
            .unwrap();
        assert_eq!(advance.apply, Apply::Changes);
        assert_eq!(advance.position, ts("2026-11-29T00:00:00Z"));
        // An empty window is fine: nothing changed, the position stays.
        assert_eq!(chain.accept(&step, &changes(P, P)).unwrap().position, ts(P));
        let forced = chain.next(true);
        let advance = chain
            .accept(&forced, &snapshot("2026-11-30T00:00:00Z"))
            .unwrap();
        assert_eq!(advance.apply, Apply::Replace);
        assert_eq!(advance.position, ts("2026-11-30T00:00:00Z"));
        // A snapshot exactly at the position loses nothing.
        assert!(chain.accept(&forced, &snapshot(P)).is_ok());
    }

    #[test]
    fn a_deduplicated_snapshot_older_than_the_position_is_refused() {
        let chain = Chain::new(Format::Jsonl, Some(ts(P)));
        for step in [
            chain.next(true),
            chain
                .recover(
                    &chain.next(false),
                    &DapErrorKind::SnapshotRequired {
                        since: None,
                        until: None,
                    },
                )
                .unwrap(),
        ] {
            let err = chain
                .accept(&step, &snapshot("2026-11-27T23:59:59Z"))
                .unwrap_err();
            assert_eq!(
                err,
                ChainError::StaleSnapshot {
                    at: ts("2026-11-27T23:59:59Z"),
                    position: ts(P)
                }
            );
            assert!(err.to_string().contains("nothing was changed"), "{err}");
        }
        // Without a position any snapshot is a start.
        let fresh = Chain::new(Format::Jsonl, None);
        assert!(
            fresh
                .accept(&fresh.next(false), &snapshot("2001-01-01T00:00:00Z"))
                .is_ok()
        );
    }

    #[test]
    fn incrementals_must_cover_the_window_asked_for() {
        let chain = Chain::new(Format::Csv, Some(ts(P)));
        let step = chain.next(false);
        for bad in [
            changes("2026-11-27T00:00:00Z", "2026-11-29T00:00:00Z"),
            changes("2026-11-28T00:00:01Z", "2026-11-29T00:00:00Z"),
            changes(P, "2026-11-27T00:00:00Z"),
        ] {
            assert!(
                matches!(
                    chain.accept(&step, &bad),
                    Err(ChainError::WindowMismatch { .. })
                ),
                "{bad:?}"
            );
        }
        let bounded = Step {
            query: Query::incremental(Format::Csv, ts(P))
                .until(ts("2026-11-29T00:00:00Z"))
                .unwrap(),
            reason: Reason::Continue { since: ts(P) },
        };
        assert!(
            chain
                .accept(&bounded, &changes(P, "2026-11-29T00:00:00Z"))
                .is_ok()
        );
        let err = chain
            .accept(&bounded, &changes(P, "2026-11-29T00:00:01Z"))
            .unwrap_err();
        assert!(err.to_string().contains("to 2026-11-29T00:00:00Z"), "{err}");
    }

    #[test]
    fn the_kind_of_data_must_match_the_query() {
        let chain = Chain::new(Format::Jsonl, Some(ts(P)));
        assert!(matches!(
            chain.accept(&chain.next(false), &snapshot("2026-11-29T00:00:00Z")),
            Err(ChainError::WrongKind { .. })
        ));
        assert!(matches!(
            chain.accept(&chain.next(true), &changes(P, "2026-11-29T00:00:00Z")),
            Err(ChainError::WrongKind { .. })
        ));
    }

    #[test]
    fn only_lost_positions_of_incrementals_recover_with_a_snapshot() {
        let chain = Chain::new(Format::Jsonl, Some(ts(P)));
        let step = chain.next(false);
        let lost = DapErrorKind::OutOfRange {
            since: None,
            until: None,
        };
        let recovery = chain.recover(&step, &lost).unwrap();
        assert_eq!(recovery.query, Query::snapshot(Format::Jsonl));
        assert_eq!(recovery.reason, Reason::Recover(Recovery::OutOfRange));
        // A snapshot that fails the same way has nothing to fall back to.
        assert_eq!(chain.recover(&recovery, &lost), None);
        assert_eq!(chain.recover(&step, &DapErrorKind::Authentication), None);
    }
}
