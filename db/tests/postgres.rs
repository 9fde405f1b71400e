//! initdb and syncdb into a real PostgreSQL server, against the in-process emulator.

mod common;

use std::time::Duration;

use common::{TestDb, emulator, expected_rows, model, pg_position, pg_rows, source};
use dap_db::plan::Command;
use dap_db::replicate::{self, Action, Options, TableOutcome};
use dap_db::store::Store;

fn tables(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn done(outcomes: Vec<TableOutcome>) -> Vec<replicate::TableReport> {
    outcomes
        .into_iter()
        .map(|o| match o {
            TableOutcome::Done(r) => r,
            TableOutcome::Failed(t, e) => panic!("table {t} failed: {e}"),
            TableOutcome::Skipped(t) => panic!("table {t} skipped"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initdb_then_syncdb_match_the_emulator() {
    let db = TestDb::new("init_sync").await;
    let emu = emulator();
    let src = source(&emu);
    let store = db.store();
    store.prepare("canvas").await.unwrap();
    let names = tables(&["accounts", "courses", "users", "submissions"]);
    let at = emu.now_ms();
    let reports = done(
        replicate::run(
            &store,
            &src,
            Command::Init,
            "canvas",
            &names,
            Options::default(),
        )
        .await,
    );
    assert!(reports.iter().all(|r| r.action == Action::Initialized));
    for t in &names {
        let m = model(&src, t).await;
        assert_eq!(
            pg_rows(&db, &m).await,
            expected_rows(&emu, &m, at),
            "table {t} after initdb"
        );
    }
    // A second initdb is refused with the official message.
    common::assert_second_initdb_refused(&store, &src, &names[0]).await;

    emu.advance_clock(Duration::from_secs(3600));
    let until = emu.now_ms();
    let reports = done(
        replicate::run(
            &store,
            &src,
            Command::Sync,
            "canvas",
            &names,
            Options::default(),
        )
        .await,
    );
    assert!(reports.iter().all(|r| r.action == Action::Synced));
    assert!(
        reports.iter().any(|r| r.stats.deleted > 0),
        "the window holds deletes"
    );
    for t in &names {
        let m = model(&src, t).await;
        assert_eq!(
            pg_rows(&db, &m).await,
            expected_rows(&emu, &m, until),
            "table {t} after syncdb"
        );
    }
    assert!(pg_position(&db, "users").await.is_some());
}
