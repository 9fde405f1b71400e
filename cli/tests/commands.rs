//! End-to-end tests of `list`, `schema`, `snapshot` and `incremental`: the built binary
//! against an in-process emulator.

mod common;

use std::time::Duration;

use common::*;
use dap_emulator::{EmulatorConfig, Endpoint, FaultBody, FaultRule, Faults};

#[test]
fn list_prints_one_table_per_line() {
    let emu = emulator();
    let r = run(dap(&emu).args(["list", "--namespace", "canvas"]));
    r.assert_code(0).assert_no_secret();
    let want: Vec<&str> = dap_emulator::data::tables("canvas").unwrap();
    assert_eq!(r.stdout.lines().collect::<Vec<_>>(), want);
}

#[test]
fn list_json_and_options_after_the_command() {
    let emu = emulator();
    let r = run(dap(&emu).args(["list", "--namespace", "canvas", "--output", "json"]));
    r.assert_code(0);
    let v = r.json();
    assert_eq!(v["command"], "list");
    assert_eq!(v["ok"], true);
    assert_eq!(v["namespace"], "canvas");
    assert_eq!(
        v["tables"].as_array().unwrap().len(),
        dap_emulator::data::tables("canvas").unwrap().len()
    );
}

#[test]
fn official_options_are_accepted_and_ignored() {
    let emu = emulator();
    let r = run(dap(&emu).args([
        "--no-tracking",
        "--console-theme",
        "light",
        "--loglevel",
        "warning",
        "--logformat",
        "plain",
        "list",
        "--namespace",
        "canvas",
    ]));
    r.assert_code(0);
    assert!(r.stdout.lines().any(|l| l == "accounts"));
    assert!(
        r.stderr.is_empty(),
        "warning level logs nothing on success: {}",
        r.stderr
    );
}

#[test]
fn schema_files_match_the_official_layout() {
    let emu = emulator();
    let (r, out) = run_in_temp(&emu, on("schema", "accounts,users", &[]));
    r.assert_code(0);
    assert_eq!(
        tree(out.path()),
        [
            "accounts_schema_version_2.json",
            "users_schema_version_2.json"
        ]
    );
    let text = std::fs::read_to_string(out.path().join("accounts_schema_version_2.json")).unwrap();
    // Python's json.dump(indent=4): 4-space indent, server key order, no final newline.
    assert!(
        text.starts_with("{\n    \"schema\": {\n        \"$schema\": "),
        "{text}"
    );
    assert!(text.ends_with("\n    },\n    \"version\": 2\n}"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["version"], 2);
    assert_eq!(v["schema"]["type"], "object");
}

#[test]
fn snapshot_writes_job_directory_with_exact_records() {
    let emu = emulator();
    let (r, out) = run_in_temp(&emu, on("snapshot", "accounts", &["--json"]));
    r.assert_code(0).assert_no_secret();
    let v = r.json();
    let t = &v["tables"][0];
    let job = t["job_id"].as_str().unwrap();
    let files = tree(out.path());
    assert_eq!(files.len(), 1, "{files:?}");
    assert!(files[0].starts_with(&format!("job_{job}/")), "{files:?}");
    assert!(files[0].ends_with(".json.gz"), "{files:?}");
    assert!(assert_exact(&emu, t) > 0);
    // The official CLI's log lines.
    r.assert_stderr_has(&[
        "Starting snapshot of table 'accounts'",
        "Files from server downloaded to folder:",
    ]);
}

#[test]
fn json_result_shape() {
    let emu = emulator();
    let (r, _out) = run_in_temp(
        &emu,
        on("snapshot", "users", &["--json", "--format", "csv"]),
    );
    r.assert_code(0);
    let v = r.json();
    assert_eq!(v["command"], "snapshot");
    assert_eq!(v["ok"], true);
    assert_eq!(v["format"], "csv");
    assert_eq!(v["failed"], serde_json::json!([]));
    let t = &v["tables"][0];
    assert_eq!(t["table"], "users");
    assert_eq!(t["status"], "ok");
    assert_eq!(t["query"], "snapshot");
    assert!(t["job_id"].is_string());
    assert!(t["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(t["schema_version"], 2);
    let f = &t["files"][0];
    assert!(f["path"].as_str().unwrap().ends_with(".csv.gz"));
    assert!(f["bytes"].as_u64().unwrap() > 0);
    assert_eq!(f["bytes"], f["compressed_bytes"]);
    assert!(f["decompressed_bytes"].as_u64().unwrap() > f["bytes"].as_u64().unwrap());
    assert_eq!(
        std::fs::metadata(f["path"].as_str().unwrap())
            .unwrap()
            .len(),
        f["bytes"].as_u64().unwrap()
    );
}

#[test]
fn incremental_with_since_and_until_returns_exactly_the_window() {
    let emu = emulator();
    let until = jiff::Timestamp::from_second(emu.now().as_second() - 60).unwrap();
    let since = until - jiff::SignedDuration::from_hours(2);
    let (r, _out) = run_in_temp(
        &emu,
        on(
            "incremental",
            "courses",
            &[
                "--json",
                "--since",
                &since.to_string(),
                "--until",
                &until.to_string(),
            ],
        ),
    );
    r.assert_code(0);
    let v = r.json();
    let t = &v["tables"][0];
    assert_eq!(t["query"], "incremental");
    assert_eq!(ms(&t["since"]), since.as_millisecond());
    assert_eq!(ms(&t["until"]), until.as_millisecond());
    assert!(assert_exact(&emu, t) > 0);
}

#[test]
fn offsets_are_accepted_as_instants() {
    let emu = emulator();
    let since = emu.now().round(jiff::Unit::Second).unwrap() - jiff::SignedDuration::from_hours(1);
    let with_offset = since.display_with_offset(jiff::tz::offset(2)).to_string();
    assert!(with_offset.ends_with("+02:00"), "{with_offset}");
    let (r, _out) = run_in_temp(
        &emu,
        on(
            "incremental",
            "accounts",
            &["--json", "--since", &with_offset],
        ),
    );
    r.assert_code(0);
    assert_eq!(ms(&r.json()["tables"][0]["since"]), since.as_millisecond());
}

#[test]
fn table_all_with_one_failing_table_continues_and_names_it() {
    let emu = emulator();
    emu.set_faults(Faults {
        snapshot_required_tables: vec!["canvas.users".to_owned()],
        ..Faults::default()
    });
    let since = (emu.now() - jiff::SignedDuration::from_hours(1))
        .round(jiff::Unit::Second)
        .unwrap();
    let (r, out) = run_in_temp(
        &emu,
        on(
            "incremental",
            "all",
            &["--json", "--since", &since.to_string()],
        ),
    );
    r.assert_code(5);
    let v = r.json();
    assert_eq!(v["ok"], false);
    assert_eq!(v["failed"], serde_json::json!(["users"]));
    let tables = v["tables"].as_array().unwrap();
    let all = dap_emulator::data::tables("canvas").unwrap();
    assert_eq!(tables.len(), all.len());
    for t in tables {
        if t["table"] == "users" {
            assert_eq!(t["status"], "failed");
            assert_eq!(t["error"]["category"], "snapshot_required");
            assert!(t["error"]["hint"].as_str().unwrap().contains("dap sync"));
        } else {
            assert_eq!(t["status"], "ok", "{t}");
        }
    }
    let jobs = std::fs::read_dir(out.path()).unwrap().count();
    assert_eq!(
        jobs,
        all.len() - 1,
        "one job directory per successful table"
    );
    r.assert_stderr_has(&["completed with issues: 1 failed out of", ": users"]);
}

#[test]
fn unknown_table_in_a_comma_list_does_not_stop_the_others() {
    let emu = emulator();
    let (r, out) = run_in_temp(&emu, on("snapshot", "accounts, nosuch ,courses", &[]));
    r.assert_code(5).assert_stderr_has(&[
        "failed for table 'nosuch' (2 of 3)",
        "dap list --namespace canvas", // the hint
        "Finished snapshot of table 'courses' (3 of 3)",
    ]);
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 2);
}

#[test]
fn server_errors_get_a_message_and_exit_5() {
    let emu = emulator();
    set_rules(
        &emu,
        vec![FaultRule::status(
            Endpoint::Schema,
            100,
            503,
            FaultBody::Html,
        )],
    );
    let (r, out) = run_in_temp(&emu, on("schema", "accounts", &[]));
    r.assert_code(5)
        .assert_stderr_has(&["schema of table 'accounts'", "503"]);
    assert!(tree(out.path()).is_empty());
}

#[test]
fn missing_credentials_name_the_variable_and_flag() {
    let emu = emulator();
    let r = run(bare_dap()
        .env("DAP_API_URL", emu.base_url())
        .env("DAP_CLIENT_SECRET", "x")
        .args(["list", "--namespace", "canvas"]));
    r.assert_code(5)
        .assert_stderr_has(&["DAP_CLIENT_ID", "--client-id"]);
    assert!(!r.stderr.contains("DAP_CLIENT_SECRET"), "{}", r.stderr);

    let r = run(bare_dap().args(on("snapshot", "a", &["--json"])));
    r.assert_code(5)
        .assert_stderr_has(&["DAP_CLIENT_ID", "DAP_CLIENT_SECRET"]);
    assert_eq!(r.json()["error"]["category"], "missing_credentials");
    assert_eq!(emu.stats().requests.login, 0);
}

#[test]
fn credentials_from_flags_work() {
    let emu = emulator();
    let r = run(bare_dap()
        .args([
            "--base-url",
            &emu.base_url(),
            "--client-id",
            emu.client_id(),
        ])
        .args([
            "--client-secret",
            emu.client_secret(),
            "--non-interactive",
            "list",
            "--namespace",
            "canvas",
        ]));
    r.assert_code(0).assert_no_secret();
    assert!(r.stdout.lines().any(|l| l == "users"));
}

#[test]
fn wrong_credentials_fail_fatally_without_printing_the_secret() {
    let emu = emulator();
    let wrong = format!("{SECRET_MARKER}-wrong");
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("dap.log");
    let r = run(dap(&emu)
        .env("DAP_CLIENT_SECRET", &wrong)
        .args(["--loglevel", "debug", "--json", "--logfile"])
        .arg(&log)
        .args(on("snapshot", "accounts,users,courses", &[]))
        .arg("--output-directory")
        .arg(out.path().join("data")));
    r.assert_code(5).assert_no_secret();
    assert!(!r.stderr.contains(&wrong) && !r.stdout.contains(&wrong));
    r.assert_stderr_has(&["DAP_CLIENT_SECRET"]); // the hint names the variable
    let v = r.json();
    assert_eq!(v["tables"][0]["error"]["category"], "authentication");
    assert_eq!(v["tables"][1]["status"], "skipped");
    assert_eq!(v["tables"][2]["status"], "skipped");
    assert_eq!(emu.stats().requests.query, 0);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.is_empty());
    assert!(!logged.contains(SECRET_MARKER));
}

#[test]
fn log_file_has_no_secrets_or_signatures_and_json_format_parses() {
    let emu = emulator();
    let out = tempfile::tempdir().unwrap();
    let log = out.path().join("dap.log");
    let r = run(dap(&emu)
        .args(["--loglevel", "debug", "--logformat", "json", "--logfile"])
        .arg(&log)
        .args(on("snapshot", "accounts", &["--output-directory"]))
        .arg(out.path().join("data")));
    r.assert_code(0).assert_no_secret();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.lines().count() >= 3, "{logged}");
    for line in logged.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
    assert!(logged.contains("Starting snapshot of table 'accounts'"));
    for text in [&logged, &r.stderr] {
        assert!(!text.contains(SECRET_MARKER));
        assert!(!text.contains("eyJ"), "no token");
        for (i, _) in text.match_indices("X-Amz-Signature=") {
            assert!(
                text[i..].starts_with("X-Amz-Signature=[redacted]"),
                "{text}"
            );
        }
    }
}

#[test]
fn decompress_writes_plain_files() {
    let emu = emulator();
    let (r, _out) = run_in_temp(
        &emu,
        on("snapshot", "accounts", &["--json", "--decompress"]),
    );
    r.assert_code(0);
    let t = &r.json()["tables"][0];
    let files = files_of(t);
    assert!(files[0].extension().unwrap() == "json", "{files:?}");
    let raw = std::fs::read(&files[0]).unwrap();
    assert_eq!(raw[0], b'{');
    assert_exact(&emu, t);
}

#[test]
fn concurrency_downloads_every_object() {
    let emu = emulator_with(EmulatorConfig {
        objects_per_job: 5,
        ..EmulatorConfig::default()
    });
    let (r, _out) = run_in_temp(
        &emu,
        on("snapshot", "submissions", &["--json", "--concurrency", "3"]),
    );
    r.assert_code(0);
    let t = &r.json()["tables"][0];
    assert_eq!(files_of(t).len(), 5);
    assert_exact(&emu, t);
    let r = run(dap(&emu).args(on("snapshot", "x", &["--concurrency", "0"])));
    assert_ne!(r.code, 0);
}

#[test]
fn version_and_help_hide_the_secret() {
    let r = run(bare_dap().arg("--version"));
    r.assert_code(0);
    assert!(r.stdout.starts_with("dap "), "{}", r.stdout);
    let r = run(bare_dap()
        .env("DAP_CLIENT_SECRET", SECRET_MARKER)
        .arg("--help"));
    r.assert_code(0).assert_no_secret();
    assert!(r.stdout.contains("--client-secret") && r.stdout.contains("DAP_CLIENT_SECRET"));
    for cmd in ["list", "schema", "snapshot", "incremental", "sync", "demo"] {
        let r = run(bare_dap()
            .env("DAP_CLIENT_SECRET", SECRET_MARKER)
            .args([cmd, "--help"]));
        r.assert_code(0).assert_no_secret();
    }
}

#[test]
fn interrupt_exits_125_and_leaves_no_partial_file_under_a_final_name() {
    let emu = emulator_with(EmulatorConfig {
        objects_per_job: 3,
        ..EmulatorConfig::default()
    });
    // Storage answers slowly, so the download is in flight when the signal arrives.
    let delay = dap_emulator::FaultAction::Delay { millis: 4000 };
    set_rules(&emu, vec![FaultRule::new(Endpoint::Storage, 100, delay)]);
    let out = tempfile::tempdir().unwrap();
    let child = spawn(
        dap(&emu)
            .args(["snapshot", "--namespace", "canvas", "--table", "accounts"])
            .arg("--output-directory")
            .arg(out.path()),
    );
    wait_until("the download", Duration::from_secs(10), || {
        emu.stats().requests.storage > 0
    });
    std::thread::sleep(Duration::from_millis(100));
    interrupt(&child);
    let r = wait(child);
    r.assert_code(125).assert_stderr_has(&["Interrupted"]);
    let files = tree(out.path());
    assert!(files.is_empty(), "no file of any kind is left: {files:?}");
}

#[test]
fn interrupt_mid_download_keeps_only_verified_files() {
    // Large synthetic objects, so the signal arrives while bytes are being written.
    let emu = emulator_with(EmulatorConfig {
        objects_per_job: 4,
        object_size_bytes: Some(256 << 20),
        ..EmulatorConfig::default()
    });
    let out = tempfile::tempdir().unwrap();
    let child = spawn(
        dap(&emu)
            .args(["snapshot", "--namespace", "canvas", "--table", "accounts"])
            .args(["--concurrency", "2", "--output-directory"])
            .arg(out.path()),
    );
    wait_until(
        "bytes written to a temporary file",
        Duration::from_secs(20),
        || {
            tree(out.path()).iter().any(|f| {
                f.ends_with(".partial")
                    && std::fs::metadata(out.path().join(f)).is_ok_and(|m| m.len() > 0)
            })
        },
    );
    interrupt(&child);
    wait(child).assert_code(125);
    // Anything under a final name is complete and verifies.
    assert_only_complete_files(out.path());
}

#[test]
fn jobs_that_wait_and_run_are_polled_to_completion() {
    let emu = emulator_with(EmulatorConfig {
        job_waiting: Duration::from_millis(150),
        job_running: Duration::from_millis(150),
        ..EmulatorConfig::default()
    });
    let (r, _out) = run_in_temp(&emu, on("snapshot", "accounts", &["--json"]));
    r.assert_code(0);
    assert!(
        emu.stats().requests.job >= 2,
        "polled: {:?}",
        emu.stats().requests
    );
    assert_exact(&emu, &r.json()["tables"][0]);
}

#[test]
fn unwritable_output_directory_is_a_clear_error() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let r = run(dap(&emu)
        .args(on("schema", "accounts", &["--output-directory"]))
        .arg(&file));
    r.assert_code(5).assert_stderr_has(&["a-file"]);
    let r = run(dap(&emu).arg("--logfile").arg(file.join("x.log")).args([
        "list",
        "--namespace",
        "canvas",
    ]));
    r.assert_code(5).assert_stderr_has(&["log file"]);
}
