//! Errors, split by whose fault they are.
//!
//! - [`DapError`]: the API answered, and said no (a DAP error body, or a rate limit).
//! - [`ProtocolError`]: the server broke the protocol (HTML where JSON was due, malformed
//!   JSON, a missing field, a body over the size cap).
//! - [`Error::Transport`] and [`Error::Timeout`]: the transport could not complete a
//!   request, after retries, or the call ran out of time.
//! - [`ArgumentError`] and [`Misuse`]: the caller passed a bad value or broke the
//!   session's contract.
//! - [`Error::Internal`]: a bug in this crate (never the caller's fault).
//!
//! No error ever carries the client secret, the access token or a URL signature: login and
//! object-URL bodies are withheld from protocol errors.

use std::fmt;
use std::time::Duration;

use http::StatusCode;
use jiff::Timestamp;

use crate::ids::JobId;

/// How many bytes of an unexpected body an error keeps.
pub const BODY_EXCERPT_BYTES: usize = 512;

/// Everything an operation can end with, other than success.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The API refused the request with a DAP error (boxed: errors are cold, results hot).
    #[error(transparent)]
    Api(Box<DapError>),
    /// The server's answer broke the protocol.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The transport failed on every attempt the retry policy allows.
    #[error("{what}: the transport failed on all {attempts} attempts (last error: {last})")]
    Transport {
        /// The request that failed (`login`, `list tables`, `job status`, ...).
        what: &'static str,
        /// Attempts made.
        attempts: u32,
        /// What the last attempt failed with, as the transport reported it.
        last: TransportFailure,
    },
    /// The operation did not end within its deadline
    /// ([`crate::Config::call_timeout`]); trying again later may succeed.
    #[error("{what}: no result within {after:?} (the per-call deadline)")]
    Timeout {
        /// The operation.
        what: &'static str,
        /// The deadline that passed.
        after: Duration,
    },
    /// The job ended with status `failed`.
    #[error("job {job} failed: {error}")]
    JobFailed {
        /// The job.
        job: JobId,
        /// The processing error the server reported.
        error: Box<DapError>,
    },
    /// The job did not end within the configured poll duration.
    #[error("job {job} did not finish within {waited:?}")]
    JobTimedOut {
        /// The job.
        job: JobId,
        /// How long it was polled.
        waited: Duration,
    },
    /// An argument was refused before anything was sent.
    #[error(transparent)]
    Argument(#[from] ArgumentError),
    /// A state this crate believes impossible was reached: a bug here, not the caller's
    /// or the server's fault.
    #[error("internal error (please report it): {0}")]
    Internal(String),
}

impl From<DapError> for Error {
    fn from(e: DapError) -> Self {
        Self::Api(Box::new(e))
    }
}

impl Error {
    /// The DAP error inside, if the API said no (also for a failed job).
    pub fn api_error(&self) -> Option<&DapError> {
        match self {
            Self::Api(e) | Self::JobFailed { error: e, .. } => Some(e),
            _ => None,
        }
    }

    /// What kind of DAP error the API reported, if it reported one.
    pub fn api_kind(&self) -> Option<&DapErrorKind> {
        self.api_error().map(|e| &e.kind)
    }

    /// Whether further operations with the same credentials are pointless (bad
    /// credentials, account disabled or not onboarded).
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Api(e) if e.kind.is_fatal())
    }

    /// Whether the same call may succeed later: a rate limit, a server error (5xx or a
    /// 408, with a DAP body, an HTML page or anything else), a timeout or a transport
    /// failure. Authentication, validation, not-found and failed jobs are not.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Api(e) => is_transient_status(e.status),
            Self::Protocol(e) => is_transient_status(e.status),
            Self::Transport { .. } | Self::Timeout { .. } => true,
            _ => false,
        }
    }

    /// How long the server asked to wait before trying again (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Api(e) => e.retry_after,
            _ => None,
        }
    }
}

fn is_transient_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// Why the transport could not complete a request, as it reported it to
/// [`crate::Session::handle_failure`] or [`crate::Transfer::handle_failure`]. The detail
/// is redacted on construction: every URL query string (a pre-signed signature) is cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportFailure {
    kind: FailureKind,
    detail: String,
}

/// What kind of transport failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// No connection: refused, unreachable, DNS, TLS handshake, proxy.
    Connect,
    /// No answer (or no body data) in time.
    Timeout,
    /// The body arrived more slowly than the low-speed rule allows.
    Stalled,
    /// The connection broke off (reset, closed early, truncated body).
    Broken,
    /// Anything else.
    Other,
}

impl TransportFailure {
    /// A failure of `kind`; `detail` is the transport's text, cut of any `?query`.
    pub fn new(kind: FailureKind, detail: impl AsRef<str>) -> Self {
        Self {
            kind,
            detail: redact_queries(detail.as_ref()),
        }
    }

    /// The kind.
    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    /// The redacted text.
    pub fn detail(&self) -> &str {
        &self.detail
    }
}

impl fmt::Display for TransportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            FailureKind::Connect => "cannot connect",
            FailureKind::Timeout => "timed out",
            FailureKind::Stalled => "stalled",
            FailureKind::Broken => "connection broken",
            FailureKind::Other => "failed",
        };
        if self.detail.is_empty() {
            f.write_str(kind)
        } else {
            write!(f, "{kind}: {}", self.detail)
        }
    }
}

/// Replaces every `?query` with `?[redacted]`, up to the next whitespace, quote,
/// bracket or comma: for any text that may quote a pre-signed URL.
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

/// A bad argument, refused before any request was built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid argument: {0}")]
pub struct ArgumentError(String);

impl ArgumentError {
    /// An argument error with a message for the user.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

/// The caller broke the session's contract (returned by `Session::handle_*`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Misuse {
    /// The request id is unknown or already answered.
    #[error("unknown or already answered request id {0}")]
    UnknownRequest(u64),
    /// The operation id is unknown or already done.
    #[error("unknown or finished operation id {0}")]
    UnknownOperation(u64),
}

/// Where in the request body a validation error points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct Location {
    /// Line, 1-based.
    pub line: Option<u64>,
    /// Column, 1-based.
    pub column: Option<u64>,
    /// Character offset.
    pub character: Option<u64>,
}

/// What kind of DAP error the server reported, with its type-specific fields. Matched on
/// status and fields first, on the `type` word second.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DapErrorKind {
    /// 400: the request failed validation.
    Validation {
        /// Where, when the server says.
        location: Option<Location>,
    },
    /// 400: `since` precedes the data the server retains.
    OutOfRange {
        /// The earliest permitted `since`.
        since: Option<Timestamp>,
        /// The latest data available.
        until: Option<Timestamp>,
    },
    /// 400: the table was reloaded; a new snapshot is required.
    SnapshotRequired {
        /// From the server.
        since: Option<Timestamp>,
        /// From the server.
        until: Option<Timestamp>,
    },
    /// 401 (or 403 on login): credentials or token refused.
    Authentication,
    /// The account is not onboarded to DAP.
    AccountNotOnboarded,
    /// The account is disabled.
    AccountDisabled,
    /// The account is under maintenance; try later.
    AccountUnderMaintenance,
    /// This kind of request is forbidden for the account.
    RequestTypeForbidden,
    /// 403 of another kind (for example a missing `User-Agent`).
    Forbidden,
    /// 404: a namespace, table, job or object does not exist (or expired).
    NotFound {
        /// The id the server names.
        id: Option<String>,
        /// `namespace`, `table`, `job` or `object`.
        kind: Option<String>,
    },
    /// 429: rate limited.
    RateLimited,
    /// A failed job's processing error.
    Processing,
    /// 5xx: the server or gateway failed.
    Server,
    /// Another 4xx.
    Other,
}

impl DapErrorKind {
    /// Errors after which nothing else will work with the same credentials.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::Authentication | Self::AccountNotOnboarded | Self::AccountDisabled
        )
    }
}

/// An error the API returned: `{"error": {"type", "uuid", "message", ...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DapError {
    /// HTTP status.
    pub status: StatusCode,
    /// What it means.
    pub kind: DapErrorKind,
    /// The `type` word, as sent.
    pub type_name: Option<String>,
    /// The server's error uuid, for support requests.
    pub uuid: Option<String>,
    /// The server's message.
    pub message: String,
    /// `Retry-After`, when sent (capped by the retry policy when the session uses it).
    pub retry_after: Option<Duration>,
}

impl fmt::Display for DapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.type_name.as_deref().unwrap_or("error");
        write!(
            f,
            "DAP API {} {word}: {}",
            self.status.as_u16(),
            self.message
        )?;
        match &self.kind {
            DapErrorKind::OutOfRange { since: Some(s), .. } => {
                write!(f, " (earliest permitted since: {s})")?;
            }
            DapErrorKind::SnapshotRequired { .. } => {
                f.write_str(" (take a new snapshot of the table)")?;
            }
            DapErrorKind::NotFound { id: Some(id), kind } => {
                write!(f, " ({} {id:?})", kind.as_deref().unwrap_or("object"))?;
            }
            _ => {}
        }
        if let Some(uuid) = &self.uuid {
            write!(f, " [uuid {uuid}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for DapError {}

/// What was wrong with a response that broke the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolErrorKind {
    /// The content type is not JSON (gateways answer HTML).
    NotJson {
        /// The `Content-Type` sent, if any.
        content_type: Option<String>,
    },
    /// The body is not valid JSON.
    MalformedJson {
        /// The parser's complaint (position only for sensitive bodies).
        detail: String,
    },
    /// The JSON lacks a field or has one of the wrong shape.
    InvalidShape {
        /// What is wrong.
        detail: String,
    },
    /// An error status without the DAP `error` envelope.
    NoErrorEnvelope,
    /// The body is larger than the configured cap.
    BodyTooLarge {
        /// The cap.
        limit: usize,
    },
    /// A status the endpoint never returns.
    UnexpectedStatus,
    /// The server redirected; credentials are never sent after a redirect.
    Redirect {
        /// The `Location` header, without its query string.
        location: Option<String>,
    },
}

/// A response that broke the protocol: status, what was wrong, and a truncated body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// HTTP status.
    pub status: StatusCode,
    /// What was wrong.
    pub kind: ProtocolErrorKind,
    /// The first [`BODY_EXCERPT_BYTES`] of the body, lossily decoded; withheld for
    /// responses that may carry secrets (login, object URLs).
    pub body_excerpt: String,
    /// Which operation's response it was.
    pub what: &'static str,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: unexpected response (HTTP {}): ",
            self.what,
            self.status.as_u16()
        )?;
        match &self.kind {
            ProtocolErrorKind::NotJson { content_type } => write!(
                f,
                "expected JSON, got content type {}",
                content_type.as_deref().unwrap_or("(none)")
            )?,
            ProtocolErrorKind::MalformedJson { detail } => write!(f, "malformed JSON: {detail}")?,
            ProtocolErrorKind::InvalidShape { detail } => write!(f, "unexpected JSON: {detail}")?,
            ProtocolErrorKind::NoErrorEnvelope => {
                f.write_str("error status without an error body")?
            }
            ProtocolErrorKind::BodyTooLarge { limit } => {
                write!(f, "body larger than the {limit}-byte limit")?;
            }
            ProtocolErrorKind::UnexpectedStatus => f.write_str("unexpected status")?,
            ProtocolErrorKind::Redirect { location } => write!(
                f,
                "redirect to {} refused",
                location.as_deref().unwrap_or("(no location)")
            )?,
        }
        if !self.body_excerpt.is_empty() {
            write!(f, "; body: {:?}", self.body_excerpt)?;
        }
        Ok(())
    }
}

impl std::error::Error for ProtocolError {}

/// Lossy UTF-8 of at most [`BODY_EXCERPT_BYTES`] bytes, cut on a character boundary.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let cut = &body[..body.len().min(BODY_EXCERPT_BYTES)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if body.len() > BODY_EXCERPT_BYTES {
        text.push('…');
    }
    text
}
