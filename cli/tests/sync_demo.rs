//! End-to-end tests of `dap sync` and `dap demo`.

mod common;

use std::time::Duration;

use common::*;
use dap_emulator::Faults;

fn sync(emu: &dap_emulator::Emulator, dir: &std::path::Path, tables: &str) -> Run {
    run(dap(emu)
        .args(on("sync", tables, &["--json", "--output-directory"]))
        .arg(dir))
}

#[test]
fn sync_twice_chains_an_incremental_with_exactly_the_changed_records() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();

    let first = sync(&emu, dir.path(), "accounts,users");
    first.assert_code(0).assert_no_secret();
    let v = first.json();
    let mut ats = Vec::new();
    for t in v["tables"].as_array().unwrap() {
        assert_eq!(t["query"], "snapshot", "{t}");
        assert_eq!(t["reason"], "first sync of the table");
        let table = t["table"].as_str().unwrap();
        assert_exact(&emu, t); // the records of the snapshot at `at`
        assert!(
            dir.path()
                .join(format!("{table}_schema_version_2.json"))
                .is_file()
        );
        ats.push(t["at"].clone());
    }
    let s = sync_state(dir.path());
    assert_eq!(s["namespaces"]["canvas"]["users"]["next_since"], ats[1]);
    assert_eq!(s["namespaces"]["canvas"]["users"]["format"], "jsonl");
    assert!(
        !dir.path()
            .read_dir()
            .unwrap()
            .any(|e| { e.unwrap().file_name().to_string_lossy().contains(".tmp") })
    );

    emu.advance_clock(Duration::from_secs(3600));
    let second = sync(&emu, dir.path(), "accounts,users");
    second.assert_code(0);
    let v = second.json();
    for (t, at) in v["tables"].as_array().unwrap().iter().zip(&ats) {
        assert_eq!(t["query"], "incremental", "{t}");
        assert_eq!(&t["since"], at, "chained from the stored snapshot `at`");
        // Exactly the records changed between `since` and `until`.
        let changed = assert_exact(&emu, t);
        assert!(changed > 0, "an hour of changes in {t}");
    }
    let s = sync_state(dir.path());
    let users = &s["namespaces"]["canvas"]["users"];
    assert_eq!(users["next_since"], v["tables"][1]["until"]);
    assert_eq!(users["history"].as_array().unwrap().len(), 2);

    // A third run right away continues from the second's `until`.
    let third = sync(&emu, dir.path(), "users");
    third.assert_code(0);
    assert_eq!(third.json()["tables"][0]["since"], v["tables"][1]["until"]);
}

#[test]
fn sync_takes_a_fresh_snapshot_when_the_server_requires_one() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    sync(&emu, dir.path(), "courses").assert_code(0);
    emu.advance_clock(Duration::from_secs(600));
    emu.set_faults(Faults {
        snapshot_required: true,
        ..Faults::default()
    });
    let r = sync(&emu, dir.path(), "courses");
    r.assert_code(0);
    let t = &r.json()["tables"][0];
    assert_eq!(t["query"], "snapshot");
    assert!(
        t["reason"].as_str().unwrap().contains("SnapshotRequired"),
        "{t}"
    );
    r.assert_stderr_has(&["fresh snapshot"]);
    assert_eq!(t["table"], "courses");
    assert_exact(&emu, t); // the records of the snapshot at `at`
    assert_eq!(
        sync_state(dir.path())["namespaces"]["canvas"]["courses"]["next_since"],
        t["at"]
    );
}

#[test]
fn sync_refuses_a_format_change_and_force_snapshot_restarts() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    sync(&emu, dir.path(), "accounts").assert_code(0);
    let r = run(dap(&emu)
        .args(on(
            "sync",
            "accounts",
            &["--format", "csv", "--output-directory"],
        ))
        .arg(dir.path()));
    r.assert_code(5).assert_stderr_has(&["--force-snapshot"]);
    let r = run(dap(&emu)
        .args(on(
            "sync",
            "accounts",
            &[
                "--json",
                "--format",
                "csv",
                "--force-snapshot",
                "--output-directory",
            ],
        ))
        .arg(dir.path()));
    r.assert_code(0);
    assert_eq!(r.json()["tables"][0]["query"], "snapshot");
    assert_eq!(
        sync_state(dir.path())["namespaces"]["canvas"]["accounts"]["format"],
        "csv"
    );
}

#[test]
fn sync_all_with_a_failing_table_keeps_the_others_positions() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let r = sync(&emu, dir.path(), "accounts,nosuch,users");
    r.assert_code(5);
    let v = r.json();
    assert_eq!(v["failed"], serde_json::json!(["nosuch"]));
    let s = sync_state(dir.path());
    let synced: Vec<&String> = s["namespaces"]["canvas"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(synced, ["accounts", "users"]);
}

#[test]
fn sync_rejects_a_corrupt_state_file() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dap-sync-state.json"), b"{not json").unwrap();
    let r = sync(&emu, dir.path(), "accounts");
    r.assert_code(5).assert_stderr_has(&["dap-sync-state.json"]);
    assert_eq!(emu.stats().requests.query, 0);
}

#[test]
fn demo_runs_the_whole_workflow_without_credentials() {
    let r = run(bare_dap().arg("demo"));
    r.assert_code(0).assert_stdout_has(&[
        "list",
        "schema",
        "snapshot",
        "incremental",
        "verify",
        "match the emulator exactly",
    ]);
    assert!(
        !r.stderr.contains("ERROR") && !r.stderr.contains("WARNING"),
        "{}",
        r.stderr
    );
}

#[test]
fn demo_json_and_kept_output_directory() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let r = run(bare_dap()
        .args([
            "demo",
            "--json",
            "--table",
            "accounts",
            "--output-directory",
        ])
        .arg(&out));
    r.assert_code(0);
    let v = r.json();
    assert_eq!(v["ok"], true);
    let steps: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    assert_eq!(
        steps,
        [
            "list",
            "schema",
            "snapshot",
            "incremental",
            "verify",
            "database"
        ]
    );
    assert!(v["steps"][5]["rows"].as_u64().unwrap() > 0);
    let inc = &v["steps"][3]["result"];
    assert_eq!(inc["since"], v["steps"][2]["result"]["at"]);
    let files = tree(&out);
    assert!(
        files.contains(&"accounts_schema_version_2.json".to_owned()),
        "{files:?}"
    );
    assert_eq!(
        files.iter().filter(|f| f.starts_with("job_")).count(),
        4,
        "{files:?}"
    );
}

#[test]
fn sync_records_a_schema_version_change_and_saves_the_new_schema() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    sync(&emu, dir.path(), "accounts").assert_code(0);
    // Pretend the previous run saw version 1: the data's version 2 is then a change.
    let path = dir.path().join("dap-sync-state.json");
    let mut s = sync_state(dir.path());
    s["namespaces"]["canvas"]["accounts"]["schema_version"] = 1.into();
    std::fs::write(&path, serde_json::to_vec(&s).unwrap()).unwrap();
    std::fs::remove_file(dir.path().join("accounts_schema_version_2.json")).unwrap();
    emu.advance_clock(Duration::from_secs(600));

    let r = sync(&emu, dir.path(), "accounts");
    r.assert_code(0);
    let t = &r.json()["tables"][0];
    assert_eq!(t["query"], "incremental");
    assert_eq!(t["schema_changed"], serde_json::json!({"from": 1, "to": 2}));
    assert!(
        r.stderr.contains("schema version changed from 1 to 2"),
        "{}",
        r.stderr
    );
    assert!(dir.path().join("accounts_schema_version_2.json").is_file());
    let table = &sync_state(dir.path())["namespaces"]["canvas"]["accounts"];
    assert_eq!(table["schema_version"], 2);
    assert_eq!(table["schema_changes"][0]["from"], 1);
    assert_eq!(table["schema_changes"][0]["to"], 2);
    assert_eq!(table["schema_changes"][0]["job_id"], t["job_id"]);
}
