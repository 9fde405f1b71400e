//! Replays every checked-in fuzz corpus and regression file through the same harness
//! functions the cargo-fuzz targets use, so a regression fails CI on stable without a
//! fuzzer. The `seeds_*` tests check that the seed part of each corpus is what its
//! generator makes; `DAP_REGENERATE_SEEDS=1` rewrites them instead.

use std::path::{Path, PathBuf};

use dap_proto_fuzz as harness;
use dap_proto_fuzz::parsers::ParserInput;

fn fuzz_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn replay(target: &str) {
    let mut count = 0;
    for kind in ["corpus", "regressions"] {
        for path in files(&fuzz_dir().join(kind).join(target)) {
            let data = std::fs::read(&path).expect("readable corpus file");
            let result = std::panic::catch_unwind(|| harness::run(target, &data));
            assert!(
                result.is_ok(),
                "{target}: {} failed (input {})",
                path.display(),
                harness::describe(&data)
            );
            count += 1;
        }
    }
    assert!(count > 0, "{target}: no corpus files");
}

#[test]
fn corpus_parsers() {
    replay("parsers");
}

#[test]
fn corpus_wire() {
    replay("wire");
}

#[test]
fn corpus_session() {
    replay("session");
}

#[test]
fn corpus_gzip() {
    replay("gzip");
}

#[test]
fn corpus_records() {
    replay("records");
}

#[test]
fn corpus_transfer() {
    replay("transfer");
}

#[test]
fn every_target_has_a_test() {
    for target in harness::TARGETS {
        assert!(
            fuzz_dir()
                .join("fuzz_targets")
                .join(format!("{target}.rs"))
                .exists()
        );
    }
}

/// Checks one seed against the checked-in corpus, or (re)writes it when
/// `DAP_REGENERATE_SEEDS=1` is set. Seeds are named by content, so reruns are idempotent.
fn write_seed(target: &str, name: &str, data: &[u8]) {
    let dir = fuzz_dir().join("corpus").join(target);
    let path = dir.join(format!("seed-{name}"));
    if std::env::var_os("DAP_REGENERATE_SEEDS").is_some() {
        std::fs::create_dir_all(&dir).expect("corpus dir");
        std::fs::write(&path, data).expect("seed written");
    } else {
        let stored = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate the seeds with DAP_REGENERATE_SEEDS=1",
                path.display()
            )
        });
        assert!(
            stored == data,
            "{} is stale; regenerate the seeds with DAP_REGENERATE_SEEDS=1",
            path.display()
        );
    }
}

fn gz(data: &[u8], level: u32) -> Vec<u8> {
    use std::io::Write as _;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

// The checked-in seed files are exactly what the generators below make from the
// recorded vectors and flate2; rewrite them with
// `DAP_REGENERATE_SEEDS=1 cargo test --manifest-path fuzz/Cargo.toml --test corpus seeds`.

/// parsers: every recorded response vector, with and without the body marker, and
/// storage answers.
#[test]
fn seeds_parsers() {
    let vectors = fuzz_dir().join("../core/tests/vectors");
    for path in files(&vectors) {
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let headers: Vec<(Vec<u8>, Vec<u8>)> = v["headers"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
            .map(|(k, val)| {
                (
                    k.as_bytes().to_vec(),
                    val.as_str().unwrap().as_bytes().to_vec(),
                )
            })
            .collect();
        let json = v["headers"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map_or(0, |(_, ct)| {
                if ct.as_str().unwrap().contains("json") {
                    1
                } else {
                    2
                }
            });
        let body = v["body"].as_str().unwrap().as_bytes();
        let status = v["status"].as_u64().unwrap() as u16 - 100;
        for (suffix, flags) in [("", json), ("-marked", json | 0x04)] {
            let input = ParserInput {
                selector: 4,
                status,
                flags,
                headers: headers
                    .iter()
                    .map(|(k, v)| (k.as_slice(), v.as_slice()))
                    .collect(),
                resume: 0,
                wall: 1,
                body,
            };
            write_seed("parsers", &format!("{name}{suffix}"), &input.encode());
        }
    }
    let storage = [
        (
            "storage-206",
            206u16,
            vec![("content-range", "bytes 5-14/15"), ("content-length", "10")],
        ),
        ("storage-403", 403, vec![]),
        (
            "retry-after-date",
            429,
            vec![
                ("retry-after", "Sun, 29 Nov 2026 02:00:30 GMT"),
                ("date", "Sun, 29 Nov 2026 02:00:00 GMT"),
            ],
        ),
        ("retry-after-huge", 429, vec![("retry-after", "999999999")]),
        (
            "redirect",
            302,
            vec![("location", "https://evil.example/x?sig=1")],
        ),
    ];
    for (name, status, headers) in storage {
        let input = ParserInput {
            selector: 0,
            status: status - 100,
            flags: 1,
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_bytes()))
                .collect(),
            resume: 5,
            wall: 1,
            body: b"https://b.example/a/..%2F..%2F.ssh%2Fid?X-Amz-Signature=x",
        };
        write_seed("parsers", name, &input.encode());
    }
}

/// gzip: valid streams (single, multi-member, empty), raw mode, and corrupt mode.
#[test]
fn seeds_gzip() {
    let text = b"{\"key\": {\"id\": 1}, \"value\": {\"name\": \"a\"}}\n".repeat(20);
    let mut multi = gz(&text[..300], 1);
    multi.extend_from_slice(&gz(b"", 6));
    multi.extend_from_slice(&gz(&text[300..], 9));
    for (name, mode, payload) in [
        ("raw-single", 0u8, gz(&text, 6)),
        ("raw-multi", 0, multi),
        ("raw-empty-member", 0, gz(b"", 6)),
        ("encode", 1, text.clone()),
        ("encode-two-members", 2, text.clone()),
        ("corrupt", 3, text.clone()),
    ] {
        let mut data = vec![mode, 40, 0, 0x55, 3, 10, 0, 200, 0, 77, 1];
        data.resize(4 + 17, 0);
        data.extend_from_slice(&payload);
        write_seed("gzip", name, &data);
    }
}

/// records: JSON Lines, CSV with quoted newlines, CRLF.
#[test]
fn seeds_records() {
    for (name, flags, input) in [
        ("lines", 0x0cu8, &b"{\"a\":1}\n{\"a\":2}\r\n{\"a\":3}"[..]),
        (
            "csv",
            0x0d,
            &b"id,name\n1,\"two\nlines\"\n2,\"q\"\"uote\"\r\n"[..],
        ),
        ("csv-unterminated", 0x2d, &b"1,\"open\n2,x\n"[..]),
        (
            "too-long",
            0x14,
            &b"short\nthis record is far too long\n"[..],
        ),
    ] {
        let mut data = vec![flags, 3, 5, 0, 9, 0, 20, 0];
        data.resize(1 + 17, 0);
        data.extend_from_slice(input);
        write_seed("records", name, &data);
    }
}

/// wire: responses (content-length, chunked, close-delimited, interim), split, and
/// round trips.
#[test]
fn seeds_wire() {
    for (name, flags, stream) in [
        ("content-length", 0x18u8, &b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"tables\":[]}"[..]),
        ("chunked", 0x18, &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\nTrailer: x\r\n\r\n"[..]),
        ("close", 0x18, &b"HTTP/1.0 502 Bad Gateway\r\nContent-Type: text/html\r\n\r\n<html>502</html>"[..]),
        ("interim", 0x18, &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 200 OK\r\n"[..]),
        ("head", 0x19, &b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"[..]),
        ("dup-length", 0x18, &b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx"[..]),
    ] {
        let mut data = vec![flags, 2, 10, 0, 40, 0];
        data.extend_from_slice(stream);
        write_seed("wire", name, &data);
    }
    let mut rt = vec![0xa0u8, 0, 0, 2, 12];
    rt.extend_from_slice(b"content-type");
    rt.push(16);
    rt.extend_from_slice(b"application/json");
    rt.push(4);
    rt.extend_from_slice(b"date");
    rt.push(29);
    rt.extend_from_slice(b"Sun, 06 Nov 1994 08:49:37 GMT");
    rt.push(1);
    rt.extend_from_slice(b"{\"tables\":[\"a\"]}");
    write_seed("wire", "response-round-trip", &rt);
    let mut rq = vec![0xe0u8, 1, 15];
    rq.extend_from_slice(b"/dap/object/url");
    rq.extend_from_slice(&[1, 12]);
    rq.extend_from_slice(b"content-type");
    rq.push(16);
    rq.extend_from_slice(b"application/json");
    rq.extend_from_slice(b"[{\"id\":\"a\"}]");
    write_seed("wire", "request-round-trip", &rq);
}

/// session and transfer: inputs found by a small deterministic search that reach
/// distinct outcomes (the fuzzer grows the rest).
#[test]
fn seeds_session_and_transfer() {
    let mut seen = std::collections::HashSet::new();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut kept = 0;
    for _ in 0..20_000 {
        let len = 40 + (next() % 400) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(stats) = harness::session::session_run(&data) {
            let mut key = stats.ok.clone();
            key.sort_unstable();
            key.dedup();
            let mut errs: Vec<String> = stats
                .errors
                .iter()
                .map(|e| e.chars().take(12).collect())
                .collect();
            errs.sort();
            errs.dedup();
            if (!key.is_empty() || !errs.is_empty()) && seen.insert((key, errs)) && kept < 40 {
                write_seed("session", &format!("search-{kept:02}"), &data);
                kept += 1;
            }
        }
    }
    for kept in 0..20 {
        let len = 60 + (next() % 300) as usize;
        let data: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        harness::transfer::run(&data);
        write_seed("transfer", &format!("random-{kept:02}"), &data);
    }
}
