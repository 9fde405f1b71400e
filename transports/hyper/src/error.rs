//! The one error type of this crate.

use std::path::PathBuf;

/// Everything a [`crate::Client`] call can fail with. `Display` says what failed and
/// where; no variant ever carries a token, a secret or a URL query string.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The protocol core's typed error: the API said no, the server broke the
    /// protocol, a job failed or timed out, or an argument was refused.
    #[error(transparent)]
    Dap(dap_proto::Error),
    /// An object download failed (storage refused it, corrupt or truncated gzip, too
    /// many dropped connections).
    #[error("download failed: {0}")]
    Transfer(#[from] dap_proto::TransferError),
    /// A request failed on every attempt without any HTTP response.
    #[error("{what}: the transport failed on all {attempts} attempts; last error: {last}")]
    Transport {
        /// What was being requested.
        what: &'static str,
        /// Attempts made.
        attempts: u32,
        /// The text of the last transport failure (query strings removed).
        last: String,
    },
    /// Reading or writing a local file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is invalid (for example a missing environment variable).
    #[error(transparent)]
    Config(#[from] dap_proto::ConfigError),
    /// TLS could not be set up (for example an unreadable extra CA file).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The call was used in a way it does not support.
    #[error("usage error: {0}")]
    Usage(String),
}

impl Error {
    /// Whether further calls with the same credentials are pointless (bad credentials,
    /// account disabled or not onboarded).
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Dap(e) if e.is_fatal())
    }

    /// The core's error inside, if any.
    pub fn dap(&self) -> Option<&dap_proto::Error> {
        match self {
            Self::Dap(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn from_dap(error: dap_proto::Error, last: Option<&str>) -> Self {
        match error {
            dap_proto::Error::Transport { what, attempts } => Self::Transport {
                what,
                attempts,
                last: last.unwrap_or("(no detail)").to_owned(),
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

impl From<dap_proto::Error> for Error {
    fn from(error: dap_proto::Error) -> Self {
        Self::from_dap(error, None)
    }
}

/// The text of an error and its sources, with anything that looks like a URL query
/// string removed, for [`Error::Transport::last`] and logs.
pub(crate) fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
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
    redact(&text)
}

/// Removes every `?query` up to the next whitespace or quote.
pub(crate) fn redact(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut skipping = false;
    for c in text.chars() {
        if skipping {
            if c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>') {
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
            redact("error sending http://h/p?X-Amz-Signature=abc: closed"),
            "error sending http://h/p?[redacted] closed"
        );
        assert_eq!(redact("a (b?c) d"), "a (b?[redacted]) d");
        assert_eq!(redact("plain"), "plain");
    }

    #[test]
    fn transport_mapping() {
        let e = Error::from_dap(
            dap_proto::Error::Transport {
                what: "login",
                attempts: 3,
            },
            Some("connection refused"),
        );
        assert_eq!(
            e.to_string(),
            "login: the transport failed on all 3 attempts; last error: connection refused"
        );
    }
}
