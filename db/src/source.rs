//! What replication needs from DAP, behind one small trait: list tables, fetch a
//! schema, run a query to completion, and read each object of a finished job as a
//! stream of verified, decompressed byte chunks.
//!
//! An object's stream ends with an error if its download fails verification (a bad
//! gzip CRC or length, a truncated body): the load that consumes it is then rolled
//! back. [`HyperSource`] implements the trait over `dap_hyper::Client`.

use std::error::Error as StdError;
use std::fmt;
use std::pin::Pin;

use bytes::{Bytes, BytesMut};
use dap_proto::{DapErrorKind, Query, QueryResult, TableSchema};
use futures_util::future::BoxFuture;
use futures_util::stream::{Stream, StreamExt};

/// A stream of decompressed bytes of one object.
pub type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, SourceError>> + Send>>;

/// What kind of failure a [`SourceError`] is, as far as replication decides on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SourceErrorKind {
    /// DAP answered `SnapshotRequired`.
    SnapshotRequired,
    /// DAP answered `OutOfRange`.
    OutOfRange,
    /// No further call can succeed (bad credentials, account disabled).
    Fatal,
    /// Anything else.
    Other,
}

/// A failure on the DAP side: the API said no, a job failed, a download broke.
#[derive(Debug)]
pub struct SourceError {
    kind: SourceErrorKind,
    dap: Option<DapErrorKind>,
    what: String,
    source: Box<dyn StdError + Send + Sync>,
}

impl SourceError {
    /// Wraps `source`, which happened while doing `what`.
    pub fn new(
        kind: SourceErrorKind,
        what: impl Into<String>,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            dap: None,
            what: what.into(),
            source: source.into(),
        }
    }

    /// With the API's own error kind (for the chain's recovery decisions).
    pub fn with_dap_kind(mut self, kind: DapErrorKind) -> Self {
        self.dap = Some(kind);
        self
    }

    /// The API's error kind, if the API said no.
    pub fn dap_kind(&self) -> Option<&DapErrorKind> {
        self.dap.as_ref()
    }

    /// The kind.
    pub fn kind(&self) -> SourceErrorKind {
        self.kind
    }

    /// What was being done.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The underlying error (for example a `dap_hyper::Error`, for callers that
    /// render hints).
    pub fn inner(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.source)
    }
}

impl StdError for SourceError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&*self.source)
    }
}

/// DAP, as replication uses it.
pub trait Source: Send + Sync {
    /// The tables of a namespace.
    fn tables<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Vec<String>, SourceError>>;

    /// A table's schema.
    fn schema<'a>(
        &'a self,
        namespace: &'a str,
        table: &'a str,
    ) -> BoxFuture<'a, Result<TableSchema, SourceError>>;

    /// Runs a query to completion.
    fn query<'a>(
        &'a self,
        namespace: &'a str,
        table: &'a str,
        query: Query,
    ) -> BoxFuture<'a, Result<QueryResult, SourceError>>;

    /// The decompressed, verified bytes of object `index` of `result`.
    fn object(&self, result: &QueryResult, index: usize) -> Chunks;
}

/// [`Source`] over the async transport.
#[derive(Debug, Clone)]
pub struct HyperSource {
    client: dap_hyper::Client,
}

impl HyperSource {
    /// Wraps a client.
    pub fn new(client: dap_hyper::Client) -> Self {
        Self { client }
    }
}

/// Classifies a transport error.
fn kind_of(e: &dap_hyper::Error) -> SourceErrorKind {
    if e.is_fatal() {
        return SourceErrorKind::Fatal;
    }
    match e.api_kind() {
        Some(DapErrorKind::SnapshotRequired { .. }) => SourceErrorKind::SnapshotRequired,
        Some(DapErrorKind::OutOfRange { .. }) => SourceErrorKind::OutOfRange,
        _ => SourceErrorKind::Other,
    }
}

fn wrap(what: String) -> impl FnOnce(dap_hyper::Error) -> SourceError {
    move |e| {
        let dap = e.api_kind().cloned();
        let error = SourceError::new(kind_of(&e), what, e);
        match dap {
            Some(kind) => error.with_dap_kind(kind),
            None => error,
        }
    }
}

/// Chunks handed to the database of about this size.
const CHUNK: usize = 256 * 1024;

impl Source for HyperSource {
    fn tables<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Result<Vec<String>, SourceError>> {
        Box::pin(async move {
            self.client
                .list_tables(namespace)
                .await
                .map_err(wrap(format!(
                    "listing the tables of namespace '{namespace}'"
                )))
        })
    }

    fn schema<'a>(
        &'a self,
        namespace: &'a str,
        table: &'a str,
    ) -> BoxFuture<'a, Result<TableSchema, SourceError>> {
        Box::pin(async move {
            self.client
                .table_schema(namespace, table)
                .await
                .map_err(wrap(format!("fetching the schema of table '{table}'")))
        })
    }

    fn query<'a>(
        &'a self,
        namespace: &'a str,
        table: &'a str,
        query: Query,
    ) -> BoxFuture<'a, Result<QueryResult, SourceError>> {
        Box::pin(async move {
            self.client
                .query(namespace, table, query)
                .await
                .map_err(wrap(format!("querying table '{table}'")))
        })
    }

    fn object(&self, result: &QueryResult, index: usize) -> Chunks {
        let mut single = result.clone();
        single.objects = result.objects.get(index).cloned().into_iter().collect();
        let what = format!("downloading object {} of job {}", index + 1, result.job);
        // Records come one line at a time; lines that are ready are joined into chunks.
        let lines = self.client.records(&single).ready_chunks(1024);
        let chunks = lines.map(move |batch| {
            let mut buf = BytesMut::with_capacity(CHUNK);
            for line in batch {
                let line = line.map_err(wrap(what.clone()))?;
                buf.extend_from_slice(&line);
                buf.extend_from_slice(b"\n");
            }
            Ok(buf.freeze())
        });
        Box::pin(chunks)
    }
}
