//! The invariants the targets check, where more than one target or step needs them:
//! safe file names, secrets that never print, and agreement between two runs of the
//! same streaming parser.

use dap_proto::gzip::{GzipError, GzipSummary};
use dap_proto::wire::WireError;
use http::StatusCode;

use crate::{SECRET, SIG_MARK, TOKEN_MARK};

/// A file name from `download::file_name` must be safe to create in a directory.
///
/// # Panics
/// When it is empty, has a separator, is hidden or a dot name, is longer than 200
/// bytes or has a character outside `[A-Za-z0-9._=-]`.
pub fn assert_safe_file_name(name: &str) {
    assert!(!name.is_empty(), "empty file name");
    assert!(!name.contains(['/', '\\']), "separator in {name:?}");
    assert!(name != "." && name != "..", "dot name {name:?}");
    assert!(!name.starts_with('.'), "hidden file name {name:?}");
    assert!(name.len() <= 200, "file name too long: {}", name.len());
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-=".contains(&b)),
        "unusual character in {name:?}"
    );
}

/// `text` (what `what` printed) does not quote the client secret, unless the input
/// itself carried it.
///
/// # Panics
/// When it does.
pub fn assert_no_secret(what: &str, text: &str, input_has_secret: bool) {
    if !input_has_secret {
        assert!(!text.contains(SECRET), "{what}: secret in {text}");
    }
}

/// `text` (what `what` printed) quotes neither the client secret, nor a URL signature,
/// nor an access token.
///
/// # Panics
/// When it does.
pub fn assert_no_marks(what: &str, text: &str) {
    assert!(!text.contains(SECRET), "{what}: secret leaked: {text}");
    assert!(
        !text.contains(SIG_MARK),
        "{what}: URL signature leaked: {text}"
    );
    assert!(!text.contains(TOKEN_MARK), "{what}: token leaked: {text}");
}

/// A response read to its end of file: status, headers and body, or why not.
pub type EofResponse = Result<(StatusCode, Vec<(String, Vec<u8>)>, Vec<u8>), WireError>;

/// How one run of the response parser over a stream ended.
#[derive(Debug, PartialEq)]
pub enum WireOutcome {
    /// A complete response, and how many stream bytes it used.
    Complete {
        /// The status.
        status: StatusCode,
        /// The HTTP version.
        version: http::Version,
        /// The headers, in order.
        headers: Vec<(String, Vec<u8>)>,
        /// The body.
        body: Vec<u8>,
        /// Stream bytes used.
        used: usize,
    },
    /// The stream ended before a complete response; what end of file made of it.
    Eof(EofResponse),
    /// The parser refused the stream.
    Error(WireError),
}

/// Two parses of the same stream agree: a response (complete or ended by EOF) is
/// identical. A broken stream may be reported as malformed or as truncated depending
/// on where the pieces end: the head is parsed only once a blank line arrives, and a
/// stray leading blank line makes the one-piece parse look at it earlier.
///
/// # Panics
/// When they disagree.
pub fn same_wire_outcome(a: &WireOutcome, b: &WireOutcome, what: &str) {
    let failed = |o: &WireOutcome| matches!(o, WireOutcome::Error(_) | WireOutcome::Eof(Err(_)));
    if !(failed(a) && failed(b)) {
        assert_eq!(a, b, "{what}");
    }
}

/// The output of one gzip decoding and how it ended.
pub type GzResult = (Vec<u8>, Result<GzipSummary, GzipError>);

/// Two decodings of the same bytes agree: equal output and totals on success; on
/// failure the same kind of error (inflate's message depends on where its input
/// stopped) and output that is a prefix of one another (bytes produced by the call
/// that failed are dropped).
///
/// # Panics
/// When they disagree.
pub fn same_gzip_result(a: &GzResult, b: &GzResult, what: &str) {
    match (&a.1, &b.1) {
        (Ok(x), Ok(y)) => {
            assert_eq!(x, y, "{what}");
            assert_eq!(a.0, b.0, "{what}");
        }
        (Err(GzipError::Deflate(_)), Err(GzipError::Deflate(_))) => {}
        (Err(x), Err(y)) => assert_eq!(x, y, "{what}"),
        (x, y) => panic!("{what}: {x:?} vs {y:?}"),
    }
    if a.1.is_err() && !a.0.is_empty() && !b.0.is_empty() {
        let n = a.0.len().min(b.0.len());
        assert_eq!(a.0[..n], b.0[..n], "{what}: outputs diverge");
    }
}
