//! One gzip member assembled from independently compressed pieces.
//!
//! DAP serves every object as a single gzip member, and a client may read no further
//! than the first member's trailer (the official Python client's `zlib.decompressobj`
//! stops there). Yet the emulator wants to compress a large object on several threads,
//! and to serve a bulk object as one compressed block repeated. Both fit in one member:
//! each [`Piece`] is raw deflate compressed from a fresh dictionary and ended with a sync
//! flush, so it starts and ends on a byte boundary, refers to nothing before it and is
//! never the final block. Pieces concatenate, or repeat, into one deflate stream, which
//! [`member`] closes with an empty final block and a trailer whose CRC-32 is combined
//! from the pieces' own.

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};

/// The gzip header: deflate, no name or flags, no modification time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// An empty deflate block with the final bit set (fixed Huffman codes, end of block).
const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// Raw deflate of some bytes, ready to be placed anywhere in a member's stream.
#[derive(Debug, Clone)]
pub(crate) struct Piece {
    deflate: Bytes,
    crc: crc32fast::Hasher,
    len: u64,
}

impl Piece {
    /// Compresses `data` at `level`.
    pub(crate) fn new(data: &[u8], level: Compression) -> Self {
        let mut crc = crc32fast::Hasher::new();
        crc.update(data);
        Self {
            deflate: Bytes::from(deflate_sync(data, level)),
            crc,
            len: data.len() as u64,
        }
    }

    /// Uncompressed length.
    pub(crate) fn raw_len(&self) -> u64 {
        self.len
    }
}

/// Raw deflate of `data`, ended by a sync flush (byte-aligned, not final).
fn deflate_sync(data: &[u8], level: Compression) -> Vec<u8> {
    let mut c = Compress::new(level, false);
    let mut out = Vec::with_capacity(data.len() / 3 + 64);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(4096));
        }
        let consumed = usize::try_from(c.total_in()).unwrap_or(data.len());
        let Ok(_) = c.compress_vec(
            &data[consumed.min(data.len())..],
            &mut out,
            FlushCompress::Sync,
        ) else {
            // Compressing into memory cannot fail; an empty stream would show it.
            return Vec::new();
        };
        let all_in = usize::try_from(c.total_in()).is_ok_and(|n| n == data.len());
        // The flush is complete once it left room in the output.
        if all_in && out.len() < out.capacity() {
            return out;
        }
    }
}

/// The segments of one gzip member holding `pieces` in order, each repeated its count
/// of times: the header, the pieces, and a trailer with the combined CRC-32 and length.
pub(crate) fn member(pieces: Vec<(Piece, u64)>) -> Vec<(Bytes, u64)> {
    let mut crc = crc32fast::Hasher::new();
    let mut len = 0u64;
    let mut segs = vec![(Bytes::from_static(&HEADER), 1)];
    for (piece, count) in pieces {
        // Repeating by doubling keeps a large count to a few dozen combines.
        let (mut run, mut run_len, mut left) = (piece.crc.clone(), piece.len, count);
        while left > 0 {
            if left & 1 == 1 {
                crc.combine(&run);
                len = len.wrapping_add(run_len);
            }
            let doubled = run.clone();
            run.combine(&doubled);
            run_len = run_len.wrapping_mul(2);
            left >>= 1;
        }
        segs.push((piece.deflate, count));
    }
    let mut trailer = Vec::with_capacity(10);
    trailer.extend_from_slice(&FINAL_BLOCK);
    trailer.extend_from_slice(&crc.finalize().to_le_bytes());
    // ISIZE is the length modulo 2^32.
    trailer.extend_from_slice(&(len as u32).to_le_bytes());
    segs.push((Bytes::from(trailer), 1));
    segs
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use super::*;

    fn flat(segs: &[(Bytes, u64)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (b, n) in segs {
            for _ in 0..*n {
                out.extend_from_slice(b);
            }
        }
        out
    }

    /// Reads the first member only, as a client that stops at the first trailer does.
    fn first_member(gz: &[u8]) -> Vec<u8> {
        let mut d = flate2::read::GzDecoder::new(gz);
        let mut out = Vec::new();
        d.read_to_end(&mut out).expect("a valid member");
        out
    }

    #[test]
    fn pieces_and_repeats_make_one_member() {
        let a = b"id\tname\n".to_vec();
        let b: Vec<u8> = (0..5000)
            .flat_map(|i| format!("{i}\trow {i}\n").into_bytes())
            .collect();
        let c = b"tail\n".to_vec();
        let segs = member(vec![
            (Piece::new(&a, Compression::default()), 1),
            (Piece::new(&b, Compression::fast()), 7),
            (Piece::new(&c, Compression::fast()), 1),
            (Piece::new(b"", Compression::fast()), 3),
        ]);
        let mut expected = a.clone();
        for _ in 0..7 {
            expected.extend_from_slice(&b);
        }
        expected.extend_from_slice(&c);
        let gz = flat(&segs);
        assert_eq!(first_member(&gz), expected);
        // Nothing follows the member.
        let mut d = flate2::read::MultiGzDecoder::new(&gz[..]);
        let mut all = Vec::new();
        d.read_to_end(&mut all).unwrap();
        assert_eq!(all, expected);
    }

    #[test]
    fn an_empty_member_is_valid() {
        assert!(first_member(&flat(&member(Vec::new()))).is_empty());
    }

    #[test]
    fn the_trailer_checks_the_whole_stream() {
        let segs = member(vec![(Piece::new(b"hello\n", Compression::fast()), 2)]);
        let mut gz = flat(&segs);
        let crc_at = gz.len() - 8;
        gz[crc_at] ^= 0xff;
        let mut out = Vec::new();
        assert!(
            flate2::read::GzDecoder::new(&gz[..])
                .read_to_end(&mut out)
                .is_err()
        );
    }
}
