//! Two-way interoperability with the official Python client (instructure-dap-client
//! 2.3.1) on a real PostgreSQL server: a database initialised by either client is
//! synced by the other, and both end with the same layout (`pg_dump --schema-only`),
//! rows and `table_sync` rows.
//!
//! The official client is installed on first use into `target/official-venv` (shared
//! with `scripts/official-common.sh`; `DAP_CHECK_VENV` overrides the place); its `dap`
//! runs against the in-process emulator, whose clock only moves when the test moves it.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{TestDb, emulator, official_dap, source};
use dap_db::plan::Command as DbCommand;
use dap_db::replicate::{self, Options, TableOutcome};
use dap_db::store::Store;
use dap_emulator::Emulator;

/// Tables without `additionalProperties: true` columns (the official client fails on
/// those).
const TABLES: &[&str] = &["accounts", "courses", "users", "submissions"];

fn run_official(dap: &PathBuf, emu: &Emulator, db: &TestDb, command: &str) {
    let out = Command::new(dap)
        .args([
            "--non-interactive",
            "--loglevel",
            "warning",
            command,
            "--namespace",
            "canvas",
        ])
        .args(["--table", &TABLES.join(",")])
        .args(["--connection-string", &db.url])
        .env("DAP_API_URL", emu.base_url())
        .env("DAP_CLIENT_ID", emu.client_id())
        .env("DAP_CLIENT_SECRET", emu.client_secret())
        .env("DAP_TRACKING", "false")
        .output()
        .expect("run the official dap");
    assert!(
        out.status.success(),
        "official `dap {command}` failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn run_ours(emu: &Emulator, db: &TestDb, command: DbCommand) {
    let store = db.store();
    store.prepare("canvas").await.expect("prepare");
    let tables: Vec<String> = TABLES.iter().map(|s| (*s).to_owned()).collect();
    for o in replicate::run(
        &store,
        &source(emu),
        command,
        "canvas",
        &tables,
        Options::default(),
    )
    .await
    {
        if let TableOutcome::Failed(t, e) = o {
            panic!("our {command:?} of {t} failed: {e}");
        }
    }
}

fn schema_dump(db: &TestDb) -> String {
    let out = Command::new("pg_dump")
        .args(["--schema-only", "--no-owner", "--dbname", &db.url])
        .output()
        .expect("pg_dump runs (install postgresql-client)");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| {
            !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict") && !l.starts_with("--")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every table's rows and the meta rows (without their ids), as text.
async fn contents(db: &TestDb) -> String {
    let client = db.client().await;
    let mut out = String::new();
    let meta = client
        .query(
            "SELECT concat_ws('|', source_namespace, source_table, \"timestamp\", schema_version, \
             target_schema, target_table, schema_description_format, schema_description) \
             FROM instructure_dap.table_sync ORDER BY source_table",
            &[],
        )
        .await
        .expect("table_sync");
    for r in meta {
        out.push_str(&r.get::<_, String>(0));
        out.push('\n');
    }
    let version: i64 = client
        .query_one("SELECT version FROM instructure_dap.database_version", &[])
        .await
        .expect("database_version")
        .get(0);
    out.push_str(&format!("database_version {version}\n"));
    for t in TABLES {
        let rows = client
            .query(
                &format!("SELECT t::text FROM canvas.{t} AS t ORDER BY id"),
                &[],
            )
            .await
            .expect("rows");
        out.push_str(&format!("{t}: {} rows\n", rows.len()));
        for r in rows {
            out.push_str(&r.get::<_, String>(0));
            out.push('\n');
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_syncs_what_the_other_initialised() {
    let dap = official_dap();
    let emu = emulator();
    let by_official = TestDb::new("interop_official").await;
    let by_us = TestDb::new("interop_ours").await;

    run_official(&dap, &emu, &by_official, "initdb");
    run_ours(&emu, &by_us, DbCommand::Init).await;
    assert_eq!(
        schema_dump(&by_us),
        schema_dump(&by_official),
        "layout after initdb"
    );
    assert_eq!(
        contents(&by_us).await,
        contents(&by_official).await,
        "contents after initdb"
    );

    emu.advance_clock(Duration::from_secs(2 * 3600));
    run_official(&dap, &emu, &by_us, "syncdb");
    run_ours(&emu, &by_official, DbCommand::Sync).await;
    assert_eq!(
        schema_dump(&by_us),
        schema_dump(&by_official),
        "layout after syncdb"
    );
    let (ours, theirs) = (contents(&by_us).await, contents(&by_official).await);
    assert_eq!(
        ours, theirs,
        "contents after each client synced the other's database"
    );
    assert!(ours.contains("users: "), "{ours}");

    // And once more the other way round, so each client has synced its own copy after
    // the other.
    emu.advance_clock(Duration::from_secs(3600));
    run_ours(&emu, &by_us, DbCommand::Sync).await;
    run_official(&dap, &emu, &by_official, "syncdb");
    assert_eq!(
        contents(&by_us).await,
        contents(&by_official).await,
        "contents after a second sync"
    );
}
