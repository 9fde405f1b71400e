//! The one error type of the crate: the core's typed errors plus what the transport adds.

use std::path::PathBuf;

/// Everything a [`crate::Client`] call can fail with.
///
/// `Display` says what failed and where. It never contains the client secret, an access
/// token or the query string (signature) of a pre-signed URL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The core's typed error: the API said no, the server broke the protocol, a job
    /// failed or timed out, or an argument was refused.
    #[error(transparent)]
    Dap(dap_proto::Error),
    /// An object download failed: storage refused it, its gzip stream is corrupt or
    /// truncated, or the connection kept dropping.
    #[error(transparent)]
    Transfer(#[from] dap_proto::TransferError),
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
    Config(#[from] dap_proto::ConfigError),
    /// TLS could not be set up (for example an unreadable extra CA file).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The call cannot be made this way (for example JSON records of a CSV job).
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Whether further operations with the same credentials are pointless (bad
    /// credentials, account disabled or not onboarded).
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::Dap(e) => e.is_fatal(),
            _ => false,
        }
    }

    /// Wraps a core error; a transport failure gets the text of the last failure seen.
    pub(crate) fn from_dap(error: dap_proto::Error, last: Option<&str>) -> Self {
        match error {
            dap_proto::Error::Transport { what, attempts } => Self::Transport {
                what,
                attempts,
                last: last.unwrap_or("unknown").to_owned(),
            },
            other => Self::Dap(other),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// The text of a transport error with every URL query string cut out.
pub(crate) fn redact(text: &str) -> String {
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
            redact("failed GET http://h/p.gz?X-Amz-Signature=abc: reset"),
            "failed GET http://h/p.gz?[redacted] reset"
        );
        assert_eq!(redact("connection refused"), "connection refused");
    }

    #[test]
    fn transport_mapping_keeps_last_text() {
        let e = Error::from_dap(
            dap_proto::Error::Transport {
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
