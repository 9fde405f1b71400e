//! initdb, syncdb, re-initialisation, schema changes and dropdb into a SQLite file.

mod common;

use common::run1;

use std::time::Duration;

use common::{Tweaked, emulator, expected_rows, model, normalise, source};
use dap_db::model::TableModel;
use dap_db::plan::Command;
use dap_db::replicate::{self, Action, Options, TableOutcome};
use dap_db::source::Source;
use dap_db::sqlite::SqliteStore;
use dap_db::store::Store;
use dap_emulator::Faults;
use rusqlite::types::ValueRef;

fn rows(path: &std::path::Path, m: &TableModel) -> Vec<Vec<Option<String>>> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let cols: Vec<String> = m
        .columns
        .iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {} FROM \"canvas__{}\" ORDER BY \"{}\"",
            cols.join(", "),
            m.table,
            m.primary_key
        ))
        .unwrap();
    let mut out = Vec::new();
    let mut q = stmt.query([]).unwrap();
    while let Some(r) = q.next().unwrap() {
        let row = m
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let text = match r.get_ref(i).unwrap() {
                    ValueRef::Null => None,
                    ValueRef::Integer(n) => Some(n.to_string()),
                    ValueRef::Real(f) => Some(f.to_string()),
                    ValueRef::Text(t) => Some(String::from_utf8(t.to_vec()).unwrap()),
                    ValueRef::Blob(_) => panic!("blob"),
                };
                normalise(&c.ty, text.as_deref())
            })
            .collect();
        out.push(row);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_follows_dap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dap.db");
    let store = SqliteStore::at(&path);
    store.prepare("canvas").await.unwrap();
    let emu = emulator();
    let src = Tweaked::new(source(&emu));
    let names: Vec<String> = ["accounts", "courses", "users", "submissions"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    for o in replicate::run(
        &store,
        &src,
        Command::Init,
        "canvas",
        &names,
        Options::default(),
    )
    .await
    {
        assert!(matches!(o, TableOutcome::Done(_)), "{o:?}");
    }
    for t in &names {
        let m = model(&src.inner, t).await;
        assert_eq!(
            rows(&path, &m),
            expected_rows(&emu, &m, emu.now_ms()),
            "{t} after initdb"
        );
    }
    emu.advance_clock(Duration::from_secs(3600));
    for o in replicate::run(
        &store,
        &src,
        Command::Sync,
        "canvas",
        &names,
        Options::default(),
    )
    .await
    {
        assert!(
            matches!(o, TableOutcome::Done(ref r) if r.action == Action::Synced),
            "{o:?}"
        );
    }
    for t in &names {
        let m = model(&src.inner, t).await;
        assert_eq!(
            rows(&path, &m),
            expected_rows(&emu, &m, emu.now_ms()),
            "{t} after syncdb"
        );
    }
    let positions = store.positions("canvas").await.unwrap();
    assert_eq!(positions.len(), 4);
    assert_eq!(store.count("canvas", "users").await.unwrap() as usize, {
        let m = model(&src.inner, "users").await;
        expected_rows(&emu, &m, emu.now_ms()).len()
    });

    // A reload upstream: the table is rebuilt beside the old one and swapped in.
    emu.set_faults(Faults {
        snapshot_required_tables: vec!["users".to_owned()],
        ..Faults::default()
    });
    emu.advance_clock(Duration::from_secs(86_400 + 60));
    let r = run1(&store, &src, Command::Sync, "users").await.unwrap();
    assert!(matches!(r.action, Action::Reinitialized(_)), "{r:?}");
    let m = model(&src.inner, "users").await;
    assert_eq!(rows(&path, &m), expected_rows(&emu, &m, emu.now_ms()));
    emu.set_faults(Faults::default());

    // A type change SQLite cannot make in place re-initialises the table.
    let base = src.inner.schema("canvas", "users").await.unwrap();
    let mut v: serde_json::Value = serde_json::from_str(base.raw()).unwrap();
    v["properties"]["value"]["properties"]["name"]["maxLength"] = 1000.into();
    *src.schema.lock().unwrap() = Some((v.to_string(), base.version + 1));
    emu.advance_clock(Duration::from_secs(86_400 + 60));
    let r = run1(&store, &src, Command::Sync, "users").await.unwrap();
    assert!(
        matches!(&r.action, Action::Reinitialized(why) if why.contains("in place")),
        "{r:?}"
    );

    // dropdb removes the table and its row; a second one is refused.
    let dropped = replicate::drop_tables(&store, "canvas", &["users".to_owned()]).await;
    assert!(matches!(&dropped[0], TableOutcome::Done(r) if r.action == Action::Dropped));
    let again = replicate::drop_tables(&store, "canvas", &["users".to_owned()]).await;
    assert!(
        matches!(&again[0], TableOutcome::Failed(_, e) if e.to_string().contains("not initialized"))
    );
    assert_eq!(store.positions("canvas").await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_sqlite_sync_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dap.db");
    let store = SqliteStore::at(&path);
    store.prepare("canvas").await.unwrap();
    let emu = emulator();
    let src = Tweaked::new(source(&emu));
    run1(&store, &src, Command::Init, "courses").await.unwrap();
    let m = model(&src.inner, "courses").await;
    let before = (rows(&path, &m), store.positions("canvas").await.unwrap());
    emu.advance_clock(Duration::from_secs(3600));
    emu.add_fault(dap_emulator::FaultRule::new(
        dap_emulator::Endpoint::Storage,
        20,
        dap_emulator::FaultAction::CorruptGzip,
    ));
    let e = run1(&store, &src, Command::Sync, "courses")
        .await
        .unwrap_err();
    assert!(
        e.to_lowercase().contains("download") || e.contains("gzip") || e.contains("crc"),
        "{e}"
    );
    assert_eq!(
        (rows(&path, &m), store.positions("canvas").await.unwrap()),
        before
    );
}
