//! Reading fuzzer bytes: readers that never fail (a short input reads as zeros or
//! empty), split points, and gzip encoding for generated streams.

use arbitrary::{Arbitrary, Unstructured};

/// The next byte, or 0 when the input is used up.
pub(crate) fn byte(u: &mut Unstructured<'_>) -> u8 {
    u8::arbitrary(u).unwrap_or(0)
}

/// The next two bytes, little-endian.
pub(crate) fn u16le(u: &mut Unstructured<'_>) -> u16 {
    u16::from_le_bytes([byte(u), byte(u)])
}

/// The next `n` bytes, or as many as are left.
pub(crate) fn take<'a>(u: &mut Unstructured<'a>, n: usize) -> &'a [u8] {
    let n = n.min(u.len());
    u.bytes(n).unwrap_or_default()
}

/// Every byte left.
pub(crate) fn rest<'a>(u: &mut Unstructured<'a>) -> &'a [u8] {
    let n = u.len();
    take(u, n)
}

/// Whether `needle` (non-empty) occurs in `hay`.
pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Up to 7 sorted split points in `0..=len`.
pub(crate) fn split_points(u: &mut Unstructured<'_>, len: usize) -> Vec<usize> {
    let n = byte(u) % 8;
    let mut splits: Vec<usize> = (0..n).map(|_| usize::from(u16le(u)) % (len + 1)).collect();
    splits.sort_unstable();
    splits
}

/// `data` cut at sorted `splits`.
pub(crate) fn pieces_at<'a>(data: &'a [u8], splits: &[usize]) -> Vec<&'a [u8]> {
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

/// Reads up to `max` steps of type `T` while input is left, handing each to `step`
/// (a step that cannot be read ends the script).
pub(crate) fn for_each_step<'a, T: Arbitrary<'a>>(
    u: &mut Unstructured<'a>,
    max: usize,
    mut step: impl FnMut(T),
) {
    for _ in 0..max {
        if u.is_empty() {
            return;
        }
        match T::arbitrary(u) {
            Ok(s) => step(s),
            Err(_) => return,
        }
    }
}

/// `data` as one gzip member, compressed at `level`.
pub(crate) fn gz_encode(data: &[u8], level: u32) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).expect("in memory");
    e.finish().expect("in memory")
}
