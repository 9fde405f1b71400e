//! Object serving rate of the emulator: fetches K objects of M MiB (uncompressed)
//! concurrently over loopback and prints the gzip bytes served per second.
//!
//! `cargo bench -p dap-emulator --bench serve` (env `DAP_BENCH_OBJECTS`, default 8;
//! `DAP_BENCH_MIB`, default 64; `DAP_BENCH_ROUNDS`, default 5).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use dap_emulator::{Emulator, EmulatorConfig};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Sends one request and returns (status line, headers, body bytes read or counted).
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
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
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
    let mut head = Vec::new();
    let mut kept = Vec::new();
    let mut counted = 0u64;
    let mut in_body = false;
    loop {
        let n = match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if !in_body {
            head.extend_from_slice(chunk);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                let tail = head.split_off(i + 4);
                in_body = true;
                counted += tail.len() as u64;
                if keep_body {
                    kept.extend_from_slice(&tail);
                }
            }
            continue;
        }
        counted += chunk.len() as u64;
        if keep_body {
            kept.extend_from_slice(chunk);
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

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).expect("JSON body")
}

fn main() {
    let objects = env("DAP_BENCH_OBJECTS", 8) as u32;
    let mib = env("DAP_BENCH_MIB", 64);
    let rounds = env("DAP_BENCH_ROUNDS", 5);
    let emu = Emulator::start(EmulatorConfig {
        objects_per_job: objects,
        object_size_bytes: Some(mib << 20),
        ..EmulatorConfig::default()
    })
    .expect("emulator starts");
    let base = emu.base_url();
    let basic = {
        use base64::Engine as _;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                emu.client_id(),
                emu.client_secret()
            ))
        )
    };
    let (_, _, body, _) = http(
        "POST",
        &format!("{base}/ids/auth/login"),
        &[
            ("Authorization", &basic),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"grant_type=client_credentials",
        true,
    );
    let token = format!("Bearer {}", json(&body)["access_token"].as_str().unwrap());
    let auth = [("Authorization", token.as_str())];
    let (_, _, body, _) = http(
        "POST",
        &format!("{base}/dap/query/canvas/table/submissions/data"),
        &auth,
        br#"{"format":"jsonl"}"#,
        true,
    );
    let job_id = json(&body)["id"].as_str().unwrap().to_owned();
    let (_, _, body, _) = http("GET", &format!("{base}/dap/job/{job_id}"), &auth, b"", true);
    let job = json(&body);
    let ids: Vec<serde_json::Value> = job["objects"]
        .as_array()
        .expect("complete job")
        .iter()
        .map(|o| serde_json::json!({"id": o["id"]}))
        .collect();
    let (_, _, body, _) = http(
        "POST",
        &format!("{base}/dap/object/url"),
        &auth,
        serde_json::Value::Array(ids.clone()).to_string().as_bytes(),
        true,
    );
    let urls_json = json(&body);
    let urls: Vec<String> = ids
        .iter()
        .map(|i| {
            urls_json["urls"][i["id"].as_str().unwrap()]["url"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    // Warm the member cache (built once per table and format).
    let (status, head, _, _) = http("HEAD", &urls[0], &[], b"", false);
    assert_eq!(status, 200, "{head}");

    println!(
        "serving {objects} objects of {mib} MiB uncompressed each, concurrently, over loopback"
    );
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
                    let len: u64 = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap();
                    assert_eq!(n, len, "whole body received");
                    n
                })
            })
            .collect();
        let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let secs = start.elapsed().as_secs_f64();
        let rate = total as f64 / secs / 1e9;
        best = best.max(rate);
        println!(
            "round {round}: {:.1} MB of gzip in {:.3} s = {rate:.2} GB/s",
            total as f64 / 1e6,
            secs
        );
    }
    println!("best: {best:.2} GB/s of gzip bytes served");
}
