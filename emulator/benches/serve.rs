//! Serving speed of the emulator, over loopback:
//!
//! 1. bulk objects: K objects of M MiB (uncompressed) fetched concurrently, gzip bytes
//!    served per second (`DAP_BENCH_OBJECTS`, default 8; `DAP_BENCH_MIB`, default 64;
//!    `DAP_BENCH_ROUNDS`, default 5);
//! 2. the large replication table (`new_quizzes.quiz_sessions`): its TSV condensed
//!    snapshot built on first download, then served from the cache; an incremental of
//!    one hour of changes;
//! 3. a job of 20,000 objects: every object downloaded, the process's resident memory
//!    before and after (`DAP_BENCH_MANY`, default 20000).
//!
//! `cargo bench -p dap-emulator --bench serve` (`DAP_BENCH_ONLY=bulk|table|many` runs one).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dap_emulator::{Emulator, EmulatorConfig};
use serde_json::{Value, json};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One HTTP exchange: (status, head, body kept or empty, body bytes counted).
fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    keep_body: bool,
) -> (u16, String, Vec<u8>, u64) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, target) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut s = TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: dap-emulator-bench\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let (mut head, mut kept, mut counted, mut in_body) = (Vec::new(), Vec::new(), 0u64, false);
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if in_body {
            counted += n as u64;
            if keep_body {
                kept.extend_from_slice(chunk);
            }
            continue;
        }
        head.extend_from_slice(chunk);
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let tail = head.split_off(i + 4);
            in_body = true;
            counted += tail.len() as u64;
            if keep_body {
                kept.extend_from_slice(&tail);
            }
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, kept, counted)
}

/// A logged-in client of one emulator.
struct Api {
    base: String,
    token: String,
}

impl Api {
    fn login(emu: &Emulator) -> Self {
        use base64::Engine as _;
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                emu.client_id(),
                emu.client_secret()
            ))
        );
        let (_, _, body, _) = http(
            "POST",
            &format!("{}/ids/auth/login", emu.base_url()),
            &[
                ("Authorization", &basic),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            b"grant_type=client_credentials",
            true,
        );
        let v: Value = serde_json::from_slice(&body).expect("login JSON");
        Self {
            base: emu.base_url(),
            token: format!("Bearer {}", v["access_token"].as_str().unwrap()),
        }
    }

    fn post(&self, path: &str, body: &str) -> Value {
        let auth = [("Authorization", self.token.as_str())];
        let url = format!("{}{path}", self.base);
        let (_, _, body, _) = http("POST", &url, &auth, body.as_bytes(), true);
        serde_json::from_slice(&body).expect("JSON body")
    }

    /// Runs a query (the default config completes it at once) and returns the job.
    fn job(&self, ns: &str, table: &str, query: &Value) -> Value {
        let job = self.post(
            &format!("/dap/query/{ns}/table/{table}/data"),
            &query.to_string(),
        );
        assert_eq!(job["status"], "complete", "{job}");
        job
    }

    fn urls(&self, job: &Value) -> Vec<String> {
        let ids: Vec<Value> = job["objects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| json!({"id": o["id"]}))
            .collect();
        let urls = self.post("/dap/object/url", &Value::Array(ids.clone()).to_string());
        ids.iter()
            .map(|i| {
                let id = i["id"].as_str().unwrap();
                urls["urls"][id]["url"].as_str().unwrap().to_owned()
            })
            .collect()
    }
}

fn content_length(head: &str) -> u64 {
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap()
}

fn bulk() {
    let objects = env("DAP_BENCH_OBJECTS", 8) as u32;
    let mib = env("DAP_BENCH_MIB", 64);
    let rounds = env("DAP_BENCH_ROUNDS", 5);
    let emu = Emulator::start(EmulatorConfig {
        objects_per_job: objects,
        object_size_bytes: Some(mib << 20),
        ..EmulatorConfig::default()
    })
    .expect("emulator starts");
    let api = Api::login(&emu);
    let urls = api.urls(&api.job("canvas", "submissions", &json!({"format": "jsonl"})));
    // Warm the member cache (built once per table and format).
    let (status, head, _, _) = http("HEAD", &urls[0], &[], b"", false);
    assert_eq!(status, 200, "{head}");
    println!("bulk: {objects} objects of {mib} MiB uncompressed each, concurrently");
    let mut best = 0f64;
    for round in 1..=rounds {
        let start = Instant::now();
        let handles: Vec<_> = urls
            .iter()
            .cloned()
            .map(|u| {
                std::thread::spawn(move || {
                    let (status, head, _, n) = http("GET", &u, &[], b"", false);
                    assert_eq!(status, 200, "{head}");
                    assert_eq!(n, content_length(&head), "whole body received");
                    n
                })
            })
            .collect();
        let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let secs = start.elapsed().as_secs_f64();
        let rate = total as f64 / secs / 1e9;
        best = best.max(rate);
        println!(
            "  round {round}: {:.1} MB of gzip in {secs:.3} s = {rate:.2} GB/s",
            total as f64 / 1e6
        );
    }
    println!("  best: {best:.2} GB/s of gzip bytes served");
}

/// Downloads `url` `times` times; prints the time of each, and returns the gzip body.
fn timed_downloads(label: &str, url: &str, times: usize) -> Vec<u8> {
    let mut body = Vec::new();
    for i in 0..times {
        let start = Instant::now();
        let (status, head, kept, n) = http("GET", url, &[], b"", i == 0);
        assert_eq!(status, 200, "{head}");
        let secs = start.elapsed().as_secs_f64();
        let what = if i == 0 {
            "built and served"
        } else {
            "cached, served"
        };
        println!(
            "  {label}: {what}: {:.1} MB of gzip in {secs:.3} s ({:.2} GB/s)",
            n as f64 / 1e6,
            n as f64 / secs / 1e9
        );
        if i == 0 {
            body = kept;
        }
    }
    body
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn table() {
    let emu = Emulator::start(EmulatorConfig::default()).expect("emulator starts");
    let api = Api::login(&emu);
    let q = json!({"format": "tsv", "mode": "condensed"});
    let snap = api.job("new_quizzes", "quiz_sessions", &q);
    println!("table: new_quizzes.quiz_sessions, TSV condensed, one object");
    let url = api.urls(&snap).remove(0);
    let tsv = gunzip(&timed_downloads("snapshot", &url, 3));
    let rows = tsv.iter().filter(|b| **b == b'\n').count() - 1;
    println!(
        "  snapshot: {rows} rows, {:.1} MiB of TSV",
        tsv.len() as f64 / (1 << 20) as f64
    );
    emu.advance_clock(Duration::from_secs(3600));
    let api = Api::login(&emu);
    let mut q = q;
    q["since"] = snap["at"].clone();
    let inc = api.job("new_quizzes", "quiz_sessions", &q);
    let url = api.urls(&inc).remove(0);
    let tsv = gunzip(&timed_downloads("incremental of one hour", &url, 2));
    let changes = tsv.iter().filter(|b| **b == b'\n').count() - 1;
    println!(
        "  incremental: {changes} changes, {:.1} MiB of TSV",
        tsv.len() as f64 / (1 << 20) as f64
    );
}

/// Resident memory of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn many() {
    let n = env("DAP_BENCH_MANY", 20_000) as u32;
    let emu = Emulator::start(EmulatorConfig {
        objects_per_job: n,
        rows_per_table: Some(u64::from(n) * 5),
        ..EmulatorConfig::default()
    })
    .expect("emulator starts");
    let api = Api::login(&emu);
    let job = api.job("canvas", "users", &json!({"format": "jsonl"}));
    let start = Instant::now();
    let urls = api.urls(&job);
    println!("many: a job of {n} objects (5 keys each)");
    println!(
        "  {n} URLs in one request: {:.2} s",
        start.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let mut rss = vec![rss_kib()];
    let mut bytes = 0;
    for (i, u) in urls.iter().enumerate() {
        let (status, head, _, got) = http("GET", u, &[], b"", false);
        assert_eq!(status, 200, "{head}");
        bytes += got;
        if (i + 1) % (urls.len() / 2).max(1) == 0 {
            rss.push(rss_kib());
        }
    }
    println!(
        "  {n} objects ({:.1} MB of gzip) downloaded one by one in {:.1} s",
        bytes as f64 / 1e6,
        start.elapsed().as_secs_f64()
    );
    let cache = emu.heart().cached_object_bytes() / 1024;
    println!(
        "  resident memory of the bench process (emulator and client), KiB: {rss:?} (before, half-way, after); object cache {cache} KiB"
    );
    if let [_, half, after] = rss[..] {
        let per = (after as f64 - half as f64) * 1024.0 / (f64::from(n) / 2.0);
        println!("  second half: {per:+.0} bytes per object, the cache included");
    }
}

fn main() {
    let only = std::env::var("DAP_BENCH_ONLY").unwrap_or_default();
    let all = only.is_empty();
    if all || only == "bulk" {
        bulk();
    }
    if all || only == "table" {
        table();
    }
    if all || only == "many" {
        many();
    }
}
