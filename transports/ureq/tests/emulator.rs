//! dap-ureq against the in-process emulator on 127.0.0.1.
#![allow(clippy::result_large_err)]

use std::io::Read;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use dap_emulator::{Emulator, EmulatorConfig, Endpoint, FaultAction, FaultRule, Faults};
use dap_proto::records::{RecordKind, RecordSplitter};
use dap_proto::{Config, DataRange, Format, JobState, PollPolicy, RetryPolicy, TransferError};
use dap_ureq::{Client, DownloadOptions, Error, Options};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn emulator(cfg: EmulatorConfig) -> Emulator {
    Emulator::start(cfg).expect("the emulator starts")
}

fn small() -> EmulatorConfig {
    EmulatorConfig {
        rows_per_table: Some(300),
        ..EmulatorConfig::default()
    }
}

fn config_for(emu: &Emulator, secret: &str) -> Config {
    let mut retry = RetryPolicy::new(4, ms(2), ms(20));
    retry.max_retry_after = ms(50);
    retry.default_retry_after = ms(10);
    Config::builder(emu.client_id(), secret)
        .base_url(emu.base_url())
        .retry(retry)
        .poll(PollPolicy::new(ms(2), ms(20)))
        .build()
        .expect("valid config")
}

fn options() -> Options {
    Options::default()
        .connect_timeout(Duration::from_secs(2))
        .read_timeout(Duration::from_secs(5))
        .proxy_from_env(false)
}

fn client(emu: &Emulator) -> Client {
    Client::with_options(config_for(emu, emu.client_secret()), options()).expect("client")
}

fn gunzip(path: &Path) -> Vec<u8> {
    let file = std::fs::File::open(path).expect("open");
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(file)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

/// The JSON values of the records the emulator says a query returns.
fn expected_json(emu: &Emulator, table: &str, range: DataRange) -> Vec<serde_json::Value> {
    let range = match range {
        DataRange::Snapshot { at } => dap_emulator::EmulatedRange::Snapshot {
            at_ms: at.as_millisecond(),
        },
        DataRange::Incremental { since, until } => dap_emulator::EmulatedRange::Incremental {
            since_ms: since.as_millisecond(),
            until_ms: until.as_millisecond(),
        },
        other => panic!("unknown range {other:?}"),
    };
    emu.expected_records("canvas", table, range)
        .expect("known table")
        .iter()
        .map(|r| r.to_json())
        .collect()
}

/// Every entry of a directory tree (names only), to spot leftovers.
fn entries(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() {
            out.extend(
                entries(&e.path())
                    .into_iter()
                    .map(|n| format!("{name}/{n}")),
            );
        } else {
            out.push(name);
        }
    }
    out.sort();
    out
}

#[test]
fn list_tables_and_schema() {
    let emu = emulator(small());
    let client = client(&emu);
    let tables = client.list_tables("canvas").expect("tables");
    assert!(tables.iter().any(|t| t == "accounts"), "{tables:?}");
    let schema = client.table_schema("canvas", "accounts").expect("schema");
    assert!(schema.version > 0);
    assert!(schema.value().is_object());
    assert_eq!(client.logins(), 1);
    assert_eq!(emu.stats().logins, 1);
}

#[test]
fn unknown_table_is_a_typed_api_error() {
    let emu = emulator(small());
    let err = client(&emu)
        .table_schema("canvas", "no_such_table")
        .unwrap_err();
    match &err {
        Error::Dap(dap_proto::Error::Api(e)) => assert_eq!(e.status.as_u16(), 404),
        other => panic!("unexpected {other:?}"),
    }
    assert!(!err.is_fatal());
}

#[test]
fn snapshot_download_verified_layout() {
    let emu = emulator(EmulatorConfig {
        objects_per_job: 3,
        ..small()
    });
    let client = client(&emu);
    let result = client
        .snapshot("canvas", "accounts", Format::Jsonl)
        .expect("snapshot");
    assert_eq!(result.objects.len(), 3);

    let job = client.get_job(&result.job).expect("job");
    assert!(matches!(job.state, JobState::Complete(_)));
    let ids: Vec<_> = result.objects.iter().map(|o| o.id.clone()).collect();
    let urls = client.object_urls(&ids).expect("urls");
    assert_eq!(urls.urls.len(), 3);

    let dir = tempfile::tempdir().expect("tempdir");
    let files = client
        .download(
            &result,
            dir.path(),
            &DownloadOptions::default().concurrency(2),
        )
        .expect("download");
    assert_eq!(files.len(), 3);
    let job_dir = dir.path().join(dap_proto::download::job_dir(&result.job));
    let mut lines = Vec::new();
    for (file, object) in files.iter().zip(&result.objects) {
        assert_eq!(file.object, object.id);
        assert_eq!(file.path.parent(), Some(job_dir.as_path()));
        let name = file.path.file_name().unwrap().to_string_lossy();
        assert!(
            name.starts_with("part-") && name.ends_with(".json.gz"),
            "{name}"
        );
        assert_eq!(std::fs::metadata(&file.path).unwrap().len(), file.bytes);
        assert_eq!(file.bytes, file.compressed_bytes);
        let plain = gunzip(&file.path);
        assert_eq!(file.decompressed_bytes, Some(plain.len() as u64));
        lines.extend(
            String::from_utf8(plain)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()),
        );
    }
    assert_eq!(lines, expected_json(&emu, "accounts", result.range));
    // Only the final files: no temporary file left behind.
    let left = entries(dir.path());
    assert_eq!(left.len(), 3, "{left:?}");
    assert!(left.iter().all(|n| !n.contains(".partial")), "{left:?}");
    let stats = emu.stats();
    assert_eq!(stats.storage_with_credentials, 0);
    assert_eq!(stats.missing_user_agent, 0);
    assert_eq!(stats.logins, 1);
}

#[test]
fn server_errors_and_rate_limits_are_retried_by_the_core() {
    let emu = emulator(small());
    let client = client(&emu);
    emu.set_faults(Faults {
        rules: vec![
            FaultRule::rate_storm(Endpoint::Tables, 2, 0),
            FaultRule::status(Endpoint::Schema, 1, 503, dap_emulator::FaultBody::Html),
            FaultRule::status(Endpoint::Storage, 2, 503, dap_emulator::FaultBody::Json),
        ],
        ..Faults::default()
    });
    assert!(!client.list_tables("canvas").expect("tables").is_empty());
    client.table_schema("canvas", "accounts").expect("schema");
    let result = client
        .snapshot("canvas", "accounts", Format::Jsonl)
        .expect("snapshot");
    let dir = tempfile::tempdir().expect("tempdir");
    let files = client
        .download(&result, dir.path(), &DownloadOptions::default())
        .expect("download");
    assert_eq!(files.len(), 1);
    let stats = emu.stats();
    assert_eq!(stats.requests.tables, 3);
    assert_eq!(stats.requests.schema, 2);
    assert_eq!(stats.requests.storage, 3);
    assert_eq!(stats.logins, 1);
}

#[test]
fn download_decompressed_sequential() {
    let emu = emulator(EmulatorConfig {
        objects_per_job: 2,
        ..small()
    });
    let client = client(&emu);
    let result = client
        .snapshot("canvas", "accounts", Format::Csv)
        .expect("snapshot");
    let dir = tempfile::tempdir().expect("tempdir");
    let options = DownloadOptions::default().decompress(true).concurrency(1);
    let files = client
        .download(&result, dir.path(), &options)
        .expect("download");
    let expected = expected_json(&emu, "accounts", result.range).len();
    let mut rows = 0;
    for file in &files {
        let name = file.path.file_name().unwrap().to_string_lossy();
        assert!(name.ends_with(".csv"), "{name}");
        let text = std::fs::read_to_string(&file.path).unwrap();
        assert_eq!(Some(text.len() as u64), file.decompressed_bytes);
        assert_eq!(text.len() as u64, file.bytes);
        assert!(file.compressed_bytes < file.bytes);
        assert!(
            text.starts_with("meta.ts,"),
            "{}",
            &text[..40.min(text.len())]
        );
        // RFC 4180: quoted fields may hold line breaks, so count with the core's splitter.
        let mut splitter = RecordSplitter::new(RecordKind::Csv);
        let mut n = 0usize;
        let _ = splitter
            .push(text.as_bytes(), |_| {
                n += 1;
                ControlFlow::<()>::Continue(())
            })
            .unwrap();
        let _ = splitter
            .finish(|_| {
                n += 1;
                ControlFlow::<()>::Continue(())
            })
            .unwrap();
        rows += n - 1;
    }
    assert_eq!(rows, expected);
}

#[test]
fn incremental_after_snapshot_matches_changes() {
    let emu = emulator(small());
    let client = client(&emu);
    let snap = client
        .snapshot("canvas", "accounts", Format::Jsonl)
        .expect("snapshot");
    emu.advance_clock(Duration::from_secs(30 * 60));
    let inc = client
        .incremental(
            "canvas",
            "accounts",
            Format::Jsonl,
            snap.range.next_since(),
            None,
        )
        .expect("incremental");
    let DataRange::Incremental { since, until } = inc.range else {
        panic!("not incremental: {:?}", inc.range);
    };
    assert_eq!(since, snap.range.next_since());
    assert!(until > since);
    let got: Vec<_> = client
        .json_records(&inc)
        .collect::<Result<_, _>>()
        .expect("records");
    let expected = expected_json(&emu, "accounts", inc.range);
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
    assert!(got.iter().all(|r| r["meta"]["action"].is_string()));
}

#[test]
fn records_stream_every_format() {
    let emu = emulator(EmulatorConfig {
        objects_per_job: 3,
        ..small()
    });
    let client = client(&emu);
    let jsonl = client
        .snapshot("canvas", "accounts", Format::Jsonl)
        .expect("snapshot");
    let expected = expected_json(&emu, "accounts", jsonl.range);
    let got: Vec<_> = client
        .json_records(&jsonl)
        .collect::<Result<_, _>>()
        .expect("json records");
    assert_eq!(got, expected);
    let raw: Vec<Vec<u8>> = client
        .records(&jsonl)
        .collect::<Result<_, _>>()
        .expect("records");
    assert_eq!(raw.len(), expected.len());
    assert!(raw.iter().all(|r| !r.ends_with(b"\n")));

    for (format, sep) in [(Format::Csv, "meta.ts,"), (Format::Tsv, "meta.ts\t")] {
        let result = client
            .snapshot("canvas", "accounts", format)
            .expect("snapshot");
        let records: Vec<Vec<u8>> = client
            .records(&result)
            .collect::<Result<_, _>>()
            .expect("records");
        let headers = records
            .iter()
            .filter(|r| r.starts_with(sep.as_bytes()))
            .count();
        assert_eq!(headers, result.objects.len(), "{format}");
        assert_eq!(records.len(), expected.len() + headers, "{format}");
        assert!(records.iter().all(|r| !r.ends_with(b"\r")), "{format}");
    }

    let err = client
        .json_records(&client.snapshot("canvas", "accounts", Format::Csv).unwrap())
        .next()
        .expect("one item");
    assert!(matches!(err, Err(Error::Usage(_))), "{err:?}");
    assert_eq!(emu.stats().logins, 1);
}

#[test]
fn dropped_download_resumes() {
    let emu = emulator(small());
    let client = client(&emu);
    let result = client
        .snapshot("canvas", "accounts", Format::Jsonl)
        .expect("snapshot");
    emu.set_faults(Faults {
        rules: vec![FaultRule::new(
            Endpoint::Storage,
            2,
            FaultAction::DropAfter { bytes: 1000 },
        )],
        ..Faults::default()
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let files = client
        .download(&result, dir.path(), &DownloadOptions::default())
        .expect("download");
    assert!(files[0].resumes >= 1, "{files:?}");
    let plain = gunzip(&files[0].path);
    assert_eq!(files[0].decompressed_bytes, Some(plain.len() as u64));
    assert_eq!(entries(dir.path()).len(), 1);

    // The same for a record stream.
    emu.set_faults(Faults {
        rules: vec![FaultRule::new(
            Endpoint::Storage,
            2,
            FaultAction::DropAfter { bytes: 1000 },
        )],
        ..Faults::default()
    });
    let got: Vec<_> = client
        .json_records(&result)
        .collect::<Result<_, _>>()
        .expect("records");
    assert_eq!(got, expected_json(&emu, "accounts", result.range));
    assert_eq!(emu.stats().storage_with_credentials, 0);
}

#[test]
fn corrupt_and_truncated_gzip_fail_cleanly() {
    for action in [FaultAction::CorruptGzip, FaultAction::TruncateGzip] {
        let emu = emulator(EmulatorConfig {
            objects_per_job: 2,
            ..small()
        });
        let client = client(&emu);
        let result = client
            .snapshot("canvas", "accounts", Format::Jsonl)
            .expect("snapshot");
        emu.set_faults(Faults {
            rules: vec![FaultRule::new(Endpoint::Storage, 100, action.clone())],
            ..Faults::default()
        });
        for decompress in [false, true] {
            let dir = tempfile::tempdir().expect("tempdir");
            let options = DownloadOptions::default()
                .decompress(decompress)
                .concurrency(1);
            let err = client.download(&result, dir.path(), &options).unwrap_err();
            assert!(
                matches!(err, Error::Transfer(TransferError::Corrupt { .. })),
                "{action:?}: {err:?}"
            );
            let left = entries(dir.path());
            assert!(left.is_empty(), "{action:?}: files left: {left:?}");
        }
        let mut records = client.records(&result);
        let last = records.by_ref().last().expect("an item");
        assert!(
            matches!(last, Err(Error::Transfer(TransferError::Corrupt { .. }))),
            "{action:?}: {last:?}"
        );
        assert!(records.next().is_none());
    }
}

#[test]
fn expired_url_is_refreshed() {
    let emu = emulator(EmulatorConfig {
        // Long enough that a loaded machine never sees a fresh URL expire in real time.
        url_lifetime: Duration::from_secs(60),
        objects_per_job: 2,
        ..small()
    });
    let client = client(&emu);
    let result = client
        .snapshot("canvas", "accounts", Format::Jsonl)
        .expect("snapshot");
    emu.advance_clock(Duration::from_secs(120));
    let dir = tempfile::tempdir().expect("tempdir");
    let files = client
        .download(&result, dir.path(), &DownloadOptions::default())
        .expect("download");
    assert!(files.iter().all(|f| f.url_refreshes == 1), "{files:?}");
    assert!(emu.stats().requests.object_urls >= 3);

    emu.advance_clock(Duration::from_secs(120));
    let got: Vec<_> = client
        .json_records(&result)
        .collect::<Result<_, _>>()
        .expect("records");
    assert_eq!(got, expected_json(&emu, "accounts", result.range));
}

#[test]
fn fifty_threads_one_login() {
    let emu = emulator(small());
    let client = client(&emu);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..50)
            .map(|_| {
                let client = client.clone();
                s.spawn(move || client.list_tables("canvas"))
            })
            .collect();
        for h in handles {
            let tables = h.join().expect("no panic").expect("tables");
            assert!(!tables.is_empty());
        }
    });
    assert_eq!(client.logins(), 1);
    let stats = emu.stats();
    assert_eq!(stats.logins, 1);
    assert_eq!(stats.requests.tables, 50);
}

#[test]
fn bad_credentials_never_show_the_secret() {
    let emu = emulator(small());
    let secret = "wr0ng-s3cret-value-9431";
    let client = Client::with_options(config_for(&emu, secret), options()).expect("client");
    let err = client.list_tables("canvas").unwrap_err();
    assert!(err.is_fatal(), "{err:?}");
    assert!(matches!(err, Error::Dap(_)), "{err:?}");
    for text in [err.to_string(), format!("{err:?}"), format!("{client:?}")] {
        assert!(!text.contains(secret), "secret leaked: {text}");
    }
    assert!(!format!("{:?}", client.config()).contains(secret));
}

#[test]
fn unreachable_server_is_a_transport_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut retry = RetryPolicy::new(2, ms(1), ms(2));
    retry.jitter_seed = 7;
    let config = Config::builder("us-east-1#id", "secret-xyz")
        .base_url(format!("http://127.0.0.1:{port}"))
        .retry(retry)
        .build()
        .unwrap();
    let client = Client::with_options(config, options()).unwrap();
    match client.list_tables("canvas").unwrap_err() {
        Error::Transport {
            what,
            attempts,
            last,
        } => {
            assert_eq!(what, "login");
            assert_eq!(attempts, 2);
            assert!(!last.is_empty() && last != "unknown", "{last}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn extra_ca_file_errors_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::builder("us-east-1#id", "s").build().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = Client::with_options(config.clone(), Options::default().extra_ca_file(&missing))
        .unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    let empty = dir.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate").unwrap();
    let err = Client::with_options(config, Options::default().extra_ca_file(&empty)).unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
}

/// Runs this test binary again with a controlled environment (changing the
/// environment of a running multi-threaded test process is not sound).
fn child(test: &str, vars: &[(&str, &str)]) -> std::process::Output {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"]);
    for var in ["DAP_API_URL", "DAP_CLIENT_ID", "DAP_CLIENT_SECRET"] {
        cmd.env_remove(var);
    }
    cmd.env("DAP_UREQ_CHILD", "1");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().expect("child runs")
}

#[test]
fn from_env_names_the_missing_variable() {
    if std::env::var_os("DAP_UREQ_CHILD").is_some() {
        let err = Client::from_env().unwrap_err();
        let expected = if std::env::var_os("DAP_CLIENT_ID").is_some() {
            "DAP_CLIENT_SECRET"
        } else {
            "DAP_CLIENT_ID"
        };
        assert!(
            matches!(err, Error::Config(dap_proto::ConfigError::MissingVariable(v)) if v == expected),
            "{err:?}"
        );
        assert!(err.to_string().contains(expected), "{err}");
        return;
    }
    for vars in [&[][..], &[("DAP_CLIENT_ID", "us-east-1#x")][..]] {
        let out = child("from_env_names_the_missing_variable", vars);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn from_env_talks_to_the_emulator() {
    if std::env::var_os("DAP_UREQ_CHILD").is_some() {
        let client = Client::from_env().expect("client from env");
        assert!(client.config().base_url().starts_with("http://127.0.0.1:"));
        let tables = client.list_tables("canvas").expect("tables");
        assert!(!tables.is_empty());
        return;
    }
    let emu = emulator(small());
    let out = child(
        "from_env_talks_to_the_emulator",
        &[
            ("DAP_API_URL", &emu.base_url()),
            ("DAP_CLIENT_ID", emu.client_id()),
            ("DAP_CLIENT_SECRET", emu.client_secret()),
            ("NO_PROXY", "127.0.0.1"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(emu.stats().logins, 1);
}
