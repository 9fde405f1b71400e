//! The endpoint layer: for each operation, a pure function that builds the
//! `http::Request` and one that parses the `http::Response`.
//!
//! These functions hold no state and read no clock; [`crate::Session`] composes them.
//! Use them directly when you want to drive the HTTP exchange yourself:
//!
//! ```
//! use dap_proto::{api, AccessToken, Config};
//! let config = Config::builder("us-east-1#id", "secret").build().unwrap();
//! let token = AccessToken::new("eyJ...");
//! let request = api::tables::request(&config, &token, "canvas").unwrap();
//! assert_eq!(request.uri(), "https://api-gateway.instructure.com/dap/query/canvas/table");
//!
//! let response = http::Response::builder()
//!     .status(200)
//!     .header("content-type", "application/json")
//!     .body(br#"{"tables": ["accounts", "courses"]}"#.to_vec())
//!     .unwrap();
//! assert_eq!(api::tables::parse(&config, &response).unwrap(), ["accounts", "courses"]);
//! ```

pub mod job;
pub mod login;
pub mod objects;
pub mod query;
pub mod schema;
pub mod tables;

use std::time::Duration;

use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use jiff::Timestamp;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::error::{
    ArgumentError, DapError, DapErrorKind, Error, Location, ProtocolError, ProtocolErrorKind,
    excerpt,
};
use crate::secret::AccessToken;

/// Whether a response body may carry secrets, so it must never be quoted in errors.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Body {
    Quotable,
    Sensitive,
}

/// Checks that a namespace, table or id is a plain path segment.
pub(crate) fn segment<'a>(what: &str, value: &'a str) -> Result<&'a str, ArgumentError> {
    let ok = !value.is_empty()
        && value.len() <= 256
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(value)
    } else {
        Err(ArgumentError::new(format!(
            "{what} {value:?} is not a valid name (letters, digits, '_', '-', '.')"
        )))
    }
}

/// An object id goes into JSON, not a path: refuse only what cannot be an id.
pub(crate) fn object_id(value: &str) -> Result<&str, ArgumentError> {
    if value.is_empty() || value.len() > 1024 || value.chars().any(char::is_control) {
        Err(ArgumentError::new(format!(
            "object id {value:?} is not valid"
        )))
    } else {
        Ok(value)
    }
}

/// Appends the configured `scope` parameter.
pub(crate) fn with_scope(config: &Config, path: String) -> String {
    match config.scope() {
        Some(scope) => format!("{path}?scope={scope}"),
        None => path,
    }
}

/// Builds an authenticated API request.
pub(crate) fn api_request(
    config: &Config,
    token: &AccessToken,
    method: Method,
    path: &str,
    json_body: Option<Vec<u8>>,
) -> Result<Request<Vec<u8>>, ArgumentError> {
    let value = token
        .header_value(matches!(config.token_header(), crate::TokenHeader::Bearer))
        .cloned()
        .ok_or_else(|| ArgumentError::new("the access token is not a valid header value"))?;
    let mut builder = Request::builder()
        .method(method)
        .uri(config.url(path))
        .header(header::USER_AGENT, config.user_agent().clone())
        .header(header::ACCEPT, "application/json")
        .header(config.token_header().name(), value);
    let body = match json_body {
        Some(body) => {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
            body
        }
        None => Vec::new(),
    };
    builder
        .body(body)
        .map_err(|e| ArgumentError::new(format!("cannot build request for {path}: {e}")))
}

/// Checks a response's size, redirects, status and content type, then decodes the JSON
/// body of a success status into `T`. Error statuses become [`DapError`]s when they carry
/// the DAP envelope, [`ProtocolError`]s otherwise.
pub(crate) fn decode<T: DeserializeOwned, B: AsRef<[u8]>>(
    config: &Config,
    what: &'static str,
    response: &Response<B>,
    success: &[StatusCode],
    body_kind: Body,
) -> Result<T, Error> {
    let status = response.status();
    let body = response.body().as_ref();
    let protocol = |kind| protocol_error(what, status, kind, body, body_kind);
    if body.len() > config.max_body_bytes() {
        return Err(Error::Protocol(ProtocolError {
            status,
            kind: ProtocolErrorKind::BodyTooLarge {
                limit: config.max_body_bytes(),
            },
            body_excerpt: String::new(),
            what,
        }));
    }
    if status.is_redirection() {
        let location = response
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| l.split(['?', '#']).next().unwrap_or("").to_owned());
        return Err(protocol(ProtocolErrorKind::Redirect { location }));
    }
    if !success.contains(&status) {
        return Err(error_response(what, response, body_kind));
    }
    if let Some(content_type) = non_json_content_type(response.headers()) {
        return Err(protocol(ProtocolErrorKind::NotJson {
            content_type: Some(content_type),
        }));
    }
    serde_json::from_slice(body).map_err(|e| protocol(json_error_kind(&e, body_kind)))
}

/// The content type when it is present and not JSON.
fn non_json_content_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?;
    let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let json = essence == "application/json" || essence.ends_with("+json");
    (!json).then_some(text)
}

fn json_error_kind(e: &serde_json::Error, body_kind: Body) -> ProtocolErrorKind {
    use serde_json::error::Category;
    let detail = match body_kind {
        Body::Quotable => e.to_string(),
        Body::Sensitive => format!("at line {} column {}", e.line(), e.column()),
    };
    match e.classify() {
        Category::Data => ProtocolErrorKind::InvalidShape { detail },
        Category::Io | Category::Syntax | Category::Eof => {
            ProtocolErrorKind::MalformedJson { detail }
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    error: ErrorBody,
}

/// The DAP error body. Fields are optional: gateways send fewer.
#[derive(Deserialize, Default)]
pub(crate) struct ErrorBody {
    #[serde(rename = "type")]
    type_name: Option<String>,
    uuid: Option<String>,
    message: Option<String>,
    location: Option<Location>,
    since: Option<String>,
    until: Option<String>,
    id: Option<serde_json::Value>,
    kind: Option<String>,
}

impl ErrorBody {
    /// Classifies the error by status, fields and, last, the `type` word.
    pub(crate) fn into_error(self, status: StatusCode, retry_after: Option<Duration>) -> DapError {
        let word = self.type_name.as_deref().unwrap_or("");
        let ts = |s: &Option<String>| s.as_deref().and_then(|s| s.parse::<Timestamp>().ok());
        let kind = match (status.as_u16(), word) {
            (_, "OutOfRange") => DapErrorKind::OutOfRange {
                since: ts(&self.since),
                until: ts(&self.until),
            },
            (_, "SnapshotRequired") => DapErrorKind::SnapshotRequired {
                since: ts(&self.since),
                until: ts(&self.until),
            },
            (_, "AccountNotOnboarded") => DapErrorKind::AccountNotOnboarded,
            (_, "AccountDisabled") => DapErrorKind::AccountDisabled,
            (_, "AccountUnderMaintenance") => DapErrorKind::AccountUnderMaintenance,
            (_, "RequestTypeForbidden") => DapErrorKind::RequestTypeForbidden,
            (_, "ProcessingError") => DapErrorKind::Processing,
            (400 | 422, _) if self.location.is_some() || word == "ValidationError" => {
                DapErrorKind::Validation {
                    location: self.location,
                }
            }
            (401, _) => DapErrorKind::Authentication,
            (403, _) => DapErrorKind::Forbidden,
            (404 | 410, _) => DapErrorKind::NotFound {
                id: self.id.map(|v| match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                }),
                kind: self.kind,
            },
            (429, _) => DapErrorKind::RateLimited,
            (500..=599, _) => DapErrorKind::Server,
            (400, _) => DapErrorKind::Validation { location: None },
            _ => DapErrorKind::Other,
        };
        DapError {
            status,
            kind,
            type_name: self.type_name,
            uuid: self.uuid,
            message: self
                .message
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("no message").to_owned()),
            retry_after,
        }
    }
}

/// Turns an error status into a [`DapError`] (when the body is the DAP envelope, or the
/// status alone is meaningful: 401, 429) or a [`ProtocolError`].
pub(crate) fn error_response<B: AsRef<[u8]>>(
    what: &'static str,
    response: &Response<B>,
    body_kind: Body,
) -> Error {
    let status = response.status();
    let body = response.body().as_ref();
    let retry_after = retry_after(response.headers(), None);
    let envelope = non_json_content_type(response.headers())
        .is_none()
        .then(|| serde_json::from_slice::<Envelope>(body).ok())
        .flatten();
    match envelope {
        Some(envelope) => envelope.error.into_error(status, retry_after).into(),
        None if matches!(status.as_u16(), 401 | 429) => {
            ErrorBody::default().into_error(status, retry_after).into()
        }
        None => {
            let kind = if status.is_client_error() || status.is_server_error() {
                match non_json_content_type(response.headers()) {
                    Some(ct) => ProtocolErrorKind::NotJson {
                        content_type: Some(ct),
                    },
                    None => ProtocolErrorKind::NoErrorEnvelope,
                }
            } else {
                ProtocolErrorKind::UnexpectedStatus
            };
            protocol_error(what, status, kind, body, body_kind)
        }
    }
}

/// A protocol error quoting the start of `body` unless it may carry secrets.
fn protocol_error(
    what: &'static str,
    status: StatusCode,
    kind: ProtocolErrorKind,
    body: &[u8],
    body_kind: Body,
) -> Error {
    Error::Protocol(ProtocolError {
        status,
        kind,
        body_excerpt: match body_kind {
            Body::Quotable => excerpt(body),
            Body::Sensitive => String::new(),
        },
        what,
    })
}

/// Parses `Retry-After` as delta-seconds or an HTTP-date. An HTTP-date is measured from
/// the response's `Date` header, else from `now` (wall time) when given. Uncapped: the
/// session applies the retry policy's ceiling.
pub fn retry_after(headers: &HeaderMap, now: Option<Timestamp>) -> Option<Duration> {
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    let reference = headers
        .get(header::DATE)
        .and_then(|d| d.to_str().ok())
        .and_then(parse_http_date)
        .or(now)?;
    let delta = at.duration_since(reference);
    Some(Duration::try_from(delta).unwrap_or(Duration::ZERO))
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub fn parse_http_date(value: &str) -> Option<Timestamp> {
    jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()
}

#[cfg(test)]
pub(crate) mod test_util {
    use http::Response;

    use crate::{AccessToken, Config};

    pub(crate) fn config() -> Config {
        Config::builder("us-east-1#client", "TOPSECRET")
            .build()
            .expect("valid test config")
    }

    pub(crate) fn token() -> AccessToken {
        AccessToken::new("TOKEN-abc")
    }

    pub(crate) fn json(status: u16, body: &str) -> Response<Vec<u8>> {
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
            .expect("valid test response")
    }

    /// Loads a recorded vector from `core/tests/vectors` as a response.
    pub(crate) fn vector(name: &str) -> Response<Vec<u8>> {
        let path = format!("{}/tests/vectors/{name}.json", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("vector {name}: {e}"));
        let v: serde_json::Value = serde_json::from_str(&text).expect("vector is JSON");
        let mut b = Response::builder().status(v["status"].as_u64().expect("status") as u16);
        for (k, val) in v["headers"].as_object().expect("headers") {
            b = b.header(k.as_str(), val.as_str().expect("header value"));
        }
        b.body(v["body"].as_str().expect("body").as_bytes().to_vec())
            .expect("valid vector")
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;
    use http::HeaderValue;

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, None), Some(Duration::from_secs(7)));
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Sun, 29 Nov 2026 02:00:30 GMT"),
        );
        h.insert(
            header::DATE,
            HeaderValue::from_static("Sun, 29 Nov 2026 02:00:00 GMT"),
        );
        assert_eq!(retry_after(&h, None), Some(Duration::from_secs(30)));
        h.remove(header::DATE);
        assert_eq!(retry_after(&h, None), None);
        let now: Timestamp = "2026-11-29T02:00:10Z".parse().unwrap();
        assert_eq!(retry_after(&h, Some(now)), Some(Duration::from_secs(20)));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, Some(now)), None);
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Sun, 29 Nov 2026 01:00:00 GMT"),
        );
        assert_eq!(retry_after(&h, Some(now)), Some(Duration::ZERO));
    }

    #[test]
    fn segments() {
        assert!(segment("table", "accounts").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "a?b", "é", "a%2f"] {
            assert!(segment("table", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn error_envelope_without_json_content_type_is_protocol_error() {
        let r = vector("gateway-html-502");
        let Error::Protocol(p) = error_response("list tables", &r, Body::Quotable) else {
            panic!("expected protocol error");
        };
        assert_eq!(p.status, 502);
        assert!(matches!(p.kind, ProtocolErrorKind::NotJson { .. }));
        assert!(p.body_excerpt.contains("502 Bad Gateway"));
    }

    #[test]
    fn body_excerpt_truncated() {
        let body = "x".repeat(5000);
        let r = Response::builder()
            .status(500)
            .body(body.into_bytes())
            .unwrap();
        let Error::Protocol(p) = error_response("list tables", &r, Body::Quotable) else {
            panic!()
        };
        assert!(p.body_excerpt.len() < 600);
        assert!(matches!(p.kind, ProtocolErrorKind::NoErrorEnvelope));
        let _ = config();
    }
}
