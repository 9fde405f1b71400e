//! # dap-hyper: the async transport of the DAP client toolkit
//!
//! Drives the sans-IO core [`dap_proto`] over tokio, hyper 1 and rustls. It is a pump:
//! every decision about tokens, retries, backoff, job polling, URL refreshes,
//! resumption, verification and file names is the core's; this crate sends what the
//! core asks, feeds the answers back, moves bytes into files and sleeps until the core's
//! deadlines. Everything a program needs is re-exported here.
//!
//! ```no_run
//! # async fn demo() -> Result<(), dap_hyper::Error> {
//! use dap_hyper::{Client, DownloadOptions, Format};
//! use futures_util::StreamExt as _;
//!
//! let client = Client::from_env()?; // DAP_API_URL, DAP_CLIENT_ID, DAP_CLIENT_SECRET
//! let tables = client.list_tables("canvas").await?;
//! let result = client.snapshot("canvas", &tables[0], Format::Jsonl).await?;
//! let files = client.download(&result, "out", &DownloadOptions::default()).await?;
//! println!("{} files", files.len());
//! // Later: chain from the snapshot, never from the local clock.
//! let since = result.range.next_since();
//! let changes = client.incremental("canvas", &tables[0], Format::Jsonl, since, None).await?;
//! let mut records = client.json_records(&changes);
//! while let Some(record) = records.next().await {
//!     println!("{}", record?["key"]["id"]);
//! }
//! let mut raw = client.records(&changes);
//! while let Some(line) = raw.next().await {
//!     println!("{} bytes", line?.len());
//! }
//! # Ok(()) }
//! ```
//!
//! ## Errors
//! One [`Error`] type answers what a caller asks:
//!
//! ```no_run
//! # async fn demo(client: dap_hyper::Client) {
//! match client.list_tables("canvas").await {
//!     Ok(tables) => println!("{tables:?}"),
//!     Err(e) if e.is_transient() => {
//!         let wait = e.retry_after().unwrap_or(std::time::Duration::from_secs(60));
//!         eprintln!("try again in {wait:?}: {e}");
//!     }
//!     Err(e) => match e.api_kind() {
//!         Some(dap_hyper::DapErrorKind::Authentication) => eprintln!("check the credentials"),
//!         _ => eprintln!("{e}"),
//!     },
//! }
//! # }
//! ```
//!
//! ## How it runs
//! A [`Client`] is cheap to clone; all clones share one [`dap_proto::Session`], so any
//! number of concurrent calls log in once. The session lives in a driver task, spawned
//! on the tokio runtime of the **first call** ([`Client::new`] is synchronous and may
//! run outside any runtime). When the last clone is dropped the driver ends; if its
//! runtime shuts down, the next call starts a new driver on the caller's runtime.
//!
//! A download runs one [`dap_proto::Download`] in the caller's task. Each storage
//! request it lends out runs on its own task; its body is handed in chunks over a
//! bounded channel to a blocking worker that verifies (and optionally inflates) it and
//! writes the file, so reading, inflating and writing overlap and memory stays flat.
//!
//! ## Network
//! rustls with the ring provider, Mozilla's roots plus [`Options::extra_ca_file`] and,
//! with [`Options::system_roots`], the system's store; HTTP/1.1 with pooling; no
//! redirect ever followed; connect and read timeouts, the core's low-speed rule and
//! per-call deadline; `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`/`NO_PROXY` (or
//! [`Options::proxy`]), never for a loopback destination.
//!
//! ## Secrets
//! Errors and logs never contain the client secret, a token or the query string of a
//! pre-signed URL; logs name method, path, status and durations only.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod driver;
mod net;
mod pump;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dap_proto::{Command, Outcome};
use tokio::sync::{mpsc, oneshot};

pub use dap_client::{DownloadOptions, DownloadedFile, Error, IntoDownload, Options};
pub use dap_proto::{
    self, Config, ConfigBuilder, DapErrorKind, DataRange, Format, Job, JobId, LowSpeed, Mode,
    ObjectId, PollPolicy, Query, QueryResult, RetryPolicy, TableSchema, UrlSet, jiff,
};
pub use pump::{JsonRecords, RecordStream, Records};

use net::Net;

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

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// How many logins the session has started so far.
    pub fn logins(&self) -> u64 {
        self.inner.logins.load(Ordering::Relaxed)
    }

    dap_client::facade!([async] [.await]);

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
    pub async fn download(
        &self,
        result: impl IntoDownload,
        dir: impl AsRef<Path>,
        options: &DownloadOptions,
    ) -> Result<Vec<DownloadedFile>, Error> {
        pump::download(self, result, dir.as_ref(), options).await
    }

    /// Streams the records of every object of `result`, objects in order, without
    /// touching disk: decompressed, verified and split (CSV by RFC 4180, JSON Lines and
    /// TSV by line), without their line terminators; CSV/TSV header lines are records
    /// too. Parquet yields one argument error. Lazy: nothing is requested before the
    /// first poll; dropping the stream stops the download. After an error it ends.
    pub fn records(&self, result: impl IntoDownload) -> Records {
        Records::new(self.clone(), result)
    }

    /// Like [`Client::records`], each jsonl line parsed into a JSON value; blank lines
    /// are skipped. Any other format yields an [`Error::Usage`].
    pub fn json_records(&self, result: impl IntoDownload) -> JsonRecords {
        let format = result.format();
        JsonRecords::new(self.records(result), format)
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
        let inner = &self.inner;
        let run = driver::run(
            inner.config.clone(),
            inner.net.clone(),
            rx,
            Arc::clone(&inner.logins),
        );
        handle.spawn(run);
        *slot = Some(tx.clone());
        Ok(tx)
    }

    /// Runs `command` on the shared session.
    async fn run(&self, command: Command) -> Result<Outcome, Error> {
        let (reply, answer) = oneshot::channel();
        let mut start = (command, reply);
        for _ in 0..2 {
            match self.driver()?.send(start) {
                Ok(()) => {
                    let result = answer.await.map_err(|_| {
                        Error::internal("the client's driver task stopped (its runtime shut down)")
                    })?;
                    return Ok(result?);
                }
                Err(mpsc::error::SendError(back)) => start = back,
            }
        }
        Err(Error::internal(
            "the client's driver task could not be started",
        ))
    }
}
