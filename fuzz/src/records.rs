//! The `records` target: the record splitter. The records found never depend on how
//! the input is chunked or where the consumer stops, and match a simple whole-input
//! reference.

use std::ops::ControlFlow;

use arbitrary::Unstructured;
use dap_proto::records::{RecordError, RecordKind, RecordSplitter};

use crate::input::{byte, pieces_at, rest, split_points, take};

/// The records of the whole input found the plainest way: cut at each newline outside
/// quotes (CSV only), dropping a `\r` before it.
fn reference_records(
    kind: RecordKind,
    max_len: usize,
    input: &[u8],
) -> (Vec<Vec<u8>>, Option<RecordError>) {
    let too_long = Some(RecordError::TooLong { limit: max_len });
    let mut records = Vec::new();
    let mut start = 0;
    let mut in_quotes = false;
    for (i, &b) in input.iter().enumerate() {
        in_quotes ^= kind == RecordKind::Csv && b == b'"';
        if b != b'\n' || in_quotes {
            continue;
        }
        let record = &input[start..i];
        if record.len() > max_len {
            return (records, too_long);
        }
        records.push(record.strip_suffix(b"\r").unwrap_or(record).to_vec());
        start = i + 1;
    }
    let last = &input[start..];
    if last.len() > max_len {
        (records, too_long)
    } else if in_quotes {
        (records, Some(RecordError::UnterminatedQuote))
    } else {
        if !last.is_empty() {
            records.push(last.to_vec());
        }
        (records, None)
    }
}

fn split_records(
    kind: RecordKind,
    max_len: usize,
    pieces: &[&[u8]],
    break_every: usize,
) -> (Vec<Vec<u8>>, Option<RecordError>) {
    let mut s = RecordSplitter::new(kind).with_max_record_len(max_len);
    let mut out: Vec<Vec<u8>> = Vec::new();
    let mut since_break = 0usize;
    let mut emit = |r: &[u8]| {
        assert!(!r.ends_with(b"\n"));
        out.push(r.to_vec());
        since_break += 1;
        if break_every > 0 && since_break >= break_every {
            since_break = 0;
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    };
    for piece in pieces {
        let mut chunk: &[u8] = piece;
        loop {
            match s.push(chunk, &mut emit) {
                Ok(ControlFlow::Break(())) => chunk = &[], // resume the kept rest
                Ok(ControlFlow::Continue(())) => break,
                Err(e) => {
                    assert_eq!(s.push(b"x", &mut emit).err(), Some(e.clone()));
                    return (out, Some(e));
                }
            }
        }
        assert!(s.buffered_len() <= max_len.saturating_add(piece.len()));
    }
    // Drain what an early stop kept, then finish (`finish` consumes the splitter, so
    // a stop inside it would end the input for good).
    loop {
        match s.push(&[], &mut emit) {
            Ok(ControlFlow::Break(())) => {}
            Ok(ControlFlow::Continue(())) => break,
            Err(e) => return (out, Some(e)),
        }
    }
    match s.finish(&mut emit) {
        Ok(_) => (out, None),
        Err(e) => (out, Some(e)),
    }
}

/// The record splitter: the records found never depend on how the input is chunked
/// or where the consumer stops, and match a simple whole-input reference.
///
/// # Panics
/// When they do not.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let flags = byte(&mut u);
    let kind = if flags & 1 == 0 {
        RecordKind::Lines
    } else {
        RecordKind::Csv
    };
    let max_len = [0usize, 1, 3, 16, 64, 1000, usize::MAX, 8][usize::from((flags >> 1) & 7)];
    let break_every = usize::from(flags >> 4);
    let split_seed: Vec<u8> = take(&mut u, 17).to_vec();
    let input = rest(&mut u);
    let mut su = Unstructured::new(&split_seed);
    let splits = split_points(&mut su, input.len());
    let pieces = pieces_at(input, &splits);
    let reference = reference_records(kind, max_len, input);
    let whole = split_records(kind, max_len, &[input], 0);
    assert_eq!(whole, reference, "splitter differs from the reference");
    let split = split_records(kind, max_len, &pieces, 0);
    assert_eq!(split, reference, "chunking changed the records");
    if break_every > 0 {
        let stopped = split_records(kind, max_len, &pieces, break_every);
        // Stopping early may report a too-long record only once it is reached, but
        // never changes the records before it.
        assert_eq!(stopped, reference, "early stops changed the records");
    }
}
