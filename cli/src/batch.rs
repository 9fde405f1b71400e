//! Commands over a list of tables: resolving `--table`, running each table in turn,
//! logging each start, end and failure as the official CLI does, stopping on an error
//! that affects every table, and the result of the whole batch.

use std::time::Instant;

use dap_hyper::Client;
use serde_json::json;
use tracing::{Instrument as _, error, info};

use crate::errors::{CliError, HintContext};
use crate::logging;
use crate::progress;
use crate::report::{ErrorReport, TableReport, TableStatus};

/// What a command produced: its JSON result and whether everything succeeded.
pub(crate) struct Outcome {
    /// The `--json` document (without `tables` when `reports` holds them).
    pub(crate) json: serde_json::Value,
    /// Whether the run succeeded as a whole.
    pub(crate) ok: bool,
    /// A batch's table reports, the document's `tables`: kept typed, and serialized only
    /// if the document is printed, since a table may list thousands of files.
    pub(crate) reports: Option<Vec<TableReport>>,
}

impl Outcome {
    /// Writes the `--json` document, pretty-printed, to `out` as it is serialized (a
    /// table may list thousands of files: no copy of the whole text is made).
    pub(crate) fn write_json(&self, out: impl std::io::Write) -> serde_json::Result<()> {
        match (&self.reports, self.json.as_object()) {
            (Some(reports), Some(head)) => {
                serde_json::to_writer_pretty(out, &WithTables { head, reports })
            }
            _ => serde_json::to_writer_pretty(out, &self.json),
        }
    }
}

/// A document's head with its `tables` put in key order, as if it were one of them.
struct WithTables<'a> {
    head: &'a serde_json::Map<String, serde_json::Value>,
    reports: &'a [TableReport],
}

impl serde::Serialize for WithTables<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        const KEY: &str = "tables";
        let mut map = s.serialize_map(Some(self.head.len() + 1))?;
        let mut pending = true;
        for (key, value) in self.head.iter().filter(|(k, _)| *k != KEY) {
            if pending && key.as_str() > KEY {
                map.serialize_entry(KEY, self.reports)?;
                pending = false;
            }
            map.serialize_entry(key, value)?;
        }
        if pending {
            map.serialize_entry(KEY, self.reports)?;
        }
        map.end()
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
    reports: Vec<TableReport>,
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
    fn start(&mut self, i: usize) -> bool {
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
    fn finish(&mut self, i: usize, result: Result<TableReport, CliError>) {
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

    /// Runs `work` on every table in turn, inside its logging span, until a fatal
    /// error stops the batch.
    pub(crate) async fn run_each(
        &mut self,
        mut work: impl AsyncFnMut(&str) -> Result<TableReport, CliError>,
    ) {
        let tables = self.tables;
        for (i, table) in tables.iter().enumerate() {
            let span = logging::table_span(table);
            if !span.in_scope(|| self.start(i)) {
                continue;
            }
            let started = Instant::now();
            let result = work(table).instrument(span.clone()).await.map(|mut r| {
                r.elapsed_ms.get_or_insert(progress::millis_since(started));
                r
            });
            span.in_scope(|| self.finish(i, result));
        }
    }

    /// The command's outcome: `json` with `ok`, `tables` and `failed` added, after the
    /// summary is logged.
    pub(crate) fn outcome(self, mut json: serde_json::Value) -> Outcome {
        let ok = self.summary();
        let failed = self.failed();
        if let Some(map) = json.as_object_mut() {
            map.insert("ok".to_owned(), ok.into());
            map.insert("failed".to_owned(), json!(failed));
        }
        Outcome {
            json,
            ok,
            reports: Some(self.reports),
        }
    }

    /// Logs the summary; returns whether every table succeeded.
    fn summary(&self) -> bool {
        let failed = self.failed();
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
    fn failed(&self) -> Vec<String> {
        self.reports
            .iter()
            .filter(|r| r.status != TableStatus::Ok)
            .map(|r| r.table.clone())
            .collect()
    }
}
