//! Inflate engines on DAP-like gzip objects, one engine per process so that each one's
//! peak memory is its own. `bench/inflate.sh` generates the data, builds this binary
//! twice (dap-proto on zlib-rs, and on zlib-ng) and alternates the engines.
//!
//! ```text
//! dap-inflate-bench gen jsonl|tsv MIB           writes MIB MiB of records to stdout
//! dap-inflate-bench run ENGINE FILE.gz [CHUNK]   inflates FILE.gz once; prints one TSV line:
//!     engine  file  inflated_bytes  wall_s  cpu_s  peak_extra_kib
//! ```
//!
//! Engines: `dap` (dap-proto's streaming `GzipDecoder::verify`, on whichever backend this
//! binary was built with, fed CHUNK bytes at a time, default 64 KiB), `isal` (ISA-L's
//! igzip through `isal-rs`'s streaming reader, 256 KiB reads; it checks CRC32 and ISIZE
//! itself), `libdeflate` (whole member: the compressed object and the whole inflated
//! member in memory, single-member files only; the time includes the first touch of
//! the output buffer), `libdeflate-warm` (the same with the buffer touched before the
//! clock starts), `crc32` (the CRC dap-proto uses, `flate2::Crc`, over as many bytes as
//! the file inflates to, one cache-resident 256 KiB piece at a time as in the decoder:
//! the CRC's share of the others).
//!
//! CPU time is the thread's own (`/proc/thread-self/schedstat`), so other processes on
//! the machine do not inflate it; peak memory is the rise of the process's peak RSS
//! above its RSS once the input is loaded (`/proc/self/clear_refs` resets the peak).
#![forbid(unsafe_code)]
#![allow(clippy::disallowed_methods)] // a benchmark reads the clock

use std::hint::black_box;
use std::io::{Read, Write};
use std::time::Instant;

/// Output buffer of the ISA-L reader and piece size of the crc32 engine (the size of
/// dap-proto's own inflate buffer).
const OUT: usize = 256 * 1024;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    match arg(0) {
        "gen" => {
            let mib: usize = arg(2).parse().expect("MIB");
            let data = generate(arg(1), mib << 20);
            std::io::stdout().write_all(&data).expect("stdout");
        }
        "run" => {
            let chunk = arg(3).parse().unwrap_or(OUT);
            run(arg(1), arg(2), chunk);
        }
        "backend" => println!("{}", backend()),
        _ => {
            eprintln!(
                "usage: dap-inflate-bench gen jsonl|tsv MIB | run ENGINE FILE [CHUNK] | backend"
            );
            std::process::exit(2);
        }
    }
}

/// The flate2 backend dap-proto was built on.
const fn backend() -> &'static str {
    if cfg!(feature = "zlib-ng") {
        "zlib-ng"
    } else {
        "zlib-rs"
    }
}

fn run(engine: &str, file: &str, chunk: usize) {
    let gz = std::fs::read(file).expect("input file");
    // The crc32 engine measures the CRC alone: inflate first, untimed.
    let plain = (engine == "crc32").then(|| inflate_isal(&gz, true).1);
    let base_kib = reset_peak();
    // libdeflate-warm: the output buffer is allocated and touched before the clock
    // starts (libdeflate's decoding alone; its memory still counts).
    let mut warm = (engine == "libdeflate-warm").then(|| vec![1u8; member_size(&gz)]);
    let cpu0 = thread_cpu_ns();
    let t0 = Instant::now();
    let (name, bytes) = match engine {
        "dap" => (format!("dap/{}", backend()), inflate_dap(&gz, chunk)),
        "isal" => ("isal".to_owned(), inflate_isal(&gz, false).0),
        "libdeflate" => ("libdeflate".to_owned(), {
            let mut out = vec![0u8; member_size(&gz)];
            inflate_libdeflate(&gz, &mut out)
        }),
        "libdeflate-warm" => ("libdeflate-warm".to_owned(), {
            inflate_libdeflate(&gz, warm.as_deref_mut().unwrap_or_default())
        }),
        "crc32" => {
            let plain = plain.as_deref().unwrap_or_default();
            // In the decoder the CRC reads each piece of output right after inflate wrote
            // it, from the cache: so here, one cache-resident piece over and over.
            let piece = plain.get(..OUT.min(plain.len())).unwrap_or_default();
            let mut h = flate2::Crc::new();
            for _ in 0..plain.len() / piece.len().max(1) {
                h.update(black_box(piece));
            }
            black_box(h.sum());
            ("crc32".to_owned(), plain.len() as u64)
        }
        other => panic!("unknown engine {other}"),
    };
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (thread_cpu_ns() - cpu0) as f64 / 1e9;
    let peak = peak_kib().saturating_sub(base_kib);
    println!("{name}\t{file}\t{bytes}\t{wall:.6}\t{cpu:.6}\t{peak}");
}

/// dap-proto's decoder, as the transfers use it: chunks in, verification only.
fn inflate_dap(gz: &[u8], chunk: usize) -> u64 {
    let mut d = dap_proto::gzip::GzipDecoder::new();
    for c in gz.chunks(chunk) {
        d.verify(black_box(c)).expect("valid gzip");
    }
    d.finish().expect("complete gzip").decompressed_bytes
}

/// ISA-L's streaming gzip reader (multi-member; checks CRC32 and ISIZE). With
/// `keep`, also returns the inflated bytes (the crc32 engine's input).
fn inflate_isal(gz: &[u8], keep: bool) -> (u64, Vec<u8>) {
    let mut r = isal::read::GzipDecoder::new(gz);
    let mut buf = vec![0u8; OUT];
    let mut total = 0u64;
    let mut kept = Vec::new();
    loop {
        let n = r.read(&mut buf).expect("valid gzip");
        if n == 0 {
            break;
        }
        total += n as u64;
        black_box(&buf[..n]);
        if keep {
            kept.extend_from_slice(&buf[..n]);
        }
    }
    (total, kept)
}

/// The inflated size of a single-member gzip file (its ISIZE: under 4 GiB here).
fn member_size(gz: &[u8]) -> usize {
    gz.get(gz.len().saturating_sub(4)..)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .expect("gzip trailer")
}

/// libdeflate, whole member into `out` (the member's size; single member only).
fn inflate_libdeflate(gz: &[u8], out: &mut [u8]) -> u64 {
    let n = libdeflater::Decompressor::new()
        .gzip_decompress(gz, out)
        .expect("valid single-member gzip");
    black_box(&out);
    n as u64
}

fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// Resets the peak RSS to the current RSS and returns it (KiB).
fn reset_peak() -> u64 {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kib("VmRSS:")
}

fn peak_kib() -> u64 {
    status_kib("VmHWM:")
}

/// Deterministic pseudo-random DAP-like records: `jsonl` as DAP's JSON lines export
/// (key, value, meta), `tsv` as its TSV export (a header, then tab-separated fields).
fn generate(format: &str, target: usize) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const WORDS: [&str; 16] = [
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
    if format == "tsv" {
        out.extend_from_slice(b"key.id\tvalue.course_id\tvalue.user_id\tvalue.workflow_state\tvalue.title\tvalue.score\tvalue.submission_type\tvalue.created_at\tvalue.updated_at\tvalue.attempt\tvalue.late\tmeta.ts\tmeta.action\n");
    }
    while out.len() < target {
        let id = next() % 10_000_000;
        let course = next() % 50_000;
        let user = next() % 5_000_000;
        let w1 = WORDS[(next() % 16) as usize];
        let w2 = WORDS[(next() % 16) as usize];
        let score = (next() % 10_000) as f64 / 100.0;
        let day = 1 + next() % 28;
        let sec = next() % 86_400;
        let (h, m, s) = (sec / 3600, sec / 60 % 60, sec % 60);
        let attempt = next() % 5;
        let late = next() % 2 == 0;
        let created = format!("2024-03-{day:02}T{h:02}:{m:02}:{s:02}.000Z");
        let updated = format!("2024-04-{day:02}T{:02}:{m:02}:{s:02}.000Z", (h + 7) % 24);
        let ts = format!("2024-04-{day:02}T00:00:00Z");
        if format == "tsv" {
            writeln!(out, "{id}\t{course}\t{user}\t{w1}\t{w2}\t{score}\t{w1}\t{created}\t{updated}\t{attempt}\t{late}\t{ts}\tU")
        } else {
            writeln!(out, r#"{{"key":{{"id":{id}}},"value":{{"course_id":{course},"user_id":{user},"workflow_state":"{w1}","title":"{w2}","score":{score},"submission_type":"{w1}","created_at":"{created}","updated_at":"{updated}","attempt":{attempt},"late":{late}}},"meta":{{"ts":"{ts}","action":"U"}}}}"#)
        }
        .expect("in memory");
    }
    out
}
