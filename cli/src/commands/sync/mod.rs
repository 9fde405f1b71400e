//! `dap sync`: keep a directory up to date with a chain of queries.
//!
//! The first run of a table takes a snapshot; every later run takes an incremental
//! from the stored position: the previous snapshot's `at` or incremental's `until`, as
//! the server reported it (never the local clock). The position lives in
//! `<dir>/dap-sync-state.json` ([`state`]), recorded after each table whose files are all
//! safely on disk, so an interrupted or failed run never skips data: the next run
//! repeats the last query. A `SnapshotRequired` (the table was reloaded) or
//! `OutOfRange` (the position is older than the retention) answer is followed by a
//! fresh snapshot. A schema version change is recorded and the new schema saved.
//!
//! Every result is checked against its query before anything is downloaded or
//! recorded ([`plan::accept`]): DAP answers an identical query with the job it already
//! has, so a snapshot asked for now may be as of an earlier instant; one older than
//! the stored position is refused (exit code 5) and the state stays as it was. The
//! decisions are in [`plan`], pure; this module runs them.

pub(crate) mod plan;
pub(crate) mod state;

use std::path::Path;

use dap_hyper::{Client, DownloadOptions, DownloadedFile};
use dap_proto::chain::{Chain, Reason, Recovery, Step};
use dap_proto::{Format, QueryResult};
use jiff::Timestamp;
use serde_json::json;
use tracing::{info, warn};

use crate::args::SyncArgs;
use crate::batch::{Batch, Outcome, resolve_tables};
use crate::commands::data::download_options;
use crate::commands::schema::save_schema;
use crate::context::Context;
use crate::errors::CliError;
use crate::fetch;
use crate::lock::DirLock;
use crate::report::{QueryKind, SchemaChange, TableReport, display_path};
use state::{STATE_FILE, SyncState};

/// `dap sync`.
pub(crate) async fn run(ctx: &Context<'_>, args: &SyncArgs) -> Result<Outcome, CliError> {
    let q = &args.query;
    let dir = &q.output_directory;
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::io("cannot create the output directory", dir, e))?;
    // A state file that cannot be read stops the run before anything is queried.
    SyncState::load(dir)?;
    let client = ctx.client()?;
    let tables = resolve_tables(&client, &q.tables.namespace, &q.tables.table).await?;
    let sync = TableSync {
        ctx,
        client: &client,
        args,
        format: Format::from(q.format),
        options: download_options(q),
    };
    let mut batch = Batch::new("sync", &tables, ctx.hints);
    batch
        .run_each(async |table: &str| sync.table(table).await)
        .await;
    Ok(batch.outcome(json!({
        "command": "sync",
        "namespace": q.tables.namespace,
        "format": sync.format.as_str(),
        "output_directory": display_path(dir),
        "state_file": display_path(&dir.join(STATE_FILE)),
    })))
}

/// Syncs one table after another with the same settings.
struct TableSync<'a> {
    ctx: &'a Context<'a>,
    client: &'a Client,
    args: &'a SyncArgs,
    format: Format,
    options: DownloadOptions,
}

impl TableSync<'_> {
    fn namespace(&self) -> &str {
        &self.args.query.tables.namespace
    }

    fn dir(&self) -> &Path {
        &self.args.query.output_directory
    }

    /// Syncs `table`: under its lock, plan, query, check, download, save the schema if
    /// needed, and record the new position.
    async fn table(&self, table: &str) -> Result<TableReport, CliError> {
        let (namespace, dir) = (self.namespace(), self.dir());
        let timeout = self.ctx.lock_timeout();
        let _lock = DirLock::table(dir, namespace, table, timeout).await?;
        let previous = SyncState::load(dir)?.table(namespace, table).cloned();
        let (chain, step) = plan::start(
            previous.as_ref(),
            self.format,
            self.args.force_snapshot,
            (table, dir),
        )?;
        let (step, mut result) = self.query(&chain, step, table).await?;
        let advance = plan::accept(&chain, &step, &result.range)?;
        let got = fetch::download(
            self.client,
            (namespace, table),
            &mut result,
            dir,
            &self.options,
            self.ctx.job_dirs,
        )
        .await?;
        let schema_file = if plan::needs_schema(previous.as_ref(), result.schema_version) {
            Some(self.save_schema(table, &result).await?)
        } else {
            None
        };
        let done = plan::Completed {
            job: &result.job,
            schema_version: result.schema_version,
            range: result.range,
            advance,
            files: relative_paths(dir, &got.files),
            schema_file,
            finished_at: Timestamp::now(),
        };
        let (entry, change) = plan::next_state(previous, self.format, done);
        if let Some(c) = &change {
            warn!(
                "Table '{table}': schema version changed from {} to {}; the new schema is saved \
                 in {}",
                c.from,
                c.to,
                entry
                    .schema_file
                    .as_deref()
                    .unwrap_or("the output directory")
            );
        }
        let mut report = TableReport::ok(table).with_result(&result, &got.dir, got.files);
        report.reason = Some(step.reason.to_string());
        report.schema_changed = change.map(|c| SchemaChange {
            from: c.from,
            to: c.to,
        });
        report.schema_file = entry
            .schema_file
            .as_ref()
            .map(|f| display_path(&dir.join(f)));
        let next_since = entry.next_since;
        state::record(dir, namespace, table, entry, timeout).await?;
        info!("Table '{table}' is synced; the next run continues from {next_since}");
        Ok(report)
    }

    /// Runs `step`, and the snapshot that replaces it when the server says the
    /// position can no longer be continued.
    async fn query(
        &self,
        chain: &Chain,
        step: Step,
        table: &str,
    ) -> Result<(Step, QueryResult), CliError> {
        info!(
            "Table '{table}': {} ({})",
            QueryKind::of_query(&step.query),
            step.reason
        );
        let failure = match fetch::query(self.client, self.namespace(), table, step.query).await {
            Ok(result) => return Ok((step, result)),
            Err(e) => e,
        };
        let Some(retry) = plan::recover(chain, &step, &failure) else {
            return Err(failure);
        };
        let why = match retry.reason {
            Reason::Recover(Recovery::OutOfRange) => {
                "has a stored position older than DAP retains (OutOfRange)"
            }
            _ => {
                "was reloaded by DAP (SnapshotRequired): the stored position can no longer be \
                 continued"
            }
        };
        warn!(
            "Table '{table}' {why}, so a fresh snapshot is taken now. Replace your copy of the \
             table with this snapshot."
        );
        let result = fetch::query(self.client, self.namespace(), table, retry.query).await?;
        Ok((retry, result))
    }

    /// Fetches and saves the schema of `table`; returns the file name.
    async fn save_schema(&self, table: &str, result: &QueryResult) -> Result<String, CliError> {
        let (schema, path) = save_schema(self.client, self.namespace(), table, self.dir()).await?;
        if schema.version != result.schema_version {
            warn!(
                "Table '{table}': the data has schema version {} but the schema endpoint \
                 returned version {}",
                result.schema_version, schema.version
            );
        }
        Ok(path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default())
    }
}

/// The paths of `files`, relative to the output directory.
fn relative_paths(dir: &Path, files: &[DownloadedFile]) -> Vec<String> {
    files
        .iter()
        .map(|f| {
            f.path
                .strip_prefix(dir)
                .unwrap_or(&f.path)
                .display()
                .to_string()
        })
        .collect()
}
