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

/// Size of the reused internal output buffer that inflate writes into.
///
/// Inflate copies the last 32 KiB of every call's output into its window, so the
/// larger the buffer, the smaller that share: 256 KiB inflates 10-14% faster than
/// 64 KiB on DAP-like jsonl and tsv (`bench/inflate.sh`), and 512 KiB adds 2%.
const OUT_BUF_LEN: usize = 256 * 1024;

/// Largest piece of output handed to a sink at once.
const SINK_CHUNK: usize = 64 * 1024;

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
/// The decoder owns one 256 KiB output buffer that is reused for every call,
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
                for piece in chunk.chunks(SINK_CHUNK) {
                    sink(piece);
                }
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
mod tests;
