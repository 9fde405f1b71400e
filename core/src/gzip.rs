//! Push-based, verifying, multi-member gzip decoder (RFC 1952).
//!
//! [`GzipDecoder`] is a sans-IO state machine: the caller pushes compressed
//! bytes in chunks of any size (a header may be split at any byte boundary)
//! and receives decompressed bytes through a sink callback. Every member's
//! CRC32 and ISIZE trailer is checked, concatenated members are decoded as
//! one stream, and [`GzipDecoder::finish`] refuses a truncated or empty
//! stream. The gzip container is parsed here; the raw deflate data is
//! inflated with [`flate2::Decompress`].
//!
//! ```
//! use dap_proto::gzip::GzipDecoder;
//! # use std::io::Write as _;
//! # let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
//! # enc.write_all(b"{\"key\": 1}\n").unwrap();
//! # let compressed = enc.finish().unwrap();
//! let mut decoder = GzipDecoder::new();
//! let mut plain = Vec::new();
//! for chunk in compressed.chunks(64 * 1024) {
//!     decoder.feed(chunk, |bytes| plain.extend_from_slice(bytes))?;
//! }
//! let summary = decoder.finish()?;
//! assert_eq!(summary.decompressed_bytes, plain.len() as u64);
//! # Ok::<(), dap_proto::gzip::GzipError>(())
//! ```

use flate2::{Crc, Decompress, FlushDecompress, Status};
use thiserror::Error;

/// Size of the reused internal output buffer handed to the sink.
const OUT_BUF_LEN: usize = 64 * 1024;

const ID1: u8 = 0x1f;
const ID2: u8 = 0x8b;
const CM_DEFLATE: u8 = 8;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const FRESERVED: u8 = 0xe0;

/// An error found while decoding a gzip stream.
///
/// Once a [`GzipDecoder`] has returned an error, every later call returns
/// the same error again.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GzipError {
    /// A member header is invalid (bad magic, unknown compression method,
    /// reserved flag bits set, or a header CRC16 mismatch).
    #[error("invalid gzip header: {0}")]
    BadHeader(&'static str),
    /// The deflate data of a member is corrupt.
    #[error("corrupt deflate data: {0}")]
    Deflate(String),
    /// A member's CRC32 trailer does not match its decompressed data.
    #[error("gzip CRC32 mismatch: trailer says {expected:#010x}, data gives {actual:#010x}")]
    CrcMismatch {
        /// CRC32 stored in the trailer.
        expected: u32,
        /// CRC32 of the data actually decompressed.
        actual: u32,
    },
    /// A member's ISIZE trailer does not match its decompressed length.
    #[error("gzip length mismatch: trailer says {expected}, data has {actual} (mod 2^32)")]
    LengthMismatch {
        /// ISIZE stored in the trailer.
        expected: u32,
        /// Decompressed length of the member, modulo 2^32.
        actual: u32,
    },
    /// The stream ended inside a member (header, data or trailer).
    #[error("gzip stream truncated")]
    Truncated,
    /// The stream contained no bytes at all.
    #[error("empty gzip stream")]
    Empty,
    /// Bytes after a complete member do not start another gzip member.
    #[error("trailing garbage after gzip member")]
    TrailingGarbage,
}

/// Totals of a completely and successfully decoded gzip stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GzipSummary {
    /// Number of compressed bytes fed to the decoder.
    pub compressed_bytes: u64,
    /// Number of decompressed bytes produced (all members).
    pub decompressed_bytes: u64,
    /// Number of gzip members decoded.
    pub members: u64,
}

/// Where the decoder is inside the current member.
#[derive(Debug, Clone, Copy)]
enum State {
    /// The fixed 10-byte header; `len` bytes collected so far.
    Fixed { buf: [u8; 10], len: usize },
    /// The 2-byte XLEN of FEXTRA.
    ExtraLen { buf: [u8; 2], len: usize },
    /// Skipping `remaining` bytes of FEXTRA data.
    Extra { remaining: usize },
    /// Skipping the zero-terminated FNAME.
    Name,
    /// Skipping the zero-terminated FCOMMENT.
    Comment,
    /// The 2-byte header CRC16.
    HeaderCrc { buf: [u8; 2], len: usize },
    /// Inflating deflate data.
    Body,
    /// The 8-byte CRC32 + ISIZE trailer.
    Trailer { buf: [u8; 8], len: usize },
}

impl State {
    const fn start() -> Self {
        Self::Fixed {
            buf: [0; 10],
            len: 0,
        }
    }
}

/// A push-based, verifying, multi-member gzip decoder.
///
/// Feed compressed bytes with [`feed`](Self::feed) (or
/// [`verify`](Self::verify) / [`decode`](Self::decode)), then call
/// [`finish`](Self::finish) to learn whether the stream was complete.
/// The decoder owns one 64 KiB output buffer that is reused for every call,
/// so the hot path does not allocate.
pub struct GzipDecoder {
    state: State,
    /// FLG byte of the current member.
    flags: u8,
    inflate: Decompress,
    out: Vec<u8>,
    /// CRC32 of the current member's decompressed data.
    crc: Crc,
    /// CRC32 of the current member's header bytes (for FHCRC).
    header_crc: Crc,
    /// Decompressed bytes of the current member.
    member_out: u64,
    summary: GzipSummary,
    failed: Option<GzipError>,
}

impl std::fmt::Debug for GzipDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipDecoder")
            .field("state", &self.state)
            .field("summary", &self.summary)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl Default for GzipDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Copies as many bytes as fit from `input` into `buf[*len..]`, advancing
/// both, and returns the bytes taken.
fn fill<'a>(buf: &mut [u8], len: &mut usize, input: &mut &'a [u8]) -> &'a [u8] {
    let dst = buf.get_mut(*len..).unwrap_or_default();
    let n = dst.len().min(input.len());
    let (taken, rest) = input.split_at(n);
    if let Some(dst) = dst.get_mut(..n) {
        dst.copy_from_slice(taken);
    }
    *input = rest;
    *len = len.saturating_add(n);
    taken
}

/// Reads a little-endian u16 from the first two bytes of `b`.
fn le16(b: &[u8]) -> u16 {
    match b {
        [a, b, ..] => u16::from_le_bytes([*a, *b]),
        _ => 0,
    }
}

/// Reads a little-endian u32 from `b[at..at + 4]`.
fn le32(b: &[u8], at: usize) -> u32 {
    match b.get(at..) {
        Some([a, b, c, d, ..]) => u32::from_le_bytes([*a, *b, *c, *d]),
        _ => 0,
    }
}

impl GzipDecoder {
    /// Creates a decoder expecting the first member's header.
    #[must_use]
    pub fn new() -> Self {
        Self {
            state: State::start(),
            flags: 0,
            inflate: Decompress::new(false),
            out: vec![0; OUT_BUF_LEN],
            crc: Crc::new(),
            header_crc: Crc::new(),
            member_out: 0,
            summary: GzipSummary::default(),
            failed: None,
        }
    }

    /// Totals so far (members counted once their trailer has been checked).
    #[must_use]
    pub const fn summary(&self) -> GzipSummary {
        self.summary
    }

    /// Consumes all of `input`, handing decompressed bytes to `sink` in
    /// chunks of at most 64 KiB.
    ///
    /// # Errors
    ///
    /// Any corruption found in `input`: see [`GzipError`]. After an error the
    /// decoder is poisoned and returns the same error from every call.
    pub fn feed(&mut self, input: &[u8], mut sink: impl FnMut(&[u8])) -> Result<(), GzipError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        self.summary.compressed_bytes = self
            .summary
            .compressed_bytes
            .saturating_add(u64::try_from(input.len()).unwrap_or(u64::MAX));
        let result = self.run(input, &mut sink);
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    /// Consumes all of `input`, checking it without handing out the
    /// decompressed bytes (they are still inflated to check the CRC32).
    ///
    /// # Errors
    ///
    /// As [`feed`](Self::feed).
    pub fn verify(&mut self, input: &[u8]) -> Result<(), GzipError> {
        self.feed(input, |_| {})
    }

    /// Consumes all of `input`, appending the decompressed bytes to `out`.
    ///
    /// # Errors
    ///
    /// As [`feed`](Self::feed).
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), GzipError> {
        self.feed(input, |bytes| out.extend_from_slice(bytes))
    }

    /// Ends the stream and returns its totals.
    ///
    /// # Errors
    ///
    /// [`GzipError::Empty`] if no byte was ever fed, [`GzipError::Truncated`]
    /// if the stream ended inside a member, or the error that poisoned the
    /// decoder.
    pub fn finish(self) -> Result<GzipSummary, GzipError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        match self.state {
            State::Fixed { len: 0, .. } if self.summary.members > 0 => Ok(self.summary),
            State::Fixed { len: 0, .. } if self.summary.compressed_bytes == 0 => {
                Err(GzipError::Empty)
            }
            _ => Err(GzipError::Truncated),
        }
    }

    /// The state machine proper: consumes all of `input`.
    fn run(&mut self, mut input: &[u8], sink: &mut dyn FnMut(&[u8])) -> Result<(), GzipError> {
        loop {
            match self.state {
                State::Body => {
                    self.inflate_some(&mut input, sink)?;
                    if matches!(self.state, State::Body) {
                        // Input exhausted and all pending output flushed.
                        return Ok(());
                    }
                }
                _ if input.is_empty() => return Ok(()),
                State::Fixed { mut buf, mut len } => {
                    if len == 0 {
                        self.header_crc.reset();
                    }
                    let taken = fill(&mut buf, &mut len, &mut input);
                    self.header_crc.update(taken);
                    self.state = State::Fixed { buf, len };
                    self.check_fixed(&buf, len)?;
                    if len >= buf.len() {
                        self.flags = buf.get(3).copied().unwrap_or(0);
                        self.next_header_field(0);
                    }
                }
                State::ExtraLen { mut buf, mut len } => {
                    let taken = fill(&mut buf, &mut len, &mut input);
                    self.header_crc.update(taken);
                    self.state = if len >= buf.len() {
                        State::Extra {
                            remaining: usize::from(le16(&buf)),
                        }
                    } else {
                        State::ExtraLen { buf, len }
                    };
                }
                State::Extra { remaining } => {
                    let n = remaining.min(input.len());
                    let (taken, rest) = input.split_at(n);
                    self.header_crc.update(taken);
                    input = rest;
                    let remaining = remaining.saturating_sub(n);
                    if remaining == 0 {
                        self.next_header_field(FEXTRA);
                    } else {
                        self.state = State::Extra { remaining };
                    }
                }
                State::Name | State::Comment => {
                    let (taken, done) = match input.iter().position(|&b| b == 0) {
                        Some(nul) => (input.split_at(nul.saturating_add(1)), true),
                        None => ((input, &[][..]), false),
                    };
                    self.header_crc.update(taken.0);
                    input = taken.1;
                    if done {
                        let field = if matches!(self.state, State::Name) {
                            FNAME
                        } else {
                            FCOMMENT
                        };
                        self.next_header_field(field);
                    }
                }
                State::HeaderCrc { mut buf, mut len } => {
                    fill(&mut buf, &mut len, &mut input);
                    if len >= buf.len() {
                        // The CRC16 is the low 16 bits of the header's CRC32.
                        let actual = (self.header_crc.sum() & 0xffff) as u16;
                        if le16(&buf) != actual {
                            return Err(GzipError::BadHeader("header CRC16 mismatch"));
                        }
                        self.start_body();
                    } else {
                        self.state = State::HeaderCrc { buf, len };
                    }
                }
                State::Trailer { mut buf, mut len } => {
                    fill(&mut buf, &mut len, &mut input);
                    if len >= buf.len() {
                        self.check_trailer(buf)?;
                        self.state = State::start();
                    } else {
                        self.state = State::Trailer { buf, len };
                    }
                }
            }
        }
    }

    /// Validates the first `len` bytes of the fixed header as they arrive.
    fn check_fixed(&self, buf: &[u8; 10], len: usize) -> Result<(), GzipError> {
        let [id1, id2, cm, flg, ..] = *buf;
        let bad_magic = (len >= 1 && id1 != ID1) || (len >= 2 && id2 != ID2);
        if bad_magic {
            return Err(if self.summary.members > 0 {
                GzipError::TrailingGarbage
            } else {
                GzipError::BadHeader("not gzip (bad magic bytes)")
            });
        }
        if len >= 3 && cm != CM_DEFLATE {
            return Err(GzipError::BadHeader("unsupported compression method"));
        }
        if len >= 4 && flg & FRESERVED != 0 {
            return Err(GzipError::BadHeader("reserved flag bits set"));
        }
        Ok(())
    }

    /// Moves to the first optional header field after `done` (in RFC order
    /// FEXTRA, FNAME, FCOMMENT, FHCRC) that the flags announce.
    fn next_header_field(&mut self, done: u8) {
        /// Position of each optional field in the header.
        const ORDER: [u8; 4] = [FEXTRA, FNAME, FCOMMENT, FHCRC];
        let done_pos = ORDER.iter().position(|&f| f == done);
        let next = ORDER
            .iter()
            .enumerate()
            .filter(|&(pos, _)| done_pos.is_none_or(|d| pos > d))
            .map(|(_, &field)| field)
            .find(|&field| self.flags & field != 0);
        self.state = match next {
            Some(FEXTRA) => State::ExtraLen {
                buf: [0; 2],
                len: 0,
            },
            Some(FNAME) => State::Name,
            Some(FCOMMENT) => State::Comment,
            Some(_) => State::HeaderCrc {
                buf: [0; 2],
                len: 0,
            },
            None => {
                self.start_body();
                return;
            }
        };
    }

    fn start_body(&mut self) {
        self.inflate.reset(false);
        self.crc.reset();
        self.member_out = 0;
        self.state = State::Body;
    }

    /// Inflates from `input` until it is exhausted (and all output flushed)
    /// or the deflate stream ends, in which case the state moves on to the
    /// trailer.
    fn inflate_some(
        &mut self,
        input: &mut &[u8],
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), GzipError> {
        loop {
            let in_before = self.inflate.total_in();
            let out_before = self.inflate.total_out();
            let status = self
                .inflate
                .decompress(input, &mut self.out, FlushDecompress::None)
                .map_err(|e| GzipError::Deflate(e.to_string()))?;
            let consumed = self.inflate.total_in().saturating_sub(in_before);
            let produced = self.inflate.total_out().saturating_sub(out_before);
            let consumed_usize = usize::try_from(consumed).unwrap_or(usize::MAX);
            let produced_usize = usize::try_from(produced).unwrap_or(usize::MAX);
            *input = input.get(consumed_usize..).unwrap_or_default();
            if let Some(chunk) = self.out.get(..produced_usize)
                && !chunk.is_empty()
            {
                self.crc.update(chunk);
                sink(chunk);
            }
            self.member_out = self.member_out.saturating_add(produced);
            self.summary.decompressed_bytes =
                self.summary.decompressed_bytes.saturating_add(produced);
            if status == Status::StreamEnd {
                self.state = State::Trailer {
                    buf: [0; 8],
                    len: 0,
                };
                return Ok(());
            }
            let output_full = produced_usize >= self.out.len();
            if !output_full && input.is_empty() {
                return Ok(());
            }
            if consumed == 0 && produced == 0 {
                if input.is_empty() {
                    return Ok(());
                }
                return Err(GzipError::Deflate("inflate made no progress".into()));
            }
        }
    }

    fn check_trailer(&mut self, buf: [u8; 8]) -> Result<(), GzipError> {
        let expected_crc = le32(&buf, 0);
        let actual_crc = self.crc.sum();
        if expected_crc != actual_crc {
            return Err(GzipError::CrcMismatch {
                expected: expected_crc,
                actual: actual_crc,
            });
        }
        let expected_len = le32(&buf, 4);
        let actual_len = (self.member_out & 0xffff_ffff) as u32;
        if expected_len != actual_len {
            return Err(GzipError::LengthMismatch {
                expected: expected_len,
                actual: actual_len,
            });
        }
        self.summary.members = self.summary.members.saturating_add(1);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::{DeflateEncoder, GzEncoder};
    use proptest::prelude::*;
    use std::io::Write;

    fn sample(n: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(n);
        let mut x: u32 = 12345;
        while v.len() < n {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let line = format!("{{\"id\":{},\"state\":\"s{}\"}}\n", x >> 8, x % 7);
            v.extend_from_slice(line.as_bytes());
        }
        v.truncate(n);
        v
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::new(6));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::new(6));
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// A member with every optional header field, built by hand.
    fn crafted(data: &[u8], flags: u8) -> Vec<u8> {
        let mut m = vec![ID1, ID2, CM_DEFLATE, flags, 1, 2, 3, 4, 0, 3];
        if flags & FEXTRA != 0 {
            let extra = b"AB\x04\x00xyzw";
            m.extend_from_slice(&u16::try_from(extra.len()).unwrap().to_le_bytes());
            m.extend_from_slice(extra);
        }
        if flags & FNAME != 0 {
            m.extend_from_slice(b"export.jsonl\0");
        }
        if flags & FCOMMENT != 0 {
            m.extend_from_slice(b"a comment\0");
        }
        if flags & FHCRC != 0 {
            let mut c = Crc::new();
            c.update(&m);
            m.extend_from_slice(&((c.sum() & 0xffff) as u16).to_le_bytes());
        }
        m.extend_from_slice(&deflate(data));
        let mut c = Crc::new();
        c.update(data);
        m.extend_from_slice(&c.sum().to_le_bytes());
        m.extend_from_slice(&(data.len() as u32).to_le_bytes());
        m
    }

    const ALL_FLAGS: u8 = 0x01 | FHCRC | FEXTRA | FNAME | FCOMMENT;

    fn decode_chunks<'a>(
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<(Vec<u8>, GzipSummary), GzipError> {
        let mut d = GzipDecoder::new();
        let mut out = Vec::new();
        for c in chunks {
            d.decode(c, &mut out)?;
        }
        let s = d.finish()?;
        Ok((out, s))
    }

    fn decode_all(gz: &[u8]) -> Result<(Vec<u8>, GzipSummary), GzipError> {
        decode_chunks([gz])
    }

    #[test]
    fn round_trip_single_member() {
        let data = sample(300_000);
        let gz = gzip(&data);
        let (out, s) = decode_all(&gz).unwrap();
        assert_eq!(out, data);
        assert_eq!(s.members, 1);
        assert_eq!(s.decompressed_bytes, data.len() as u64);
        assert_eq!(s.compressed_bytes, gz.len() as u64);
    }

    #[test]
    fn round_trip_in_64k_chunks_and_verify_mode() {
        let data = sample(1_000_000);
        let gz = gzip(&data);
        let (out, _) = decode_chunks(gz.chunks(65536)).unwrap();
        assert_eq!(out, data);
        let mut d = GzipDecoder::new();
        for c in gz.chunks(7777) {
            d.verify(c).unwrap();
        }
        assert_eq!(d.finish().unwrap().decompressed_bytes, data.len() as u64);
    }

    #[test]
    fn sink_chunks_are_at_most_64k() {
        let data = vec![b'a'; 1_000_000];
        let gz = gzip(&data);
        let mut d = GzipDecoder::new();
        let mut max = 0;
        let mut total = 0;
        d.feed(&gz, |c| {
            max = max.max(c.len());
            total += c.len();
        })
        .unwrap();
        d.finish().unwrap();
        assert_eq!(total, data.len());
        assert!(max <= OUT_BUF_LEN);
    }

    #[test]
    fn empty_payload_member() {
        let gz = gzip(b"");
        let (out, s) = decode_all(&gz).unwrap();
        assert!(out.is_empty());
        assert_eq!(s.members, 1);
    }

    #[test]
    fn multi_member() {
        let a = sample(5000);
        let b = sample(777);
        let mut gz = gzip(&a);
        let boundary = gz.len();
        gz.extend_from_slice(&gzip(b""));
        gz.extend_from_slice(&crafted(&b, ALL_FLAGS));
        let (out, s) = decode_all(&gz).unwrap();
        assert_eq!(out, [a.as_slice(), &b].concat());
        assert_eq!(s.members, 3);
        // Truncation is an error everywhere except at member boundaries.
        let boundary2 = boundary + gzip(b"").len();
        for cut in 0..gz.len() {
            let r = decode_all(&gz[..cut]);
            if cut == boundary || cut == boundary2 {
                assert!(r.is_ok(), "cut {cut}");
            } else {
                assert!(r.is_err(), "cut {cut}");
            }
        }
    }

    #[test]
    fn crafted_headers_every_flag_combination() {
        let data = sample(2000);
        for flags in 0..=ALL_FLAGS {
            let gz = crafted(&data, flags);
            let (out, s) = decode_all(&gz).unwrap();
            assert_eq!(out, data, "flags {flags:#x}");
            assert_eq!(s.members, 1);
        }
    }

    #[test]
    fn every_split_point_and_byte_by_byte() {
        let data = sample(3000);
        let mut gz = crafted(&data, ALL_FLAGS);
        gz.extend_from_slice(&gzip(&data[..100]));
        let expected = [data.as_slice(), &data[..100]].concat();
        for split in 0..=gz.len() {
            let (a, b) = gz.split_at(split);
            let (out, s) = decode_chunks([a, b]).unwrap();
            assert_eq!(out, expected, "split {split}");
            assert_eq!(s.members, 2);
        }
        let (out, _) = decode_chunks(gz.chunks(1)).unwrap();
        assert_eq!(out, expected);
    }

    #[test]
    fn truncation_at_every_length_fails() {
        let data = sample(3000);
        for gz in [gzip(&data), crafted(&data, ALL_FLAGS)] {
            for cut in 0..gz.len() {
                assert!(decode_all(&gz[..cut]).is_err(), "cut {cut}");
                // Also when fed byte by byte.
                if cut % 97 == 0 {
                    assert!(decode_chunks(gz[..cut].chunks(1)).is_err());
                }
            }
            assert_eq!(decode_all(&gz[..0]).unwrap_err(), GzipError::Empty);
            assert_eq!(decode_all(&gz[..5]).unwrap_err(), GzipError::Truncated);
            assert_eq!(
                decode_all(&gz[..gz.len() - 1]).unwrap_err(),
                GzipError::Truncated
            );
        }
    }

    #[test]
    fn flipped_byte_anywhere_fails_with_header_crc() {
        let data = sample(3000);
        let gz = crafted(&data, ALL_FLAGS);
        // The last deflate byte may end in padding bits that carry nothing.
        let last_deflate_byte = gz.len() - 9;
        for i in 0..gz.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                // FTEXT is informational, but FHCRC covers the flag byte.
                let mut bad = gz.clone();
                bad[i] ^= mask;
                match decode_all(&bad) {
                    Err(_) => {}
                    Ok((out, _)) => {
                        assert_eq!(i, last_deflate_byte, "byte {i} mask {mask:#x}");
                        assert_eq!(out, data);
                    }
                }
            }
        }
    }

    #[test]
    fn flipped_byte_outside_unchecked_header_fields_fails() {
        // Without FHCRC, MTIME/XFL/OS (bytes 4..10) and FTEXT are unchecked.
        let data = sample(3000);
        let gz = gzip(&data);
        for i in (0..gz.len()).filter(|i| !(4..10).contains(i)) {
            let mut bad = gz.clone();
            bad[i] ^= if i == 3 { 0x80 } else { 0x01 };
            match decode_all(&bad) {
                Err(_) => {}
                // Only padding bits of the final deflate byte may flip unseen.
                Ok((out, _)) => assert!(i == gz.len() - 9 && out == data, "byte {i}"),
            }
        }
    }

    #[test]
    fn specific_errors() {
        let data = sample(1000);
        let gz = gzip(&data);
        let n = gz.len();

        let mut bad = gz.clone();
        bad[n - 8] ^= 1;
        assert!(matches!(
            decode_all(&bad),
            Err(GzipError::CrcMismatch { .. })
        ));
        let mut bad = gz.clone();
        bad[n - 1] ^= 1;
        assert!(matches!(
            decode_all(&bad),
            Err(GzipError::LengthMismatch { .. })
        ));
        let mut bad = gz.clone();
        bad[0] = b'x';
        assert!(matches!(decode_all(&bad), Err(GzipError::BadHeader(_))));
        let mut bad = gz.clone();
        bad[2] = 7;
        assert!(matches!(decode_all(&bad), Err(GzipError::BadHeader(_))));
        let mut bad = gz.clone();
        bad[3] = 0x20;
        assert!(matches!(decode_all(&bad), Err(GzipError::BadHeader(_))));
        let mut bad = crafted(&data, FHCRC);
        bad[10] ^= 1;
        assert!(matches!(decode_all(&bad), Err(GzipError::BadHeader(_))));
        let mut bad = gz.clone();
        bad[10] = 0xff; // invalid block type 3
        assert!(matches!(decode_all(&bad), Err(GzipError::Deflate(_))));

        let mut trailing = gz.clone();
        trailing.extend_from_slice(b"\nhello");
        assert_eq!(decode_all(&trailing), Err(GzipError::TrailingGarbage));
        let mut trailing = gz.clone();
        trailing.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(decode_all(&trailing), Err(GzipError::TrailingGarbage));
        let mut partial = gz.clone();
        partial.push(ID1);
        assert_eq!(decode_all(&partial), Err(GzipError::Truncated));

        assert_eq!(decode_all(b""), Err(GzipError::Empty));
        assert_eq!(decode_chunks([&b""[..], b""]), Err(GzipError::Empty));
        assert!(matches!(decode_all(b"hello"), Err(GzipError::BadHeader(_))));
    }

    #[test]
    fn poisoned_after_error() {
        let mut d = GzipDecoder::new();
        let err = d.verify(b"nope").unwrap_err();
        assert_eq!(d.verify(&gzip(b"x")), Err(err.clone()));
        assert_eq!(d.finish(), Err(err));
    }

    proptest! {
        #![proptest_config(crate::proptest_config(256))]

        #[test]
        fn arbitrary_bytes_never_panic(
            data in proptest::collection::vec(any::<u8>(), 0..2048),
            split in any::<usize>(),
        ) {
            let split = split % (data.len() + 1);
            let (a, b) = data.split_at(split);
            let _ = decode_chunks([a, b]);
        }

        #[test]
        fn arbitrary_bytes_after_valid_header_never_panic(
            flags in any::<u8>(),
            tail in proptest::collection::vec(any::<u8>(), 0..2048),
        ) {
            let mut data = vec![ID1, ID2, CM_DEFLATE, flags & !FRESERVED, 0, 0, 0, 0, 0, 0];
            data.extend_from_slice(&tail);
            let _ = decode_chunks(data.chunks(3));
        }

        #[test]
        fn mutated_member_never_panics_or_succeeds_with_wrong_data(
            pos in any::<usize>(),
            byte in any::<u8>(),
        ) {
            let data = sample(500);
            let mut gz = crafted(&data, ALL_FLAGS);
            let pos = pos % gz.len();
            gz[pos] = byte;
            if let Ok((out, _)) = decode_all(&gz) {
                prop_assert_eq!(out, data);
            }
        }

        #[test]
        fn round_trip_random_data_random_chunks(
            data in proptest::collection::vec(any::<u8>(), 0..5000),
            chunk in 1usize..300,
        ) {
            let gz = gzip(&data);
            let (out, _) = decode_chunks(gz.chunks(chunk)).unwrap();
            prop_assert_eq!(out, data);
        }
    }
}
