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

mod content;
mod hyper_driver;
mod logs;
mod raw;
pub mod stub;
mod ureq_driver;

pub use content::*;
pub use logs::*;

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
use hyper_driver::HyperDriver;
use ureq_driver::UreqDriver;

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
