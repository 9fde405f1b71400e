//! The conformance scenarios: each is a function of the [`Transport`] it drives,
//! expanded by [`conformance!`] into one `#[test]` per transport at the end of this file.
//!
//! Every scenario starts its own emulator, asserts the outcome of the calls and the
//! emulator's request counts, and finishes well under a second: lifetimes and delays
//! are short or moved with the emulator's clock, never slept through.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dap_emulator::{EmulatorConfig, Endpoint, FaultAction, FaultBody, FaultRule, Faults, Stats};
use dap_proto::{
    DapErrorKind, DataRange, Format, JobState, ProtocolErrorKind, Query, QueryResult, TokenHeader,
    TransferError,
};
use dap_tests::{
    Call, Cell, DownloadSpec, Downloaded, Driver, Failure, FailureKind, Harness, LogCapture,
    Parsed, Transport, conformance, expected_json, expected_records, expected_rows, files_under,
    fresh_dir, gunzip_file, ms, objects_emulator, parse_content, parse_csv, parse_tsv_line,
    small_emulator, start_emulator, wait_until,
};

// ------------------------------------------------------------------ helpers

/// Asserts counters of the emulator's [`Stats`]: `counts!(s; logins = 1, requests.query = 3)`.
/// A failure names the counter and shows all the stats.
macro_rules! counts {
    ($stats:expr; $($($field:ident).+ = $want:expr),+ $(,)?) => {{
        let s: &Stats = &$stats;
        $(assert_eq!(s.$($field).+, $want, "stats.{}: {s:#?}", stringify!($($field).+));)+
    }};
}

/// Scenarios that run a parametrised scenario with one fixed argument:
/// `name = scenario(argument);` defines `fn name(t: Transport)`.
macro_rules! variants {
    ($($name:ident = $scenario:ident($arg:expr);)+) => {
        $(fn $name(t: Transport) { $scenario(t, $arg) })+
    };
}

/// One `#[test]` per transport (`ureq`, `hyper`, `raw`) for each scenario named.
macro_rules! every_transport {
    ($($scenario:ident),+ $(,)?) => {
        $(conformance!($scenario: ureq, hyper, raw);)+
    };
}

/// [`small_emulator`] that injects `rules`.
fn faulty(rules: Vec<FaultRule>) -> EmulatorConfig {
    EmulatorConfig {
        faults: Faults {
            rules,
            ..Faults::default()
        },
        ..small_emulator()
    }
}

/// A snapshot of `canvas.table`, which must succeed.
fn snapshot(d: &dyn Driver, table: &str, format: Format) -> QueryResult {
    d.snapshot("canvas", table, format).expect("snapshot")
}

/// Downloads `result` into a fresh directory with `spec`, which must fail and leave
/// nothing behind (final or temporary); the failure.
fn failed_download(d: &dyn Driver, result: &QueryResult, spec: DownloadSpec) -> Failure {
    let dir = fresh_dir();
    let err = d.download(result, dir.path(), spec).unwrap_err();
    assert_nothing_left(dir.path());
    err
}

/// How to download: decompressed or not, `concurrency` objects at a time.
fn spec(decompress: bool, concurrency: usize) -> DownloadSpec {
    DownloadSpec {
        decompress,
        concurrency,
    }
}

/// A harness on [`small_emulator`] and a JSON Lines snapshot of `canvas.users`.
fn users_snapshot(t: Transport) -> (Harness, QueryResult) {
    let h = Harness::new(t, small_emulator());
    let result = snapshot(&*h.driver, "users", Format::Jsonl);
    (h, result)
}

/// Downloads the JSON Lines `result` into a fresh directory with the default spec,
/// which must succeed (`what` says how), and checks the layout; the directory and files.
fn download_jsonl(
    d: &dyn Driver,
    result: &QueryResult,
    what: &str,
) -> (tempfile::TempDir, Vec<Downloaded>) {
    let dir = fresh_dir();
    let files = d
        .download(result, dir.path(), DownloadSpec::default())
        .expect(what);
    check_layout(dir.path(), result, &files, ".json.gz");
    (dir, files)
}

/// Asserts the emulator's count of storage requests (`why` that many) and that none
/// carried credentials.
fn storage_requests(emu: &dap_emulator::Emulator, n: u64, why: &str) {
    let s = emu.stats();
    assert_eq!(s.requests.storage, n, "{why}");
    no_storage_credentials(&s);
}

/// Asserts that `err` is a typed transfer error saying the content is corrupt.
fn assert_corrupt(err: &Failure, case: &str) {
    assert!(
        matches!(
            err.kind,
            FailureKind::Transfer(TransferError::Corrupt { .. })
        ),
        "{case}: {err}"
    );
}

/// Asserts that `err` is a typed transfer error after `n` attempts without progress.
fn assert_gave_up(err: &Failure, n: u32) {
    let attempts = match &err.kind {
        FailureKind::Transfer(TransferError::Transport { attempts, .. }) => Some(*attempts),
        _ => None,
    };
    assert_eq!(attempts, Some(n), "{err}");
}

fn ids(result: &QueryResult) -> Vec<dap_proto::ObjectId> {
    result.objects.iter().map(|o| o.id.clone()).collect()
}

fn no_storage_credentials(stats: &Stats) {
    counts!(stats; storage_with_credentials = 0, storage_with_authorization = 0,
        storage_with_instauth = 0);
}

/// A download that must fail cleanly left no file behind (final or temporary).
fn assert_nothing_left(dir: &std::path::Path) {
    let left = files_under(dir);
    assert!(left.is_empty(), "files left behind: {left:?}");
}

/// Checks the layout of downloaded files: `dir/job_<id>/<name>`, in object order,
/// sizes as reported, and no other file (no temporary left).
fn check_layout(dir: &std::path::Path, result: &QueryResult, files: &[Downloaded], suffix: &str) {
    assert_eq!(files.len(), result.objects.len());
    let job_dir = dir.join(dap_proto::download::job_dir(&result.job));
    for (file, object) in files.iter().zip(&result.objects) {
        assert_eq!(file.object, object.id);
        assert_eq!(file.path.parent(), Some(job_dir.as_path()));
        let name = file.path.file_name().unwrap().to_string_lossy();
        assert!(
            name.starts_with("part-") && name.ends_with(suffix),
            "{name}"
        );
        assert_eq!(std::fs::metadata(&file.path).unwrap().len(), file.bytes);
    }
    let left = files_under(dir);
    assert_eq!(left.len(), files.len(), "unexpected files: {left:?}");
    assert!(left.iter().all(|n| !n.contains("partial")), "{left:?}");
}

/// Parsed content of a job: JSON values of all objects, or the rows of all objects
/// with each object's header checked and removed.
fn job_content(format: Format, objects: &[Vec<u8>], header: Option<&[Cell]>) -> Parsed {
    match format {
        Format::Jsonl => Parsed::Json(
            objects
                .iter()
                .flat_map(|o| match parse_content(format, o) {
                    Parsed::Json(v) => v,
                    Parsed::Rows(_) => unreachable!(),
                })
                .collect(),
        ),
        _ => {
            let header = header.expect("a header for csv/tsv");
            let mut rows = Vec::new();
            for o in objects {
                let Parsed::Rows(mut r) = parse_content(format, o) else {
                    unreachable!()
                };
                assert!(!r.is_empty(), "an object without a header");
                assert_eq!(r.remove(0), header, "header of an object");
                rows.extend(r);
            }
            Parsed::Rows(rows)
        }
    }
}

/// The content the emulator says a job holds, in the shape of [`job_content`].
fn expected_content(
    emu: &dap_emulator::Emulator,
    table: &str,
    result: &QueryResult,
) -> (Parsed, Option<Vec<Cell>>) {
    let incremental = matches!(result.range, DataRange::Incremental { .. });
    match result.format {
        Format::Jsonl => (
            Parsed::Json(expected_json(emu, "canvas", table, &result.range)),
            None,
        ),
        format => {
            let records = expected_records(emu, "canvas", table, &result.range);
            let mut rows = expected_rows("canvas", table, incremental, format, &records);
            let header = rows.remove(0);
            (Parsed::Rows(rows), Some(header))
        }
    }
}

/// Applies incremental records to a keyed state (deletes remove, upserts replace).
fn apply(state: &mut BTreeMap<i64, serde_json::Value>, changes: &[serde_json::Value]) {
    for change in changes {
        let id = change["key"]["id"].as_i64().expect("key.id");
        match change["meta"]["action"].as_str() {
            Some("D") => {
                state.remove(&id);
            }
            Some("U") => {
                let mut record = change.clone();
                record["meta"]
                    .as_object_mut()
                    .expect("meta")
                    .remove("action");
                state.insert(id, record);
            }
            other => panic!("incremental record without action: {other:?}"),
        }
    }
}

fn keyed(records: Vec<serde_json::Value>) -> BTreeMap<i64, serde_json::Value> {
    records
        .into_iter()
        .map(|r| (r["key"]["id"].as_i64().expect("key.id"), r))
        .collect()
}

// ------------------------------------------------------------------ every endpoint

/// Every endpoint and every high-level call once, with exact request counts.
fn every_endpoint(t: Transport) {
    let h = Harness::new(t, objects_emulator(2));
    let (emu, d) = (&h.emu, &*h.driver);

    for (ns, table) in [
        ("canvas", "accounts"),
        ("canvas_logs", "web_logs"),
        ("catalog", "products"),
    ] {
        let tables = d.list_tables(ns).expect("list tables");
        let want: Vec<String> = dap_emulator::data::tables(ns)
            .unwrap()
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert_eq!(tables, want, "{ns}");
        assert!(tables.iter().any(|x| x == table), "{tables:?}");
    }

    let schema = d.table_schema("canvas", "accounts").expect("schema");
    let def = dap_emulator::data::table("canvas", "accounts").unwrap();
    assert_eq!(schema.version, u64::from(def.schema_version));
    assert!(schema.value().is_object(), "{:?}", schema.schema);

    let missing = d.table_schema("canvas", "no_such_table").unwrap_err();
    let api = missing.api().unwrap_or_else(|| panic!("{missing}"));
    assert_eq!(api.status.as_u16(), 404);
    assert!(matches!(api.kind, DapErrorKind::NotFound { .. }), "{api:?}");

    let result = d
        .query("canvas", "accounts", Query::snapshot(Format::Jsonl))
        .expect("query");
    assert_eq!(result.format, Format::Jsonl);
    assert_eq!(result.schema_version, u64::from(def.schema_version));
    assert_eq!(result.objects.len(), 2);
    let DataRange::Snapshot { at } = result.range else {
        panic!("not a snapshot: {:?}", result.range);
    };
    assert!(at <= emu.now(), "{at}");

    let users = d
        .snapshot("canvas", "users", Format::Csv)
        .expect("snapshot");
    assert_eq!(users.format, Format::Csv);
    assert_ne!(users.job, result.job);

    emu.advance_clock(Duration::from_secs(600));
    let inc = d
        .incremental("canvas", "accounts", Format::Tsv, at, None)
        .expect("incremental");
    let DataRange::Incremental { since, until } = inc.range else {
        panic!("not incremental: {:?}", inc.range);
    };
    assert_eq!(since, at);
    assert!(until > since);

    let job = d.get_job(&result.job).expect("job");
    assert_eq!(job.id, result.job);
    let JobState::Complete(complete) = &job.state else {
        panic!("job not complete: {job:?}");
    };
    assert_eq!(complete.objects, ids(&result));
    assert_eq!(complete.range, result.range);

    let urls = d.object_urls(&ids(&result)).expect("object urls");
    assert_eq!(
        urls.urls.iter().map(|u| u.id.clone()).collect::<Vec<_>>(),
        ids(&result)
    );
    for (fresh, old) in urls.urls.iter().zip(&result.objects) {
        assert_eq!(fresh.url.redacted(), old.url.redacted());
        assert!(fresh.url.secret().contains("X-Amz-Signature="));
    }

    let mut storage = 0;
    if t.downloads() {
        let _download = download_jsonl(d, &result, "download");
        let records = d.records(&result).expect("records");
        let json = d.json_records(&result).expect("json records");
        let expected = expected_json(emu, "canvas", "accounts", &result.range);
        assert_eq!(records.len(), expected.len());
        assert_eq!(json, expected);
        storage = 6;
    } else {
        let err = d
            .download(&result, fresh_dir().path(), DownloadSpec::default())
            .unwrap_err();
        assert!(matches!(err.kind, FailureKind::NotApplicable), "{err}");
    }

    assert_eq!(d.logins(), 1);
    let s = emu.stats();
    assert_eq!(
        s.requests.job, 1,
        "jobs complete at once: only get_job asks"
    );
    counts!(s; logins = 1, requests.login = 1, requests.tables = 3, requests.schema = 2,
        requests.query = 3, requests.object_urls = 4, requests.storage = storage,
        requests.other = 0, jobs_created = 3, unauthorized = 0, missing_user_agent = 0);
    no_storage_credentials(&s);
}

// ------------------------------------------------------------------ formats

/// Snapshot in `format` of two tables with nested and awkward values, downloaded
/// (compressed and decompressed) and streamed; all content equals the emulator's
/// expected records.
fn format_content(t: Transport, format: Format) {
    let h = Harness::new(t, objects_emulator(3));
    let (emu, d) = (&h.emu, &*h.driver);
    let suffix = match format {
        Format::Jsonl => ".json.gz",
        Format::Csv => ".csv.gz",
        _ => ".tsv.gz",
    };
    let tables = ["courses", "discussion_topics"];
    for table in tables {
        let result = snapshot(d, table, format);
        assert_eq!(result.format, format);
        assert_eq!(result.objects.len(), 3);

        // Compressed, two at a time.
        let dir = fresh_dir();
        let files = d
            .download(&result, dir.path(), spec(false, 2))
            .expect("download");
        check_layout(dir.path(), &result, &files, suffix);
        let plain: Vec<Vec<u8>> = files.iter().map(|f| gunzip_file(&f.path)).collect();
        for (f, p) in files.iter().zip(&plain) {
            assert_eq!(f.bytes, f.compressed_bytes);
            assert_eq!(f.decompressed_bytes, Some(p.len() as u64));
            assert_eq!((f.resumes, f.url_refreshes), (0, 0));
        }
        let (expected, header) = expected_content(emu, table, &result);
        let got = job_content(format, &plain, header.as_deref());
        assert_eq!(got, expected, "{table} {format}");

        // Decompressed, one at a time: the same bytes, without `.gz`.
        let dir2 = fresh_dir();
        let files2 = d
            .download(&result, dir2.path(), spec(true, 1))
            .expect("decompressed download");
        check_layout(
            dir2.path(),
            &result,
            &files2,
            suffix.trim_end_matches(".gz"),
        );
        for ((f, p), c) in files2.iter().zip(&plain).zip(&files) {
            assert_eq!(&std::fs::read(&f.path).unwrap(), p);
            assert_eq!(f.bytes, p.len() as u64);
            assert_eq!(f.decompressed_bytes, Some(p.len() as u64));
            assert_eq!(f.compressed_bytes, c.compressed_bytes);
        }

        // Streamed records: one per line (CSV: per RFC 4180 record), headers included.
        let records = d.records(&result).expect("records");
        let streamed: Vec<Vec<Cell>> = records
            .iter()
            .map(|r| {
                let text = std::str::from_utf8(r).expect("UTF-8 record");
                match format {
                    Format::Csv => {
                        let mut rows = parse_csv(text);
                        assert_eq!(rows.len(), 1, "one CSV record: {text:?}");
                        rows.remove(0)
                    }
                    Format::Tsv => parse_tsv_line(text),
                    _ => vec![Cell::Text(text.to_owned())],
                }
            })
            .collect();
        match (&got, header) {
            (Parsed::Rows(rows), Some(header)) => {
                let headers = streamed.iter().filter(|r| **r == header).count();
                assert_eq!(headers, result.objects.len());
                let body: Vec<Vec<Cell>> = streamed.into_iter().filter(|r| *r != header).collect();
                assert_eq!(&body, rows, "streamed {table} {format}");
            }
            (Parsed::Json(values), None) => {
                let parsed: Vec<serde_json::Value> = records
                    .iter()
                    .map(|r| serde_json::from_slice(r).expect("a JSON record"))
                    .collect();
                assert_eq!(&parsed, values);
                let json = d.json_records(&result).expect("json records");
                assert_eq!(&json, values);
            }
            _ => unreachable!(),
        }
        if format != Format::Jsonl {
            let err = d.json_records(&result).unwrap_err();
            assert!(matches!(err.kind, FailureKind::Usage(_)), "{err}");
        }
    }

    let per_table = if format == Format::Jsonl { 12 } else { 9 };
    let s = emu.stats();
    counts!(s; logins = 1, requests.login = 1, requests.query = 2, requests.job = 0,
        requests.object_urls = 2, requests.storage = per_table * tables.len() as u64);
    no_storage_credentials(&s);
}

variants! {
    jsonl_snapshot_content = format_content(Format::Jsonl);
    csv_snapshot_content = format_content(Format::Csv);
    tsv_snapshot_content = format_content(Format::Tsv);
}

// ------------------------------------------------------------------ incremental chaining

/// Snapshot, then two incrementals each starting where the previous result ended;
/// each yields exactly the changes, and applying them to the snapshot gives the later
/// snapshot.
fn incremental_chaining(t: Transport) {
    // Tokens outlive the two hours the clock jumps, so the chain needs one login.
    let h = Harness::new(
        t,
        EmulatorConfig {
            token_lifetime: Duration::from_secs(6 * 3600),
            ..small_emulator()
        },
    );
    let (emu, d) = (&h.emu, &*h.driver);
    let table = "users";
    let snap = snapshot(d, table, Format::Jsonl);
    let DataRange::Snapshot { at } = snap.range else {
        panic!("{:?}", snap.range);
    };
    let mut state = if t.downloads() {
        let records = d.json_records(&snap).expect("snapshot records");
        assert_eq!(records, expected_json(emu, "canvas", table, &snap.range));
        Some(keyed(records))
    } else {
        None
    };

    let mut since = at;
    for round in 0..2 {
        emu.advance_clock(Duration::from_secs(3600));
        let before = emu.now();
        let inc = d
            .incremental("canvas", table, Format::Jsonl, since, None)
            .expect("incremental");
        let DataRange::Incremental { since: s, until } = inc.range else {
            panic!("not incremental: {:?}", inc.range);
        };
        assert_eq!(s, since, "round {round}: since must be the previous end");
        assert!(
            until >= since + jiff::SignedDuration::from_secs(3600),
            "round {round}: {since} .. {until}"
        );
        assert!(until <= emu.now() && until > before - jiff::SignedDuration::from_secs(2));
        if let Some(state) = state.as_mut() {
            let changes = d.json_records(&inc).expect("incremental records");
            let expected = expected_json(emu, "canvas", table, &inc.range);
            assert!(!expected.is_empty(), "an hour of changes");
            assert_eq!(changes, expected, "round {round}");
            apply(state, &changes);
            let later = expected_json(emu, "canvas", table, &DataRange::Snapshot { at: until });
            assert_eq!(
                state.values().cloned().collect::<Vec<_>>(),
                later,
                "round {round}: snapshot + changes = later snapshot"
            );
        }
        since = inc.range.next_since();
        assert_eq!(since, until);
    }

    let s = emu.stats();
    counts!(s; logins = 1, unauthorized = 0, requests.query = 3, jobs_created = 3,
        requests.object_urls = 3, requests.storage = if t.downloads() { 3 } else { 0 });
    no_storage_credentials(&s);
}

// ------------------------------------------------------------------ concurrency

/// 50 concurrent operations (lists, schemas and snapshots) share one login.
fn fifty_concurrent_operations_one_login(t: Transport) {
    let h = Harness::new(t, small_emulator());
    let (emu, d) = (&h.emu, &*h.driver);
    let calls: Vec<Call> = (0..50)
        .map(|i| match i % 5 {
            0 => Call::tables("canvas"),
            1 => Call::schema("canvas", "courses"),
            2 => Call::snapshot("canvas", "accounts", Format::Jsonl),
            3 => Call::tables("catalog"),
            _ => Call::schema("catalog", "products"),
        })
        .collect();
    let started = Instant::now();
    let results = d.concurrently(calls);
    assert_eq!(results.len(), 50);
    for (i, r) in results.into_iter().enumerate() {
        let answer = r.unwrap_or_else(|e| panic!("call {i} failed: {e}"));
        match (i % 5, answer) {
            (0 | 3, dap_tests::Answer::Tables(t)) => assert!(!t.is_empty()),
            (1 | 4, dap_tests::Answer::Schema(s)) => assert!(s.version > 0),
            (2, dap_tests::Answer::Query(q)) => assert_eq!(q.objects.len(), 1),
            (k, other) => panic!("call {i} (kind {k}) answered {other:?}"),
        }
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(d.logins(), 1);
    let s = emu.stats();
    assert_eq!(s.jobs_created, 1, "identical snapshots share one job");
    counts!(s; logins = 1, requests.login = 1, requests.tables = 20, requests.schema = 20,
        requests.query = 10, requests.object_urls = 10, unauthorized = 0);
}

// ------------------------------------------------------------------ tokens

/// Token lifetime 1 s, a job running 550 ms: the core refreshes the token at half its
/// lifetime (0.5 s) while polling, before the server would refuse it.
fn token_refreshed_during_slow_job(t: Transport) {
    let emu_config = EmulatorConfig {
        token_lifetime: Duration::from_secs(1),
        job_running: ms(550),
        ..small_emulator()
    };
    let h = Harness::new(t, emu_config);
    let (emu, d) = (&h.emu, &*h.driver);
    // Tokens expire on whole emulator seconds: start just after one, so the first
    // token lives (almost) its full second on the server.
    let frac = u64::try_from(emu.now_ms().rem_euclid(1000)).unwrap();
    emu.advance_clock(ms(1000 - frac + 5));
    let started = Instant::now();
    let result = d
        .snapshot("canvas", "accounts", Format::Jsonl)
        .expect("snapshot outlives its first token");
    let took = started.elapsed();
    assert!(took >= ms(500), "{took:?}");
    assert_eq!(result.objects.len(), 1);
    assert_eq!(d.logins(), 2, "one proactive refresh");
    let s = emu.stats();
    assert_eq!(
        s.unauthorized, 0,
        "refreshed before the server refused the token"
    );
    assert!(s.requests.job >= 2, "{:?}", s.requests);
    counts!(s; logins = 2, requests.login = 2, requests.query = 1, requests.object_urls = 1);
}

/// Token lifetime 2 s, job running 3 s (emulator time): the clock jumps past the
/// token's expiry while the job is polled; the poll gets a 401, the core logs in once
/// more, polling resumes and the query completes.
fn token_expired_during_slow_job(t: Transport) {
    let emu_config = EmulatorConfig {
        token_lifetime: Duration::from_secs(2),
        job_running: Duration::from_secs(3),
        ..small_emulator()
    };
    let h = Harness::new(t, emu_config);
    let (emu, d) = (&h.emu, &*h.driver);
    let result = std::thread::scope(|s| {
        let run = s.spawn(|| d.snapshot("canvas", "accounts", Format::Jsonl));
        wait_until(Duration::from_secs(5), "the job being polled", || {
            emu.stats().requests.job >= 1
        });
        emu.advance_clock(ms(2500));
        wait_until(Duration::from_secs(5), "a second login", || {
            let s = emu.stats();
            s.logins == 2 && s.unauthorized == 1
        });
        emu.advance_clock(ms(600));
        run.join().expect("no panic")
    })
    .expect("snapshot survives the expired token");
    assert_eq!(result.objects.len(), 1);
    assert_eq!(d.logins(), 2);
    let s = emu.stats();
    counts!(s; logins = 2, requests.login = 2, unauthorized = 1, requests.query = 1,
        requests.object_urls = 1);
}

/// Tokens revoked between two calls: the next call gets a 401, logs in once more and
/// succeeds.
fn token_revoked_mid_run(t: Transport) {
    let h = Harness::new(t, small_emulator());
    let (emu, d) = (&h.emu, &*h.driver);
    d.list_tables("canvas").expect("tables");
    assert_eq!(emu.revoke_tokens(), 1);
    let result = d
        .snapshot("canvas", "accounts", Format::Jsonl)
        .expect("snapshot after revocation");
    assert_eq!(result.objects.len(), 1);
    d.list_tables("canvas").expect("tables with the new token");
    assert_eq!(d.logins(), 2);
    let s = emu.stats();
    assert_eq!(s.requests.query, 2, "the refused query is sent again");
    counts!(s; logins = 2, requests.login = 2, unauthorized = 1, requests.tables = 2,
        requests.object_urls = 1);
}

// ------------------------------------------------------------------ 429

/// 429 storms with `Retry-After: 1` (capped by the policy to 20 ms) and `0` on
/// login, list and query: every call succeeds after the storm, fast.
fn rate_storm_recovered(t: Transport) {
    let h = Harness::new(
        t,
        faulty(vec![
            FaultRule::rate_storm(Endpoint::Login, 2, 1),
            FaultRule::rate_storm(Endpoint::Tables, 3, 1),
            FaultRule::rate_storm(Endpoint::Query, 3, 0),
        ]),
    );
    let (emu, d) = (&h.emu, &*h.driver);
    let started = Instant::now();
    let tables = d.list_tables("canvas").expect("tables after the storm");
    assert!(!tables.is_empty());
    let result = d
        .snapshot("canvas", "accounts", Format::Jsonl)
        .expect("snapshot after the storm");
    assert_eq!(result.objects.len(), 1);
    // Five Retry-After: 1 answers, each capped at 20 ms: far below five seconds.
    let took = started.elapsed();
    assert!(took < ms(800), "Retry-After not capped: {took:?}");
    counts!(emu.stats(); requests.login = 3, logins = 1, requests.tables = 4, requests.query = 4,
        requests.object_urls = 1, faults_injected = 8);
}

/// A storm longer than the retry policy: the call fails with the API's typed 429 after
/// exactly `max_attempts` requests.
fn rate_storm_exhausts_retries(t: Transport) {
    let h = Harness::new(t, small_emulator());
    let (emu, d) = (&h.emu, &*h.driver);
    d.list_tables("canvas").expect("tables");
    emu.add_fault(FaultRule::rate_storm(Endpoint::Schema, 100, 1));
    let err = d.table_schema("canvas", "accounts").unwrap_err();
    let api = err
        .api()
        .unwrap_or_else(|| panic!("not an API error: {err}"));
    assert_eq!(api.status.as_u16(), 429);
    assert!(matches!(api.kind, DapErrorKind::RateLimited), "{api:?}");
    assert!(api.retry_after.is_some(), "{api:?}");
    assert!(!err.text.is_empty());
    let s = emu.stats();
    assert_eq!(s.requests.schema, 4, "max_attempts of the retry policy");
    counts!(s; faults_injected = 4, logins = 1);
}

// ------------------------------------------------------------------ 5xx

/// The first two requests to `endpoint` answer 503 (then 502 with an HTML body is
/// tested separately): a full run (list, schema, snapshot, job, download) succeeds
/// with exactly two more requests to that endpoint.
fn server_errors_on(t: Transport, endpoint: Endpoint) {
    let h = Harness::new(
        t,
        faulty(vec![FaultRule::status(endpoint, 2, 503, FaultBody::Json)]),
    );
    let (emu, d) = (&h.emu, &*h.driver);
    assert!(!d.list_tables("canvas").expect("tables").is_empty());
    d.table_schema("canvas", "accounts").expect("schema");
    let result = snapshot(d, "accounts", Format::Jsonl);
    let job = d.get_job(&result.job).expect("job");
    assert!(matches!(job.state, JobState::Complete(_)), "{job:?}");
    if t.downloads() {
        let (_dir, files) = download_jsonl(d, &result, "download");
        let (expected, _) = expected_content(emu, "accounts", &result);
        assert_eq!(
            job_content(Format::Jsonl, &[gunzip_file(&files[0].path)], None),
            expected
        );
    }
    let s = emu.stats();
    let extra = |e: Endpoint| if e == endpoint { 2 } else { 0 };
    let storage = if t.downloads() { 1 } else { 0 };
    counts!(s; faults_injected = 2, logins = 1,
        requests.login = 1 + extra(Endpoint::Login),
        requests.tables = 1 + extra(Endpoint::Tables),
        requests.schema = 1 + extra(Endpoint::Schema),
        requests.query = 1 + extra(Endpoint::Query),
        requests.job = 1 + extra(Endpoint::Job),
        requests.object_urls = 1 + extra(Endpoint::ObjectUrls),
        requests.storage = storage + extra(Endpoint::Storage));
    no_storage_credentials(&s);
}

variants! {
    server_errors_on_login = server_errors_on(Endpoint::Login);
    server_errors_on_tables = server_errors_on(Endpoint::Tables);
    server_errors_on_schema = server_errors_on(Endpoint::Schema);
    server_errors_on_query = server_errors_on(Endpoint::Query);
    server_errors_on_job = server_errors_on(Endpoint::Job);
    server_errors_on_object_urls = server_errors_on(Endpoint::ObjectUrls);
    server_errors_on_storage = server_errors_on(Endpoint::Storage);
}

// ------------------------------------------------------------------ malformed bodies

/// HTML and malformed JSON bodies on 5xx are retried like any 5xx; the same on a 200
/// (or longer than the policy) are typed protocol errors.
fn malformed_and_html_bodies(t: Transport) {
    let h = Harness::new(t, small_emulator());
    let (emu, d) = (&h.emu, &*h.driver);

    // A login answered with an HTML page: a protocol error that withholds the body.
    emu.add_fault(FaultRule::status(Endpoint::Login, 1, 200, FaultBody::Html));
    let err = d.list_tables("canvas").unwrap_err();
    let p = err.protocol().unwrap_or_else(|| panic!("{err}"));
    assert!(matches!(p.kind, ProtocolErrorKind::NotJson { .. }), "{p:?}");
    assert_eq!(p.status.as_u16(), 200);
    assert!(
        p.body_excerpt.is_empty(),
        "login bodies are withheld: {p:?}"
    );
    assert_eq!(emu.stats().requests.login, 1, "a 200 is not retried");
    assert_eq!(emu.stats().requests.tables, 0);

    // 5xx with HTML or malformed JSON: retried, then fine.
    emu.add_fault(FaultRule::status(Endpoint::Tables, 2, 502, FaultBody::Html));
    emu.add_fault(FaultRule::status(
        Endpoint::Schema,
        2,
        500,
        FaultBody::MalformedJson,
    ));
    d.list_tables("canvas").expect("tables after two HTML 502s");
    d.table_schema("canvas", "accounts")
        .expect("schema after two malformed 500s");
    counts!(emu.stats(); requests.login = 2, logins = 1, requests.tables = 3, requests.schema = 3);

    // 200 with a malformed or HTML body: a typed protocol error, no retry.
    emu.add_fault(FaultRule::status(
        Endpoint::Tables,
        1,
        200,
        FaultBody::MalformedJson,
    ));
    let err = d.list_tables("canvas").unwrap_err();
    let p = err.protocol().unwrap_or_else(|| panic!("{err}"));
    assert!(
        matches!(p.kind, ProtocolErrorKind::MalformedJson { .. }),
        "{p:?}"
    );
    assert_eq!(p.status.as_u16(), 200);
    emu.add_fault(FaultRule::status(Endpoint::Schema, 1, 200, FaultBody::Html));
    let err = d.table_schema("canvas", "accounts").unwrap_err();
    let p = err.protocol().unwrap_or_else(|| panic!("{err}"));
    assert!(matches!(p.kind, ProtocolErrorKind::NotJson { .. }), "{p:?}");
    counts!(emu.stats(); requests.tables = 4, requests.schema = 4);

    // An HTML 502 that never ends: a typed protocol error after max_attempts.
    let result = snapshot(d, "accounts", Format::Jsonl);
    emu.add_fault(FaultRule::status(Endpoint::Job, 100, 502, FaultBody::Html));
    let err = d.get_job(&result.job).unwrap_err();
    let p = err.protocol().unwrap_or_else(|| panic!("{err}"));
    assert!(matches!(p.kind, ProtocolErrorKind::NotJson { .. }), "{p:?}");
    assert_eq!(p.status.as_u16(), 502);
    // ... and malformed JSON on a 500 that never ends: an error status without a
    // readable DAP error envelope (the body of an object-URL answer is withheld).
    emu.set_faults(Faults {
        rules: vec![FaultRule::status(
            Endpoint::ObjectUrls,
            100,
            500,
            FaultBody::MalformedJson,
        )],
        ..Faults::default()
    });
    let err = d.object_urls(&ids(&result)).unwrap_err();
    let p = err.protocol().unwrap_or_else(|| panic!("{err}"));
    assert!(
        matches!(p.kind, ProtocolErrorKind::NoErrorEnvelope),
        "{p:?}"
    );
    assert_eq!(p.status.as_u16(), 500);
    assert!(p.body_excerpt.is_empty(), "{p:?}");
    let s = emu.stats();
    assert_eq!(s.requests.job, 4, "max_attempts");
    assert_eq!(
        s.requests.object_urls,
        1 + 4,
        "the query's, then max_attempts"
    );
    assert_eq!(s.logins, 1);
}

// ------------------------------------------------------------------ downloads

/// Storage drops the connection twice mid-body: the download resumes with `Range`
/// and the file is complete and correct; the same for a record stream.
fn dropped_download_resumed(t: Transport) {
    let (h, result) = users_snapshot(t);
    let (emu, d) = (&h.emu, &*h.driver);
    let drops = || FaultRule::new(Endpoint::Storage, 2, FaultAction::DropAfter { bytes: 1000 });
    emu.add_fault(drops());
    let (_dir, files) = download_jsonl(d, &result, "download survives two drops");
    let f = &files[0];
    assert!(
        f.compressed_bytes > 3000,
        "the object must outlast two drops"
    );
    assert_eq!(f.resumes, 2);
    assert_eq!(f.url_refreshes, 0);
    let expected = expected_json(emu, "canvas", "users", &result.range);
    assert_eq!(
        job_content(Format::Jsonl, &[gunzip_file(&f.path)], None),
        Parsed::Json(expected.clone())
    );
    assert_eq!(emu.stats().requests.storage, 3);

    emu.add_fault(drops());
    let dir2 = fresh_dir();
    let files2 = d
        .download(&result, dir2.path(), spec(true, 1))
        .expect("decompressed download survives two drops");
    assert_eq!(files2[0].resumes, 2);
    assert_eq!(
        parse_content(Format::Jsonl, &std::fs::read(&files2[0].path).unwrap()),
        Parsed::Json(expected.clone())
    );

    emu.add_fault(drops());
    let streamed = d.json_records(&result).expect("records survive two drops");
    assert_eq!(streamed, expected);

    let s = emu.stats();
    counts!(s; requests.storage = 9, faults_injected = 6, requests.object_urls = 1, logins = 1);
    no_storage_credentials(&s);
}

/// Storage serves a broken gzip stream (`action`): downloads (compressed or not) and
/// record streams fail with a typed transfer error, and no file is left behind.
fn broken_gzip_fails_cleanly(t: Transport, action: FaultAction) {
    let (h, result) = users_snapshot(t);
    let (emu, d) = (&h.emu, &*h.driver);
    emu.add_fault(FaultRule::new(Endpoint::Storage, 100, action.clone()));
    for decompress in [false, true] {
        let err = failed_download(d, &result, spec(decompress, 1));
        assert_corrupt(&err, &format!("{action:?} decompress={decompress}"));
    }
    let err = d.records(&result).unwrap_err();
    assert_corrupt(&err, &format!("{action:?} records"));
    let s = emu.stats();
    assert_eq!(
        s.requests.storage, 3,
        "a corrupt object is not fetched again"
    );
    counts!(s; faults_injected = 3, logins = 1);
    no_storage_credentials(&s);
}

variants! {
    truncated_gzip_fails_cleanly = broken_gzip_fails_cleanly(FaultAction::TruncateGzip);
    corrupt_gzip_fails_cleanly = broken_gzip_fails_cleanly(FaultAction::CorruptGzip);
}

/// The URLs expire before the download: storage answers 403, each object gets one
/// fresh URL and downloads; the same for a record stream.
fn expired_url_refreshed(t: Transport) {
    let h = Harness::new(t, objects_emulator(2));
    let (emu, d) = (&h.emu, &*h.driver);
    let result = snapshot(d, "users", Format::Jsonl);
    emu.advance_clock(Duration::from_secs(20 * 60));
    let (_dir, files) = download_jsonl(d, &result, "download with refreshed URLs");
    assert!(files.iter().all(|f| f.url_refreshes == 1), "{files:?}");
    let plain: Vec<Vec<u8>> = files.iter().map(|f| gunzip_file(&f.path)).collect();
    let expected = expected_json(emu, "canvas", "users", &result.range);
    assert_eq!(
        job_content(Format::Jsonl, &plain, None),
        Parsed::Json(expected.clone())
    );
    let s = emu.stats();
    // Both objects were out at once: each came back refused and was refreshed.
    assert_eq!(
        s.requests.object_urls,
        1 + 2,
        "one fresh URL per refused object"
    );
    assert_eq!(s.requests.storage, 4, "a 403 then the object, per object");

    // One object at a time: the first 403 refreshes both URLs (issued together) in
    // one request, so the second object is never refused.
    emu.advance_clock(Duration::from_secs(20 * 60));
    assert_eq!(d.json_records(&result).expect("records"), expected);
    let s = emu.stats();
    assert_eq!(s.requests.object_urls, 3 + 1, "one batch for both objects");
    counts!(s; requests.storage = 4 + 3, logins = 1);
    no_storage_credentials(&s);
}

/// Neither auth header ever reaches storage, whichever header carries the token,
/// through fresh downloads, resumes, URL refreshes and record streams.
fn no_credentials_reach_storage(t: Transport) {
    for header in [TokenHeader::Bearer, TokenHeader::XInstAuth] {
        let h = Harness::with_config(
            t,
            EmulatorConfig {
                objects_per_job: 2,
                ..small_emulator()
            },
            |b| b.token_header(header),
        );
        let (emu, d) = (&h.emu, &*h.driver);
        let result = snapshot(d, "users", Format::Csv);
        emu.add_fault(FaultRule::new(
            Endpoint::Storage,
            1,
            FaultAction::DropAfter { bytes: 500 },
        ));
        let dir = fresh_dir();
        let files = d
            .download(&result, dir.path(), DownloadSpec::default())
            .expect("download");
        assert_eq!(files.iter().map(|f| f.resumes).sum::<u32>(), 1);
        emu.advance_clock(Duration::from_secs(20 * 60));
        let records = d.records(&result).expect("records");
        assert!(records.len() > 2);
        let s = emu.stats();
        // Records go one object at a time: the first 403 refreshes both URLs.
        assert_eq!(s.requests.storage, 3 + 3, "{header:?}");
        assert_eq!(s.storage_requests, 6);
        no_storage_credentials(&s);
        assert_eq!(s.unauthorized, 0, "the API accepted the {header:?} header");
    }
}

/// Storage answers 503 to every request: the download gives up after the policy's
/// attempts with a typed storage error, leaving nothing behind.
fn storage_errors_exhaust_retries(t: Transport) {
    let (h, result) = users_snapshot(t);
    let (emu, d) = (&h.emu, &*h.driver);
    emu.add_fault(FaultRule::status(
        Endpoint::Storage,
        100,
        503,
        FaultBody::Json,
    ));
    let err = failed_download(d, &result, DownloadSpec::default());
    assert!(
        matches!(
            &err.kind,
            FailureKind::Transfer(TransferError::Storage {
                error: dap_proto::download::StorageError::Server(503),
                ..
            })
        ),
        "{err}"
    );
    storage_requests(emu, 4, "max_attempts");
}

/// Storage drops every connection before the first body byte: no progress, so the
/// download gives up after the policy's attempts with a typed transfer error.
fn dropped_download_gives_up(t: Transport) {
    let (h, result) = users_snapshot(t);
    let (emu, d) = (&h.emu, &*h.driver);
    let drop_at_once = FaultAction::DropAfter { bytes: 0 };
    emu.add_fault(FaultRule::new(Endpoint::Storage, 100, drop_at_once));
    let err = failed_download(d, &result, DownloadSpec::default());
    assert_gave_up(&err, 4);
    assert_gave_up(&d.records(&result).unwrap_err(), 4);
    storage_requests(emu, 8, "max_attempts, twice");
}

/// A download after the job expired (24 h): the URL is refused, the fresh-URL request
/// says the object no longer exists; a typed API error, nothing left behind.
fn expired_job_download_fails_cleanly(t: Transport) {
    let (h, result) = users_snapshot(t);
    let (emu, d) = (&h.emu, &*h.driver);
    emu.advance_clock(Duration::from_secs(25 * 3600));
    let err = failed_download(d, &result, DownloadSpec::default());
    let api = err
        .api()
        .unwrap_or_else(|| panic!("not an API error: {err}"));
    assert_eq!(api.status.as_u16(), 404, "{api:?}");
    assert!(matches!(api.kind, DapErrorKind::NotFound { .. }), "{api:?}");
    let s = emu.stats();
    assert_eq!(s.requests.storage, 1, "one refused GET");
    // The query's, then the refresh: refused (the token expired with the clock jump
    // too), and again after a new login.
    counts!(s; requests.object_urls = 3, unauthorized = 1, logins = 2);
    no_storage_credentials(&s);
}

/// Four objects downloaded four at a time, the first storage answer corrupt: the
/// download fails with a typed error; no temporary file is left, and every file left
/// with a final name is a complete, verified object.
fn one_corrupt_object_among_many(t: Transport) {
    let h = Harness::new(t, objects_emulator(4));
    let (emu, d) = (&h.emu, &*h.driver);
    let result = snapshot(d, "users", Format::Jsonl);
    emu.add_fault(FaultRule::new(
        Endpoint::Storage,
        1,
        FaultAction::CorruptGzip,
    ));
    let dir = fresh_dir();
    let four_at_once = spec(false, 4);
    let err = d.download(&result, dir.path(), four_at_once).unwrap_err();
    assert_corrupt(&err, "four at once");
    let left = files_under(dir.path());
    assert!(
        left.len() < 4,
        "the corrupt object has no final file: {left:?}"
    );
    let job_dir = dir.path().join(dap_proto::download::job_dir(&result.job));
    for name in &left {
        assert!(!name.contains("partial"), "temporary file left: {left:?}");
        let file = job_dir.join(name.rsplit('/').next().unwrap());
        assert!(!gunzip_file(&file).is_empty(), "{name}");
    }
    let s = emu.stats();
    assert!(s.requests.storage <= 4, "{:?}", s.requests);
    counts!(s; faults_injected = 1);
    no_storage_credentials(&s);
}

/// API bodies over the configured cap are a typed protocol error, not a crash or a
/// truncated parse; bodies under it are fine.
fn oversized_body_is_typed_error(t: Transport) {
    let h = Harness::with_config(t, small_emulator(), |b| b.max_body_bytes(1024));
    let (emu, d) = (&h.emu, &*h.driver);
    d.list_tables("canvas").expect("a small body");
    let err = d.table_schema("canvas", "courses").unwrap_err();
    let p = err.protocol().unwrap_or_else(|| panic!("{err}"));
    assert!(
        matches!(p.kind, ProtocolErrorKind::BodyTooLarge { limit: 1024 }),
        "{p:?}"
    );
    let s = emu.stats();
    assert_eq!(s.requests.schema, 1, "an oversized body is not retried");
    counts!(s; logins = 1);
}

// ------------------------------------------------------------------ jobs and failures

/// A job that ends `failed`: a typed `JobFailed` with the processing error.
fn failed_job_is_typed_error(t: Transport) {
    let failing = Faults {
        fail_jobs: true,
        ..Faults::default()
    };
    let h = Harness::new(
        t,
        EmulatorConfig {
            job_running: ms(20),
            faults: failing,
            ..small_emulator()
        },
    );
    let (emu, d) = (&h.emu, &*h.driver);
    let err = d.snapshot("canvas", "accounts", Format::Jsonl).unwrap_err();
    match &err.kind {
        FailureKind::Dap(dap_proto::Error::JobFailed { error, .. }) => {
            assert!(matches!(error.kind, DapErrorKind::Processing), "{error:?}");
        }
        _ => panic!("not a failed job: {err}"),
    }
    let s = emu.stats();
    assert!(s.requests.job >= 1, "{:?}", s.requests);
    counts!(s; requests.query = 1, requests.object_urls = 0);
}

/// A job that runs longer than the poll policy allows: a typed `JobTimedOut`.
fn slow_job_times_out(t: Transport) {
    let emu = start_emulator(EmulatorConfig {
        job_running: Duration::from_secs(3600),
        ..small_emulator()
    });
    let mut poll = dap_tests::fast_poll();
    // Long enough for login and the POST even on a loaded machine, so the job is polled.
    poll.max_duration = ms(250);
    let config = dap_tests::fast_config(&emu)
        .poll(poll)
        .build()
        .expect("config");
    let d = t.driver(config, None);
    let started = Instant::now();
    let err = d.snapshot("canvas", "accounts", Format::Jsonl).unwrap_err();
    assert!(
        matches!(
            &err.kind,
            FailureKind::Dap(dap_proto::Error::JobTimedOut { .. })
        ),
        "{err}"
    );
    assert!(started.elapsed() < ms(1500), "{:?}", started.elapsed());
    let s = emu.stats();
    assert!(s.requests.job >= 1, "{:?}", s.requests);
    counts!(s; requests.query = 1, requests.object_urls = 0);
}

/// Nothing listens at the API address: a typed transport error after the policy's
/// attempts, naming the login and the last failure.
fn unreachable_api_is_transport_error(t: Transport) {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        listener.local_addr().expect("its address").port()
    };
    let config = dap_proto::Config::builder("us-east-1#conformance", "secret-unreachable")
        .base_url(format!("http://127.0.0.1:{port}"))
        .retry(dap_tests::fast_retry())
        .poll(dap_tests::fast_poll())
        .build()
        .expect("config");
    let d = t.driver(config, None);
    let err = d.list_tables("canvas").unwrap_err();
    match &err.kind {
        FailureKind::Transport {
            what,
            attempts,
            last,
        } => {
            assert_eq!(*what, "login");
            assert_eq!(*attempts, 4);
            // The cause travels with the failure, classified alike everywhere.
            assert!(last.starts_with("cannot connect: "), "{err}");
            assert!(err.text.contains("(last error: cannot connect: "), "{err}");
        }
        _ => panic!("not a transport error: {err}"),
    }
    assert!(!err.text.contains("secret-unreachable"), "{err}");
}

/// 50 concurrent operations while the login endpoint fails twice with 503: one login
/// sequence (three requests, one token) serves them all.
fn fifty_concurrent_operations_through_login_errors(t: Transport) {
    let h = Harness::new(
        t,
        faulty(vec![FaultRule::status(
            Endpoint::Login,
            2,
            503,
            FaultBody::Html,
        )]),
    );
    let (emu, d) = (&h.emu, &*h.driver);
    let results = d.concurrently((0..50).map(|_| Call::tables("canvas")).collect());
    for r in results {
        r.expect("tables");
    }
    counts!(emu.stats(); requests.login = 3, logins = 1, requests.tables = 50);
}

/// Tokens revoked, then 50 concurrent operations: every refused call waits for the one
/// new login, then succeeds.
fn fifty_concurrent_operations_after_revocation(t: Transport) {
    let h = Harness::new(t, small_emulator());
    let (emu, d) = (&h.emu, &*h.driver);
    d.list_tables("canvas").expect("tables");
    emu.revoke_tokens();
    let results = d.concurrently((0..50).map(|_| Call::schema("canvas", "users")).collect());
    for r in results {
        r.expect("schema");
    }
    assert_eq!(d.logins(), 2);
    let s = emu.stats();
    assert_eq!(s.logins, 2, "one re-login for all");
    counts!(s; requests.login = 2);
    assert!(
        s.unauthorized >= 1 && s.unauthorized <= 50,
        "{}",
        s.unauthorized
    );
    assert_eq!(s.requests.schema, 50 + s.unauthorized);
}

// ------------------------------------------------------------------ logs

/// Everything the client logs at TRACE level through a full run (login, re-login after
/// revocation, queries, URL refresh, resumed download, records) is free of the client
/// secret, the Basic credentials, any access token and any URL signature.
fn secrets_absent_from_trace_logs(t: Transport) {
    secrets_absent_from_logs(t, &LogCapture::new());
}

/// The same, with the `log` records of the HTTP libraries bridged into the capture,
/// as `tracing_subscriber::fmt().init()` (default features) does in an application.
fn secrets_absent_from_bridged_library_logs(t: Transport) {
    secrets_absent_from_logs(t, &LogCapture::with_log_records());
}

fn secrets_absent_from_logs(t: Transport, logs: &LogCapture) {
    let secret = "s3cr3t-Conformance-7f1e9a4c";
    let emu = start_emulator(EmulatorConfig {
        client_secret: secret.to_owned(),
        objects_per_job: 2,
        ..small_emulator()
    });
    let config = dap_tests::fast_config(&emu).build().expect("config");
    let d = t.driver(config, Some(logs));

    let mut signatures = Vec::new();
    let mut note = |urls: &[dap_proto::ObjectUrl]| {
        for u in urls {
            let sig = u
                .url
                .secret()
                .split("X-Amz-Signature=")
                .nth(1)
                .expect("a signed URL")
                .split('&')
                .next()
                .unwrap()
                .to_owned();
            assert!(sig.len() >= 16, "{sig}");
            signatures.push(sig);
        }
    };

    d.list_tables("canvas").expect("tables");
    emu.revoke_tokens();
    let result = snapshot(&*d, "users", Format::Jsonl);
    note(&result.objects);
    let job = d.get_job(&result.job).expect("job");
    assert!(matches!(job.state, JobState::Complete(_)));
    note(&d.object_urls(&ids(&result)).expect("urls").urls);
    emu.add_fault(FaultRule::status(Endpoint::Tables, 1, 503, FaultBody::Html));
    d.list_tables("canvas").expect("tables after a 503");
    if t.downloads() {
        emu.add_fault(FaultRule::new(
            Endpoint::Storage,
            1,
            FaultAction::DropAfter { bytes: 500 },
        ));
        // Sequential: the blocking client then logs on this thread, into the capture.
        let dir = fresh_dir();
        let sequential = spec(false, 1);
        d.download(&result, dir.path(), sequential)
            .expect("download");
        emu.advance_clock(Duration::from_secs(20 * 60));
        assert!(!d.json_records(&result).expect("records").is_empty());
    }
    // A failed login with the wrong secret must not show either secret.
    let wrong = "wr0ng-Secret-Value-55e1";
    let bad_config = dap_proto::Config::builder(emu.client_id(), wrong)
        .base_url(emu.base_url())
        .retry(dap_tests::fast_retry())
        .poll(dap_tests::fast_poll())
        .build()
        .expect("config");
    let bad = t.driver(bad_config, Some(logs));
    let err = bad.list_tables("canvas").unwrap_err();
    assert!(err.api().is_some_and(|e| e.kind.is_fatal()), "{err}");
    assert!(!err.text.contains(wrong), "{err}");
    drop(bad);
    drop(d);

    let text = logs.text();
    if let Some(path) = std::env::var_os("DAP_TESTS_DUMP_LOG") {
        std::fs::write(path, &text).expect("dump the log");
    }
    // The capture must hold the whole story, or its silence about secrets proves nothing.
    let count = |what: &str| text.matches(what).count();
    for (what, at_least) in [
        ("operation started", 6),
        ("logged in", 2),
        ("login failed", 1),
        ("token refused with 401", 1),
        ("operation done", 5),
    ] {
        assert!(
            count(what) >= at_least,
            "the {t} trace log has {} \"{what}\" lines, expected at least {at_least}:\n{text}",
            count(what)
        );
    }
    if t.downloads() {
        assert!(
            count("storage response") >= 2,
            "no download in the {t} log:\n{text}"
        );
    }
    // base64 of "id:secret", as the Basic header carries it.
    let basic = base64_standard(format!("{}:{secret}", emu.client_id()).as_bytes());
    assert!(!signatures.is_empty());
    let mut needles = vec![
        ("the client secret", secret.to_owned()),
        ("the wrong secret", wrong.to_owned()),
        ("the Basic credentials", basic),
        ("an access token (JWT)", "eyJ".to_owned()),
        ("a signature parameter", "X-Amz-Signature".to_owned()),
        ("a credential parameter", "X-Amz-Credential".to_owned()),
    ];
    needles.extend(signatures.into_iter().map(|s| ("a URL signature", s)));
    let leaks: Vec<String> = needles
        .iter()
        .filter(|(_, needle)| text.contains(needle.as_str()))
        .map(|(what, needle)| format!("{what}: {}", context(&text, needle)))
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in the {t} trace log:\n{}",
        leaks.join("\n")
    );
    let s = emu.stats();
    counts!(s; logins = 2, login_failures = 1, unauthorized = 1);
    no_storage_credentials(&s);
}

/// The log line around the first occurrence of `needle`.
fn context(text: &str, needle: &str) -> String {
    let at = text.find(needle).unwrap_or(0);
    let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
    text[start..end].to_owned()
}

/// Standard base64 with padding (to look for a Basic header value in logs).
fn base64_standard(bytes: &[u8]) -> String {
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(TABLE[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

// ------------------------------------------------------------------ URLs on demand

/// A result whose URLs are left to the download ([`Query::urls_on_demand`]) posts the
/// same query (the job is reused), and downloads and streams like one that carries
/// them: the same files and records, its URLs fetched a batch at a time.
fn urls_on_demand(t: Transport) {
    let h = Harness::with_config(t, objects_emulator(5), |b| b.url_batch_size(2));
    let (emu, d) = (&h.emu, &*h.driver);
    let eager = snapshot(d, "users", Format::Jsonl);
    let query = Query::snapshot(Format::Jsonl).urls_on_demand();
    let lazy = d
        .query("canvas", "users", query)
        .expect("snapshot, URLs on demand");
    assert_eq!(
        lazy.job, eager.job,
        "the same query was posted: its job is reused"
    );
    assert!(lazy.objects.is_empty());
    assert_eq!(lazy.pending, ids(&eager));
    assert_eq!(lazy.object_count(), 5);
    counts!(emu.stats(); jobs_created = 1, requests.query = 2, requests.object_urls = 3);

    let (_eager_dir, eager_files) = download_jsonl(d, &eager, "download with URLs");
    let dir = fresh_dir();
    let files = d
        .download(&lazy, dir.path(), spec(false, 2))
        .expect("download, URLs on demand");
    let view = |files: &[Downloaded]| -> Vec<_> {
        files
            .iter()
            .map(|f| {
                (
                    f.object.clone(),
                    f.path.file_name().map(|n| n.to_owned()),
                    f.bytes,
                )
            })
            .collect()
    };
    assert_eq!(view(&files), view(&eager_files));
    for (a, b) in files.iter().zip(&eager_files) {
        assert_eq!(
            std::fs::read(&a.path).unwrap(),
            std::fs::read(&b.path).unwrap()
        );
    }
    counts!(emu.stats(); requests.object_urls = 6, requests.storage = 10);

    let records = d.json_records(&lazy).expect("records, URLs on demand");
    assert_eq!(records, expected_json(emu, "canvas", "users", &lazy.range));
    let s = emu.stats();
    counts!(s; requests.object_urls = 9, requests.storage = 15);
    no_storage_credentials(&s);
}

// ------------------------------------------------------------------ the list

every_transport!(
    every_endpoint,
    jsonl_snapshot_content,
    csv_snapshot_content,
    tsv_snapshot_content,
    incremental_chaining,
    fifty_concurrent_operations_one_login,
    token_refreshed_during_slow_job,
    token_expired_during_slow_job,
    token_revoked_mid_run,
    rate_storm_recovered,
    rate_storm_exhausts_retries,
    server_errors_on_login,
    server_errors_on_tables,
    server_errors_on_schema,
    server_errors_on_query,
    server_errors_on_job,
    server_errors_on_object_urls,
    server_errors_on_storage,
    malformed_and_html_bodies,
    dropped_download_resumed,
    truncated_gzip_fails_cleanly,
    corrupt_gzip_fails_cleanly,
    expired_url_refreshed,
    no_credentials_reach_storage,
    secrets_absent_from_trace_logs,
    secrets_absent_from_bridged_library_logs,
    storage_errors_exhaust_retries,
    one_corrupt_object_among_many,
    oversized_body_is_typed_error,
    dropped_download_gives_up,
    expired_job_download_fails_cleanly,
    failed_job_is_typed_error,
    slow_job_times_out,
    unreachable_api_is_transport_error,
    fifty_concurrent_operations_through_login_errors,
    fifty_concurrent_operations_after_revocation,
    urls_on_demand,
);
