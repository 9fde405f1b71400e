//! Transport options, download options and download results.

use std::path::PathBuf;
use std::time::Duration;

use dap_proto::ObjectId;

/// Network settings of a [`crate::Client`]. Build with [`Options::default`] and the
/// setters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// How long establishing a connection (TCP, plus a proxy `CONNECT`) may take.
    /// Default 10 s.
    pub connect_timeout: Duration,
    /// Idle read timeout: the longest wait for the response head or for any single
    /// piece of a body (not for a whole body). Default 60 s.
    pub read_timeout: Duration,
    /// A PEM bundle of extra trusted CA certificates, added to the webpki roots.
    pub extra_ca_file: Option<PathBuf>,
    /// Honour `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (and their
    /// lowercase forms). Default true.
    pub proxy_from_env: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            extra_ca_file: None,
            proxy_from_env: true,
        }
    }
}

impl Options {
    /// Sets [`Options::connect_timeout`].
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`Options::read_timeout`].
    #[must_use]
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Sets [`Options::extra_ca_file`].
    #[must_use]
    pub fn extra_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.extra_ca_file = Some(path.into());
        self
    }

    /// Sets [`Options::proxy_from_env`].
    #[must_use]
    pub fn proxy_from_env(mut self, enabled: bool) -> Self {
        self.proxy_from_env = enabled;
        self
    }
}

/// How [`crate::Client::download`] writes a job's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DownloadOptions {
    /// Write gzip objects decompressed (their `.gz` suffix dropped). Parquet is always
    /// written as is. Default false. Gzip objects are verified either way.
    pub decompress: bool,
    /// How many objects download at once (at least 1; 1 is sequential). Default 4.
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
    /// Sets [`DownloadOptions::decompress`].
    #[must_use]
    pub fn decompress(mut self, decompress: bool) -> Self {
        self.decompress = decompress;
        self
    }

    /// Sets [`DownloadOptions::concurrency`] (0 is treated as 1).
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }
}

/// One object written by [`crate::Client::download`].
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
    /// How many times the download resumed after a dropped connection.
    pub resumes: u32,
    /// How many fresh URLs were fetched after storage refused one.
    pub url_refreshes: u32,
}
