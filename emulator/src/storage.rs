//! Object storage: pre-signed URLs, object layouts and the streaming body.
//!
//! Objects are served from the storage listener at
//! `/output/rootAccountId=emulator/queryId=<job id>/<file>` with S3-style query
//! parameters. The signature is `hex(HMAC-SHA256(key, "GET\n<path>\n<X-Amz-Date>\n<X-Amz-Expires>"))`.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body::{Frame, SizeHint};
use sha2::{Digest, Sha256};

use crate::data::{TableDef, records_of};
use crate::encode::{Encoder, Format, Mode, gzip};
use crate::state::{Job, Shared};

/// Path prefix of objects on the storage listener.
pub(crate) const STORAGE_PREFIX: &str = "/output/rootAccountId=emulator/queryId=";

/// Largest uncompressed size of the cached member of bulk objects (a quarter of the
/// object size, at least 64 KiB, at most this).
const MEMBER_TARGET: usize = 1 << 20;

/// Key of the bulk-member cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct MemberKey {
    table: &'static str,
    namespace: &'static str,
    format: Format,
    mode: Mode,
    incremental: bool,
}

/// A cached gzip member (and the header member for CSV/TSV).
#[derive(Debug)]
pub(crate) struct Member {
    header: Option<Bytes>,
    body: Bytes,
    body_raw_len: u64,
}

fn build_member(
    table: &TableDef,
    format: Format,
    mode: Mode,
    incremental: bool,
    target: usize,
) -> Member {
    let enc = Encoder::new(table, format, mode, incremental);
    let header = match format {
        Format::Jsonl => None,
        _ => {
            let mut h = String::new();
            enc.header(&mut h);
            Some(Bytes::from(gzip(h.as_bytes())))
        }
    };
    let mut raw = String::with_capacity(target + 4096);
    let mut id: i64 = 1;
    while raw.len() < target {
        let r = crate::data::Record {
            id,
            value: Some(table.values_of(id, 1)),
            ts_ms: crate::DEFAULT_HISTORY_ORIGIN_MS,
            action: incremental.then_some(crate::data::Action::Upsert),
        };
        enc.record(&mut raw, &r);
        id += 1;
    }
    Member {
        header,
        body_raw_len: raw.len() as u64,
        body: Bytes::from(gzip(raw.as_bytes())),
    }
}

/// A sequence of byte segments, each repeated `count` times.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    segs: Arc<Vec<(Bytes, u64)>>,
    /// Served length (may be less than the sum of segments for truncated objects).
    pub(crate) len: u64,
}

impl Layout {
    fn new(segs: Vec<(Bytes, u64)>) -> Self {
        let segs: Vec<_> = segs
            .into_iter()
            .filter(|(b, c)| !b.is_empty() && *c > 0)
            .collect();
        let len = segs.iter().map(|(b, c)| b.len() as u64 * c).sum();
        Self {
            segs: Arc::new(segs),
            len,
        }
    }

    /// Flips the CRC-32 of the last gzip member.
    fn corrupt(mut self) -> Self {
        let mut segs = (*self.segs).clone();
        if let Some((last, count)) = segs.pop() {
            let mut copy = last.to_vec();
            if copy.len() >= 18 {
                let at = copy.len() - 8;
                copy[at] ^= 0xFF;
            }
            if count > 1 {
                segs.push((last, count - 1));
            }
            segs.push((Bytes::from(copy), 1));
        }
        self.segs = Arc::new(segs);
        self
    }

    /// Cuts the stream inside its last gzip member.
    fn truncate(mut self) -> Self {
        if let Some((last, _)) = self.segs.last() {
            let cut = (last.len() as u64 / 2).max(1);
            self.len = self.len.saturating_sub(cut);
        }
        self
    }

    /// The bytes at `pos` up to the end of the segment, capped at `end`.
    fn chunk_at(&self, pos: u64, end: u64) -> Option<Bytes> {
        let mut acc = 0u64;
        for (data, count) in self.segs.iter() {
            let seg_len = data.len() as u64;
            let total = seg_len * count;
            if pos < acc + total {
                let off = ((pos - acc) % seg_len) as usize;
                let take = (seg_len as usize - off).min((end - pos) as usize);
                return Some(data.slice(off..off + take));
            }
            acc += total;
        }
        None
    }
}

/// Builds the layout of object `index` of `job`.
pub(crate) fn layout(shared: &Shared, job: &Job, index: usize) -> Option<Layout> {
    let incremental = job.range.is_incremental();
    if let Some(size) = shared.config.object_size_bytes {
        let key = MemberKey {
            table: job.table.name,
            namespace: job.table.namespace,
            format: job.format,
            mode: job.mode,
            incremental,
        };
        let cached = shared
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let member = match cached {
            Some(m) => m,
            None => {
                // Built outside the lock; two racing builders produce equal members.
                let target = usize::try_from(size / 4)
                    .unwrap_or(MEMBER_TARGET)
                    .clamp(64 << 10, MEMBER_TARGET);
                let m = Arc::new(build_member(
                    job.table,
                    job.format,
                    job.mode,
                    incremental,
                    target,
                ));
                shared
                    .members
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(key)
                    .or_insert(m)
                    .clone()
            }
        };
        let repeats = size.div_ceil(member.body_raw_len.max(1)).max(1);
        let mut segs = Vec::new();
        if let Some(h) = &member.header {
            segs.push((h.clone(), 1));
        }
        segs.push((member.body.clone(), repeats));
        return Some(Layout::new(segs));
    }
    let content = job.content.get_or_init(|| real_objects(shared, job));
    content
        .get(index)
        .map(|b| Layout::new(vec![(b.clone(), 1)]))
}

fn real_objects(shared: &Shared, job: &Job) -> Vec<Bytes> {
    let records = records_of(&shared.params, job.table, job.range);
    let n = job.files.len().max(1);
    let per = records.len().div_ceil(n).max(1);
    let enc = Encoder::new(job.table, job.format, job.mode, job.range.is_incremental());
    (0..n)
        .map(|i| {
            let start = (i * per).min(records.len());
            let end = ((i + 1) * per).min(records.len());
            Bytes::from(gzip(enc.encode(&records[start..end]).as_bytes()))
        })
        .collect()
}

/// Applies a storage fault to a layout.
pub(crate) fn apply_fault(layout: Layout, action: Option<&crate::FaultAction>) -> Layout {
    match action {
        Some(crate::FaultAction::TruncateGzip) => layout.truncate(),
        Some(crate::FaultAction::CorruptGzip) => layout.corrupt(),
        _ => layout,
    }
}

/// The signature of a pre-signed URL.
pub(crate) fn sign(shared: &Shared, path: &str, amz_date: &str, expires: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&shared.url_key) else {
        return String::new();
    };
    mac.update(format!("GET\n{path}\n{amz_date}\n{expires}").as_bytes());
    hex(&mac.finalize().into_bytes())
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The pre-signed URL of object `file` of job `job_id`, valid from `now_ms`.
pub(crate) fn presign(shared: &Shared, job_id: &str, file: &str, now_ms: i64) -> String {
    let path = format!("{STORAGE_PREFIX}{job_id}/{file}");
    let ts = jiff::Timestamp::from_second(now_ms.div_euclid(1000)).unwrap_or_default();
    let amz_date = ts.strftime("%Y%m%dT%H%M%SZ").to_string();
    let day = ts.strftime("%Y%m%d").to_string();
    let expires = shared.config.url_lifetime.as_secs().max(1).to_string();
    let sig = sign(shared, &path, &amz_date, &expires);
    format!(
        "http://{}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=EMULATORACCESSKEY%2F{day}%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date={amz_date}&X-Amz-Expires={expires}&X-Amz-SignedHeaders=host&X-Amz-Signature={sig}",
        shared.storage_addr
    )
}

/// Why a pre-signed request was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SignatureError {
    Missing,
    Mismatch,
    Expired,
}

/// Checks the query string of a storage request against its path.
pub(crate) fn verify(
    shared: &Shared,
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
    let expected = sign(shared, path, date, expires);
    let same = expected.len() == sig.len()
        && expected
            .bytes()
            .zip(sig.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(SignatureError::Mismatch);
    }
    let signed_at = parse_amz_date(date);
    let lifetime: i64 = expires.parse().map_err(|_| SignatureError::Mismatch)?;
    match signed_at {
        Some(t) if now_ms <= t + lifetime.saturating_mul(1000) => Ok(()),
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

/// A strong ETag for an object layout.
pub(crate) fn etag(object_id: &str, layout: &Layout, variant: &str) -> String {
    let mut h = Sha256::new();
    h.update(object_id.as_bytes());
    h.update(layout.len.to_le_bytes());
    h.update(variant.as_bytes());
    format!("\"{}\"", hex(&h.finalize()[..16]))
}

/// Parses a single-range `Range` header against an object of `len` bytes:
/// `Ok(None)` means serve the whole object, `Err(())` means unsatisfiable.
pub(crate) fn parse_range(header: Option<&str>, len: u64) -> Result<Option<(u64, u64)>, ()> {
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

/// A response body: a whole buffer or a streamed object.
#[derive(Debug)]
pub(crate) enum Body {
    Full(Option<Bytes>),
    Object(ObjectBody),
}

impl Body {
    pub(crate) fn full(b: impl Into<Bytes>) -> Self {
        Self::Full(Some(b.into()))
    }

    pub(crate) fn empty() -> Self {
        Self::Full(None)
    }
}

/// Streams `[pos, end)` of a layout, optionally failing after `drop_after` bytes.
#[derive(Debug)]
pub(crate) struct ObjectBody {
    pub(crate) layout: Layout,
    pub(crate) pos: u64,
    pub(crate) end: u64,
    pub(crate) drop_at: Option<u64>,
    /// Started when the drop point is reached, so the bytes before it get flushed.
    pub(crate) drop_timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Self::Object(o) => {
                if o.pos >= o.end {
                    return Poll::Ready(None);
                }
                let mut end = o.end;
                if let Some(d) = o.drop_at {
                    if o.pos >= d {
                        let timer = o.drop_timer.get_or_insert_with(|| {
                            Box::pin(tokio::time::sleep(std::time::Duration::from_millis(30)))
                        });
                        if timer.as_mut().poll(cx).is_pending() {
                            return Poll::Pending;
                        }
                        return Poll::Ready(Some(Err(std::io::Error::new(
                            std::io::ErrorKind::ConnectionAborted,
                            "injected connection drop",
                        ))));
                    }
                    end = end.min(d);
                }
                match o.layout.chunk_at(o.pos, end) {
                    Some(chunk) => {
                        o.pos += chunk.len() as u64;
                        Poll::Ready(Some(Ok(Frame::data(chunk))))
                    }
                    None => {
                        o.pos = o.end;
                        Poll::Ready(None)
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Full(b) => b.is_none(),
            Self::Object(o) => o.pos >= o.end,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Object(o) => SizeHint::with_exact(o.end.saturating_sub(o.pos)),
        }
    }
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

    #[test]
    fn layout_chunks_cover_everything() {
        let l = Layout::new(vec![
            (Bytes::from_static(b"ab"), 1),
            (Bytes::from_static(b"xyz"), 3),
        ]);
        assert_eq!(l.len, 11);
        let mut out = Vec::new();
        let mut pos = 1;
        while let Some(c) = l.chunk_at(pos, l.len) {
            pos += c.len() as u64;
            out.extend_from_slice(&c);
        }
        assert_eq!(out, b"bxyzxyzxyz");
    }
}
