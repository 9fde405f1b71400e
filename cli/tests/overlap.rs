//! End-to-end tests of overlapping runs and of what `dap sync` refuses to record: two
//! processes on one output directory, and results that would move a table backwards.

mod common;

use std::time::Duration;

use common::*;
use dap_emulator::{EmulatorConfig, Endpoint, FaultAction, FaultRule, Faults};

const STATE: &str = "dap-sync-state.json";

/// Storage answers the next `count` downloads `millis` late, so a run holds its table
/// long enough for another to start.
fn slow_storage(emu: &dap_emulator::Emulator, count: u32, millis: u64) {
    let delay = FaultAction::Delay { millis };
    set_rules(emu, vec![FaultRule::new(Endpoint::Storage, count, delay)]);
}

fn sync_args(table: &str) -> Vec<&str> {
    vec!["--json", "sync", "--namespace", "canvas", "--table", table]
}

#[test]
fn a_second_run_on_a_busy_table_refuses_or_waits_and_files_stay_intact() {
    let emu = emulator_with(EmulatorConfig {
        objects_per_job: 3,
        ..EmulatorConfig::default()
    });
    slow_storage(&emu, 3, 2500);
    let out = tempfile::tempdir().unwrap();
    let args = on("snapshot", "accounts", &["--json"]);
    let first = spawn(
        dap(&emu)
            .args(&args)
            .arg("--output-directory")
            .arg(out.path()),
    );
    wait_until("the first run's download", Duration::from_secs(20), || {
        emu.stats().requests.storage > 0
    });
    let pid = format!("pid {}", first.id());

    // Refuse at once: exit 5, naming the other run.
    let refused = run(dap(&emu)
        .args(["--lock-timeout", "0"])
        .args(&args)
        .arg("--output-directory")
        .arg(out.path()));
    refused.assert_code(5);
    let report = &refused.json()["tables"][0];
    assert_eq!(report["error"]["category"], "locked", "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("another dap run") && message.contains(&pid),
        "{message}"
    );

    // Wait (the default): runs once the first is done, on the same deduplicated job.
    let waited = run_in(&emu, out.path(), &args);
    waited.assert_code(0);
    assert!(
        waited
            .stderr
            .contains(&format!("Waiting for another dap run ({pid}")),
        "{}",
        waited.stderr
    );
    let first = wait(first);
    first.assert_code(0);
    let (a, b) = (&first.json()["tables"][0], &waited.json()["tables"][0]);
    assert_eq!(a["job_id"], b["job_id"], "DAP deduplicated the query");
    assert_exact(&emu, a);
    assert_exact(&emu, b);
    assert_only_complete_files(out.path());
}

#[test]
fn concurrent_syncs_of_different_tables_keep_each_others_positions() {
    let emu = emulator();
    slow_storage(&emu, 1, 1500);
    let out = tempfile::tempdir().unwrap();
    let slow = spawn(
        dap(&emu)
            .args(sync_args("accounts"))
            .arg("--output-directory")
            .arg(out.path()),
    );
    wait_until("the slow sync's download", Duration::from_secs(20), || {
        emu.stats().requests.storage > 0
    });
    // Another table of the same directory is not blocked, and finishes first.
    let fast = run_in(&emu, out.path(), sync_args("users"));
    fast.assert_code(0);
    assert!(!fast.stderr.contains("Waiting"), "{}", fast.stderr);
    let slow = wait(slow);
    slow.assert_code(0);
    let tables = &sync_state(out.path())["namespaces"]["canvas"];
    assert_eq!(
        tables["users"]["next_since"],
        fast.json()["tables"][0]["at"]
    );
    assert_eq!(
        tables["accounts"]["next_since"],
        slow.json()["tables"][0]["at"]
    );
    assert_only_complete_files(out.path());
}

#[test]
fn sync_refuses_a_deduplicated_snapshot_older_than_its_position() {
    let emu = emulator();
    let out = tempfile::tempdir().unwrap();
    let first = run_in(&emu, out.path(), sync_args("courses"));
    first.assert_code(0);
    emu.advance_clock(Duration::from_secs(3600));
    let second = run_in(&emu, out.path(), sync_args("courses"));
    second.assert_code(0);
    let position = second.json()["tables"][0]["until"].clone();
    let saved = std::fs::read(out.path().join(STATE)).unwrap();

    // The fresh snapshot after SnapshotRequired, and a forced one, are the same query
    // as the first sync's: DAP answers with that job, as of an earlier instant.
    emu.set_faults(Faults {
        snapshot_required: true,
        ..Faults::default()
    });
    let recovered = run_in(&emu, out.path(), sync_args("courses"));
    emu.set_faults(Faults::default());
    let mut forced_args = sync_args("courses");
    forced_args.push("--force-snapshot");
    let forced = run_in(&emu, out.path(), &forced_args);
    for r in [&recovered, &forced] {
        r.assert_code(5);
        let error = &r.json()["tables"][0]["error"];
        assert_eq!(error["category"], "stale_snapshot", "{error}");
        r.assert_stderr_has(&["older than the stored position"]);
        assert!(!r.stderr.contains("is synced"), "{}", r.stderr);
        assert_eq!(std::fs::read(out.path().join(STATE)).unwrap(), saved);
    }

    // Once the old job has expired, a forced snapshot is a new one, and accepted.
    emu.advance_clock(Duration::from_secs(25 * 3600));
    let later = run_in(&emu, out.path(), &forced_args);
    later.assert_code(0);
    let t = &later.json()["tables"][0];
    assert!(ms(&t["at"]) > ms(&position), "{t}");
    assert_exact(&emu, t);
}

#[test]
fn sync_state_names_files_relative_to_the_output_directory() {
    let emu = emulator();
    let out = tempfile::tempdir().unwrap();
    run_in(&emu, out.path(), sync_args("accounts")).assert_code(0);
    let accounts = &sync_state(out.path())["namespaces"]["canvas"]["accounts"];
    assert_eq!(accounts["schema_file"], "accounts_schema_version_2.json");
    let file = accounts["history"][0]["files"][0].as_str().unwrap();
    assert!(file.starts_with("job_"), "{file}");
    assert!(out.path().join(file).is_file());
}

#[test]
fn a_table_is_reported_synced_only_once_its_state_is_saved() {
    let emu = emulator();
    let out = tempfile::tempdir().unwrap();
    // Something that is not a lock file stands where the state lock goes.
    std::fs::create_dir(out.path().join(".dap-lock.sync-state")).unwrap();
    let r = run_in(&emu, out.path(), sync_args("accounts"));
    r.assert_code(5);
    assert!(!r.stderr.contains("is synced"), "{}", r.stderr);
    r.assert_stderr_has(&[".dap-lock.sync-state"]);
    assert!(!out.path().join(STATE).exists());
}
