//! The values the API speaks about: formats, queries, jobs, schemas, objects.

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;

use crate::error::{ArgumentError, DapError};
use crate::secret::PresignedUrl;

pub use crate::ids::{JobId, ObjectId};

/// Output format of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum Format {
    /// JSON Lines, gzip-compressed.
    Jsonl,
    /// CSV (RFC 4180 with a header), gzip-compressed.
    Csv,
    /// TSV (PostgreSQL COPY escaping), gzip-compressed.
    Tsv,
    /// Parquet (not gzip-wrapped).
    Parquet,
}

impl Format {
    /// Every format, in the order the API documents them.
    pub const ALL: [Self; 4] = [Self::Tsv, Self::Csv, Self::Jsonl, Self::Parquet];

    /// The wire name (`jsonl`, `csv`, `tsv`, `parquet`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
            Self::Tsv => "tsv",
            Self::Parquet => "parquet",
        }
    }

    /// Whether objects of this format are gzip streams.
    pub fn is_gzip(self) -> bool {
        !matches!(self, Self::Parquet)
    }

    /// Whether the format accepts a [`Mode`].
    pub fn accepts_mode(self) -> bool {
        matches!(self, Self::Csv | Self::Tsv)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = ArgumentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                ArgumentError::new(format!(
                    "unknown format {s:?}; expected jsonl, csv, tsv or parquet"
                ))
            })
    }
}

/// How CSV/TSV output lays out nested fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum Mode {
    /// One column per nested field.
    Expanded,
    /// Nested values kept as JSON in one column.
    Condensed,
}

impl Mode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Expanded => "expanded",
            Self::Condensed => "condensed",
        }
    }
}

impl FromStr for Mode {
    type Err = ArgumentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "expanded" => Ok(Self::Expanded),
            "condensed" => Ok(Self::Condensed),
            _ => Err(ArgumentError::new(format!(
                "unknown mode {s:?}; expected expanded or condensed"
            ))),
        }
    }
}

/// Which rows a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryRange {
    /// The table's full current state.
    Snapshot,
    /// Changes committed in `[since, until)`; `until` defaults to the server's now.
    Incremental {
        /// Inclusive lower bound.
        since: Timestamp,
        /// Exclusive upper bound.
        until: Option<Timestamp>,
    },
}

/// A validated table query. Timestamps are [`jiff::Timestamp`]s, so a time without an
/// offset cannot be expressed.
///
/// Besides what is asked of the server, a query says whether running it fetches its
/// objects' URLs ([`Query::urls_on_demand`]); that choice never reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    format: Format,
    mode: Option<Mode>,
    range: QueryRange,
    urls_on_demand: bool,
}

impl Query {
    /// A snapshot query.
    pub fn snapshot(format: Format) -> Self {
        Self {
            format,
            mode: None,
            range: QueryRange::Snapshot,
            urls_on_demand: false,
        }
    }

    /// An incremental query from `since` (inclusive) to the server's now.
    pub fn incremental(format: Format, since: Timestamp) -> Self {
        Self {
            format,
            mode: None,
            range: QueryRange::Incremental { since, until: None },
            urls_on_demand: false,
        }
    }

    /// Sets the exclusive upper bound of an incremental query; it must lie after `since`.
    pub fn until(mut self, until: Timestamp) -> Result<Self, ArgumentError> {
        match &mut self.range {
            QueryRange::Snapshot => Err(ArgumentError::new(
                "`until` applies to incremental queries only",
            )),
            QueryRange::Incremental { since, .. } if until <= *since => Err(ArgumentError::new(
                format!("`until` ({until}) must be after `since` ({since})"),
            )),
            QueryRange::Incremental { until: slot, .. } => {
                *slot = Some(until);
                Ok(self)
            }
        }
    }

    /// Sets the CSV/TSV layout; refused for jsonl and parquet.
    pub fn mode(mut self, mode: Mode) -> Result<Self, ArgumentError> {
        if !self.format.accepts_mode() {
            return Err(ArgumentError::new(format!(
                "`mode` applies to csv and tsv only, not {}",
                self.format
            )));
        }
        self.mode = Some(mode);
        Ok(self)
    }

    /// The format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The layout mode, if set.
    pub fn layout(&self) -> Option<Mode> {
        self.mode
    }

    /// The range.
    pub fn range(&self) -> QueryRange {
        self.range
    }

    /// Runs the query to completion *without* fetching its objects' pre-signed URLs:
    /// the [`crate::QueryResult`] lists the objects in
    /// [`pending`](crate::QueryResult::pending) and [`crate::Download`] fetches their
    /// URLs just in time, a batch ([`crate::Config::url_batch_size`]) at a time
    /// as its window reaches them. Memory then no longer grows with the job's objects
    /// (pre-signed URLs run to a kilobyte each), and no URL sits unused for most of its
    /// 15 minutes. Without it (the default) the result carries every URL, ready for
    /// callers that hand them elsewhere.
    ///
    /// Local only: the request sent to DAP is byte-for-byte the same either way (DAP
    /// reuses the job of an identical recent query).
    pub fn urls_on_demand(mut self) -> Self {
        self.urls_on_demand = true;
        self
    }

    /// Whether [`Query::urls_on_demand`] was set.
    pub fn has_urls_on_demand(&self) -> bool {
        self.urls_on_demand
    }
}

/// A timestamp anywhere in the range [`Timestamp`] holds.
#[cfg(feature = "arbitrary")]
fn arbitrary_timestamp(u: &mut arbitrary::Unstructured<'_>) -> arbitrary::Result<Timestamp> {
    let second = u.int_in_range(Timestamp::MIN.as_second()..=Timestamp::MAX.as_second())?;
    Timestamp::from_second(second).map_err(|_| arbitrary::Error::IncorrectFormat)
}

/// Any range a caller can build: a snapshot, or `since` with no `until` or a later one.
#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for QueryRange {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        if bool::arbitrary(u)? {
            return Ok(Self::Snapshot);
        }
        let since = arbitrary_timestamp(u)?;
        let until = match Option::<u32>::arbitrary(u)? {
            Some(after) => Some(
                since
                    .checked_add(jiff::SignedDuration::from_secs(i64::from(after) + 1))
                    .map_err(|_| arbitrary::Error::IncorrectFormat)?,
            ),
            None => None,
        };
        Ok(Self::Incremental { since, until })
    }
}

/// Any query the builders accept: a mode only for the formats that take one; URLs
/// fetched eagerly.
#[cfg(feature = "arbitrary")]
impl<'a> arbitrary::Arbitrary<'a> for Query {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        let format = Format::arbitrary(u)?;
        let range = QueryRange::arbitrary(u)?;
        let mode = if format.accepts_mode() {
            Option::<Mode>::arbitrary(u)?
        } else {
            None
        };
        Ok(Self {
            format,
            mode,
            range,
            // Local only (never on the wire), and left unset so that the checked-in
            // fuzz corpus keeps decoding to the same queries.
            urls_on_demand: false,
        })
    }
}

/// A table's JSON Schema and its version. The schema is kept exactly as the server sent
/// it (key order included), so it can be saved byte-for-byte faithfully; parse it with
/// [`TableSchema::value`] when you need to walk it.
#[derive(Debug, Clone)]
pub struct TableSchema {
    /// The JSON Schema, as sent.
    pub schema: Box<serde_json::value::RawValue>,
    /// The schema version.
    pub version: u64,
}

impl TableSchema {
    /// The schema text as the server sent it.
    pub fn raw(&self) -> &str {
        self.schema.get()
    }

    /// The schema parsed into a [`serde_json::Value`] (its objects sorted by key).
    pub fn value(&self) -> serde_json::Value {
        // The text was validated as JSON when the response was parsed.
        serde_json::from_str(self.schema.get()).unwrap_or(serde_json::Value::Null)
    }
}

impl PartialEq for TableSchema {
    fn eq(&self, other: &Self) -> bool {
        self.version == other.version && self.schema.get() == other.schema.get()
    }
}

/// What a finished job covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DataRange {
    /// A snapshot as of `at`; chain the next incremental from it.
    Snapshot {
        /// The instant the snapshot reflects.
        at: Timestamp,
    },
    /// Changes in `[since, until)`; chain the next incremental from `until`.
    Incremental {
        /// Inclusive lower bound.
        since: Timestamp,
        /// Exclusive upper bound.
        until: Timestamp,
    },
}

impl DataRange {
    /// The `since` of the next incremental query in a chain.
    pub fn next_since(&self) -> Timestamp {
        match *self {
            Self::Snapshot { at } => at,
            Self::Incremental { until, .. } => until,
        }
    }
}

/// The payload of a complete job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteJob {
    /// Output objects, in the server's order.
    pub objects: Vec<ObjectId>,
    /// The schema version the data follows.
    pub schema_version: u64,
    /// What the data covers.
    pub range: DataRange,
}

/// Where a job stands.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum JobState {
    /// Queued.
    Waiting,
    /// Running.
    Running,
    /// Finished with output.
    Complete(CompleteJob),
    /// Finished with an error.
    Failed(DapError),
}

impl JobState {
    /// Whether the job has ended.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Complete(_) | Self::Failed(_))
    }
}

/// A query job as the API reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The job id.
    pub id: JobId,
    /// When the job and its objects are deleted, if the server says.
    pub expires_at: Option<Timestamp>,
    /// The job's state.
    pub state: JobState,
}

/// An object and its pre-signed download URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectUrl {
    /// The object id.
    pub id: ObjectId,
    /// The pre-signed URL (its query string is a credential).
    pub url: PresignedUrl,
}
