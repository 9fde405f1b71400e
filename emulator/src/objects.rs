//! Object content: byte layouts, generation of real and bulk objects, and the caches.
//!
//! Every object is one gzip member, as DAP serves them (see [`crate::member`]). A real
//! object holds the records of its key range (see [`Job::keys`]) in the job's format,
//! compressed in pieces of a block of keys each, on up to four threads. Built objects
//! are kept in a cache bounded by bytes ([`crate::EmulatorConfig::object_cache_bytes`]).
//! A bulk object ([`crate::EmulatorConfig::object_size_bytes`]) is one cached piece of
//! records repeated.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::Bytes;

use crate::data::{Action, DataParams, Extract, Record, TableDef};
use crate::encode::{Encoder, Format, Mode};
use crate::job::Job;
use crate::member::{Piece, member};

/// Keys per compressed piece of a large real object.
const BLOCK_KEYS: u64 = 16_384;

/// Largest uncompressed size of the cached piece of bulk objects (a quarter of the
/// object size, at least 64 KiB, at most this).
const MEMBER_TARGET: usize = 1 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A sequence of byte segments, each repeated `count` times.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    segs: Arc<Vec<(Bytes, u64)>>,
    /// Served length (may be less than the sum of segments for truncated objects).
    pub(crate) len: u64,
}

impl Layout {
    pub(crate) fn new(segs: Vec<(Bytes, u64)>) -> Self {
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

    /// Flips the CRC-32 of the gzip member (the last segment ends with the trailer).
    pub(crate) fn corrupt(mut self) -> Self {
        let mut segs = (*self.segs).clone();
        if let Some((last, count)) = segs.pop() {
            let mut copy = last.to_vec();
            if copy.len() >= 8 {
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

    /// Cuts the stream short of its end: inside the deflate data when there is more
    /// than the trailer, so the member is missing its end.
    pub(crate) fn truncate(mut self) -> Self {
        let cut = (self.len / 2).clamp(1, 1 << 16);
        self.len = self.len.saturating_sub(cut);
        self
    }

    /// The bytes at `pos` up to the end of the segment, capped at `end`.
    pub(crate) fn chunk_at(&self, pos: u64, end: u64) -> Option<Bytes> {
        let end = end.min(self.len);
        if pos >= end {
            return None;
        }
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

fn encode_keys(enc: &Encoder, extract: &Extract, keys: Range<u64>) -> Piece {
    let mut raw =
        String::with_capacity(((keys.end - keys.start) as usize).saturating_mul(256) + 256);
    for r in extract.records(keys) {
        enc.record(&mut raw, &r);
    }
    Piece::new(raw.as_bytes(), flate2::Compression::fast())
}

/// The header line of CSV and TSV objects, as a piece.
fn header_piece(enc: &Encoder, format: Format) -> Option<Piece> {
    (format != Format::Jsonl).then(|| {
        let mut h = String::new();
        enc.header(&mut h);
        Piece::new(h.as_bytes(), flate2::Compression::default())
    })
}

/// Builds the real object holding the records of `keys`.
pub(crate) fn real_object(
    extract: &Extract,
    format: Format,
    mode: Mode,
    keys: Range<u64>,
) -> Layout {
    let enc = Encoder::for_shape(extract.shape(), format, mode, extract.incremental());
    let blocks: Vec<Range<u64>> = (keys.start..keys.end)
        .step_by(BLOCK_KEYS as usize)
        .map(|s| s..(s + BLOCK_KEYS).min(keys.end))
        .collect();
    let parts: Mutex<Vec<Option<Piece>>> = Mutex::new(vec![None; blocks.len()]);
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .clamp(1, 4)
        .min(blocks.len());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(block) = blocks.get(i) else { break };
                    let piece = encode_keys(&enc, extract, block.clone());
                    lock(&parts)[i] = Some(piece);
                }
            });
        }
    });
    let parts = parts.into_inner().unwrap_or_else(|e| e.into_inner());
    let pieces = header_piece(&enc, format)
        .into_iter()
        .chain(parts.into_iter().flatten())
        .map(|p| (p, 1))
        .collect();
    Layout::new(member(pieces))
}

/// Identifies a built object in the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ObjectKey {
    job: Arc<str>,
    index: u32,
}

#[derive(Debug)]
struct Entry {
    cell: Arc<OnceLock<Layout>>,
    /// Bytes counted against the budget (0 until built).
    counted: u64,
}

#[derive(Debug, Default)]
struct CacheInner {
    map: HashMap<ObjectKey, Entry>,
    order: VecDeque<ObjectKey>,
    bytes: u64,
}

/// Built real objects, oldest dropped first beyond a byte budget. Concurrent requests
/// for one object build it once.
#[derive(Debug)]
pub(crate) struct ObjectCache {
    budget: u64,
    inner: Mutex<CacheInner>,
}

impl ObjectCache {
    pub(crate) fn new(budget: u64) -> Self {
        Self {
            budget,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    /// Bytes of built objects held.
    pub(crate) fn bytes(&self) -> u64 {
        lock(&self.inner).bytes
    }

    fn get_or_build(&self, key: ObjectKey, build: impl FnOnce() -> Layout) -> Layout {
        let cell = {
            let mut inner = lock(&self.inner);
            let CacheInner { map, order, .. } = &mut *inner;
            map.entry(key.clone())
                .or_insert_with(|| {
                    order.push_back(key.clone());
                    Entry {
                        cell: Arc::new(OnceLock::new()),
                        counted: 0,
                    }
                })
                .cell
                .clone()
        };
        let mut built = false;
        let layout = cell
            .get_or_init(|| {
                built = true;
                build()
            })
            .clone();
        if built {
            let mut inner = lock(&self.inner);
            if let Some(e) = inner
                .map
                .get_mut(&key)
                .filter(|e| Arc::ptr_eq(&e.cell, &cell))
            {
                e.counted = layout.len;
                inner.bytes += layout.len;
            }
            while inner.bytes > self.budget {
                let Some(old) = inner.order.pop_front() else {
                    break;
                };
                if let Some(e) = inner.map.remove(&old) {
                    inner.bytes -= e.counted;
                }
            }
        }
        layout
    }

    /// The layout of object `index` of `job`, built if needed.
    pub(crate) fn object(&self, params: &DataParams, job: &Job, index: u32) -> Layout {
        let key = ObjectKey {
            job: job.id.clone(),
            index,
        };
        self.get_or_build(key, || {
            let extract = job.extract(params);
            let keys = job.keys(index, extract.rows());
            real_object(&extract, job.format, job.mode, keys)
        })
    }
}

/// Key of the bulk-member cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct MemberKey {
    table: &'static str,
    namespace: &'static str,
    format: Format,
    mode: Mode,
    incremental: bool,
}

/// The cached pieces of a bulk object: records, and the header line for CSV/TSV.
#[derive(Debug)]
struct Member {
    header: Option<Piece>,
    body: Piece,
}

fn build_member(
    table: &'static TableDef,
    format: Format,
    mode: Mode,
    incremental: bool,
    target: usize,
) -> Member {
    let enc = Encoder::new(table, format, mode, incremental);
    let header = header_piece(&enc, format);
    let mut raw = String::with_capacity(target + 4096);
    let mut id: i64 = 1;
    while raw.len() < target {
        let r = Record {
            id,
            value: Some(table.values_of(id, 1)),
            ts_ms: crate::DEFAULT_HISTORY_ORIGIN_MS,
            action: incremental.then_some(Action::Upsert),
        };
        enc.record(&mut raw, &r);
        id += 1;
    }
    Member {
        header,
        body: Piece::new(raw.as_bytes(), flate2::Compression::default()),
    }
}

/// The cached members of bulk objects, one per table, format, mode and kind.
#[derive(Debug, Default)]
pub(crate) struct MemberCache {
    members: Mutex<HashMap<MemberKey, Arc<Member>>>,
}

impl MemberCache {
    /// The layout of a bulk object of about `size` uncompressed bytes for `job`.
    pub(crate) fn bulk_object(&self, job: &Job, size: u64) -> Layout {
        let incremental = job.range.is_incremental();
        let key = MemberKey {
            table: job.table.name,
            namespace: job.table.namespace,
            format: job.format,
            mode: job.mode,
            incremental,
        };
        let cached = lock(&self.members).get(&key).cloned();
        let member = cached.unwrap_or_else(|| {
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
            lock(&self.members).entry(key).or_insert(m).clone()
        });
        let repeats = size.div_ceil(member.body.raw_len().max(1)).max(1);
        let pieces = member
            .header
            .iter()
            .map(|h| (h.clone(), 1))
            .chain([(member.body.clone(), repeats)])
            .collect();
        Layout::new(self::member(pieces))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn the_cache_keeps_to_its_budget() {
        let cache = ObjectCache::new(25);
        let build = |n: usize| move || Layout::new(vec![(Bytes::from(vec![b'x'; n]), 1)]);
        let key = |i| ObjectKey {
            job: "j".into(),
            index: i,
        };
        assert_eq!(cache.get_or_build(key(0), build(10)).len, 10);
        assert_eq!(cache.get_or_build(key(1), build(10)).len, 10);
        assert_eq!(cache.bytes(), 20);
        // Cached: the builder is not called again.
        assert_eq!(cache.get_or_build(key(0), build(99)).len, 10);
        cache.get_or_build(key(2), build(10));
        assert_eq!(cache.bytes(), 20, "the oldest object was dropped");
        assert_eq!(cache.get_or_build(key(0), build(7)).len, 7, "rebuilt");
    }
}
