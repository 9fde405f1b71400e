//! The sync state file, `<dir>/dap-sync-state.json`: where each table of a directory
//! stands.
//!
//! Each table has its own entry. A run changes only the entries of the tables it
//! synced: under the state lock it re-reads the file, replaces that one entry and
//! rewrites the file atomically, so concurrent runs on different tables of one
//! directory keep each other's progress. Paths in the file are relative to the output
//! directory.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use dap_proto::Format;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::errors::CliError;
use crate::jsonfile;
use crate::lock::DirLock;
use crate::report::QueryKind;

/// Name of the state file inside the output directory.
pub(crate) const STATE_FILE: &str = "dap-sync-state.json";
const STATE_VERSION: u32 = 1;

/// The whole state file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct SyncState {
    /// Format version of this file.
    pub(crate) version: u32,
    /// Namespace -> table -> position.
    #[serde(default)]
    pub(crate) namespaces: BTreeMap<String, BTreeMap<String, TableState>>,
}

/// Where one table stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct TableState {
    /// The data format of the chain.
    #[serde(with = "format_name")]
    pub(crate) format: Format,
    /// The `since` of the next incremental: the last snapshot's `at` or incremental's
    /// `until`.
    pub(crate) next_since: Timestamp,
    /// The schema version of the last data.
    pub(crate) schema_version: u64,
    /// The last schema file saved, relative to the output directory.
    #[serde(default)]
    pub(crate) schema_file: Option<String>,
    /// Schema version changes seen.
    #[serde(default)]
    pub(crate) schema_changes: Vec<SchemaChangeRecord>,
    /// The most recent runs, oldest first.
    #[serde(default)]
    pub(crate) history: Vec<RunRecord>,
}

/// A schema version change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SchemaChangeRecord {
    /// The version before.
    pub(crate) from: u64,
    /// The version after.
    pub(crate) to: u64,
    /// The job whose data first had the new version.
    pub(crate) job_id: String,
}

/// One completed query of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RunRecord {
    /// What the query returned.
    pub(crate) query: QueryKind,
    /// The job.
    pub(crate) job_id: String,
    /// Snapshot instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) at: Option<Timestamp>,
    /// Incremental start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) since: Option<Timestamp>,
    /// Incremental end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) until: Option<Timestamp>,
    /// Schema version of the data.
    pub(crate) schema_version: u64,
    /// Files written, relative to the output directory.
    pub(crate) files: Vec<String>,
    /// Local time the run finished (informational only; never used as a position).
    pub(crate) finished_at: Timestamp,
}

/// A [`Format`] as its wire name.
mod format_name {
    use dap_proto::Format;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(format: &Format, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(format.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Format, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl SyncState {
    /// Reads the state in `dir`; a missing file is an empty state.
    pub(crate) fn load(dir: &Path) -> Result<Self, CliError> {
        let path = dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    version: STATE_VERSION,
                    ..Self::default()
                });
            }
            Err(e) => return Err(CliError::io("cannot read the sync state", path, e)),
        };
        Self::parse(&bytes)
            .map_err(|why| CliError::Other(format!("the sync state {} {why}", path.display())))
    }

    /// The state in `bytes`, with paths made relative to the output directory.
    fn parse(bytes: &[u8]) -> Result<Self, String> {
        let mut state: Self = serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "is not valid ({e}); restore it from a backup, or move it away to start over \
                 with fresh snapshots"
            )
        })?;
        if state.version > STATE_VERSION {
            return Err(format!(
                "was written by a newer dap (format {}); upgrade dap",
                state.version
            ));
        }
        // Schema files always sit in the output directory itself; older versions
        // stored their path as given on the command line.
        for entry in state.namespaces.values_mut().flat_map(|t| t.values_mut()) {
            entry.schema_file = entry.schema_file.take().and_then(|p| {
                Path::new(&p)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            });
        }
        Ok(state)
    }

    /// The entry of `namespace.table`, if it was synced before.
    pub(crate) fn table(&self, namespace: &str, table: &str) -> Option<&TableState> {
        self.namespaces.get(namespace).and_then(|t| t.get(table))
    }

    /// Sets the entry of `namespace.table`, leaving every other entry as it is.
    fn set(&mut self, namespace: &str, table: &str, entry: TableState) {
        self.namespaces
            .entry(namespace.to_owned())
            .or_default()
            .insert(table.to_owned(), entry);
    }

    /// Writes the state to `dir` atomically.
    fn save(&self, dir: &Path) -> Result<(), CliError> {
        let path = dir.join(STATE_FILE);
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| CliError::Other(format!("cannot serialise the sync state: {e}")))?;
        bytes.push(b'\n');
        jsonfile::write_atomic(&path, &bytes)
            .map_err(|e| CliError::io("cannot write the sync state", path, e))
    }
}

/// Records `entry` as the state of `namespace.table` in `dir`: under the state lock,
/// re-reads the file, replaces that entry and writes the file back.
pub(crate) async fn record(
    dir: &Path,
    namespace: &str,
    table: &str,
    entry: TableState,
    lock_timeout: Duration,
) -> Result<(), CliError> {
    let _lock = DirLock::sync_state(dir, lock_timeout).await?;
    let mut state = SyncState::load(dir)?;
    state.set(namespace, table, entry);
    state.save(dir)?;
    debug!(
        "Saved the position of table '{table}' in {}",
        dir.join(STATE_FILE).display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(next_since: &str) -> TableState {
        TableState {
            format: Format::Jsonl,
            next_since: next_since.parse().unwrap(),
            schema_version: 2,
            schema_file: Some("users_schema_version_2.json".to_owned()),
            schema_changes: Vec::new(),
            history: Vec::new(),
        }
    }

    #[tokio::test]
    async fn recording_one_table_keeps_the_entries_another_run_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        record(
            p,
            "canvas",
            "users",
            entry("2026-01-01T00:00:00Z"),
            Duration::ZERO,
        )
        .await
        .unwrap();
        // Another run records its table meanwhile...
        record(
            p,
            "canvas",
            "courses",
            entry("2026-01-02T00:00:00Z"),
            Duration::ZERO,
        )
        .await
        .unwrap();
        // ... and the first run's next table does not undo it.
        record(
            p,
            "canvas",
            "users",
            entry("2026-01-03T00:00:00Z"),
            Duration::ZERO,
        )
        .await
        .unwrap();
        let state = SyncState::load(p).unwrap();
        assert_eq!(
            state.table("canvas", "courses"),
            Some(&entry("2026-01-02T00:00:00Z"))
        );
        assert_eq!(
            state.table("canvas", "users"),
            Some(&entry("2026-01-03T00:00:00Z"))
        );
    }

    #[test]
    fn schema_files_of_older_state_files_become_relative_to_the_directory() {
        let old = br#"{"version": 1, "namespaces": {"canvas": {"users": {
            "format": "jsonl", "next_since": "2026-01-01T00:00:00Z", "schema_version": 2,
            "schema_file": "some/out/users_schema_version_2.json"}}}}"#;
        let state = SyncState::parse(old).unwrap();
        let users = state.table("canvas", "users").unwrap();
        assert_eq!(
            users.schema_file.as_deref(),
            Some("users_schema_version_2.json")
        );
        assert_eq!(users.format, Format::Jsonl);
        let bad_format = String::from_utf8_lossy(old).replace("jsonl", "xml");
        assert!(SyncState::parse(bad_format.as_bytes()).is_err());
        let newer = br#"{"version": 99, "namespaces": {}}"#;
        assert!(SyncState::parse(newer).unwrap_err().contains("newer dap"));
    }
}
