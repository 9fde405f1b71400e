//! Unit tests of the gzip decoder.

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
    assert_eq!(
        max, SINK_CHUNK,
        "a large member reaches the sink in full 64 KiB pieces"
    );
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
