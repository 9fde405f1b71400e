//! The replication plan of one table: which query comes next from the stored position,
//! what a refused query leads to, whether a returned job may be applied, and how its
//! data lands. Pure: the pump in [`crate::replicate`] asks, then does.
//!
//! The snapshot-then-incrementals chain rules live here in one place so that they can
//! move to a planner shared with `dap sync` without touching the pump.

use jiff::Timestamp;

/// The command being run on a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `initdb`: the first snapshot.
    Init,
    /// `syncdb`: the changes since the stored position.
    Sync,
}

/// Where a table stands in the database (its `table_sync` row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// `table_sync.id`.
    pub id: i64,
    /// The next incremental query's `since`: the last snapshot's `at` or the last
    /// incremental's `until`.
    pub timestamp: Timestamp,
    /// The schema version of the table's layout.
    pub schema_version: u64,
    /// The schema the layout follows (`table_sync.schema_description`).
    pub schema_description: String,
}

/// The first query of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Take a snapshot and create the table. `replace` is set when a table of that
    /// name exists without a `table_sync` row (a load that never completed, or a copy
    /// dropped from the meta table): it is replaced in the same transaction.
    Snapshot {
        /// Replace an existing table of that name.
        replace: bool,
    },
    /// Ask for the changes since the stored position.
    Incremental {
        /// The stored position.
        since: Timestamp,
    },
    /// Refuse, with the official client's message.
    Refuse(&'static str),
}

/// The official client's refusal of `initdb` on a replicated table.
pub const ALREADY_INITIALIZED: &str = "Table already initialized. Please run syncdb to update it.";
/// The official client's refusal of `syncdb` on a table that was never initialised.
pub const NOT_INITIALIZED: &str = "Table not initialized. Please run initdb first.";

/// The first query of `command` given the stored position and whether a table of that
/// name exists.
pub fn next(command: Command, stored: Option<&Position>, table_exists: bool) -> Next {
    match (command, stored) {
        (Command::Init, None) => Next::Snapshot {
            replace: table_exists,
        },
        (Command::Init, Some(_)) => Next::Refuse(ALREADY_INITIALIZED),
        (Command::Sync, None) => Next::Refuse(NOT_INITIALIZED),
        // The row survived its table (dropped by hand): load the table afresh.
        (Command::Sync, Some(_)) if !table_exists => Next::Snapshot { replace: false },
        (Command::Sync, Some(p)) => Next::Incremental { since: p.timestamp },
    }
}

/// Why DAP refused an incremental query, as far as the plan cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `SnapshotRequired`: the table was reloaded upstream.
    SnapshotRequired,
    /// `OutOfRange`: the position is older than DAP keeps.
    OutOfRange,
    /// Anything else.
    Other,
}

/// What follows a refused incremental query: `Some(reason)` means re-initialise the
/// table from a fresh snapshot (built beside the old copy and swapped in).
pub fn on_refusal(refusal: Refusal) -> Option<&'static str> {
    match refusal {
        Refusal::SnapshotRequired => Some(
            "DAP reloaded the table (SnapshotRequired), so the changes since the stored position no longer exist",
        ),
        Refusal::OutOfRange => {
            Some("the stored position is older than DAP keeps changes (OutOfRange)")
        }
        Refusal::Other => None,
    }
}

/// What a finished job covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Covered {
    /// A snapshot as of `at`.
    Snapshot {
        /// The snapshot instant.
        at: Timestamp,
    },
    /// Changes in `[since, until)`.
    Changes {
        /// Start, inclusive.
        since: Timestamp,
        /// End, exclusive.
        until: Timestamp,
    },
}

impl Covered {
    /// The position after applying it.
    pub fn next_position(&self) -> Timestamp {
        match *self {
            Self::Snapshot { at } => at,
            Self::Changes { until, .. } => until,
        }
    }
}

/// A returned job that must not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// A snapshot older than the stored position (DAP returned an old job for a
    /// repeated query).
    #[error(
        "DAP returned a snapshot as of {at}, older than the table's position {stored}; \
         applying it would move the table back in time, so nothing was changed (run again later)"
    )]
    StaleSnapshot {
        /// The snapshot's `at`.
        at: Timestamp,
        /// The stored position.
        stored: Timestamp,
    },
    /// A re-initialisation got a snapshot no newer than the table (DAP handed back a
    /// job it had already finished for the same query).
    #[error(
        "DAP returned a snapshot as of {at}, which is not newer than the table's position \
         {stored}: DAP reuses a finished job for an identical query (for up to a day), and \
         this one cannot replace the table; nothing was changed, run again later"
    )]
    NotNewer {
        /// The snapshot's `at`.
        at: Timestamp,
        /// The stored position.
        stored: Timestamp,
    },
    /// Changes that start after the stored position.
    #[error(
        "DAP returned changes from {since}, but the table is at {stored}; applying them \
         would skip the changes in between, so nothing was changed"
    )]
    Gap {
        /// The job's `since`.
        since: Timestamp,
        /// The stored position.
        stored: Timestamp,
    },
    /// Changes that end before they start.
    #[error("DAP returned changes from {since} until {until}, which ends before it starts")]
    Backwards {
        /// The job's `since`.
        since: Timestamp,
        /// The job's `until`.
        until: Timestamp,
    },
    /// A snapshot where changes were asked for, or the reverse.
    #[error("DAP returned a {got} where a {asked} was asked for")]
    WrongKind {
        /// What was asked.
        asked: &'static str,
        /// What came.
        got: &'static str,
    },
}

/// Checks a finished job against the query that produced it and the stored position.
/// `replacing` is set when a snapshot is to replace the table's data (a
/// re-initialisation): it must then be strictly newer than the position.
pub fn check(
    asked_changes: bool,
    covered: Covered,
    stored: Option<Timestamp>,
    replacing: bool,
) -> Result<(), RangeError> {
    match covered {
        Covered::Snapshot { at } => {
            if asked_changes {
                return Err(RangeError::WrongKind {
                    asked: "list of changes",
                    got: "snapshot",
                });
            }
            match stored {
                Some(stored) if at < stored => Err(RangeError::StaleSnapshot { at, stored }),
                Some(stored) if replacing && at == stored => {
                    Err(RangeError::NotNewer { at, stored })
                }
                _ => Ok(()),
            }
        }
        Covered::Changes { since, until } => {
            if !asked_changes {
                return Err(RangeError::WrongKind {
                    asked: "snapshot",
                    got: "list of changes",
                });
            }
            if until < since {
                return Err(RangeError::Backwards { since, until });
            }
            // Starting earlier only repeats changes already applied: DAP returns the
            // latest change of each key, so applying them again is harmless.
            match stored {
                Some(stored) if since > stored => Err(RangeError::Gap { since, stored }),
                _ => Ok(()),
            }
        }
    }
}

/// Where a job's rows go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A new table, created in the same transaction.
    Create,
    /// A new copy built beside the old table and swapped in, in one transaction.
    Replace,
    /// The existing table: changes staged, then deleted and upserted in one transaction.
    Merge,
}

/// How a job's data lands in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Landing {
    /// Where the rows go.
    pub target: Target,
    /// Whether a key may repeat in a snapshot, so rows go through a staging table and
    /// the last row of each key wins (changes always do).
    pub dedupe: bool,
}

/// How the data of `covered` lands: `replace` when the table exists already.
pub fn landing(namespace: &str, table: &str, covered: Covered, replace: bool) -> Landing {
    // DAP delivers web logs at least once: a snapshot may repeat a key.
    let repeats = namespace == "canvas_logs" && table == "web_logs";
    match covered {
        Covered::Changes { .. } => Landing {
            target: Target::Merge,
            dedupe: true,
        },
        Covered::Snapshot { .. } => Landing {
            target: if replace {
                Target::Replace
            } else {
                Target::Create
            },
            dedupe: repeats,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pos(t: &str) -> Position {
        Position {
            id: 1,
            timestamp: ts(t),
            schema_version: 1,
            schema_description: "{}".to_owned(),
        }
    }

    #[test]
    fn first_query() {
        let p = pos("2024-01-01T00:00:00Z");
        assert_eq!(
            next(Command::Init, None, false),
            Next::Snapshot { replace: false }
        );
        assert_eq!(
            next(Command::Init, None, true),
            Next::Snapshot { replace: true }
        );
        assert_eq!(
            next(Command::Init, Some(&p), true),
            Next::Refuse(ALREADY_INITIALIZED)
        );
        assert_eq!(
            next(Command::Sync, None, true),
            Next::Refuse(NOT_INITIALIZED)
        );
        assert_eq!(
            next(Command::Sync, Some(&p), true),
            Next::Incremental { since: p.timestamp }
        );
        assert_eq!(
            next(Command::Sync, Some(&p), false),
            Next::Snapshot { replace: false }
        );
    }

    #[test]
    fn refusals_lead_to_reinit_or_failure() {
        assert!(on_refusal(Refusal::SnapshotRequired).is_some());
        assert!(on_refusal(Refusal::OutOfRange).is_some());
        assert!(on_refusal(Refusal::Other).is_none());
    }

    #[test]
    fn never_moves_back() {
        let stored = Some(ts("2024-01-02T00:00:00Z"));
        let old = Covered::Snapshot {
            at: ts("2024-01-01T00:00:00Z"),
        };
        assert!(matches!(
            check(false, old, stored, false),
            Err(RangeError::StaleSnapshot { .. })
        ));
        assert!(check(false, old, None, false).is_ok());
        let same = Covered::Snapshot {
            at: ts("2024-01-02T00:00:00Z"),
        };
        assert!(check(false, same, stored, false).is_ok());
        assert!(matches!(
            check(false, same, stored, true),
            Err(RangeError::NotNewer { .. })
        ));
    }

    #[test]
    fn changes_must_continue_the_position() {
        let stored = Some(ts("2024-01-02T00:00:00Z"));
        let ok = Covered::Changes {
            since: ts("2024-01-02T00:00:00Z"),
            until: ts("2024-01-03T00:00:00Z"),
        };
        assert!(check(true, ok, stored, false).is_ok());
        let gap = Covered::Changes {
            since: ts("2024-01-02T00:00:01Z"),
            until: ts("2024-01-03T00:00:00Z"),
        };
        assert!(matches!(
            check(true, gap, stored, false),
            Err(RangeError::Gap { .. })
        ));
        let back = Covered::Changes {
            since: ts("2024-01-02T00:00:00Z"),
            until: ts("2024-01-01T00:00:00Z"),
        };
        assert!(matches!(
            check(true, back, stored, false),
            Err(RangeError::Backwards { .. })
        ));
        assert!(matches!(
            check(false, ok, stored, false),
            Err(RangeError::WrongKind { .. })
        ));
    }

    #[test]
    fn landings() {
        let snap = Covered::Snapshot {
            at: ts("2024-01-01T00:00:00Z"),
        };
        let l = |target, dedupe| Landing { target, dedupe };
        assert_eq!(
            landing("canvas", "users", snap, false),
            l(Target::Create, false)
        );
        assert_eq!(
            landing("canvas", "users", snap, true),
            l(Target::Replace, false)
        );
        assert_eq!(
            landing("canvas_logs", "web_logs", snap, false),
            l(Target::Create, true)
        );
        assert_eq!(snap.next_position(), ts("2024-01-01T00:00:00Z"));
    }
}
