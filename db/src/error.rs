//! Replication failures, split by whose fault they are.

use crate::conn::ConnectionStringError;
use crate::model::SchemaError;
use crate::plan::NotNewer;
use crate::source::SourceError;
use crate::tsv::TsvError;

/// Why replicating a table (or reading the database) failed. Never contains the
/// database password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The connection string was refused.
    #[error(transparent)]
    ConnectionString(#[from] ConnectionStringError),
    /// The database could not be reached or refused the login.
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// The connection string, password replaced.
        target: String,
        /// Why.
        reason: String,
    },
    /// A statement failed.
    #[error("{what}: {reason}")]
    Database {
        /// What was being done.
        what: String,
        /// The database's message.
        reason: String,
    },
    /// DAP (or a download) failed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The table's schema cannot be laid out.
    #[error(transparent)]
    Schema(#[from] SchemaError),
    /// A returned job does not continue the table's chain.
    #[error(transparent)]
    Chain(#[from] dap_proto::chain::ChainError),
    /// A re-initialisation got a snapshot no newer than the table.
    #[error(transparent)]
    NotNewer(#[from] NotNewer),
    /// An object's data does not fit the table.
    #[error("object {object} of job {job}: {error}")]
    Data {
        /// 1-based object number.
        object: usize,
        /// The job.
        job: String,
        /// What is wrong.
        error: TsvError,
    },
    /// A view that depends on the table could not be kept.
    #[error(
        "the view {view} depends on table {table} and cannot be recreated after the change \
         ({reason}); nothing was changed. Drop or adjust the view, then run again"
    )]
    View {
        /// The view, qualified.
        view: String,
        /// The table.
        table: String,
        /// The database's message.
        reason: String,
    },
    /// The command does not apply to the table in its current state.
    #[error("{0}")]
    Refused(String),
    /// A local file (a SQLite database, its lock) failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A failed statement.
    pub fn database(what: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Database {
            what: what.into(),
            reason: reason.to_string(),
        }
    }

    /// Whether no further table can succeed (the database or DAP refuses us).
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::ConnectionString(_) | Self::Connect { .. } => true,
            Self::Source(e) => e.kind() == crate::source::SourceErrorKind::Fatal,
            _ => false,
        }
    }

    /// The DAP failure inside, if any.
    pub fn source_error(&self) -> Option<&SourceError> {
        match self {
            Self::Source(e) => Some(e),
            _ => None,
        }
    }
}

/// The text of a driver error with `password` removed.
pub fn redact(text: &str, password: Option<&str>) -> String {
    match password.filter(|p| !p.is_empty()) {
        Some(p) => text.replace(p, "***"),
        None => text.to_owned(),
    }
}

/// The full message of a driver error: its text and its causes.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cur = s.source();
    }
    text
}
