//! Core micro-benchmarks: whole request/response rounds through the `Session` and the
//! endpoint parsers, no I/O. Run with `cargo bench -p dap-proto --bench session`.
#![allow(clippy::disallowed_methods)] // a benchmark needs a clock origin
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::Instant;

use dap_proto::{Command, Config, Format, JobId, Output, Query, Session, api};
use http::Response;

fn main() {
    divan::main();
}

fn config() -> Config {
    Config::builder("us-east-1#bench", "secret")
        .build()
        .unwrap()
}

fn json(status: u16, body: &[u8]) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .unwrap()
}

const LOGIN: &[u8] = br#"{"access_token":"eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3OTU5MjA4MTF9.sig","expires_in":3600,"scope":"dap principal:x","token_type":"bearer"}"#;
const TABLES: &[u8] = br#"{"tables":["accounts","courses","users","enrollments","submissions","assignments","quizzes","web_logs"]}"#;

fn session(now: Instant) -> Session {
    Session::new(config(), now, "2026-11-29T00:00:00Z".parse().unwrap())
}

/// A fresh session: login, then list tables (two request/response rounds).
#[divan::bench]
fn login_and_list_tables(bencher: divan::Bencher<'_, '_>) {
    let now = Instant::now();
    bencher.bench_local(|| {
        let mut s = session(now);
        s.start(
            Command::ListTables {
                namespace: "canvas".into(),
            },
            now,
        );
        loop {
            match s.poll_output(now) {
                Output::Send { id, request } => {
                    let body = if request.uri().path().ends_with("login") {
                        LOGIN
                    } else {
                        TABLES
                    };
                    s.handle_response(id, json(200, body), now).unwrap();
                }
                Output::Done { result, .. } => break black_box(result),
                _ => unreachable!(),
            }
        }
    });
}

/// One list-tables round on a session that already holds a token.
#[divan::bench]
fn list_tables_round(bencher: divan::Bencher<'_, '_>) {
    let now = Instant::now();
    let mut s = session(now);
    s.start(
        Command::ListTables {
            namespace: "canvas".into(),
        },
        now,
    );
    while let Output::Send { id, request } = s.poll_output(now) {
        let body = if request.uri().path().ends_with("login") {
            LOGIN
        } else {
            TABLES
        };
        s.handle_response(id, json(200, body), now).unwrap();
    }
    while let Output::Done { .. } = s.poll_output(now) {}
    bencher.bench_local(|| {
        s.start(
            Command::ListTables {
                namespace: "canvas".into(),
            },
            now,
        );
        let Output::Send { id, .. } = s.poll_output(now) else {
            unreachable!()
        };
        s.handle_response(id, json(200, TABLES), now).unwrap();
        black_box(s.poll_output(now))
    });
}

/// A query from POST to URLs: start, two running polls, complete, one URL batch.
#[divan::bench]
fn job_poll_cycle(bencher: divan::Bencher<'_, '_>) {
    let start = Instant::now();
    let running = br#"{"id":"j1","status":"running","expires_at":"2026-11-30T00:00:00Z"}"#;
    let complete = br#"{"id":"j1","status":"complete","expires_at":"2026-11-30T00:00:00Z","objects":[{"id":"j1/part-0.json.gz"}],"schema_version":2,"at":"2026-11-29T00:00:00Z"}"#;
    let urls = br#"{"urls":{"j1/part-0.json.gz":{"url":"https://s3.example/o/part-0.json.gz?X-Amz-Signature=abc"}}}"#;
    bencher.bench_local(|| {
        let mut now = start;
        let mut s = session(now);
        let mut polls = 0;
        s.start(
            Command::Query {
                namespace: "canvas".into(),
                table: "accounts".into(),
                query: Query::snapshot(Format::Jsonl),
            },
            now,
        );
        loop {
            match s.poll_output(now) {
                Output::Send { id, request } => {
                    let path = request.uri().path();
                    let r = if path.ends_with("login") {
                        json(200, LOGIN)
                    } else if path.ends_with("/data") {
                        json(202, running)
                    } else if path.starts_with("/dap/job/") {
                        polls += 1;
                        if polls < 3 {
                            json(202, running)
                        } else {
                            json(200, complete)
                        }
                    } else {
                        json(200, urls)
                    };
                    s.handle_response(id, r, now).unwrap();
                }
                Output::Wait(Some(t)) => now = t,
                Output::Done { result, .. } => break black_box(result),
                _ => unreachable!(),
            }
        }
    });
}

fn big_schema() -> Vec<u8> {
    let mut props = serde_json::Map::new();
    let mut i = 0;
    while serde_json::to_vec(&props).unwrap().len() < 200 * 1024 {
        props.insert(
            format!("field_{i}"),
            serde_json::json!({"type": "string", "maxLength": 255, "title": format!("The field number {i} of this rather wide table."), "format": "date-time"}),
        );
        i += 1;
    }
    serde_json::to_vec(&serde_json::json!({
        "schema": {"type": "object", "properties": {"key": {"type": "object"}, "value": {"type": "object", "properties": props}}},
        "version": 7
    }))
    .unwrap()
}

/// Parsing a ~200 KB schema response.
#[divan::bench]
fn parse_schema_200k(bencher: divan::Bencher<'_, '_>) {
    let c = config();
    let body = big_schema();
    let r = json(200, &body);
    bencher
        .counter(divan::counter::BytesCount::new(body.len()))
        .bench_local(|| black_box(api::schema::parse(&c, black_box(&r)).unwrap()));
}

/// Building a job-status request (token header, URL).
#[divan::bench]
fn build_job_request(bencher: divan::Bencher<'_, '_>) {
    let c = config();
    let t = dap_proto::AccessToken::new("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3OTU5MjA4MTF9.sig");
    let j = JobId::new("28313161-4ff8-4e58-a52f-5f4c5265257d");
    bencher.bench_local(|| black_box(api::job::request(&c, &t, &j).unwrap()));
}
