//! Throughput of `GzipDecoder` vs `flate2::read::MultiGzDecoder` on ~64 MiB
//! of JSON lines compressed at level 6, fed in 64 KiB chunks.
//!
//! Run with `cargo bench --bench gzip`.
#![allow(clippy::disallowed_methods)] // a benchmark measures wall time

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use dap_proto::gzip::GzipDecoder;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

const TARGET: usize = 64 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;
const ROUNDS: usize = 9;

/// Deterministic pseudo-random JSON lines resembling DAP `jsonl` output.
fn json_lines(target: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let words = [
        "active",
        "deleted",
        "completed",
        "unpublished",
        "submitted",
        "graded",
        "pending_review",
        "online_text_entry",
        "online_upload",
        "discussion_topic",
        "none",
        "Introduction to Biology",
        "Week 3 Quiz",
        "Final Project",
        "Lab Report",
        "Reading Response",
    ];
    let mut out = Vec::with_capacity(target + 1024);
    while out.len() < target {
        let id = next() % 10_000_000;
        let course = next() % 50_000;
        let user = next() % 5_000_000;
        let w1 = words[(next() % words.len() as u64) as usize];
        let w2 = words[(next() % words.len() as u64) as usize];
        let score = (next() % 10_000) as f64 / 100.0;
        let day = 1 + next() % 28;
        let sec = next() % 86_400;
        writeln!(
            out,
            r#"{{"key":{{"id":{id}}},"value":{{"course_id":{course},"user_id":{user},"workflow_state":"{w1}","title":"{w2}","score":{score},"submission_type":"{w1}","created_at":"2024-03-{day:02}T{:02}:{:02}:{:02}.000Z","updated_at":"2024-04-{day:02}T{:02}:{:02}:{:02}.000Z","attempt":{},"late":{}}},"meta":{{"ts":"2024-04-{day:02}T00:00:00Z","action":"U"}}}}"#,
            sec / 3600, sec / 60 % 60, sec % 60,
            (sec + 7) / 3600 % 24, (sec + 7) / 60 % 60, (sec + 7) % 60,
            next() % 5, next() % 2 == 0
        )
        .unwrap();
    }
    out
}

fn report(name: &str, bytes: usize, times: &mut [Duration]) {
    times.sort();
    let mbps = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    println!(
        "{name:<38} best {:>7.1} MB/s   median {:>7.1} MB/s   ({} rounds)",
        mbps(times[0]),
        mbps(times[times.len() / 2]),
        times.len()
    );
}

fn main() {
    let plain = json_lines(TARGET);
    let mut enc = GzEncoder::new(Vec::new(), Compression::new(6));
    enc.write_all(&plain).unwrap();
    let gz = enc.finish().unwrap();
    println!(
        "input: {} bytes JSON lines -> {} bytes gzip (level 6, ratio {:.2}), fed in {} KiB chunks",
        plain.len(),
        gz.len(),
        plain.len() as f64 / gz.len() as f64,
        CHUNK / 1024
    );
    let n = plain.len();

    let mut verify = Vec::new();
    let mut sink = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..ROUNDS {
        // GzipDecoder, verification only.
        let t = Instant::now();
        let mut d = GzipDecoder::new();
        for chunk in gz.chunks(CHUNK) {
            d.verify(black_box(chunk)).unwrap();
        }
        let s = d.finish().unwrap();
        verify.push(t.elapsed());
        assert_eq!(s.decompressed_bytes, n as u64);

        // GzipDecoder, sink touching every output chunk.
        let t = Instant::now();
        let mut d = GzipDecoder::new();
        let mut total = 0usize;
        let mut last = 0u8;
        for chunk in gz.chunks(CHUNK) {
            d.feed(black_box(chunk), |out| {
                total += out.len();
                last ^= out[out.len() - 1];
            })
            .unwrap();
        }
        d.finish().unwrap();
        black_box(last);
        sink.push(t.elapsed());
        assert_eq!(total, n);

        // Baseline: flate2's MultiGzDecoder reading into a 64 KiB buffer.
        let t = Instant::now();
        let mut r = MultiGzDecoder::new(&gz[..]);
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0usize;
        loop {
            let k = r.read(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            total += k;
            black_box(&buf[..k]);
        }
        baseline.push(t.elapsed());
        assert_eq!(total, n);
    }
    println!("decompressed MB/s (10^6 bytes of output per second):");
    report("GzipDecoder::verify", n, &mut verify);
    report("GzipDecoder::feed (sink reads output)", n, &mut sink);
    report("flate2::read::MultiGzDecoder (baseline)", n, &mut baseline);
}
