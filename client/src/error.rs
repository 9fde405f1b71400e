//! The one error type of both transports.

use std::path::PathBuf;
use std::time::Duration;

use dap_proto::records::RecordError;
use dap_proto::{
    DapError, DapErrorKind, DownloadError, ProtocolError, ProtocolErrorKind, TransferError,
};

/// Everything a transport client call can fail with. `Display` says what failed and
/// where; no variant ever carries a token, a secret or a URL query string.
///
/// Most callers need three questions answered, not the variants:
///
/// ```
/// # fn handle(error: dap_client::Error) {
/// if error.is_transient() {
///     // 429, 5xx, a timeout or a network failure: try again later,
///     // after `retry_after()` if the server said.
///     let _wait = error.retry_after().unwrap_or(std::time::Duration::from_secs(60));
/// } else if let Some(kind) = error.api_kind() {
///     // The API said no: authentication, validation, not found, ...
///     eprintln!("refused ({kind:?}): {error}");
/// } else {
///     eprintln!("{error}");
/// }
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The core's typed error: the API said no, the server broke the protocol, the
    /// transport kept failing, the call ran out of time, a job failed or timed out, or
    /// an argument was refused.
    #[error(transparent)]
    Dap(dap_proto::Error),
    /// An object download failed: storage refused it, its gzip stream is corrupt or
    /// truncated, or the connection kept failing.
    #[error("download failed: {0}")]
    Transfer(#[from] TransferError),
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
    Config(#[from] dap_proto::ConfigError),
    /// TLS could not be set up (for example an unreadable extra CA file).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The call cannot be made this way (for example JSON records of a CSV job, or an
    /// async call outside a tokio runtime).
    #[error("usage error: {0}")]
    Usage(String),
}

impl Error {
    /// The core's error inside, if any.
    pub fn core(&self) -> Option<&dap_proto::Error> {
        match self {
            Self::Dap(e) => Some(e),
            _ => None,
        }
    }

    /// The DAP API error inside, if the API said no (also for a failed job).
    pub fn api_error(&self) -> Option<&DapError> {
        self.core().and_then(dap_proto::Error::api_error)
    }

    /// What kind of DAP error the API reported, if it did.
    pub fn api_kind(&self) -> Option<&DapErrorKind> {
        self.api_error().map(|e| &e.kind)
    }

    /// Whether the same call may succeed later: 429, 5xx (a DAP body, an HTML page or
    /// anything else), timeouts and connection failures, and downloads that failed for
    /// those reasons. Authentication, validation, not-found, failed jobs, corrupt data
    /// and local file errors are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Dap(e) => e.is_transient(),
            Self::Transfer(TransferError::Transport { .. }) => true,
            Self::Transfer(TransferError::Storage { error, .. }) => error.is_retryable(),
            _ => false,
        }
    }

    /// How long the server asked to wait before trying again (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        self.core().and_then(dap_proto::Error::retry_after)
    }

    /// How many attempts the failed request made, when it was retried to the end.
    pub fn attempts(&self) -> Option<u32> {
        match self {
            Self::Dap(dap_proto::Error::Transport { attempts, .. })
            | Self::Transfer(TransferError::Transport { attempts, .. }) => Some(*attempts),
            _ => None,
        }
    }

    /// Whether further calls with the same credentials are pointless (bad credentials,
    /// account disabled or not onboarded).
    pub fn is_fatal(&self) -> bool {
        self.core().is_some_and(dap_proto::Error::is_fatal)
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    /// A bug in this toolkit (never the caller's fault).
    pub fn internal(what: impl Into<String>) -> Self {
        Self::Dap(dap_proto::Error::Internal(what.into()))
    }

    /// A record of a JSON Lines object that is not valid JSON.
    pub fn bad_json_record(error: &serde_json::Error) -> Self {
        records_error(ProtocolErrorKind::MalformedJson {
            detail: format!("at line {} column {}", error.line(), error.column()),
        })
    }

    /// The error a failed download ends with; `Aborted` stands for `local`, the local
    /// file error that aborted it.
    pub fn from_download(error: DownloadError, local: Option<Self>) -> Self {
        match error {
            DownloadError::Transfer(t) => Self::Transfer(t),
            DownloadError::Urls(e) => Self::Dap(e),
            DownloadError::Argument(e) => Self::Dap(dap_proto::Error::Argument(e)),
            DownloadError::Records { object, error } => {
                records_error(ProtocolErrorKind::InvalidShape {
                    detail: format!("{object}: {error}"),
                })
            }
            DownloadError::Aborted => {
                local.unwrap_or_else(|| Self::internal("a download was aborted for no reason"))
            }
            DownloadError::Internal(what) => Self::internal(what),
            other => Self::internal(other.to_string()),
        }
    }
}

impl From<dap_proto::Error> for Error {
    fn from(error: dap_proto::Error) -> Self {
        Self::Dap(error)
    }
}

impl From<dap_proto::ArgumentError> for Error {
    fn from(error: dap_proto::ArgumentError) -> Self {
        Self::Dap(dap_proto::Error::Argument(error))
    }
}

impl From<RecordError> for Error {
    fn from(error: RecordError) -> Self {
        records_error(ProtocolErrorKind::InvalidShape {
            detail: error.to_string(),
        })
    }
}

fn records_error(kind: ProtocolErrorKind) -> Error {
    Error::Dap(dap_proto::Error::Protocol(ProtocolError {
        status: http::StatusCode::OK,
        kind,
        body_excerpt: String::new(),
        what: "records",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dap_proto::{FailureKind, TransportFailure};

    #[test]
    fn transient_and_attempts() {
        let e = Error::Dap(dap_proto::Error::Transport {
            what: "login",
            attempts: 3,
            last: TransportFailure::new(FailureKind::Connect, "refused http://h/p?sig=1"),
        });
        assert!(e.is_transient());
        assert_eq!(e.attempts(), Some(3));
        let text = e.to_string();
        assert!(
            text.contains("3 attempts") && !text.contains("sig=1"),
            "{text}"
        );
        assert!(!Error::Usage("x".into()).is_transient());
        let timeout = Error::Dap(dap_proto::Error::Timeout {
            what: "list tables",
            after: Duration::from_secs(1),
        });
        assert!(timeout.is_transient() && timeout.api_kind().is_none());
    }
}
