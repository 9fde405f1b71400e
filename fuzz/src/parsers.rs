//! The `parsers` target: every response parser of the endpoint layer and of
//! `download`, on an arbitrary status, headers and body.

use arbitrary::Unstructured;
use dap_proto::testing::wall_origin;
use dap_proto::{Config, Error, ObjectId, PresignedUrl, TokenHeader, api, download};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use jiff::Timestamp;

use crate::input::{byte, contains, rest, take, u16le};
use crate::oracles::{assert_no_secret, assert_safe_file_name};
use crate::{API_BASE, BODY_MARK, SECRET, SIG_MARK};

/// The decoded input of the `parsers` target.
#[derive(Debug)]
pub struct ParserInput<'a> {
    /// Where the body marker goes, and which object ids were requested.
    pub selector: u8,
    /// The status, 100 plus this modulo 900.
    pub status: u16,
    /// Bits 0-1: content type (none, JSON, HTML); bit 2: plant the body marker; bit 3:
    /// `x-instauth`; bit 4: a 1 KiB body limit.
    pub flags: u8,
    /// Raw header names and values (the invalid ones are skipped).
    pub headers: Vec<(&'a [u8], &'a [u8])>,
    /// The offset a download resumes from.
    pub resume: u8,
    /// Which wall clock `Retry-After` is judged by.
    pub wall: u8,
    /// The body.
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

/// One response built from a [`ParserInput`], with what the checks need to know about it.
struct Case {
    config: Config,
    response: Response<Vec<u8>>,
    /// The input carries the client secret itself, so it may be quoted back.
    has_secret: bool,
    /// The body, and only the body, carries [`BODY_MARK`].
    marked: bool,
    resume: u8,
    wall: u8,
    selector: u8,
}

impl Case {
    fn new(data: &[u8]) -> Self {
        let input = ParserInput::decode(data);
        let status = StatusCode::from_u16(100 + input.status % 900).expect("100..=999");
        let mut body = input.body.to_vec();
        if input.flags & 0x04 != 0 {
            // Plant the marker somewhere in the body.
            let at = usize::from(input.selector).min(body.len());
            body.splice(at..at, BODY_MARK.bytes());
        }
        let mut headers = HeaderMap::new();
        let content_type = match input.flags & 0x03 {
            1 => Some("application/json"),
            2 => Some("text/html; charset=utf-8"),
            _ => None,
        };
        if let Some(ct) = content_type {
            headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ct));
        }
        let mut header_has_mark = false;
        for (name, value) in &input.headers {
            let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            else {
                continue;
            };
            header_has_mark |= contains(value.as_bytes(), BODY_MARK.as_bytes());
            headers.append(name, value);
        }
        let marked = contains(&body, BODY_MARK.as_bytes()) && !header_has_mark;
        let mut builder = Response::builder().status(status);
        if let Some(h) = builder.headers_mut() {
            *h = headers;
        }
        Self {
            config: parser_config(input.flags),
            response: builder.body(body).expect("valid response"),
            has_secret: contains(data, SECRET.as_bytes()),
            marked,
            resume: input.resume,
            wall: input.wall,
            selector: input.selector,
        }
    }

    /// A protocol error of a login or object-URL answer never quotes the body.
    fn check_unquoted(&self, what: &str, e: &Error) {
        let text = format!("{e} {e:?}");
        assert_no_secret(what, &text, self.has_secret);
        if let Error::Protocol(p) = e {
            assert!(p.body_excerpt.is_empty(), "{what} body quoted");
            if self.marked {
                assert!(!text.contains(BODY_MARK), "{what} body leaked: {text}");
            }
        }
    }
}

/// Every response parser of the endpoint layer and of `download`, on an arbitrary
/// status, headers and body.
///
/// # Panics
/// When a parser breaks an invariant.
pub fn run(data: &[u8]) {
    let case = Case::new(data);
    check_login(&case);
    check_object_urls(&case);
    check_endpoints(&case);
    check_storage_head(&case);
    check_header_texts(&case);
}

/// Login: protocol errors never quote the body; tokens never print.
fn check_login(case: &Case) {
    match api::login::parse(&case.config, &case.response) {
        Ok(login) => {
            assert_eq!(
                format!("{:?}", login.access_token),
                "AccessToken([redacted])"
            );
            let lifetime = login.lifetime(Some(wall_origin()));
            assert!(lifetime <= api::login::MAX_LIFETIME.max(api::login::DEFAULT_LIFETIME));
            if let Some(e) = login.expires_in {
                assert!(e <= api::login::MAX_LIFETIME);
            }
        }
        Err(e) => case.check_unquoted("login", &e),
    }
}

/// Object URLs: one per requested id, redacted when printed, safe file names, and no
/// credentials on the storage request.
fn check_object_urls(case: &Case) {
    let requested: &[&str] = match case.selector % 5 {
        0 => &["a"],
        1 => &["a", "b"],
        2 => &["a", "a"],
        3 => &[],
        _ => &[
            "28313161-4ff8-4e58-a52f-5f4c5265257d/part-00000-f14dd88f-5a7c-4d66-8c8c-e78ef0497813-c000.json.gz",
        ],
    };
    let requested: Vec<ObjectId> = requested.iter().map(|s| ObjectId::new(*s)).collect();
    let urls = match api::objects::parse(&case.config, &requested, &case.response) {
        Ok(urls) => urls,
        Err(e) => return case.check_unquoted("object URL", &e),
    };
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
        if let Ok(req) = download::request(&case.config, &url.url, u64::from(case.resume)) {
            assert!(req.headers().get(http::header::AUTHORIZATION).is_none());
            assert!(req.headers().get("x-instauth").is_none());
        }
    }
}

/// The other endpoints: bounded excerpts, no secret, `Retry-After` as the header says.
fn check_endpoints(case: &Case) {
    let (config, response) = (&case.config, &case.response);
    let errors = [
        api::tables::parse(config, response).err(),
        api::schema::parse(config, response).err(),
        api::query::parse(config, response).err(),
        api::job::parse(config, response).err(),
    ];
    for e in errors.into_iter().flatten() {
        let text = format!("{e} {e:?}");
        assert_no_secret("endpoint", &text, case.has_secret);
        if let Error::Protocol(p) = &e {
            assert!(p.body_excerpt.len() <= 4 * dap_proto::error::BODY_EXCERPT_BYTES);
        }
        if let Some(d) = e.api_error() {
            // Uncapped here (the session caps it), and exactly what the header says.
            assert_eq!(d.retry_after, api::retry_after(response.headers(), None));
        }
    }
    if let Ok(job) = api::job::parse(config, response) {
        assert!(!job.id.as_str().is_empty());
    }
}

/// Retry-After against every wall clock, and the storage head of a resumed download.
fn check_storage_head(case: &Case) {
    let headers = case.response.headers();
    let now = match case.wall % 4 {
        0 => None,
        1 => Some(wall_origin()),
        2 => Some(Timestamp::MIN),
        _ => Some(Timestamp::MAX),
    };
    let _ = api::retry_after(headers, now);
    let resume = match case.resume {
        r @ 0..=199 => u64::from(r),
        r => u64::MAX - u64::from(255 - r),
    };
    let status = case.response.status();
    match download::check_response(status, headers, resume) {
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
}

/// The body and every header value as content ranges, HTTP dates, JWTs and URLs.
fn check_header_texts(case: &Case) {
    let body_text = String::from_utf8_lossy(case.response.body());
    let mut texts: Vec<String> = vec![body_text.into_owned()];
    texts.extend(
        case.response
            .headers()
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
