//! Atomicity and recovery on a real MySQL/MariaDB server: runs killed half-way, a
//! reload upstream (SnapshotRequired) under a view, the emulator's schema bump (a new
//! column and a new enumeration value) under a view, and two runs on one table at once.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::mysql::{MyDb, expected_rows};
use common::{Tweaked, emulator_with, run1, source};
use dap_db::model::TableModel;
use dap_db::mysql::MySqlStore;
use dap_db::plan::Command;
use dap_db::replicate::Action;
use dap_db::source::Source;
use dap_db::store::Store;
use dap_emulator::EmulatorConfig;
use mysql_async::prelude::Queryable;

fn big() -> EmulatorConfig {
    EmulatorConfig {
        rows_per_table: Some(20_000),
        ..EmulatorConfig::default()
    }
}

async fn setup(
    tag: &str,
    cfg: EmulatorConfig,
) -> (MyDb, dap_emulator::Emulator, Tweaked, MySqlStore) {
    let db = MyDb::new(tag).await;
    let emu = emulator_with(cfg);
    let src = Tweaked::new(source(&emu));
    let store = db.store();
    store.prepare("canvas").await.unwrap();
    (db, emu, src, store)
}

async fn model(src: &Tweaked, table: &str) -> TableModel {
    let schema = src.schema("canvas", table).await.expect("schema");
    TableModel::from_schema("canvas", table, schema.raw(), schema.version).unwrap()
}

/// Starts `cmd` with objects that stall after their first chunk, waits until data is
/// flowing into `LOAD DATA`, then kills the run (its connection closes mid-load).
async fn kill_midway(store: &MySqlStore, src: &Tweaked, cmd: Command, table: &str) {
    src.stalling.store(true, Ordering::Relaxed);
    {
        let run = run1(store, src, cmd, table);
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => panic!("the run ended before it could be killed: {r:?}"),
            () = src.first_chunk.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(30)) => panic!("the load never started streaming"),
        }
        // Dropping the run closes its connection mid-load, as a kill would.
    }
    src.stalling.store(false, Ordering::Relaxed);
}

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
    let (db, emu, src, store) = setup("my_kill_init", big()).await;
    kill_midway(&store, &src, Command::Init, "users").await;
    let tables = db.tables().await;
    assert!(!tables.contains(&"canvas__users".to_owned()), "{tables:?}");
    assert_eq!(db.position("users").await, None);
    let r = run1(&store, &src, Command::Init, "users").await.unwrap();
    assert_eq!(r.action, Action::Initialized);
    let m = model(&src, "users").await;
    assert_eq!(db.rows(&m).await, expected_rows(&emu, &m, emu.now_ms()));
    let tables = db.tables().await;
    assert!(
        !tables.iter().any(|t| t.contains("dap_new")),
        "the rerun removed the half-built copy: {tables:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_syncdb_changes_nothing_and_the_rerun_applies_the_window_once() {
    let (db, emu, src, store) = setup("my_kill_sync", big()).await;
    let at = emu.now_ms();
    run1(&store, &src, Command::Init, "users").await.unwrap();
    let m = model(&src, "users").await;
    let before = db.position("users").await;
    emu.advance_clock(Duration::from_secs(86_400 * 30));
    kill_midway(&store, &src, Command::Sync, "users").await;
    assert_eq!(db.position("users").await, before, "position unchanged");
    assert_eq!(
        db.rows(&m).await,
        expected_rows(&emu, &m, at),
        "rows unchanged"
    );
    let r = run1(&store, &src, Command::Sync, "users").await.unwrap();
    assert_eq!(r.action, Action::Synced);
    assert!(r.stats.deleted > 0 && r.stats.upserted > 0);
    assert_eq!(db.rows(&m).await, expected_rows(&emu, &m, emu.now_ms()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_upstream_replaces_the_table_atomically_under_a_view() {
    let (db, emu, src, store) = setup("my_reload", EmulatorConfig::default()).await;
    run1(&store, &src, Command::Init, "courses").await.unwrap();
    exec(
        &db,
        "CREATE VIEW available_courses AS SELECT id, name FROM canvas__courses WHERE workflow_state = 'available'",
    )
    .await;
    emu.advance_clock(Duration::from_secs(600));
    emu.require_snapshot("canvas", "courses").unwrap();
    emu.advance_clock(Duration::from_secs(600));
    let r = run1(&store, &src, Command::Sync, "courses").await.unwrap();
    assert!(
        matches!(&r.action, Action::Reinitialized(why) if why.contains("SnapshotRequired")),
        "{r:?}"
    );
    let m = model(&src, "courses").await;
    assert_eq!(db.rows(&m).await, expected_rows(&emu, &m, emu.now_ms()));
    let n: i64 = one(&db, "SELECT COUNT(*) FROM available_courses").await;
    let want: i64 = one(
        &db,
        "SELECT COUNT(*) FROM canvas__courses WHERE workflow_state = 'available'",
    )
    .await;
    assert_eq!(n, want, "the view reads the new table");
    let tables = db.tables().await;
    assert!(!tables.iter().any(|t| t.contains("__dap_")), "{tables:?}");
    // The chain goes on from the new snapshot.
    emu.advance_clock(Duration::from_secs(600));
    let r = run1(&store, &src, Command::Sync, "courses").await.unwrap();
    assert_eq!(r.action, Action::Synced);
    assert_eq!(db.rows(&m).await, expected_rows(&emu, &m, emu.now_ms()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulators_schema_bump_lands_in_place_under_a_view() {
    let (db, emu, src, store) = setup("my_bump", EmulatorConfig::default()).await;
    run1(&store, &src, Command::Init, "users").await.unwrap();
    exec(
        &db,
        "CREATE VIEW user_states AS SELECT workflow_state, COUNT(*) AS n FROM canvas__users GROUP BY 1",
    )
    .await;
    let before = model(&src, "users").await;
    emu.bump_schema("canvas", "users").unwrap();
    emu.advance_clock(Duration::from_secs(3600));
    let r = run1(&store, &src, Command::Sync, "users").await.unwrap();
    assert_eq!(r.action, Action::Synced);
    assert!(r.migrated, "{r:?}");
    let after = model(&src, "users").await;
    assert!(after.columns.len() > before.columns.len());
    assert_eq!(
        db.rows(&after).await,
        expected_rows(&emu, &after, emu.now_ms())
    );
    let version: i64 = one(
        &db,
        "SELECT schema_version FROM instructure_dap__table_sync WHERE source_table = 'users'",
    )
    .await;
    assert_eq!(u64::try_from(version).unwrap(), after.schema_version);
    let n: i64 = one(&db, "SELECT SUM(n) FROM user_states").await;
    assert!(n > 0, "the view still reads the table");
    // A second sync finds nothing more to change.
    emu.advance_clock(Duration::from_secs(600));
    let r = run1(&store, &src, Command::Sync, "users").await.unwrap();
    assert!(!r.migrated, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_on_one_table_take_turns() {
    let (db, emu, src, store) = setup("my_concurrent", EmulatorConfig::default()).await;
    let (a, b) = tokio::join!(
        run1(&store, &src, Command::Init, "users"),
        run1(&store, &src, Command::Init, "users")
    );
    let (ok, refused): (Vec<_>, Vec<_>) = [a, b].into_iter().partition(Result::is_ok);
    assert_eq!(ok.len(), 1, "one initdb wins");
    assert!(
        refused[0]
            .as_ref()
            .unwrap_err()
            .contains("already initialized")
    );
    emu.advance_clock(Duration::from_secs(3600));
    let (a, b) = tokio::join!(
        run1(&store, &src, Command::Sync, "users"),
        run1(&store, &src, Command::Sync, "users")
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    // One applied the window; the other, after waiting for the lock, started from there.
    assert_eq!(a.position, b.position);
    assert!(a.stats.lines == 0 || b.stats.lines == 0, "{a:?} {b:?}");
    let m = model(&src, "users").await;
    assert_eq!(db.rows(&m).await, expected_rows(&emu, &m, emu.now_ms()));
}
