//! Atomicity and recovery on a real PostgreSQL server: runs killed half-way, reloads
//! upstream (SnapshotRequired), stale snapshots, schema changes under views, and two
//! runs on one table at once.

mod common;

use common::run1;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{
    TestDb, Tweaked, emulator_with, expected_rows, model, pg_position, pg_rows, source,
    table_exists, with_value_property,
};
use dap_db::pg::PgStore;
use dap_db::plan::Command;
use dap_db::replicate::Action;
use dap_db::source::Source;
use dap_db::store::Store;
use dap_emulator::{EmulatorConfig, Faults};

fn big() -> EmulatorConfig {
    EmulatorConfig {
        rows_per_table: Some(20_000),
        ..EmulatorConfig::default()
    }
}

async fn setup(
    tag: &str,
    cfg: EmulatorConfig,
) -> (TestDb, dap_emulator::Emulator, Tweaked, PgStore) {
    let db = TestDb::new(tag).await;
    let emu = emulator_with(cfg);
    let src = Tweaked::new(source(&emu));
    let store = db.store();
    store.prepare("canvas").await.unwrap();
    (db, emu, src, store)
}

/// Starts `cmd` with objects that stall after their first chunk, waits until data is
/// flowing, then kills the run (its connection closes mid-transaction).
async fn kill_midway(store: &PgStore, src: &Tweaked, cmd: Command, table: &str) {
    src.stalling.store(true, Ordering::Relaxed);
    {
        let run = run1(store, src, cmd, table);
        tokio::pin!(run);
        tokio::select! {
            r = &mut run => panic!("the run ended before it could be killed: {r:?}"),
            () = src.first_chunk.notified() => {}
            () = tokio::time::sleep(Duration::from_secs(30)) => panic!("the load never started streaming"),
        }
        // Dropping the run closes its connection mid-transaction, as a kill would.
    }
    src.stalling.store(false, Ordering::Relaxed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_initdb_leaves_nothing_and_the_rerun_is_complete() {
    let (db, emu, src, store) = setup("kill_init", big()).await;
    kill_midway(&store, &src, Command::Init, "users").await;
    assert!(
        !table_exists(&db, "users").await,
        "no table after a killed initdb"
    );
    assert_eq!(pg_position(&db, "users").await, None);
    let r = run1(&store, &src, Command::Init, "users").await.unwrap();
    assert_eq!(r.action, Action::Initialized);
    let m = model(&src.inner, "users").await;
    assert_eq!(
        pg_rows(&db, &m).await,
        expected_rows(&emu, &m, emu.now_ms())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_syncdb_changes_nothing_and_the_rerun_applies_the_window_once() {
    let (db, emu, src, store) = setup("kill_sync", big()).await;
    let at = emu.now_ms();
    run1(&store, &src, Command::Init, "users").await.unwrap();
    let m = model(&src.inner, "users").await;
    let before = pg_position(&db, "users").await;
    // A day of changes: every row changes at least once.
    emu.advance_clock(Duration::from_secs(86_400 * 30));
    kill_midway(&store, &src, Command::Sync, "users").await;
    assert_eq!(
        pg_position(&db, "users").await,
        before,
        "position unchanged"
    );
    assert_eq!(
        pg_rows(&db, &m).await,
        expected_rows(&emu, &m, at),
        "rows unchanged"
    );
    let r = run1(&store, &src, Command::Sync, "users").await.unwrap();
    assert_eq!(r.action, Action::Synced);
    assert!(r.stats.deleted > 0 && r.stats.upserted > 0);
    assert_eq!(
        pg_rows(&db, &m).await,
        expected_rows(&emu, &m, emu.now_ms())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_required_reinitialises_atomically_and_keeps_views() {
    let (db, emu, src, store) = setup("snapreq", EmulatorConfig::default()).await;
    run1(&store, &src, Command::Init, "users").await.unwrap();
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE VIEW public.active_users AS SELECT id, name FROM canvas.users WHERE workflow_state <> 'deleted';
             CREATE VIEW public.active_count AS SELECT count(*) AS n FROM public.active_users;
             COMMENT ON VIEW public.active_users IS 'Users that are not deleted.'",
        )
        .await
        .unwrap();
    emu.set_faults(Faults {
        snapshot_required_tables: vec!["users".to_owned()],
        ..Faults::default()
    });
    // Within a day DAP hands back the snapshot job it already ran: that one is refused.
    emu.advance_clock(Duration::from_secs(7200));
    let e = run1(&store, &src, Command::Sync, "users")
        .await
        .unwrap_err();
    assert!(e.contains("not newer than the table's position"), "{e}");
    emu.advance_clock(Duration::from_secs(86_400));
    let r = run1(&store, &src, Command::Sync, "users").await.unwrap();
    assert!(
        matches!(&r.action, Action::Reinitialized(reason) if reason.contains("SnapshotRequired")),
        "{r:?}"
    );
    assert_eq!(r.stats.views, 2);
    let m = model(&src.inner, "users").await;
    assert_eq!(
        pg_rows(&db, &m).await,
        expected_rows(&emu, &m, emu.now_ms())
    );
    let n: i64 = client
        .query_one("SELECT n FROM public.active_count", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n > 0);
    let comment: Option<String> = client
        .query_one(
            "SELECT obj_description('public.active_users'::regclass, 'pg_class')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(comment.as_deref(), Some("Users that are not deleted."));
    assert!(!table_exists(&db, "users__dap_new").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_older_than_the_position_is_refused() {
    let (db, emu, src, store) = setup("stale", EmulatorConfig::default()).await;
    run1(&store, &src, Command::Init, "users").await.unwrap();
    let m = model(&src.inner, "users").await;
    let before = (pg_position(&db, "users").await, pg_rows(&db, &m).await);
    emu.set_faults(Faults {
        snapshot_required: true,
        ..Faults::default()
    });
    emu.advance_clock(Duration::from_secs(600));
    *src.snapshot_at.lock().unwrap() = Some("2020-01-01T00:00:00Z".parse().unwrap());
    let e = run1(&store, &src, Command::Sync, "users")
        .await
        .unwrap_err();
    assert!(e.contains("older than the stored position"), "{e}");
    assert_eq!(
        (pg_position(&db, "users").await, pg_rows(&db, &m).await),
        before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_bump_changes_the_table_in_place_under_a_view() {
    let (db, emu, src, store) = setup("bump", EmulatorConfig::default()).await;
    run1(&store, &src, Command::Init, "users").await.unwrap();
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE VIEW public.names AS SELECT id, name, workflow_state FROM canvas.users",
        )
        .await
        .unwrap();
    let base = src.inner.schema("canvas", "users").await.unwrap();
    let mut v: serde_json::Value = serde_json::from_str(base.raw()).unwrap();
    v["properties"]["value"]["properties"]["name"]["maxLength"] = 500.into();
    v["properties"]["value"]["properties"]["workflow_state"]["enum"]
        .as_array_mut()
        .unwrap()
        .push("archived".into());
    let bumped = with_value_property(
        &v.to_string(),
        "nickname",
        serde_json::json!({"type": "string", "maxLength": 64, "title": "A nickname."}),
    );
    *src.schema.lock().unwrap() = Some((bumped, base.version + 1));
    emu.advance_clock(Duration::from_secs(3600));
    let r = run1(&store, &src, Command::Sync, "users").await.unwrap();
    assert_eq!(r.action, Action::Synced);
    assert!(r.migrated);
    assert_eq!(r.stats.views, 1);
    let row = client
        .query_one(
            "SELECT format_type(a.atttypid, a.atttypmod), col_description(a.attrelid, a.attnum)
             FROM pg_attribute a WHERE a.attrelid = 'canvas.users'::regclass AND a.attname = 'nickname'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "character varying(64)");
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some("A nickname.")
    );
    let ty: String = client
        .query_one(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'canvas.users'::regclass AND attname = 'name'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(ty, "character varying(500)");
    let labels: Vec<String> = client
        .query(
            "SELECT unnest(enum_range(NULL::canvas.users__workflow_state))::text",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(labels.last().map(String::as_str), Some("archived"));
    let n: i64 = client
        .query_one("SELECT count(*) FROM public.names", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n > 0);
    let version: i64 = client
        .query_one(
            "SELECT schema_version FROM instructure_dap.table_sync WHERE source_table = 'users'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(u64::try_from(version).unwrap(), base.version + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_that_cannot_survive_is_named_and_nothing_changes() {
    let (db, emu, src, store) = setup("badview", EmulatorConfig::default()).await;
    run1(&store, &src, Command::Init, "users").await.unwrap();
    let client = db.client().await;
    client
        .batch_execute(
            "CREATE VIEW public.english AS SELECT id FROM canvas.users WHERE locale = 'en'",
        )
        .await
        .unwrap();
    // `locale` stops being an enumeration: the view compares it with an enum value.
    let base = src.inner.schema("canvas", "users").await.unwrap();
    let mut v: serde_json::Value = serde_json::from_str(base.raw()).unwrap();
    v["properties"]["value"]["properties"]["locale"] =
        serde_json::json!({"type": "string", "maxLength": 10});
    *src.schema.lock().unwrap() = Some((v.to_string(), base.version + 1));
    let m = model(&src.inner, "users").await;
    let before = (pg_position(&db, "users").await, pg_rows(&db, &m).await);
    emu.advance_clock(Duration::from_secs(3600));
    let e = run1(&store, &src, Command::Sync, "users")
        .await
        .unwrap_err();
    assert!(e.contains("\"public\".\"english\""), "{e}");
    assert_eq!(
        (pg_position(&db, "users").await, pg_rows(&db, &m).await),
        before
    );
    let n: i64 = client
        .query_one("SELECT count(*) FROM public.english", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n > 0, "the view is still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_on_one_table_take_turns() {
    let (db, emu, src, store) = setup("concurrent", EmulatorConfig::default()).await;
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
    let m = model(&src.inner, "users").await;
    assert_eq!(
        pg_rows(&db, &m).await,
        expected_rows(&emu, &m, emu.now_ms())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulators_schema_bump_lands_in_place_under_a_view() {
    let (db, emu, src, store) = setup("emubump", EmulatorConfig::default()).await;
    run1(&store, &src, Command::Init, "users").await.unwrap();
    let client = db.client().await;
    client
        .batch_execute("CREATE VIEW public.states AS SELECT workflow_state, count(*) AS n FROM canvas.users GROUP BY 1")
        .await
        .unwrap();
    let before = model(&src.inner, "users").await;
    emu.bump_schema("canvas", "users").unwrap();
    emu.advance_clock(Duration::from_secs(3600));
    let r = run1(&store, &src, Command::Sync, "users").await.unwrap();
    assert_eq!(r.action, Action::Synced);
    assert!(r.migrated, "{r:?}");
    let after = model(&src.inner, "users").await;
    assert!(after.columns.len() > before.columns.len());
    assert_eq!(
        pg_rows(&db, &after).await,
        expected_rows(&emu, &after, emu.now_ms())
    );
    let n: i64 = client
        .query_one("SELECT count(*) FROM public.states", &[])
        .await
        .unwrap()
        .get(0);
    assert!(n > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_upstream_replaces_the_table() {
    let (db, emu, src, store) = setup("reload", EmulatorConfig::default()).await;
    run1(&store, &src, Command::Init, "courses").await.unwrap();
    emu.advance_clock(Duration::from_secs(600));
    emu.require_snapshot("canvas", "courses").unwrap();
    emu.advance_clock(Duration::from_secs(600));
    let r = run1(&store, &src, Command::Sync, "courses").await.unwrap();
    assert!(
        matches!(&r.action, Action::Reinitialized(why) if why.contains("SnapshotRequired")),
        "{r:?}"
    );
    let m = model(&src.inner, "courses").await;
    assert_eq!(
        pg_rows(&db, &m).await,
        expected_rows(&emu, &m, emu.now_ms())
    );
    // The chain goes on from the new snapshot.
    emu.advance_clock(Duration::from_secs(600));
    let r = run1(&store, &src, Command::Sync, "courses").await.unwrap();
    assert_eq!(r.action, Action::Synced);
    assert_eq!(
        pg_rows(&db, &m).await,
        expected_rows(&emu, &m, emu.now_ms())
    );
}
