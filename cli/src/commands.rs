//! `list`, `schema`, `snapshot` and `incremental`, plus the pieces `sync` and `demo`
//! share: table resolution, one query with its download, the schema file, the batch
//! of tables run one after another.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use dap_hyper::{Client, DownloadOptions, DownloadedFile};
use dap_proto::{DataRange, Format, Query, QueryResult, TableSchema};
use serde_json::json;
use tracing::{error, info, warn};

use crate::args::{IncrementalArgs, ListArgs, QueryArgs, SchemaArgs};
use crate::errors::{CliError, HintContext};
use crate::jsonfile;
use crate::progress::{self, DownloadWatch, JobSpinner};
use crate::report::{ErrorReport, TableReport, display_path};
use crate::timestamp::parse_instant;

/// What a command produced: its JSON result and whether everything succeeded.
pub(crate) struct Outcome {
    /// The `--json` document.
    pub(crate) json: serde_json::Value,
    /// Whether the run succeeded as a whole.
    pub(crate) ok: bool,
}

/// Job directories being written; an interrupt removes the temporary files in them.
static ACTIVE_DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Removes temporary (`*.partial`, `.*.tmp*`) files from every job directory this run
/// wrote to, and directories left empty. Called after an interrupt, once nothing
/// writes any more.
pub(crate) fn remove_partial_files() -> usize {
    let dirs = match ACTIVE_DIRS.lock() {
        Ok(mut d) => std::mem::take(&mut *d),
        Err(_) => return 0,
    };
    let mut removed = 0;
    for dir in dirs {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if progress::is_temporary(&name.to_string_lossy())
                    && std::fs::remove_file(entry.path()).is_ok()
                {
                    removed += 1;
                }
            }
        }
        // Only succeeds when empty.
        let _ = std::fs::remove_dir(&dir);
    }
    removed
}

fn register_dir(dir: &Path) {
    if let Ok(mut d) = ACTIVE_DIRS.lock() {
        if !d.iter().any(|x| x == dir) {
            d.push(dir.to_path_buf());
        }
    }
}

/// `all`, one name, or a comma list (trimmed, empty items and duplicates dropped).
pub(crate) async fn resolve_tables(
    client: &Client,
    namespace: &str,
    spec: &str,
) -> Result<Vec<String>, CliError> {
    if spec.trim().eq_ignore_ascii_case("all") {
        let tables = client.list_tables(namespace).await.map_err(|e| {
            CliError::api(format!("listing the tables of namespace '{namespace}'"), e)
        })?;
        info!(
            "Namespace '{namespace}' has {} table(s): {}",
            tables.len(),
            tables.join(", ")
        );
        return Ok(tables);
    }
    let mut tables: Vec<String> = Vec::new();
    for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !tables.iter().any(|t| t == name) {
            tables.push(name.to_owned());
        }
    }
    if tables.is_empty() {
        return Err(CliError::Usage(format!(
            "--table {spec:?} names no table; give a name, a comma separated list or 'all'"
        )));
    }
    Ok(tables)
}

/// Tables run one after another: logging, failures, the stop on a fatal error.
pub(crate) struct Batch<'a> {
    op: &'static str,
    tables: &'a [String],
    hints: HintContext<'a>,
    /// What happened to each table.
    pub(crate) reports: Vec<TableReport>,
    fatal: Option<String>,
}

impl<'a> Batch<'a> {
    /// A batch of `op` over `tables`.
    pub(crate) fn new(op: &'static str, tables: &'a [String], hints: HintContext<'a>) -> Self {
        Self {
            op,
            tables,
            hints,
            reports: Vec::new(),
            fatal: None,
        }
    }

    fn position(&self, i: usize) -> String {
        if self.tables.len() > 1 {
            format!(" ({} of {})", i + 1, self.tables.len())
        } else {
            String::new()
        }
    }

    /// Logs the start of table `i`; returns false when a fatal error stopped the batch.
    pub(crate) fn start(&mut self, i: usize) -> bool {
        let table = &self.tables[i];
        if self.fatal.is_some() {
            self.reports.push(TableReport::skipped(table));
            return false;
        }
        info!(
            "Starting {} of table '{table}'{}",
            self.op,
            self.position(i)
        );
        true
    }

    /// Records the end of table `i`.
    pub(crate) fn finish(&mut self, i: usize, result: Result<TableReport, CliError>) {
        let table = &self.tables[i];
        match result {
            Ok(report) => {
                info!(
                    "Finished {} of table '{table}'{}",
                    self.op,
                    self.position(i)
                );
                self.reports.push(report);
            }
            Err(e) => {
                error!(
                    "Operation {} failed for table '{table}'{}: {}",
                    self.op,
                    self.position(i),
                    e.render(&self.hints)
                );
                if e.is_fatal() {
                    self.fatal = Some(e.to_string());
                    if i + 1 < self.tables.len() {
                        error!(
                            "Stopping: this error affects every table, so the remaining {} table(s) were not attempted",
                            self.tables.len() - i - 1
                        );
                    }
                }
                self.reports.push(TableReport::failed(
                    table,
                    ErrorReport::new(&e, &self.hints),
                ));
            }
        }
    }

    /// Logs the summary; returns whether every table succeeded.
    pub(crate) fn summary(&self) -> bool {
        let failed: Vec<&str> = self
            .reports
            .iter()
            .filter(|r| r.status != "ok")
            .map(|r| r.table.as_str())
            .collect();
        if failed.is_empty() {
            if self.tables.len() > 1 {
                info!(
                    "Operation {} completed: {} table(s) succeeded.",
                    self.op,
                    self.tables.len()
                );
            }
            true
        } else {
            error!(
                "Operation {} completed with issues: {} failed out of {} table(s): {}",
                self.op,
                failed.len(),
                self.tables.len(),
                failed.join(", ")
            );
            false
        }
    }

    /// The names of the tables that did not succeed.
    pub(crate) fn failed(&self) -> Vec<String> {
        self.reports
            .iter()
            .filter(|r| r.status != "ok")
            .map(|r| r.table.clone())
            .collect()
    }
}

/// One query, waited for and downloaded.
pub(crate) struct Fetched {
    /// The table.
    pub(crate) table: String,
    /// The finished job.
    pub(crate) result: QueryResult,
    /// The files written, in object order.
    pub(crate) files: Vec<DownloadedFile>,
    /// The job directory.
    pub(crate) dir: PathBuf,
    /// Time from posting the query to the job's end.
    pub(crate) query_ms: u64,
    /// Time spent downloading.
    pub(crate) download_ms: u64,
}

/// The kind of a query, for messages.
pub(crate) fn query_kind(query: &Query) -> &'static str {
    match query.range() {
        dap_proto::QueryRange::Snapshot => "snapshot",
        _ => "incremental",
    }
}

/// Describes what a finished job covers.
pub(crate) fn describe_range(range: &DataRange) -> String {
    match range {
        DataRange::Snapshot { at } => format!("at {at}"),
        DataRange::Incremental { since, until } => format!("since {since} until {until}"),
        _ => String::new(),
    }
}

/// Runs `query` on `namespace.table`, waits for the job, and downloads its objects
/// into `out_dir/job_<id>/`.
pub(crate) async fn fetch(
    client: &Client,
    namespace: &str,
    table: &str,
    query: Query,
    out_dir: &Path,
    download: &DownloadOptions,
) -> Result<Fetched, CliError> {
    let kind = query_kind(&query);
    let started = Instant::now();
    let result = {
        let _spinner = JobSpinner::start(format!("{namespace}.{table}: {kind} job running"));
        client
            .query(namespace, table, query)
            .await
            .map_err(|e| CliError::api(format!("{kind} query of table '{table}'"), e))?
    };
    let query_ms = progress::millis_since(started);
    info!(
        "Query job {} for table '{table}' is complete: {} object(s), schema version {}, {}",
        result.job,
        result.objects.len(),
        result.schema_version,
        describe_range(&result.range)
    );
    std::fs::create_dir_all(out_dir)
        .map_err(|e| CliError::io("cannot create the output directory", out_dir, e))?;
    let dir = out_dir.join(dap_proto::download::job_dir(&result.job));
    register_dir(&dir);
    let started = Instant::now();
    if !progress::enabled() {
        info!(
            "Downloading {} object(s) of job {} to {}",
            result.objects.len(),
            result.job,
            dir.display()
        );
    }
    let files = {
        let _watch = DownloadWatch::start(
            format!("{namespace}.{table}:"),
            dir.clone(),
            result.objects.len(),
        );
        client
            .download(&result, out_dir, download)
            .await
            .map_err(|e| CliError::api(format!("downloading the data of table '{table}'"), e))?
    };
    let elapsed = started.elapsed();
    let bytes: u64 = files.iter().map(|f| f.bytes).sum();
    info!(
        "Files from server downloaded to folder: {} ({} file(s), {} at {})",
        dir.display(),
        files.len(),
        progress::human_bytes(bytes),
        progress::human_rate(bytes, elapsed)
    );
    for f in files
        .iter()
        .filter(|f| f.resumes > 0 || f.url_refreshes > 0)
    {
        warn!(
            "{}: recovered from {} dropped connection(s) and {} expired URL(s)",
            f.path.display(),
            f.resumes,
            f.url_refreshes
        );
    }
    Ok(Fetched {
        table: table.to_owned(),
        result,
        files,
        dir,
        query_ms,
        download_ms: progress::millis_since(started),
    })
}

/// The schema file path: `<dir>/<table>_schema_version_<N>.json`.
pub(crate) fn schema_path(dir: &Path, table: &str, version: u64) -> PathBuf {
    dir.join(format!("{table}_schema_version_{version}.json"))
}

/// Writes `schema` as the official CLI does (pretty `{"schema", "version"}`); returns
/// the path.
pub(crate) fn write_schema(
    dir: &Path,
    table: &str,
    schema: &TableSchema,
) -> Result<PathBuf, CliError> {
    if table.contains(['/', '\\']) || table.starts_with('.') {
        return Err(CliError::Usage(format!(
            "table name {table:?} cannot be used as a file name"
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| CliError::io("cannot create the output directory", dir, e))?;
    let path = schema_path(dir, table, schema.version);
    #[derive(serde::Serialize)]
    struct SchemaFile<'a> {
        schema: jsonfile::Verbatim<'a>,
        version: u64,
    }
    let doc = SchemaFile {
        schema: jsonfile::Verbatim(schema.raw()),
        version: schema.version,
    };
    let bytes = jsonfile::to_python_json(&doc)
        .map_err(|e| CliError::Other(format!("cannot serialise the schema of '{table}': {e}")))?;
    jsonfile::write_atomic(&path, &bytes)
        .map_err(|e| CliError::io("cannot write the schema file", &path, e))?;
    Ok(path)
}

/// `dap list`.
pub(crate) async fn list(
    client: &Client,
    args: &ListArgs,
    json_output: bool,
) -> Result<Outcome, CliError> {
    let tables = client.list_tables(&args.namespace).await.map_err(|e| {
        CliError::api(
            format!("listing the tables of namespace '{}'", args.namespace),
            e,
        )
    })?;
    if !json_output {
        let mut out = String::new();
        for t in &tables {
            out.push_str(t);
            out.push('\n');
        }
        print_stdout(&out);
    }
    Ok(Outcome {
        json: json!({ "command": "list", "ok": true, "namespace": args.namespace, "tables": tables }),
        ok: true,
    })
}

/// `dap schema`.
pub(crate) async fn schema(
    client: &Client,
    args: &SchemaArgs,
    hints: HintContext<'_>,
) -> Result<Outcome, CliError> {
    let tables = resolve_tables(client, &args.namespace, &args.table).await?;
    let mut batch = Batch::new("schema", &tables, hints);
    for (i, table) in tables.iter().enumerate() {
        if !batch.start(i) {
            continue;
        }
        let result = async {
            let schema = client
                .table_schema(&args.namespace, table)
                .await
                .map_err(|e| CliError::api(format!("fetching the schema of table '{table}'"), e))?;
            let path = write_schema(&args.output_directory, table, &schema)?;
            info!("JSON schema downloaded to file {}", path.display());
            let mut report = TableReport::ok(table);
            report.schema_version = Some(schema.version);
            report.schema_file = Some(display_path(&path));
            Ok(report)
        }
        .await;
        batch.finish(i, result);
    }
    let ok = batch.summary();
    Ok(Outcome {
        json: json!({
            "command": "schema",
            "ok": ok,
            "namespace": args.namespace,
            "output_directory": display_path(&args.output_directory),
            "tables": batch.reports,
            "failed": batch.failed(),
        }),
        ok,
    })
}

/// The download options of a data command.
pub(crate) fn download_options(args: &QueryArgs) -> DownloadOptions {
    DownloadOptions::default()
        .decompress(args.decompress)
        .concurrency(usize::from(args.concurrency))
}

/// `dap snapshot` and `dap incremental`.
pub(crate) async fn data(
    client: &Client,
    args: &QueryArgs,
    range: Option<&IncrementalArgs>,
    hints: HintContext<'_>,
) -> Result<Outcome, CliError> {
    let format = Format::from(args.format);
    let (op, query) = match range {
        None => ("snapshot", Query::snapshot(format)),
        Some(inc) => {
            let since = parse_instant("--since", &inc.since).map_err(CliError::Usage)?;
            let mut query = Query::incremental(format, since);
            if let Some(until) = &inc.until {
                let until = parse_instant("--until", until).map_err(CliError::Usage)?;
                query = query.until(until).map_err(|e| {
                    CliError::Usage(format!(
                        "--until must be later than --since ({})",
                        e.message()
                    ))
                })?;
            }
            ("incremental", query)
        }
    };
    let tables = resolve_tables(client, &args.namespace, &args.table).await?;
    let options = download_options(args);
    let mut batch = Batch::new(op, &tables, hints);
    for (i, table) in tables.iter().enumerate() {
        if !batch.start(i) {
            continue;
        }
        let started = Instant::now();
        let result = fetch(
            client,
            &args.namespace,
            table,
            query,
            &args.output_directory,
            &options,
        )
        .await
        .map(|f| {
            let mut r = TableReport::ok(table).with_result(&f.result, &f.dir, &f.files);
            r.elapsed_ms = Some(progress::millis_since(started));
            r
        });
        batch.finish(i, result);
    }
    let ok = batch.summary();
    Ok(Outcome {
        json: json!({
            "command": op,
            "ok": ok,
            "namespace": args.namespace,
            "format": format.as_str(),
            "output_directory": display_path(&args.output_directory),
            "tables": batch.reports,
            "failed": batch.failed(),
        }),
        ok,
    })
}

/// Prints to stdout, ignoring a closed pipe (`dap list | head`).
pub(crate) fn print_stdout(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
