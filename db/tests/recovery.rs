//! Atomicity and recovery on a real PostgreSQL server: runs killed half-way, reloads
//! upstream (SnapshotRequired), stale snapshots, schema changes under views, and two
//! runs on one table at once.

mod common;

use std::time::Duration;

use common::recovery::{self, Ctx, big};
use common::{TestDb, pg_position, pg_rows, table_exists, with_value_property};
use dap_db::plan::Command;
use dap_db::replicate::Action;
use dap_db::source::Source;
use dap_emulator::{EmulatorConfig, Faults};

/// A context on a PostgreSQL database of the test's own and the default emulator.
async fn ctx(tag: &str) -> Ctx<TestDb> {
    Ctx::new(tag, EmulatorConfig::default()).await
}

/// The first column of the one row `sql` returns.
async fn one<T>(client: &tokio_postgres::Client, sql: &str) -> T
where
    T: for<'a> tokio_postgres::types::FromSql<'a>,
{
    client.query_one(sql, &[]).await.unwrap().get(0)
}

/// A context with `canvas.users` initialised and the views `sql` creates on it; a
/// client on the test database.
async fn users_under_views(tag: &str, sql: &str) -> (Ctx<TestDb>, tokio_postgres::Client) {
    let c = ctx(tag).await;
    c.run(Command::Init, "users").await.unwrap();
    let client = c.db.client().await;
    client.batch_execute(sql).await.unwrap();
    (c, client)
}

/// DAP's schema of `canvas.users`, parsed, and its version.
async fn users_schema(c: &Ctx<TestDb>) -> (serde_json::Value, u64) {
    let base = c.src.inner.schema("canvas", "users").await.unwrap();
    (serde_json::from_str(base.raw()).unwrap(), base.version)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_initdb_leaves_nothing_and_the_rerun_is_complete() {
    let c = Ctx::<TestDb>::new("kill_init", big()).await;
    c.kill_midway(Command::Init, "users").await;
    assert!(
        !table_exists(&c.db, "users").await,
        "no table after a killed initdb"
    );
    c.rerun_initialises("users").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_syncdb_changes_nothing_and_the_rerun_applies_the_window_once() {
    recovery::killed_syncdb_changes_nothing::<TestDb>("kill_sync").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_required_reinitialises_atomically_and_keeps_views() {
    let (c, client) = users_under_views(
        "snapreq",
        "CREATE VIEW public.active_users AS SELECT id, name FROM canvas.users WHERE workflow_state <> 'deleted';
         CREATE VIEW public.active_count AS SELECT count(*) AS n FROM public.active_users;
         COMMENT ON VIEW public.active_users IS 'Users that are not deleted.'",
    )
    .await;
    c.emu.set_faults(Faults {
        snapshot_required_tables: vec!["users".to_owned()],
        ..Faults::default()
    });
    // Within a day DAP hands back the snapshot job it already ran: that one is refused.
    c.emu.advance_clock(Duration::from_secs(7200));
    let e = c.run(Command::Sync, "users").await.unwrap_err();
    assert!(e.contains("not newer than the table's position"), "{e}");
    c.emu.advance_clock(Duration::from_secs(86_400));
    let r = c.run(Command::Sync, "users").await.unwrap();
    assert!(
        matches!(&r.action, Action::Reinitialized(reason) if reason.contains("SnapshotRequired")),
        "{r:?}"
    );
    assert_eq!(r.stats.views, 2);
    c.assert_current(&c.model("users").await).await;
    let n: i64 = one(&client, "SELECT n FROM public.active_count").await;
    assert!(n > 0);
    let comment: Option<String> = one(
        &client,
        "SELECT obj_description('public.active_users'::regclass, 'pg_class')",
    )
    .await;
    assert_eq!(comment.as_deref(), Some("Users that are not deleted."));
    assert!(!table_exists(&c.db, "users__dap_new").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_older_than_the_position_is_refused() {
    let c = ctx("stale").await;
    c.run(Command::Init, "users").await.unwrap();
    let m = c.model("users").await;
    let before = (pg_position(&c.db, "users").await, pg_rows(&c.db, &m).await);
    c.emu.set_faults(Faults {
        snapshot_required: true,
        ..Faults::default()
    });
    c.emu.advance_clock(Duration::from_secs(600));
    *c.src.snapshot_at.lock().unwrap() = Some("2020-01-01T00:00:00Z".parse().unwrap());
    let e = c.run(Command::Sync, "users").await.unwrap_err();
    assert!(e.contains("older than the stored position"), "{e}");
    let after = (pg_position(&c.db, "users").await, pg_rows(&c.db, &m).await);
    assert_eq!(after, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schema_bump_changes_the_table_in_place_under_a_view() {
    let (c, client) = users_under_views(
        "bump",
        "CREATE VIEW public.names AS SELECT id, name, workflow_state FROM canvas.users",
    )
    .await;
    let (mut v, version) = users_schema(&c).await;
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
    *c.src.schema.lock().unwrap() = Some((bumped, version + 1));
    c.emu.advance_clock(Duration::from_secs(3600));
    let r = c.run(Command::Sync, "users").await.unwrap();
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
    let ty: String = one(
        &client,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = 'canvas.users'::regclass AND attname = 'name'",
    )
    .await;
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
    let n: i64 = one(&client, "SELECT count(*) FROM public.names").await;
    assert!(n > 0);
    let stored: i64 = one(
        &client,
        "SELECT schema_version FROM instructure_dap.table_sync WHERE source_table = 'users'",
    )
    .await;
    assert_eq!(u64::try_from(stored).unwrap(), version + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_that_cannot_survive_is_named_and_nothing_changes() {
    let (c, client) = users_under_views(
        "badview",
        "CREATE VIEW public.english AS SELECT id FROM canvas.users WHERE locale = 'en'",
    )
    .await;
    // `locale` stops being an enumeration: the view compares it with an enum value.
    let (mut v, version) = users_schema(&c).await;
    v["properties"]["value"]["properties"]["locale"] =
        serde_json::json!({"type": "string", "maxLength": 10});
    *c.src.schema.lock().unwrap() = Some((v.to_string(), version + 1));
    let m = c.model("users").await;
    let before = (pg_position(&c.db, "users").await, pg_rows(&c.db, &m).await);
    c.emu.advance_clock(Duration::from_secs(3600));
    let e = c.run(Command::Sync, "users").await.unwrap_err();
    assert!(e.contains("\"public\".\"english\""), "{e}");
    let after = (pg_position(&c.db, "users").await, pg_rows(&c.db, &m).await);
    assert_eq!(after, before);
    let n: i64 = one(&client, "SELECT count(*) FROM public.english").await;
    assert!(n > 0, "the view is still there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_on_one_table_take_turns() {
    recovery::two_runs_take_turns::<TestDb>("concurrent").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_emulators_schema_bump_lands_in_place_under_a_view() {
    let (c, client) = users_under_views(
        "emubump",
        "CREATE VIEW public.states AS SELECT workflow_state, count(*) AS n FROM canvas.users GROUP BY 1",
    )
    .await;
    c.bump_and_sync("users").await;
    let n: i64 = one(&client, "SELECT count(*) FROM public.states").await;
    assert!(n > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_upstream_replaces_the_table() {
    let c = ctx("reload").await;
    c.run(Command::Init, "courses").await.unwrap();
    let m = c.reload_upstream("courses").await;
    // The chain goes on from the new snapshot.
    c.chain_goes_on(&m).await;
}
