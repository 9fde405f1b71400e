//! The session's vocabulary: ids, commands, outcomes and outputs.

use std::fmt;
use std::time::Instant;

use http::Request;
use jiff::Timestamp;

use crate::error::Error;
use crate::model::{DataRange, Format, Job, JobId, ObjectId, ObjectUrl, Query, TableSchema};

/// Identifies an operation started with [`super::Session::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpId(pub(super) u64);

/// Identifies a request handed out by [`super::Session::poll_output`]; answer it with
/// [`super::Session::handle_response`] or [`super::Session::handle_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub(super) u64);

macro_rules! raw_id {
    ($name:ident) => {
        impl $name {
            /// The raw number, for use as a map key or in logs.
            pub fn into_raw(self) -> u64 {
                self.0
            }
            /// Rebuilds an id from [`Self::into_raw`]; an id the session never issued is
            /// refused by it as misuse.
            pub fn from_raw(raw: u64) -> Self {
                Self(raw)
            }
        }
    };
}
raw_id!(OpId);
raw_id!(RequestId);

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "op#{}", self.0)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "req#{}", self.0)
    }
}

/// What an operation should do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
#[non_exhaustive]
pub enum Command {
    /// List the tables of a namespace.
    ListTables {
        /// `canvas`, `canvas_logs`, `catalog`, ...
        namespace: String,
    },
    /// Fetch a table's schema.
    Schema {
        /// The namespace.
        namespace: String,
        /// The table.
        table: String,
    },
    /// Run a snapshot or incremental query to completion: start it, poll the job until it
    /// ends, then fetch the URLs of its objects.
    Query {
        /// The namespace.
        namespace: String,
        /// The table.
        table: String,
        /// What to ask for.
        query: Query,
    },
    /// Fetch a job's status once.
    GetJob {
        /// The job.
        job: JobId,
    },
    /// Fetch (or refresh) pre-signed URLs for objects, in batches.
    ObjectUrls {
        /// The objects.
        objects: Vec<ObjectId>,
    },
}

impl Command {
    /// A command that fetches fresh URLs for every object of a query result (those in
    /// [`QueryResult::pending`] included).
    pub fn refresh_urls(result: &QueryResult) -> Self {
        Self::ObjectUrls {
            objects: result.object_ids().cloned().collect(),
        }
    }

    pub(super) fn what(&self) -> &'static str {
        match self {
            Self::ListTables { .. } => "list tables",
            Self::Schema { .. } => "table schema",
            Self::Query { .. } => "query",
            Self::GetJob { .. } => "job status",
            Self::ObjectUrls { .. } => "object URLs",
        }
    }
}

/// Pre-signed URLs and the instant they were received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlSet {
    /// One URL per requested object, in request order.
    pub urls: Vec<ObjectUrl>,
    /// When the (last batch of) URLs arrived; they last about 15 minutes from there.
    pub issued_at: Instant,
}

/// The result of a query run to completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryResult {
    /// The namespace queried.
    pub namespace: String,
    /// The table queried.
    pub table: String,
    /// The job.
    pub job: JobId,
    /// The format the objects are in.
    pub format: Format,
    /// When the job and its objects are deleted.
    pub expires_at: Option<Timestamp>,
    /// The schema version of the data.
    pub schema_version: u64,
    /// What the data covers: `at` for a snapshot, `since`/`until` for an incremental.
    pub range: DataRange,
    /// The objects with their pre-signed URLs: every object of the job, unless the query
    /// was run with [`Query::urls_on_demand`], in which case it is empty and the objects
    /// are in [`QueryResult::pending`].
    pub objects: Vec<ObjectUrl>,
    /// The objects whose URLs were not fetched (a query run with
    /// [`Query::urls_on_demand`]), in the job's order, after those of `objects`. A
    /// [`crate::Download`] fetches their URLs as it reaches them; anyone else can with
    /// [`Command::ObjectUrls`] (or [`Command::refresh_urls`], for every object).
    pub pending: Vec<ObjectId>,
    /// When the first batch of URLs was received (the oldest URL's issue): a
    /// [`crate::Download`] refreshes them before they expire. With no URLs, when the
    /// job was found complete.
    pub urls_issued_at: Instant,
}

impl QueryResult {
    /// How many objects the job has: those with a URL and those [`pending`] one.
    ///
    /// [`pending`]: QueryResult::pending
    pub fn object_count(&self) -> usize {
        self.objects.len() + self.pending.len()
    }

    /// Every object of the job, in download order: those of `objects`, then those of
    /// `pending`.
    pub fn object_ids(&self) -> impl Iterator<Item = &ObjectId> {
        self.objects.iter().map(|o| &o.id).chain(&self.pending)
    }
}

/// What a finished operation produced.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outcome {
    /// From [`Command::ListTables`].
    Tables(Vec<String>),
    /// From [`Command::Schema`].
    Schema(TableSchema),
    /// From [`Command::GetJob`].
    Job(Job),
    /// From [`Command::ObjectUrls`].
    Urls(UrlSet),
    /// From [`Command::Query`].
    Query(QueryResult),
}

/// What [`super::Session::poll_output`] asks of the caller.
#[derive(Debug)]
#[non_exhaustive]
pub enum Output {
    /// Send this request and report its fate with the given id.
    Send {
        /// Correlates the answer.
        id: RequestId,
        /// The request. Its auth header, if any, is marked sensitive.
        request: Request<Vec<u8>>,
    },
    /// An operation ended.
    Done {
        /// The operation.
        op: OpId,
        /// Its result.
        result: Result<Outcome, Error>,
    },
    /// Nothing more to do now: call again at this instant (or when a response arrives).
    /// `None` means no operation is waiting on time.
    Wait(Option<Instant>),
}

/// The session's view of its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenStatus {
    /// No token.
    None,
    /// A login request is in flight.
    LoggingIn,
    /// Waiting to retry a failed login.
    LoginBackoff,
    /// A usable token, until the instant given (expiry minus the refresh margin).
    Valid(Instant),
}
