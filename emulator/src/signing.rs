//! Pre-signed storage URLs: S3-style query parameters with an HMAC signature.
//!
//! A URL is `{storage}/output/rootAccountId=emulator/queryId=<job id>/<file>?...` with
//! `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date` (signing time,
//! `YYYYMMDDTHHMMSSZ`, UTC), `X-Amz-Expires` (lifetime in seconds),
//! `X-Amz-SignedHeaders` and `X-Amz-Signature` =
//! `hex(HMAC-SHA256(key, "GET\n<path>\n<X-Amz-Date>\n<X-Amz-Expires>"))`. A client reads
//! the expiry as `X-Amz-Date + X-Amz-Expires`, as with S3.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Path prefix of objects on the storage listener.
pub(crate) const STORAGE_PREFIX: &str = "/output/rootAccountId=emulator/queryId=";

/// Lowercase hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn sign(key: &[u8], path: &str, amz_date: &str, expires: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(format!("GET\n{path}\n{amz_date}\n{expires}").as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// The pre-signed URL of object `file` of job `job_id`, signed at `now_ms` and valid
/// for `lifetime_secs` (at least 1).
pub(crate) fn presign(
    key: &[u8],
    storage_base: &str,
    job_id: &str,
    file: &str,
    now_ms: i64,
    lifetime_secs: u64,
) -> String {
    let path = format!("{STORAGE_PREFIX}{job_id}/{file}");
    let ts = jiff::Timestamp::from_second(now_ms.div_euclid(1000)).unwrap_or_default();
    let amz_date = ts.strftime("%Y%m%dT%H%M%SZ").to_string();
    let day = ts.strftime("%Y%m%d").to_string();
    let expires = lifetime_secs.max(1).to_string();
    let sig = sign(key, &path, &amz_date, &expires);
    format!(
        "{storage_base}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=EMULATORACCESSKEY%2F{day}%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date={amz_date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host&X-Amz-Signature={sig}"
    )
}

/// Why a pre-signed request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignatureError {
    /// A signature parameter is absent.
    Missing,
    /// The signature does not match the path and parameters.
    Mismatch,
    /// The URL is past `X-Amz-Date + X-Amz-Expires`.
    Expired,
}

/// Checks the query string of a storage request against its path at `now_ms`.
pub(crate) fn verify(
    key: &[u8],
    path: &str,
    query: &str,
    now_ms: i64,
) -> Result<(), SignatureError> {
    let mut date = None;
    let mut expires = None;
    let mut sig = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "X-Amz-Date" => date = Some(v),
            "X-Amz-Expires" => expires = Some(v),
            "X-Amz-Signature" => sig = Some(v),
            _ => {}
        }
    }
    let (Some(date), Some(expires), Some(sig)) = (date, expires, sig) else {
        return Err(SignatureError::Missing);
    };
    let expected = sign(key, path, date, expires);
    let same = expected.len() == sig.len()
        && expected
            .bytes()
            .zip(sig.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(SignatureError::Mismatch);
    }
    let lifetime: i64 = expires.parse().map_err(|_| SignatureError::Mismatch)?;
    match parse_amz_date(date) {
        Some(t) if now_ms <= t.saturating_add(lifetime.saturating_mul(1000)) => Ok(()),
        Some(_) => Err(SignatureError::Expired),
        None => Err(SignatureError::Mismatch),
    }
}

/// Parses `YYYYMMDDTHHMMSSZ` into milliseconds since the epoch.
fn parse_amz_date(d: &str) -> Option<i64> {
    if d.len() != 16 || !d.is_ascii() {
        return None;
    }
    let rfc = format!(
        "{}-{}-{}T{}:{}:{}Z",
        &d[0..4],
        &d[4..6],
        &d[6..8],
        &d[9..11],
        &d[11..13],
        &d[13..15]
    );
    rfc.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (&str, &str) {
        let rest = url.strip_prefix("http://s").unwrap();
        rest.split_once('?').unwrap()
    }

    #[test]
    fn signed_urls_verify_until_they_expire() {
        let now = 1_704_067_200_000;
        let url = presign(b"k", "http://s", "job", "part-00000-x-c000.csv.gz", now, 2);
        assert!(
            url.contains("X-Amz-Date=20240101T000000Z&X-Amz-Expires=2&"),
            "{url}"
        );
        let (path, query) = split(&url);
        assert_eq!(verify(b"k", path, query, now + 2000), Ok(()));
        assert_eq!(
            verify(b"k", path, query, now + 2001),
            Err(SignatureError::Expired)
        );
        assert_eq!(
            verify(b"other", path, query, now),
            Err(SignatureError::Mismatch)
        );
        let longer = query.replace("X-Amz-Expires=2", "X-Amz-Expires=20");
        assert_eq!(
            verify(b"k", path, &longer, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(b"k", path, "", now), Err(SignatureError::Missing));
        assert_eq!(
            verify(b"k", "/elsewhere", query, now),
            Err(SignatureError::Mismatch)
        );
    }
}
