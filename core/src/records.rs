//! Push-based record splitter for decompressed DAP output.
//!
//! DAP exports are newline-delimited: JSON Lines and TSV end every record
//! with `\n` (TSV escapes embedded newlines, so a raw newline always ends a
//! record), while CSV follows RFC 4180, where a newline inside a
//! double-quoted field belongs to the field. [`RecordSplitter`] takes
//! decompressed bytes in chunks of any size and emits each complete record,
//! without its `\n` or `\r\n` terminator, as one contiguous slice. Records
//! that lie wholly inside a chunk are emitted straight from the chunk; only
//! a record spanning chunks is copied into an internal buffer, which is
//! bounded by a configurable maximum record length.
//!
//! The emit callback returns [`ControlFlow`]: returning
//! [`ControlFlow::Break`] stops the current call early, and the unprocessed
//! rest of the chunk is kept, so a later [`RecordSplitter::push`] or
//! [`RecordSplitter::finish`] resumes exactly after the last emitted record.

use std::ops::ControlFlow;

use thiserror::Error;

/// Default maximum record length: 64 MiB.
pub const DEFAULT_MAX_RECORD_LEN: usize = 64 * 1024 * 1024;

/// How records are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordKind {
    /// JSON Lines and TSV: every `\n` ends a record; a `\r` right before it
    /// is stripped too.
    Lines,
    /// RFC 4180 CSV: a `\n` ends a record unless it is inside a
    /// double-quoted field (`""` inside quotes is an escaped quote).
    Csv,
}

/// An error found while splitting records.
///
/// After an error the splitter is poisoned and returns it again.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RecordError {
    /// A record is longer than the configured maximum (its bytes before the
    /// terminating `\n`, a `\r` included).
    #[error("record longer than the limit of {limit} bytes")]
    TooLong {
        /// The configured maximum record length.
        limit: usize,
    },
    /// The CSV input ended inside a double-quoted field.
    #[error("CSV input ended inside a quoted field")]
    UnterminatedQuote,
}

/// Splits a stream of decompressed bytes into records.
#[derive(Debug, Clone)]
pub struct RecordSplitter {
    kind: RecordKind,
    max_len: usize,
    /// The start of a record that began in an earlier chunk; after an early
    /// stop (`rescan`), unprocessed bytes that may hold several records.
    partial: Vec<u8>,
    /// CSV: whether the scanned bytes of the current record end inside
    /// quotes.
    in_quotes: bool,
    /// `partial` holds unscanned bytes left by an early stop.
    rescan: bool,
    failed: Option<RecordError>,
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Flags (high bit set) the bytes of `v` that are zero; the lowest flagged
/// byte is always a true zero byte.
#[inline]
const fn zero_bytes(v: u64) -> u64 {
    v.wrapping_sub(LO) & !v & HI
}

/// Position of the first byte of `hay` equal to `a` or `b` (word at a time).
#[inline]
fn find2(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    let va = u64::from(a).wrapping_mul(LO);
    let vb = u64::from(b).wrapping_mul(LO);
    let mut words = hay.chunks_exact(8);
    let mut base = 0usize;
    for word in &mut words {
        let Ok(bytes) = <[u8; 8]>::try_from(word) else {
            break;
        };
        let w = u64::from_le_bytes(bytes);
        let hits = zero_bytes(w ^ va) | zero_bytes(w ^ vb);
        if hits != 0 {
            let offset = usize::try_from(hits.trailing_zeros() / 8).unwrap_or(0);
            return Some(base.saturating_add(offset));
        }
        base = base.saturating_add(8);
    }
    words
        .remainder()
        .iter()
        .position(|&c| c == a || c == b)
        .map(|p| base.saturating_add(p))
}

/// Strips one trailing `\r`.
fn strip_cr(record: &[u8]) -> &[u8] {
    record.strip_suffix(b"\r").unwrap_or(record)
}

impl RecordSplitter {
    /// Creates a splitter for `kind` with the default maximum record length
    /// ([`DEFAULT_MAX_RECORD_LEN`]).
    #[must_use]
    pub const fn new(kind: RecordKind) -> Self {
        Self {
            kind,
            max_len: DEFAULT_MAX_RECORD_LEN,
            partial: Vec::new(),
            in_quotes: false,
            rescan: false,
            failed: None,
        }
    }

    /// Sets the maximum record length in bytes (counted before the `\n`).
    #[must_use]
    pub const fn with_max_record_len(mut self, max_len: usize) -> Self {
        self.max_len = max_len;
        self
    }

    /// The kind of records this splitter finds.
    #[must_use]
    pub const fn kind(&self) -> RecordKind {
        self.kind
    }

    /// Number of bytes currently held in the internal buffer.
    #[must_use]
    pub fn buffered_len(&self) -> usize {
        self.partial.len()
    }

    /// Splits `chunk`, calling `emit` with every record it completes.
    ///
    /// Returns `Ok(ControlFlow::Break(b))` as soon as `emit` breaks with `b`;
    /// the rest of the chunk is kept and processed by the next call.
    ///
    /// # Errors
    ///
    /// [`RecordError::TooLong`] if a record exceeds the maximum length. The
    /// splitter is then poisoned.
    pub fn push<B>(
        &mut self,
        chunk: &[u8],
        mut emit: impl FnMut(&[u8]) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, RecordError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        let result = self.push_inner(chunk, &mut emit);
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    /// Ends the input, emitting a final unterminated record if it is
    /// non-empty (as is: no `\r` is stripped without a `\n`).
    ///
    /// # Errors
    ///
    /// [`RecordError::UnterminatedQuote`] if CSV input ends inside quotes,
    /// [`RecordError::TooLong`], or the error that poisoned the splitter.
    pub fn finish<B>(
        mut self,
        mut emit: impl FnMut(&[u8]) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, RecordError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        if let ControlFlow::Break(b) = self.resume(&mut emit)? {
            return Ok(ControlFlow::Break(b));
        }
        if self.in_quotes {
            return Err(RecordError::UnterminatedQuote);
        }
        if self.partial.is_empty() {
            Ok(ControlFlow::Continue(()))
        } else {
            Ok(emit(&self.partial))
        }
    }

    fn push_inner<B>(
        &mut self,
        chunk: &[u8],
        emit: &mut impl FnMut(&[u8]) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, RecordError> {
        if let ControlFlow::Break(b) = self.resume(emit)? {
            // Still stopped: keep the new chunk behind the unprocessed bytes.
            self.partial.extend_from_slice(chunk);
            self.rescan = !self.partial.is_empty();
            return Ok(ControlFlow::Break(b));
        }
        self.process(chunk, emit)
    }

    /// Processes bytes left unscanned by an early stop, if any.
    fn resume<B>(
        &mut self,
        emit: &mut impl FnMut(&[u8]) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, RecordError> {
        if !self.rescan {
            return Ok(ControlFlow::Continue(()));
        }
        self.rescan = false;
        self.in_quotes = false;
        let tail = std::mem::take(&mut self.partial);
        let flow = self.process(&tail, emit);
        if self.partial.is_empty() && !self.rescan {
            // Keep the larger allocation.
            let mut tail = tail;
            tail.clear();
            self.partial = tail;
        }
        flow
    }

    /// Finds the `\n` ending the current record in `data`, updating the CSV
    /// quote state for the bytes scanned.
    fn find_end(&mut self, data: &[u8]) -> Option<usize> {
        match self.kind {
            RecordKind::Lines => find2(data, b'\n', b'\n'),
            RecordKind::Csv => {
                let mut pos = 0usize;
                loop {
                    let rest = data.get(pos..)?;
                    let found = if self.in_quotes {
                        find2(rest, b'"', b'"')
                    } else {
                        find2(rest, b'"', b'\n')
                    };
                    let at = found?.saturating_add(pos);
                    if data.get(at) == Some(&b'"') {
                        // `""` inside quotes toggles out and straight back in.
                        self.in_quotes = !self.in_quotes;
                        pos = at.saturating_add(1);
                    } else {
                        return Some(at);
                    }
                }
            }
        }
    }

    fn append_partial(&mut self, piece: &[u8]) -> Result<(), RecordError> {
        if self.partial.len().saturating_add(piece.len()) > self.max_len {
            return Err(RecordError::TooLong {
                limit: self.max_len,
            });
        }
        self.partial.extend_from_slice(piece);
        Ok(())
    }

    fn process<B>(
        &mut self,
        data: &[u8],
        emit: &mut impl FnMut(&[u8]) -> ControlFlow<B>,
    ) -> Result<ControlFlow<B>, RecordError> {
        let mut rest = data;
        loop {
            let Some(nl) = self.find_end(rest) else {
                self.append_partial(rest)?;
                return Ok(ControlFlow::Continue(()));
            };
            let (body, after) = rest.split_at(nl.min(rest.len()));
            let after = after.get(1..).unwrap_or_default();
            let flow = if self.partial.is_empty() {
                if body.len() > self.max_len {
                    return Err(RecordError::TooLong {
                        limit: self.max_len,
                    });
                }
                emit(strip_cr(body))
            } else {
                self.append_partial(body)?;
                let flow = emit(strip_cr(&self.partial));
                self.partial.clear();
                flow
            };
            rest = after;
            if let ControlFlow::Break(b) = flow {
                self.partial.extend_from_slice(rest);
                self.rescan = !rest.is_empty();
                return Ok(ControlFlow::Break(b));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Straightforward whole-input reference splitter.
    fn reference(kind: RecordKind, input: &[u8]) -> Result<Vec<Vec<u8>>, RecordError> {
        let mut out = Vec::new();
        let mut cur = Vec::new();
        let mut quoted = false;
        for &b in input {
            match b {
                b'"' if kind == RecordKind::Csv => {
                    quoted = !quoted;
                    cur.push(b);
                }
                b'\n' if !quoted => {
                    if cur.last() == Some(&b'\r') {
                        cur.pop();
                    }
                    out.push(std::mem::take(&mut cur));
                }
                _ => cur.push(b),
            }
        }
        if quoted {
            return Err(RecordError::UnterminatedQuote);
        }
        if !cur.is_empty() {
            out.push(cur);
        }
        Ok(out)
    }

    fn split_chunks<'a>(
        mut s: RecordSplitter,
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<Vec<u8>>, RecordError> {
        let mut out = Vec::new();
        let mut emit = |r: &[u8]| {
            out.push(r.to_vec());
            ControlFlow::<()>::Continue(())
        };
        for c in chunks {
            let _ = s.push(c, &mut emit)?;
        }
        let _ = s.finish(&mut emit)?;
        Ok(out)
    }

    fn split(kind: RecordKind, chunks: &[&[u8]]) -> Result<Vec<Vec<u8>>, RecordError> {
        split_chunks(RecordSplitter::new(kind), chunks.iter().copied())
    }

    fn strs(v: &[Vec<u8>]) -> Vec<&str> {
        v.iter().map(|r| std::str::from_utf8(r).unwrap()).collect()
    }

    const JSONL: &[u8] = b"{\"a\":1}\n{\"b\":\"x\\ny\"}\r\n\n{\"c\":3}\r\nlast";
    const TSV: &[u8] = b"1\tfoo\\nbar\t\\N\r\n2\tbaz\t\n";
    const CSV: &[u8] =
        b"id,text\r\n1,\"multi\nline\"\r\n2,\"say \"\"hi\"\"\n\"\"quoted\"\" \r\n\"\n3,\"\",x\n4,\"a,b\"";

    #[test]
    fn lines_basic() {
        let r = split(RecordKind::Lines, &[JSONL]).unwrap();
        assert_eq!(
            strs(&r),
            ["{\"a\":1}", "{\"b\":\"x\\ny\"}", "", "{\"c\":3}", "last"]
        );
        let r = split(RecordKind::Lines, &[TSV]).unwrap();
        assert_eq!(strs(&r), ["1\tfoo\\nbar\t\\N", "2\tbaz\t"]);
    }

    #[test]
    fn csv_quotes_and_crlf() {
        let r = split(RecordKind::Csv, &[CSV]).unwrap();
        assert_eq!(
            strs(&r),
            [
                "id,text",
                "1,\"multi\nline\"",
                "2,\"say \"\"hi\"\"\n\"\"quoted\"\" \r\n\"",
                "3,\"\",x",
                "4,\"a,b\"",
            ]
        );
    }

    #[test]
    fn every_split_point_and_byte_by_byte() {
        for (kind, input) in [
            (RecordKind::Lines, JSONL),
            (RecordKind::Lines, TSV),
            (RecordKind::Csv, CSV),
        ] {
            let expected = reference(kind, input).unwrap();
            for i in 0..=input.len() {
                let (a, b) = input.split_at(i);
                assert_eq!(split(kind, &[a, b]).unwrap(), expected, "split {i}");
                for j in i..=input.len() {
                    let (b, c) = b.split_at(j - i);
                    assert_eq!(split(kind, &[a, b, c]).unwrap(), expected);
                }
            }
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(split(kind, &bytes).unwrap(), expected);
        }
    }

    #[test]
    fn no_copy_when_record_inside_chunk() {
        let input = b"abc\ndef\n";
        let mut s = RecordSplitter::new(RecordKind::Lines);
        let mut ptrs = Vec::new();
        let _ = s.push(input, |r| {
            ptrs.push(r.as_ptr());
            ControlFlow::<()>::Continue(())
        });
        assert_eq!(ptrs, [input.as_ptr(), input[4..].as_ptr()]);
        assert_eq!(s.buffered_len(), 0);
    }

    #[test]
    fn empty_and_terminator_only_inputs() {
        assert!(split(RecordKind::Lines, &[]).unwrap().is_empty());
        assert!(split(RecordKind::Csv, &[b""]).unwrap().is_empty());
        assert_eq!(split(RecordKind::Lines, &[b"\n"]).unwrap(), [b""]);
        assert_eq!(split(RecordKind::Lines, &[b"\r\n\r\n"]).unwrap().len(), 2);
        // A lone final `\r` without `\n` is kept.
        assert_eq!(split(RecordKind::Lines, &[b"a\r"]).unwrap(), [b"a\r"]);
    }

    #[test]
    fn unterminated_quote_is_error() {
        assert_eq!(
            split(RecordKind::Csv, &[b"1,\"open\n2,3\n"]),
            Err(RecordError::UnterminatedQuote)
        );
        // Quotes mean nothing to Lines.
        assert_eq!(split(RecordKind::Lines, &[b"1,\"open\n"]).unwrap().len(), 1);
    }

    #[test]
    fn max_record_len() {
        let s = RecordSplitter::new(RecordKind::Lines).with_max_record_len(4);
        assert_eq!(
            split_chunks(s.clone(), [&b"abcd\nab"[..], b"cd\n"]).unwrap(),
            [b"abcd", b"abcd"]
        );
        let too_long = RecordError::TooLong { limit: 4 };
        for chunks in [&[&b"abcde\n"[..]][..], &[b"ab", b"cde\n"], &[b"abcdefgh"]] {
            assert_eq!(
                split_chunks(s.clone(), chunks.iter().copied()).unwrap_err(),
                too_long
            );
        }
        let mut s2 = s.clone();
        let mut emit = |_: &[u8]| ControlFlow::<()>::Continue(());
        for _ in 0..4 {
            assert!(s2.push(b"a", &mut emit).is_ok());
        }
        assert_eq!(s2.push(b"a", &mut emit).unwrap_err(), too_long);
        // Poisoned.
        assert_eq!(s2.push(b"\n", &mut emit).unwrap_err(), too_long);
        assert_eq!(s2.finish(&mut emit).unwrap_err(), too_long);
        assert_eq!(RecordSplitter::new(RecordKind::Csv).kind(), RecordKind::Csv);
        assert_eq!(
            split_chunks(
                RecordSplitter::new(RecordKind::Csv).with_max_record_len(6),
                [&b"\"a\nb\nc\nd\"\n"[..]]
            ),
            Err(RecordError::TooLong { limit: 6 })
        );
    }

    #[test]
    fn early_stop_resumes_where_it_stopped() {
        for (kind, input) in [(RecordKind::Lines, JSONL), (RecordKind::Csv, CSV)] {
            let expected = reference(kind, input).unwrap();
            for chunk in [1, 3, 7, input.len()] {
                // Stop after every single record, then carry on.
                let mut s = RecordSplitter::new(kind);
                let mut out: Vec<Vec<u8>> = Vec::new();
                let stop = |r: &[u8], out: &mut Vec<Vec<u8>>| {
                    out.push(r.to_vec());
                    ControlFlow::Break(out.len())
                };
                for c in input.chunks(chunk) {
                    let mut flow = s.push(c, |r| stop(r, &mut out)).unwrap();
                    while flow.is_break() {
                        flow = s.push(b"", |r| stop(r, &mut out)).unwrap();
                    }
                }
                let _ = s
                    .finish(|r| {
                        out.push(r.to_vec());
                        ControlFlow::<()>::Continue(())
                    })
                    .unwrap();
                assert_eq!(out, expected, "kind {kind:?} chunk {chunk}");
            }
        }
    }

    #[test]
    fn break_value_is_returned() {
        let mut s = RecordSplitter::new(RecordKind::Lines);
        let flow = s
            .push(b"a\nb\nc\n", |r| {
                if r == b"b" {
                    ControlFlow::Break("found b")
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert_eq!(flow, ControlFlow::Break("found b"));
        let mut rest = Vec::new();
        let _ = s.finish(|r| {
            rest.push(r.to_vec());
            ControlFlow::<()>::Continue(())
        });
        assert_eq!(rest, [b"c"]);
    }

    #[test]
    fn find2_matches_naive() {
        let hay: Vec<u8> = (0..200u8).map(|i| i.wrapping_mul(37)).collect();
        for a in [0u8, 1, 37, 74, 128, 255, b'\n', b'"'] {
            for start in 0..20 {
                let h = &hay[start..];
                assert_eq!(find2(h, a, a), h.iter().position(|&c| c == a));
                assert_eq!(
                    find2(h, a, b'"'),
                    h.iter().position(|&c| c == a || c == b'"')
                );
            }
        }
    }

    fn kind_strategy() -> impl Strategy<Value = RecordKind> {
        prop_oneof![Just(RecordKind::Lines), Just(RecordKind::Csv)]
    }

    proptest! {
        #![proptest_config(crate::proptest_config(256))]

        #[test]
        fn matches_reference_for_any_chunking(
            kind in kind_strategy(),
            input in proptest::collection::vec(
                prop_oneof![Just(b'\n'), Just(b'\r'), Just(b'"'), Just(b','), Just(b'a'), any::<u8>()],
                0..400,
            ),
            cuts in proptest::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (input.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks = Vec::new();
            let mut prev = 0;
            for c in cuts {
                chunks.push(&input[prev..c]);
                prev = c;
            }
            chunks.push(&input[prev..]);
            prop_assert_eq!(split(kind, &chunks), reference(kind, &input));
        }

        #[test]
        fn arbitrary_bytes_small_limit_never_panic(
            kind in kind_strategy(),
            input in proptest::collection::vec(any::<u8>(), 0..300),
            limit in 0usize..20,
            chunk in 1usize..50,
        ) {
            let s = RecordSplitter::new(kind).with_max_record_len(limit);
            if let Ok(records) = split_chunks(s, input.chunks(chunk)) {
                prop_assert!(records.iter().all(|r| r.len() <= limit));
            }
        }
    }
}
