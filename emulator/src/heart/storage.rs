//! Object downloads on the storage listener: pre-signed URL checks, `Range`, `HEAD`,
//! `ETag`, and the storage faults (status, drop, trickle, truncated or corrupt gzip).

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use sha2::{Digest, Sha256};

use super::reply::{Pacing, Payload, Reply, Resp, s3_error, set_header};
use super::{Heart, jobs::find_job};
use crate::config::Endpoint;
use crate::faults::FaultAction;
use crate::objects::Layout;
use crate::signing::{STORAGE_PREFIX, SignatureError, hex, verify};

fn no_such_key() -> Resp {
    s3_error(
        StatusCode::NOT_FOUND,
        "NoSuchKey",
        "The specified key does not exist.",
    )
}

/// Counts the request, whether it asks for a range, and the credentials it (wrongly)
/// carries.
fn count(heart: &Heart, req: &Request<Option<Bytes>>) -> bool {
    let has_auth = req.headers().contains_key(header::AUTHORIZATION);
    let has_instauth = req.headers().contains_key("x-instauth");
    let mut st = heart.lock();
    st.stats.storage_requests += 1;
    st.stats.storage_range_requests += u64::from(req.headers().contains_key(header::RANGE));
    st.stats.storage_with_authorization += u64::from(has_auth);
    st.stats.storage_with_instauth += u64::from(has_instauth);
    st.stats.storage_with_credentials += u64::from(has_auth || has_instauth);
    has_auth
}

/// Entry point of the storage listener.
pub(super) fn handle(heart: &Heart, req: &Request<Option<Bytes>>, now: i64) -> Reply {
    let has_auth = count(heart, req);
    let fault = heart.lock().begin_request(Some(Endpoint::Storage));
    let response = match &fault.action {
        Some(FaultAction::Status {
            status,
            body,
            retry_after,
        }) => heart.fault_response(*status, *body, *retry_after, true),
        action => object(heart, req, now, has_auth, action.as_ref()),
    };
    Reply {
        response,
        delay: Duration::from_millis(fault.delay_ms),
        pacing: Pacing::of(fault.action.as_ref()),
    }
}

fn signature_refusal(e: SignatureError) -> Resp {
    match e {
        SignatureError::Expired => {
            s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Request has expired")
        }
        SignatureError::Missing => s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Access Denied"),
        SignatureError::Mismatch => s3_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        ),
    }
}

/// A download request, checked in S3's order: auth mechanism, method, signature, key.
fn object(
    heart: &Heart,
    req: &Request<Option<Bytes>>,
    now: i64,
    has_auth: bool,
    fault: Option<&FaultAction>,
) -> Resp {
    if has_auth {
        return s3_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
        );
    }
    let head = req.method() == Method::HEAD;
    if req.method() != Method::GET && !head {
        return s3_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "The specified method is not allowed against this resource.",
        );
    }
    let path = req.uri().path();
    let Some((job_id, file)) = path
        .strip_prefix(STORAGE_PREFIX)
        .and_then(|rest| rest.split_once('/'))
    else {
        return no_such_key();
    };
    if let Err(e) = verify(&heart.url_key, path, req.uri().query().unwrap_or(""), now) {
        return signature_refusal(e);
    }
    let Some(job) = find_job(heart, job_id, now) else {
        return no_such_key();
    };
    let Some(index) = job.object_index(file) else {
        return no_such_key();
    };
    let layout = match heart.config.object_size_bytes {
        Some(size) => heart.members.bulk_object(&job, size),
        None => heart.objects.object(&heart.params, &job, index),
    };
    let (layout, variant) = match fault {
        Some(FaultAction::TruncateGzip) => (layout.truncate(), "truncated"),
        Some(FaultAction::CorruptGzip) => (layout.corrupt(), "corrupt"),
        _ => (layout, ""),
    };
    let etag = etag(&format!("{job_id}/{file}"), &layout, variant);
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    serve(layout, &etag, range, head)
}

/// The response for `range` of an object.
fn serve(layout: Layout, etag: &str, range: Option<&str>, head: bool) -> Resp {
    let total = layout.len;
    let (status, start, end) = match parse_range(range, total) {
        Ok(None) => (StatusCode::OK, 0, total),
        Ok(Some((s, e))) => (StatusCode::PARTIAL_CONTENT, s, e),
        Err(()) => {
            let mut r = s3_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "The requested range is not satisfiable",
            );
            set_header(&mut r, header::CONTENT_RANGE, &format!("bytes */{total}"));
            return r;
        }
    };
    let body = if head {
        Payload::empty()
    } else {
        Payload::object(layout, start, end)
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    r.headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    set_header(&mut r, header::CONTENT_LENGTH, &(end - start).to_string());
    set_header(&mut r, header::ETAG, etag);
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{total}", end - 1);
        set_header(&mut r, header::CONTENT_RANGE, &value);
    }
    r
}

/// A strong ETag for an object layout.
fn etag(object_id: &str, layout: &Layout, variant: &str) -> String {
    let mut h = Sha256::new();
    h.update(object_id.as_bytes());
    h.update(layout.len.to_le_bytes());
    h.update(variant.as_bytes());
    format!("\"{}\"", hex(&h.finalize()[..16]))
}

/// Parses a single-range `Range` header against an object of `len` bytes:
/// `Ok(None)` means serve the whole object, `Err(())` means unsatisfiable.
fn parse_range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 {
            return Err(());
        }
        (len.saturating_sub(n), len)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end = if b.is_empty() {
            len
        } else {
            let e: u64 = b.parse().map_err(|_| ())?;
            if e < start {
                return Err(());
            }
            e.saturating_add(1).min(len)
        };
        (start, end)
    };
    if range.0 >= len {
        return Err(());
    }
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=3-"), 10), Ok(Some((3, 10))));
        assert_eq!(parse_range(Some("bytes=3-4"), 10), Ok(Some((3, 5))));
        assert_eq!(parse_range(Some("bytes=-4"), 10), Ok(Some((6, 10))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=x-"), 10), Err(()));
        assert_eq!(parse_range(Some("items=1-"), 10), Ok(None));
    }
}
