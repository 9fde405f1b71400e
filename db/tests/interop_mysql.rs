//! Two-way interoperability with the official Python client (instructure-dap-client
//! 2.3.1) on a real MySQL/MariaDB server: a database initialised by either client is
//! synced by the other, and both end with the same layout (`SHOW CREATE TABLE`), rows
//! and `instructure_dap__table_sync` rows.
//!
//! The official client is installed on first use into `target/official-venv` (see
//! `common::official_dap`); it runs against the in-process emulator, whose clock only
//! moves when the test moves it. The tables are `canvas` ones and the `new_quizzes`
//! ones that suit MySQL (`item_analyses` holds NaN, which both clients refuse).

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::mysql::MyDb;
use common::{emulator_with, official_dap, source};
use dap_db::plan::Command as DbCommand;
use dap_db::replicate::{self, Options, TableOutcome};
use dap_db::store::Store;
use dap_emulator::{Emulator, EmulatorConfig};
use mysql_async::prelude::Queryable;

const TABLES: &[(&str, &[&str])] = &[
    ("canvas", &["accounts", "courses", "users", "submissions"]),
    ("new_quizzes", &["items", "quiz_sessions"]),
];

fn run_official(dap: &Path, emu: &Emulator, db: &MyDb, command: &str) {
    for (ns, tables) in TABLES {
        let out = Command::new(dap)
            .args(["--non-interactive", "--loglevel", "warning", command])
            .args(["--namespace", ns, "--table", &tables.join(",")])
            .args(["--connection-string", &db.url])
            .env("DAP_API_URL", emu.base_url())
            .env("DAP_CLIENT_ID", emu.client_id())
            .env("DAP_CLIENT_SECRET", emu.client_secret())
            .env("DAP_TRACKING", "false")
            .output()
            .expect("run the official dap");
        assert!(
            out.status.success(),
            "official `dap {command}` of {ns} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

async fn run_ours(emu: &Emulator, db: &MyDb, command: DbCommand) {
    let store = db.store();
    for (ns, tables) in TABLES {
        store.prepare(ns).await.expect("prepare");
        let tables: Vec<String> = tables.iter().map(|s| (*s).to_owned()).collect();
        for o in replicate::run(
            &store,
            &source(emu),
            command,
            ns,
            &tables,
            Options::default(),
        )
        .await
        {
            if let TableOutcome::Failed(t, e) = o {
                panic!("our {command:?} of {ns}.{t} failed: {e}");
            }
        }
    }
}

/// `SHOW CREATE TABLE` of every table, without the AUTO_INCREMENT counter.
async fn layout(db: &MyDb) -> String {
    let mut conn = db.conn().await;
    let mut out = String::new();
    for t in db.tables().await {
        let row: Option<(String, String)> = conn
            .query_first(format!("SHOW CREATE TABLE `{t}`"))
            .await
            .expect("show create table");
        let (_, ddl) = row.expect("a table");
        let ddl: Vec<&str> = ddl
            .split(' ')
            .filter(|w| !w.starts_with("AUTO_INCREMENT="))
            .collect();
        out.push_str(&ddl.join(" "));
        out.push('\n');
    }
    out
}

/// The meta rows (without their ids) and every table's rows, as text.
async fn contents(db: &MyDb) -> String {
    let mut conn = db.conn().await;
    let mut out = String::new();
    let meta: Vec<String> = conn
        .query(
            "SELECT CONCAT_WS('|', source_namespace, source_table, `timestamp`, schema_version, \
             target_schema, target_table, schema_description_format, schema_description) \
             FROM instructure_dap__table_sync ORDER BY source_namespace, source_table",
        )
        .await
        .expect("table_sync");
    for m in meta {
        out.push_str(&m);
        out.push('\n');
    }
    let version: Vec<i64> = conn
        .query("SELECT version FROM instructure_dap__database_version")
        .await
        .expect("database_version");
    out.push_str(&format!("database_version {version:?}\n"));
    for (ns, tables) in TABLES {
        for t in *tables {
            let cols: Vec<String> = conn
                .exec(
                    "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() \
                     AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION",
                    (format!("{ns}__{t}"),),
                )
                .await
                .expect("columns");
            let cells: Vec<String> = cols
                .iter()
                .map(|c| format!("IFNULL(CAST(`{c}` AS CHAR), '<null>')"))
                .collect();
            let rows: Vec<String> = conn
                .query(format!(
                    "SELECT CONCAT_WS('|', {}) FROM `{ns}__{t}` ORDER BY id",
                    cells.join(", ")
                ))
                .await
                .expect("rows");
            out.push_str(&format!("{ns}.{t}: {} rows\n", rows.len()));
            for r in rows {
                out.push_str(&r);
                out.push('\n');
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_client_syncs_what_the_other_initialised_on_mysql() {
    let dap = official_dap();
    // Small enough that every object is one gzip member, which is all the official
    // client reads.
    let emu = emulator_with(EmulatorConfig {
        rows_per_table: Some(3_000),
        ..EmulatorConfig::default()
    });
    let by_official = MyDb::new("interop_my_official").await;
    let by_us = MyDb::new("interop_my_ours").await;

    run_official(&dap, &emu, &by_official, "initdb");
    run_ours(&emu, &by_us, DbCommand::Init).await;
    assert_eq!(
        layout(&by_us).await,
        layout(&by_official).await,
        "layout after initdb"
    );
    let (ours, theirs) = (contents(&by_us).await, contents(&by_official).await);
    assert_eq!(ours, theirs, "contents after initdb");
    assert!(ours.contains("new_quizzes.quiz_sessions: "), "{ours}");

    emu.advance_clock(Duration::from_secs(2 * 3600));
    run_official(&dap, &emu, &by_us, "syncdb");
    run_ours(&emu, &by_official, DbCommand::Sync).await;
    assert_eq!(
        layout(&by_us).await,
        layout(&by_official).await,
        "layout after syncdb"
    );
    assert_eq!(
        contents(&by_us).await,
        contents(&by_official).await,
        "contents after each client synced the other's database"
    );

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
