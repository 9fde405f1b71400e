//! A tiny blocking HTTP/1.1 client (one connection per request, `Connection: close`)
//! and helpers shared by the emulator's integration tests.
#![allow(dead_code, unreachable_pub)]

pub mod driver;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use base64::Engine as _;
use dap_emulator::{Emulator, EmulatorConfig, Record};
use serde_json::Value;

/// A received response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "status {} body is not JSON ({e}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The DAP error envelope's `error` object.
    pub fn error(&self) -> Value {
        let v = self.json();
        assert!(v["error"].is_object(), "not an error envelope: {v}");
        v["error"].clone()
    }
}

/// Splits `http://host:port/path?q` into (`host:port`, `/path?q`).
pub fn split_url(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    match rest.find('/') {
        Some(i) => (rest[..i].to_owned(), rest[i..].to_owned()),
        None => (rest.to_owned(), "/".to_owned()),
    }
}

/// Sends one request to `url` and reads the response until the server closes.
pub fn request(method: &str, url: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let (host, target) = split_url(url);
    let mut s = TcpStream::connect(&host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" || method == "PUT" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
        }
    }
    parse_response(&raw, method == "HEAD")
}

fn parse_response(raw: &[u8], head_only: bool) -> Resp {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if head_only {
        Vec::new()
    } else if chunked {
        dechunk(rest)
    } else {
        rest.to_vec()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(std::str::from_utf8(&data[..i]).unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        let start = i + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// An emulator with `rows` rows a table and otherwise default settings.
pub fn start_with_rows(rows: u64) -> Emulator {
    Emulator::start(EmulatorConfig {
        rows_per_table: Some(rows),
        ..EmulatorConfig::default()
    })
    .unwrap()
}

/// The snapshot a completed `job` (its JSON) holds.
pub fn job_snapshot(job: &Value) -> dap_emulator::EmulatedRange {
    dap_emulator::EmulatedRange::Snapshot {
        at_ms: ts_ms(&job["at"]),
    }
}

/// Milliseconds since the epoch of an RFC 3339 JSON string.
pub fn ts_ms(v: &Value) -> i64 {
    v.as_str()
        .unwrap()
        .parse::<jiff::Timestamp>()
        .unwrap()
        .as_millisecond()
}

/// The `[{"id": ...}]` body of an object URL request for every object of a job.
pub fn object_ids(job: &Value) -> Vec<Value> {
    job["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| serde_json::json!({"id": o["id"]}))
        .collect()
}

/// The URLs of an object URL answer, in the order of `ids`.
pub fn urls_in(answer: &Value, ids: &[Value]) -> Vec<String> {
    ids.iter()
        .map(|i| {
            answer["urls"][i["id"].as_str().unwrap()]["url"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

pub const UA: (&str, &str) = ("User-Agent", "dap-emulator-tests/1");

/// A logged-in test client.
pub struct Client {
    pub base: String,
    pub token: String,
}

pub fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

pub fn login_raw(emu: &Emulator, id: &str, secret: &str) -> Resp {
    request(
        "POST",
        &format!("{}/ids/auth/login", emu.base_url()),
        &[
            UA,
            ("Authorization", &basic(id, secret)),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        b"grant_type=client_credentials",
    )
}

impl Client {
    pub fn login(emu: &Emulator) -> Self {
        let r = login_raw(emu, emu.client_id(), emu.client_secret());
        assert_eq!(r.status, 200, "{}", r.text());
        Self {
            base: emu.base_url(),
            token: r.json()["access_token"].as_str().unwrap().to_owned(),
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        let auth = format!("Bearer {}", self.token);
        request(
            "GET",
            &format!("{}{path}", self.base),
            &[UA, ("Authorization", &auth)],
            b"",
        )
    }

    pub fn post(&self, path: &str, body: &str) -> Resp {
        let auth = format!("Bearer {}", self.token);
        request(
            "POST",
            &format!("{}{path}", self.base),
            &[
                UA,
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
    }

    /// Starts a query and returns the job JSON (whatever its status).
    pub fn query(&self, ns: &str, table: &str, body: &str) -> Resp {
        self.post(&format!("/dap/query/{ns}/table/{table}/data"), body)
    }

    /// Runs a query to completion (the default config completes at once).
    pub fn complete_job(&self, ns: &str, table: &str, body: &str) -> Value {
        let r = self.query(ns, table, body);
        assert!(matches!(r.status, 200 | 202), "{}", r.text());
        let mut job = r.json();
        for _ in 0..50 {
            if job["status"] == "complete" || job["status"] == "failed" {
                return job;
            }
            std::thread::sleep(Duration::from_millis(5));
            job = self
                .get(&format!("/dap/job/{}", job["id"].as_str().unwrap()))
                .json();
        }
        panic!("job did not complete: {job}");
    }

    /// Trades object ids for URLs, in object order.
    pub fn urls(&self, job: &Value) -> Vec<String> {
        let ids = object_ids(job);
        let r = self.post("/dap/object/url", &Value::Array(ids.clone()).to_string());
        assert_eq!(r.status, 200, "{}", r.text());
        urls_in(&r.json(), &ids)
    }
}

/// Decodes an object: exactly one gzip member, as DAP serves them (a client may stop
/// at the first member's end, as the official one does).
pub fn gunzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut member = flate2::bufread::GzDecoder::new(data);
    member.read_to_end(&mut out)?;
    let rest = member.into_inner();
    if !rest.is_empty() {
        return Err(std::io::Error::other(format!(
            "{} bytes follow the first gzip member",
            rest.len()
        )));
    }
    Ok(out)
}

/// Downloads every object of a job, decoded and concatenated per object.
pub fn download_all(c: &Client, job: &Value) -> Vec<String> {
    c.urls(job)
        .iter()
        .map(|u| {
            let r = request("GET", u, &[UA], b"");
            assert_eq!(r.status, 200, "{}", r.text());
            assert_eq!(
                r.header("content-length")
                    .unwrap()
                    .parse::<usize>()
                    .unwrap(),
                r.body.len()
            );
            String::from_utf8(gunzip(&r.body).expect("valid gzip")).expect("utf-8")
        })
        .collect()
}

/// RFC 4180 parser keeping whether each field was quoted.
pub fn parse_csv(text: &str) -> Vec<Vec<(String, bool)>> {
    let chars: Vec<char> = text.chars().collect();
    let (mut rows, mut row, mut i) = (Vec::new(), Vec::new(), 0);
    let n = chars.len();
    while i < n {
        if chars[i] == '"' {
            i += 1;
            let mut buf = String::new();
            loop {
                assert!(i < n, "unterminated quote");
                if chars[i] == '"' {
                    if i + 1 < n && chars[i + 1] == '"' {
                        buf.push('"');
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                buf.push(chars[i]);
                i += 1;
            }
            row.push((buf, true));
        } else {
            let j = (i..n)
                .find(|&j| matches!(chars[j], ',' | '\r' | '\n'))
                .unwrap_or(n);
            row.push((chars[i..j].iter().collect(), false));
            i = j;
        }
        if i >= n {
            rows.push(std::mem::take(&mut row));
            break;
        }
        match chars[i] {
            ',' => i += 1,
            '\r' if i + 1 < n && chars[i + 1] == '\n' => {
                i += 2;
                rows.push(std::mem::take(&mut row));
            }
            _ => {
                i += 1;
                rows.push(std::mem::take(&mut row));
            }
        }
    }
    rows
}

/// Undoes PostgreSQL COPY text escaping; `None` for `\N`.
pub fn tsv_unescape(cell: &str) -> Option<String> {
    if cell == "\\N" {
        return None;
    }
    let mut out = String::new();
    let mut it = cell.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some('r') => out.push('\r'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Checks a CSV or TSV export against the expected records.
pub fn check_tabular(format: &str, text: &str, expected: &[Record]) {
    let rows: Vec<Vec<(String, bool)>> = if format == "csv" {
        parse_csv(text)
    } else {
        let mut lines: Vec<&str> = text.split('\n').collect();
        assert_eq!(lines.pop(), Some(""), "ends with a newline");
        lines
            .iter()
            .map(|l| l.split('\t').map(|c| (c.to_owned(), false)).collect())
            .collect()
    };
    let header: Vec<String> = rows[0].iter().map(|(c, _)| c.clone()).collect();
    assert_eq!(
        &header[..3],
        [
            "meta.ts",
            if expected.iter().any(|r| r.action.is_some()) {
                "meta.action"
            } else {
                "key.id"
            },
            header[2].as_str()
        ]
    );
    assert_eq!(rows.len() - 1, expected.len(), "row count");
    for (row, rec) in rows[1..].iter().zip(expected) {
        assert_eq!(row.len(), header.len());
        for (col, (cell, quoted)) in header.iter().zip(row) {
            let want = rec.column(col).unwrap_or_else(|| panic!("no column {col}"));
            let missing = rec.value.is_none() && col.starts_with("value.");
            if format == "csv" {
                match want {
                    None if missing => assert_eq!((cell.as_str(), *quoted), ("", false), "{col}"),
                    None => assert_eq!((cell.as_str(), *quoted), ("NULL", false), "{col}"),
                    Some(w) => {
                        assert_eq!(cell, &w, "{col} of {}", rec.id);
                        if w.is_empty() || w == "NULL" {
                            assert!(quoted, "{col}: {w:?} must be quoted");
                        }
                    }
                }
            } else {
                assert_eq!(tsv_unescape(cell), want, "{col} of {}", rec.id);
            }
        }
    }
}

pub fn check_export(format: &str, files: &[String], expected: &[Record]) {
    match format {
        "jsonl" => {
            let got: Vec<Value> = files
                .iter()
                .flat_map(|f| f.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()))
                .collect();
            let want: Vec<Value> = expected.iter().map(Record::to_json).collect();
            assert_eq!(got, want);
        }
        _ => {
            assert_eq!(files.len(), 1);
            check_tabular(format, &files[0], expected);
        }
    }
}
