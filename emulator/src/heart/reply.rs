//! What the heart answers: a response whose body is bytes or an object slice, plus how
//! the pump must deliver it; and the builders of the usual responses.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use super::Heart;
use crate::faults::{FaultAction, FaultBody};
use crate::objects::Layout;

/// A response body: empty, a buffer, or a byte range of a stored object.
#[derive(Debug, Clone)]
pub struct Payload(Inner);

#[derive(Debug, Clone)]
enum Inner {
    Bytes(Bytes),
    Object {
        layout: Layout,
        start: u64,
        end: u64,
    },
}

impl Payload {
    /// No body.
    pub fn empty() -> Self {
        Self(Inner::Bytes(Bytes::new()))
    }

    pub(crate) fn bytes(b: impl Into<Bytes>) -> Self {
        Self(Inner::Bytes(b.into()))
    }

    pub(crate) fn object(layout: Layout, start: u64, end: u64) -> Self {
        Self(Inner::Object { layout, start, end })
    }

    /// Length in bytes.
    pub fn len(&self) -> u64 {
        match &self.0 {
            Inner::Bytes(b) => b.len() as u64,
            Inner::Object { start, end, .. } => end.saturating_sub(*start),
        }
    }

    /// Whether there is no body.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next piece of the body from `offset` (relative to the body's start), up to
    /// `limit` bytes; `None` at the end.
    pub fn chunk_at(&self, offset: u64, limit: u64) -> Option<Bytes> {
        let len = self.len();
        if offset >= len || limit == 0 {
            return None;
        }
        let until = offset.saturating_add(limit).min(len);
        match &self.0 {
            Inner::Bytes(b) => Some(b.slice(offset as usize..until as usize)),
            Inner::Object { layout, start, .. } => layout.chunk_at(start + offset, start + until),
        }
    }

    /// The whole body in one buffer.
    pub fn to_bytes(&self) -> Bytes {
        if let Inner::Bytes(b) = &self.0 {
            return b.clone();
        }
        let mut out = BytesMut::with_capacity(usize::try_from(self.len()).unwrap_or(0));
        let mut pos = 0;
        while let Some(c) = self.chunk_at(pos, u64::MAX) {
            pos += c.len() as u64;
            out.extend_from_slice(&c);
        }
        out.freeze()
    }
}

/// How the pump delivers a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Pacing {
    /// As fast as the connection takes it.
    #[default]
    Full,
    /// Send `bytes` bytes of the body, then break the connection.
    DropAfter {
        /// Bytes sent before the connection breaks.
        bytes: u64,
    },
    /// Send `after_bytes` bytes at once, then `bytes` bytes every `interval`.
    Trickle {
        /// Bytes per interval (at least 1).
        bytes: u64,
        /// Real time between two pieces.
        interval: Duration,
        /// Bytes sent at full speed first.
        after_bytes: u64,
    },
}

impl Pacing {
    /// The pacing a fault action asks for.
    pub(crate) fn of(action: Option<&FaultAction>) -> Self {
        match action {
            Some(FaultAction::DropAfter { bytes }) => Self::DropAfter { bytes: *bytes },
            Some(FaultAction::Trickle {
                bytes,
                interval_millis,
                after_bytes,
            }) => Self::Trickle {
                bytes: (*bytes).max(1),
                interval: Duration::from_millis(*interval_millis),
                after_bytes: *after_bytes,
            },
            _ => Self::Full,
        }
    }
}

/// The heart's answer to one request.
#[derive(Debug)]
pub struct Reply {
    /// Status, headers and body.
    pub response: Response<Payload>,
    /// Real time to wait before sending the response (a `delay` fault).
    pub delay: Duration,
    /// How to deliver the body.
    pub pacing: Pacing,
}

impl Reply {
    pub(crate) fn new(response: Response<Payload>) -> Self {
        Self {
            response,
            delay: Duration::ZERO,
            pacing: Pacing::Full,
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// The value of a header, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.response.headers().get(name)?.to_str().ok()
    }

    /// The whole body.
    pub fn body(&self) -> Bytes {
        self.response.body().to_bytes()
    }

    /// The body parsed as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body()).unwrap_or(serde_json::Value::Null)
    }
}

pub(crate) type Resp = Response<Payload>;

pub(crate) fn with_type(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Resp {
    let mut r = Response::new(Payload::bytes(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

pub(crate) fn json_response(status: StatusCode, body: String) -> Resp {
    with_type(status, "application/json", body)
}

pub(crate) fn to_json<T: Serialize>(status: StatusCode, v: &T) -> Resp {
    json_response(status, serde_json::to_string(v).unwrap_or_default())
}

/// Sets a header from a string, skipping values that are not valid header text.
pub(crate) fn set_header(r: &mut Resp, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

/// Extra fields of an error envelope.
#[derive(Default, Serialize)]
pub(crate) struct ErrorExtra {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) location: Option<Location>,
}

/// Where in a request body a validation error is.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) character: usize,
}

/// The start of a body.
pub(crate) const START: Location = Location {
    line: 1,
    column: 1,
    character: 1,
};

#[derive(Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    uuid: String,
    message: String,
    #[serde(flatten)]
    extra: ErrorExtra,
}

#[derive(Serialize)]
struct Envelope<'a> {
    error: ErrorBody<'a>,
}

impl Heart {
    /// A DAP error envelope with extra fields.
    pub(crate) fn error_with(
        &self,
        status: StatusCode,
        kind: &str,
        message: impl Into<String>,
        extra: ErrorExtra,
    ) -> Resp {
        to_json(
            status,
            &Envelope {
                error: ErrorBody {
                    kind,
                    uuid: self.ids.uuid(),
                    message: message.into(),
                    extra,
                },
            },
        )
    }

    /// A DAP error envelope.
    pub(crate) fn error(&self, status: StatusCode, kind: &str, message: impl Into<String>) -> Resp {
        self.error_with(status, kind, message, ErrorExtra::default())
    }

    /// A 400 `ValidationError` at `location`.
    pub(crate) fn validation(&self, message: impl Into<String>, location: Location) -> Resp {
        self.error_with(
            StatusCode::BAD_REQUEST,
            "ValidationError",
            message,
            ErrorExtra {
                location: Some(location),
                ..ErrorExtra::default()
            },
        )
    }

    /// A 404 `ObjectNotFound` for a namespace, table, job or object.
    pub(crate) fn not_found(&self, kind: &'static str, id: &str) -> Resp {
        self.error_with(
            StatusCode::NOT_FOUND,
            "ObjectNotFound",
            format!("{kind} not found: {id}"),
            ErrorExtra {
                id: Some(id.to_owned()),
                kind: Some(kind),
                ..ErrorExtra::default()
            },
        )
    }

    /// The response of a `status` fault.
    pub(crate) fn fault_response(
        &self,
        status: u16,
        body: FaultBody,
        retry_after: Option<u64>,
        storage: bool,
    ) -> Resp {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = status.as_u16();
        let mut r = match body {
            FaultBody::Json if storage => {
                s3_error(status, "SlowDown", &format!("injected HTTP {code}"))
            }
            FaultBody::Json => {
                let kind = match code {
                    429 => "TooManyRequests",
                    401 => "AuthenticationError",
                    s if s >= 500 => "ServerError",
                    _ => "Error",
                };
                self.error(status, kind, format!("injected HTTP {code}"))
            }
            FaultBody::Html => {
                let reason = status.canonical_reason().unwrap_or("Error");
                with_type(
                    status,
                    "text/html",
                    format!(
                        "<html><head><title>{code} {reason}</title></head><body><h1>{code} {reason}</h1></body></html>"
                    ),
                )
            }
            FaultBody::MalformedJson => json_response(
                status,
                "{\"error\": {\"type\": \"ServerError\", \"uuid\": \"trunc".to_owned(),
            ),
        };
        if let Some(s) = retry_after {
            set_header(&mut r, header::RETRY_AFTER, &s.to_string());
        }
        r
    }
}

/// An S3-style XML error.
pub(crate) fn s3_error(status: StatusCode, code: &str, message: &str) -> Resp {
    with_type(
        status,
        "application/xml",
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message><RequestId>EMULATOR</RequestId></Error>"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_slices_and_collects() {
        let layout = Layout::new(vec![
            (Bytes::from_static(b"head"), 1),
            (Bytes::from_static(b"xy"), 3),
        ]);
        let p = Payload::object(layout, 2, 9);
        assert_eq!(p.len(), 7);
        assert_eq!(&p.to_bytes()[..], b"adxyxyx");
        assert_eq!(p.chunk_at(0, 1).as_deref(), Some(&b"a"[..]));
        assert_eq!(p.chunk_at(7, 10), None);
        let b = Payload::bytes("hello");
        assert_eq!(b.chunk_at(1, 3).as_deref(), Some(&b"ell"[..]));
        assert!(Payload::empty().is_empty());
    }
}
