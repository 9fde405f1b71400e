//! # dap-client: what the DAP transports share
//!
//! The vocabulary between the sans-IO core [`dap_proto`] and its transports
//! (`dap-ureq`, `dap-hyper`): one [`Error`] that answers the questions a caller asks
//! ([`Error::is_transient`], [`Error::retry_after`], [`Error::api_kind`]), the network
//! [`Options`], [`DownloadOptions`] and [`DownloadedFile`], the file policy ([`files`]),
//! the trust roots and proxy rule ([`net`]) and the typed calls ([`facade!`]). Both
//! transports re-export what their users need, so a program depends on one of them.
//!
//! Unlike the core, this crate touches files (the file policy); it opens no socket.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
pub mod facade;
pub mod files;
pub mod net;
mod options;
pub mod pump;
mod source;

pub use error::Error;
pub use options::{DownloadOptions, DownloadedFile, Options};
pub use source::IntoDownload;

/// What [`facade!`] names, re-exported for the macro.
#[doc(hidden)]
pub mod reexport {
    pub use dap_proto::{Format, Job, JobId, ObjectId, Query, QueryResult, TableSchema, UrlSet};
    pub use jiff::Timestamp;
}

/// One record of a JSON Lines object, parsed: `None` for a blank (whitespace-only)
/// line, which both transports skip alike.
pub fn json_record(line: &[u8]) -> Option<Result<serde_json::Value, Error>> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(serde_json::from_slice(line).map_err(|e| Error::bad_json_record(&e)))
}

/// Refuses `json_records` of a result that is not JSON Lines.
pub fn json_format(format: dap_proto::Format) -> Result<(), Error> {
    if format == dap_proto::Format::Jsonl {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "JSON records need a jsonl result, not {format}"
        )))
    }
}
