//! Atomicity and recovery on a real MySQL/MariaDB server: runs killed half-way, a
//! reload upstream (SnapshotRequired) under a view, the emulator's schema bump (a new
//! column and a new enumeration value) under a view, and two runs on one table at once.

mod common;

use std::time::Duration;

use common::mysql::MyDb;
use common::recovery::{self, Ctx, big};
use dap_db::plan::Command;
use dap_emulator::EmulatorConfig;
use mysql_async::prelude::Queryable;

async fn exec(db: &MyDb, sql: &str) {
    db.conn().await.query_drop(sql).await.unwrap();
}

async fn one<T: mysql_async::prelude::FromValue + Send + 'static>(db: &MyDb, sql: &str) -> T {
    db.conn()
        .await
        .query_first::<T, _>(sql)
        .await
        .unwrap()
        .expect("a row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_initdb_leaves_nothing_and_the_rerun_is_complete() {
    let c = Ctx::<MyDb>::new("my_kill_init", big()).await;
    c.kill_midway(Command::Init, "users").await;
    let tables = c.db.tables().await;
    assert!(!tables.contains(&"canvas__users".to_owned()), "{tables:?}");
    c.rerun_initialises("users").await;
    let tables = c.db.tables().await;
    assert!(
        !tables.iter().any(|t| t.contains("dap_new")),
        "the rerun removed the half-built copy: {tables:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_syncdb_changes_nothing_and_the_rerun_applies_the_window_once() {
    recovery::killed_syncdb_changes_nothing::<MyDb>("my_kill_sync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_upstream_replaces_the_table_atomically_under_a_view() {
    let c = Ctx::<MyDb>::new("my_reload", EmulatorConfig::default()).await;
    c.run(Command::Init, "courses").await.unwrap();
    exec(
        &c.db,
        "CREATE VIEW available_courses AS SELECT id, name FROM canvas__courses WHERE workflow_state = 'available'",
    )
    .await;
    let m = c.reload_upstream("courses").await;
    let n: i64 = one(&c.db, "SELECT COUNT(*) FROM available_courses").await;
    let want: i64 = one(
        &c.db,
        "SELECT COUNT(*) FROM canvas__courses WHERE workflow_state = 'available'",
    )
    .await;
    assert_eq!(n, want, "the view reads the new table");
    let tables = c.db.tables().await;
    assert!(!tables.iter().any(|t| t.contains("__dap_")), "{tables:?}");
    // The chain goes on from the new snapshot.
    c.chain_goes_on(&m).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulators_schema_bump_lands_in_place_under_a_view() {
    let c = Ctx::<MyDb>::new("my_bump", EmulatorConfig::default()).await;
    c.run(Command::Init, "users").await.unwrap();
    exec(
        &c.db,
        "CREATE VIEW user_states AS SELECT workflow_state, COUNT(*) AS n FROM canvas__users GROUP BY 1",
    )
    .await;
    let (_, after) = c.bump_and_sync("users").await;
    let version: i64 = one(
        &c.db,
        "SELECT schema_version FROM instructure_dap__table_sync WHERE source_table = 'users'",
    )
    .await;
    assert_eq!(u64::try_from(version).unwrap(), after.schema_version);
    let n: i64 = one(&c.db, "SELECT SUM(n) FROM user_states").await;
    assert!(n > 0, "the view still reads the table");
    // A second sync finds nothing more to change.
    c.emu.advance_clock(Duration::from_secs(600));
    let r = c.run(Command::Sync, "users").await.unwrap();
    assert!(!r.migrated, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_on_one_table_take_turns() {
    recovery::two_runs_take_turns::<MyDb>("my_concurrent").await;
}
