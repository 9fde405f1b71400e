//! Raw HTTP/1.1 bytes to and from [`http`] types, for runtimes that only
//! have a byte stream.
//!
//! [`write_request`] serialises an [`http::Request`] into HTTP/1.1 wire
//! bytes. [`ResponseParser`] is a push-based (sans-IO) response parser built
//! on [`httparse`]: feed it bytes as they arrive from the connection and it
//! reports [`Progress::NeedMore`] until a whole response (head and body) has
//! been read, then [`Progress::Complete`] with the number of bytes of the
//! last call that belonged to the response (the rest belongs to the next
//! response on the connection). Bodies framed by `Content-Length`, by
//! `Transfer-Encoding: chunked` and by connection close
//! ([`ResponseParser::finish_eof`]) are supported; interim `1xx` responses
//! are skipped, and `204`, `304` and responses to `HEAD` have no body.

use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use thiserror::Error;

/// Default limit on the size of a response head (status line and headers),
/// and of the trailer section of a chunked body.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;

/// Maximum number of header fields in a response head.
pub const MAX_HEADERS: usize = 100;

/// Maximum length of one chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 4096;

/// Cap on the body capacity reserved up front from a `Content-Length`.
const MAX_INITIAL_RESERVE: usize = 1024 * 1024;

/// An error writing a request or parsing a response.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WireError {
    /// The response bytes are not valid HTTP/1.x.
    #[error("malformed HTTP response: {0}")]
    Malformed(String),
    /// The connection ended before the response was complete.
    #[error("HTTP response truncated")]
    Truncated,
    /// The response head (or chunked trailer section) exceeds the limit.
    #[error("HTTP response head larger than {limit} bytes")]
    HeadersTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The response head has more header fields than allowed.
    #[error("HTTP response has more than {limit} header fields")]
    TooManyHeaders {
        /// The limit on the number of header fields.
        limit: usize,
    },
    /// The response body exceeds the configured maximum.
    #[error("HTTP response body larger than {limit} bytes")]
    BodyTooLarge {
        /// The configured maximum body size.
        limit: usize,
    },
    /// `Content-Length` appears more than once (even with equal values).
    #[error("duplicate Content-Length")]
    DuplicateContentLength,
    /// `Content-Length` values disagree.
    #[error("conflicting Content-Length values")]
    ConflictingContentLength,
    /// Both `Content-Length` and `Transfer-Encoding` are present.
    #[error("both Content-Length and Transfer-Encoding present")]
    ContentLengthWithChunked,
    /// A `Transfer-Encoding` other than a single `chunked`.
    #[error("unsupported Transfer-Encoding: {0}")]
    UnsupportedTransferEncoding(String),
    /// The request URI has no authority (host), so there is no `Host`.
    #[error("request URI has no authority")]
    MissingAuthority,
    /// The request cannot be written (bad header value, inconsistent
    /// `Content-Length`, ...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The parser already returned a complete response.
    #[error("response already complete")]
    AlreadyComplete,
}

/// Appends the HTTP/1.1 encoding of `req` to `out`.
///
/// Writes the request line with the origin-form target (path and query,
/// `/` if empty; authority-form for `CONNECT`), a `Host` header from the URI
/// authority unless the request has one, every header, a `Content-Length`
/// when the body is non-empty or the method is `POST`, `PUT` or `PATCH`
/// (unless `Content-Length` or `Transfer-Encoding` is set), then the body.
/// An `HTTP/1.0` request is written as such; any other version as HTTP/1.1.
///
/// # Errors
///
/// [`WireError::MissingAuthority`] if the URI has no authority,
/// [`WireError::InvalidRequest`] if a header value holds CR, LF or NUL, or a
/// set `Content-Length` disagrees with the body length. Nothing is appended
/// on error.
pub fn write_request(req: &Request<Vec<u8>>, out: &mut Vec<u8>) -> Result<(), WireError> {
    let uri = req.uri();
    let authority = uri.authority().ok_or(WireError::MissingAuthority)?;
    let method = req.method();
    let headers = req.headers();
    let body = req.body();

    let path_and_query = uri.path_and_query().map_or("", |pq| pq.as_str());
    let target_prefix = if *method == Method::CONNECT || path_and_query.starts_with('/') {
        ""
    } else {
        "/"
    };
    let target = if *method == Method::CONNECT {
        authority.as_str()
    } else {
        path_and_query
    };

    for (name, value) in headers {
        if value
            .as_bytes()
            .iter()
            .any(|&b| matches!(b, b'\r' | b'\n' | 0))
        {
            return Err(WireError::InvalidRequest(format!(
                "header {name} contains CR, LF or NUL"
            )));
        }
    }
    let has_te = headers.contains_key(TRANSFER_ENCODING);
    let mut content_lengths = headers.get_all(CONTENT_LENGTH).iter();
    let add_content_length = match (content_lengths.next(), content_lengths.next()) {
        (None, _) => {
            !has_te
                && (!body.is_empty()
                    || matches!(*method, Method::POST | Method::PUT | Method::PATCH))
        }
        (Some(_), None) if has_te => {
            return Err(WireError::InvalidRequest(
                "both Content-Length and Transfer-Encoding set".into(),
            ));
        }
        (Some(value), None) => {
            if value.as_bytes() != body.len().to_string().as_bytes() {
                return Err(WireError::InvalidRequest(format!(
                    "Content-Length {value:?} does not match body length {}",
                    body.len()
                )));
            }
            false
        }
        (Some(_), Some(_)) => {
            return Err(WireError::InvalidRequest(
                "several Content-Length headers".into(),
            ));
        }
    };

    let version = if req.version() == Version::HTTP_10 {
        "HTTP/1.0"
    } else {
        "HTTP/1.1"
    };
    out.reserve(
        256usize
            .saturating_add(target.len())
            .saturating_add(body.len()),
    );
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target_prefix.as_bytes());
    out.extend_from_slice(target.as_bytes());
    out.push(b' ');
    out.extend_from_slice(version.as_bytes());
    out.extend_from_slice(b"\r\n");
    if !headers.contains_key(HOST) {
        // Strip any userinfo: Host is `host[:port]`.
        let host = authority
            .as_str()
            .rsplit_once('@')
            .map_or(authority.as_str(), |(_, host)| host);
        out.extend_from_slice(b"host: ");
        out.extend_from_slice(host.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if add_content_length {
        out.extend_from_slice(b"content-length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(())
}

/// Result of feeding bytes to a [`ResponseParser`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Progress {
    /// All bytes were consumed; the response is not complete yet.
    NeedMore,
    /// The response is complete. The `usize` is how many bytes of the last
    /// [`ResponseParser::feed`] call belong to it; the rest belong to the
    /// next response on the connection.
    Complete(Response<Vec<u8>>, usize),
}

/// Where the parser is in the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the status line and headers.
    Head,
    /// Reading a `Content-Length` body.
    Fixed { remaining: usize },
    /// Reading a chunk-size line.
    ChunkSize,
    /// Reading chunk data.
    ChunkData { remaining: usize },
    /// Reading the CRLF after chunk data.
    ChunkDataEnd { seen_cr: bool },
    /// Reading trailer lines after the last chunk.
    Trailers,
    /// Reading a body that ends when the connection closes.
    CloseDelimited,
    /// The response was returned.
    Done,
}

/// A push-based HTTP/1.x response parser for one response.
///
/// Create one per request (it needs to know whether the request was `HEAD`),
/// [`feed`](Self::feed) it bytes until it returns [`Progress::Complete`], or
/// call [`finish_eof`](Self::finish_eof) when the connection closes.
#[derive(Debug)]
pub struct ResponseParser {
    head_request: bool,
    max_body: usize,
    max_header_bytes: usize,
    state: State,
    /// Bytes of the head read so far.
    head: Vec<u8>,
    /// The parsed head, once complete.
    response: Option<Response<()>>,
    body: Vec<u8>,
    /// A partial chunk-size or trailer line.
    line: Vec<u8>,
    /// Bytes of trailer section read so far.
    trailer_bytes: usize,
    /// The body is known to exceed `max_body`: read its first `max_body + 1`
    /// bytes, then fail with [`WireError::BodyTooLarge`].
    oversized: bool,
}

/// Whether `buf` has an empty line ending at a `\n` at index `>= from`
/// (the end of an HTTP head).
fn has_blank_line(buf: &[u8], from: usize) -> bool {
    let start = from.min(buf.len());
    buf.iter()
        .enumerate()
        .skip(start)
        .filter(|&(_, &b)| b == b'\n')
        .any(|(i, _)| {
            let before = |k: usize| i.checked_sub(k).and_then(|j| buf.get(j)).copied();
            before(1) == Some(b'\n') || (before(1) == Some(b'\r') && before(2) == Some(b'\n'))
        })
}

/// Parses the hex size at the start of a chunk-size line (without its
/// `\n`), ignoring chunk extensions.
fn parse_chunk_size(line: &[u8]) -> Result<u64, WireError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(WireError::Malformed("missing chunk size".into()));
    }
    let (hex, rest) = line.split_at(digits);
    let mut size: u64 = 0;
    for &b in hex {
        let digit = char::from(b).to_digit(16).map_or(0, u64::from);
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(digit))
            .ok_or_else(|| WireError::Malformed("chunk size overflows".into()))?;
    }
    let rest = rest.trim_ascii_start();
    if !(rest.is_empty() || rest.starts_with(b";")) {
        return Err(WireError::Malformed("invalid chunk size line".into()));
    }
    if rest.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(WireError::Malformed(
            "control byte in chunk extension".into(),
        ));
    }
    Ok(size)
}

/// How the body of a response is delimited.
enum Framing {
    Interim,
    NoBody,
    Length(u64),
    Chunked,
    Close,
}

/// Parses a head at the start of `buf` into its length, the response and
/// its body framing; `None` if the head is incomplete.
fn parse_head(
    buf: &[u8],
    head_request: bool,
) -> Result<Option<(usize, Response<()>, Framing)>, WireError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let head_len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(WireError::TooManyHeaders { limit: MAX_HEADERS });
        }
        Err(e) => return Err(WireError::Malformed(e.to_string())),
    };
    let code = parsed.code.unwrap_or(0);
    let status = StatusCode::from_u16(code)
        .map_err(|_| WireError::Malformed(format!("invalid status code {code}")))?;
    let version = match parsed.version {
        Some(0) => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| WireError::Malformed(format!("invalid header name {:?}", h.name)))?;
        let value = HeaderValue::from_bytes(h.value)
            .map_err(|_| WireError::Malformed(format!("invalid value of header {}", h.name)))?;
        headers.append(name, value);
    }

    let framing = framing(status, &headers, head_request)?;
    let mut response = Response::new(());
    *response.status_mut() = status;
    *response.version_mut() = version;
    *response.headers_mut() = headers;
    Ok(Some((head_len, response, framing)))
}

/// Decides the body framing (RFC 9112 §6.3).
fn framing(
    status: StatusCode,
    headers: &HeaderMap,
    head_request: bool,
) -> Result<Framing, WireError> {
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Framing::Interim);
    }
    if head_request
        || status == StatusCode::SWITCHING_PROTOCOLS
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::NoBody);
    }
    let mut codings = Vec::new();
    for value in headers.get_all(TRANSFER_ENCODING) {
        let text = value
            .to_str()
            .map_err(|_| WireError::Malformed("non-ASCII Transfer-Encoding".into()))?;
        codings.extend(
            text.split(',')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_ascii_lowercase),
        );
    }
    let mut lengths = Vec::new();
    for value in headers.get_all(CONTENT_LENGTH) {
        for part in value.as_bytes().split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return Err(WireError::Malformed("invalid Content-Length".into()));
            }
            let mut n: u64 = 0;
            for &d in part {
                n = n
                    .checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d.wrapping_sub(b'0'))))
                    .ok_or_else(|| WireError::Malformed("Content-Length overflows".into()))?;
            }
            lengths.push(n);
        }
    }
    if headers.contains_key(TRANSFER_ENCODING) {
        if !lengths.is_empty() || headers.contains_key(CONTENT_LENGTH) {
            return Err(WireError::ContentLengthWithChunked);
        }
        return match codings.as_slice() {
            [only] if only == "chunked" => Ok(Framing::Chunked),
            _ => Err(WireError::UnsupportedTransferEncoding(codings.join(", "))),
        };
    }
    match lengths.as_slice() {
        [] => Ok(Framing::Close),
        [n] => Ok(Framing::Length(*n)),
        [first, rest @ ..] => Err(if rest.iter().all(|n| n == first) {
            WireError::DuplicateContentLength
        } else {
            WireError::ConflictingContentLength
        }),
    }
}

/// Outcome of reading one line.
enum Line {
    /// The line is complete in `self.line`; this many input bytes were used.
    Complete(usize),
    /// All input was buffered; the line goes on.
    Partial,
}

impl ResponseParser {
    /// Creates a parser for the response to one request. `method_was_head`
    /// tells whether that request was `HEAD` (its response has no body);
    /// `max_body` bounds the body size.
    #[must_use]
    pub const fn new(method_was_head: bool, max_body: usize) -> Self {
        Self {
            head_request: method_was_head,
            max_body,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            state: State::Head,
            head: Vec::new(),
            response: None,
            body: Vec::new(),
            line: Vec::new(),
            trailer_bytes: 0,
            oversized: false,
        }
    }

    /// Sets the limit on the response head size (and on the trailer
    /// section of a chunked body); the default is
    /// [`DEFAULT_MAX_HEADER_BYTES`].
    #[must_use]
    pub const fn with_max_header_bytes(mut self, max_header_bytes: usize) -> Self {
        self.max_header_bytes = max_header_bytes;
        self
    }

    /// Feeds the next bytes read from the connection.
    ///
    /// # Errors
    ///
    /// [`WireError::Malformed`] for invalid HTTP, the limit errors
    /// ([`WireError::HeadersTooLarge`], [`WireError::TooManyHeaders`],
    /// [`WireError::BodyTooLarge`]), the framing errors
    /// ([`WireError::DuplicateContentLength`],
    /// [`WireError::ConflictingContentLength`],
    /// [`WireError::ContentLengthWithChunked`],
    /// [`WireError::UnsupportedTransferEncoding`]), or
    /// [`WireError::AlreadyComplete`] once a response was returned. After an
    /// error the parser must not be used further (the connection is broken).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Progress, WireError> {
        let mut pos = 0usize;
        loop {
            let rest = bytes.get(pos..).unwrap_or_default();
            match self.state {
                State::Done => return Err(WireError::AlreadyComplete),
                State::Head => match self.feed_head(rest)? {
                    None => return Ok(Progress::NeedMore),
                    Some(used) => pos = pos.saturating_add(used),
                },
                _ if rest.is_empty() => return Ok(Progress::NeedMore),
                State::Fixed { remaining } => {
                    let n = remaining.min(rest.len());
                    self.body
                        .extend_from_slice(rest.get(..n).unwrap_or_default());
                    pos = pos.saturating_add(n);
                    let remaining = remaining.saturating_sub(n);
                    if remaining == 0 && self.oversized {
                        return Err(self.too_large());
                    } else if remaining == 0 {
                        self.state = State::Done;
                    } else {
                        self.state = State::Fixed { remaining };
                    }
                }
                State::ChunkSize => match self.read_line(rest, MAX_CHUNK_LINE)? {
                    Line::Partial => return Ok(Progress::NeedMore),
                    Line::Complete(used) => {
                        pos = pos.saturating_add(used);
                        let size = parse_chunk_size(&self.line)?;
                        self.line.clear();
                        if size == 0 {
                            self.state = State::Trailers;
                        } else {
                            let total = u64::try_from(self.body.len())
                                .unwrap_or(u64::MAX)
                                .saturating_add(size);
                            let mut remaining = usize::try_from(size).unwrap_or(usize::MAX);
                            if total > u64::try_from(self.max_body).unwrap_or(u64::MAX) {
                                // Keep the first max_body + 1 bytes, then fail.
                                self.oversized = true;
                                remaining = self
                                    .max_body
                                    .saturating_add(1)
                                    .saturating_sub(self.body.len());
                            }
                            self.state = State::ChunkData { remaining };
                        }
                    }
                },
                State::ChunkData { remaining } => {
                    let n = remaining.min(rest.len());
                    self.body
                        .extend_from_slice(rest.get(..n).unwrap_or_default());
                    pos = pos.saturating_add(n);
                    let remaining = remaining.saturating_sub(n);
                    if remaining == 0 && self.oversized {
                        return Err(self.too_large());
                    }
                    self.state = if remaining == 0 {
                        State::ChunkDataEnd { seen_cr: false }
                    } else {
                        State::ChunkData { remaining }
                    };
                }
                State::ChunkDataEnd { seen_cr } => {
                    let byte = rest.first().copied().unwrap_or(0);
                    pos = pos.saturating_add(1);
                    self.state = match (byte, seen_cr) {
                        (b'\r', false) => State::ChunkDataEnd { seen_cr: true },
                        (b'\n', _) => State::ChunkSize,
                        _ => {
                            return Err(WireError::Malformed(
                                "missing CRLF after chunk data".into(),
                            ));
                        }
                    };
                }
                State::Trailers => {
                    let room = self.max_header_bytes.saturating_sub(self.trailer_bytes);
                    match self.read_line(rest, room)? {
                        Line::Partial => return Ok(Progress::NeedMore),
                        Line::Complete(used) => {
                            pos = pos.saturating_add(used);
                            self.trailer_bytes = self.trailer_bytes.saturating_add(used);
                            let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
                            if line.is_empty() {
                                self.state = State::Done;
                            } else if !line.contains(&b':') {
                                return Err(WireError::Malformed("invalid trailer field".into()));
                            }
                            self.line.clear();
                        }
                    }
                }
                State::CloseDelimited => {
                    self.push_body(rest)?;
                    return Ok(Progress::NeedMore);
                }
            }
            if self.state == State::Done {
                let response = self.take_response()?;
                return Ok(Progress::Complete(response, pos));
            }
        }
    }

    /// Ends the response at connection close.
    ///
    /// # Errors
    ///
    /// [`WireError::Truncated`] unless the body is close-delimited (neither
    /// `Content-Length` nor `Transfer-Encoding`) and the head was complete;
    /// [`WireError::AlreadyComplete`] if the response was already returned.
    pub fn finish_eof(mut self) -> Result<Response<Vec<u8>>, WireError> {
        match self.state {
            State::CloseDelimited => self.take_response(),
            State::Done => Err(WireError::AlreadyComplete),
            _ => Err(WireError::Truncated),
        }
    }

    fn take_response(&mut self) -> Result<Response<Vec<u8>>, WireError> {
        self.state = State::Done;
        let body = std::mem::take(&mut self.body);
        self.response
            .take()
            .map(|r| r.map(|()| body))
            .ok_or(WireError::AlreadyComplete)
    }

    fn push_body(&mut self, bytes: &[u8]) -> Result<(), WireError> {
        if self.body.len().saturating_add(bytes.len()) > self.max_body {
            let room = self
                .max_body
                .saturating_add(1)
                .saturating_sub(self.body.len());
            self.body
                .extend_from_slice(bytes.get(..room.min(bytes.len())).unwrap_or_default());
            self.oversized = true;
            return Err(self.too_large());
        }
        self.body.extend_from_slice(bytes);
        Ok(())
    }

    fn too_large(&mut self) -> WireError {
        self.state = State::Done;
        WireError::BodyTooLarge {
            limit: self.max_body,
        }
    }

    /// After [`WireError::BodyTooLarge`]: the response head with the first
    /// `max_body + 1` bytes of its body (or fewer if the connection ended), so a
    /// driver can hand it to a consumer that rejects over-cap bodies itself
    /// (the DAP session answers it with a typed "body too large" error instead
    /// of retrying a transport failure). The connection must then be closed.
    pub fn into_oversized(mut self) -> Option<Response<Vec<u8>>> {
        if !self.oversized {
            return None;
        }
        let body = std::mem::take(&mut self.body);
        self.response.take().map(|r| r.map(|()| body))
    }

    /// Appends bytes of `rest` up to and including a `\n` to `self.line`
    /// (the `\n` itself is not kept), refusing lines longer than `limit`.
    fn read_line(&mut self, rest: &[u8], limit: usize) -> Result<Line, WireError> {
        let (piece, complete) = match rest.iter().position(|&b| b == b'\n') {
            Some(nl) => (rest.get(..nl).unwrap_or_default(), true),
            None => (rest, false),
        };
        if self.line.len().saturating_add(piece.len()) >= limit {
            return Err(if self.state == State::Trailers {
                WireError::HeadersTooLarge {
                    limit: self.max_header_bytes,
                }
            } else {
                WireError::Malformed("chunk size line too long".into())
            });
        }
        self.line.extend_from_slice(piece);
        if complete {
            Ok(Line::Complete(piece.len().saturating_add(1)))
        } else {
            Ok(Line::Partial)
        }
    }

    /// Reads head bytes from `rest`. Returns how many bytes of `rest` were
    /// used once a head is complete (and the state set for what follows),
    /// or `None` if all of `rest` was buffered.
    fn feed_head(&mut self, rest: &[u8]) -> Result<Option<usize>, WireError> {
        let old_len = self.head.len();
        let room = self.max_header_bytes.saturating_sub(old_len);
        let take = room.min(rest.len());
        self.head
            .extend_from_slice(rest.get(..take).unwrap_or_default());
        let too_large = WireError::HeadersTooLarge {
            limit: self.max_header_bytes,
        };
        // Only look for the end of the head among the new bytes, so that
        // byte-by-byte feeding does not re-parse the head every time.
        if !has_blank_line(&self.head, old_len) {
            return if self.head.len() >= self.max_header_bytes {
                Err(too_large)
            } else {
                Ok(None)
            };
        }
        let Some((head_len, response, framing)) = parse_head(&self.head, self.head_request)? else {
            return if self.head.len() >= self.max_header_bytes {
                Err(too_large)
            } else {
                Ok(None)
            };
        };
        let used = head_len.saturating_sub(old_len);
        self.head.clear();
        match framing {
            Framing::Interim => {} // Skip it: the final response follows.
            Framing::NoBody | Framing::Length(0) => {
                self.response = Some(response);
                self.state = State::Done;
            }
            Framing::Length(n) => {
                let n = match usize::try_from(n).ok().filter(|&n| n <= self.max_body) {
                    Some(n) => n,
                    None => {
                        // Read the first max_body + 1 bytes, then fail.
                        self.oversized = true;
                        self.max_body.saturating_add(1)
                    }
                };
                self.body.reserve(n.min(MAX_INITIAL_RESERVE));
                self.response = Some(response);
                self.state = State::Fixed { remaining: n };
            }
            Framing::Chunked => {
                self.response = Some(response);
                self.state = State::ChunkSize;
            }
            Framing::Close => {
                self.response = Some(response);
                self.state = State::CloseDelimited;
            }
        }
        Ok(Some(used))
    }
}

/// Parses one complete response from `bytes` (for a non-`HEAD` request,
/// without a body size limit beyond `bytes` itself).
///
/// Returns `Ok(None)` if `bytes` does not hold a whole response yet; a
/// close-delimited body is never complete here (use
/// [`ResponseParser::finish_eof`]). On success, also returns how many bytes
/// the response used.
///
/// # Errors
///
/// As [`ResponseParser::feed`].
// The signature mirrors `Progress::Complete`; an alias would only hide it.
#[allow(clippy::type_complexity)]
pub fn parse_response(bytes: &[u8]) -> Result<Option<(Response<Vec<u8>>, usize)>, WireError> {
    match ResponseParser::new(false, usize::MAX).feed(bytes)? {
        Progress::Complete(response, used) => Ok(Some((response, used))),
        Progress::NeedMore => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn complete(p: &mut ResponseParser, bytes: &[u8]) -> (Response<Vec<u8>>, usize) {
        match p.feed(bytes).unwrap() {
            Progress::Complete(r, n) => (r, n),
            Progress::NeedMore => panic!("incomplete"),
        }
    }

    /// Feeds `chunks` to a fresh parser; returns the response and how many
    /// bytes of the whole input it used, or `None` if it needs more.
    type Parsed = Result<Option<(Response<Vec<u8>>, usize)>, WireError>;

    fn feed_chunks(head: bool, chunks: &[&[u8]]) -> Parsed {
        let mut p = ResponseParser::new(head, 1 << 20);
        let mut offset = 0;
        for c in chunks {
            match p.feed(c)? {
                Progress::Complete(r, n) => return Ok(Some((r, offset + n))),
                Progress::NeedMore => offset += c.len(),
            }
        }
        Ok(None)
    }

    const CL: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"ok\":true}\r\n";
    const CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\nX-A: 1\r\n\r\n5;name=value;x=\"q\"\r\nhello\r\n7 ; ext\r\n, world\r\n000\r\nExpires: never\r\nX-B: 2\r\n\r\n";
    const WITH_100: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc";
    const CLOSE: &[u8] = b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nuntil the end";
    const BARE_LF: &[u8] = b"HTTP/1.1 404 Not Found\nContent-Length: 2\n\nno";

    #[test]
    fn content_length_response() {
        let (r, n) = parse_response(CL).unwrap().unwrap();
        assert_eq!(n, CL.len());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.version(), Version::HTTP_11);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.body(), b"{\"ok\":true}\r\n");
        let (r, _) = parse_response(BARE_LF).unwrap().unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(r.body(), b"no");
    }

    #[test]
    fn chunked_response_with_extensions_and_trailers() {
        let (r, n) = parse_response(CHUNKED).unwrap().unwrap();
        assert_eq!(n, CHUNKED.len());
        assert_eq!(r.body(), b"hello, world");
        assert_eq!(r.headers()["x-a"], "1");
        assert!(!r.headers().contains_key("expires"), "trailers are ignored");
    }

    #[test]
    fn interim_responses_are_skipped() {
        let (r, n) = parse_response(WITH_100).unwrap().unwrap();
        assert_eq!(n, WITH_100.len());
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.body(), b"abc");
        assert!(!r.headers().contains_key("link"));
    }

    #[test]
    fn close_delimited_body() {
        let mut p = ResponseParser::new(false, 1000);
        assert!(matches!(p.feed(CLOSE).unwrap(), Progress::NeedMore));
        assert!(matches!(p.feed(b"!").unwrap(), Progress::NeedMore));
        let r = p.finish_eof().unwrap();
        assert_eq!(r.version(), Version::HTTP_10);
        assert_eq!(r.body(), b"until the end!");
        assert_eq!(parse_response(CLOSE).unwrap().map(|(_, n)| n), None);
    }

    #[test]
    fn eof_elsewhere_is_truncated() {
        for input in [CL, CHUNKED, WITH_100, CLOSE] {
            for cut in 0..input.len() {
                let mut p = ResponseParser::new(false, 1 << 20);
                match p.feed(&input[..cut]).unwrap() {
                    Progress::NeedMore => {
                        let r = p.finish_eof();
                        let close_body = input == CLOSE && cut >= CLOSE.len() - 13;
                        if close_body {
                            assert_eq!(r.unwrap().body(), &CLOSE[CLOSE.len() - 13..cut]);
                        } else {
                            assert_eq!(r.unwrap_err(), WireError::Truncated, "cut {cut}");
                        }
                    }
                    Progress::Complete(..) => panic!("complete at cut {cut}"),
                }
            }
        }
        let mut p = ResponseParser::new(false, 13);
        let _ = complete(&mut p, CL);
        assert_eq!(p.feed(b"x").unwrap_err(), WireError::AlreadyComplete);
        assert_eq!(p.finish_eof().unwrap_err(), WireError::AlreadyComplete);
    }

    #[test]
    fn every_split_point() {
        for input in [CL, CHUNKED, WITH_100, BARE_LF] {
            let (whole, whole_n) = parse_response(input).unwrap().unwrap();
            for i in 0..=input.len() {
                let (a, b) = input.split_at(i);
                let (r, n) = feed_chunks(false, &[a, b]).unwrap().unwrap();
                assert_eq!(n, whole_n, "split {i}");
                assert_eq!(r.body(), whole.body());
                assert_eq!(r.headers(), whole.headers());
                assert_eq!(r.status(), whole.status());
            }
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            let (r, n) = feed_chunks(false, &bytes).unwrap().unwrap();
            assert_eq!((r.body(), n), (whole.body(), whole_n));
        }
        for i in 0..=CLOSE.len() {
            let (a, b) = CLOSE.split_at(i);
            let mut p = ResponseParser::new(false, 100);
            assert!(matches!(p.feed(a).unwrap(), Progress::NeedMore));
            assert!(matches!(p.feed(b).unwrap(), Progress::NeedMore));
            assert_eq!(p.finish_eof().unwrap().body(), b"until the end");
        }
    }

    #[test]
    fn pipelined_responses() {
        let mut buf = CHUNKED.to_vec();
        buf.extend_from_slice(CL);
        buf.extend_from_slice(b"HTTP/1.1 204 No Content\r\n\r\n");
        buf.extend_from_slice(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n");
        let mut rest = &buf[..];
        let mut statuses = Vec::new();
        while !rest.is_empty() {
            let (r, n) = parse_response(rest).unwrap().unwrap();
            statuses.push((r.status().as_u16(), r.body().len()));
            rest = &rest[n..];
        }
        assert_eq!(statuses, [(200, 12), (200, 13), (204, 0), (304, 0)]);
        // The same with a streaming parser and a split inside the second.
        let split = CHUNKED.len() + 10;
        let mut p = ResponseParser::new(false, 100);
        let (_, n) = complete(&mut p, &buf[..split]);
        assert_eq!(n, CHUNKED.len());
        let mut p = ResponseParser::new(false, 100);
        assert!(matches!(
            p.feed(&buf[n..split]).unwrap(),
            Progress::NeedMore
        ));
        let (r, n2) = complete(&mut p, &buf[split..]);
        assert_eq!(r.body().len(), 13);
        assert_eq!(split + n2, CHUNKED.len() + CL.len());
    }

    #[test]
    fn head_response_has_no_body() {
        let mut p = ResponseParser::new(true, 100);
        let (r, n) = complete(&mut p, CL);
        assert_eq!(r.headers()["content-length"], "13");
        assert!(r.body().is_empty());
        assert_eq!(n, CL.iter().position(|&b| b == b'{').unwrap());
    }

    #[test]
    fn malformed_inputs() {
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1 x\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nnocolon\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 099 OK\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n",
        ];
        for case in cases {
            for chunk in [case.len(), 1] {
                let chunks: Vec<&[u8]> = case.chunks(chunk).collect();
                let r = feed_chunks(false, &chunks);
                assert!(
                    matches!(r, Err(WireError::Malformed(_))),
                    "{:?}: {:?}",
                    String::from_utf8_lossy(case),
                    r.map(|o| o.map(|(_, n)| n))
                );
            }
        }
    }

    #[test]
    fn framing_errors() {
        let p = |s: &[u8]| parse_response(s).map(|o| o.map(|(_, n)| n));
        assert_eq!(
            p(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"),
            Err(WireError::ConflictingContentLength)
        );
        assert_eq!(
            p(b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab"),
            Err(WireError::ConflictingContentLength)
        );
        assert_eq!(
            p(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na"),
            Err(WireError::DuplicateContentLength)
        );
        assert_eq!(
            p(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(WireError::ContentLengthWithChunked)
        );
        assert!(matches!(
            p(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Err(WireError::UnsupportedTransferEncoding(_))
        ));
        assert!(matches!(
            p(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(WireError::UnsupportedTransferEncoding(_))
        ));
    }

    #[test]
    fn limits() {
        // Body limit, known up front and found while reading.
        let mut p = ResponseParser::new(false, 12);
        assert_eq!(
            p.feed(CL).unwrap_err(),
            WireError::BodyTooLarge { limit: 12 }
        );
        let mut p = ResponseParser::new(false, 11);
        assert_eq!(
            p.feed(CHUNKED).unwrap_err(),
            WireError::BodyTooLarge { limit: 11 }
        );
        let mut p = ResponseParser::new(false, 12);
        assert!(p.feed(CHUNKED).is_ok());
        let mut p = ResponseParser::new(false, 5);
        assert!(matches!(
            p.feed(CLOSE).unwrap_err(),
            WireError::BodyTooLarge { .. }
        ));

        // Header bytes.
        let mut big = b"HTTP/1.1 200 OK\r\n".to_vec();
        big.extend_from_slice(format!("X-Big: {}\r\n\r\n", "a".repeat(70_000)).as_bytes());
        assert_eq!(
            parse_response(&big).unwrap_err(),
            WireError::HeadersTooLarge {
                limit: DEFAULT_MAX_HEADER_BYTES
            }
        );
        let mut p = ResponseParser::new(false, 0).with_max_header_bytes(20);
        assert!(matches!(p.feed(&big[..10]).unwrap(), Progress::NeedMore));
        assert!(matches!(
            p.feed(&big[10..25]),
            Err(WireError::HeadersTooLarge { .. })
        ));
        let mut p = ResponseParser::new(false, 0).with_max_header_bytes(1000);
        let endless = vec![b'a'; 999];
        assert!(matches!(p.feed(&endless).unwrap(), Progress::NeedMore));
        assert!(matches!(
            p.feed(b"a"),
            Err(WireError::HeadersTooLarge { .. })
        ));

        // Header count.
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"Content-Length: 0\r\n\r\n");
        assert_eq!(
            parse_response(&many).unwrap_err(),
            WireError::TooManyHeaders { limit: MAX_HEADERS }
        );

        // Trailer section.
        let mut trailers = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n".to_vec();
        for i in 0..5000 {
            trailers.extend_from_slice(format!("X-T{i}: value\r\n").as_bytes());
        }
        trailers.extend_from_slice(b"\r\n");
        assert!(matches!(
            parse_response(&trailers),
            Err(WireError::HeadersTooLarge { .. })
        ));
        // Chunk-size line.
        let mut ext = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;".to_vec();
        ext.extend_from_slice(&[b'x'; 5000]);
        assert!(matches!(parse_response(&ext), Err(WireError::Malformed(_))));
    }

    fn request(method: Method, uri: &str, body: &[u8]) -> Request<Vec<u8>> {
        Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", "Bearer t")
            .header("accept", "application/json")
            .body(body.to_vec())
            .unwrap()
    }

    fn written(req: &Request<Vec<u8>>) -> String {
        let mut out = Vec::new();
        write_request(req, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn write_get_and_post() {
        let get = request(
            Method::GET,
            "https://api-gateway.instructure.com/dap/job/abc?x=1&y=2",
            b"",
        );
        assert_eq!(
            written(&get),
            "GET /dap/job/abc?x=1&y=2 HTTP/1.1\r\nhost: api-gateway.instructure.com\r\n\
             authorization: Bearer t\r\naccept: application/json\r\n\r\n"
        );
        let post = request(Method::POST, "http://user:pw@localhost:8080", b"{\"a\":1}");
        assert_eq!(
            written(&post),
            "POST / HTTP/1.1\r\nhost: localhost:8080\r\nauthorization: Bearer t\r\n\
             accept: application/json\r\ncontent-length: 7\r\n\r\n{\"a\":1}"
        );
        let empty_put = request(Method::PUT, "http://h/x", b"");
        assert!(written(&empty_put).ends_with("content-length: 0\r\n\r\n"));
        let mut with_host = request(Method::GET, "http://h/?q", b"");
        with_host
            .headers_mut()
            .insert(HOST, HeaderValue::from_static("other"));
        let text = written(&with_host);
        assert!(text.starts_with("GET /?q HTTP/1.1\r\nauthorization"));
        assert_eq!(text.matches("host: ").count(), 1);
        assert!(text.contains("host: other\r\n"));
    }

    #[test]
    fn write_request_errors() {
        let mut out = Vec::new();
        let no_authority = request(Method::GET, "/relative", b"");
        assert_eq!(
            write_request(&no_authority, &mut out),
            Err(WireError::MissingAuthority)
        );
        let mut wrong_cl = request(Method::POST, "http://h/", b"abc");
        wrong_cl
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("4"));
        assert!(matches!(
            write_request(&wrong_cl, &mut out),
            Err(WireError::InvalidRequest(_))
        ));
        assert!(out.is_empty());
        wrong_cl
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from_static("3"));
        write_request(&wrong_cl, &mut out).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out)
                .matches("content-length")
                .count(),
            1
        );
        // The http crate itself refuses CR/LF in header values.
        assert!(HeaderValue::from_bytes(b"a\r\nb").is_err());
    }

    #[test]
    fn written_request_parses_back() {
        let req = request(Method::POST, "https://example.com:8443/a/b?c=d", b"payload");
        let mut out = Vec::new();
        write_request(&req, &mut out).unwrap();
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut parsed = httparse::Request::new(&mut headers);
        let n = match parsed.parse(&out).unwrap() {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => panic!("partial"),
        };
        assert_eq!(parsed.method, Some("POST"));
        assert_eq!(parsed.path, Some("/a/b?c=d"));
        assert_eq!(parsed.version, Some(1));
        let get = |name: &str| {
            parsed
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value)
        };
        assert_eq!(get("host"), Some(&b"example.com:8443"[..]));
        assert_eq!(get("content-length"), Some(&b"7"[..]));
        assert_eq!(&out[n..], b"payload");
    }

    #[test]
    fn response_round_trip() {
        // Build wire bytes from an http::Response and parse them back.
        let body = b"line 1\nline 2\n".to_vec();
        let mut wire = b"HTTP/1.1 206 Partial Content\r\n".to_vec();
        let headers = [("content-range", "bytes 0-13/100"), ("etag", "\"x\"")];
        for (k, v) in headers {
            wire.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        wire.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
        wire.extend_from_slice(&body);
        let (r, n) = parse_response(&wire).unwrap().unwrap();
        assert_eq!(n, wire.len());
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(r.body(), &body);
        for (k, v) in headers {
            assert_eq!(r.headers()[k], v);
        }
    }

    proptest! {
        #![proptest_config(crate::proptest_config(256))]

        #[test]
        fn arbitrary_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            chunk in 1usize..64,
            head in any::<bool>(),
        ) {
            let mut p = ResponseParser::new(head, 256).with_max_header_bytes(300);
            for c in data.chunks(chunk) {
                match p.feed(c) {
                    Ok(Progress::NeedMore) => {}
                    Ok(Progress::Complete(_, n)) => { prop_assert!(n <= c.len()); break; }
                    Err(_) => break,
                }
            }
        }

        #[test]
        fn arbitrary_bodies_after_valid_heads_never_panic(
            head_idx in 0usize..3,
            tail in proptest::collection::vec(
                prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'0'), Just(b'f'), Just(b';'), Just(b':'), any::<u8>()],
                0..300,
            ),
            chunk in 1usize..32,
        ) {
            let heads: [&[u8]; 3] = [
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
                b"HTTP/1.1 100 Continue\r\n\r\n",
            ];
            let mut data = heads[head_idx].to_vec();
            data.extend_from_slice(&tail);
            let mut p = ResponseParser::new(false, 1000);
            for c in data.chunks(chunk) {
                match p.feed(c) {
                    Ok(Progress::NeedMore) => {}
                    Ok(Progress::Complete(r, n)) => {
                        prop_assert!(n <= c.len());
                        prop_assert!(r.body().len() <= 1000);
                        break;
                    }
                    Err(_) => break,
                }
            }
        }

        #[test]
        fn chunked_bodies_round_trip(
            pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..50), 0..10),
            split in any::<usize>(),
        ) {
            let mut wire = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            for p in &pieces {
                wire.extend_from_slice(format!("{:X}\r\n", p.len()).as_bytes());
                wire.extend_from_slice(p);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\nHTTP/1.1 200 OK\r\n");
            let split = split % (wire.len() + 1);
            let (a, b) = wire.split_at(split);
            let (r, n) = feed_chunks(false, &[a, b]).unwrap().unwrap();
            prop_assert_eq!(r.body(), &pieces.concat());
            prop_assert_eq!(n, wire.len() - b"HTTP/1.1 200 OK\r\n".len());
        }
    }

    #[test]
    fn oversized_bodies_keep_head_and_first_bytes() {
        let cases: [&[u8]; 3] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\nX-A: 1\r\n\r\n0123456789abcdefghij",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n14\r\n0123456789abcdefghij\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\n0123456789abcdefghij",
        ];
        for bytes in cases {
            for split in 0..bytes.len() {
                let mut p = ResponseParser::new(false, 8);
                let mut err = None;
                for piece in [&bytes[..split], &bytes[split..]] {
                    match p.feed(piece) {
                        Ok(_) => {}
                        Err(e) => {
                            err = Some(e);
                            break;
                        }
                    }
                }
                assert_eq!(
                    err,
                    Some(WireError::BodyTooLarge { limit: 8 }),
                    "split {split}"
                );
                let r = p.into_oversized().expect("head kept");
                assert_eq!(r.headers()["x-a"], "1");
                assert_eq!(r.body(), b"012345678", "split {split}");
            }
        }
        // Within the limit nothing is oversized.
        let p = ResponseParser::new(false, 100);
        assert!(p.into_oversized().is_none());
    }
}
