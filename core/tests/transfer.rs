//! The download state machine against scripted storage answers.

use std::io::Write as _;
use std::time::{Duration, Instant};

use dap_proto::download::StorageError;
use dap_proto::gzip::GzipError;
use dap_proto::testing::{failure, origin};
use dap_proto::{
    Config, Format, HeadAction, ObjectId, ObjectUrl, PresignedUrl, RetryPolicy, Transfer,
    TransferError, TransferStep, TransferSummary,
};
use http::{HeaderMap, StatusCode};

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn config() -> Config {
    Config::builder("id", "secret")
        .retry(RetryPolicy::new(
            3,
            Duration::from_millis(10),
            Duration::from_millis(100),
        ))
        .build()
        .unwrap()
}

fn object(url: &str) -> ObjectUrl {
    ObjectUrl {
        id: ObjectId::new("job/part-0.json.gz"),
        url: PresignedUrl::new(url),
    }
}

fn headers(pairs: &[(&str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

/// A transfer of the object at `url` with the tests' configuration.
fn transfer(url: &str, format: Format, decompress: bool) -> Transfer {
    Transfer::new(&config(), object(url), format, decompress).unwrap()
}

/// Headers announcing `len` bytes.
fn length(len: usize) -> HeaderMap {
    headers(&[("content-length", len.to_string())])
}

/// Feeds `chunk` as body bytes, appending what comes out to `out`; the transfer must
/// want more.
fn feed(t: &mut Transfer, chunk: &[u8], now: Instant, out: &mut Vec<u8>) {
    let flow = t.handle_body(chunk, now, |b| out.extend_from_slice(b));
    assert!(flow.is_continue());
}

fn expect_done(t: &mut Transfer, now: Instant) -> TransferSummary {
    match t.poll_output(now) {
        TransferStep::Done(s) => s,
        other => panic!("expected Done, got {other:?}"),
    }
}

fn expect_wait(t: &mut Transfer, now: Instant) -> Instant {
    match t.poll_output(now) {
        TransferStep::Wait(t) => t,
        other => panic!("expected Wait, got {other:?}"),
    }
}

fn expect_send(t: &mut Transfer, now: Instant) -> http::Request<Vec<u8>> {
    match t.poll_output(now) {
        TransferStep::Send(r) => r,
        other => panic!("expected Send, got {other:?}"),
    }
}

fn run_to_end(t: &mut Transfer, mut now: Instant) -> TransferStep {
    loop {
        match t.poll_output(now) {
            TransferStep::Wait(until) => now = until,
            other => return other,
        }
    }
}

#[test]
fn full_download_verified() {
    let data = b"{\"key\":{\"id\":1}}\n".repeat(1000);
    let body = gz(&data);
    let now = origin();
    let mut t = transfer(
        "https://s/o/part-0.json.gz?X-Amz-Signature=S",
        Format::Jsonl,
        false,
    );
    let req = expect_send(&mut t, now);
    assert!(req.headers().get("authorization").is_none());
    assert!(req.headers().get("range").is_none());
    let h = headers(&[("content-length", body.len().to_string())]);
    assert_eq!(
        t.handle_head(StatusCode::OK, &h, now),
        HeadAction::ReadBody { truncate: false }
    );
    let mut file = Vec::new();
    for chunk in body.chunks(100) {
        feed(&mut t, chunk, now, &mut file);
    }
    t.handle_body_end(now);
    let s = expect_done(&mut t, now);
    assert_eq!(file, body);
    assert_eq!(s.bytes, body.len() as u64);
    assert_eq!(s.decompressed_bytes, Some(data.len() as u64));
    assert_eq!(s.file_name, "part-0.json.gz");
}

#[test]
fn decompressed_output_and_name() {
    let data = b"a\tb\n".repeat(100);
    let body = gz(&data);
    let now = origin();
    let mut t = transfer("https://s/o/part-0.tsv.gz?sig", Format::Tsv, true);
    assert_eq!(t.file_name(), "part-0.tsv");
    expect_send(&mut t, now);
    t.handle_head(StatusCode::OK, &HeaderMap::new(), now);
    let mut out = Vec::new();
    feed(&mut t, &body, now, &mut out);
    t.handle_body_end(now);
    assert!(matches!(t.poll_output(now), TransferStep::Done(_)));
    assert_eq!(out, data);
}

#[test]
fn dropped_connection_resumes_with_range() {
    let body = gz(&b"x,y\n".repeat(5000));
    let now = origin();
    let mut t = transfer("https://s/o/p.csv.gz?sig", Format::Csv, false);
    expect_send(&mut t, now);
    t.handle_head(StatusCode::OK, &length(body.len()), now);
    let mut file = Vec::new();
    let cut = body.len() / 2;
    feed(&mut t, &body[..cut], now, &mut file);
    t.handle_failure(failure(), now);
    let later = expect_wait(&mut t, now);
    let req = expect_send(&mut t, later);
    assert_eq!(req.headers()["range"], format!("bytes={cut}-"));
    let h = headers(&[
        ("content-length", (body.len() - cut).to_string()),
        (
            "content-range",
            format!("bytes {cut}-{}/{}", body.len() - 1, body.len()),
        ),
    ]);
    assert_eq!(
        t.handle_head(StatusCode::PARTIAL_CONTENT, &h, later),
        HeadAction::ReadBody { truncate: false }
    );
    feed(&mut t, &body[cut..], now, &mut file);
    t.handle_body_end(later);
    let s = expect_done(&mut t, later);
    assert_eq!(s.resumes, 1);
    assert_eq!(file, body);
}

#[test]
fn short_body_resumes_and_ignored_range_restarts() {
    let body = gz(&b"0123456789\n".repeat(3000));
    let now = origin();
    let mut t = transfer("https://s/o/p.json.gz?sig", Format::Jsonl, false);
    expect_send(&mut t, now);
    t.handle_head(StatusCode::OK, &length(body.len()), now);
    let mut file = Vec::new();
    feed(&mut t, &body[..100], now, &mut file);
    t.handle_body_end(now); // ended early without an error
    let later = expect_wait(&mut t, now);
    let req = expect_send(&mut t, later);
    assert_eq!(req.headers()["range"], "bytes=100-");
    // The server ignores Range and sends everything again.
    let action = t.handle_head(StatusCode::OK, &length(body.len()), later);
    assert_eq!(action, HeadAction::ReadBody { truncate: true });
    file.clear();
    feed(&mut t, &body, now, &mut file);
    t.handle_body_end(later);
    assert!(matches!(t.poll_output(later), TransferStep::Done(_)));
    assert_eq!(file, body);
}

#[test]
fn expired_url_asks_for_a_new_one() {
    let body = gz(b"hello\n");
    let now = origin();
    let mut t = transfer("https://s/o/p.json.gz?old", Format::Jsonl, false);
    expect_send(&mut t, now);
    assert_eq!(
        t.handle_head(StatusCode::FORBIDDEN, &HeaderMap::new(), now),
        HeadAction::Discard
    );
    assert!(matches!(t.poll_output(now), TransferStep::NeedUrl));
    t.handle_url(PresignedUrl::new("https://s/o/p.json.gz?new"));
    let req = expect_send(&mut t, now);
    assert!(req.uri().to_string().ends_with("?new"));
    t.handle_head(StatusCode::OK, &HeaderMap::new(), now);
    assert!(t.handle_body(&body, now, |_| {}).is_continue());
    t.handle_body_end(now);
    let s = expect_done(&mut t, now);
    assert_eq!(s.url_refreshes, 1);
}

#[test]
fn url_refresh_is_bounded() {
    let now = origin();
    let mut t = transfer("https://s/o/p.json.gz?x", Format::Jsonl, false);
    for _ in 0..10 {
        match t.poll_output(now) {
            TransferStep::Send(_) => {
                t.handle_head(StatusCode::FORBIDDEN, &HeaderMap::new(), now);
            }
            TransferStep::NeedUrl => t.handle_url(PresignedUrl::new("https://s/o/p.json.gz?y")),
            TransferStep::Failed(TransferError::Storage {
                error: StorageError::UrlRefused(403),
                ..
            }) => return,
            other => panic!("{other:?}"),
        }
    }
    panic!("never gave up");
}

#[test]
fn corrupt_and_truncated_gzip_fail() {
    let mut body = gz(&b"abcdef\n".repeat(1000));
    let now = origin();
    // Truncated object, with a Content-Length that matches the truncated size.
    let mut t = transfer("https://s/o/p.json.gz?x", Format::Jsonl, false);
    expect_send(&mut t, now);
    let short = &body[..body.len() - 10];
    t.handle_head(StatusCode::OK, &length(short.len()), now);
    assert!(t.handle_body(short, now, |_| {}).is_continue());
    t.handle_body_end(now);
    assert!(matches!(
        t.poll_output(now),
        TransferStep::Failed(TransferError::Corrupt {
            error: GzipError::Truncated,
            ..
        })
    ));
    // A flipped byte in the CRC trailer.
    let n = body.len();
    body[n - 6] ^= 0xff;
    let mut t = transfer("https://s/o/p.json.gz?x", Format::Jsonl, false);
    expect_send(&mut t, now);
    t.handle_head(StatusCode::OK, &HeaderMap::new(), now);
    let r = t.handle_body(&body, now, |_| {});
    t.handle_body_end(now);
    assert!(
        r.is_break()
            || matches!(
                t.poll_output(now),
                TransferStep::Failed(TransferError::Corrupt { .. })
            )
    );
    assert!(matches!(
        t.poll_output(now),
        TransferStep::Failed(TransferError::Corrupt { .. })
    ));
}

#[test]
fn longer_body_than_announced_fails() {
    let now = origin();
    let mut t = transfer("https://s/o/p.parquet?x", Format::Parquet, false);
    expect_send(&mut t, now);
    t.handle_head(
        StatusCode::OK,
        &headers(&[("content-length", "4".into())]),
        now,
    );
    assert!(t.handle_body(b"12345", now, |_| {}).is_break());
    assert!(matches!(
        t.poll_output(now),
        TransferStep::Failed(TransferError::TooLong { expected: 4, .. })
    ));
}

#[test]
fn server_errors_and_drops_are_bounded() {
    let now = origin();
    let mut t = transfer("https://s/o/p.json.gz?x", Format::Jsonl, false);
    let mut sends = 0;
    let mut clock = now;
    loop {
        match t.poll_output(clock) {
            TransferStep::Send(_) => {
                sends += 1;
                t.handle_head(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), clock);
            }
            TransferStep::Wait(until) => clock = until,
            TransferStep::Failed(TransferError::Storage {
                error: StorageError::Server(503),
                ..
            }) => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sends, 3);
    let mut t = transfer("https://s/o/p.json.gz?x", Format::Jsonl, false);
    let mut sends = 0;
    let step = loop {
        match t.poll_output(clock) {
            TransferStep::Send(_) => {
                sends += 1;
                t.handle_failure(failure(), clock);
            }
            TransferStep::Wait(until) => clock = until,
            other => break other,
        }
    };
    assert!(matches!(
        step,
        TransferStep::Failed(TransferError::Transport { attempts: 3, .. })
    ));
    assert_eq!(sends, 3);
    let _ = run_to_end;
}

#[test]
fn unusable_file_name_is_refused() {
    assert!(Transfer::new(&config(), object("https://s/o/..?x"), Format::Jsonl, false).is_err());
    let t = transfer("https://s/a/..%2F..%2Fevil.gz?x", Format::Jsonl, false);
    assert_eq!(t.file_name(), "evil.gz");
    assert!(!format!("{t:?}").contains("?x"));
}

#[test]
fn streaming_mode_never_hands_out_output_twice() {
    let data: Vec<u8> = (0..20_000u32)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let body = gz(&data);
    let now = origin();
    let mut t = transfer("https://s/o/p.json.gz?x", Format::Jsonl, true).streaming();
    let mut out = Vec::new();
    expect_send(&mut t, now);
    t.handle_head(StatusCode::OK, &length(body.len()), now);
    feed(&mut t, &body[..body.len() / 2], now, &mut out);
    t.handle_failure(failure(), now);
    let later = expect_wait(&mut t, now);
    expect_send(&mut t, later);
    // The server ignores Range: the whole object again, and nothing to truncate.
    let action = t.handle_head(StatusCode::OK, &length(body.len()), later);
    assert_eq!(action, HeadAction::ReadBody { truncate: false });
    for chunk in body.chunks(777) {
        feed(&mut t, chunk, now, &mut out);
    }
    t.handle_body_end(later);
    assert!(matches!(t.poll_output(later), TransferStep::Done(_)));
    assert_eq!(out, data, "every byte exactly once");
}

#[test]
fn downloads_refuse_shared_file_names() {
    let result = |urls: &[&str]| dap_proto::QueryResult {
        namespace: "canvas".into(),
        table: "t".into(),
        job: dap_proto::JobId::new("j"),
        format: Format::Jsonl,
        expires_at: None,
        schema_version: 1,
        range: dap_proto::DataRange::Snapshot {
            at: "2026-11-29T00:00:00Z".parse().unwrap(),
        },
        objects: urls
            .iter()
            .enumerate()
            .map(|(i, u)| ObjectUrl {
                id: ObjectId::new(format!("j/{i}")),
                url: PresignedUrl::new(*u),
            })
            .collect(),
        pending: Vec::new(),
        urls_issued_at: origin(),
    };
    let spec = dap_proto::DownloadSpec::files(2, false, 1);
    let ok = dap_proto::Download::new(
        &config(),
        &result(&["https://s/a/p0.json.gz?x", "https://s/a/p1.json.gz?x"]),
        spec,
    );
    assert_eq!(ok.unwrap().objects(), 2);
    let err = dap_proto::Download::new(
        &config(),
        &result(&["https://s/a/p.json.gz?x", "https://s/b/p.json.gz?y"]),
        spec,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("share the file name p.json.gz"),
        "{err}"
    );
}
