//! # dap-ureq: a blocking client for Instructure's Data Access Platform
//!
//! The blocking transport of the [`dap_proto`] core: it pumps a [`dap_proto::Session`]
//! (API calls) and [`dap_proto::Download`]s (objects and record streams) over
//! [ureq](https://docs.rs/ureq) 3 with rustls. It is a pump and nothing else: it sends
//! what the machines ask, feeds back what came, moves bytes into files and sleeps until
//! their deadlines. Tokens, retries, backoff, job polling, URL refreshes, resumption,
//! verification and file names are the core's decisions, so this crate behaves exactly
//! like its async twin `dap-hyper`. Everything a program needs is re-exported here.
//!
//! ```no_run
//! use dap_ureq::{Client, DownloadOptions, Format};
//!
//! // DAP_API_URL (optional), DAP_CLIENT_ID, DAP_CLIENT_SECRET
//! let client = Client::from_env()?;
//! let tables = client.list_tables("canvas")?;
//! println!("{} tables", tables.len());
//! let result = client.snapshot("canvas", "accounts", Format::Jsonl)?;
//! let files = client.download(&result, "out", &DownloadOptions::default())?;
//! for file in files {
//!     println!("{} ({} bytes)", file.path.display(), file.bytes);
//! }
//! // Later: chain from the snapshot, never from the local clock.
//! let changes = client.incremental("canvas", "accounts", Format::Jsonl, result.range.next_since(), None)?;
//! let mut records = client.json_records(&changes);
//! while let Some(record) = records.next() {
//!     println!("{}", record?["key"]["id"]);
//! }
//! let mut raw = client.records(&changes);
//! while let Some(line) = raw.next() {
//!     println!("{} bytes", line?.len());
//! }
//! # Ok::<(), dap_ureq::Error>(())
//! ```
//!
//! ## Errors
//! One [`Error`] type answers what a caller asks:
//!
//! ```no_run
//! # let client = dap_ureq::Client::from_env()?;
//! match client.list_tables("canvas") {
//!     Ok(tables) => println!("{tables:?}"),
//!     Err(e) if e.is_transient() => {
//!         let wait = e.retry_after().unwrap_or(std::time::Duration::from_secs(60));
//!         eprintln!("try again in {wait:?}: {e}");
//!     }
//!     Err(e) => match e.api_kind() {
//!         Some(dap_ureq::DapErrorKind::Authentication) => eprintln!("check the credentials"),
//!         _ => eprintln!("{e}"),
//!     },
//! }
//! # Ok::<(), dap_ureq::Error>(())
//! ```
//!
//! ## Threads
//! [`Client`] is `Clone + Send + Sync`; clones share one session, so any number of
//! threads share one token and cause one login. Calls pump cooperatively: whichever
//! thread is free sends the next request the session hands out, and each thread returns
//! when its own operation is done. Downloads with [`DownloadOptions::concurrency`] above
//! 1 use a small scoped thread pool.
//!
//! ## Network
//! rustls with the ring provider, Mozilla's roots plus [`Options::extra_ca_file`] and,
//! with [`Options::system_roots`], the system's store; `HTTPS_PROXY`/`HTTP_PROXY`/
//! `ALL_PROXY` honouring `NO_PROXY`, and never a proxy for a loopback destination;
//! connect and read timeouts, the core's low-speed rule and per-call deadline; no
//! redirects, no automatic decompression. Logs (`tracing`, debug level) name method,
//! host and path, never a header value or a pre-signed URL's query string. ureq itself
//! logs through the `log` crate, and at *trace* level its records include full request
//! URLs and the wire bytes; the default feature `redact-library-logs` therefore caps
//! `log` at DEBUG at compile time.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The README's library examples, compiled as this crate's doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeExamples;

mod net;
mod pump;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use dap_proto::{Command, OpId, Outcome, Output, Session};

pub use dap_client::{DownloadOptions, DownloadedFile, Error, IntoDownload, Options};
pub use dap_proto::Config;
pub use dap_proto::{
    self, ConfigBuilder, DapErrorKind, DataRange, Format, Job, JobId, LowSpeed, Mode, ObjectId,
    PollPolicy, Query, QueryResult, RetryPolicy, TableSchema, UrlSet, jiff,
};
pub use pump::{JsonRecords, Records};

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
        let state = Mutex::new(State {
            session,
            finished: HashMap::new(),
        });
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                agent,
                state,
                wake: Condvar::new(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// How many logins the shared session has started.
    pub fn logins(&self) -> u64 {
        self.inner.lock().session.logins()
    }

    dap_client::facade!([] []);

    /// Downloads every object of `result` into `dir/job_<job id>/<file name>`: each is
    /// written under a unique temporary name, verified (length, gzip CRC and size),
    /// fsync'ed and renamed only then. Expiring URLs are refreshed, dropped or stalled
    /// connections resume with `Range`; the first failed object cancels the others and
    /// no failed object leaves a file. Returns the files in the order of the result's
    /// objects (`objects`, then `pending`).
    ///
    /// For a job of many objects, run the query with [`Query::urls_on_demand`] and give
    /// the result by value: it then carries no URLs, and the download fetches them a
    /// batch at a time as it reaches the objects, so memory stays flat however many
    /// objects the job has (pre-signed URLs run to a kilobyte each). [`Client::records`]
    /// and [`Client::json_records`] take such results too.
    pub fn download(
        &self,
        result: impl IntoDownload,
        dir: impl AsRef<Path>,
        options: &DownloadOptions,
    ) -> Result<Vec<DownloadedFile>, Error> {
        pump::download(self, result, dir.as_ref(), options)
    }

    /// Streams the records of every object of `result`, objects in order, without
    /// touching disk: decompressed, verified and split into records (CSV by RFC 4180,
    /// JSON Lines and TSV by line), without their line terminators. CSV/TSV header
    /// lines are records too (the first of each object). Parquet cannot be split: the
    /// iterator yields one [`Error::Dap`] argument error.
    pub fn records(&self, result: impl IntoDownload) -> Records {
        Records::new(self.clone(), result)
    }

    /// Like [`Client::records`], for `jsonl` results only (otherwise the iterator
    /// yields one [`Error::Usage`]), each line parsed as JSON; blank lines are skipped.
    pub fn json_records(&self, result: impl IntoDownload) -> JsonRecords {
        JsonRecords::new(self.clone(), result)
    }

    /// Starts `command` and pumps the shared session until it is done.
    fn run(&self, command: Command) -> Result<Outcome, dap_proto::Error> {
        let inner = &*self.inner;
        let mut st = inner.lock();
        let op = st.session.start(command, Instant::now());
        loop {
            if let Some(result) = st.finished.remove(&op) {
                return result;
            }
            let now = Instant::now();
            match st.session.poll_output(now) {
                Output::Send { id, request } => {
                    let deadline = st.session.request_deadline(id);
                    drop(st);
                    let response = net::exchange(&inner.agent, &inner.config, request, deadline);
                    st = inner.lock();
                    let now = Instant::now();
                    let fed = match response {
                        Ok(response) => st.session.handle_response(id, response, now),
                        Err(failure) => st.session.handle_failure(id, failure, now),
                    };
                    if let Err(misuse) = fed {
                        tracing::debug!(error = %misuse, "session refused a report");
                    }
                    inner.wake.notify_all();
                }
                Output::Done { op: done, result } => {
                    st.finished.insert(done, result);
                    inner.wake.notify_all();
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
                _ => return Err(dap_proto::Error::Internal("unknown session output".into())),
            }
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
