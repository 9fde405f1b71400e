//! Every column type through `COPY` into PostgreSQL and through typed inserts into
//! SQLite, from hand-written TSV: arrays, JSON objects, awkward text, repeated keys in
//! one window.

mod common;

use common::{StaticSource, TestDb};
use dap_db::plan::Command;
use dap_db::sqlite::SqliteStore;
use dap_db::store::Store;
use dap_proto::DataRange;

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
    "nums":{"type":"array","items":{"type":"integer","format":"int64"}},
    "meta_obj":{"type":"object","additionalProperties":true},
    "settings":{"type":"object","properties":{"x":{"type":"integer"}},"additionalProperties":false}
  },"required":["label"]},
  "meta":{"type":"object","properties":{"ts":{"type":"string","format":"date-time"}}}}}"#;

const HEADER: &str = "meta.ts\tkey.id\tvalue.label\tvalue.body\tvalue.n32\tvalue.score\tvalue.ok\tvalue.at\tvalue.kind\tvalue.tags\tvalue.nums\tvalue.meta_obj\tvalue.settings\n";

fn snapshot() -> String {
    let mut s = HEADER.to_owned();
    s.push_str("T\t1\tplain\ttab\\there\\nnew line \\\\ back\t7\t1.5\ttrue\t2024-01-02T03:04:05.123Z\ta\t[\"x\",\"y \\\\\\\"q\\\\\\\"\",null]\t[1,2]\t{\"any\":{\"deep\":[1,true]}}\t{\"x\":1}\n");
    s.push_str("T\t2\tÜnïcødé 🎓\t\\N\t\\N\tNaN\tfalse\t\\N\tit's\t[]\t\\N\t\\N\t\\N\n");
    s.push_str(
        "T\t3\t\\\\N\t\t-1\t-0.25\t\\N\t2024-01-01T00:00:00Z\tb c\t[\"\"]\t[]\t{}\t{\"x\":null}\n",
    );
    s
}

fn changes() -> String {
    let mut s = "meta.ts\tmeta.action\tkey.id\tvalue.label\tvalue.body\tvalue.n32\tvalue.score\tvalue.ok\tvalue.at\tvalue.kind\tvalue.tags\tvalue.nums\tvalue.meta_obj\tvalue.settings\n".to_owned();
    // Key 1 changes twice in the window (the last one wins), key 2 is deleted, key 4 is new.
    s.push_str("T\tU\t1\tfirst\t\\N\t1\t1\ttrue\t\\N\ta\t\\N\t\\N\t\\N\t\\N\n");
    s.push_str("T\tD\t2\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n");
    s.push_str("T\tU\t4\tnew\t\\N\t\\N\t\\N\t\\N\t\\N\tb c\t[\"z\"]\t[3]\t\\N\t\\N\n");
    s.push_str("T\tU\t1\tsecond\t\\N\t2\t2\tfalse\t\\N\tit's\t\\N\t\\N\t\\N\t\\N\n");
    s
}

fn range_changes() -> DataRange {
    DataRange::Incremental {
        since: "2024-01-01T00:00:00Z".parse().unwrap(),
        until: "2024-01-02T00:00:00Z".parse().unwrap(),
    }
}

async fn run1<S: Store>(store: &S, src: &StaticSource, cmd: Command) {
    if let Err(e) = common::run1(store, src, cmd, "things").await {
        panic!("things: {e}");
    }
}

/// A source serving [`SCHEMA`] and one snapshot object of [`snapshot`].
fn snapshot_source() -> StaticSource {
    let src = StaticSource::new(SCHEMA, 1);
    let at = "2024-01-01T00:00:00Z".parse().unwrap();
    src.serve(&[&snapshot()], DataRange::Snapshot { at });
    src
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_takes_every_type() {
    let db = TestDb::new("types").await;
    let store = db.store();
    store.prepare("canvas").await.unwrap();
    let src = snapshot_source();
    run1(&store, &src, Command::Init).await;
    let client = db.client().await;
    let rows: Vec<String> = client
        .query("SELECT t::text FROM canvas.things t ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        rows,
        [
            r#"(1,plain,"tab	here
new line \\ back",7,1.5,t,"2024-01-02 03:04:05.123",a,"{x,""y \\""q\\"""",NULL}","{1,2}","{""any"": {""deep"": [1, true]}}","{""x"": 1}")"#,
            r#"(2,"Ünïcødé 🎓",,,NaN,f,,it's,{},,,)"#,
            r#"(3,"\\N","",-1,-0.25,,"2024-01-01 00:00:00","b c","{""""}",{},{},"{""x"": null}")"#,
        ]
    );
    // A table of the user's refers to the rows: updated rows must stay the same rows.
    client
        .batch_execute(
            "CREATE TABLE public.child (id int, thing bigint REFERENCES canvas.things (id) ON DELETE CASCADE);
             INSERT INTO public.child VALUES (1, 1), (2, 2), (3, 3)",
        )
        .await
        .unwrap();
    src.serve(&[&changes()], range_changes());
    run1(&store, &src, Command::Sync).await;
    let children: Vec<i32> = client
        .query("SELECT id FROM public.child ORDER BY id", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(children, [1, 3], "only the deleted row's child went");
    let rows: Vec<String> = client
        .query(
            "SELECT concat_ws('|', id, label, n32, kind, tags) FROM canvas.things ORDER BY id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        rows,
        ["1|second|2|it's", "3|\\N|-1|b c|{\"\"}", "4|new|b c|{z}"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_takes_every_type() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let store = SqliteStore::at(&path);
    store.prepare("canvas").await.unwrap();
    let src = snapshot_source();
    run1(&store, &src, Command::Init).await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    let row: (String, String, i64, f64, i64, String, String, String) = conn
        .query_row(
            "SELECT label, body, n32, score, ok, at, tags, meta_obj FROM canvas__things WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?)),
        )
        .unwrap();
    assert_eq!(
        row,
        (
            "plain".to_owned(),
            "tab\there\nnew line \\ back".to_owned(),
            7,
            1.5,
            1,
            "2024-01-02 03:04:05.123".to_owned(),
            "[\"x\",\"y \\\"q\\\"\",null]".to_owned(),
            "{\"any\":{\"deep\":[1,true]}}".to_owned()
        )
    );
    src.serve(&[&changes()], range_changes());
    run1(&store, &src, Command::Sync).await;
    let ids: Vec<(i64, String)> = conn
        .prepare("SELECT id, label FROM canvas__things ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        ids,
        [
            (1, "second".to_owned()),
            (3, "\\N".to_owned()),
            (4, "new".to_owned())
        ]
    );
}
