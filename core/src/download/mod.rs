//! Downloading objects from pre-signed URLs.
//!
//! [`Download`] is the machine that owns a job's downloads (see its docs for the state
//! diagram and the run loop); [`Fetch`] is one storage request it lends to the caller.
//! The free functions here are its pieces: the request, the reading of the storage
//! server's answer, safe file names. Nothing here buffers an object.

mod fetch;
mod machine;
mod names;

pub use fetch::Fetch;
pub use machine::{Commit, Download, DownloadError, DownloadOutput, DownloadSpec};

use http::{HeaderMap, Method, Request, StatusCode, header};

use crate::config::Config;
use crate::error::ArgumentError;
use crate::model::JobId;
use crate::secret::PresignedUrl;

/// Builds the GET of a pre-signed URL. It carries the `User-Agent` and, when resuming, a
/// `Range`, and by construction none of the API's auth headers: the URL's signature is
/// the only credential, and storage refuses requests with two.
pub fn request(
    config: &Config,
    url: &PresignedUrl,
    resume_from: u64,
) -> Result<Request<Vec<u8>>, ArgumentError> {
    request_with_agent(config.user_agent(), url, resume_from)
}

/// [`request`] with only the `User-Agent` it needs.
pub(crate) fn request_with_agent(
    user_agent: &http::HeaderValue,
    url: &PresignedUrl,
    resume_from: u64,
) -> Result<Request<Vec<u8>>, ArgumentError> {
    let uri = url
        .secret()
        .parse::<http::Uri>()
        .ok()
        .filter(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some())
        .ok_or_else(|| ArgumentError::new(format!("{url} is not an absolute http(s) URL")))?;
    let mut builder = Request::builder()
        .method(Method::GET)
        .uri(uri)
        .header(header::USER_AGENT, user_agent.clone())
        .header(header::ACCEPT_ENCODING, "identity");
    if resume_from > 0 {
        builder = builder.header(header::RANGE, format!("bytes={resume_from}-"));
    }
    builder
        .body(Vec::new())
        .map_err(|_| ArgumentError::new(format!("cannot build a request for {url}")))
}

/// What the storage server's status line and headers mean for a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyStart {
    /// The whole object follows; any earlier partial bytes must be discarded.
    Full {
        /// `Content-Length`, when sent.
        length: Option<u64>,
    },
    /// The rest of the object follows from the requested offset.
    Resumed {
        /// The offset the body starts at (equals the requested one).
        start: u64,
        /// The object's total size, when the server says.
        total: Option<u64>,
    },
}

impl BodyStart {
    /// The total size of the object, when known.
    pub fn total(&self) -> Option<u64> {
        match *self {
            Self::Full { length } => length,
            Self::Resumed { total, .. } => total,
        }
    }
}

/// Why storage did not hand out an object body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// 403 (or 401/400 from an S3-like store): the URL expired or its signature does not
    /// verify; fetch a fresh URL and continue.
    #[error("storage refused the URL (HTTP {0}); it has probably expired")]
    UrlRefused(u16),
    /// 404: the object no longer exists (jobs expire 24 h after they start).
    #[error("the object no longer exists in storage (HTTP 404)")]
    NotFound,
    /// 416 or a `Content-Range` that does not start where asked: restart from zero.
    #[error("storage did not honour the requested range")]
    RangeMismatch,
    /// 5xx or 429: retry with backoff.
    #[error("storage failed (HTTP {0})")]
    Server(u16),
    /// Anything else.
    #[error("unexpected storage response (HTTP {0})")]
    Unexpected(u16),
    /// The body ended before `Content-Length` bytes, or had more.
    #[error("the body had {got} bytes, expected {expected}")]
    LengthMismatch {
        /// Bytes expected.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
}

impl StorageError {
    /// Whether the same URL may be tried again after a backoff.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Server(_) | Self::RangeMismatch | Self::LengthMismatch { .. }
        )
    }

    /// Whether a fresh URL should be fetched before trying again.
    pub fn needs_new_url(&self) -> bool {
        matches!(self, Self::UrlRefused(_))
    }
}

/// Interprets a storage response's status and headers for a request made with
/// `resume_from` (0 for a full download).
pub fn check_response(
    status: StatusCode,
    headers: &HeaderMap,
    resume_from: u64,
) -> Result<BodyStart, StorageError> {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match status.as_u16() {
        200 => Ok(BodyStart::Full { length }),
        206 => {
            let (start, end, total) = headers
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range)
                .ok_or(StorageError::RangeMismatch)?;
            if start != resume_from
                || length.is_some_and(|l| {
                    end.checked_sub(start).and_then(|d| d.checked_add(1)) != Some(l)
                })
            {
                return Err(StorageError::RangeMismatch);
            }
            Ok(BodyStart::Resumed { start, total })
        }
        400 | 401 | 403 => Err(StorageError::UrlRefused(status.as_u16())),
        404 | 410 => Err(StorageError::NotFound),
        416 => Err(StorageError::RangeMismatch),
        429 | 500..=599 => Err(StorageError::Server(status.as_u16())),
        other => Err(StorageError::Unexpected(other)),
    }
}

/// Parses `bytes START-END/TOTAL` (TOTAL may be `*`).
pub fn parse_content_range(value: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let start = start.trim().parse::<u64>().ok()?;
    let end = end.trim().parse::<u64>().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse::<u64>().ok()?),
    };
    (start <= end && total.is_none_or(|t| end < t)).then_some((start, end, total))
}

/// A file name that is safe to create inside a download directory, from the last
/// segment of the URL's path (as the official CLI names files). Percent-escapes are
/// decoded; separators, `..`, control and unusual characters cannot survive.
pub fn file_name(url: &PresignedUrl) -> Result<String, ArgumentError> {
    let decoded = percent_decode(url.last_path_segment());
    let last = decoded.rsplit(['/', '\\']).next().unwrap_or("");
    let mut name: String = last
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '=') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.len() > 200 {
        let cut = name.len() - 200;
        name.drain(..cut);
    }
    // After the cut: keeping the tail of a long name may expose a leading dot.
    while name.starts_with('.') {
        name.remove(0);
    }
    if name.is_empty() || name.chars().all(|c| c == '_') {
        return Err(ArgumentError::new(format!("{url} has no usable file name")));
    }
    Ok(name)
}

/// The directory a job's objects go to, relative to the output directory:
/// `job_<job id>` (as the official CLI lays it out), sanitised like a file name.
pub fn job_dir(job: &JobId) -> String {
    let safe: String = job
        .as_str()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("job_{safe}")
}

/// The temporary name a download is written under until verified, next to its final
/// name: hidden, and unique per download through `nonce` (so two runs on one directory
/// never write into the same file).
pub fn temp_name(final_name: &str, nonce: u64) -> String {
    format!(".{final_name}.{nonce:016x}.partial")
}

/// How long a pre-signed URL lasts from its issue: its `X-Amz-Expires` (seconds) when it
/// has one, else `default`.
pub fn url_lifetime(url: &PresignedUrl, default: std::time::Duration) -> std::time::Duration {
    let query = url.secret().split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("X-Amz-Expires"))
        .and_then(|(_, v)| v.parse::<u64>().ok())
        .map_or(default, std::time::Duration::from_secs)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_util::config;

    fn url(s: &str) -> PresignedUrl {
        PresignedUrl::new(s)
    }

    #[test]
    fn golden_request_has_no_auth() {
        let c = Config::builder("id", "s")
            .token_header(crate::TokenHeader::XInstAuth)
            .build()
            .unwrap();
        for config in [config(), c] {
            let r = request(
                &config,
                &url("https://bucket.s3.amazonaws.com/o/p.json.gz?X-Amz-Signature=abc"),
                0,
            )
            .unwrap();
            assert_eq!(r.method(), Method::GET);
            assert_eq!(
                r.uri(),
                "https://bucket.s3.amazonaws.com/o/p.json.gz?X-Amz-Signature=abc"
            );
            let names: Vec<_> = r.headers().keys().map(|k| k.as_str().to_owned()).collect();
            assert_eq!(names, ["user-agent", "accept-encoding"]);
        }
        let r = request(&config(), &url("https://b/o/p.gz?s=1"), 1234).unwrap();
        assert_eq!(r.headers()["range"], "bytes=1234-");
        assert!(request(&config(), &url("/relative"), 0).is_err());
        assert!(
            !format!("{:?}", request(&config(), &url("nope?sig=SECRET"), 0)).contains("SECRET")
        );
    }

    #[test]
    fn responses() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, "10".parse().unwrap());
        assert_eq!(
            check_response(StatusCode::OK, &h, 0),
            Ok(BodyStart::Full { length: Some(10) })
        );
        assert_eq!(
            check_response(StatusCode::OK, &h, 5),
            Ok(BodyStart::Full { length: Some(10) })
        );
        h.insert(header::CONTENT_RANGE, "bytes 5-14/15".parse().unwrap());
        assert_eq!(
            check_response(StatusCode::PARTIAL_CONTENT, &h, 5),
            Ok(BodyStart::Resumed {
                start: 5,
                total: Some(15)
            })
        );
        assert_eq!(
            check_response(StatusCode::PARTIAL_CONTENT, &h, 6),
            Err(StorageError::RangeMismatch)
        );
        assert_eq!(
            check_response(StatusCode::FORBIDDEN, &h, 0),
            Err(StorageError::UrlRefused(403))
        );
        assert!(
            check_response(StatusCode::FORBIDDEN, &h, 0)
                .unwrap_err()
                .needs_new_url()
        );
        assert!(
            check_response(StatusCode::SERVICE_UNAVAILABLE, &h, 0)
                .unwrap_err()
                .is_retryable()
        );
        assert_eq!(
            check_response(StatusCode::NOT_FOUND, &h, 0),
            Err(StorageError::NotFound)
        );
        assert_eq!(
            check_response(StatusCode::IM_A_TEAPOT, &h, 0),
            Err(StorageError::Unexpected(418))
        );
    }

    #[test]
    fn url_lifetimes() {
        let d = std::time::Duration::from_secs(900);
        assert_eq!(
            url_lifetime(&url("https://b/o?X-Amz-Date=1&X-Amz-Expires=60&s=2"), d),
            std::time::Duration::from_secs(60)
        );
        assert_eq!(url_lifetime(&url("https://b/o?X-Amz-Expires=x"), d), d);
        assert_eq!(url_lifetime(&url("https://b/o"), d), d);
    }

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 0-9/10"), Some((0, 9, Some(10))));
        assert_eq!(parse_content_range("bytes 0-9/*"), Some((0, 9, None)));
        for bad in [
            "bytes 9-0/10",
            "bytes 0-10/10",
            "0-9/10",
            "bytes a-b/c",
            "bytes 0-9",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    #[test]
    fn file_names_are_safe() {
        let cases = [
            (
                "https://b/out/q=1/part-00000-abc-c000.json.gz?X-Amz-Signature=s",
                "part-00000-abc-c000.json.gz",
            ),
            ("https://b/a/..%2F..%2Fetc%2Fpasswd", "passwd"),
            ("https://b/a/%2e%2e", ""),
            ("https://b/a/..", ""),
            ("https://b/a/.hidden", "hidden"),
            ("https://b/a/C:%5Cwin%5Cx.gz", "x.gz"),
            ("https://b/a/na%00me\u{1}.gz", "na_me_.gz"),
            ("https://b/", ""),
            ("https://b", ""),
        ];
        for (u, expected) in cases {
            match file_name(&url(u)) {
                Ok(name) => assert_eq!(name, expected, "{u}"),
                Err(_) => assert_eq!(expected, "", "{u}"),
            }
        }
        assert_eq!(job_dir(&JobId::new("abc-1/../x")), "job_abc-1____x");
        assert_eq!(temp_name("a.gz", 0xab), ".a.gz.00000000000000ab.partial");
    }
}
