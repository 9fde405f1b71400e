//! The `wire` target: the raw HTTP/1.1 module. A response stream split anywhere parses
//! the same as in one piece; responses and requests written by us round-trip.

use arbitrary::Unstructured;
use dap_proto::wire::{self, Progress, ResponseParser, WireError};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};

use crate::API_HOST;
use crate::input::{byte, pieces_at, rest, take, u16le};
use crate::oracles::{WireOutcome, same_wire_outcome};

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
    let pieces = pieces_at(stream, &splits);
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
///
/// # Panics
/// When they do not.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let flags = byte(&mut u);
    match flags >> 5 {
        0..=4 => wire_stream(&mut u, flags),
        5 | 6 => wire_response_round_trip(&mut u),
        _ => wire_request_round_trip(&mut u),
    }
}
