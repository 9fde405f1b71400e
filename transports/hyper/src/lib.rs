//! # dap-hyper: the async transport of the DAP client toolkit
//!
//! Drives the sans-IO core [`dap_proto`] over tokio, hyper 1 and rustls. It is a pump:
//! every decision about tokens, retries, backoff, job polling, URL expiry, resumption
//! and verification is the core's; this crate sends what the core asks, feeds the
//! answers back and sleeps until the core's deadlines.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dap_hyper::Error> {
//! use dap_hyper::{Client, DownloadOptions};
//! use dap_proto::Format;
//!
//! let client = Client::from_env()?; // DAP_API_URL, DAP_CLIENT_ID, DAP_CLIENT_SECRET
//! let tables = client.list_tables("canvas").await?;
//! let result = client.snapshot("canvas", &tables[0], Format::Jsonl).await?;
//! let files = client
//!     .download(&result, "out".as_ref(), &DownloadOptions::default())
//!     .await?;
//! println!("{} files", files.len());
//! # Ok(()) }
//! ```
//!
//! ## How it runs
//! A [`Client`] is cheap to clone; all clones share one [`dap_proto::Session`], so any
//! number of concurrent calls log in once. The session lives in a driver task, spawned
//! on the tokio runtime of the **first call** ([`Client::new`] is synchronous and may
//! run outside any runtime). Calls send their command to the driver and await the
//! answer; the driver performs every request the session hands out on its own task,
//! so calls proceed concurrently. When the last clone is dropped the driver ends. If
//! the runtime it ran on shuts down, the next call starts a new driver (and session)
//! on the caller's runtime.
//!
//! Downloads run [`DownloadOptions::concurrency`] objects at once (default 4), each
//! with its own [`dap_proto::Transfer`]. Each response body is read on the runtime and
//! handed in chunks over a bounded channel to a blocking worker that verifies (and
//! optionally inflates) the gzip stream and writes the file, so reading, inflating and
//! writing overlap, gzip work never stalls the runtime, and memory stays flat.
//!
//! ## Network
//! rustls with the ring provider and the webpki roots (plus [`Options::extra_ca_file`]),
//! HTTP/1.1 with connection pooling, no redirect ever followed, connect and idle-read
//! timeouts, and `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY` (CONNECT tunnels
//! for https; absolute-form requests for plain http).
//!
//! ## Secrets
//! Errors and logs never contain the client secret, a token or the query string of a
//! pre-signed URL; logs name method, path, status and durations only.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod download;
mod driver;
mod net;

use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dap_proto::records::{RecordKind, RecordSplitter};
use dap_proto::{
    Command, Config, Format, Job, JobId, ObjectId, Outcome, Query, QueryResult, TableSchema,
    Transfer, UrlSet,
};
use futures_util::stream::{self, Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};

pub use dap_proto::client::{
    ClientError as Error, DownloadOptions, DownloadedFile, TransportOptions as Options,
};

use download::{RecordSink, SinkError};
use net::Net;

/// Records buffered between the producer task and the stream consumer.
const RECORDS_IN_FLIGHT: usize = 1024;

/// An async DAP client. Cheap to clone; clones share one session (one token).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    net: Net,
    driver: Mutex<Option<mpsc::UnboundedSender<driver::Start>>>,
    logins: Arc<AtomicU64>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.config.base_url())
            .field("client_id", &self.inner.config.credentials().client_id())
            .field("logins", &self.logins())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client with default [`Options`].
    pub fn new(config: Config) -> Result<Self, Error> {
        Self::with_options(config, Options::default())
    }

    /// A client with the given network options. Synchronous; needs no runtime.
    pub fn with_options(config: Config, options: Options) -> Result<Self, Error> {
        let net = Net::new(options)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                net,
                driver: Mutex::new(None),
                logins: Arc::new(AtomicU64::new(0)),
            }),
        })
    }

    /// A client configured from `DAP_API_URL` (optional), `DAP_CLIENT_ID` and
    /// `DAP_CLIENT_SECRET`; a missing variable is an [`Error::Config`] naming it.
    pub fn from_env() -> Result<Self, Error> {
        let config = Config::builder_from_vars(|k| std::env::var(k).ok())?.build()?;
        Self::new(config)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// How many logins the session has started so far.
    pub fn logins(&self) -> u64 {
        self.inner.logins.load(Ordering::Relaxed)
    }

    pub(crate) fn net(&self) -> &Net {
        &self.inner.net
    }

    /// The driver's command channel, starting the driver on the current runtime when
    /// there is none (or its runtime has gone).
    fn driver(&self) -> Result<mpsc::UnboundedSender<driver::Start>, Error> {
        let mut slot = self
            .inner
            .driver
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(tx) = slot.as_ref().filter(|tx| !tx.is_closed()) {
            return Ok(tx.clone());
        }
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
            Error::Usage("dap-hyper calls must run inside a tokio runtime".to_owned())
        })?;
        let (tx, rx) = mpsc::unbounded_channel();
        handle.spawn(driver::run(
            self.inner.config.clone(),
            self.inner.net.clone(),
            rx,
            Arc::clone(&self.inner.logins),
        ));
        *slot = Some(tx.clone());
        Ok(tx)
    }

    async fn run(&self, command: Command) -> Result<Outcome, Error> {
        let (reply, answer) = oneshot::channel();
        let mut start = driver::Start { command, reply };
        for _ in 0..2 {
            match self.driver()?.send(start) {
                Ok(()) => {
                    let (result, last) = answer.await.map_err(|_| {
                        Error::Usage(
                            "the client's driver task stopped (its runtime shut down)".to_owned(),
                        )
                    })?;
                    return result.map_err(|e| Error::from_core(e, last.as_deref()));
                }
                Err(mpsc::error::SendError(back)) => start = back,
            }
        }
        Err(Error::Usage(
            "the client's driver task could not be started".to_owned(),
        ))
    }

    /// The tables of a namespace (`canvas`, `canvas_logs`, `catalog`, ...).
    pub async fn list_tables(&self, namespace: &str) -> Result<Vec<String>, Error> {
        match self
            .run(Command::ListTables {
                namespace: namespace.to_owned(),
            })
            .await?
        {
            Outcome::Tables(tables) => Ok(tables),
            other => Err(unexpected(&other)),
        }
    }

    /// A table's JSON Schema and version.
    pub async fn table_schema(&self, namespace: &str, table: &str) -> Result<TableSchema, Error> {
        match self
            .run(Command::Schema {
                namespace: namespace.to_owned(),
                table: table.to_owned(),
            })
            .await?
        {
            Outcome::Schema(schema) => Ok(schema),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs a query to completion: starts the job, polls it, fetches its object URLs.
    pub async fn query(
        &self,
        namespace: &str,
        table: &str,
        query: Query,
    ) -> Result<QueryResult, Error> {
        match self
            .run(Command::Query {
                namespace: namespace.to_owned(),
                table: table.to_owned(),
                query,
            })
            .await?
        {
            Outcome::Query(result) => Ok(result),
            other => Err(unexpected(&other)),
        }
    }

    /// A snapshot query run to completion.
    pub async fn snapshot(
        &self,
        namespace: &str,
        table: &str,
        format: Format,
    ) -> Result<QueryResult, Error> {
        self.query(namespace, table, Query::snapshot(format)).await
    }

    /// An incremental query (changes in `[since, until)`, `until` defaulting to the
    /// latest data) run to completion.
    pub async fn incremental(
        &self,
        namespace: &str,
        table: &str,
        format: Format,
        since: jiff::Timestamp,
        until: Option<jiff::Timestamp>,
    ) -> Result<QueryResult, Error> {
        let mut query = Query::incremental(format, since);
        if let Some(until) = until {
            query = query
                .until(until)
                .map_err(|e| Error::Dap(dap_proto::Error::Argument(e)))?;
        }
        self.query(namespace, table, query).await
    }

    /// A job's status, fetched once.
    pub async fn get_job(&self, job: &JobId) -> Result<Job, Error> {
        match self.run(Command::GetJob { job: job.clone() }).await? {
            Outcome::Job(job) => Ok(job),
            other => Err(unexpected(&other)),
        }
    }

    /// Fresh pre-signed URLs for objects (fetched in batches).
    pub async fn object_urls(&self, objects: &[ObjectId]) -> Result<UrlSet, Error> {
        match self
            .run(Command::ObjectUrls {
                objects: objects.to_vec(),
            })
            .await?
        {
            Outcome::Urls(urls) => Ok(urls),
            other => Err(unexpected(&other)),
        }
    }

    /// Downloads every object of `result` into `dir/job_<job id>/<file name>`
    /// ([`dap_proto::download::job_dir`] and [`Transfer::file_name`]), each written to
    /// a temporary name ([`dap_proto::download::partial_name`]) in the same directory,
    /// fsync'ed, and renamed only when its [`Transfer`] reports it done
    /// (`Content-Length` matched, gzip verified). On failure the partial file is
    /// removed; a failed object never leaves a file with its final name. Once one
    /// object fails the others stop; the error of the first failed object (in the order
    /// of `result.objects`) is returned. Returns files in the order of
    /// `result.objects`.
    pub async fn download(
        &self,
        result: &QueryResult,
        dir: &Path,
        options: &DownloadOptions,
    ) -> Result<Vec<DownloadedFile>, Error> {
        let job_dir = dir.join(dap_proto::download::job_dir(&result.job));
        let transfers = Transfer::for_result(&self.inner.config, result, options.decompress)
            .map_err(|e| Error::Dap(dap_proto::Error::Argument(e)))?;
        {
            let job_dir = job_dir.clone();
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&job_dir).map_err(|e| Error::io(&job_dir, e))
            })
            .await
            .map_err(|e| Error::Usage(format!("blocking task failed: {e}")))??;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let results: Vec<(usize, Result<DownloadedFile, SinkError>)> =
            stream::iter(transfers.into_iter().enumerate())
                .map(|(i, transfer)| {
                    let cancel = Arc::clone(&cancel);
                    let job_dir = &job_dir;
                    async move {
                        let r = self.download_one(transfer, job_dir, &cancel).await;
                        if matches!(r, Err(SinkError::Error(_))) {
                            cancel.store(true, Ordering::Relaxed);
                        }
                        (i, r)
                    }
                })
                .buffer_unordered(options.concurrency.max(1))
                .collect()
                .await;
        let mut ordered: Vec<Option<Result<DownloadedFile, SinkError>>> =
            (0..results.len()).map(|_| None).collect();
        for (i, r) in results {
            if let Some(slot) = ordered.get_mut(i) {
                *slot = Some(r);
            }
        }
        let mut files = Vec::with_capacity(ordered.len());
        let mut cancelled = false;
        for r in ordered.into_iter().flatten() {
            match r {
                Ok(file) => files.push(file),
                Err(SinkError::Error(e)) => return Err(e),
                Err(SinkError::Closed) => cancelled = true,
            }
        }
        if cancelled {
            return Err(Error::Usage("the download was cancelled".to_owned()));
        }
        Ok(files)
    }

    /// Streams the records of every object of `result`, objects in order, without
    /// touching disk: gzip-decoded through the [`Transfer`], split with
    /// [`RecordSplitter`] ([`RecordKind::Csv`] for csv, [`RecordKind::Lines`] for
    /// jsonl and tsv). CSV/TSV header lines are yielded as records too (the first
    /// record of each object). Parquet yields an [`Error::Usage`].
    ///
    /// The stream is lazy: nothing is requested before its first poll. Downloading runs
    /// ahead of the consumer by a bounded number of records; dropping the stream stops
    /// it. After an error the stream ends.
    pub fn records(
        &self,
        result: &QueryResult,
    ) -> impl Stream<Item = Result<Bytes, Error>> + Send + 'static {
        enum State {
            Idle(Client, QueryResult),
            Running(mpsc::Receiver<Result<Bytes, Error>>),
        }
        let state = State::Idle(self.clone(), result.clone());
        stream::unfold(state, |state| async move {
            let mut rx = match state {
                State::Running(rx) => rx,
                State::Idle(client, result) => {
                    let (tx, rx) = mpsc::channel(RECORDS_IN_FLIGHT);
                    tokio::spawn(async move { client.produce_records(result, tx).await });
                    rx
                }
            };
            rx.recv().await.map(|item| (item, State::Running(rx)))
        })
    }

    async fn produce_records(&self, result: QueryResult, tx: mpsc::Sender<Result<Bytes, Error>>) {
        let kind = match result.format {
            Format::Csv => RecordKind::Csv,
            Format::Parquet => {
                let _ = tx
                    .send(Err(Error::Usage(
                        "records cannot be streamed from parquet objects".to_owned(),
                    )))
                    .await;
                return;
            }
            _ => RecordKind::Lines,
        };
        let never = AtomicBool::new(false);
        for object in result.objects {
            let transfer = match Transfer::new(&self.inner.config, object, result.format, true) {
                // Streaming: after a restart from byte 0 the core skips the output
                // already split, so no record is yielded twice.
                Ok(t) => t.streaming(),
                Err(e) => {
                    let _ = tx
                        .send(Err(Error::Dap(dap_proto::Error::Argument(e))))
                        .await;
                    return;
                }
            };
            let sink = RecordSink::new(RecordSplitter::new(kind), tx.clone());
            let outcome = match self.run_transfer(transfer, sink, &never).await {
                Ok((_, sink)) => sink.finish().await,
                Err(e) => Err(e),
            };
            match outcome {
                Ok(()) => {}
                Err(SinkError::Closed) => return,
                Err(SinkError::Error(e)) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            }
        }
    }

    /// Like [`Client::records`], each jsonl line parsed into a JSON value. Any other
    /// format yields an [`Error::Usage`].
    pub fn json_records(
        &self,
        result: &QueryResult,
    ) -> impl Stream<Item = Result<serde_json::Value, Error>> + Send + 'static {
        let inner: Pin<Box<dyn Stream<Item = Result<serde_json::Value, Error>> + Send>> =
            if result.format == Format::Jsonl {
                Box::pin(self.records(result).map(|record| {
                    record.and_then(|line| {
                        serde_json::from_slice(&line).map_err(|e| Error::bad_json_record(&e))
                    })
                }))
            } else {
                Box::pin(stream::once(std::future::ready(Err(Error::Usage(
                    format!("json_records needs jsonl output, not {}", result.format),
                )))))
            };
        inner
    }
}

fn unexpected(outcome: &Outcome) -> Error {
    let kind = match outcome {
        Outcome::Tables(_) => "tables",
        Outcome::Schema(_) => "schema",
        Outcome::Job(_) => "job",
        Outcome::Urls(_) => "urls",
        Outcome::Query(_) => "query",
        _ => "other",
    };
    Error::Usage(format!("internal: unexpected {kind} outcome"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn client_is_send_sync_clone() {
        assert_send_sync::<Client>();
    }

    #[test]
    fn new_needs_no_runtime() {
        let config = Config::builder("id", "secret").build().unwrap();
        let client = Client::new(config).unwrap();
        assert_eq!(client.logins(), 0);
        assert!(!format!("{client:?}").contains("secret"));
    }
}
