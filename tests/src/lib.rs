//! # dap-tests: the cross-transport conformance suite
//!
//! One list of scenarios (in `tests/conformance.rs`) runs against every way this
//! workspace can talk to the Data Access Platform, over the in-process
//! [`dap_emulator::Emulator`] on 127.0.0.1:
//!
//! * [`Transport::Ureq`]: the blocking `dap_ureq::Client`, called directly;
//! * [`Transport::Hyper`]: the async `dap_hyper::Client`, driven through its own
//!   multi-thread tokio runtime with `block_on`;
//! * [`Transport::Raw`]: a [`dap_proto::Session`] and [`dap_proto::Download`]s pumped
//!   over plain [`std::net::TcpStream`]s, one request per connection, with the
//!   [`dap_proto::wire`] module for API calls (the shape of the core's `raw_tcp`
//!   example) and `httparse` for storage heads, the body streamed as it arrives. Files
//!   go through the shared file policy ([`dap_client::pump::Job`]), like the transports.
//!
//! Every transport is hidden behind the blocking [`Driver`] trait, so a scenario is a
//! plain function `fn(Transport)`. The [`conformance!`] macro expands a scenario into
//! one `#[test]` per transport (`scenario::ureq`, `scenario::hyper`, `scenario::raw`),
//! each optionally `#[ignore]`d with a reason.
//!
//! Besides the drivers, this crate holds what the scenarios share: a fast
//! configuration ([`fast_config`]: millisecond retry and poll intervals), log capture
//! at TRACE level ([`LogCapture`]), and independent decoders of the emulator's output
//! formats ([`parse_csv`], [`parse_tsv`], [`expected_rows`]) so downloaded content is
//! checked against [`dap_emulator::Emulator::expected_records`] without reusing the
//! core's own record splitter.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod raw;
pub mod stub;

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dap_emulator::{Emulator, EmulatorConfig};
use dap_proto::{
    Command, Config, ConfigBuilder, DataRange, Format, Job, JobId, ObjectId, Outcome, PollPolicy,
    Query, QueryResult, RetryPolicy, TableSchema, UrlSet,
};

/// Expands scenarios into one `#[test]` per transport.
///
/// ```text
/// fn every_endpoint(t: Transport) { /* ... */ }
/// conformance!(every_endpoint: ureq, hyper, raw);
/// // a transport with a known bug, left out of the run in plain sight:
/// conformance!(dropped_download: ureq, hyper = "bug: the resume offset is wrong");
/// ```
///
/// The first form generates `every_endpoint::ureq`, `every_endpoint::hyper` and
/// `every_endpoint::raw`, each calling `every_endpoint(Transport::...)`. A transport
/// followed by `= "reason"` is generated with `#[ignore = "reason"]`.
#[macro_export]
macro_rules! conformance {
    ($scenario:ident: $($transport:ident $(= $reason:literal)?),+ $(,)?) => {
        mod $scenario {
            $(
                #[test]
                $(#[ignore = $reason])?
                fn $transport() {
                    super::$scenario($crate::Transport::parse(stringify!($transport)));
                }
            )+
        }
    };
}

/// The ways of talking to the API that the suite covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `dap_ureq::Client` (blocking).
    Ureq,
    /// `dap_hyper::Client` (async, on a tokio multi-thread runtime).
    Hyper,
    /// A bare [`dap_proto::Session`] and [`dap_proto::Download`]s over `std::net::TcpStream`.
    Raw,
}

impl Transport {
    /// Every transport.
    pub const ALL: [Self; 3] = [Self::Ureq, Self::Hyper, Self::Raw];

    /// The transport named `ureq`, `hyper` or `raw` (as [`conformance!`] spells them).
    ///
    /// # Panics
    /// On any other name: a typo in a scenario list.
    pub fn parse(name: &str) -> Self {
        match name {
            "ureq" => Self::Ureq,
            "hyper" => Self::Hyper,
            "raw" => Self::Raw,
            other => panic!("unknown transport `{other}`"),
        }
    }

    /// The name used in test names.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ureq => "ureq",
            Self::Hyper => "hyper",
            Self::Raw => "raw",
        }
    }

    /// Whether the transport downloads objects and streams records (all do).
    pub fn downloads(self) -> bool {
        true
    }

    /// A driver of this transport for `config`, optionally sending every log event of
    /// the client (on every thread it uses) to `logs`.
    pub fn driver(self, config: Config, logs: Option<&LogCapture>) -> Box<dyn Driver> {
        self.driver_with(config, logs, client_options())
    }

    /// Like [`Transport::driver`], with the clients' network `options` (the raw driver
    /// has none).
    pub fn driver_with(
        self,
        config: Config,
        logs: Option<&LogCapture>,
        options: dap_client::Options,
    ) -> Box<dyn Driver> {
        let dispatch = logs.map(LogCapture::dispatch);
        match self {
            Self::Ureq => Box::new(UreqDriver::new(config, dispatch, options)),
            Self::Hyper => Box::new(HyperDriver::new(config, dispatch, options)),
            Self::Raw => Box::new(raw::RawDriver::new(config, dispatch)),
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

// ------------------------------------------------------------------ set-up

/// Milliseconds.
pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The emulator settings most scenarios start from: small tables (so content checks
/// stay fast), default lifetimes, jobs that complete at once.
pub fn small_emulator() -> EmulatorConfig {
    EmulatorConfig {
        rows_per_table: Some(150),
        ..EmulatorConfig::default()
    }
}

/// [`small_emulator`] with `objects` objects per job.
pub fn objects_emulator(objects: u32) -> EmulatorConfig {
    EmulatorConfig {
        objects_per_job: objects,
        ..small_emulator()
    }
}

/// A fresh temporary directory.
///
/// # Panics
/// When none can be made.
pub fn fresh_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// The records of downloaded gzip JSON Lines files, in order.
///
/// # Panics
/// On a file that is not gzip JSON Lines.
pub fn downloaded_json(files: &[Downloaded]) -> Vec<serde_json::Value> {
    let mut records = Vec::new();
    for f in files {
        let text = String::from_utf8(gunzip_file(&f.path)).expect("UTF-8 content");
        records.extend(
            text.lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line")),
        );
    }
    records
}

/// Starts an emulator.
///
/// # Panics
/// When it cannot start.
pub fn start_emulator(config: EmulatorConfig) -> Emulator {
    Emulator::start(config).expect("the emulator starts on 127.0.0.1")
}

/// The retry policy of the suite: 4 attempts, 1 to 10 ms backoff, `Retry-After` capped
/// at 20 ms (so a storm of 429s with `Retry-After: 1` costs milliseconds), 5 ms when a
/// 429 carries none, a fixed jitter seed.
pub fn fast_retry() -> RetryPolicy {
    let mut retry = RetryPolicy::new(4, ms(1), ms(10));
    retry.max_retry_after = ms(20);
    retry.default_retry_after = ms(5);
    retry.jitter_seed = 0x00c0_ffee;
    retry
}

/// The poll policy of the suite: 2 ms doubling to 20 ms.
pub fn fast_poll() -> PollPolicy {
    PollPolicy::new(ms(2), ms(20))
}

/// A configuration builder for `emu` with its credentials, [`fast_retry`] and
/// [`fast_poll`]; adjust it and `build()` it.
pub fn fast_config(emu: &Emulator) -> ConfigBuilder {
    Config::builder(emu.client_id(), emu.client_secret())
        .base_url(emu.base_url())
        .retry(fast_retry())
        .poll(fast_poll())
}

/// An emulator and a driver of one transport talking to it.
pub struct Harness {
    /// The emulator (dropped after the driver).
    pub emu: Emulator,
    /// The client under test.
    pub driver: Box<dyn Driver>,
}

impl Harness {
    /// Starts an emulator with `emu` and a driver of `transport` with [`fast_config`].
    pub fn new(transport: Transport, emu: EmulatorConfig) -> Self {
        Self::with_config(transport, emu, |b| b)
    }

    /// Like [`Harness::new`], with the configuration adjusted by `adjust`.
    ///
    /// # Panics
    /// When the adjusted configuration is invalid.
    pub fn with_config(
        transport: Transport,
        emu: EmulatorConfig,
        adjust: impl FnOnce(ConfigBuilder) -> ConfigBuilder,
    ) -> Self {
        let emu = start_emulator(emu);
        let config = adjust(fast_config(&emu)).build().expect("valid config");
        let driver = transport.driver(config, None);
        Self { emu, driver }
    }
}

// ------------------------------------------------------------------ failures

/// What a failed call failed with, the same for every transport.
#[derive(Debug)]
pub enum FailureKind {
    /// The core's typed error (`Error::Dap` of the transports).
    Dap(dap_proto::Error),
    /// An object download failed (`Error::Transfer`).
    Transfer(dap_proto::TransferError),
    /// A request failed on every attempt without an HTTP answer (`Error::Transport`).
    Transport {
        /// The request.
        what: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The last transport error's text.
        last: String,
    },
    /// A local file operation failed (`Error::Io`).
    Io(PathBuf),
    /// The call was misused (`Error::Usage`).
    Usage(String),
    /// The transport does not do this (downloads over the raw driver).
    NotApplicable,
    /// Anything else (a variant added later, TLS, configuration).
    Other,
}

/// A failed call: its kind, and the `Display` and `Debug` text of the transport's own
/// error (for checks that secrets never show).
#[derive(Debug)]
pub struct Failure {
    /// What failed.
    pub kind: FailureKind,
    /// `Display` and `Debug` of the original error.
    pub text: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Failure {
    fn new(kind: FailureKind, error: &(impl fmt::Display + fmt::Debug)) -> Self {
        Self {
            kind,
            text: format!("{error} | {error:?}"),
        }
    }

    /// The DAP API error inside, if the API said no (also for a failed job).
    pub fn api(&self) -> Option<&dap_proto::DapError> {
        match &self.kind {
            FailureKind::Dap(e) => e.api_error(),
            _ => None,
        }
    }

    /// The protocol error inside, if the server broke the protocol.
    pub fn protocol(&self) -> Option<&dap_proto::ProtocolError> {
        match &self.kind {
            FailureKind::Dap(dap_proto::Error::Protocol(e)) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn from_core(error: dap_proto::Error) -> Self {
        Self::from(dap_client::Error::Dap(error))
    }
}

/// Both transports share one error type (`dap_client::Error`).
impl From<dap_client::Error> for Failure {
    fn from(e: dap_client::Error) -> Self {
        use dap_client::Error as E;
        let kind = match &e {
            E::Dap(dap_proto::Error::Transport {
                what,
                attempts,
                last,
            }) => FailureKind::Transport {
                what,
                attempts: *attempts,
                last: last.to_string(),
            },
            E::Dap(d) => FailureKind::Dap(d.clone()),
            E::Transfer(t) => FailureKind::Transfer(t.clone()),
            E::Io { path, .. } => FailureKind::Io(path.clone()),
            E::Usage(u) => FailureKind::Usage(u.clone()),
            _ => FailureKind::Other,
        };
        Self::new(kind, &e)
    }
}

// ------------------------------------------------------------------ the driver trait

/// One API call, as every transport can make it.
#[derive(Debug, Clone)]
pub enum Call {
    /// `list_tables(namespace)`.
    ListTables {
        /// Namespace.
        namespace: String,
    },
    /// `table_schema(namespace, table)`.
    Schema {
        /// Namespace.
        namespace: String,
        /// Table.
        table: String,
    },
    /// `query(namespace, table, query)`.
    Query {
        /// Namespace.
        namespace: String,
        /// Table.
        table: String,
        /// The query.
        query: Query,
    },
    /// `snapshot(namespace, table, format)`.
    Snapshot {
        /// Namespace.
        namespace: String,
        /// Table.
        table: String,
        /// Format.
        format: Format,
    },
    /// `incremental(namespace, table, format, since, until)`.
    Incremental {
        /// Namespace.
        namespace: String,
        /// Table.
        table: String,
        /// Format.
        format: Format,
        /// Inclusive start.
        since: jiff::Timestamp,
        /// Exclusive end.
        until: Option<jiff::Timestamp>,
    },
    /// `get_job(job)`.
    GetJob {
        /// The job.
        job: JobId,
    },
    /// `object_urls(objects)`.
    ObjectUrls {
        /// The objects.
        objects: Vec<ObjectId>,
    },
}

impl Call {
    /// `list_tables(namespace)`.
    pub fn tables(namespace: &str) -> Self {
        Self::ListTables {
            namespace: namespace.to_owned(),
        }
    }

    /// `table_schema(namespace, table)`.
    pub fn schema(namespace: &str, table: &str) -> Self {
        Self::Schema {
            namespace: namespace.to_owned(),
            table: table.to_owned(),
        }
    }

    /// `snapshot(namespace, table, format)`.
    pub fn snapshot(namespace: &str, table: &str, format: Format) -> Self {
        Self::Snapshot {
            namespace: namespace.to_owned(),
            table: table.to_owned(),
            format,
        }
    }

    /// The core command the call maps to (what the raw driver sends).
    fn command(self) -> Result<Command, dap_proto::Error> {
        Ok(match self {
            Self::ListTables { namespace } => Command::ListTables { namespace },
            Self::Schema { namespace, table } => Command::Schema { namespace, table },
            Self::Query {
                namespace,
                table,
                query,
            } => Command::Query {
                namespace,
                table,
                query,
            },
            Self::Snapshot {
                namespace,
                table,
                format,
            } => Command::Query {
                namespace,
                table,
                query: Query::snapshot(format),
            },
            Self::Incremental {
                namespace,
                table,
                format,
                since,
                until,
            } => {
                let mut query = Query::incremental(format, since);
                if let Some(until) = until {
                    query = query.until(until)?;
                }
                Command::Query {
                    namespace,
                    table,
                    query,
                }
            }
            Self::GetJob { job } => Command::GetJob { job },
            Self::ObjectUrls { objects } => Command::ObjectUrls { objects },
        })
    }
}

impl Call {
    /// The core command the call maps to (what the raw driver sends).
    pub(crate) fn into_command(self) -> Result<Command, dap_proto::Error> {
        self.command()
    }
}

/// What a successful [`Call`] returned.
#[derive(Debug, Clone)]
pub enum Answer {
    /// Table names.
    Tables(Vec<String>),
    /// A schema.
    Schema(TableSchema),
    /// A query run to completion.
    Query(QueryResult),
    /// A job status.
    Job(Job),
    /// Pre-signed URLs.
    Urls(UrlSet),
}

impl From<Outcome> for Answer {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Tables(t) => Self::Tables(t),
            Outcome::Schema(s) => Self::Schema(s),
            Outcome::Job(j) => Self::Job(j),
            Outcome::Urls(u) => Self::Urls(u),
            Outcome::Query(q) => Self::Query(q),
            other => panic!("unknown outcome {other:?}"),
        }
    }
}

/// How to download (mirrors both transports' `DownloadOptions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DownloadSpec {
    /// Write decompressed files.
    pub decompress: bool,
    /// Objects at once.
    pub concurrency: usize,
}

impl DownloadSpec {
    /// The clients' download options for this spec.
    pub fn options(self) -> dap_client::DownloadOptions {
        dap_client::DownloadOptions::default()
            .decompress(self.decompress)
            .concurrency(self.concurrency)
    }
}

impl Default for DownloadSpec {
    fn default() -> Self {
        Self {
            decompress: false,
            concurrency: 4,
        }
    }
}

/// A downloaded object (mirrors both transports' `DownloadedFile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// The object.
    pub object: ObjectId,
    /// The final file.
    pub path: PathBuf,
    /// Bytes written.
    pub bytes: u64,
    /// Bytes of the stored (compressed) object.
    pub compressed_bytes: u64,
    /// Decompressed size, for gzip objects.
    pub decompressed_bytes: Option<u64>,
    /// Resumes after dropped connections.
    pub resumes: u32,
    /// Fresh URLs fetched.
    pub url_refreshes: u32,
}

impl From<dap_client::DownloadedFile> for Downloaded {
    fn from(f: dap_client::DownloadedFile) -> Self {
        Self {
            object: f.object,
            path: f.path,
            bytes: f.bytes,
            compressed_bytes: f.compressed_bytes,
            decompressed_bytes: f.decompressed_bytes,
            resumes: f.resumes,
            url_refreshes: f.url_refreshes,
        }
    }
}

/// A client of one transport, behind blocking calls. Implemented for every
/// [`Transport`]; the scenarios use nothing else.
pub trait Driver: Send + Sync {
    /// Which transport this is.
    fn transport(&self) -> Transport;

    /// Logins the client's session has started.
    fn logins(&self) -> u64;

    /// Makes one API call to completion.
    fn call(&self, call: Call) -> Result<Answer, Failure>;

    /// Makes all `calls` at the same time (threads for the blocking client, tasks for
    /// the async one, one session pumping them all for the raw driver) and returns
    /// their results in order.
    fn concurrently(&self, calls: Vec<Call>) -> Vec<Result<Answer, Failure>>;

    /// `download(result, dir, options)`.
    fn download(
        &self,
        result: &QueryResult,
        dir: &Path,
        spec: DownloadSpec,
    ) -> Result<Vec<Downloaded>, Failure>;

    /// `records(result)`, collected; the first error ends it.
    fn records(&self, result: &QueryResult) -> Result<Vec<Vec<u8>>, Failure>;

    /// `json_records(result)`, collected; the first error ends it.
    fn json_records(&self, result: &QueryResult) -> Result<Vec<serde_json::Value>, Failure>;

    /// `list_tables`.
    fn list_tables(&self, namespace: &str) -> Result<Vec<String>, Failure> {
        match self.call(Call::tables(namespace))? {
            Answer::Tables(t) => Ok(t),
            other => panic!("list_tables answered {other:?}"),
        }
    }

    /// `table_schema`.
    fn table_schema(&self, namespace: &str, table: &str) -> Result<TableSchema, Failure> {
        match self.call(Call::schema(namespace, table))? {
            Answer::Schema(s) => Ok(s),
            other => panic!("table_schema answered {other:?}"),
        }
    }

    /// `query`.
    fn query(&self, namespace: &str, table: &str, query: Query) -> Result<QueryResult, Failure> {
        let call = Call::Query {
            namespace: namespace.to_owned(),
            table: table.to_owned(),
            query,
        };
        match self.call(call)? {
            Answer::Query(q) => Ok(q),
            other => panic!("query answered {other:?}"),
        }
    }

    /// `snapshot`.
    fn snapshot(
        &self,
        namespace: &str,
        table: &str,
        format: Format,
    ) -> Result<QueryResult, Failure> {
        match self.call(Call::snapshot(namespace, table, format))? {
            Answer::Query(q) => Ok(q),
            other => panic!("snapshot answered {other:?}"),
        }
    }

    /// `incremental`.
    fn incremental(
        &self,
        namespace: &str,
        table: &str,
        format: Format,
        since: jiff::Timestamp,
        until: Option<jiff::Timestamp>,
    ) -> Result<QueryResult, Failure> {
        let call = Call::Incremental {
            namespace: namespace.to_owned(),
            table: table.to_owned(),
            format,
            since,
            until,
        };
        match self.call(call)? {
            Answer::Query(q) => Ok(q),
            other => panic!("incremental answered {other:?}"),
        }
    }

    /// `get_job`.
    fn get_job(&self, job: &JobId) -> Result<Job, Failure> {
        match self.call(Call::GetJob { job: job.clone() })? {
            Answer::Job(j) => Ok(j),
            other => panic!("get_job answered {other:?}"),
        }
    }

    /// `object_urls`.
    fn object_urls(&self, objects: &[ObjectId]) -> Result<UrlSet, Failure> {
        let call = Call::ObjectUrls {
            objects: objects.to_vec(),
        };
        match self.call(call)? {
            Answer::Urls(u) => Ok(u),
            other => panic!("object_urls answered {other:?}"),
        }
    }
}

/// Network options of both clients in the suite: short timeouts, no proxy from the
/// environment (everything is on 127.0.0.1).
pub fn client_options() -> dap_client::Options {
    dap_client::Options::default()
        .connect_timeout(Duration::from_secs(2))
        .read_timeout(Duration::from_secs(5))
        .proxy_from_env(false)
}

/// Runs `f` with `dispatch` as this thread's default subscriber, if any.
pub(crate) fn with_logs<R>(dispatch: Option<&tracing::Dispatch>, f: impl FnOnce() -> R) -> R {
    match dispatch {
        Some(d) => tracing::dispatcher::with_default(d, f),
        None => f(),
    }
}

// ------------------------------------------------------------------ ureq

struct UreqDriver {
    client: dap_ureq::Client,
    dispatch: Option<tracing::Dispatch>,
}

impl UreqDriver {
    fn new(
        config: Config,
        dispatch: Option<tracing::Dispatch>,
        options: dap_client::Options,
    ) -> Self {
        let client =
            dap_ureq::Client::with_options(config, options).expect("the ureq client builds");
        Self { client, dispatch }
    }

    fn call_blocking(&self, call: Call) -> Result<Answer, Failure> {
        let c = &self.client;
        with_logs(self.dispatch.as_ref(), || {
            Ok(match call {
                Call::ListTables { namespace } => Answer::Tables(c.list_tables(&namespace)?),
                Call::Schema { namespace, table } => {
                    Answer::Schema(c.table_schema(&namespace, &table)?)
                }
                Call::Query {
                    namespace,
                    table,
                    query,
                } => Answer::Query(c.query(&namespace, &table, query)?),
                Call::Snapshot {
                    namespace,
                    table,
                    format,
                } => Answer::Query(c.snapshot(&namespace, &table, format)?),
                Call::Incremental {
                    namespace,
                    table,
                    format,
                    since,
                    until,
                } => Answer::Query(c.incremental(&namespace, &table, format, since, until)?),
                Call::GetJob { job } => Answer::Job(c.get_job(&job)?),
                Call::ObjectUrls { objects } => Answer::Urls(c.object_urls(&objects)?),
            })
        })
    }
}

impl Driver for UreqDriver {
    fn transport(&self) -> Transport {
        Transport::Ureq
    }

    fn logins(&self) -> u64 {
        self.client.logins()
    }

    fn call(&self, call: Call) -> Result<Answer, Failure> {
        self.call_blocking(call)
    }

    fn concurrently(&self, calls: Vec<Call>) -> Vec<Result<Answer, Failure>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = calls
                .into_iter()
                .map(|call| s.spawn(move || self.call_blocking(call)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a client thread panicked"))
                .collect()
        })
    }

    fn download(
        &self,
        result: &QueryResult,
        dir: &Path,
        spec: DownloadSpec,
    ) -> Result<Vec<Downloaded>, Failure> {
        let options = spec.options();
        let files = with_logs(self.dispatch.as_ref(), || {
            self.client.download(result, dir, &options)
        })?;
        Ok(files.into_iter().map(Downloaded::from).collect())
    }

    fn records(&self, result: &QueryResult) -> Result<Vec<Vec<u8>>, Failure> {
        with_logs(self.dispatch.as_ref(), || {
            self.client
                .records(result)
                .collect::<Result<Vec<_>, _>>()
                .map_err(Failure::from)
        })
    }

    fn json_records(&self, result: &QueryResult) -> Result<Vec<serde_json::Value>, Failure> {
        with_logs(self.dispatch.as_ref(), || {
            self.client
                .json_records(result)
                .collect::<Result<Vec<_>, _>>()
                .map_err(Failure::from)
        })
    }
}

// ------------------------------------------------------------------ hyper

struct HyperDriver {
    // Field order: the client (and its driver task's channel) goes before the runtime.
    client: dap_hyper::Client,
    runtime: tokio::runtime::Runtime,
    dispatch: Option<tracing::Dispatch>,
}

async fn hyper_call(c: &dap_hyper::Client, call: Call) -> Result<Answer, Failure> {
    Ok(match call {
        Call::ListTables { namespace } => Answer::Tables(c.list_tables(&namespace).await?),
        Call::Schema { namespace, table } => {
            Answer::Schema(c.table_schema(&namespace, &table).await?)
        }
        Call::Query {
            namespace,
            table,
            query,
        } => Answer::Query(c.query(&namespace, &table, query).await?),
        Call::Snapshot {
            namespace,
            table,
            format,
        } => Answer::Query(c.snapshot(&namespace, &table, format).await?),
        Call::Incremental {
            namespace,
            table,
            format,
            since,
            until,
        } => Answer::Query(
            c.incremental(&namespace, &table, format, since, until)
                .await?,
        ),
        Call::GetJob { job } => Answer::Job(c.get_job(&job).await?),
        Call::ObjectUrls { objects } => Answer::Urls(c.object_urls(&objects).await?),
    })
}

impl HyperDriver {
    fn new(
        config: Config,
        dispatch: Option<tracing::Dispatch>,
        options: dap_client::Options,
    ) -> Self {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2).enable_all();
        if let Some(d) = dispatch.clone() {
            // Every runtime thread (workers and the blocking pool that writes files)
            // logs into the capture for its whole life.
            builder.on_thread_start(move || {
                std::mem::forget(tracing::dispatcher::set_default(&d));
            });
        }
        let runtime = builder.build().expect("a tokio runtime");
        let client =
            dap_hyper::Client::with_options(config, options).expect("the hyper client builds");
        Self {
            client,
            runtime,
            dispatch,
        }
    }

    fn block_on<F: Future>(&self, f: F) -> F::Output {
        with_logs(self.dispatch.as_ref(), || self.runtime.block_on(f))
    }
}

impl Driver for HyperDriver {
    fn transport(&self) -> Transport {
        Transport::Hyper
    }

    fn logins(&self) -> u64 {
        self.client.logins()
    }

    fn call(&self, call: Call) -> Result<Answer, Failure> {
        self.block_on(hyper_call(&self.client, call))
    }

    fn concurrently(&self, calls: Vec<Call>) -> Vec<Result<Answer, Failure>> {
        self.block_on(async {
            let tasks: Vec<_> = calls
                .into_iter()
                .map(|call| {
                    let client = self.client.clone();
                    tokio::spawn(async move { hyper_call(&client, call).await })
                })
                .collect();
            futures_util::future::join_all(tasks)
                .await
                .into_iter()
                .map(|r| r.expect("a client task panicked"))
                .collect()
        })
    }

    fn download(
        &self,
        result: &QueryResult,
        dir: &Path,
        spec: DownloadSpec,
    ) -> Result<Vec<Downloaded>, Failure> {
        let options = spec.options();
        let files = self.block_on(self.client.download(result, dir, &options))?;
        Ok(files.into_iter().map(Downloaded::from).collect())
    }

    fn records(&self, result: &QueryResult) -> Result<Vec<Vec<u8>>, Failure> {
        use futures_util::StreamExt as _;
        let stream = self.client.records(result);
        self.block_on(async move {
            let items: Vec<_> = stream.collect().await;
            items
                .into_iter()
                .map(|r| r.map(|b| b.to_vec()).map_err(Failure::from))
                .collect()
        })
    }

    fn json_records(&self, result: &QueryResult) -> Result<Vec<serde_json::Value>, Failure> {
        use futures_util::StreamExt as _;
        let stream = self.client.json_records(result);
        self.block_on(async move {
            let items: Vec<_> = stream.collect().await;
            items
                .into_iter()
                .map(|r| r.map_err(Failure::from))
                .collect()
        })
    }
}

// ------------------------------------------------------------------ logs

/// A buffer that a `tracing-subscriber` `fmt` layer writes every event into, at TRACE
/// level, without ANSI colours.
///
/// [`LogCapture::new`] keeps the events emitted with `tracing` (the toolkit's own).
/// [`LogCapture::with_log_records`] also keeps the records of libraries that use the
/// `log` crate (ureq, rustls), bridged into `tracing` the way
/// `tracing_subscriber::fmt().init()` does by default in applications.
#[derive(Clone, Default)]
pub struct LogCapture {
    buffer: Arc<Mutex<Vec<u8>>>,
    log_records: bool,
}

/// Installs, once per process, a global default subscriber that records nothing but
/// answers "ask me each time" for every callsite and allows every level; then rebuilds
/// the callsite interest cache.
///
/// A capture is a thread's scoped subscriber, and other tests run on other threads with
/// none. Without this, a callsite first reached on such a thread can have its interest
/// cached as "never" (or the global level hint left below TRACE), and the capture then
/// misses those events at random: a short capture proves nothing about secrets.
pub fn ask_each_time() {
    use tracing::subscriber::Interest;
    struct AskEachTime;
    impl tracing::Subscriber for AskEachTime {
        fn register_callsite(&self, _: &'static tracing::Metadata<'static>) -> Interest {
            Interest::sometimes()
        }
        fn max_level_hint(&self) -> Option<tracing::level_filters::LevelFilter> {
            Some(tracing::level_filters::LevelFilter::TRACE)
        }
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            false
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, _: &tracing::Event<'_>) {}
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }
    static GLOBAL: std::sync::Once = std::sync::Once::new();
    GLOBAL.call_once(|| {
        // Fails only when the test binary installed its own global subscriber, which
        // then decides; the capture's assertion on its length still guards the result.
        let _ = tracing::subscriber::set_global_default(AskEachTime);
    });
    tracing::callsite::rebuild_interest_cache();
}

/// The writer [`LogCapture`] hands the subscriber.
pub struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        LogWriter(Arc::clone(&self.buffer))
    }
}

impl LogCapture {
    /// An empty capture of `tracing` events.
    pub fn new() -> Self {
        ask_each_time();
        Self::default()
    }

    /// An empty capture of `tracing` events and of `log` records. Installs the
    /// process-wide `log` to `tracing` bridge (at TRACE) on first use; captures made
    /// with [`LogCapture::new`] keep ignoring bridged records.
    pub fn with_log_records() -> Self {
        static BRIDGE: std::sync::Once = std::sync::Once::new();
        BRIDGE.call_once(|| {
            // Fails only when another logger is installed: then there is nothing to
            // bridge from, and the scenario's assertions still hold for what arrives.
            let _ = tracing_log::LogTracer::init();
        });
        ask_each_time();
        Self {
            log_records: true,
            ..Self::default()
        }
    }

    /// A dispatcher logging every event and span field at TRACE level into the buffer.
    pub fn dispatch(&self) -> tracing::Dispatch {
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        let log_records = self.log_records;
        let layer = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_thread_names(true)
            .with_span_events(tracing_subscriber::fmt::format::FmtSpan::FULL)
            .with_writer(self.clone())
            .with_filter(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_filter(tracing_subscriber::filter::filter_fn(move |meta| {
                // Records bridged from `log` carry a `log.target` field.
                log_records || meta.fields().field("log.target").is_none()
            }));
        tracing::Dispatch::new(tracing_subscriber::registry().with(layer))
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }
}

// ------------------------------------------------------------------ content

/// The emulator's range for what a job covered.
///
/// # Panics
/// On a range kind this suite does not know.
pub fn emulator_range(range: &DataRange) -> dap_emulator::EmulatedRange {
    match *range {
        DataRange::Snapshot { at } => dap_emulator::EmulatedRange::Snapshot {
            at_ms: at.as_millisecond(),
        },
        DataRange::Incremental { since, until } => dap_emulator::EmulatedRange::Incremental {
            since_ms: since.as_millisecond(),
            until_ms: until.as_millisecond(),
        },
        other => panic!("unknown range {other:?}"),
    }
}

/// The records the emulator says a job over `table` returned.
///
/// # Panics
/// For an unknown table.
pub fn expected_records(
    emu: &Emulator,
    namespace: &str,
    table: &str,
    range: &DataRange,
) -> Vec<dap_emulator::Record> {
    emu.expected_records(namespace, table, emulator_range(range))
        .expect("a known table")
}

/// The JSON values of [`expected_records`], as `jsonl` lines hold them.
pub fn expected_json(
    emu: &Emulator,
    namespace: &str,
    table: &str,
    range: &DataRange,
) -> Vec<serde_json::Value> {
    expected_records(emu, namespace, table, range)
        .iter()
        .map(dap_emulator::Record::to_json)
        .collect()
}

/// Decompresses a whole (multi-member) gzip file.
///
/// # Panics
/// When the file cannot be read or is not valid gzip.
pub fn gunzip_file(path: &Path) -> Vec<u8> {
    let file = std::fs::File::open(path).expect("open the downloaded file");
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(file)
        .read_to_end(&mut out)
        .expect("a valid gzip file");
    out
}

/// One field of a CSV or TSV export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// A value (possibly empty).
    Text(String),
    /// SQL NULL: `NULL` unquoted in CSV, `\N` in TSV (where it also stands for a
    /// missing value).
    Null,
    /// No value at all: an empty unquoted CSV field (the value columns of a delete).
    Missing,
}

/// Parses RFC 4180 CSV as the emulator writes it: CRLF line ends, `"` quoting with
/// `""` escapes, unquoted `NULL` is [`Cell::Null`], an empty unquoted field is
/// [`Cell::Missing`], a quoted field is always [`Cell::Text`].
///
/// # Panics
/// On input that is not valid CSV (an unterminated quote, text after a closing quote,
/// a bare CR).
pub fn parse_csv(text: &str) -> Vec<Vec<Cell>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut chars = text.chars().peekable();
    if text.is_empty() {
        return rows;
    }
    loop {
        // One field.
        let cell = if chars.peek() == Some(&'"') {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        s.push('"');
                    }
                    Some('"') => break,
                    Some(c) => s.push(c),
                    None => panic!("CSV ends inside a quoted field"),
                }
            }
            Cell::Text(s)
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if matches!(c, ',' | '\r' | '\n') {
                    break;
                }
                assert_ne!(c, '"', "a quote inside an unquoted CSV field");
                s.push(c);
                chars.next();
            }
            match s.as_str() {
                "" => Cell::Missing,
                "NULL" => Cell::Null,
                _ => Cell::Text(s),
            }
        };
        row.push(cell);
        match chars.next() {
            Some(',') => {}
            Some('\r') => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF in CSV");
                rows.push(std::mem::take(&mut row));
                if chars.peek().is_none() {
                    return rows;
                }
            }
            Some('\n') => panic!("CSV record ended with a bare LF (expected CRLF)"),
            Some(c) => panic!("unexpected {c:?} after a CSV field"),
            None => {
                rows.push(row);
                return rows;
            }
        }
    }
}

/// Parses the PostgreSQL `COPY` text format as the emulator writes it: LF line ends,
/// tab separators, `\N` is [`Cell::Null`], `\\ \t \n \r` escapes.
///
/// # Panics
/// On an unknown escape.
pub fn parse_tsv(text: &str) -> Vec<Vec<Cell>> {
    let body = text.strip_suffix('\n').unwrap_or(text);
    if body.is_empty() {
        return Vec::new();
    }
    body.split('\n').map(parse_tsv_line).collect()
}

/// Parses one TSV line (without its LF); see [`parse_tsv`].
///
/// # Panics
/// On an unknown escape.
pub fn parse_tsv_line(line: &str) -> Vec<Cell> {
    line.split('\t')
        .map(|field| {
            if field == "\\N" {
                return Cell::Null;
            }
            let mut s = String::with_capacity(field.len());
            let mut chars = field.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    s.push(c);
                    continue;
                }
                match chars.next() {
                    Some('\\') => s.push('\\'),
                    Some('t') => s.push('\t'),
                    Some('n') => s.push('\n'),
                    Some('r') => s.push('\r'),
                    other => panic!("unknown TSV escape \\{other:?} in {field:?}"),
                }
            }
            Cell::Text(s)
        })
        .collect()
}

/// The rows (header first) a CSV or TSV export of `records` holds, with the header
/// taken from the emulator's table definition (expanded mode).
///
/// # Panics
/// For an unknown table or a format other than csv and tsv.
pub fn expected_rows(
    namespace: &str,
    table: &str,
    incremental: bool,
    format: Format,
    records: &[dap_emulator::Record],
) -> Vec<Vec<Cell>> {
    assert!(matches!(format, Format::Csv | Format::Tsv), "{format}");
    let columns = dap_emulator::data::table(namespace, table)
        .expect("a known table")
        .columns(incremental, false);
    let mut rows = vec![columns.iter().map(|c| Cell::Text(c.clone())).collect()];
    for r in records {
        rows.push(
            columns
                .iter()
                .map(|col| {
                    let value_column = col.starts_with("value.");
                    match r.column(col).flatten() {
                        Some(text) => Cell::Text(text),
                        // TSV writes NULL and missing alike.
                        None if format == Format::Tsv => Cell::Null,
                        None if value_column && r.value.is_none() => Cell::Missing,
                        None if col == "meta.action" => Cell::Missing,
                        None => Cell::Null,
                    }
                })
                .collect(),
        );
    }
    rows
}

/// Parses one object's decompressed content in `format` into rows (header first for
/// csv/tsv) or, for jsonl, one JSON value per line.
///
/// # Panics
/// On content that does not parse.
pub fn parse_content(format: Format, bytes: &[u8]) -> Parsed {
    let text = std::str::from_utf8(bytes).expect("UTF-8 content");
    match format {
        Format::Jsonl => Parsed::Json(
            text.lines()
                .map(|l| serde_json::from_str(l).expect("a JSON line"))
                .collect(),
        ),
        Format::Csv => Parsed::Rows(parse_csv(text)),
        Format::Tsv => Parsed::Rows(parse_tsv(text)),
        other => panic!("no parser for {other}"),
    }
}

/// Parsed content of an object.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// JSON Lines.
    Json(Vec<serde_json::Value>),
    /// CSV/TSV rows, header first.
    Rows(Vec<Vec<Cell>>),
}

// ------------------------------------------------------------------ files

/// Every file under `dir` (relative paths, sorted), to spot leftovers.
///
/// # Panics
/// When the directory cannot be read.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if !dir.exists() {
        return out;
    }
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() {
            out.extend(
                files_under(&entry.path())
                    .into_iter()
                    .map(|n| format!("{name}/{n}")),
            );
        } else {
            out.push(name);
        }
    }
    out.sort();
    out
}

/// Polls `condition` every millisecond until it holds, for at most `limit`.
/// For waiting on the emulator's statistics while another thread drives a client.
///
/// # Panics
/// When the condition does not hold in time.
pub fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(ms(1));
    }
}
