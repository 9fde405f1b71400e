//! `dap sync`: keep a directory up to date with a chain of queries.
//!
//! The first run of a table takes a snapshot; every later run takes an incremental
//! from the stored position: the previous snapshot's `at` or incremental's `until`, as
//! the server reported it (never the local clock). The position lives in
//! `<dir>/dap-sync-state.json`, rewritten atomically after each table whose files are
//! all safely on disk, so an interrupted or failed run never skips data: the next run
//! repeats the last query. A `SnapshotRequired` (the table was reloaded) or
//! `OutOfRange` (the position is older than the retention) answer is followed by a
//! fresh snapshot. A schema version change is recorded and the new schema saved.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use dap_hyper::Client;
use dap_proto::{DapErrorKind, DataRange, Format, Query};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, warn};

use crate::args::SyncArgs;
use crate::commands::{self, Batch, Outcome, resolve_tables};
use crate::errors::{CliError, HintContext};
use crate::jsonfile;
use crate::progress;
use crate::report::{SchemaChange, TableReport, display_path};

/// Name of the state file inside the output directory.
pub(crate) const STATE_FILE: &str = "dap-sync-state.json";
const STATE_VERSION: u32 = 1;
const HISTORY_LIMIT: usize = 100;

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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct TableState {
    /// The data format of the chain.
    pub(crate) format: String,
    /// The `since` of the next incremental: the last snapshot's `at` or incremental's
    /// `until`.
    pub(crate) next_since: Timestamp,
    /// The schema version of the last data.
    pub(crate) schema_version: u64,
    /// The last schema file saved.
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SchemaChangeRecord {
    /// The version before.
    pub(crate) from: u64,
    /// The version after.
    pub(crate) to: u64,
    /// The job whose data first had the new version.
    pub(crate) job_id: String,
}

/// One completed query of a table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RunRecord {
    /// `snapshot` or `incremental`.
    pub(crate) query: String,
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
        let state: Self = serde_json::from_slice(&bytes).map_err(|e| {
            CliError::Other(format!(
                "the sync state {} is not valid ({e}); restore it from a backup, or move it away to start over with fresh snapshots",
                path.display()
            ))
        })?;
        if state.version > STATE_VERSION {
            return Err(CliError::Other(format!(
                "the sync state {} was written by a newer dap (format {}); upgrade dap",
                path.display(),
                state.version
            )));
        }
        Ok(state)
    }

    /// Writes the state to `dir` atomically.
    pub(crate) fn save(&self, dir: &Path) -> Result<(), CliError> {
        let path = dir.join(STATE_FILE);
        let mut bytes = serde_json::to_vec_pretty(self)
            .map_err(|e| CliError::Other(format!("cannot serialise the sync state: {e}")))?;
        bytes.push(b'\n');
        jsonfile::write_atomic(&path, &bytes)
            .map_err(|e| CliError::io("cannot write the sync state", path, e))
    }
}

/// `dap sync`.
pub(crate) async fn sync(
    client: &Client,
    args: &SyncArgs,
    hints: HintContext<'_>,
) -> Result<Outcome, CliError> {
    let q = &args.query;
    let dir = &q.output_directory;
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::io("cannot create the output directory", dir, e))?;
    let mut state = SyncState::load(dir)?;
    let tables = resolve_tables(client, &q.namespace, &q.table).await?;
    let options = commands::download_options(q);
    let format = Format::from(q.format);
    let mut batch = Batch::new("sync", &tables, hints);
    for (i, table) in tables.iter().enumerate() {
        if !batch.start(i) {
            continue;
        }
        let started = Instant::now();
        let previous = state
            .namespaces
            .get(&q.namespace)
            .and_then(|t| t.get(table))
            .cloned();
        let result = sync_table(
            client,
            &q.namespace,
            table,
            format,
            dir,
            &options,
            previous,
            args.force_snapshot,
        )
        .await;
        let result = match result {
            Ok((table_state, mut report)) => {
                state
                    .namespaces
                    .entry(q.namespace.clone())
                    .or_default()
                    .insert(table.clone(), table_state);
                report.elapsed_ms = Some(progress::millis_since(started));
                state.save(dir).map(|()| report)
            }
            Err(e) => Err(e),
        };
        batch.finish(i, result);
    }
    let ok = batch.summary();
    Ok(Outcome {
        json: json!({
            "command": "sync",
            "ok": ok,
            "namespace": q.namespace,
            "format": format.as_str(),
            "output_directory": display_path(dir),
            "state_file": display_path(&dir.join(STATE_FILE)),
            "tables": batch.reports,
            "failed": batch.failed(),
        }),
        ok,
    })
}

#[allow(clippy::too_many_arguments)]
async fn sync_table(
    client: &Client,
    namespace: &str,
    table: &str,
    format: Format,
    dir: &Path,
    options: &dap_hyper::DownloadOptions,
    previous: Option<TableState>,
    force_snapshot: bool,
) -> Result<(TableState, TableReport), CliError> {
    let (query, reason) = match &previous {
        None => (
            Query::snapshot(format),
            "first sync of the table".to_owned(),
        ),
        Some(_) if force_snapshot => (
            Query::snapshot(format),
            "--force-snapshot was given".to_owned(),
        ),
        Some(p) if p.format != format.as_str() => {
            return Err(CliError::Usage(format!(
                "table '{table}' is synced as {} in {}, not {format}; pass --format {}, or \
                 --force-snapshot to restart the chain in {format}",
                p.format,
                dir.display(),
                p.format
            )));
        }
        Some(p) => (
            Query::incremental(format, p.next_since),
            format!("continuing from {}", p.next_since),
        ),
    };
    info!(
        "Table '{table}': {} ({reason})",
        commands::query_kind(&query)
    );
    let (fetched, reason) = match commands::fetch(client, namespace, table, query, dir, options)
        .await
    {
        Ok(f) => (f, reason),
        Err(e) => {
            let (warning, reason) = match e.dap_kind() {
                Some(DapErrorKind::SnapshotRequired { .. }) => (
                    "was reloaded by DAP (SnapshotRequired): the stored position can no longer be \
                     continued",
                    "the server required a new snapshot (SnapshotRequired)",
                ),
                Some(DapErrorKind::OutOfRange { .. }) => (
                    "has a stored position older than DAP retains (OutOfRange)",
                    "the stored position was out of range (OutOfRange)",
                ),
                _ => return Err(e),
            };
            warn!(
                "Table '{table}' {warning}, so a fresh snapshot is taken now. Replace your copy \
                 of the table with this snapshot."
            );
            let f = commands::fetch(
                client,
                namespace,
                table,
                Query::snapshot(format),
                dir,
                options,
            )
            .await?;
            (f, reason.to_owned())
        }
    };
    let result = &fetched.result;
    let old_version = previous.as_ref().map(|p| p.schema_version);
    let mut schema_file = previous.as_ref().and_then(|p| p.schema_file.clone());
    let mut changes = previous
        .as_ref()
        .map(|p| p.schema_changes.clone())
        .unwrap_or_default();
    let mut schema_changed = None;
    if old_version != Some(result.schema_version) || schema_file.is_none() {
        let schema = client
            .table_schema(namespace, table)
            .await
            .map_err(|e| CliError::api(format!("fetching the schema of table '{table}'"), e))?;
        let path = commands::write_schema(dir, table, &schema)?;
        info!("JSON schema downloaded to file {}", path.display());
        if schema.version != result.schema_version {
            warn!(
                "Table '{table}': the data has schema version {} but the schema endpoint returned version {}",
                result.schema_version, schema.version
            );
        }
        schema_file = Some(display_path(&path));
        if let Some(old) = old_version.filter(|v| *v != result.schema_version) {
            warn!(
                "Table '{table}': schema version changed from {old} to {}; the new schema is saved in {}",
                result.schema_version,
                path.display()
            );
            changes.push(SchemaChangeRecord {
                from: old,
                to: result.schema_version,
                job_id: result.job.to_string(),
            });
            schema_changed = Some(SchemaChange {
                from: old,
                to: result.schema_version,
            });
        }
    }
    let (at, since, until) = match result.range {
        DataRange::Snapshot { at } => (Some(at), None, None),
        DataRange::Incremental { since, until } => (None, Some(since), Some(until)),
        _ => (None, None, None),
    };
    let mut history = previous.map(|p| p.history).unwrap_or_default();
    history.push(RunRecord {
        query: if at.is_some() {
            "snapshot"
        } else {
            "incremental"
        }
        .to_owned(),
        job_id: result.job.to_string(),
        at,
        since,
        until,
        schema_version: result.schema_version,
        files: fetched
            .files
            .iter()
            .map(|f| {
                f.path
                    .strip_prefix(dir)
                    .unwrap_or(&f.path)
                    .display()
                    .to_string()
            })
            .collect(),
        finished_at: Timestamp::now(),
    });
    if history.len() > HISTORY_LIMIT {
        let cut = history.len() - HISTORY_LIMIT;
        history.drain(..cut);
    }
    let table_state = TableState {
        format: format.as_str().to_owned(),
        next_since: result.range.next_since(),
        schema_version: result.schema_version,
        schema_file: schema_file.clone(),
        schema_changes: changes,
        history,
    };
    info!(
        "Table '{table}' is synced; the next run continues from {}",
        table_state.next_since
    );
    let mut report = TableReport::ok(table).with_result(result, &fetched.dir, &fetched.files);
    report.reason = Some(reason);
    report.schema_changed = schema_changed;
    report.schema_file = schema_file;
    Ok((table_state, report))
}
