//! The replication plan of one table, around the chain shared with `dap sync`
//! ([`dap_proto::chain`]: which query comes next from the stored position, what a
//! refused query leads to, which returned ranges may be applied). What is particular to
//! a database lives here: the official client's refusals, a table replaced beside its
//! old copy, a re-initialisation that must bring newer data, and how the data lands.
//! Pure: the pump in [`crate::replicate`] asks, then does.

use dap_proto::chain::Apply;
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

/// A re-initialisation's snapshot that is no newer than the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "DAP returned a snapshot as of {at}, which is not newer than the table's position \
     {stored}: DAP reuses a finished job for an identical query (for up to a day), and \
     this one cannot replace the table; nothing was changed, run again later"
)]
pub struct NotNewer {
    /// The snapshot's `at`.
    pub at: Timestamp,
    /// The stored position.
    pub stored: Timestamp,
}

/// The rule a snapshot that re-initialises a table must meet on top of the chain's:
/// it must be strictly newer than the table's position, or it is the data the table
/// already has (a job DAP reused) and cannot be what replaces it.
pub fn check_reinit(at: Timestamp, stored: Option<Timestamp>) -> Result<(), NotNewer> {
    match stored {
        Some(stored) if at <= stored => Err(NotNewer { at, stored }),
        _ => Ok(()),
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

/// How accepted data lands: `replace` when the table exists already.
pub fn landing(namespace: &str, table: &str, apply: Apply, replace: bool) -> Landing {
    // DAP delivers web logs at least once: a snapshot may repeat a key.
    let repeats = namespace == "canvas_logs" && table == "web_logs";
    match apply {
        Apply::Replace => Landing {
            target: if replace {
                Target::Replace
            } else {
                Target::Create
            },
            dedupe: repeats,
        },
        _ => Landing {
            target: Target::Merge,
            dedupe: true,
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
    fn a_reinit_needs_newer_data() {
        let stored = Some(ts("2024-01-02T00:00:00Z"));
        assert!(check_reinit(ts("2024-01-02T00:00:00Z"), stored).is_err());
        assert!(check_reinit(ts("2024-01-01T00:00:00Z"), stored).is_err());
        assert!(check_reinit(ts("2024-01-02T00:00:01Z"), stored).is_ok());
        assert!(check_reinit(ts("2024-01-02T00:00:00Z"), None).is_ok());
    }

    #[test]
    fn landings() {
        let l = |target, dedupe| Landing { target, dedupe };
        assert_eq!(
            landing("canvas", "users", Apply::Replace, false),
            l(Target::Create, false)
        );
        assert_eq!(
            landing("canvas", "users", Apply::Replace, true),
            l(Target::Replace, false)
        );
        assert_eq!(
            landing("canvas", "users", Apply::Changes, true),
            l(Target::Merge, true)
        );
        assert_eq!(
            landing("canvas_logs", "web_logs", Apply::Replace, false),
            l(Target::Create, true)
        );
    }
}
