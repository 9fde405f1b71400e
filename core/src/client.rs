//! The vocabulary the transports share: their error type, network options, download
//! options and results. Plain data, no I/O: `dap-hyper` and `dap-ureq` re-export these
//! (as `Error`, `Options`, `DownloadOptions`, `DownloadedFile`), so a program can switch
//! transports without touching its error handling.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error as CoreError, ProtocolError, ProtocolErrorKind};
use crate::model::ObjectId;
use crate::records::RecordError;
use crate::transfer::TransferError;

/// Network settings of a transport client. Build with [`TransportOptions::default`] and
/// the setters.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TransportOptions {
    /// How long resolving and connecting (plus a proxy `CONNECT`) may take. Default 10 s.
    pub connect_timeout: Duration,
    /// Idle read timeout: the longest wait for the response head or for any single piece
    /// of a body, not for a whole body. Default 60 s.
    pub read_timeout: Duration,
    /// A PEM bundle of CA certificates trusted in addition to the webpki roots.
    pub extra_ca_file: Option<PathBuf>,
    /// Honour `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and `NO_PROXY` (and their lowercase
    /// forms). Default true.
    pub proxy_from_env: bool,
}

impl Default for TransportOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            extra_ca_file: None,
            proxy_from_env: true,
        }
    }
}

impl TransportOptions {
    /// Sets [`TransportOptions::connect_timeout`].
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`TransportOptions::read_timeout`].
    #[must_use]
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Sets [`TransportOptions::extra_ca_file`].
    #[must_use]
    pub fn extra_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.extra_ca_file = Some(path.into());
        self
    }

    /// Sets [`TransportOptions::proxy_from_env`].
    #[must_use]
    pub fn proxy_from_env(mut self, enabled: bool) -> Self {
        self.proxy_from_env = enabled;
        self
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
    /// Sets [`DownloadOptions::decompress`].
    #[must_use]
    pub fn decompress(mut self, decompress: bool) -> Self {
        self.decompress = decompress;
        self
    }

    /// Sets [`DownloadOptions::concurrency`] (0 counts as 1).
    #[must_use]
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
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
    /// How many times the download resumed after a dropped connection.
    pub resumes: u32,
    /// How many fresh URLs were fetched after storage refused one.
    pub url_refreshes: u32,
}

impl DownloadedFile {
    /// A file record from a finished transfer and the path it was written to.
    pub fn new(summary: &crate::TransferSummary, path: PathBuf, bytes: u64) -> Self {
        Self {
            object: summary.object.clone(),
            path,
            bytes,
            compressed_bytes: summary.bytes,
            decompressed_bytes: summary.decompressed_bytes,
            resumes: summary.resumes,
            url_refreshes: summary.url_refreshes,
        }
    }
}

/// Everything a transport client call can fail with. `Display` says what failed and
/// where; no variant ever carries a token, a secret or a URL query string.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The core's typed error: the API said no, the server broke the protocol, a job
    /// failed or timed out, or an argument was refused.
    #[error(transparent)]
    Dap(CoreError),
    /// An object download failed: storage refused it, its gzip stream is corrupt or
    /// truncated, or the connection kept dropping.
    #[error("download failed: {0}")]
    Transfer(#[from] TransferError),
    /// A request failed on every attempt the retry policy allows.
    #[error("{what}: the transport failed on all {attempts} attempts (last error: {last})")]
    Transport {
        /// The request that failed (`login`, `list tables`, `job status`, ...).
        what: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The text of the last transport failure, without any URL query string.
        last: String,
    },
    /// Reading or writing a local file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The configuration was refused (for example a missing environment variable).
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
    /// TLS could not be set up (for example an unreadable extra CA file).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The call cannot be made this way (for example JSON records of a CSV job).
    #[error("usage error: {0}")]
    Usage(String),
}

impl ClientError {
    /// Whether further calls with the same credentials are pointless (bad credentials,
    /// account disabled or not onboarded).
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Dap(e) if e.is_fatal())
    }

    /// The core's error inside, if any.
    pub fn dap(&self) -> Option<&CoreError> {
        match self {
            Self::Dap(e) => Some(e),
            _ => None,
        }
    }

    /// Wraps a core error; a transport failure gets `last`, the text of the last
    /// failure the transport saw for that operation.
    pub fn from_core(error: CoreError, last: Option<&str>) -> Self {
        match error {
            CoreError::Transport { what, attempts } => Self::Transport {
                what,
                attempts,
                last: last.unwrap_or("no detail").to_owned(),
            },
            other => Self::Dap(other),
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

impl From<CoreError> for ClientError {
    fn from(error: CoreError) -> Self {
        Self::from_core(error, None)
    }
}

impl From<RecordError> for ClientError {
    fn from(error: RecordError) -> Self {
        Self::Dap(CoreError::Protocol(ProtocolError {
            status: http::StatusCode::OK,
            kind: ProtocolErrorKind::InvalidShape {
                detail: error.to_string(),
            },
            body_excerpt: String::new(),
            what: "records",
        }))
    }
}

impl ClientError {
    /// A record of a JSON Lines object that is not valid JSON.
    pub fn bad_json_record(error: &serde_json::Error) -> Self {
        Self::Dap(CoreError::Protocol(ProtocolError {
            status: http::StatusCode::OK,
            kind: ProtocolErrorKind::MalformedJson {
                detail: format!("at line {} column {}", error.line(), error.column()),
            },
            body_excerpt: String::new(),
            what: "records",
        }))
    }
}

/// The text of an error and its sources, each URL query string cut out: for
/// [`ClientError::Transport::last`] and logs.
pub fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    redact_queries(&text)
}

/// Replaces every `?query` with `?[redacted]`, up to the next whitespace, quote,
/// bracket or comma.
pub fn redact_queries(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut skipping = false;
    for c in text.chars() {
        if skipping {
            if c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>' | ',') {
                skipping = false;
                out.push(c);
            }
            continue;
        }
        if c == '?' {
            out.push_str("?[redacted]");
            skipping = true;
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_query_strings() {
        assert_eq!(
            redact_queries("error sending http://h/p?X-Amz-Signature=abc: closed"),
            "error sending http://h/p?[redacted] closed"
        );
        assert_eq!(redact_queries("a (b?c) d"), "a (b?[redacted]) d");
        assert_eq!(
            redact_queries("GET h/p?s=1, retrying"),
            "GET h/p?[redacted], retrying"
        );
        assert_eq!(redact_queries("plain"), "plain");
    }

    #[test]
    fn transport_mapping_keeps_last_text() {
        let e = ClientError::from_core(
            CoreError::Transport {
                what: "login",
                attempts: 3,
            },
            Some("connection refused"),
        );
        assert_eq!(
            e.to_string(),
            "login: the transport failed on all 3 attempts (last error: connection refused)"
        );
        assert!(!e.is_fatal());
    }
}
