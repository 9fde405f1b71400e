//! What replication needs from a database, implemented by a thin driver per dialect.
//!
//! A [`Store`] prepares the meta tables and opens one [`TableSession`] per table: a
//! connection that holds the table's lock (a PostgreSQL advisory lock, a SQLite file
//! lock) until it is dropped, so two runs on one table never interleave. A session
//! reads the table's position and layout, and [`TableSession::load`] lands a job's data
//! in one transaction, described by a [`LoadJob`] the pure plan built.

use std::future::Future;

use dap_proto::QueryResult;
use jiff::Timestamp;

use crate::dialect::Dialect;
use crate::error::Error;
use crate::migrate::ExistingTable;
use crate::model::TableModel;
use crate::plan::{Landing, Position};
use crate::source::{Chunks, Source};
use crate::tsv::LoadKind;

/// A `table_sync` row, as `listdb` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRow {
    /// DAP table name.
    pub table: String,
    /// The position.
    pub timestamp: Timestamp,
    /// Schema version.
    pub schema_version: u64,
    /// `target_schema` (the namespace).
    pub target_schema: Option<String>,
    /// `target_table`.
    pub target_table: String,
}

/// The objects of a finished job.
#[derive(Clone, Copy)]
pub struct Feed<'a> {
    source: &'a dyn Source,
    result: &'a QueryResult,
}

impl std::fmt::Debug for Feed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feed")
            .field("job", &self.result.job)
            .field("objects", &self.result.objects.len())
            .finish()
    }
}

impl<'a> Feed<'a> {
    /// The objects of `result`, read through `source`.
    pub fn new(source: &'a dyn Source, result: &'a QueryResult) -> Self {
        Self { source, result }
    }

    /// How many objects.
    pub fn len(&self) -> usize {
        self.result.objects.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.result.objects.is_empty()
    }

    /// The job id.
    pub fn job(&self) -> String {
        self.result.job.to_string()
    }

    /// Object `index` as a stream of decompressed chunks.
    pub fn open(&self, index: usize) -> Chunks {
        self.source.object(self.result, index)
    }
}

/// What loading one object of a [`Feed`] failed with: its data, or anything else.
pub(crate) enum ObjectError {
    Data(crate::tsv::TsvError),
    Other(Error),
}

impl From<Error> for ObjectError {
    fn from(e: Error) -> Self {
        Self::Other(e)
    }
}

impl ObjectError {
    /// The error of the load: bad data names object `index` (from 0) of `feed`'s job.
    pub(crate) fn in_object(self, feed: &Feed<'_>, index: usize) -> Error {
        match self {
            Self::Data(error) => Error::Data {
                object: index + 1,
                job: feed.job(),
                error,
            },
            Self::Other(e) => e,
        }
    }
}

/// Adds the columns of an object's `header` that `columns` does not hold yet, in order.
pub(crate) fn add_columns(columns: &mut Vec<String>, header: Vec<String>) {
    for c in header {
        if !columns.contains(&c) {
            columns.push(c);
        }
    }
}

/// Everything one transaction does to a table.
#[derive(Debug)]
pub struct LoadJob<'a> {
    /// The table's layout (the new one, after a schema change).
    pub model: &'a TableModel,
    /// Where the rows go.
    pub landing: Landing,
    /// What the objects hold.
    pub kind: LoadKind,
    /// In-place schema change statements, run before the changes are applied.
    pub migration: Vec<String>,
    /// Whether views on the table must be saved and recreated around the change.
    pub disturbs_views: bool,
    /// The table's `table_sync` row, updated; `None` inserts one.
    pub position: Option<&'a Position>,
    /// The position after this job.
    pub next_position: Timestamp,
}

/// What a load did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadStats {
    /// Data lines read (snapshot rows, or changes).
    pub lines: u64,
    /// Rows upserted or inserted.
    pub upserted: u64,
    /// Rows deleted.
    pub deleted: u64,
    /// Views recreated.
    pub views: u64,
}

/// A database replication writes to.
pub trait Store: Send + Sync + 'static {
    /// One table's session.
    type Session: TableSession;

    /// The dialect.
    fn dialect(&self) -> &'static dyn Dialect;

    /// Creates the meta tables if they are missing (and records the layout version),
    /// and the namespace's schema where the dialect has schemas.
    fn prepare(&self, namespace: &str) -> impl Future<Output = Result<(), Error>> + Send;

    /// Opens a session on one table, waiting for its lock.
    fn session(
        &self,
        namespace: &str,
        table: &str,
    ) -> impl Future<Output = Result<Self::Session, Error>> + Send;

    /// The `table_sync` rows of a namespace, by table name.
    fn positions(
        &self,
        namespace: &str,
    ) -> impl Future<Output = Result<Vec<SyncRow>, Error>> + Send;

    /// How many rows a replicated table holds.
    fn count(
        &self,
        namespace: &str,
        table: &str,
    ) -> impl Future<Output = Result<u64, Error>> + Send;
}

/// One table, locked.
pub trait TableSession: Send {
    /// The table's `table_sync` row.
    fn position(&mut self) -> impl Future<Output = Result<Option<Position>, Error>> + Send;

    /// The table's layout, if the table exists.
    fn existing(&mut self) -> impl Future<Output = Result<Option<ExistingTable>, Error>> + Send;

    /// The enumeration types of the namespace among `names`, with their values.
    fn enums(
        &mut self,
        names: &[String],
    ) -> impl Future<Output = Result<Vec<(String, Vec<String>)>, Error>> + Send;

    /// Runs each statement in its own transaction.
    fn execute_each(
        &mut self,
        statements: &[String],
    ) -> impl Future<Output = Result<(), Error>> + Send;

    /// Lands a job's data in one transaction.
    fn load(
        &mut self,
        job: &LoadJob<'_>,
        feed: Feed<'_>,
    ) -> impl Future<Output = Result<LoadStats, Error>> + Send;

    /// Drops the table and its `table_sync` row in one transaction; false if the table
    /// was not replicated.
    fn drop_table(&mut self) -> impl Future<Output = Result<bool, Error>> + Send;
}

/// Formats a position as the naive UTC timestamp the meta table stores (microseconds).
pub fn naive_utc(ts: Timestamp) -> String {
    let micros = ts.as_microsecond();
    let truncated = Timestamp::from_microsecond(micros).unwrap_or(ts);
    truncated
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .datetime()
        .strftime("%Y-%m-%d %H:%M:%S%.f")
        .to_string()
}

/// Reads a naive UTC timestamp as the meta table stores it.
pub fn parse_naive_utc(text: &str) -> Option<Timestamp> {
    let civil: jiff::civil::DateTime = text.trim().replace(' ', "T").parse().ok()?;
    civil
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// `2024-01-01T10:00:00.5Z` (or with another offset) as `2024-01-01 10:00:00.5` UTC.
pub(crate) fn utc_timestamp(text: &str) -> Result<String, String> {
    let t = text.trim();
    let civil = match t.parse::<Timestamp>() {
        Ok(ts) => ts.to_zoned_datetime(jiff::tz::TimeZone::UTC).datetime(),
        Err(_) => t
            .replace(' ', "T")
            .parse::<jiff::civil::DateTime>()
            .map_err(|_| format!("{text:?} is not a date and time"))?,
    };
    Ok(civil.strftime("%Y-%m-%d %H:%M:%S%.f").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn naive_utc_round_trip() {
        let ts: Timestamp = "2024-03-01T10:20:30.123456789Z".parse().unwrap();
        let text = naive_utc(ts);
        assert_eq!(text, "2024-03-01 10:20:30.123456");
        assert_eq!(
            parse_naive_utc(&text).unwrap(),
            "2024-03-01T10:20:30.123456Z".parse::<Timestamp>().unwrap()
        );
        let whole: Timestamp = "2024-03-01T10:20:30Z".parse().unwrap();
        assert_eq!(naive_utc(whole), "2024-03-01 10:20:30");
        assert_eq!(parse_naive_utc("2024-03-01 10:20:30").unwrap(), whole);
        assert!(parse_naive_utc("nonsense").is_none());
    }
}
