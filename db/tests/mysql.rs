//! initdb, syncdb, dropdb and the positions `listdb` shows, into a real MySQL/MariaDB
//! server (`DAP_TEST_MYSQL_URL`, else root@127.0.0.1:3306), against the in-process
//! emulator; every type and awkward text from hand-written TSV; NaN and infinity
//! refused.

mod common;

use std::time::Duration;

use common::mysql::{MyDb, expected_rows};
use common::{StaticSource, emulator_with, source};
use dap_db::model::TableModel;
use dap_db::plan::Command;
use dap_db::replicate::{self, Action, Options, TableOutcome, TableReport};
use dap_db::source::{HyperSource, Source};
use dap_db::store::Store;
use dap_emulator::EmulatorConfig;
use dap_proto::DataRange;
use mysql_async::prelude::Queryable;

async fn model_in(src: &HyperSource, namespace: &str, table: &str) -> TableModel {
    let schema = src.schema(namespace, table).await.expect("schema");
    TableModel::from_schema(namespace, table, schema.raw(), schema.version).unwrap()
}

async fn run<S: Store>(
    store: &S,
    src: &dyn Source,
    cmd: Command,
    namespace: &str,
    tables: &[&str],
) -> Vec<TableReport> {
    let names: Vec<String> = tables.iter().map(|s| (*s).to_owned()).collect();
    replicate::run(store, src, cmd, namespace, &names, Options::default())
        .await
        .into_iter()
        .map(|o| match o {
            TableOutcome::Done(r) => r,
            TableOutcome::Failed(t, e) => panic!("table {t} failed: {e}"),
            TableOutcome::Skipped(t) => panic!("table {t} skipped"),
        })
        .collect()
}

const CANVAS: &[&str] = &["accounts", "courses", "users", "submissions"];
const QUIZZES: &[&str] = &["items", "quiz_sessions"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initdb_syncdb_and_dropdb_match_the_emulator() {
    let db = MyDb::new("my_init_sync").await;
    let emu = emulator_with(EmulatorConfig {
        rows_per_table: Some(2_000),
        ..EmulatorConfig::default()
    });
    let src = source(&emu);
    let store = db.store();
    store.prepare("canvas").await.unwrap();
    let at = emu.now_ms();
    let all = [("canvas", CANVAS), ("new_quizzes", QUIZZES)];
    for (ns, tables) in all {
        let reports = run(&store, &src, Command::Init, ns, tables).await;
        assert!(reports.iter().all(|r| r.action == Action::Initialized));
        for t in tables {
            let m = model_in(&src, ns, t).await;
            assert_eq!(
                db.rows(&m).await,
                expected_rows(&emu, &m, at),
                "{ns}.{t} after initdb"
            );
        }
    }
    // A second initdb is refused with the official message.
    common::assert_second_initdb_refused(&store, &src, "users").await;

    emu.advance_clock(Duration::from_secs(3600));
    let until = emu.now_ms();
    for (ns, tables) in all {
        let reports = run(&store, &src, Command::Sync, ns, tables).await;
        assert!(reports.iter().all(|r| r.action == Action::Synced));
        assert!(
            reports.iter().any(|r| r.stats.deleted > 0),
            "{ns}: the window holds deletes"
        );
        for t in tables {
            let m = model_in(&src, ns, t).await;
            assert_eq!(
                db.rows(&m).await,
                expected_rows(&emu, &m, until),
                "{ns}.{t} after syncdb"
            );
        }
    }
    let positions = store.positions("canvas").await.unwrap();
    assert_eq!(positions.len(), CANVAS.len());
    assert!(
        positions
            .iter()
            .all(|p| p.target_schema.as_deref() == Some("canvas"))
    );
    assert!(store.count("canvas", "users").await.unwrap() > 0);

    let dropped = replicate::drop_tables(&store, "canvas", &["users".to_owned()]).await;
    assert!(matches!(&dropped[0], TableOutcome::Done(r) if r.action == Action::Dropped));
    assert!(!db.tables().await.contains(&"canvas__users".to_owned()));
    assert_eq!(db.position("users").await, None);
    assert_eq!(
        store.positions("canvas").await.unwrap().len(),
        CANVAS.len() - 1
    );
}

const SCHEMA: &str = r#"{"type":"object","title":"Things.","properties":{
  "key":{"type":"object","properties":{"id":{"type":"integer","format":"int64"}},"required":["id"]},
  "value":{"type":"object","properties":{
    "label":{"type":"string","maxLength":40,"title":"Label."},
    "body":{"type":"string"},
    "n32":{"type":"integer","format":"int32"},
    "score":{"type":"number","format":"float64"},
    "ok":{"type":"boolean"},
    "at":{"type":"string","format":"date-time"},
    "kind":{"type":"string","enum":["a","b c","it's"]},
    "tags":{"type":"array","items":{"type":"string"}},
    "meta_obj":{"type":"object","additionalProperties":true},
    "uid":{"type":"string","format":"uuid"}
  },"required":["label"]},
  "meta":{"type":"object","properties":{"ts":{"type":"string","format":"date-time"}}}}}"#;

const HEADER: &str = "meta.ts\tkey.id\tvalue.label\tvalue.body\tvalue.n32\tvalue.score\tvalue.ok\tvalue.at\tvalue.kind\tvalue.tags\tvalue.meta_obj\tvalue.uid\n";

/// Text with 4-byte characters, tabs, newlines, carriage returns and backslashes, in
/// DAP's escaped form, and as it must read back.
const AWKWARD: &str = "tab\\there\\nnew line \\\\ back\\\\n \\r🎓𝄞 Ünï";
const AWKWARD_TEXT: &str = "tab\there\nnew line \\ back\\n \r🎓𝄞 Ünï";

fn snapshot() -> String {
    let mut s = HEADER.to_owned();
    s.push_str(&format!("T\t1\tplain\t{AWKWARD}\t7\t1.5\ttrue\t2024-01-02T03:04:05.123Z\ta\t[\"x\",\"y \\\\\\\"q\\\\\\\"\",null]\t{{\"any\":{{\"deep\":[1,true]}}}}\t0a0d095c-0000-4000-8000-00000000ffff\n"));
    s.push_str("T\t2\tÜnïcødé 🎓\tform\\ffeed\t\\N\t-1e300\tfalse\t\\N\tit's\t[]\t\\N\t\\N\n");
    s.push_str("T\t3\t\\\\N\t\t\\N\t\\N\t\\N\t2024-01-01T02:00:00+02:00\tb c\t[\"\"]\t{}\t\\N\n");
    s
}

fn changes() -> String {
    let mut s = "meta.ts\tmeta.action\tkey.id\tvalue.label\tvalue.body\tvalue.n32\tvalue.score\tvalue.ok\tvalue.at\tvalue.kind\tvalue.tags\tvalue.meta_obj\tvalue.uid\n".to_owned();
    // Key 1 changes twice in the window (the last one wins), key 2 is deleted, key 4 is new.
    s.push_str("T\tU\t1\tfirst\t\\N\t1\t1\ttrue\t\\N\ta\t\\N\t\\N\t\\N\n");
    s.push_str("T\tD\t2\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n");
    s.push_str(&format!(
        "T\tU\t4\tnew\t{AWKWARD}\t\\N\t\\N\t\\N\t\\N\tb c\t[\"z\"]\t\\N\t\\N\n"
    ));
    s.push_str("T\tU\t1\tsecond\t\\N\t2\t2\tfalse\t\\N\tit's\t\\N\t\\N\t\\N\n");
    s
}

/// id, label, body, score, ok, at, kind, tags, meta_obj, uid.
type WideRow = (
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);
/// id, label, body, n32, kind.
type NarrowRow = (i64, String, Option<String>, Option<i32>, String);

async fn query<T: mysql_async::prelude::FromRow + Send + 'static>(db: &MyDb, q: &str) -> Vec<T> {
    db.conn().await.query(q).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_and_awkward_text_round_trip() {
    let db = MyDb::new("my_types").await;
    let store = db.store();
    store.prepare("canvas").await.unwrap();
    let src = StaticSource::new(SCHEMA, 1);
    let at = "2024-01-01T00:00:00Z".parse().unwrap();
    src.serve(&[&snapshot()], DataRange::Snapshot { at });
    common::run1(&store, &src, Command::Init, "things")
        .await
        .unwrap();
    let rows: Vec<WideRow> = query(
        &db,
        "SELECT id, label, body, CAST(score AS CHAR), CAST(ok AS CHAR), CAST(`at` AS CHAR), kind, tags, meta_obj, HEX(uid) FROM canvas__things ORDER BY id",
    )
    .await;
    assert_eq!(rows.len(), 3);
    let r1 = &rows[0];
    assert_eq!(r1.2.as_deref(), Some(AWKWARD_TEXT), "byte for byte");
    assert_eq!(
        (r1.3.as_deref(), r1.4.as_deref(), r1.5.as_deref()),
        (Some("1.5"), Some("1"), Some("2024-01-02 03:04:05"))
    );
    assert_eq!(r1.7.as_deref(), Some("[\"x\",\"y \\\"q\\\"\",null]"));
    assert_eq!(r1.8.as_deref(), Some("{\"any\":{\"deep\":[1,true]}}"));
    assert_eq!(r1.9.as_deref(), Some("0A0D095C00004000800000000000FFFF"));
    assert_eq!(rows[1].1, "Ünïcødé 🎓");
    assert_eq!(
        (
            rows[1].2.as_deref(),
            rows[1].3.as_deref(),
            rows[1].6.as_str()
        ),
        (Some("form\u{c}feed"), Some("-1e300"), "it's")
    );
    assert_eq!(
        rows[2].1, "\\N",
        "an escaped backslash and N is text, not NULL"
    );
    assert_eq!(rows[2].2.as_deref(), Some(""));
    assert_eq!(rows[2].5.as_deref(), Some("2024-01-01 00:00:00"), "UTC");

    src.serve(
        &[&changes()],
        DataRange::Incremental {
            since: at,
            until: "2024-01-02T00:00:00Z".parse().unwrap(),
        },
    );
    let r = common::run1(&store, &src, Command::Sync, "things")
        .await
        .unwrap();
    assert_eq!(
        (r.stats.lines, r.stats.upserted, r.stats.deleted),
        (4, 2, 1)
    );
    let rows: Vec<NarrowRow> = query(
        &db,
        "SELECT id, label, body, n32, kind FROM canvas__things ORDER BY id",
    )
    .await;
    assert_eq!(
        rows,
        [
            (1, "second".to_owned(), None, Some(2), "it's".to_owned()),
            (
                3,
                "\\N".to_owned(),
                Some(String::new()),
                None,
                "b c".to_owned()
            ),
            (
                4,
                "new".to_owned(),
                Some(AWKWARD_TEXT.to_owned()),
                None,
                "b c".to_owned()
            ),
        ]
    );
    assert_eq!(
        db.position("things").await.as_deref(),
        Some("2024-01-02 00:00:00")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nan_and_infinity_are_refused_by_table_key_and_column() {
    let db = MyDb::new("my_nan").await;
    let emu = emulator_with(EmulatorConfig::default());
    let src = source(&emu);
    let store = db.store();
    store.prepare("new_quizzes").await.unwrap();
    let out = replicate::run(
        &store,
        &src,
        Command::Init,
        "new_quizzes",
        &["item_analyses".to_owned()],
        Options::default(),
    )
    .await;
    let TableOutcome::Failed(_, e) = &out[0] else {
        panic!("item_analyses holds NaN and infinities: {out:?}");
    };
    let text = e.to_string();
    assert!(
        text.contains("table `new_quizzes.item_analyses`, record id="),
        "{text}"
    );
    assert!(text.contains(", column `"), "{text}");
    assert!(text.contains("NaN") || text.contains("Infinity"), "{text}");
    // Nothing was left behind: no table, no hidden copy, no position.
    let tables = db.tables().await;
    assert!(
        tables.iter().all(|t| !t.starts_with("new_quizzes__")),
        "{tables:?}"
    );
    assert_eq!(db.position("item_analyses").await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_never_shows_and_a_missing_server_is_named() {
    let conn =
        dap_db::conn::ConnectionString::parse("mysql://root:hunter2secret@127.0.0.1:1/db").unwrap();
    let store = dap_db::mysql::MySqlStore::new(&conn).unwrap();
    let e = store.prepare("canvas").await.unwrap_err().to_string();
    assert!(e.contains("mysql://root:***@127.0.0.1:1/db"), "{e}");
    assert!(!e.contains("hunter2secret"), "{e}");
    assert!(!format!("{store:?}").contains("hunter2secret"));
}
