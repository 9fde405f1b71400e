//! Storage behaviour, fault injection and rate limits over real TCP.

mod common;

use std::time::{Duration, Instant};

use common::{Client, UA, gunzip, request};
use dap_emulator::{Emulator, EmulatorConfig, Endpoint, FaultAction, FaultBody, FaultRule, Faults};
use serde_json::Value;

fn start() -> Emulator {
    Emulator::start(EmulatorConfig::default()).expect("emulator starts")
}

fn one_url(c: &Client, table: &str, format: &str) -> String {
    let job = c.complete_job("canvas", table, &format!(r#"{{"format":"{format}"}}"#));
    c.urls(&job).remove(0)
}

fn with_rules(emu: &Emulator, rules: Vec<FaultRule>) {
    emu.set_faults(Faults {
        rules,
        ..Faults::default()
    });
}

/// The next storage answer does `action`.
fn one_storage_fault(emu: &Emulator, action: FaultAction) {
    with_rules(emu, vec![FaultRule::new(Endpoint::Storage, 1, action)]);
}

#[test]
fn storage_rejects_credentials_tampering_and_expiry() {
    let emu = start();
    let c = Client::login(&emu);
    let url = one_url(&c, "accounts", "csv");
    let bearer = format!("Bearer {}", c.token);
    let r = request("GET", &url, &[UA, ("Authorization", &bearer)], b"");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("<Code>InvalidArgument</Code>"));
    let r = request("GET", &url, &[UA, ("x-instauth", &c.token)], b"");
    assert_eq!(r.status, 200);
    let s = emu.stats();
    assert_eq!(
        (
            s.storage_with_credentials,
            s.storage_with_authorization,
            s.storage_with_instauth
        ),
        (2, 1, 1)
    );

    let tampered = url.replace("queryId=", "queryId=0");
    assert_eq!(request("GET", &tampered, &[UA], b"").status, 403);
    let mut bad_sig = url.clone();
    let last = bad_sig.pop().unwrap();
    bad_sig.push(if last == '0' { '1' } else { '0' });
    let r = request("GET", &bad_sig, &[UA], b"");
    assert_eq!(r.status, 403);
    assert!(r.text().contains("SignatureDoesNotMatch"));
    let longer = url.replace("X-Amz-Expires=900", "X-Amz-Expires=9000");
    assert_eq!(request("GET", &longer, &[UA], b"").status, 403);
    let unsigned = url.split('?').next().unwrap().to_owned();
    assert_eq!(request("GET", &unsigned, &[UA], b"").status, 403);
    let r = request(
        "GET",
        &format!("{}/elsewhere", emu.storage_url()),
        &[UA],
        b"",
    );
    assert_eq!(r.status, 404);

    assert_eq!(
        request("GET", &url, &[], b"").status,
        200,
        "no User-Agent needed on storage"
    );
    emu.advance_clock(Duration::from_secs(901));
    let r = request("GET", &url, &[UA], b"");
    assert_eq!(r.status, 403);
    assert!(r.text().contains("Request has expired"));
    // A fresh URL works again.
    let job_url = one_url(&c, "accounts", "csv");
    assert_eq!(request("GET", &job_url, &[UA], b"").status, 200);
}

#[test]
fn storage_supports_ranges_head_and_etags() {
    let emu = start();
    let c = Client::login(&emu);
    let url = one_url(&c, "users", "jsonl");
    let full = request("GET", &url, &[UA], b"");
    assert_eq!(full.status, 200);
    let len: usize = full.header("content-length").unwrap().parse().unwrap();
    assert_eq!(len, full.body.len());
    assert_eq!(full.header("accept-ranges"), Some("bytes"));
    let etag = full.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"'));
    let part = request("GET", &url, &[UA, ("Range", "bytes=100-")], b"");
    assert_eq!(part.status, 206);
    assert_eq!(part.body, &full.body[100..]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 100-{}/{len}", len - 1).as_str())
    );
    assert_eq!(part.header("etag"), Some(etag.as_str()));
    let mid = request("GET", &url, &[UA, ("Range", "bytes=10-19")], b"");
    assert_eq!((mid.status, &mid.body[..]), (206, &full.body[10..20]));
    let tail = request("GET", &url, &[UA, ("Range", "bytes=-5")], b"");
    assert_eq!(tail.body, &full.body[len - 5..]);
    let bad = request("GET", &url, &[UA, ("Range", &format!("bytes={len}-"))], b"");
    assert_eq!(bad.status, 416);
    assert_eq!(
        bad.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    let head = request("HEAD", &url, &[UA], b"");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some(len.to_string().as_str())
    );
    assert_eq!(request("DELETE", &url, &[UA], b"").status, 405);
}

#[test]
fn bulk_objects_are_repeated_members() {
    let emu = Emulator::start(EmulatorConfig {
        objects_per_job: 2,
        object_size_bytes: Some(600 << 10),
        ..EmulatorConfig::default()
    })
    .unwrap();
    let c = Client::login(&emu);
    for format in ["jsonl", "csv", "tsv"] {
        let job = c.complete_job(
            "canvas",
            "submissions",
            &format!(r#"{{"format":"{format}"}}"#),
        );
        let urls = c.urls(&job);
        assert_eq!(urls.len(), 2);
        let full = request("GET", &urls[1], &[UA], b"");
        let len = full.body.len();
        assert_eq!(
            full.header("content-length")
                .unwrap()
                .parse::<usize>()
                .unwrap(),
            len
        );
        let raw = gunzip(&full.body).expect("valid multi-member gzip");
        assert!(
            raw.len() >= 600 << 10 && raw.len() < 900 << 10,
            "{}",
            raw.len()
        );
        let text = String::from_utf8(raw).unwrap();
        if format == "jsonl" {
            for l in text.lines().take(1000) {
                serde_json::from_str::<Value>(l).unwrap();
            }
        } else {
            assert!(text.starts_with("meta.ts"));
            assert_eq!(text.matches("meta.ts").count(), 1, "one header row");
        }
        let part = request(
            "GET",
            &urls[1],
            &[UA, ("Range", &format!("bytes={}-", len - 1000))],
            b"",
        );
        assert_eq!(part.body, &full.body[len - 1000..]);
    }
}

#[test]
fn status_faults_hit_the_chosen_endpoint_n_times() {
    let emu = start();
    let c = Client::login(&emu);
    with_rules(&emu, vec![FaultRule::rate_storm(Endpoint::Tables, 2, 7)]);
    for _ in 0..2 {
        let r = c.get("/dap/query/canvas/table");
        assert_eq!(r.status, 429);
        assert_eq!(r.header("retry-after"), Some("7"));
        let e = r.error();
        assert_eq!(e.as_object().unwrap().len(), 3);
    }
    assert_eq!(c.get("/dap/query/canvas/table").status, 200);
    assert!(emu.faults().rules.is_empty());

    with_rules(
        &emu,
        vec![
            FaultRule::status(Endpoint::Schema, 1, 503, FaultBody::Json),
            FaultRule::status(Endpoint::Schema, 1, 502, FaultBody::Html),
            FaultRule::status(Endpoint::Schema, 1, 500, FaultBody::MalformedJson),
        ],
    );
    let path = "/dap/query/canvas/table/users/schema";
    let r = c.get(path);
    assert_eq!(r.status, 503);
    assert_eq!(r.error()["type"], "ServerError");
    let r = c.get(path);
    assert_eq!(r.status, 502);
    assert_eq!(r.header("content-type"), Some("text/html"));
    assert!(r.text().contains("<h1>502 Bad Gateway</h1>"));
    let r = c.get(path);
    assert_eq!(r.status, 500);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(serde_json::from_slice::<Value>(&r.body).is_err());
    assert_eq!(c.get(path).status, 200);
    assert_eq!(emu.stats().faults_injected, 5);

    // Login faults, and faults on other endpoints leave login alone.
    with_rules(
        &emu,
        vec![FaultRule::status(Endpoint::Login, 1, 503, FaultBody::Json)],
    );
    assert_eq!(
        common::login_raw(&emu, emu.client_id(), emu.client_secret()).status,
        503
    );
    assert_eq!(
        common::login_raw(&emu, emu.client_id(), emu.client_secret()).status,
        200
    );

    with_rules(
        &emu,
        vec![FaultRule::status(Endpoint::Query, 1, 504, FaultBody::Json)],
    );
    assert_eq!(
        c.query("canvas", "users", r#"{"format":"csv"}"#).status,
        504
    );
    with_rules(
        &emu,
        vec![FaultRule::status(Endpoint::Job, 1, 500, FaultBody::Json)],
    );
    let job = c.complete_job("canvas", "users", r#"{"format":"csv"}"#);
    assert_eq!(job["status"], "complete", "retry after the 500 succeeded");
    with_rules(
        &emu,
        vec![FaultRule::status(
            Endpoint::ObjectUrls,
            1,
            503,
            FaultBody::Json,
        )],
    );
    assert_eq!(c.post("/dap/object/url", "[]").status, 503);
    with_rules(
        &emu,
        vec![FaultRule::status(
            Endpoint::Storage,
            1,
            503,
            FaultBody::Json,
        )],
    );
    let url = c.urls(&job).remove(0);
    let r = request("GET", &url, &[UA], b"");
    assert_eq!(r.status, 503);
    assert!(r.text().contains("<Error>"));
    assert_eq!(request("GET", &url, &[UA], b"").status, 200);
}

#[test]
fn slow_responses() {
    let emu = start();
    let c = Client::login(&emu);
    with_rules(
        &emu,
        vec![FaultRule::new(
            Endpoint::Tables,
            1,
            FaultAction::Delay { millis: 150 },
        )],
    );
    let t = Instant::now();
    assert_eq!(c.get("/dap/query/canvas/table").status, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    let t = Instant::now();
    assert_eq!(c.get("/dap/query/canvas/table").status, 200);
    assert!(t.elapsed() < Duration::from_millis(150));
}

#[test]
fn storage_body_faults() {
    let emu = common::start_with_rows(2000);
    let c = Client::login(&emu);
    let url = one_url(&c, "submissions", "jsonl");
    let good = request("GET", &url, &[UA], b"");
    let len = good.body.len();
    assert!(len > 10_000, "{len}");
    assert!(gunzip(&good.body).is_ok());

    one_storage_fault(&emu, FaultAction::DropAfter { bytes: 1000 });
    let cut = request("GET", &url, &[UA], b"");
    assert_eq!(cut.status, 200);
    assert_eq!(
        cut.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        len
    );
    assert!(
        cut.body.len() < len && cut.body.len() <= 1000,
        "{} of {len}",
        cut.body.len()
    );

    one_storage_fault(&emu, FaultAction::TruncateGzip);
    let trunc = request("GET", &url, &[UA], b"");
    assert_eq!(trunc.status, 200);
    let tlen: usize = trunc.header("content-length").unwrap().parse().unwrap();
    assert_eq!(tlen, trunc.body.len());
    assert!(tlen < len);
    assert_eq!(trunc.body, &good.body[..tlen]);
    assert!(
        gunzip(&trunc.body).is_err(),
        "truncated gzip must not decode"
    );

    one_storage_fault(&emu, FaultAction::CorruptGzip);
    let bad = request("GET", &url, &[UA], b"");
    assert_eq!(bad.body.len(), len);
    assert_ne!(bad.body, good.body);
    let err = gunzip(&bad.body).expect_err("corrupt gzip must fail its CRC");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    assert_eq!(request("GET", &url, &[UA], b"").body, good.body);
    assert_eq!(emu.stats().faults_injected, 3);
}

#[test]
fn rate_limits_follow_the_documented_numbers() {
    let emu = start();
    let c = Client::login(&emu);
    for _ in 0..6 {
        assert_eq!(
            c.get("/dap/query/canvas/table").status,
            200,
            "off by default"
        );
    }
    emu.set_faults(Faults {
        rate_limits: true,
        ..Faults::default()
    });
    // Align to the start of a minute window of the emulator clock.
    let into_minute = emu.now_ms().rem_euclid(60_000);
    emu.advance_clock(Duration::from_millis((60_000 - into_minute) as u64 + 10));
    for _ in 0..5 {
        assert_eq!(c.get("/dap/query/canvas/table").status, 200);
    }
    let r = c.get("/dap/query/canvas/table");
    assert_eq!(r.status, 429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(r.error()["type"], "TooManyRequests");
    // Other endpoints have their own budgets.
    assert_eq!(c.get("/dap/query/canvas/table/users/schema").status, 200);
    for i in 0..5 {
        let r = c.query(
            "canvas",
            "users",
            &format!(
                r#"{{"format":"csv","since":"{}"}}"#,
                (emu.now() - jiff::SignedDuration::from_mins(i + 1))
            ),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(
        c.query("canvas", "users", r#"{"format":"csv"}"#).status,
        429
    );
    emu.advance_clock(Duration::from_secs(retry));
    assert_eq!(c.get("/dap/query/canvas/table").status, 200);
    assert_eq!(emu.stats().rate_limited, 2);
}

/// Reads a response, returning (time to the end of the headers, total time, bytes).
fn timed_get(url: &str, headers: &[(&str, &str)]) -> (Duration, Duration, Vec<u8>) {
    use std::io::{Read, Write};
    let (host, target) = common::split_url(url);
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(&host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req =
        format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nUser-Agent: t\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let mut headers_at = None;
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
        if headers_at.is_none() && raw.windows(4).any(|w| w == b"\r\n\r\n") {
            headers_at = Some(start.elapsed());
        }
    }
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    (headers_at.unwrap(), start.elapsed(), raw[end..].to_vec())
}

#[test]
fn trickled_bodies_arrive_after_their_headers_slowly() {
    let emu = start();
    let c = Client::login(&emu);
    let url = one_url(&c, "users", "jsonl");
    let whole = request("GET", &url, &[UA], b"").body;
    with_rules(
        &emu,
        vec![FaultRule::new(
            Endpoint::Storage,
            1,
            FaultAction::Trickle {
                bytes: 4,
                interval_millis: 60,
                after_bytes: 10,
            },
        )],
    );
    let (headers, total, body) = timed_get(&url, &[("Range", "bytes=0-29")]);
    assert_eq!(body, &whole[..30]);
    assert!(
        headers < Duration::from_millis(60),
        "headers at once: {headers:?}"
    );
    // 10 bytes at once, then 20 bytes in five pieces of 4, one every 60 ms.
    assert!(total >= Duration::from_millis(300), "{total:?}");
    let (_, fast, _) = timed_get(&url, &[("Range", "bytes=0-29")]);
    assert!(
        fast < Duration::from_millis(300),
        "one request only: {fast:?}"
    );

    // API responses trickle too (a stalled login).
    with_rules(
        &emu,
        vec![FaultRule::new(
            Endpoint::Tables,
            1,
            FaultAction::Trickle {
                bytes: 16,
                interval_millis: 10,
                after_bytes: 0,
            },
        )],
    );
    let t = Instant::now();
    let r = c.get("/dap/query/canvas/table");
    assert_eq!(r.status, 200);
    let pieces = r.body.len().div_ceil(16) as u64;
    assert!(
        t.elapsed() >= Duration::from_millis(10 * pieces),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(r.json()["tables"][0], "accounts");
}
