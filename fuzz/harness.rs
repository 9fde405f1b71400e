//! Fuzz harness functions for `dap-proto`, shared by the cargo-fuzz targets in
//! `fuzz/fuzz_targets/` and by `core/tests/fuzz_corpus.rs`, which replays every
//! checked-in corpus file through the same functions on stable Rust.
//!
//! Every function takes raw fuzzer bytes, builds structured input from them with
//! [`arbitrary`], drives one part of the core and panics when an invariant breaks.
//! The harness reads no clock except once, for a fixed origin `Instant` that it only
//! ever adds durations to.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::fmt::Write as _;
use std::io::Read as _;
use std::ops::ControlFlow;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use dap_proto::download;
use dap_proto::gzip::{GzipDecoder, GzipError};
use dap_proto::records::{RecordError, RecordKind, RecordSplitter};
use dap_proto::wire::{self, Progress, ResponseParser, WireError};
use dap_proto::{
    Command, Config, Error, Format, HeadAction, JobId, ObjectId, ObjectUrl, OpId, Output,
    PollPolicy, PresignedUrl, Query, RequestId, RetryPolicy, Session, TokenHeader, TokenStatus,
    Transfer, TransferStep, api,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use jiff::Timestamp;

/// The client secret of every harness configuration.
pub const SECRET: &str = "s3cr3t-Qv9xZk";
/// A marker placed in bodies that must never be quoted (login, object URLs).
pub const BODY_MARK: &str = "BODYxMARKq7";
/// Part of every URL signature the harness hands out.
pub const SIG_MARK: &str = "SIGxMARKz3";
/// Part of every access token the harness hands out.
pub const TOKEN_MARK: &str = "TOKxMARKw5";
/// The API base URL of every harness configuration.
pub const API_BASE: &str = "https://api.dap.example";
const API_HOST: &str = "api.dap.example";

/// A fixed origin for the harness's virtual clock: read once, then only added to.
#[allow(clippy::disallowed_methods)]
pub fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn wall_base() -> Timestamp {
    Timestamp::from_second(1_795_917_211).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn byte(u: &mut Unstructured<'_>) -> u8 {
    u8::arbitrary(u).unwrap_or(0)
}

fn u16le(u: &mut Unstructured<'_>) -> u16 {
    u16::from_le_bytes([byte(u), byte(u)])
}

fn take<'a>(u: &mut Unstructured<'a>, n: usize) -> &'a [u8] {
    let n = n.min(u.len());
    u.bytes(n).unwrap_or_default()
}

fn rest<'a>(u: &mut Unstructured<'a>) -> &'a [u8] {
    let n = u.len();
    take(u, n)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn text_contains(hay: &str, needle: &str) -> bool {
    !needle.is_empty() && hay.contains(needle)
}

/// A file name from [`download::file_name`] must be safe to create in a directory.
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

fn base64url(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            let idx = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(ALPHABET[idx as usize]));
        }
    }
    out
}

/// A JWT whose payload is `claims` (not signed: clients never check signatures).
pub fn jwt(claims: &str, sig: &str) -> String {
    format!(
        "{}.{}.{sig}",
        base64url(br#"{"alg":"HS256","typ":"JWT"}"#),
        base64url(claims.as_bytes())
    )
}

fn http_date(t: Timestamp) -> String {
    jiff::fmt::rfc2822::DateTimePrinter::new()
        .timestamp_to_rfc9110_string(&t)
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------
// parsers
// ---------------------------------------------------------------------------------

/// The decoded input of the `parsers` target.
#[derive(Debug)]
pub struct ParserInput<'a> {
    pub selector: u8,
    pub status: u16,
    pub flags: u8,
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    pub resume: u8,
    pub wall: u8,
    pub body: &'a [u8],
}

impl<'a> ParserInput<'a> {
    /// Reads the input: selector, status (2 bytes LE), flags, header count, then per
    /// header a name length, name, value length and value, then resume and wall
    /// choices; the rest is the body.
    pub fn decode(data: &'a [u8]) -> Self {
        let mut u = Unstructured::new(data);
        let selector = byte(&mut u);
        let status = u16le(&mut u);
        let flags = byte(&mut u);
        let n = byte(&mut u) % 8;
        let mut headers = Vec::new();
        for _ in 0..n {
            let nl = usize::from(byte(&mut u) % 48);
            let name = take(&mut u, nl);
            let vl = usize::from(byte(&mut u));
            let value = take(&mut u, vl);
            headers.push((name, value));
        }
        let resume = byte(&mut u);
        let wall = byte(&mut u);
        let body = rest(&mut u);
        Self {
            selector,
            status,
            flags,
            headers,
            resume,
            wall,
            body,
        }
    }

    /// The inverse of [`ParserInput::decode`], for seed corpora.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![self.selector];
        out.extend_from_slice(&self.status.to_le_bytes());
        out.push(self.flags);
        out.push(self.headers.len() as u8);
        for (name, value) in &self.headers {
            out.push(name.len() as u8);
            out.extend_from_slice(name);
            out.push(value.len() as u8);
            out.extend_from_slice(value);
        }
        out.push(self.resume);
        out.push(self.wall);
        out.extend_from_slice(self.body);
        out
    }
}

fn parser_config(flags: u8) -> Config {
    let mut b = Config::builder("us-east-1#fuzz", SECRET).base_url(API_BASE);
    if flags & 0x08 != 0 {
        b = b.token_header(TokenHeader::XInstAuth);
    }
    if flags & 0x10 != 0 {
        b = b.max_body_bytes(1024);
    }
    b.build().expect("valid harness config")
}

fn check_no_secret(what: &str, text: &str, input_has_secret: bool) {
    if !input_has_secret {
        assert!(!text.contains(SECRET), "{what}: secret in {text}");
    }
}

/// Every response parser of the endpoint layer and of `download`, on an arbitrary
/// status, headers and body.
pub fn parsers(data: &[u8]) {
    let input = ParserInput::decode(data);
    let config = parser_config(input.flags);
    let status = StatusCode::from_u16(100 + input.status % 900).expect("100..=999");
    let mut body = input.body.to_vec();
    if input.flags & 0x04 != 0 {
        // Plant the marker somewhere in the body.
        let at = usize::from(input.selector).min(body.len());
        body.splice(at..at, BODY_MARK.bytes());
    }
    let mut headers = HeaderMap::new();
    match input.flags & 0x03 {
        1 => {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        2 => {
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
        }
        _ => {}
    }
    let mut header_has_mark = false;
    for (name, value) in &input.headers {
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        header_has_mark |= contains(value.as_bytes(), BODY_MARK.as_bytes());
        headers.append(name, value);
    }
    let has_secret = contains(data, SECRET.as_bytes());
    let marked = contains(&body, BODY_MARK.as_bytes()) && !header_has_mark;

    let mut builder = Response::builder().status(status);
    if let Some(h) = builder.headers_mut() {
        *h = headers.clone();
    }
    let response = builder.body(body.clone()).expect("valid response");

    // Login: protocol errors never quote the body; tokens never print.
    match api::login::parse(&config, &response) {
        Ok(login) => {
            assert_eq!(
                format!("{:?}", login.access_token),
                "AccessToken([redacted])"
            );
            let lifetime = login.lifetime(Some(wall_base()));
            assert!(lifetime <= api::login::MAX_LIFETIME.max(api::login::DEFAULT_LIFETIME));
            if let Some(e) = login.expires_in {
                assert!(e <= api::login::MAX_LIFETIME);
            }
        }
        Err(e) => {
            let text = format!("{e} {e:?}");
            check_no_secret("login", &text, has_secret);
            if let Error::Protocol(p) = &e {
                assert!(p.body_excerpt.is_empty(), "login body quoted");
                if marked {
                    assert!(!text.contains(BODY_MARK), "login body leaked: {text}");
                }
            }
        }
    }
    let requested: &[&str] = match input.selector % 5 {
        0 => &["a"],
        1 => &["a", "b"],
        2 => &["a", "a"],
        3 => &[],
        _ => &[
            "28313161-4ff8-4e58-a52f-5f4c5265257d/part-00000-f14dd88f-5a7c-4d66-8c8c-e78ef0497813-c000.json.gz",
        ],
    };
    let requested: Vec<ObjectId> = requested.iter().map(|s| ObjectId::new(*s)).collect();
    match api::objects::parse(&config, &requested, &response) {
        Ok(urls) => {
            assert_eq!(urls.len(), requested.len());
            for (url, id) in urls.iter().zip(&requested) {
                assert_eq!(&url.id, id);
                let raw = url.url.secret();
                let dbg = format!("{:?}", url.url);
                match raw.find(['?', '#']) {
                    Some(q) => assert_eq!(dbg, format!("PresignedUrl({}?[redacted])", &raw[..q])),
                    None => assert_eq!(dbg, format!("PresignedUrl({raw})")),
                }
                if let Ok(name) = download::file_name(&url.url) {
                    assert_safe_file_name(&name);
                }
                if let Ok(req) = download::request(&config, &url.url, u64::from(input.resume)) {
                    assert!(req.headers().get(http::header::AUTHORIZATION).is_none());
                    assert!(req.headers().get("x-instauth").is_none());
                }
            }
        }
        Err(e) => {
            let text = format!("{e} {e:?}");
            check_no_secret("object URLs", &text, has_secret);
            if let Error::Protocol(p) = &e {
                assert!(p.body_excerpt.is_empty(), "object URL body quoted");
                if marked {
                    assert!(!text.contains(BODY_MARK), "object URL body leaked: {text}");
                }
            }
        }
    }
    let errors = [
        api::tables::parse(&config, &response).err(),
        api::schema::parse(&config, &response).err(),
        api::query::parse(&config, &response).err(),
        api::job::parse(&config, &response).err(),
    ];
    for e in errors.into_iter().flatten() {
        let text = format!("{e} {e:?}");
        check_no_secret("endpoint", &text, has_secret);
        if let Error::Protocol(p) = &e {
            assert!(p.body_excerpt.len() <= 4 * dap_proto::error::BODY_EXCERPT_BYTES);
        }
        if let Some(d) = e.api_error() {
            // Uncapped here (the session caps it), and exactly what the header says.
            assert_eq!(d.retry_after, api::retry_after(&headers, None));
        }
    }
    if let Ok(job) = api::job::parse(&config, &response) {
        assert!(!job.id.as_str().is_empty());
    }

    // Retry-After, HTTP dates, content ranges, file names, storage heads.
    let now = match input.wall % 4 {
        0 => None,
        1 => Some(wall_base()),
        2 => Some(Timestamp::MIN),
        _ => Some(Timestamp::MAX),
    };
    let _ = api::retry_after(&headers, now);
    let resume = match input.resume {
        r @ 0..=199 => u64::from(r),
        r => u64::MAX - u64::from(255 - r),
    };
    match download::check_response(status, &headers, resume) {
        Ok(download::BodyStart::Resumed { start, total }) => {
            assert_eq!(status, StatusCode::PARTIAL_CONTENT);
            assert_eq!(start, resume);
            if let Some(total) = total {
                assert!(total > start);
            }
        }
        Ok(download::BodyStart::Full { .. }) => assert_eq!(status, StatusCode::OK),
        Ok(other) => panic!("unknown body start {other:?}"),
        Err(e) => {
            let _ = (e.is_retryable(), e.needs_new_url(), e.to_string());
        }
    }
    let body_text = String::from_utf8_lossy(&body);
    let mut texts: Vec<String> = vec![body_text.clone().into_owned()];
    texts.extend(
        headers
            .values()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    );
    for text in &texts {
        if let Some((s, e, t)) = download::parse_content_range(text) {
            assert!(s <= e && t.is_none_or(|t| e < t), "{text:?}");
        }
        let _ = api::parse_http_date(text);
        let _ = api::login::jwt_exp(text);
        let url = PresignedUrl::new(text.clone());
        let _ = url.last_path_segment();
        assert!(!format!("{url}").contains(SIG_MARK) || url.redacted().contains(SIG_MARK));
        if let Ok(name) = download::file_name(&url) {
            assert_safe_file_name(&name);
        }
    }
}

// ---------------------------------------------------------------------------------
// wire
// ---------------------------------------------------------------------------------

type EofResponse = Result<(StatusCode, Vec<(String, Vec<u8>)>, Vec<u8>), WireError>;

#[derive(Debug, PartialEq)]
enum WireOutcome {
    Complete {
        status: StatusCode,
        version: http::Version,
        headers: Vec<(String, Vec<u8>)>,
        body: Vec<u8>,
        used: usize,
    },
    Eof(EofResponse),
    Error(WireError),
}

fn header_list(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect()
}

fn run_parser(head: bool, max_body: usize, max_header: usize, pieces: &[&[u8]]) -> WireOutcome {
    let mut p = ResponseParser::new(head, max_body).with_max_header_bytes(max_header);
    let mut offset = 0usize;
    for piece in pieces {
        match p.feed(piece) {
            Ok(Progress::Complete(r, used)) => {
                assert!(used <= piece.len(), "used {used} of {}", piece.len());
                // Feeding again is refused, never panics.
                assert_eq!(p.feed(b"x").err(), Some(WireError::AlreadyComplete));
                return WireOutcome::Complete {
                    status: r.status(),
                    version: r.version(),
                    headers: header_list(r.headers()),
                    body: r.body().clone(),
                    used: offset + used,
                };
            }
            Ok(Progress::NeedMore) => offset += piece.len(),
            Ok(other) => panic!("unknown progress {other:?}"),
            Err(e) => return WireOutcome::Error(e),
        }
    }
    WireOutcome::Eof(
        p.finish_eof()
            .map(|r| (r.status(), header_list(r.headers()), r.body().clone())),
    )
}

/// Two parses of the same stream agree: a response (complete or ended by EOF) is
/// identical. A broken stream may be reported as malformed or as truncated depending
/// on where the pieces end: the head is parsed only once a blank line arrives, and a
/// stray leading blank line makes the one-piece parse look at it earlier.
fn same_wire_outcome(a: &WireOutcome, b: &WireOutcome, what: &str) {
    let failed = |o: &WireOutcome| matches!(o, WireOutcome::Error(_) | WireOutcome::Eof(Err(_)));
    if !(failed(a) && failed(b)) {
        assert_eq!(a, b, "{what}");
    }
}

fn wire_stream(u: &mut Unstructured<'_>, flags: u8) {
    let head = flags & 0x01 != 0;
    let max_body = [0usize, 16, 1024, usize::MAX][usize::from((flags >> 1) & 3)];
    let max_header =
        [16usize, 64, 1024, wire::DEFAULT_MAX_HEADER_BYTES][usize::from((flags >> 3) & 3)];
    let nsplits = byte(u) % 8;
    let mut splits: Vec<usize> = (0..nsplits).map(|_| usize::from(u16le(u))).collect();
    let stream = rest(u);
    for s in &mut splits {
        *s %= stream.len() + 1;
    }
    splits.sort_unstable();
    let mut pieces = Vec::new();
    let mut last = 0;
    for &s in &splits {
        pieces.push(&stream[last..s]);
        last = s;
    }
    pieces.push(&stream[last..]);
    let whole = run_parser(head, max_body, max_header, &[stream]);
    let split = run_parser(head, max_body, max_header, &pieces);
    same_wire_outcome(&whole, &split, "feeding in pieces changed the result");
    let bytewise: Vec<&[u8]> = stream.chunks(1).collect();
    if stream.len() <= 512 {
        let one = run_parser(head, max_body, max_header, &bytewise);
        same_wire_outcome(&whole, &one, "feeding byte by byte changed the result");
    }
    if let WireOutcome::Complete { body, used, .. } = &whole {
        assert!(body.len() <= max_body);
        assert!(*used <= stream.len());
    }
    if !head && max_body == usize::MAX && max_header == wire::DEFAULT_MAX_HEADER_BYTES {
        match (wire::parse_response(stream), &whole) {
            (Ok(Some((r, used))), WireOutcome::Complete { body, used: u2, .. }) => {
                assert_eq!((r.body(), used), (body, *u2));
            }
            (Ok(None), WireOutcome::Eof(_)) | (Err(_), WireOutcome::Error(_)) => {}
            (a, b) => panic!("parse_response disagrees: {a:?} vs {b:?}"),
        }
    }
}

fn header_pairs(u: &mut Unstructured<'_>, max: u8) -> Vec<(HeaderName, HeaderValue)> {
    let n = byte(u) % max;
    let mut out = Vec::new();
    for _ in 0..n {
        let nl = usize::from(byte(u) % 24);
        let name = take(u, nl);
        let vl = usize::from(byte(u) % 64);
        let value = take(u, vl);
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            out.push((n, v));
        }
    }
    out
}

fn wire_response_round_trip(u: &mut Unstructured<'_>) {
    let code = 200 + u16le(u) % 400;
    let status = StatusCode::from_u16(code).expect("valid");
    let no_body = code == 204 || code == 304;
    let headers: Vec<_> = header_pairs(u, 12)
        .into_iter()
        .filter(|(n, v)| {
            let b = v.as_bytes();
            *n != http::header::CONTENT_LENGTH
                && *n != http::header::TRANSFER_ENCODING
                && !b.first().is_some_and(|c| *c == b' ' || *c == b'\t')
                && !b.last().is_some_and(|c| *c == b' ' || *c == b'\t')
        })
        .collect();
    let chunked = byte(u) & 1 == 1;
    let body = if no_body { &[][..] } else { rest(u) };
    let mut bytes = format!("HTTP/1.1 {code} Whatever\r\n").into_bytes();
    for (n, v) in &headers {
        bytes.extend_from_slice(n.as_str().as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(v.as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    if chunked && !no_body {
        bytes.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
        for piece in body.chunks(7) {
            bytes.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            bytes.extend_from_slice(piece);
            bytes.extend_from_slice(b"\r\n");
        }
        bytes.extend_from_slice(b"0\r\n\r\n");
    } else {
        if !no_body {
            bytes.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(body);
    }
    let total = bytes.len();
    bytes.extend_from_slice(b"HTTP/1.1 200 OK\r\n"); // the next response on the connection
    match wire::parse_response(&bytes) {
        Ok(Some((r, used))) => {
            assert_eq!(used, total);
            assert_eq!(r.status(), status);
            assert_eq!(r.body().as_slice(), body);
            for (n, v) in &headers {
                assert!(
                    r.headers().get_all(n).iter().any(|x| x == v),
                    "header {n} lost"
                );
            }
        }
        other => {
            // httparse is stricter than `http` about some header bytes; anything it
            // refuses must be refused as malformed, never half-parsed.
            match other {
                Err(WireError::Malformed(_)) => {}
                other => panic!("round trip failed: {other:?}"),
            }
        }
    }
}

fn wire_request_round_trip(u: &mut Unstructured<'_>) {
    let methods = [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::HEAD,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
    ];
    let method = methods[usize::from(byte(u)) % methods.len()].clone();
    let ul = usize::from(byte(u) % 96);
    let uri_bytes = take(u, ul);
    let uri = format!("https://{API_HOST}{}", String::from_utf8_lossy(uri_bytes));
    let Ok(uri) = uri.parse::<http::Uri>() else {
        return;
    };
    let headers = header_pairs(u, 8);
    let body = rest(u).to_vec();
    let mut builder = Request::builder().method(method.clone()).uri(uri.clone());
    for (n, v) in &headers {
        builder = builder.header(n, v);
    }
    let Ok(req) = builder.body(body.clone()) else {
        return;
    };
    let mut out = b"keep".to_vec();
    match wire::write_request(&req, &mut out) {
        Ok(()) => {
            let out = &out[4..];
            let end = out
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("head ends");
            let head = std::str::from_utf8(&out[..end]).map(str::to_owned);
            let written_body = &out[end + 4..];
            assert_eq!(written_body, body.as_slice());
            let head_bytes = &out[..end];
            let mut lines = head_bytes.split(|&b| b == b'\n');
            let request_line = lines.next().expect("request line");
            // Origin form always starts with '/', even for `https://host?query`.
            let pq = uri.path_and_query().map_or("", |p| p.as_str());
            let expected_target = if pq.starts_with('/') {
                pq.to_owned()
            } else {
                format!("/{pq}")
            };
            assert_eq!(
                request_line,
                format!("{} {expected_target} HTTP/1.1\r", method.as_str()).as_bytes()
            );
            let mut seen: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            for line in lines {
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                let colon = line.iter().position(|&b| b == b':').expect("colon");
                seen.push((line[..colon].to_vec(), line[colon + 2..].to_vec()));
            }
            for (n, v) in &headers {
                assert!(
                    seen.iter()
                        .any(|(sn, sv)| sn == n.as_str().as_bytes() && sv == v.as_bytes()),
                    "header {n} not written"
                );
            }
            if !req.headers().contains_key(http::header::HOST) {
                let authority = uri.authority().map_or("", |a| a.as_str());
                let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
                assert!(
                    seen.iter()
                        .any(|(n, v)| n == b"host" && v == host.as_bytes())
                );
            }
            let cl: Vec<_> = seen
                .iter()
                .filter(|(n, _)| n == b"content-length")
                .collect();
            if !body.is_empty() && !req.headers().contains_key(http::header::TRANSFER_ENCODING) {
                assert_eq!(cl.len(), 1);
                assert_eq!(cl[0].1, body.len().to_string().into_bytes());
            }
            let _ = head;
        }
        Err(e) => {
            assert_eq!(out, b"keep", "nothing appended on error ({e})");
        }
    }
}

/// The raw HTTP/1.1 module: a response stream split anywhere parses the same as in
/// one piece; responses and requests written by us round-trip.
pub fn wire(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let flags = byte(&mut u);
    match flags >> 5 {
        0..=4 => wire_stream(&mut u, flags),
        5 | 6 => wire_response_round_trip(&mut u),
        _ => wire_request_round_trip(&mut u),
    }
}

// ---------------------------------------------------------------------------------
// gzip
// ---------------------------------------------------------------------------------

fn gz_encode(data: &[u8], level: u32) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).expect("in memory");
    e.finish().expect("in memory")
}

type GzResult = (Vec<u8>, Result<dap_proto::gzip::GzipSummary, GzipError>);

fn gz_decode(pieces: &[&[u8]], verify_only: bool) -> GzResult {
    let mut d = GzipDecoder::new();
    let mut out = Vec::new();
    for piece in pieces {
        let r = if verify_only {
            d.verify(piece)
        } else {
            d.feed(piece, |b| {
                assert!(b.len() <= 64 * 1024);
                out.extend_from_slice(b);
            })
        };
        if let Err(e) = r {
            // Poisoned: the same error again, and from finish.
            assert_eq!(d.verify(b"\x1f\x8b").err(), Some(e.clone()));
            assert_eq!(d.finish().err(), Some(e.clone()));
            return (out, Err(e));
        }
    }
    (out, d.finish())
}

/// Two decodings of the same bytes agree: equal output and totals on success; on
/// failure the same kind of error (inflate's message depends on where its input
/// stopped) and output that is a prefix of one another (bytes produced by the call
/// that failed are dropped).
fn same_gzip_result(a: &GzResult, b: &GzResult, what: &str) {
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

fn split_points(u: &mut Unstructured<'_>, len: usize) -> Vec<usize> {
    let n = byte(u) % 8;
    let mut splits: Vec<usize> = (0..n).map(|_| usize::from(u16le(u)) % (len + 1)).collect();
    splits.sort_unstable();
    splits
}

fn pieces_at<'a>(data: &'a [u8], splits: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut last = 0;
    for &s in splits {
        let s = s.min(data.len()).max(last);
        out.push(&data[last..s]);
        last = s;
    }
    out.push(&data[last..]);
    out
}

/// The streaming gzip decoder: chunking never changes the result; valid streams decode
/// exactly; whatever it accepts, flate2 decodes to the same bytes.
pub fn gzip(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mode = byte(&mut u);
    let corrupt_at = u16le(&mut u);
    let corrupt_with = byte(&mut u);
    let split_seed: Vec<u8> = take(&mut u, 17).to_vec();
    let payload = rest(&mut u);
    let (compressed, valid_plain) = match mode & 3 {
        0 => (payload.to_vec(), None),
        1 => {
            // Bit 2 repeats the payload past the decoder's 256 KiB buffer and 64 KiB
            // sink pieces, so their boundaries fall everywhere.
            let plain = match mode & 4 {
                0 => payload.to_vec(),
                _ => payload.repeat((300_000 / payload.len().max(1)).min(300_000)),
            };
            (gz_encode(&plain, u32::from(mode >> 4) % 10), Some(plain))
        }
        2 => {
            let cut = usize::from(corrupt_at) % (payload.len() + 1);
            let mut v = gz_encode(&payload[..cut], 1);
            v.extend_from_slice(&gz_encode(b"", 6));
            v.extend_from_slice(&gz_encode(&payload[cut..], 9));
            (v, Some(payload.to_vec()))
        }
        _ => {
            let mut v = gz_encode(payload, 6);
            if !v.is_empty() {
                let at = usize::from(corrupt_at) % v.len();
                v[at] ^= corrupt_with | 1;
            }
            (v, None)
        }
    };
    let mut su = Unstructured::new(&split_seed);
    let splits = split_points(&mut su, compressed.len());
    let whole = gz_decode(&[&compressed], false);
    let pieces = pieces_at(&compressed, &splits);
    let split = gz_decode(&pieces, false);
    same_gzip_result(&whole, &split, "chunking changed the gzip result");
    let verified = gz_decode(&pieces, true);
    same_gzip_result(
        &(Vec::new(), whole.1.clone()),
        &verified,
        "verify and decode disagree",
    );
    if compressed.len() <= 1024 {
        let bytewise: Vec<&[u8]> = compressed.chunks(1).collect();
        same_gzip_result(&whole, &gz_decode(&bytewise, false), "byte-by-byte differs");
    }
    if let Some(plain) = valid_plain {
        let summary = whole.1.as_ref().expect("valid gzip refused");
        assert_eq!(whole.0, plain);
        assert_eq!(summary.decompressed_bytes, plain.len() as u64);
        assert_eq!(summary.compressed_bytes, compressed.len() as u64);
    }
    if let Ok(summary) = &whole.1 {
        assert_eq!(summary.decompressed_bytes, whole.0.len() as u64);
        let mut theirs = Vec::new();
        let r = flate2::read::MultiGzDecoder::new(compressed.as_slice()).read_to_end(&mut theirs);
        if r.is_ok() {
            assert_eq!(theirs, whole.0, "flate2 decodes differently");
        }
    }
}

// ---------------------------------------------------------------------------------
// records
// ---------------------------------------------------------------------------------

fn reference_records(
    kind: RecordKind,
    max_len: usize,
    input: &[u8],
) -> (Vec<Vec<u8>>, Option<RecordError>) {
    let mut out = Vec::new();
    let mut cur = Vec::new();
    let mut quoted = false;
    for &b in input {
        match b {
            b'"' if kind == RecordKind::Csv => {
                quoted = !quoted;
                cur.push(b);
            }
            b'\n' if !quoted => {
                if cur.len() > max_len {
                    return (out, Some(RecordError::TooLong { limit: max_len }));
                }
                if cur.last() == Some(&b'\r') {
                    cur.pop();
                }
                out.push(std::mem::take(&mut cur));
            }
            _ => cur.push(b),
        }
    }
    if cur.len() > max_len {
        return (out, Some(RecordError::TooLong { limit: max_len }));
    }
    if quoted {
        return (out, Some(RecordError::UnterminatedQuote));
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    (out, None)
}

fn split_records(
    kind: RecordKind,
    max_len: usize,
    pieces: &[&[u8]],
    break_every: usize,
) -> (Vec<Vec<u8>>, Option<RecordError>) {
    let mut s = RecordSplitter::new(kind).with_max_record_len(max_len);
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut since_break = 0usize;
    let mut emit = |r: &[u8]| {
        assert!(!r.ends_with(b"\n"));
        out.push(r.to_vec());
        since_break += 1;
        if break_every > 0 && since_break >= break_every {
            since_break = 0;
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    for piece in pieces {
        let mut chunk: &[u8] = piece;
        loop {
            match s.push(chunk, &mut emit) {
                Ok(ControlFlow::Break(())) => chunk = &[], // resume the kept rest
                Ok(ControlFlow::Continue(())) => break,
                Err(e) => {
                    assert_eq!(s.push(b"x", &mut emit).err(), Some(e.clone()));
                    return (out, Some(e));
                }
            }
        }
        assert!(s.buffered_len() <= max_len.saturating_add(piece.len()));
    }
    // Drain what an early stop kept, then finish (`finish` consumes the splitter, so
    // a stop inside it would end the input for good).
    loop {
        match s.push(&[], &mut emit) {
            Ok(ControlFlow::Break(())) => {}
            Ok(ControlFlow::Continue(())) => break,
            Err(e) => return (out, Some(e)),
        }
    }
    match s.finish(&mut emit) {
        Ok(_) => (out, None),
        Err(e) => (out, Some(e)),
    }
}

/// The record splitter: the records found never depend on how the input is chunked
/// or where the consumer stops, and match a simple whole-input reference.
pub fn records(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let flags = byte(&mut u);
    let kind = if flags & 1 == 0 {
        RecordKind::Lines
    } else {
        RecordKind::Csv
    };
    let max_len = [0usize, 1, 3, 16, 64, 1000, usize::MAX, 8][usize::from((flags >> 1) & 7)];
    let break_every = usize::from(flags >> 4);
    let split_seed: Vec<u8> = take(&mut u, 17).to_vec();
    let input = rest(&mut u);
    let mut su = Unstructured::new(&split_seed);
    let splits = split_points(&mut su, input.len());
    let pieces = pieces_at(input, &splits);
    let reference = reference_records(kind, max_len, input);
    let whole = split_records(kind, max_len, &[input], 0);
    assert_eq!(whole, reference, "splitter differs from the reference");
    let split = split_records(kind, max_len, &pieces, 0);
    assert_eq!(split, reference, "chunking changed the records");
    if break_every > 0 {
        let stopped = split_records(kind, max_len, &pieces, break_every);
        // Stopping early may report a too-long record only once it is reached, but
        // never changes the records before it.
        assert_eq!(stopped, reference, "early stops changed the records");
    }
}

// ---------------------------------------------------------------------------------
// session
// ---------------------------------------------------------------------------------

#[derive(Arbitrary, Debug)]
pub struct SessionSetup {
    x_instauth: bool,
    max_attempts: u8,
    initial_backoff_ms: u16,
    max_backoff_s: u8,
    max_retry_after_s: u16,
    default_retry_after_s: u8,
    poll_initial_ms: u16,
    poll_max_s: u8,
    poll_max_duration_s: u16,
    expiry_margin_s: u8,
    refresh_margin_s: u16,
    batch: u8,
    scope: bool,
    wall_offset_s: u32,
}

impl SessionSetup {
    fn config(&self) -> Config {
        let max_attempts = u32::from(self.max_attempts % 6) + 1;
        let initial = Duration::from_millis(u64::from(self.initial_backoff_ms % 5000));
        let max_backoff = initial.max(Duration::from_secs(u64::from(self.max_backoff_s % 120)));
        let mut retry = RetryPolicy::new(max_attempts, initial, max_backoff);
        retry.max_retry_after = Duration::from_secs(u64::from(self.max_retry_after_s % 3600));
        retry.default_retry_after = Duration::from_secs(u64::from(self.default_retry_after_s));
        let poll_initial = Duration::from_millis(u64::from(self.poll_initial_ms % 10_000) + 1);
        let poll_max = poll_initial.max(Duration::from_secs(u64::from(self.poll_max_s % 60)));
        let mut poll = PollPolicy::new(poll_initial, poll_max);
        poll.max_duration = Duration::from_secs(u64::from(self.poll_max_duration_s % 20_000) + 1);
        poll.expiry_margin = Duration::from_secs(u64::from(self.expiry_margin_s));
        let mut b = Config::builder("us-east-1#fuzz-client", SECRET)
            .base_url(API_BASE)
            .retry(retry)
            .poll(poll)
            .refresh_margin(Duration::from_secs(u64::from(self.refresh_margin_s % 7200)))
            .url_batch_size(usize::from(self.batch % 4) + 1);
        if self.x_instauth {
            b = b.token_header(TokenHeader::XInstAuth);
        }
        if self.scope {
            b = b.scope("root-1");
        }
        b.build().expect("valid harness config")
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum CmdPick {
    Tables,
    Schema,
    Query { incremental: bool, format: u8 },
    GetJob { bad_id: bool },
    Urls { count: u8, dupes: bool },
    BadTables,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum StatusPick {
    Natural,
    Common(u8),
    Any(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum TokenPick {
    Plain,
    JwtRelative(i32),
    JwtAbsolute(i64),
    JwtGarbageExp,
    JwtNotJson,
    NotAHeaderValue,
    Empty,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum ExpiresPick {
    Absent,
    Secs(i32),
    Huge,
    Float,
    Text,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum JobPick {
    Waiting,
    Running,
    Complete {
        objects: u8,
        incremental: bool,
        drop_field: u8,
    },
    Failed,
    Unknown,
    WrongId,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum UrlsPick {
    All,
    MissingFirst,
    RelativeUrl,
    OtherHost,
    Extra,
    Duplicate,
    Traversal,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum BodyPick {
    Auto,
    Login {
        token: TokenPick,
        expires_in: ExpiresPick,
        bad_type: bool,
    },
    Job {
        state: JobPick,
        expires_in_s: Option<i32>,
    },
    Urls(UrlsPick),
    Tables,
    Schema,
    DapError {
        status: u8,
        kind: u8,
    },
    Html,
    Empty,
    Garbage(u32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum HeaderPick {
    RetryAfterSecs(u32),
    RetryAfterHuge,
    RetryAfterDate(i32),
    RetryAfterGarbage,
    Date(i32),
    DateGarbage,
    NoContentType,
    HtmlContentType,
    Location,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum AdvancePick {
    Millis(u16),
    Secs(u16),
    Hours(u8),
    ToDeadline,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum SessionStep {
    Start(CmdPick),
    Respond {
        pick: u8,
        status: StatusPick,
        body: BodyPick,
        h1: Option<HeaderPick>,
        h2: Option<HeaderPick>,
    },
    Fail {
        pick: u8,
    },
    Advance(AdvancePick),
    Cancel {
        pick: u8,
    },
    Stale {
        pick: u8,
    },
}

struct Pending {
    id: RequestId,
    request: Request<Vec<u8>>,
    op: Option<usize>,
    login: bool,
}

struct OpTrack {
    id: OpId,
    query: bool,
    started: Instant,
    done: bool,
    cancelled: bool,
    /// Requests sent since the last 2xx answer for this operation.
    unanswered_sends: u32,
    /// When the last 2xx job status (not terminal) arrived, for poll spacing.
    last_job_ok: Option<Instant>,
}

/// Statistics of one session run (used to pick seeds).
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash)]
pub struct SessionStats {
    pub ok: Vec<&'static str>,
    pub errors: Vec<String>,
    pub logins: u64,
    pub sends: u64,
}

struct SessionHarness {
    config: Config,
    session: Session,
    now: Instant,
    server_wall_offset: i64,
    pending: Vec<Pending>,
    answered: Vec<RequestId>,
    ops: Vec<OpTrack>,
    tokens: Vec<String>,
    token_count: u64,
    offered_token: Option<String>,
    last_deadline: Option<Instant>,
    stats: SessionStats,
}

fn op_index(text: &str) -> Option<usize> {
    let at = text.find("op")?;
    let digits: String = text[at + 2..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    if text[at + 2 + digits.len()..].starts_with('_') {
        digits.parse().ok()
    } else {
        None
    }
}

fn requested_ids(body: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(body);
    text.split("\"id\":\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_owned))
        .collect()
}

impl SessionHarness {
    fn new(setup: &SessionSetup) -> Self {
        let config = setup.config();
        let now = origin();
        let wall = wall_base()
            .checked_add(jiff::SignedDuration::from_secs(i64::from(
                setup.wall_offset_s % 100_000_000,
            )))
            .unwrap_or(wall_base());
        let session = Session::new(config.clone(), now, wall);
        Self {
            config,
            session,
            now,
            server_wall_offset: wall.as_second(),
            pending: Vec::new(),
            answered: Vec::new(),
            ops: Vec::new(),
            tokens: Vec::new(),
            token_count: 0,
            offered_token: None,
            last_deadline: None,
            stats: SessionStats::default(),
        }
    }

    fn server_wall(&self) -> Timestamp {
        let elapsed = self.now.saturating_duration_since(origin()).as_secs() as i64;
        Timestamp::from_second(
            self.server_wall_offset
                .saturating_add(elapsed)
                .clamp(0, 253_402_207_199),
        )
        .unwrap_or(wall_base())
    }

    fn advance(&mut self, by: Duration) {
        // Keep the virtual clock within a few centuries of the origin.
        if self.now.saturating_duration_since(origin()) < Duration::from_secs(3_000_000_000) {
            self.now += by;
        }
    }

    fn check_secrets(&self, what: &str, text: &str) {
        assert!(!text.contains(SECRET), "{what}: secret leaked: {text}");
        assert!(
            !text.contains(SIG_MARK),
            "{what}: URL signature leaked: {text}"
        );
        assert!(!text.contains(TOKEN_MARK), "{what}: token leaked: {text}");
    }

    fn on_send(&mut self, id: RequestId, request: Request<Vec<u8>>) {
        self.stats.sends += 1;
        let uri = request.uri().clone();
        assert_eq!(uri.scheme_str(), Some("https"), "{uri}");
        let host_is_api = uri.authority().map(|a| a.as_str()) == Some(API_HOST);
        let login = uri.path() == dap_proto::config::DEFAULT_TOKEN_PATH;
        let token_header = self.config.token_header().name();
        // Tokens: only in the configured header, only to the API, never in the URI or
        // body, and always the latest one.
        let uri_text = uri.to_string();
        let body_text = String::from_utf8_lossy(request.body()).into_owned();
        assert!(!uri_text.contains(TOKEN_MARK) && !body_text.contains(TOKEN_MARK));
        assert!(!uri_text.contains(SECRET) && !body_text.contains(SECRET));
        for (name, value) in request.headers() {
            let v = String::from_utf8_lossy(value.as_bytes());
            assert!(!v.contains(SECRET), "raw secret in header {name}");
            if v.contains(TOKEN_MARK) {
                assert!(host_is_api, "token sent to {uri}");
                assert_eq!(name, token_header, "token in the wrong header");
                assert!(!login, "token sent to the login endpoint");
                assert!(value.is_sensitive(), "auth header not marked sensitive");
            }
        }
        if login {
            assert!(host_is_api, "login sent to {uri}");
            assert!(request.headers()[http::header::AUTHORIZATION].is_sensitive());
            let logins_in_flight = self.pending.iter().filter(|p| p.login).count();
            assert_eq!(logins_in_flight, 0, "a second login while one is in flight");
            assert_eq!(self.session.token_status(), TokenStatus::LoggingIn);
            self.stats.logins += 1;
            self.pending.push(Pending {
                id,
                request,
                op: None,
                login: true,
            });
            return;
        }
        // An API call: a usable token, sent in the configured header.
        match self.session.token_status() {
            TokenStatus::Valid(until) => {
                assert!(
                    self.now < until,
                    "request sent with a token past its use-by time"
                )
            }
            other => panic!("API request sent without a valid token: {other:?}"),
        }
        let latest = self.tokens.last().expect("a token was issued");
        let value = request
            .headers()
            .get(&token_header)
            .expect("token header present");
        let expected = match self.config.token_header() {
            TokenHeader::Bearer => format!("Bearer {latest}"),
            _ => latest.clone(),
        };
        assert_eq!(
            value.as_bytes(),
            expected.as_bytes(),
            "stale or wrong token"
        );
        if self.config.token_header() != TokenHeader::Bearer {
            assert!(!request.headers().contains_key(http::header::AUTHORIZATION));
        }
        assert!(host_is_api, "API request to another host: {uri}");
        let op = op_index(uri.path()).or_else(|| {
            requested_ids(request.body())
                .first()
                .and_then(|id| op_index(id))
        });
        if let Some(k) = op {
            let max = self.config.retry().max_attempts;
            let poll = self.config.poll().clone();
            let now = self.now;
            if let Some(track) = self.ops.get_mut(k) {
                assert!(!track.done, "request for a finished operation");
                assert!(!track.cancelled, "request for a cancelled operation");
                track.unanswered_sends += 1;
                let is_poll = track.query && uri.path().starts_with("/dap/job/");
                let bound = if is_poll { 2 * max + 1 } else { max + 1 };
                assert!(
                    track.unanswered_sends <= bound,
                    "{} sends without success (bound {bound})",
                    track.unanswered_sends
                );
                if track.query {
                    assert!(
                        now < track.started + poll.max_duration,
                        "query request sent after max_duration"
                    );
                    if let (true, Some(t)) = (is_poll, track.last_job_ok) {
                        assert!(
                            now.saturating_duration_since(t) >= poll.initial_interval,
                            "job polled faster than the poll interval"
                        );
                    }
                }
            }
        }
        self.pending.push(Pending {
            id,
            request,
            op,
            login: false,
        });
    }

    fn on_done(&mut self, op: OpId, result: Result<dap_proto::Outcome, Error>) {
        let text = format!("{result:?}");
        self.check_secrets("result", &text);
        if let Err(e) = &result {
            self.check_secrets("error", &e.to_string());
            if let Error::JobTimedOut { waited, .. } = e {
                assert_eq!(*waited, self.config.poll().max_duration);
            }
            self.stats
                .errors
                .push(format!("{e}").chars().take(40).collect());
        } else {
            self.stats.ok.push(match &result {
                Ok(dap_proto::Outcome::Tables(_)) => "tables",
                Ok(dap_proto::Outcome::Schema(_)) => "schema",
                Ok(dap_proto::Outcome::Job(_)) => "job",
                Ok(dap_proto::Outcome::Urls(_)) => "urls",
                Ok(dap_proto::Outcome::Query(_)) => "query",
                _ => "other",
            });
        }
        if let Ok(dap_proto::Outcome::Query(q)) = &result {
            for o in &q.objects {
                assert!(o.url.secret().contains(SIG_MARK));
            }
        }
        let track = self
            .ops
            .iter_mut()
            .find(|t| t.id == op)
            .expect("Done for an operation never started");
        assert!(!track.done, "Done twice for {op}");
        assert!(!track.cancelled, "Done for a cancelled operation");
        track.done = true;
    }

    /// Drains the session until it waits; returns the deadline.
    fn drain(&mut self) -> Option<Instant> {
        for _ in 0..10_000 {
            match self.session.poll_output(self.now) {
                Output::Send { id, request } => self.on_send(id, request),
                Output::Done { op, result } => self.on_done(op, result),
                Output::Wait(deadline) => {
                    if let Some(t) = deadline {
                        assert!(
                            t >= self.now,
                            "Wait deadline {:?} in the past ({:?})",
                            self.now - t,
                            self.session
                        );
                    }
                    let logins = self.pending.iter().filter(|p| p.login).count();
                    assert!(logins <= 1);
                    self.last_deadline = deadline;
                    return deadline;
                }
                _ => {}
            }
        }
        panic!("poll_output never returned Wait");
    }

    fn start(&mut self, pick: CmdPick) {
        let k = self.ops.len();
        let command = match pick {
            CmdPick::Tables => Command::ListTables {
                namespace: format!("op{k}_ns"),
            },
            CmdPick::Schema => Command::Schema {
                namespace: "canvas".into(),
                table: format!("op{k}_t"),
            },
            CmdPick::Query {
                incremental,
                format,
            } => {
                let format = Format::ALL[usize::from(format) % 4];
                let query = if incremental {
                    Query::incremental(format, wall_base())
                } else {
                    Query::snapshot(format)
                };
                Command::Query {
                    namespace: "canvas".into(),
                    table: format!("op{k}_q"),
                    query,
                }
            }
            CmdPick::GetJob { bad_id } => Command::GetJob {
                job: JobId::new(if bad_id {
                    format!("op{k}_/../x")
                } else {
                    format!("op{k}_g")
                }),
            },
            CmdPick::Urls { count, dupes } => Command::ObjectUrls {
                objects: (0..usize::from(count % 7))
                    .map(|i| ObjectId::new(format!("op{k}_o{}", if dupes { i / 2 } else { i })))
                    .collect(),
            },
            CmdPick::BadTables => Command::ListTables {
                namespace: format!("op{k}_/../etc"),
            },
        };
        let query = matches!(command, Command::Query { .. });
        let id = self.session.start(command, self.now);
        self.ops.push(OpTrack {
            id,
            query,
            started: self.now,
            done: false,
            cancelled: false,
            unanswered_sends: 0,
            last_job_ok: None,
        });
    }

    fn login_body(&mut self, token: TokenPick, expires_in: ExpiresPick, bad_type: bool) -> String {
        self.token_count += 1;
        let n = self.token_count;
        let wall = self.server_wall().as_second();
        let sig = format!("{TOKEN_MARK}{n}");
        let token = match token {
            TokenPick::Plain => format!("plain{TOKEN_MARK}{n}"),
            TokenPick::JwtRelative(rel) => jwt(
                &format!(r#"{{"exp":{}}}"#, wall.saturating_add(i64::from(rel))),
                &sig,
            ),
            TokenPick::JwtAbsolute(exp) => jwt(&format!(r#"{{"exp":{exp}}}"#), &sig),
            TokenPick::JwtGarbageExp => jwt(r#"{"exp":"tomorrow"}"#, &sig),
            TokenPick::JwtNotJson => format!("eyJ.!!!not-base64!!!.{sig}"),
            TokenPick::NotAHeaderValue => format!("bad\\u0000tok{TOKEN_MARK}"),
            TokenPick::Empty => String::new(),
        };
        let expires = match expires_in {
            ExpiresPick::Absent => String::new(),
            ExpiresPick::Secs(s) => format!(r#","expires_in":{s}"#),
            ExpiresPick::Huge => r#","expires_in":99999999999999999999999"#.into(),
            ExpiresPick::Float => r#","expires_in":3599.9"#.into(),
            ExpiresPick::Text => r#","expires_in":"soon""#.into(),
        };
        let token_type = if bad_type { "mac" } else { "bearer" };
        self.offered_token = Some(token.clone());
        format!(
            r#"{{"access_token":"{token}"{expires},"scope":"dap","token_type":"{token_type}"}}"#
        )
    }

    fn job_body(&self, op: Option<usize>, state: JobPick, expires_in_s: Option<i32>) -> String {
        let k = op.unwrap_or(999);
        let id = match state {
            JobPick::WrongId => format!("op{k}_/../j"),
            _ => format!("op{k}_j"),
        };
        let wall = self.server_wall();
        let ts = |rel: i64| {
            Timestamp::from_second(
                wall.as_second()
                    .saturating_add(rel)
                    .clamp(0, 253_402_207_199),
            )
            .map(|t| t.to_string())
            .unwrap_or_default()
        };
        let expires = expires_in_s
            .map(|s| format!(r#","expires_at":"{}""#, ts(i64::from(s))))
            .unwrap_or_default();
        let rest = match state {
            JobPick::Waiting => r#""status":"waiting""#.to_owned(),
            JobPick::Running | JobPick::WrongId => r#""status":"running""#.to_owned(),
            JobPick::Failed => {
                r#""status":"failed","error":{"type":"ProcessingError","message":"boom"}"#
                    .to_owned()
            }
            JobPick::Unknown => r#""status":"exploded""#.to_owned(),
            JobPick::Complete {
                objects,
                incremental,
                drop_field,
            } => {
                let objs: Vec<String> = (0..objects % 6)
                    .map(|i| format!(r#"{{"id":"op{k}_o{i}"}}"#))
                    .collect();
                let mut fields = vec![
                    r#""status":"complete""#.to_owned(),
                    format!(r#""objects":[{}]"#, objs.join(",")),
                    r#""schema_version":2"#.to_owned(),
                ];
                if incremental {
                    fields.push(format!(r#""since":"{}""#, ts(-7200)));
                    fields.push(format!(r#""until":"{}""#, ts(-60)));
                } else {
                    fields.push(format!(r#""at":"{}""#, ts(-60)));
                }
                let drop = usize::from(drop_field % 8);
                if drop < fields.len() && drop > 0 {
                    fields.remove(drop);
                }
                fields.join(",")
            }
        };
        format!(r#"{{"id":"{id}",{rest}{expires}}}"#)
    }

    fn urls_body(&self, request: &Request<Vec<u8>>, pick: UrlsPick) -> String {
        let ids = requested_ids(request.body());
        let url = |i: usize, id: &str| match pick {
            UrlsPick::RelativeUrl if i == 0 => format!("/relative?X-Amz-Signature={SIG_MARK}"),
            UrlsPick::OtherHost => {
                format!("https://{API_HOST}/{id}/p{i}.gz?X-Amz-Signature={SIG_MARK}")
            }
            UrlsPick::Traversal => {
                format!("https://bucket.example/a/..%2F..%2F.ssh%2F{id}?X-Amz-Signature={SIG_MARK}")
            }
            _ => format!(
                "https://bucket.example/out/{id}/part-{i}.json.gz?X-Amz-Signature={SIG_MARK}{i}"
            ),
        };
        let mut entries: Vec<String> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| !(matches!(pick, UrlsPick::MissingFirst) && *i == 0))
            .map(|(i, id)| format!(r#""{id}":{{"url":"{}"}}"#, url(i, id)))
            .collect();
        match pick {
            UrlsPick::Extra => entries.push(format!(
                r#""unasked":{{"url":"https://bucket.example/x?sig={SIG_MARK}"}}"#
            )),
            UrlsPick::Duplicate => {
                if let Some(first) = ids.first() {
                    entries.push(format!(
                        r#""{first}":{{"url":"https://bucket.example/dup/{first}?sig={SIG_MARK}"}}"#
                    ));
                }
            }
            _ => {}
        }
        format!(r#"{{"urls":{{{}}}}}"#, entries.join(","))
    }

    fn respond(
        &mut self,
        pick: u8,
        status: StatusPick,
        body: BodyPick,
        headers: [Option<HeaderPick>; 2],
    ) {
        if self.pending.is_empty() {
            return;
        }
        let p = self.pending.remove(usize::from(pick) % self.pending.len());
        let path = p.request.uri().path().to_owned();
        let body = match body {
            BodyPick::Auto if p.login => BodyPick::Login {
                token: TokenPick::Plain,
                expires_in: ExpiresPick::Secs(3600),
                bad_type: false,
            },
            BodyPick::Auto if path.starts_with("/dap/job/") || path.ends_with("/data") => {
                BodyPick::Job {
                    state: JobPick::Complete {
                        objects: 2,
                        incremental: false,
                        drop_field: 0,
                    },
                    expires_in_s: Some(86_000),
                }
            }
            BodyPick::Auto if path == "/dap/object/url" => BodyPick::Urls(UrlsPick::All),
            BodyPick::Auto if path.ends_with("/schema") => BodyPick::Schema,
            BodyPick::Auto => BodyPick::Tables,
            other => other,
        };
        self.offered_token = None;
        let mut content_type = Some("application/json");
        let (natural, text): (u16, String) = match body {
            BodyPick::Auto => unreachable!("resolved above"),
            BodyPick::Login {
                token,
                expires_in,
                bad_type,
            } => (200, self.login_body(token, expires_in, bad_type)),
            BodyPick::Job {
                state,
                expires_in_s,
            } => {
                let terminal = matches!(state, JobPick::Complete { .. } | JobPick::Failed);
                (
                    if terminal { 200 } else { 202 },
                    self.job_body(p.op, state, expires_in_s),
                )
            }
            BodyPick::Urls(pick) => (200, self.urls_body(&p.request, pick)),
            BodyPick::Tables => (200, r#"{"tables":["accounts","courses"]}"#.into()),
            BodyPick::Schema => (200, r#"{"schema":{"type":"object"},"version":1}"#.into()),
            BodyPick::DapError { status, kind } => {
                let statuses = [400, 401, 403, 404, 410, 422, 429, 500, 502, 503, 504, 408];
                let kinds = [
                    "ValidationError",
                    "AuthenticationError",
                    "OutOfRange",
                    "SnapshotRequired",
                    "AccountDisabled",
                    "ProcessingError",
                    "ObjectNotFound",
                    "TooManyRequests",
                    "ServerError",
                ];
                (
                    statuses[usize::from(status) % statuses.len()],
                    format!(
                        r#"{{"error":{{"type":"{}","uuid":"u-1","message":"nope","since":"2023-01-01T00:00:00Z"}}}}"#,
                        kinds[usize::from(kind) % kinds.len()]
                    ),
                )
            }
            BodyPick::Html => {
                content_type = Some("text/html");
                (502, "<html><body>502 Bad Gateway</body></html>".into())
            }
            BodyPick::Empty => {
                content_type = None;
                (204, String::new())
            }
            BodyPick::Garbage(seed) => (200, format!("{{\"tab{seed:x}")),
        };
        // Tokens and signatures are secrets only where they belong; a login or URL
        // body sent to another endpoint is quotable junk and carries no marker.
        let text = if matches!(body, BodyPick::Login { .. }) && !p.login {
            text.replace(TOKEN_MARK, "tokenlike")
        } else if matches!(body, BodyPick::Urls(_)) && path != "/dap/object/url" {
            text.replace(SIG_MARK, "siglike")
        } else {
            text
        };
        let status = match status {
            StatusPick::Natural => natural,
            StatusPick::Common(c) => [
                200, 202, 204, 301, 302, 307, 308, 400, 401, 403, 404, 408, 418, 429, 500, 502, 503,
            ][usize::from(c) % 17],
            StatusPick::Any(c) => 100 + c % 900,
        };
        let mut builder = Response::builder().status(status);
        for h in headers.into_iter().flatten() {
            let wall = self.server_wall();
            let rel = |s: i32| {
                wall.checked_add(jiff::SignedDuration::from_secs(i64::from(s)))
                    .unwrap_or(wall)
            };
            let (name, value) = match h {
                HeaderPick::RetryAfterSecs(s) => ("retry-after", s.to_string()),
                HeaderPick::RetryAfterHuge => ("retry-after", "999999999".to_owned()),
                HeaderPick::RetryAfterDate(s) => ("retry-after", http_date(rel(s))),
                HeaderPick::RetryAfterGarbage => ("retry-after", "soon-ish".to_owned()),
                HeaderPick::Date(s) => ("date", http_date(rel(s))),
                HeaderPick::DateGarbage => ("date", "yesterday".to_owned()),
                HeaderPick::NoContentType => {
                    content_type = None;
                    continue;
                }
                HeaderPick::HtmlContentType => {
                    content_type = Some("text/html");
                    continue;
                }
                HeaderPick::Location => {
                    ("location", format!("https://evil.example/steal?{SIG_MARK}"))
                }
            };
            builder = builder.header(name, value);
        }
        if let Some(ct) = content_type {
            builder = builder.header("content-type", ct);
        }
        let response = builder.body(text.into_bytes()).expect("valid response");
        let ok = response.status().is_success();
        let is_job = path.starts_with("/dap/job/");
        let non_terminal_job = is_job && {
            let b = String::from_utf8_lossy(response.body());
            b.contains("\"waiting\"") || b.contains("\"running\"")
        };
        self.session
            .handle_response(p.id, response, self.now)
            .expect("a pending request is known");
        self.answered.push(p.id);
        if p.login && matches!(self.session.token_status(), TokenStatus::Valid(_)) {
            let token = self.offered_token.take().expect("a token was accepted");
            self.tokens.push(token);
        }
        if let Some(track) = p.op.filter(|_| ok).and_then(|k| self.ops.get_mut(k)) {
            track.unanswered_sends = 0;
            track.last_job_ok = non_terminal_job.then_some(self.now);
        }
    }

    fn fail(&mut self, pick: u8) {
        if self.pending.is_empty() {
            return;
        }
        let p = self.pending.remove(usize::from(pick) % self.pending.len());
        self.session
            .handle_failure(p.id, fail(), self.now)
            .expect("a pending request is known");
        self.answered.push(p.id);
    }

    fn step(&mut self, step: SessionStep) {
        match step {
            SessionStep::Start(pick) => {
                if self.ops.len() < 24 {
                    self.start(pick);
                }
            }
            SessionStep::Respond {
                pick,
                status,
                body,
                h1,
                h2,
            } => self.respond(pick, status, body, [h1, h2]),
            SessionStep::Fail { pick } => self.fail(pick),
            SessionStep::Advance(a) => {
                let by = match a {
                    AdvancePick::Millis(ms) => Duration::from_millis(u64::from(ms)),
                    AdvancePick::Secs(s) => Duration::from_secs(u64::from(s)),
                    AdvancePick::Hours(h) => Duration::from_secs(3600 * u64::from(h % 48)),
                    AdvancePick::ToDeadline => self
                        .last_deadline
                        .map_or(Duration::ZERO, |t| t.saturating_duration_since(self.now)),
                };
                self.advance(by);
            }
            SessionStep::Cancel { pick } => {
                if !self.ops.is_empty() {
                    let k = usize::from(pick) % self.ops.len();
                    let id = self.ops[k].id;
                    let live = !self.ops[k].done && !self.ops[k].cancelled;
                    let r = self.session.cancel(id);
                    if live {
                        // An op not yet reported is cancellable, even if its Done is queued.
                        r.expect("cancel a live operation");
                        self.ops[k].cancelled = true;
                    } else {
                        assert!(r.is_err(), "cancel of a finished operation accepted");
                    }
                }
            }
            SessionStep::Stale { pick } => {
                if !self.answered.is_empty() {
                    let id = self.answered[usize::from(pick) % self.answered.len()];
                    let r =
                        self.session
                            .handle_response(id, Response::new(Vec::<u8>::new()), self.now);
                    assert!(r.is_err(), "a second answer to {id} was accepted");
                    assert!(self.session.handle_failure(id, fail(), self.now).is_err());
                }
            }
        }
        self.drain();
    }

    /// After the inputs stop, every request fails: every operation must end.
    fn finish_with_failures(&mut self) {
        for _ in 0..2_000 {
            let deadline = self.drain();
            let live = self.ops.iter().filter(|t| !t.done && !t.cancelled).count();
            if live == 0 {
                assert_eq!(self.session.pending_operations(), 0);
                return;
            }
            if !self.pending.is_empty() {
                let all: Vec<Pending> = std::mem::take(&mut self.pending);
                for p in all {
                    self.session
                        .handle_failure(p.id, fail(), self.now)
                        .expect("known request");
                }
                continue;
            }
            match deadline {
                Some(t) => self.now = t.max(self.now),
                None => {
                    panic!("{live} operations pending, nothing in flight and no deadline: stuck")
                }
            }
        }
        panic!("operations did not end while every request failed");
    }
}

/// Runs the session harness and returns statistics about what happened.
pub fn session_run(data: &[u8]) -> Option<SessionStats> {
    let mut u = Unstructured::new(data);
    let setup = SessionSetup::arbitrary(&mut u).ok()?;
    let mut h = SessionHarness::new(&setup);
    h.drain();
    let mut steps = 0;
    while !u.is_empty() && steps < 400 {
        let Ok(step) = SessionStep::arbitrary(&mut u) else {
            break;
        };
        h.step(step);
        steps += 1;
    }
    h.finish_with_failures();
    Some(h.stats)
}

/// The session driven by an arbitrary sequence of commands, answers, failures, time
/// and cancellations; see [`SessionHarness`] for the invariants.
pub fn session(data: &[u8]) {
    let _ = session_run(data);
}

// ---------------------------------------------------------------------------------
// transfer
// ---------------------------------------------------------------------------------

#[derive(Arbitrary, Debug)]
pub struct TransferSetup {
    format: u8,
    decompress: bool,
    max_attempts: u8,
    backoff_ms: u16,
    url: u8,
    members: u8,
    payload: Vec<u8>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum TStatus {
    Full,
    Partial,
    Forbidden,
    NotFound,
    RangeNotSatisfiable,
    Server,
    Any(u16),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum LenPick {
    Absent,
    Correct,
    Off(i8),
    Any(u32),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum RangePick {
    Absent,
    Correct,
    ZeroStart,
    StartAt(u16),
    Garbage,
}

#[derive(Arbitrary, Debug, Clone)]
pub enum TStep {
    Poll,
    Head {
        status: TStatus,
        length: LenPick,
        range: RangePick,
    },
    Body(u16),
    Garbage(Vec<u8>),
    BodyEnd,
    Failure,
    SetUrl,
    Advance(u16),
}

struct TransferHarness {
    transfer: Transfer,
    object: Vec<u8>,
    gzip: bool,
    decompress: bool,
    now: Instant,
    in_body: bool,
    sent: bool,
    range_requested: u64,
    server_cursor: usize,
    server_end: usize,
    written: Vec<u8>,
    raw: Vec<u8>,
    /// Every byte served so far came from the true object at the announced offset,
    /// with the announced length.
    honest: bool,
    done: bool,
    failed: bool,
}

impl TransferHarness {
    fn sink_into(written: &mut Vec<u8>) -> impl FnMut(&[u8]) + '_ {
        move |b| written.extend_from_slice(b)
    }

    fn poll(&mut self) -> TransferStep {
        let step = self.transfer.poll_output(self.now);
        match &step {
            TransferStep::Send(req) => {
                assert!(!self.done && !self.failed);
                for name in ["authorization", "x-instauth", "cookie"] {
                    assert!(!req.headers().contains_key(name), "{name} sent to storage");
                }
                self.range_requested = req
                    .headers()
                    .get(http::header::RANGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("bytes="))
                    .and_then(|v| v.strip_suffix('-'))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                assert_eq!(self.range_requested, self.transfer.received());
                self.sent = true;
                self.in_body = false;
            }
            TransferStep::Wait(t) => assert!(*t > self.now, "Wait in the past"),
            TransferStep::Done(summary) => {
                assert!(!self.failed, "Done after Failed");
                if !self.done {
                    self.check_done(summary);
                }
                self.done = true;
            }
            TransferStep::Failed(e) => {
                assert!(!self.done, "Failed after Done");
                let text = format!("{e} {e:?}");
                assert!(!text.contains(SIG_MARK), "signature in error: {text}");
                self.failed = true;
            }
            TransferStep::NeedUrl | TransferStep::InFlight => {}
            _ => {}
        }
        step
    }

    fn check_done(&self, summary: &dap_proto::TransferSummary) {
        assert_eq!(
            summary.bytes,
            self.raw.len() as u64,
            "bytes passed on != bytes counted"
        );
        assert_safe_file_name(&summary.file_name);
        if self.gzip {
            let mut d = GzipDecoder::new();
            let mut plain = Vec::new();
            d.decode(&self.raw, &mut plain)
                .expect("Done, but the bytes are not valid gzip");
            let s = d.finish().expect("Done, but the gzip stream is incomplete");
            if self.decompress {
                assert_eq!(self.written, plain, "decompressed output differs");
                assert_eq!(summary.decompressed_bytes, Some(s.decompressed_bytes));
            } else {
                assert_eq!(self.written, self.raw);
            }
        } else {
            assert_eq!(self.written, self.raw);
        }
        if self.honest {
            assert_eq!(
                self.raw, self.object,
                "Done with data other than the object"
            );
        }
    }

    fn head(&mut self, status: TStatus, length: LenPick, range: RangePick) {
        let was_sent = self.sent;
        self.sent = false;
        let len = self.object.len();
        let (code, start) = match status {
            TStatus::Full => (200, 0usize),
            TStatus::Partial => (
                206,
                match range {
                    RangePick::Correct | RangePick::Absent | RangePick::Garbage => {
                        self.range_requested as usize
                    }
                    RangePick::ZeroStart => 0,
                    RangePick::StartAt(s) => usize::from(s),
                },
            ),
            TStatus::Forbidden => (403, 0),
            TStatus::NotFound => (404, 0),
            TStatus::RangeNotSatisfiable => (416, 0),
            TStatus::Server => (503, 0),
            TStatus::Any(c) => (100 + c % 900, 0),
        };
        let mut headers = HeaderMap::new();
        let remaining = len.saturating_sub(start);
        let length_value = match length {
            LenPick::Absent => None,
            LenPick::Correct => Some(remaining as u64),
            LenPick::Off(d) => Some((remaining as i64 + i64::from(d)).max(0) as u64),
            LenPick::Any(n) => Some(u64::from(n)),
        };
        if let Some(l) = length_value {
            headers.insert(http::header::CONTENT_LENGTH, HeaderValue::from(l));
        }
        if code == 206 {
            let value = match range {
                RangePick::Absent => None,
                RangePick::Garbage => Some("bytes */*".to_owned()),
                _ if start >= len => Some(format!("bytes */{len}")),
                _ => Some(format!("bytes {start}-{}/{len}", len - 1)),
            };
            if let Some(v) = value {
                headers.insert(
                    http::header::CONTENT_RANGE,
                    HeaderValue::from_str(&v).expect("ascii"),
                );
            }
        }
        let action = self.transfer.handle_head(
            StatusCode::from_u16(code).expect("100..=999"),
            &headers,
            self.now,
        );
        match action {
            HeadAction::ReadBody { truncate } => {
                assert!(was_sent, "a body accepted without a request");
                assert!(code == 200 || code == 206);
                if truncate {
                    self.written.clear();
                    self.raw.clear();
                }
                if code == 200 && !truncate {
                    assert!(self.raw.is_empty(), "full body appended to earlier bytes");
                }
                // An honest resume continues exactly where the file ends.
                let length_honest = match length {
                    LenPick::Correct => true,
                    LenPick::Off(0) => true,
                    LenPick::Any(n) => u64::from(n) == remaining as u64,
                    _ => false,
                };
                let consistent = start == self.raw.len() && length_honest;
                self.honest &= consistent;
                self.in_body = true;
                self.server_cursor = start.min(len);
                self.server_end = match length_value {
                    Some(l) => start.saturating_add(l as usize).min(len),
                    None => len,
                };
            }
            // A head nobody asked for is ignored, whatever state the body is in.
            HeadAction::Discard if was_sent => self.in_body = false,
            _ => {}
        }
    }

    fn body(&mut self, chunk: Vec<u8>, honest: bool) {
        if !self.in_body {
            let mut called = false;
            let r = self
                .transfer
                .handle_body(&chunk, self.now, |_| called = true);
            assert!(!called || chunk.is_empty(), "sink called outside a body");
            let _ = r;
            return;
        }
        self.honest &= honest;
        let decompress = self.decompress;
        let mut written = std::mem::take(&mut self.written);
        let r = self
            .transfer
            .handle_body(&chunk, self.now, Self::sink_into(&mut written));
        self.written = written;
        match r {
            ControlFlow::Continue(()) => {
                self.raw.extend_from_slice(&chunk);
                if !decompress {
                    assert_eq!(self.written.len(), self.raw.len());
                }
            }
            ControlFlow::Break(()) => {
                // Failed for good (poll reports why) or stalled (it resumes later).
                if self.transfer.is_finished() {
                    let _ = self.poll();
                }
                self.in_body = false;
                self.sent = false;
            }
        }
    }

    fn step(&mut self, step: TStep) {
        match step {
            TStep::Poll => {
                let _ = self.poll();
            }
            TStep::Head {
                status,
                length,
                range,
            } => self.head(status, length, range),
            TStep::Body(n) => {
                let end = self
                    .server_cursor
                    .saturating_add(usize::from(n))
                    .min(self.server_end);
                let chunk = self.object[self.server_cursor.min(end)..end].to_vec();
                self.server_cursor = end;
                self.body(chunk, true);
            }
            TStep::Garbage(bytes) => self.body(bytes, false),
            TStep::BodyEnd => {
                if self.in_body && self.server_cursor < self.object.len() {
                    // The body ended early: only a short Content-Length makes that
                    // look complete, and then the check is the length's job.
                    if !matches!(self.transfer.expected_size(), Some(e) if e as usize <= self.raw.len())
                    {
                        // Unannounced truncation cannot be told from a short object.
                        self.honest = false;
                    }
                }
                self.transfer.handle_body_end(self.now);
                self.in_body = false;
            }
            TStep::Failure => {
                self.transfer.handle_failure(fail(), self.now);
                self.in_body = false;
                self.sent = false;
            }
            TStep::SetUrl => {
                self.transfer.handle_url(PresignedUrl::new(format!(
                    "https://bucket.example/out/obj.json.gz?X-Amz-Signature={SIG_MARK}2"
                )));
            }
            TStep::Advance(ms) => self.now += Duration::from_millis(u64::from(ms) * 10),
        }
    }

    fn finish_with_failures(&mut self) {
        self.in_body = false;
        for _ in 0..1_000 {
            match self.poll() {
                TransferStep::Send(_) => {
                    self.transfer.handle_failure(fail(), self.now);
                    self.sent = false;
                }
                TransferStep::Wait(t) => self.now = t,
                TransferStep::NeedUrl => self.step(TStep::SetUrl),
                TransferStep::InFlight => self.transfer.handle_failure(fail(), self.now),
                TransferStep::Done(_) | TransferStep::Failed(_) => return,
                _ => {}
            }
        }
        panic!("the transfer did not end while every request failed");
    }
}

/// One object download driven by arbitrary heads, bodies, failures and time.
pub fn transfer(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(setup) = TransferSetup::arbitrary(&mut u) else {
        return;
    };
    let format = Format::ALL[usize::from(setup.format) % 4];
    let gzip = format.is_gzip();
    let object = if gzip {
        let members = usize::from(setup.members % 3) + 1;
        let per = setup.payload.len() / members + 1;
        let mut v = Vec::new();
        for part in setup.payload.chunks(per) {
            v.extend_from_slice(&gz_encode(part, 1));
        }
        if v.is_empty() {
            v = gz_encode(b"", 1);
        }
        v
    } else {
        setup.payload.clone()
    };
    let url = match setup.url % 4 {
        0 => format!("https://bucket.example/out/part-0.json.gz?X-Amz-Signature={SIG_MARK}"),
        1 => format!("https://bucket.example/a/..%2F..%2F.bashrc?X-Amz-Signature={SIG_MARK}"),
        2 => format!("https://bucket.example/?X-Amz-Signature={SIG_MARK}"),
        _ => format!("https://{API_HOST}/x/.%2e/p.gz?sig={SIG_MARK}"),
    };
    let mut retry = RetryPolicy::new(
        u32::from(setup.max_attempts % 6) + 1,
        Duration::from_millis(u64::from(setup.backoff_ms % 2000)),
        Duration::from_secs(5),
    );
    retry.jitter_seed = 7;
    let config = Config::builder("id", SECRET)
        .base_url(API_BASE)
        .retry(retry)
        .build()
        .expect("valid harness config");
    let object_url = ObjectUrl {
        id: ObjectId::new("job/part-0"),
        url: PresignedUrl::new(url),
    };
    let transfer = match Transfer::new(&config, object_url, format, setup.decompress) {
        Ok(t) => t,
        Err(e) => {
            assert!(!format!("{e} {e:?}").contains(SIG_MARK));
            return;
        }
    };
    assert_safe_file_name(transfer.file_name());
    let mut h = TransferHarness {
        transfer,
        object,
        gzip,
        decompress: setup.decompress && gzip,
        now: origin(),
        in_body: false,
        sent: false,
        range_requested: 0,
        server_cursor: 0,
        server_end: 0,
        written: Vec::new(),
        raw: Vec::new(),
        honest: true,
        done: false,
        failed: false,
    };
    let mut steps = 0;
    while !u.is_empty() && steps < 300 {
        let Ok(step) = TStep::arbitrary(&mut u) else {
            break;
        };
        h.step(step);
        steps += 1;
    }
    h.finish_with_failures();
}

/// Writes `s` as a printable description (used by the corpus tests' messages).
pub fn describe(data: &[u8]) -> String {
    let mut out = String::new();
    for b in data.iter().take(64) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Names of the targets, for the corpus replay.
pub const TARGETS: [&str; 6] = ["parsers", "wire", "session", "gzip", "records", "transfer"];

/// Runs the named target on `data`.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "parsers" => parsers(data),
        "wire" => wire(data),
        "session" => session(data),
        "gzip" => gzip(data),
        "records" => records(data),
        "transfer" => transfer(data),
        other => panic!("unknown target {other}"),
    }
}

/// A transport failure for harness steps that fail a request.
fn fail() -> dap_proto::TransportFailure {
    dap_proto::TransportFailure::new(dap_proto::FailureKind::Broken, "harness failure")
}
