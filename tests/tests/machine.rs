//! Conformance scenarios of the download machine and of the limits every transport
//! applies alike: URL refreshes, stalls, blank lines, proxies, deadlines, retry budgets
//! and temporary files. Like `conformance.rs`, each runs over every transport.

use std::io::Write as _;
use std::time::{Duration, Instant};

use dap_emulator::{EmulatorConfig, Endpoint, FaultAction, FaultBody, FaultRule};
use dap_proto::{Format, LowSpeed};
use dap_tests::stub::{Stub, gzip, range_start, result_for, serve};
use dap_tests::{
    DownloadSpec, FailureKind, Harness, Transport, client_options, conformance, downloaded_json,
    expected_json, fast_config, files_under, fresh_dir, ms, objects_emulator, small_emulator,
    start_emulator,
};

/// A harness whose jobs have `objects` objects, and a JSON Lines snapshot of
/// `canvas.users` made through it.
fn users_snapshot(t: Transport, objects: u32) -> (Harness, dap_proto::QueryResult) {
    let h = Harness::new(t, objects_emulator(objects));
    let result = h
        .driver
        .snapshot("canvas", "users", Format::Jsonl)
        .expect("snapshot");
    (h, result)
}

/// The client knows its URLs are older than their lifetime (`X-Amz-Expires`), and
/// storage would refuse them: the download fetches fresh ones in one batch before its
/// first GET, so storage never answers 403; the same for a record stream.
fn urls_refreshed_before_they_expire(t: Transport) {
    let (h, mut result) = users_snapshot(t, 3);
    let (emu, d) = (&h.emu, &h.driver);
    let age = Duration::from_secs(16 * 60);
    emu.advance_clock(age);
    result.urls_issued_at = Instant::now()
        .checked_sub(age)
        .expect("the monotonic clock is older than 16 minutes");
    emu.reset_stats();
    let dir = fresh_dir();
    let files = d
        .download(&result, dir.path(), DownloadSpec::default())
        .expect("download with URLs refreshed ahead of time");
    assert!(files.iter().all(|f| f.url_refreshes == 0), "{files:?}");
    let s = emu.stats();
    assert_eq!(s.requests.object_urls, 1, "one batch for the three URLs");
    assert_eq!(
        s.requests.storage, 3,
        "one GET per object: no 403 was served"
    );
    let expected = expected_json(emu, "canvas", "users", &result.range);
    assert_eq!(downloaded_json(&files), expected);

    emu.reset_stats();
    assert_eq!(d.json_records(&result).expect("records"), expected);
    let s = emu.stats();
    assert_eq!((s.requests.object_urls, s.requests.storage), (1, 3));
}

/// Every URL of a job is refused at once (storage's clock moved past their expiry
/// while the client's did not): one object at a time, the first 403 refreshes all
/// the URLs issued with it, in one request.
fn refused_urls_refreshed_in_one_batch(t: Transport) {
    let (h, result) = users_snapshot(t, 4);
    let (emu, d) = (&h.emu, &h.driver);
    emu.advance_clock(Duration::from_secs(20 * 60));
    emu.reset_stats();
    let dir = fresh_dir();
    let spec = DownloadSpec {
        decompress: false,
        concurrency: 1,
    };
    let files = d.download(&result, dir.path(), spec).expect("download");
    let refreshes: Vec<u32> = files.iter().map(|f| f.url_refreshes).collect();
    assert_eq!(refreshes, [1, 0, 0, 0]);
    let s = emu.stats();
    assert_eq!(
        s.requests.object_urls, 1,
        "not one request per refused object"
    );
    assert_eq!(s.requests.storage, 5);
}

/// A jsonl object whose body stops after half its bytes and then trickles a byte every
/// 50 ms: the low-speed rule (1 KiB in 300 ms here) abandons the attempt and the
/// download resumes with `Range`, like a dropped one.
fn stalled_download_resumes(t: Transport) {
    let lines: String = (0..4000)
        .map(|i| {
            format!(
                "{{\"key\":{{\"id\":{i}}},\"value\":{{\"n\":\"{}\"}}}}\n",
                i * 7919
            )
        })
        .collect();
    let body = gzip(lines.as_bytes());
    let half = body.len() / 2;
    let served = body.clone();
    let stub = Stub::start(move |i, head, stream| {
        let start = range_start(head).unwrap_or(0);
        let trickle = (i == 0).then_some(ms(50));
        serve(
            stream,
            &served,
            start,
            if i == 0 { half } else { usize::MAX },
            trickle,
        );
    });
    let rule = LowSpeed {
        min_bytes: 1024,
        window: ms(300),
    };
    let h = Harness::with_config(t, small_emulator(), |b| b.low_speed(rule));
    let result = result_for(&[stub.url("/out/part-00000.json.gz")]);
    let dir = fresh_dir();
    let started = Instant::now();
    let spec = DownloadSpec {
        decompress: true,
        concurrency: 1,
    };
    let files = h
        .driver
        .download(&result, dir.path(), spec)
        .expect("the stalled download resumes");
    let took = started.elapsed();
    eprintln!(
        "{t}: a stalled download recovered in {took:?} (window {:?})",
        rule.window
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert_eq!(files[0].resumes, 1);
    assert_eq!(std::fs::read(&files[0].path).unwrap(), lines.as_bytes());
    let heads = stub.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    let resumed_at = range_start(&heads[1]).expect("a Range on the second request");
    assert!(
        resumed_at >= half && resumed_at < body.len(),
        "{resumed_at}"
    );
    assert_eq!(files_under(dir.path()).len(), 1);
}

/// Blank lines are records like any other in `records()`, and skipped by
/// `json_records()`, in every transport.
fn blank_lines_handled_alike(t: Transport) {
    let text = b"{\"a\":1}\n\n  \n{\"a\":2}\r\n\n";
    let body = gzip(text);
    let stub = Stub::start(move |_, head, stream| {
        serve(
            stream,
            &body,
            range_start(head).unwrap_or(0),
            usize::MAX,
            None,
        );
    });
    let h = Harness::new(t, small_emulator());
    let result = result_for(&[stub.url("/out/part-00000.json.gz")]);
    let records = h.driver.records(&result).expect("records");
    let expected: Vec<&[u8]> = vec![b"{\"a\":1}", b"", b"  ", b"{\"a\":2}", b""];
    assert_eq!(records, expected);
    let json = h.driver.json_records(&result).expect("json records");
    assert_eq!(
        json,
        [serde_json::json!({"a": 1}), serde_json::json!({"a": 2})]
    );
}

/// With a proxy configured, loopback destinations (the API and storage here) are
/// reached directly: the proxy, a stub that records what reaches it, sees nothing. A
/// non-loopback destination does go through it.
fn loopback_never_proxied(t: Transport) {
    let proxy = Stub::start(|_, _, stream| {
        let _ = stream.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
    });
    let emu = start_emulator(small_emulator());
    let config = fast_config(&emu).build().expect("config");
    let d = t.driver_with(config, None, client_options().proxy(proxy.url("")));
    let result = d
        .snapshot("canvas", "accounts", Format::Jsonl)
        .expect("snapshot");
    d.download(&result, fresh_dir().path(), DownloadSpec::default())
        .expect("download");
    assert!(proxy.heads().is_empty(), "{:?}", proxy.heads());
    if t == Transport::Raw {
        return; // The raw driver has no proxy support to check.
    }
    let elsewhere = dap_proto::Config::builder("id", "secret")
        .base_url("http://dap.example.invalid")
        .dangerous_allow_plain_http(true)
        .retry(dap_tests::fast_retry().with_max_attempts(1))
        .build()
        .expect("config");
    let d = t.driver_with(elsewhere, None, client_options().proxy(proxy.url("")));
    assert!(d.list_tables("canvas").is_err());
    let heads = proxy.heads();
    assert!(
        heads.iter().any(|h| h.contains("dap.example.invalid")),
        "{heads:?}"
    );
}

/// An API server that sends its headers and then a byte every 50 ms: the low-speed
/// rule (1 KiB in 200 ms here) abandons each attempt, and the call ends with a
/// transport error that names the stall, instead of hanging for the length of the body.
fn stalled_api_response_is_abandoned(t: Transport) {
    let stub = Stub::start(|_, _, stream| {
        let body = br#"{"access_token":"tok","expires_in":3600,"token_type":"bearer"}"#;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        for byte in body {
            std::thread::sleep(ms(50));
            if stream.write_all(&[*byte]).is_err() {
                return;
            }
        }
    });
    let rule = LowSpeed {
        min_bytes: 1024,
        window: ms(200),
    };
    let config = dap_proto::Config::builder("id", "secret")
        .base_url(stub.url(""))
        .retry(dap_tests::fast_retry().with_max_attempts(2))
        .low_speed(rule)
        .build()
        .expect("config");
    let d = t.driver(config, None);
    let started = Instant::now();
    let err = d.list_tables("canvas").unwrap_err();
    let took = started.elapsed();
    match &err.kind {
        FailureKind::Transport {
            what: "login",
            attempts: 2,
            last,
        } => assert!(last.starts_with("stalled"), "{err}"),
        _ => panic!("{err}"),
    }
    assert_eq!(stub.heads().len(), 2);
    assert!(took < Duration::from_secs(5), "{took:?}");
}

/// A call that gets no answer ends at the per-call deadline with a transient timeout.
fn per_call_deadline(t: Transport) {
    let delay = FaultRule::new(Endpoint::Tables, 10, FaultAction::Delay { millis: 3_000 });
    let mut emu = small_emulator();
    emu.faults.rules.push(delay);
    let h = Harness::with_config(t, emu, |b| b.call_timeout(ms(250)));
    let started = Instant::now();
    let err = h.driver.list_tables("canvas").unwrap_err();
    let took = started.elapsed();
    let FailureKind::Dap(core) = &err.kind else {
        panic!("{err}");
    };
    assert!(
        matches!(
            core,
            dap_proto::Error::Timeout {
                what: "list tables",
                ..
            }
        ),
        "{err}"
    );
    assert!(core.is_transient());
    assert!(took < Duration::from_secs(2), "{took:?}");
}

/// A 503 storm on job status ends the query after `max_attempts` polls of the job (4
/// in the suite's policy), not twice as many.
fn job_status_storm_ends_within_budget(t: Transport) {
    let emu = EmulatorConfig {
        job_waiting: Duration::from_secs(3600),
        ..small_emulator()
    };
    let h = Harness::new(t, emu);
    let (emu, d) = (&h.emu, &h.driver);
    emu.add_fault(FaultRule::status(Endpoint::Job, 100, 503, FaultBody::Json));
    let err = d
        .query("canvas", "users", dap_proto::Query::snapshot(Format::Jsonl))
        .unwrap_err();
    assert_eq!(emu.stats().requests.job, 4, "{err}");
    assert!(err.text.contains("after 4 attempts"), "{err}");
    let FailureKind::Dap(core) = &err.kind else {
        panic!("{err}");
    };
    assert!(core.is_transient(), "{err}");
}

/// Two downloads of one job into one directory at the same time: each writes its own
/// temporary files, both succeed, and the files are whole.
fn overlapping_downloads_never_share_a_file(t: Transport) {
    let (h, result) = users_snapshot(t, 3);
    let (emu, d) = (&h.emu, &h.driver);
    let dir = fresh_dir();
    let runs: Vec<_> = std::thread::scope(|s| {
        let a = s.spawn(|| d.download(&result, dir.path(), DownloadSpec::default()));
        let b = s.spawn(|| d.download(&result, dir.path(), DownloadSpec::default()));
        [a.join().unwrap(), b.join().unwrap()]
    })
    .into_iter()
    .collect();
    let expected = expected_json(emu, "canvas", "users", &result.range);
    for run in runs {
        let files = run.expect("both downloads succeed");
        assert_eq!(downloaded_json(&files), expected);
    }
    assert_eq!(
        files_under(dir.path()).len(),
        3,
        "{:?}",
        files_under(dir.path())
    );
}

/// Records of a parquet result are refused the same way everywhere: an argument error,
/// before any request.
fn parquet_records_refused_alike(t: Transport) {
    let h = Harness::new(t, small_emulator());
    let mut result = result_for(&["http://127.0.0.1:9/out/part-0.parquet".to_owned()]);
    result.format = Format::Parquet;
    let err = h.driver.records(&result).unwrap_err();
    assert!(
        matches!(err.kind, FailureKind::Dap(dap_proto::Error::Argument(_))),
        "{err}"
    );
    let err = h.driver.json_records(&result).unwrap_err();
    assert!(
        matches!(err.kind, FailureKind::Usage(_) | FailureKind::Dap(_)),
        "{err}"
    );
}

conformance!(urls_refreshed_before_they_expire: ureq, hyper, raw);
conformance!(refused_urls_refreshed_in_one_batch: ureq, hyper, raw);
conformance!(stalled_download_resumes: ureq, hyper, raw);
conformance!(blank_lines_handled_alike: ureq, hyper, raw);
conformance!(loopback_never_proxied: ureq, hyper, raw);
conformance!(per_call_deadline: ureq, hyper, raw);
conformance!(stalled_api_response_is_abandoned: ureq, hyper, raw);
conformance!(job_status_storm_ends_within_budget: ureq, hyper, raw);
conformance!(overlapping_downloads_never_share_a_file: ureq, hyper, raw);
conformance!(parquet_records_refused_alike: ureq, hyper, raw);
