//! # dap-ureq: a blocking client for Instructure's Data Access Platform
//!
//! The blocking transport of the `dap-proto` core: it drives a [`dap_proto::Session`]
//! (API calls) and [`dap_proto::Transfer`]s (object downloads) over
//! [ureq](https://docs.rs/ureq) 3 with rustls. It is a pump and nothing else: it sends
//! what the core asks, feeds back what came, and sleeps until the core's deadline. Tokens,
//! retries, backoff, job polling and URL expiry are the core's decisions, so this crate
//! behaves exactly like its async twin `dap-hyper`.
//!
//! ```no_run
//! use dap_proto::Format;
//! use dap_ureq::{Client, DownloadOptions};
//!
//! // DAP_API_URL (optional), DAP_CLIENT_ID, DAP_CLIENT_SECRET
//! let client = Client::from_env()?;
//! let tables = client.list_tables("canvas")?;
//! println!("{} tables", tables.len());
//! let result = client.snapshot("canvas", "accounts", Format::Jsonl)?;
//! let files = client.download(&result, "out".as_ref(), &DownloadOptions::default())?;
//! for file in files {
//!     println!("{} ({} bytes)", file.path.display(), file.bytes);
//! }
//! // Or stream the records without touching disk:
//! for record in client.json_records(&result) {
//!     let record = record?;
//!     println!("{}", record["key"]["id"]);
//! }
//! # Ok::<(), dap_ureq::Error>(())
//! ```
//!
//! ## Threads
//! [`Client`] is `Clone + Send + Sync`; clones share one session, so any number of
//! threads share one token and cause one login. Calls pump cooperatively: whichever
//! thread is free sends the next request the session hands out, and each thread returns
//! when its own operation is done. A single-threaded caller needs no extra thread.
//! Downloads with [`DownloadOptions::concurrency`] above 1 use a small scoped thread pool.
//!
//! ## Downloads
//! Each object is streamed to `dir/job_<id>/.<name>.partial`, verified by its
//! [`dap_proto::Transfer`] (length, and gzip CRC and size even when not decompressing),
//! fsync'ed and renamed to its final name only then. A dropped connection resumes with
//! `Range`; an expired URL is refreshed; a failed object never leaves a final file.
//!
//! ## Network
//! rustls with the ring provider, Mozilla's roots (webpki) plus an optional extra CA
//! file, `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` honouring `NO_PROXY` (see [`Options`]),
//! connect and idle-read timeouts, connection reuse, no redirects, no automatic
//! decompression. Logs (`tracing`, debug level) name method, host and path, never a
//! header value or a pre-signed URL's query string. ureq itself logs through the `log`
//! crate, and at *trace* level its records include full request URLs and hex dumps of
//! the wire bytes (tokens, credentials, signatures). The default feature
//! `redact-library-logs` therefore caps `log` at DEBUG at compile time, so no bridge
//! from `log` into your logger can print them.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod download;
mod net;
mod records;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use dap_proto::{
    Command, Config, Format, Job, JobId, ObjectId, OpId, Outcome, Output, Query, QueryResult,
    Session, TableSchema, UrlSet,
};

pub use dap_proto::client::{
    ClientError as Error, DownloadOptions, DownloadedFile, TransportOptions as Options,
};
pub use records::{JsonRecords, Records};

/// A blocking DAP client. Cheap to clone; clones share one session (one token).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    agent: ureq::Agent,
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    session: Session,
    /// Results of operations whose owner has not collected them yet.
    finished: HashMap<OpId, Result<Outcome, dap_proto::Error>>,
    /// The text of the last transport failure per operation (`None`: the login), for
    /// [`Error::Transport`].
    failures: HashMap<Option<OpId>, String>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("base_url", &self.inner.config.base_url())
            .field("logins", &self.logins())
            .finish_non_exhaustive()
    }
}

/// The longest a waiting thread sleeps before looking at the session again.
const MAX_IDLE_WAIT: Duration = Duration::from_secs(1);

impl Client {
    /// A client with default [`Options`].
    pub fn new(config: Config) -> Result<Self, Error> {
        Self::with_options(config, Options::default())
    }

    /// A client with the given network options.
    pub fn with_options(config: Config, options: Options) -> Result<Self, Error> {
        let agent = net::agent(&config, &options)?;
        let session = Session::new(config.clone(), Instant::now(), jiff::Timestamp::now());
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                agent,
                state: Mutex::new(State {
                    session,
                    finished: HashMap::new(),
                    failures: HashMap::new(),
                }),
                wake: Condvar::new(),
            }),
        })
    }

    /// A client configured from `DAP_API_URL` (optional), `DAP_CLIENT_ID` and
    /// `DAP_CLIENT_SECRET`, like the official tools; a missing variable is an
    /// [`Error::Config`] naming it.
    pub fn from_env() -> Result<Self, Error> {
        let config = Config::builder_from_vars(|k| std::env::var(k).ok())?.build()?;
        Self::new(config)
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// How many logins the shared session has started.
    pub fn logins(&self) -> u64 {
        self.inner.lock().session.logins()
    }

    /// The tables of a namespace (`canvas`, `canvas_logs`, `catalog`).
    pub fn list_tables(&self, namespace: &str) -> Result<Vec<String>, Error> {
        match self.run(Command::ListTables {
            namespace: namespace.to_owned(),
        })? {
            Outcome::Tables(tables) => Ok(tables),
            other => Err(unexpected(&other)),
        }
    }

    /// The schema of a table.
    pub fn table_schema(&self, namespace: &str, table: &str) -> Result<TableSchema, Error> {
        match self.run(Command::Schema {
            namespace: namespace.to_owned(),
            table: table.to_owned(),
        })? {
            Outcome::Schema(schema) => Ok(schema),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs a query to completion: starts the job, polls it until it ends and fetches
    /// the URLs of its objects.
    pub fn query(&self, namespace: &str, table: &str, query: Query) -> Result<QueryResult, Error> {
        match self.run(Command::Query {
            namespace: namespace.to_owned(),
            table: table.to_owned(),
            query,
        })? {
            Outcome::Query(result) => Ok(result),
            other => Err(unexpected(&other)),
        }
    }

    /// A snapshot of a table, run to completion.
    pub fn snapshot(
        &self,
        namespace: &str,
        table: &str,
        format: Format,
    ) -> Result<QueryResult, Error> {
        self.query(namespace, table, Query::snapshot(format))
    }

    /// The changes of a table since `since` (until `until`, or now), run to completion.
    pub fn incremental(
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
        self.query(namespace, table, query)
    }

    /// A job's status, fetched once.
    pub fn get_job(&self, job: &JobId) -> Result<Job, Error> {
        match self.run(Command::GetJob { job: job.clone() })? {
            Outcome::Job(job) => Ok(job),
            other => Err(unexpected(&other)),
        }
    }

    /// Fresh pre-signed URLs for objects, in request order.
    pub fn object_urls(&self, objects: &[ObjectId]) -> Result<UrlSet, Error> {
        match self.run(Command::ObjectUrls {
            objects: objects.to_vec(),
        })? {
            Outcome::Urls(urls) => Ok(urls),
            other => Err(unexpected(&other)),
        }
    }

    /// Downloads every object of `result` into `dir/job_<job id>/<file name>`.
    ///
    /// Each object is written to a temporary name (`.<name>.partial`) in the same
    /// directory, fsync'ed, and renamed only once its [`dap_proto::Transfer`] reports it
    /// complete and verified (Content-Length matched, gzip verified). On failure the
    /// partial file is removed; a failed object never leaves a file with its final name
    /// (objects finished before the failure stay). Returns the files in the order of
    /// `result.objects`.
    pub fn download(
        &self,
        result: &QueryResult,
        dir: &Path,
        options: &DownloadOptions,
    ) -> Result<Vec<DownloadedFile>, Error> {
        download::download(self, result, dir, options)
    }

    /// Streams the records of every object of `result`, objects in order, without
    /// touching disk: decompressed, verified and split into records (CSV by RFC 4180,
    /// JSON Lines and TSV by line), without their line terminators. CSV/TSV header
    /// lines are records too (the first of each object). Parquet cannot be split: the
    /// iterator yields one [`Error::Usage`].
    pub fn records(&self, result: &QueryResult) -> Records {
        Records::new(self.clone(), result)
    }

    /// Like [`Client::records`], for `jsonl` results only (otherwise the iterator
    /// yields one [`Error::Usage`]), each line parsed as JSON.
    pub fn json_records(&self, result: &QueryResult) -> JsonRecords {
        JsonRecords::new(self.clone(), result)
    }

    /// Starts `command` and pumps the shared session until it is done.
    fn run(&self, command: Command) -> Result<Outcome, Error> {
        let inner = &*self.inner;
        let mut st = inner.lock();
        let op = st.session.start(command, Instant::now());
        loop {
            if let Some(result) = st.finished.remove(&op) {
                let own = st.failures.remove(&Some(op));
                return result.map_err(|e| {
                    let last = match &e {
                        dap_proto::Error::Transport { what: "login", .. } => {
                            st.failures.get(&None).cloned()
                        }
                        _ => own,
                    };
                    Error::from_core(e, last.as_deref())
                });
            }
            let now = Instant::now();
            match st.session.poll_output(now) {
                Output::Send { id, request } => {
                    drop(st);
                    let limit = u64::try_from(inner.config.max_body_bytes())
                        .unwrap_or(u64::MAX)
                        .saturating_add(1);
                    let response = net::send_api(&inner.agent, request, limit);
                    st = inner.lock();
                    let now = Instant::now();
                    let fed = match response {
                        Ok(response) => st.session.handle_response(id, response, now),
                        Err(text) => {
                            let key = st.session.request_operation(id);
                            st.failures.insert(key, text);
                            st.session.handle_failure(id, now)
                        }
                    };
                    if let Err(misuse) = fed {
                        tracing::warn!(error = %misuse, "session refused a response");
                    }
                    inner.wake.notify_all();
                }
                Output::Done { op: done, result } => {
                    st.finished.insert(done, result);
                    if done != op {
                        inner.wake.notify_all();
                    }
                }
                Output::Wait(deadline) => {
                    let wait = deadline
                        .map_or(MAX_IDLE_WAIT, |d| d.saturating_duration_since(now))
                        .min(MAX_IDLE_WAIT);
                    if !wait.is_zero() {
                        st = inner
                            .wake
                            .wait_timeout(st, wait)
                            .unwrap_or_else(PoisonError::into_inner)
                            .0;
                    }
                }
                _ => {
                    // An output this transport does not know: nothing to send, look again
                    // shortly.
                    st = inner
                        .wake
                        .wait_timeout(st, Duration::from_millis(10))
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
        }
    }

    fn agent(&self) -> &ureq::Agent {
        &self.inner.agent
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn unexpected(outcome: &Outcome) -> Error {
    Error::Usage(format!(
        "internal: the session answered with an unexpected outcome ({:?})",
        std::mem::discriminant(outcome)
    ))
}

/// Sleeps until `until` (no-op when it has passed).
fn sleep_until(until: Instant) {
    let now = Instant::now();
    if until > now {
        std::thread::sleep(until - now);
    }
}
