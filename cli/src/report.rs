//! The machine-readable result printed by `--json` / `--output json`.

use std::path::Path;

use dap_hyper::DownloadedFile;
use dap_proto::{DataRange, Query, QueryRange, QueryResult};
use serde::ser::SerializeMap as _;
use serde::{Deserialize, Serialize, Serializer};

use crate::errors::{CliError, HintContext};
use crate::redact::redact;

/// One downloaded file, as `--json` shows it: a view of the transport's record, so a
/// job of many objects is not copied to be reported.
#[derive(Debug, Serialize)]
struct FileView<'a> {
    /// Path of the file.
    path: std::borrow::Cow<'a, str>,
    /// Bytes written.
    bytes: u64,
    /// Bytes of the object as stored (compressed).
    compressed_bytes: u64,
    /// Decompressed size of a gzip object.
    decompressed_bytes: Option<u64>,
    /// How many times the download resumed (with `Range`) after a dropped or stalled
    /// connection; absent when none.
    #[serde(skip_serializing_if = "is_zero")]
    resumes: u32,
    /// How many fresh URLs were fetched after storage refused one; absent when none.
    #[serde(skip_serializing_if = "is_zero")]
    url_refreshes: u32,
}

impl<'a> FileView<'a> {
    fn of(f: &'a DownloadedFile) -> Self {
        Self {
            path: f.path.to_string_lossy(),
            bytes: f.bytes,
            compressed_bytes: f.compressed_bytes,
            decompressed_bytes: f.decompressed_bytes,
            resumes: f.resumes,
            url_refreshes: f.url_refreshes,
        }
    }
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A table's files, as `--json` shows them.
struct Files<'a>(&'a [DownloadedFile]);

impl Serialize for Files<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(FileView::of))
    }
}

/// An error, for scripts.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ErrorReport {
    /// A stable category (`authentication`, `not_found`, `snapshot_required`, ...).
    pub(crate) category: &'static str,
    /// What happened.
    pub(crate) message: String,
    /// What to do about it.
    pub(crate) hint: Option<String>,
    /// Whether running the command again later may succeed (rate limits, server
    /// errors, network failures, stalls, timeouts).
    pub(crate) transient: bool,
}

impl ErrorReport {
    /// Describes `e`.
    pub(crate) fn new(e: &CliError, ctx: &HintContext<'_>) -> Self {
        Self {
            category: e.category(),
            message: redact(&e.to_string()),
            hint: e.hint(ctx),
            transient: e.is_transient(),
        }
    }
}

/// A schema version change seen by `sync`.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct SchemaChange {
    /// The version before.
    pub(crate) from: u64,
    /// The version now.
    pub(crate) to: u64,
}

/// How one table of a command ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TableStatus {
    /// Done.
    #[default]
    Ok,
    /// Tried and failed.
    Failed,
    /// Not tried, after an error that affects every table.
    Skipped,
}

/// The kind of data a query asks for or a job covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum QueryKind {
    /// A whole table as of one instant.
    Snapshot,
    /// The changes of a window.
    Incremental,
}

impl QueryKind {
    /// The kind of a query.
    pub(crate) fn of_query(query: &Query) -> Self {
        match query.range() {
            QueryRange::Snapshot => Self::Snapshot,
            _ => Self::Incremental,
        }
    }

    /// The kind of what a job covers.
    pub(crate) fn of_range(range: &DataRange) -> Self {
        match range {
            DataRange::Snapshot { .. } => Self::Snapshot,
            _ => Self::Incremental,
        }
    }

    /// `snapshot` or `incremental`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Snapshot => "snapshot",
            Self::Incremental => "incremental",
        }
    }
}

impl std::fmt::Display for QueryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Describes what a finished job covers: `at T` or `since S until U`.
pub(crate) fn describe_range(range: &DataRange) -> String {
    match range {
        DataRange::Snapshot { at } => format!("at {at}"),
        DataRange::Incremental { since, until } => format!("since {since} until {until}"),
        _ => String::new(),
    }
}

/// What happened to one table. In JSON: `table`, `status`, then each field that is set,
/// in this order (see its `Serialize`).
#[derive(Debug, Clone, Default)]
pub(crate) struct TableReport {
    /// The table.
    pub(crate) table: String,
    /// How it ended.
    pub(crate) status: TableStatus,
    /// What the data covers (data commands).
    pub(crate) query: Option<QueryKind>,
    /// Why `sync` chose its query.
    pub(crate) reason: Option<String>,
    /// The job id.
    pub(crate) job_id: Option<String>,
    /// A snapshot's instant.
    pub(crate) at: Option<String>,
    /// An incremental's start.
    pub(crate) since: Option<String>,
    /// An incremental's end.
    pub(crate) until: Option<String>,
    /// The schema version of the data or of the schema file.
    pub(crate) schema_version: Option<u64>,
    /// A schema version change (`sync`).
    pub(crate) schema_changed: Option<SchemaChange>,
    /// The schema file written, if any.
    pub(crate) schema_file: Option<String>,
    /// The job directory.
    pub(crate) directory: Option<String>,
    /// The files written.
    pub(crate) files: Option<Vec<DownloadedFile>>,
    /// Total bytes written.
    pub(crate) bytes: Option<u64>,
    /// Wall time spent on the table.
    pub(crate) elapsed_ms: Option<u64>,
    /// Why it failed.
    pub(crate) error: Option<ErrorReport>,
}

impl Serialize for TableReport {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // Every field named, so that a new one cannot be left out of the JSON unnoticed.
        let Self {
            table,
            status,
            query,
            reason,
            job_id,
            at,
            since,
            until,
            schema_version,
            schema_changed,
            schema_file,
            directory,
            files,
            bytes,
            elapsed_ms,
            error,
        } = self;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("table", table)?;
        map.serialize_entry("status", status)?;
        // The optional fields that are set, under their own names.
        macro_rules! set {
            ($($field:ident),+) => {$(
                if let Some(value) = $field {
                    map.serialize_entry(stringify!($field), value)?;
                }
            )+};
        }
        set!(query, reason, job_id, at, since, until, schema_version);
        set!(schema_changed, schema_file, directory);
        if let Some(files) = files {
            map.serialize_entry("files", &Files(files))?;
        }
        set!(bytes, elapsed_ms, error);
        map.end()
    }
}

impl TableReport {
    /// A successful table.
    pub(crate) fn ok(table: &str) -> Self {
        Self {
            table: table.to_owned(),
            status: TableStatus::Ok,
            ..Self::default()
        }
    }

    /// A failed table.
    pub(crate) fn failed(table: &str, error: ErrorReport) -> Self {
        Self {
            table: table.to_owned(),
            status: TableStatus::Failed,
            error: Some(error),
            ..Self::default()
        }
    }

    /// A table not attempted after a fatal error.
    pub(crate) fn skipped(table: &str) -> Self {
        Self {
            table: table.to_owned(),
            status: TableStatus::Skipped,
            ..Self::default()
        }
    }

    /// Fills in the job, range, schema version and files of a finished query.
    pub(crate) fn with_result(
        mut self,
        result: &QueryResult,
        dir: &Path,
        files: Vec<DownloadedFile>,
    ) -> Self {
        self.job_id = Some(result.job.to_string());
        self.query = Some(QueryKind::of_range(&result.range));
        match result.range {
            DataRange::Snapshot { at } => self.at = Some(at.to_string()),
            DataRange::Incremental { since, until } => {
                self.since = Some(since.to_string());
                self.until = Some(until.to_string());
            }
            _ => {}
        }
        self.schema_version = Some(result.schema_version);
        self.directory = Some(display_path(dir));
        self.bytes = Some(files.iter().map(|f| f.bytes).sum());
        self.files = Some(files);
        self
    }
}

/// A path as text.
pub(crate) fn display_path(p: &Path) -> String {
    p.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_fields_set_are_written_in_declaration_order() {
        let ok = serde_json::to_string(&TableReport::ok("users")).unwrap();
        assert_eq!(ok, r#"{"table":"users","status":"ok"}"#);
        let error = ErrorReport {
            category: "server",
            message: "m".to_owned(),
            hint: None,
            transient: true,
        };
        let report = TableReport {
            query: Some(QueryKind::Incremental),
            since: Some("s".to_owned()),
            until: Some("u".to_owned()),
            schema_changed: Some(SchemaChange { from: 1, to: 2 }),
            files: Some(Vec::new()),
            bytes: Some(0),
            ..TableReport::failed("t", error)
        };
        let want = concat!(
            r#"{"table":"t","status":"failed","query":"incremental","since":"s","until":"u","#,
            r#""schema_changed":{"from":1,"to":2},"files":[],"bytes":0,"#,
            r#""error":{"category":"server","message":"m","hint":null,"transient":true}}"#
        );
        assert_eq!(serde_json::to_string(&report).unwrap(), want);
    }
}
