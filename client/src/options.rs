//! Network options, download options and download results.

use std::path::PathBuf;
use std::time::Duration;

use dap_proto::{ObjectId, TransferSummary};

/// Network settings of a transport client. Build with [`Options::default`] and the
/// setters. The low-speed rule and the per-call deadline are the core's
/// ([`dap_proto::Config::low_speed`], [`dap_proto::Config::call_timeout`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// How long resolving and connecting (plus a proxy `CONNECT`) may take. Default 10 s.
    pub connect_timeout: Duration,
    /// Idle read timeout: the longest wait for the response head or for any single piece
    /// of a body (capped by the low-speed window). Default 60 s.
    pub read_timeout: Duration,
    /// A PEM bundle of CA certificates trusted in addition to the built-in roots.
    pub extra_ca_file: Option<PathBuf>,
    /// Also trust the operating system's certificate store (for TLS-inspecting
    /// corporate proxies). Default false: Mozilla's roots only.
    pub system_roots: bool,
    /// Honour `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (and their
    /// lowercase forms). Loopback destinations never go through a proxy. Default true.
    pub proxy_from_env: bool,
    /// A proxy for every request (`http://[user:password@]host:port`), instead of the
    /// environment's. Loopback destinations never go through it.
    pub proxy: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            extra_ca_file: None,
            system_roots: false,
            proxy_from_env: true,
            proxy: None,
        }
    }
}

impl Options {
    dap_proto::setters!(Options:
        connect_timeout(connect_timeout: Duration),
        read_timeout(read_timeout: Duration),
        system_roots(system_roots: bool),
        proxy_from_env(proxy_from_env: bool),
    );
    dap_proto::setters! {
        /// Sets [`Options::extra_ca_file`].
        #[must_use]
        fn extra_ca_file(path: impl Into<PathBuf>) { extra_ca_file = Some(path.into()) }
        /// Sets [`Options::proxy`].
        #[must_use]
        fn proxy(url: impl Into<String>) { proxy = Some(url.into()) }
    }
}

/// How a transport's `download` writes a job's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DownloadOptions {
    /// Write gzip objects decompressed, without their `.gz` suffix. Parquet is always
    /// written as is; gzip objects are verified either way. Default false.
    pub decompress: bool,
    /// How many objects download at once (1 is sequential; 0 counts as 1). Default 4.
    pub concurrency: usize,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        Self {
            decompress: false,
            concurrency: 4,
        }
    }
}

impl DownloadOptions {
    dap_proto::setters!(DownloadOptions: decompress(decompress: bool));
    dap_proto::setters! {
        /// Sets [`DownloadOptions::concurrency`] (0 counts as 1).
        #[must_use]
        fn concurrency(concurrency: usize);
    }

    /// The core's download spec for these options, with a fresh random nonce for the
    /// temporary file names.
    pub fn spec(&self) -> dap_proto::DownloadSpec {
        dap_proto::DownloadSpec::files(self.concurrency, self.decompress, crate::files::nonce())
    }
}

/// One object written and verified by a transport's `download`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DownloadedFile {
    /// The object.
    pub object: ObjectId,
    /// Where it was written: `dir/job_<job id>/<file name>`.
    pub path: PathBuf,
    /// Bytes written to the file.
    pub bytes: u64,
    /// Bytes of the object as stored (compressed).
    pub compressed_bytes: u64,
    /// Decompressed size, for gzip objects.
    pub decompressed_bytes: Option<u64>,
    /// How many times the download resumed after a dropped or stalled connection.
    pub resumes: u32,
    /// How many fresh URLs were fetched after storage refused one.
    pub url_refreshes: u32,
}

/// `dir/name` without the spare capacity of [`std::path::Path::join`]: a download of
/// many thousands of objects keeps one of these per file.
fn exact_join(dir: &std::path::Path, name: &str) -> PathBuf {
    let mut path = PathBuf::with_capacity(dir.as_os_str().len() + 1 + name.len());
    path.push(dir);
    path.push(name);
    path
}

impl DownloadedFile {
    /// The record of one object of a finished download into `job_dir` (the job's
    /// directory, inside the download directory).
    pub fn new(job_dir: &std::path::Path, s: &TransferSummary) -> Self {
        Self {
            object: s.object.clone(),
            path: exact_join(job_dir, &s.file_name),
            bytes: s.output_bytes,
            compressed_bytes: s.bytes,
            decompressed_bytes: s.decompressed_bytes,
            resumes: s.resumes,
            url_refreshes: s.url_refreshes,
        }
    }
}
