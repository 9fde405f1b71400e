//! dap-hyper against the in-process emulator on 127.0.0.1.

use std::path::Path;
use std::time::Duration;

use dap_emulator::{
    EmulatedRange, Emulator, EmulatorConfig, Endpoint, FaultAction, FaultRule, Faults,
};
use dap_hyper::{Client, DownloadOptions, Error};
use dap_proto::{Config, DataRange, Format, PollPolicy, RetryPolicy, TransferError};
use futures_util::{StreamExt, TryStreamExt};

fn start(cfg: EmulatorConfig) -> Emulator {
    Emulator::start(cfg).expect("emulator starts")
}

fn emulator() -> Emulator {
    start(EmulatorConfig::default())
}

fn config_with(emu: &Emulator, secret: &str) -> Config {
    Config::builder(emu.client_id(), secret)
        .base_url(emu.base_url())
        .poll(PollPolicy::new(
            Duration::from_millis(2),
            Duration::from_millis(10),
        ))
        .retry(RetryPolicy::new(
            4,
            Duration::from_millis(1),
            Duration::from_millis(5),
        ))
        .build()
        .expect("config")
}

fn client(emu: &Emulator) -> Client {
    Client::new(config_with(emu, emu.client_secret())).expect("client")
}

fn range_of(range: &DataRange) -> EmulatedRange {
    match *range {
        DataRange::Snapshot { at } => EmulatedRange::Snapshot {
            at_ms: at.as_millisecond(),
        },
        DataRange::Incremental { since, until } => EmulatedRange::Incremental {
            since_ms: since.as_millisecond(),
            until_ms: until.as_millisecond(),
        },
        _ => panic!("unknown range"),
    }
}

fn expected_lines(emu: &Emulator, table: &str, range: &DataRange) -> Vec<String> {
    emu.expected_records("canvas", table, range_of(range))
        .expect("known table")
        .iter()
        .map(|r| r.to_jsonl_line())
        .collect()
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread")]
async fn list_tables_and_schema() {
    let emu = emulator();
    let client = client(&emu);
    let tables = client.list_tables("canvas").await.unwrap();
    assert!(tables.iter().any(|t| t == "accounts"), "{tables:?}");
    let schema = client.table_schema("canvas", "accounts").await.unwrap();
    assert!(schema.version >= 1);
    assert!(schema.value().is_object());
    assert_eq!(emu.stats().logins, 1);
    assert_eq!(client.logins(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn snapshot_download_verified_gzip() {
    let emu = emulator();
    let client = client(&emu);
    let result = client
        .snapshot("canvas", "accounts", Format::Jsonl)
        .await
        .unwrap();
    assert!(!result.objects.is_empty());
    let tmp = tempfile::tempdir().unwrap();
    let files = client
        .download(&result, tmp.path(), &DownloadOptions::default())
        .await
        .unwrap();
    assert_eq!(files.len(), result.objects.len());
    let job_dir = tmp.path().join(format!("job_{}", result.job));
    for (file, object) in files.iter().zip(&result.objects) {
        assert_eq!(file.object, object.id);
        assert_eq!(file.path.parent(), Some(job_dir.as_path()));
        assert!(file.path.to_string_lossy().ends_with(".gz"));
        let bytes = std::fs::read(&file.path).unwrap();
        assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
        assert_eq!(bytes.len() as u64, file.bytes);
        assert_eq!(file.bytes, file.compressed_bytes);
        assert!(file.decompressed_bytes.unwrap() > file.bytes);
        assert_eq!((file.resumes, file.url_refreshes), (0, 0));
    }
    // Only final names, no temporary file left.
    assert!(dir_entries(&job_dir).iter().all(|n| !n.starts_with('.')));
    assert_eq!(emu.stats().storage_with_credentials, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn download_decompressed_matches_expected_records() {
    let emu = start(EmulatorConfig {
        objects_per_job: 3,
        ..EmulatorConfig::default()
    });
    let client = client(&emu);
    let result = client
        .snapshot("canvas", "users", Format::Jsonl)
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let files = client
        .download(
            &result,
            tmp.path(),
            &DownloadOptions::default().decompress(true).concurrency(2),
        )
        .await
        .unwrap();
    assert_eq!(files.len(), 3);
    let mut lines = Vec::new();
    for file in &files {
        assert!(!file.path.to_string_lossy().ends_with(".gz"));
        let text = std::fs::read_to_string(&file.path).unwrap();
        assert_eq!(Some(text.len() as u64), file.decompressed_bytes);
        assert_eq!(text.len() as u64, file.bytes);
        lines.extend(text.lines().map(str::to_owned));
    }
    assert_eq!(lines, expected_lines(&emu, "users", &result.range));
}

#[tokio::test(flavor = "multi_thread")]
async fn records_and_json_records_stream() {
    let emu = start(EmulatorConfig {
        objects_per_job: 2,
        ..EmulatorConfig::default()
    });
    let client = client(&emu);
    let result = client
        .snapshot("canvas", "courses", Format::Jsonl)
        .await
        .unwrap();
    let expected = expected_lines(&emu, "courses", &result.range);
    let records: Vec<_> = client.records(&result).try_collect().await.unwrap();
    let lines: Vec<String> = records
        .iter()
        .map(|r| String::from_utf8(r.to_vec()).unwrap())
        .collect();
    assert_eq!(lines, expected);
    let values: Vec<serde_json::Value> = client.json_records(&result).try_collect().await.unwrap();
    let expected_values: Vec<serde_json::Value> = emu
        .expected_records("canvas", "courses", range_of(&result.range))
        .unwrap()
        .iter()
        .map(|r| r.to_json())
        .collect();
    assert_eq!(values, expected_values);
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_records_include_headers_and_json_records_refuse_csv() {
    let emu = emulator();
    let client = client(&emu);
    let result = client
        .snapshot("canvas", "accounts", Format::Csv)
        .await
        .unwrap();
    let expected = emu
        .expected_records("canvas", "accounts", range_of(&result.range))
        .unwrap();
    let records: Vec<_> = client.records(&result).try_collect().await.unwrap();
    assert_eq!(records.len(), expected.len() + result.objects.len());
    assert!(String::from_utf8_lossy(&records[0]).contains("key.id"));
    let first = client.json_records(&result).next().await.unwrap();
    assert!(matches!(first, Err(Error::Usage(_))), "{first:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn incremental_after_snapshot() {
    let emu = emulator();
    let client = client(&emu);
    let snap = client
        .snapshot("canvas", "users", Format::Jsonl)
        .await
        .unwrap();
    emu.advance_clock(Duration::from_secs(3600));
    let inc = client
        .incremental(
            "canvas",
            "users",
            Format::Jsonl,
            snap.range.next_since(),
            None,
        )
        .await
        .unwrap();
    let DataRange::Incremental { since, .. } = inc.range else {
        panic!("not incremental: {:?}", inc.range)
    };
    assert_eq!(since, snap.range.next_since());
    let lines: Vec<String> = client
        .records(&inc)
        .map_ok(|r| String::from_utf8(r.to_vec()).unwrap())
        .try_collect()
        .await
        .unwrap();
    let expected = expected_lines(&emu, "users", &inc.range);
    assert!(!expected.is_empty());
    assert_eq!(lines, expected);
    let job = client.get_job(&inc.job).await.unwrap();
    assert!(job.state.is_terminal());
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_download_resumes() {
    let emu = start(EmulatorConfig {
        rows_per_table: Some(2000),
        ..EmulatorConfig::default()
    });
    let client = client(&emu);
    let result = client
        .snapshot("canvas", "users", Format::Jsonl)
        .await
        .unwrap();
    emu.set_faults(Faults {
        rules: vec![FaultRule::new(
            Endpoint::Storage,
            1,
            FaultAction::DropAfter { bytes: 4096 },
        )],
        ..Faults::default()
    });
    let tmp = tempfile::tempdir().unwrap();
    let files = client
        .download(
            &result,
            tmp.path(),
            &DownloadOptions::default().decompress(true),
        )
        .await
        .unwrap();
    assert_eq!(files[0].resumes, 1);
    let text = std::fs::read_to_string(&files[0].path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines, expected_lines(&emu, "users", &result.range));
    assert_eq!(emu.stats().requests.storage, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_records_stream_resumes() {
    let emu = start(EmulatorConfig {
        rows_per_table: Some(2000),
        ..EmulatorConfig::default()
    });
    let client = client(&emu);
    let result = client
        .snapshot("canvas", "users", Format::Jsonl)
        .await
        .unwrap();
    emu.set_faults(Faults {
        rules: vec![FaultRule::new(
            Endpoint::Storage,
            2,
            FaultAction::DropAfter { bytes: 3000 },
        )],
        ..Faults::default()
    });
    let lines: Vec<String> = client
        .records(&result)
        .map_ok(|r| String::from_utf8(r.to_vec()).unwrap())
        .try_collect()
        .await
        .unwrap();
    assert_eq!(lines, expected_lines(&emu, "users", &result.range));
}

async fn assert_fails_cleanly(action: FaultAction) {
    let emu = emulator();
    let client = client(&emu);
    let result = client
        .snapshot("canvas", "accounts", Format::Jsonl)
        .await
        .unwrap();
    emu.set_faults(Faults {
        rules: vec![FaultRule::new(Endpoint::Storage, 100, action)],
        ..Faults::default()
    });
    for decompress in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let err = client
            .download(
                &result,
                tmp.path(),
                &DownloadOptions::default().decompress(decompress),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Transfer(TransferError::Corrupt { .. })),
            "{err:?}"
        );
        let job_dir = tmp.path().join(format!("job_{}", result.job));
        assert_eq!(dir_entries(&job_dir), Vec::<String>::new());
    }
    let err = client
        .records(&result)
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Transfer(TransferError::Corrupt { .. })),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupt_gzip_fails_cleanly() {
    assert_fails_cleanly(FaultAction::CorruptGzip).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_gzip_fails_cleanly() {
    assert_fails_cleanly(FaultAction::TruncateGzip).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_url_is_refreshed() {
    let emu = emulator();
    let client = client(&emu);
    let result = client
        .snapshot("canvas", "accounts", Format::Jsonl)
        .await
        .unwrap();
    emu.advance_clock(Duration::from_secs(1000));
    let tmp = tempfile::tempdir().unwrap();
    let files = client
        .download(&result, tmp.path(), &DownloadOptions::default())
        .await
        .unwrap();
    assert_eq!(files[0].url_refreshes, 1);
    assert!(files[0].path.exists());
    assert_eq!(emu.stats().requests.object_urls, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_list_tables_log_in_once() {
    let emu = emulator();
    let client = client(&emu);
    let calls = (0..50).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.list_tables("canvas").await })
    });
    for call in futures_util::future::join_all(calls).await {
        assert!(!call.unwrap().unwrap().is_empty());
    }
    assert_eq!(emu.stats().logins, 1);
    assert_eq!(emu.stats().requests.tables, 50);
    assert_eq!(client.logins(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_concurrent_schemas_log_in_once() {
    let emu = emulator();
    let client = client(&emu);
    let calls = (0..200).map(|_| client.table_schema("canvas", "users"));
    for schema in futures_util::future::join_all(calls).await {
        schema.unwrap();
    }
    assert_eq!(emu.stats().logins, 1);
    assert_eq!(emu.stats().requests.schema, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_credentials_never_show_the_secret() {
    let emu = emulator();
    let secret = "wrong-secret-7f3a9c";
    let client = Client::new(config_with(&emu, secret)).unwrap();
    let err = client.list_tables("canvas").await.unwrap_err();
    assert!(err.is_fatal(), "{err:?}");
    assert!(matches!(err, Error::Dap(_)));
    for text in [err.to_string(), format!("{err:?}"), format!("{client:?}")] {
        assert!(!text.contains(secret), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreachable_server_is_a_transport_error() {
    let emu = emulator();
    let config = config_with(&emu, emu.client_secret());
    drop(emu);
    let client = Client::new(config).unwrap();
    let err = client.list_tables("canvas").await.unwrap_err();
    match &err {
        Error::Transport {
            what,
            attempts,
            last,
        } => {
            assert_eq!(*what, "login");
            assert_eq!(*attempts, 4);
            assert!(!last.is_empty());
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_env_variable_is_named() {
    if std::env::var_os("DAP_CLIENT_ID").is_some() {
        return;
    }
    let err = Client::from_env().unwrap_err();
    assert!(matches!(err, Error::Config(_)), "{err:?}");
    assert!(err.to_string().contains("DAP_CLIENT_ID"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_server_hits_the_read_timeout() {
    let emu = start(EmulatorConfig {
        faults: Faults {
            rules: vec![FaultRule::new(
                Endpoint::Tables,
                10,
                FaultAction::Delay { millis: 2_000 },
            )],
            ..Faults::default()
        },
        ..EmulatorConfig::default()
    });
    let config = Config::builder(emu.client_id(), emu.client_secret())
        .base_url(emu.base_url())
        .retry(RetryPolicy::new(
            2,
            Duration::from_millis(1),
            Duration::from_millis(5),
        ))
        .build()
        .unwrap();
    let options = dap_hyper::Options::default()
        .connect_timeout(Duration::from_millis(100))
        .read_timeout(Duration::from_millis(100));
    let client = Client::with_options(config, options).unwrap();
    let err = client.list_tables("canvas").await.unwrap_err();
    match &err {
        Error::Transport {
            what,
            attempts,
            last,
        } => {
            assert_eq!((*what, *attempts), ("list tables", 2));
            assert!(last.contains("no response within"), "{last}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_client_outlives_its_first_runtime() {
    let emu = emulator();
    let client = client(&emu);
    for _ in 0..2 {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let tables = runtime.block_on(client.list_tables("canvas")).unwrap();
        assert!(!tables.is_empty());
    }
    // A new runtime means a new driver and session, so a second login.
    assert_eq!(emu.stats().logins, 2);
}

#[test]
fn extra_ca_file_errors() {
    let config = Config::builder("id", "secret").build().unwrap();
    let missing = dap_hyper::Options::default().extra_ca_file("/nonexistent/ca.pem");
    let err = Client::with_options(config.clone(), missing).unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err:?}");
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), "not a certificate\n").unwrap();
    let empty = dap_hyper::Options::default().extra_ca_file(tmp.path());
    let err = Client::with_options(config, empty).unwrap_err();
    assert!(matches!(err, Error::Tls(_)), "{err:?}");
}

#[test]
fn calls_outside_a_runtime_are_refused_not_panicking() {
    let config = Config::builder("id", "secret").build().unwrap();
    let client = Client::new(config).unwrap();
    // Poll the future by hand with a no-op executor: no tokio runtime is current.
    let err = futures_util::FutureExt::now_or_never(client.list_tables("canvas"))
        .expect("ready at once")
        .unwrap_err();
    assert!(matches!(err, Error::Usage(_)), "{err:?}");
}
