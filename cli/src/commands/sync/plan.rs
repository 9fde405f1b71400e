//! The decisions of `dap sync` for one table, as pure functions over its stored state
//! and what the server answered: which query to run, whether a failure is recovered
//! with a snapshot, whether a result may be recorded, whether the schema must be
//! fetched, and the state afterwards. The chain rules themselves are
//! [`dap_proto::chain`]'s; this adds the state file's view of them.

use std::path::Path;

use dap_proto::chain::{Advance, Chain, ChainError, Step};
use dap_proto::{DataRange, Format, JobId};
use jiff::Timestamp;

use super::state::{RunRecord, SchemaChangeRecord, TableState};
use crate::errors::CliError;
use crate::report::QueryKind;

/// How many runs a table's history keeps.
pub(crate) const HISTORY_LIMIT: usize = 100;

/// The chain of a table and its first step: a snapshot without a stored position or
/// with `force_snapshot`, an incremental from the position otherwise. A format other
/// than the stored one is refused unless a snapshot restarts the chain.
pub(crate) fn start(
    previous: Option<&TableState>,
    format: Format,
    force_snapshot: bool,
    (table, dir): (&str, &Path),
) -> Result<(Chain, Step), CliError> {
    if let Some(p) = previous.filter(|p| p.format != format && !force_snapshot) {
        return Err(CliError::Usage(format!(
            "table '{table}' is synced as {} in {}, not {format}; pass --format {}, or \
             --force-snapshot to restart the chain in {format}",
            p.format,
            dir.display(),
            p.format
        )));
    }
    let chain = Chain::new(format, previous.map(|p| p.next_since));
    let step = chain.next(force_snapshot);
    Ok((chain, step))
}

/// The snapshot that replaces `step` after it failed with `error`, when the error means
/// the position can no longer be continued; `None` when the failure is final.
pub(crate) fn recover(chain: &Chain, step: &Step, error: &CliError) -> Option<Step> {
    error.dap_kind().and_then(|kind| chain.recover(step, kind))
}

/// Checks what the job of `step` covers before anything is downloaded or recorded.
pub(crate) fn accept(chain: &Chain, step: &Step, range: &DataRange) -> Result<Advance, ChainError> {
    chain.accept(step, range)
}

/// Whether the schema must be fetched: a first sync, a new schema version, or no
/// schema file recorded.
pub(crate) fn needs_schema(previous: Option<&TableState>, schema_version: u64) -> bool {
    previous.is_none_or(|p| p.schema_version != schema_version || p.schema_file.is_none())
}

/// An accepted, downloaded result.
pub(crate) struct Completed<'a> {
    /// The finished job.
    pub(crate) job: &'a JobId,
    /// The schema version of its data.
    pub(crate) schema_version: u64,
    /// What its data covers.
    pub(crate) range: DataRange,
    /// What accepting it gave.
    pub(crate) advance: Advance,
    /// The files written, relative to the output directory.
    pub(crate) files: Vec<String>,
    /// The schema file saved by this run, relative to the output directory.
    pub(crate) schema_file: Option<String>,
    /// The local time the run finished (informational only).
    pub(crate) finished_at: Timestamp,
}

/// The state of a table once `done` is recorded, and the schema version change it
/// brought, if any.
pub(crate) fn next_state(
    previous: Option<TableState>,
    format: Format,
    done: Completed<'_>,
) -> (TableState, Option<SchemaChangeRecord>) {
    let change = previous
        .as_ref()
        .map(|p| p.schema_version)
        .filter(|old| *old != done.schema_version)
        .map(|from| SchemaChangeRecord {
            from,
            to: done.schema_version,
            job_id: done.job.to_string(),
        });
    let (old_schema_file, mut schema_changes, mut history) = match previous {
        Some(p) => (p.schema_file, p.schema_changes, p.history),
        None => (None, Vec::new(), Vec::new()),
    };
    schema_changes.extend(change.clone());
    let (at, since, until) = match done.range {
        DataRange::Snapshot { at } => (Some(at), None, None),
        DataRange::Incremental { since, until } => (None, Some(since), Some(until)),
        _ => (None, None, None),
    };
    history.push(RunRecord {
        query: QueryKind::of_range(&done.range),
        job_id: done.job.to_string(),
        at,
        since,
        until,
        schema_version: done.schema_version,
        files: done.files,
        finished_at: done.finished_at,
    });
    let excess = history.len().saturating_sub(HISTORY_LIMIT);
    history.drain(..excess);
    let state = TableState {
        format,
        next_since: done.advance.position,
        schema_version: done.schema_version,
        schema_file: done.schema_file.or(old_schema_file),
        schema_changes,
        history,
    };
    (state, change)
}

#[cfg(test)]
mod tests {
    use dap_proto::chain::{Apply, Reason, Recovery};
    use dap_proto::{DapErrorKind, Query};

    use super::*;

    const T0: &str = "2026-11-28T00:00:00Z";
    const T1: &str = "2026-11-28T01:00:00Z";

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn stored(format: Format, next_since: &str, schema_version: u64) -> TableState {
        TableState {
            format,
            next_since: ts(next_since),
            schema_version,
            schema_file: Some(format!("t_schema_version_{schema_version}.json")),
            schema_changes: Vec::new(),
            history: Vec::new(),
        }
    }

    fn done(range: DataRange, advance: Advance, schema_file: Option<&str>) -> Completed<'static> {
        static JOB: std::sync::LazyLock<JobId> = std::sync::LazyLock::new(|| JobId::new("job-2"));
        Completed {
            job: &JOB,
            schema_version: 2,
            range,
            advance,
            files: vec!["job_job-2/a.json.gz".to_owned()],
            schema_file: schema_file.map(str::to_owned),
            finished_at: ts(T1),
        }
    }

    fn start_of(previous: Option<&TableState>, format: Format, force: bool) -> (Chain, Step) {
        start(previous, format, force, ("t", Path::new("out"))).unwrap()
    }

    #[test]
    fn a_first_sync_snapshots_and_a_stored_position_continues() {
        let (_, step) = start_of(None, Format::Csv, false);
        assert_eq!(step.query, Query::snapshot(Format::Csv));
        assert_eq!(step.reason, Reason::First);
        let p = stored(Format::Csv, T0, 2);
        let (_, step) = start_of(Some(&p), Format::Csv, false);
        assert_eq!(step.query, Query::incremental(Format::Csv, ts(T0)));
        let (_, step) = start_of(Some(&p), Format::Csv, true);
        assert_eq!(step.reason, Reason::Forced);
    }

    #[test]
    fn a_format_change_needs_a_forced_snapshot() {
        let p = stored(Format::Jsonl, T0, 2);
        let err = start(Some(&p), Format::Csv, false, ("t", Path::new("out"))).unwrap_err();
        assert!(err.to_string().contains("--force-snapshot"), "{err}");
        let (chain, step) = start_of(Some(&p), Format::Csv, true);
        assert_eq!(step.query, Query::snapshot(Format::Csv));
        // The new chain still refuses to move behind the stored position.
        assert_eq!(chain.position(), Some(ts(T0)));
    }

    #[test]
    fn snapshot_required_and_out_of_range_recover_with_a_snapshot() {
        let p = stored(Format::Jsonl, T0, 2);
        let (chain, step) = start_of(Some(&p), Format::Jsonl, false);
        let kind = DapErrorKind::SnapshotRequired {
            since: None,
            until: None,
        };
        let retry = chain.recover(&step, &kind).unwrap();
        assert_eq!(retry.reason, Reason::Recover(Recovery::SnapshotRequired));
        let other = CliError::Other("disk full".to_owned());
        assert_eq!(recover(&chain, &step, &other), None);
    }

    #[test]
    fn stale_or_mismatched_results_are_refused_for_every_snapshot_path() {
        let p = stored(Format::Jsonl, T1, 2);
        let stale = DataRange::Snapshot { at: ts(T0) };
        // --force-snapshot and the recovery after SnapshotRequired take the same check.
        let (chain, forced) = start_of(Some(&p), Format::Jsonl, true);
        let recovery = chain
            .recover(
                &chain.next(false),
                &DapErrorKind::OutOfRange {
                    since: None,
                    until: None,
                },
            )
            .unwrap();
        for step in [forced, recovery] {
            assert!(matches!(
                accept(&chain, &step, &stale),
                Err(ChainError::StaleSnapshot { .. })
            ));
        }
        let (chain, step) = start_of(Some(&p), Format::Jsonl, false);
        let gap = DataRange::Incremental {
            since: ts("2026-11-28T02:00:00Z"),
            until: ts("2026-11-28T03:00:00Z"),
        };
        assert!(accept(&chain, &step, &gap).is_err());
    }

    #[test]
    fn the_next_state_moves_to_the_accepted_position_and_records_the_run() {
        let p = stored(Format::Jsonl, T0, 1);
        let range = DataRange::Incremental {
            since: ts(T0),
            until: ts(T1),
        };
        let (chain, step) = start_of(Some(&p), Format::Jsonl, false);
        let advance = accept(&chain, &step, &range).unwrap();
        assert_eq!(advance.apply, Apply::Changes);
        assert!(needs_schema(Some(&p), 2));
        assert!(!needs_schema(Some(&p), 1));
        let (state, change) = next_state(
            Some(p),
            Format::Jsonl,
            done(range, advance, Some("t_schema_version_2.json")),
        );
        assert_eq!(state.next_since, ts(T1));
        assert_eq!(state.schema_version, 2);
        assert_eq!(
            state.schema_file.as_deref(),
            Some("t_schema_version_2.json")
        );
        let change = change.unwrap();
        assert_eq!((change.from, change.to), (1, 2));
        assert_eq!(state.schema_changes, [change]);
        assert_eq!(state.history.len(), 1);
        assert_eq!(state.history[0].query, QueryKind::Incremental);
        assert_eq!(state.history[0].until, Some(ts(T1)));
    }

    #[test]
    fn history_keeps_the_most_recent_runs() {
        let mut p = stored(Format::Jsonl, T0, 2);
        let range = DataRange::Snapshot { at: ts(T1) };
        for _ in 0..HISTORY_LIMIT + 5 {
            let (chain, step) = start_of(Some(&p), Format::Jsonl, true);
            let advance = accept(&chain, &step, &range).unwrap();
            p = next_state(Some(p), Format::Jsonl, done(range, advance, None)).0;
        }
        assert_eq!(p.history.len(), HISTORY_LIMIT);
        assert_eq!(p.schema_file.as_deref(), Some("t_schema_version_2.json"));
    }
}
