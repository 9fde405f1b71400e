//! The `gzip` target: the streaming gzip decoder. Chunking never changes the result;
//! valid streams decode exactly; whatever it accepts, flate2 decodes to the same bytes.

use std::io::Read as _;

use arbitrary::Unstructured;
use dap_proto::gzip::GzipDecoder;

use crate::input::{byte, gz_encode, pieces_at, rest, split_points, take, u16le};
use crate::oracles::{GzResult, same_gzip_result};

fn gz_decode(pieces: &[&[u8]], verify_only: bool) -> GzResult {
    let mut d = GzipDecoder::new();
    let mut out = Vec::new();
    for piece in pieces {
        let r = if verify_only {
            d.verify(piece)
        } else {
            d.feed(piece, |b| {
                assert!(b.len() <= 64 * 1024);
                out.extend_from_slice(b);
            })
        };
        if let Err(e) = r {
            // Poisoned: the same error again, and from finish.
            assert_eq!(d.verify(b"\x1f\x8b").err(), Some(e.clone()));
            assert_eq!(d.finish().err(), Some(e.clone()));
            return (out, Err(e));
        }
    }
    (out, d.finish())
}

/// The streaming gzip decoder: chunking never changes the result; valid streams decode
/// exactly; whatever it accepts, flate2 decodes to the same bytes.
///
/// # Panics
/// When it does not.
pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mode = byte(&mut u);
    let corrupt_at = u16le(&mut u);
    let corrupt_with = byte(&mut u);
    let split_seed: Vec<u8> = take(&mut u, 17).to_vec();
    let payload = rest(&mut u);
    let (compressed, valid_plain) = match mode & 3 {
        0 => (payload.to_vec(), None),
        1 => {
            // Bit 2 repeats the payload past the decoder's 256 KiB buffer and 64 KiB
            // sink pieces, so their boundaries fall everywhere.
            let plain = match mode & 4 {
                0 => payload.to_vec(),
                _ => payload.repeat((300_000 / payload.len().max(1)).min(300_000)),
            };
            (gz_encode(&plain, u32::from(mode >> 4) % 10), Some(plain))
        }
        2 => {
            let cut = usize::from(corrupt_at) % (payload.len() + 1);
            let mut v = gz_encode(&payload[..cut], 1);
            v.extend_from_slice(&gz_encode(b"", 6));
            v.extend_from_slice(&gz_encode(&payload[cut..], 9));
            (v, Some(payload.to_vec()))
        }
        _ => {
            let mut v = gz_encode(payload, 6);
            if !v.is_empty() {
                let at = usize::from(corrupt_at) % v.len();
                v[at] ^= corrupt_with | 1;
            }
            (v, None)
        }
    };
    let mut su = Unstructured::new(&split_seed);
    let splits = split_points(&mut su, compressed.len());
    let whole = gz_decode(&[&compressed], false);
    let pieces = pieces_at(&compressed, &splits);
    let split = gz_decode(&pieces, false);
    same_gzip_result(&whole, &split, "chunking changed the gzip result");
    let verified = gz_decode(&pieces, true);
    same_gzip_result(
        &(Vec::new(), whole.1.clone()),
        &verified,
        "verify and decode disagree",
    );
    if compressed.len() <= 1024 {
        let bytewise: Vec<&[u8]> = compressed.chunks(1).collect();
        same_gzip_result(&whole, &gz_decode(&bytewise, false), "byte-by-byte differs");
    }
    if let Some(plain) = valid_plain {
        let summary = whole.1.as_ref().expect("valid gzip refused");
        assert_eq!(whole.0, plain);
        assert_eq!(summary.decompressed_bytes, plain.len() as u64);
        assert_eq!(summary.compressed_bytes, compressed.len() as u64);
    }
    if let Ok(summary) = &whole.1 {
        assert_eq!(summary.decompressed_bytes, whole.0.len() as u64);
        let mut theirs = Vec::new();
        let r = flate2::read::MultiGzDecoder::new(compressed.as_slice()).read_to_end(&mut theirs);
        if r.is_ok() {
            assert_eq!(theirs, whole.0, "flate2 decodes differently");
        }
    }
}
