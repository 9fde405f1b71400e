//! `dap initdb`, `syncdb`, `listdb` and `dropdb` end to end, into a SQLite file (no
//! server needed), and the database password kept out of every output.

mod common;

use common::{SECRET_MARKER, bare_dap, dap, emulator, run};

fn db_args<'a>(cmd: &'a str, conn: &'a str, table: &'a str) -> Vec<&'a str> {
    vec![
        cmd,
        "--namespace",
        "canvas",
        "--table",
        table,
        "--connection-string",
        conn,
    ]
}

#[test]
fn sqlite_initdb_syncdb_listdb_dropdb() {
    let emu = emulator();
    let dir = tempfile::tempdir().unwrap();
    let conn = format!("sqlite://{}", dir.path().join("cd2.db").display());

    let r = run(dap(&emu).args(db_args("initdb", &conn, "users,courses")));
    r.assert_code(0).assert_no_secret();
    let r = run(dap(&emu).args(db_args("initdb", &conn, "users")));
    r.assert_code(5);
    assert!(
        r.stderr
            .contains("Table already initialized. Please run syncdb to update it."),
        "{}",
        r.stderr
    );

    let r = run(dap(&emu)
        .arg("--json")
        .args(db_args("syncdb", &conn, "users,courses")));
    r.assert_code(0);
    let j = r.json();
    assert_eq!(j["command"], "syncdb");
    assert_eq!(j["tables"][0]["action"], "synced");

    let r = run(dap(&emu).args([
        "listdb",
        "--namespace",
        "canvas",
        "--connection-string",
        &conn,
    ]));
    r.assert_code(0);
    let rows: serde_json::Value =
        serde_json::from_str(&r.stdout).expect("listdb prints JSON when non-interactive");
    assert_eq!(rows[0]["name"], "courses");
    assert_eq!(rows[0]["command"], "syncdb");
    assert!(rows[0]["records"].as_u64().unwrap() > 0);
    assert!(rows[0]["staleness"].is_string());
    let last = rows.as_array().unwrap().last().unwrap();
    assert_eq!(last["command"], "initdb");
    assert!(last["timestamp"].is_null());
    let keys: Vec<&str> = rows[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 6);

    let r = run(dap(&emu).args([
        "listdb",
        "--namespace",
        "canvas",
        "--omit-not-replicated",
        "--omit-record-count",
        "--connection-string",
        &conn,
    ]));
    let rows: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    assert!(rows[0].get("records").is_none());

    // dropdb needs no DAP credentials.
    let r = run(bare_dap().args(db_args("dropdb", &conn, "all")));
    r.assert_code(0);
    let r = run(bare_dap().args(db_args("dropdb", &conn, "users")));
    r.assert_code(5)
        .assert_stderr_has(&["Table not initialized"]);
}

#[test]
fn the_database_password_never_appears() {
    let emu = emulator();
    let conn = format!("postgresql://someone:{SECRET_MARKER}@127.0.0.1:1/nowhere?sslmode=disable");
    let mysql = format!("mysql://someone:{SECRET_MARKER}@127.0.0.1:1/nowhere?ssl=require");
    for extra in [vec![], vec!["--json"], vec!["--loglevel", "debug"]] {
        for c in [&conn, &mysql] {
            let r = run(dap(&emu).args(&extra).args(db_args("syncdb", c, "users")));
            r.assert_code(5).assert_no_secret();
            r.assert_stderr_has(&["someone:***@127.0.0.1:1"]);
        }
    }
    let r = run(dap(&emu).env("DAP_CONNECTION_STRING", &conn).args([
        "listdb",
        "--namespace",
        "canvas",
    ]));
    r.assert_code(5).assert_no_secret();
    let r = run(dap(&emu)
        .env("DAP_CONNECTION_STRING", &conn)
        .arg("initdb")
        .arg("--help"));
    r.assert_code(0).assert_no_secret();
}

#[test]
fn a_missing_or_bad_connection_string_is_explained() {
    let emu = emulator();
    let r = run(dap(&emu).env_remove("DAP_CONNECTION_STRING").args([
        "initdb",
        "--namespace",
        "canvas",
        "--table",
        "users",
    ]));
    r.assert_code(5)
        .assert_stderr_has(&["Missing database connection string"]);
    let r = run(dap(&emu).args(db_args("initdb", "mssql://root@127.0.0.1/test", "users")));
    r.assert_code(5).assert_stderr_has(&["mssql"]);
}
