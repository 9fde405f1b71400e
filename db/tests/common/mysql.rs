//! A MySQL/MariaDB database of a test's own, and the rows of a replicated table read
//! back from it.

use dap_db::conn::ConnectionString;
use dap_db::model::{ColumnType, TableModel};
use dap_db::mysql::MySqlStore;
use dap_emulator::Emulator;
use mysql_async::prelude::Queryable;

use super::with_database;

/// The server tests use: `DAP_TEST_MYSQL_URL`, else the local default (the database in
/// it only serves to log in).
pub fn server_url() -> String {
    std::env::var("DAP_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// A database created for one test and dropped after it.
pub struct MyDb {
    pub name: String,
    pub url: String,
    admin: String,
}

async fn admin_conn(url: &str) -> mysql_async::Conn {
    let conn = ConnectionString::parse(url).expect("DAP_TEST_MYSQL_URL is a connection string");
    let store = MySqlStore::new(&conn).expect("DAP_TEST_MYSQL_URL names a MySQL server");
    match store.connect().await {
        Ok(c) => c,
        Err(e) => panic!(
            "these tests need a MySQL or MariaDB server and none answered at {conn} ({e}). \
             Start one (`.ci/run` installs and starts MariaDB; or `scripts/ensure-mariadb.sh`), \
             or point DAP_TEST_MYSQL_URL at a server where the user may create databases"
        ),
    }
}

impl MyDb {
    /// Creates `dap_test_<pid>_<n>_<tag>` (utf8mb4); fails with instructions if no
    /// server answers.
    pub async fn new(tag: &str) -> Self {
        let admin = server_url();
        let name = super::test_db_name(tag);
        let mut conn = admin_conn(&admin).await;
        for stmt in [
            format!("DROP DATABASE IF EXISTS `{name}`"),
            format!("CREATE DATABASE `{name}` CHARACTER SET utf8mb4"),
        ] {
            conn.query_drop(stmt)
                .await
                .expect("create the test database");
        }
        let _ = conn.disconnect().await;
        Self {
            url: with_database(&admin, &name),
            name,
            admin,
        }
    }

    pub fn store(&self) -> MySqlStore {
        MySqlStore::new(&ConnectionString::parse(&self.url).expect("url")).expect("mysql")
    }

    pub async fn conn(&self) -> mysql_async::Conn {
        self.store()
            .connect()
            .await
            .expect("connect to the test database")
    }

    /// The rows of a replicated table, normalised, ordered by key.
    pub async fn rows(&self, model: &TableModel) -> Vec<Vec<Option<String>>> {
        let cols: Vec<String> = model
            .columns
            .iter()
            .map(|c| match c.ty {
                ColumnType::Uuid | ColumnType::Inet => format!("HEX(`{}`)", c.name),
                _ => format!("CAST(`{}` AS CHAR)", c.name),
            })
            .collect();
        let mut conn = self.conn().await;
        let rows: Vec<mysql_async::Row> = conn
            .query(format!(
                "SELECT {} FROM `{}__{}` ORDER BY `{}`",
                cols.join(", "),
                model.namespace,
                model.table,
                model.primary_key
            ))
            .await
            .expect("read the table");
        rows.into_iter()
            .map(|r| {
                model
                    .columns
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        let v: Option<String> = r.get(i).flatten();
                        normalise(&c.ty, v.as_deref())
                    })
                    .collect()
            })
            .collect()
    }

    /// The stored position of a table.
    pub async fn position(&self, table: &str) -> Option<String> {
        let mut conn = self.conn().await;
        conn.exec_first::<String, _, _>(
            "SELECT CAST(`timestamp` AS CHAR) FROM instructure_dap__table_sync WHERE source_table = ?",
            (table,),
        )
        .await
        .ok()
        .flatten()
    }

    /// The tables of the database.
    pub async fn tables(&self) -> Vec<String> {
        let mut conn = self.conn().await;
        conn.query("SHOW TABLES").await.expect("show tables")
    }
}

impl super::recovery::Replica for MyDb {
    type Store = MySqlStore;

    async fn create(tag: &str) -> Self {
        Self::new(tag).await
    }

    fn open_store(&self) -> MySqlStore {
        self.store()
    }

    async fn read_rows(&self, model: &TableModel) -> super::recovery::Rows {
        self.rows(model).await
    }

    async fn read_position(&self, table: &str) -> Option<String> {
        self.position(table).await
    }

    fn expected(emu: &Emulator, model: &TableModel, at_ms: i64) -> super::recovery::Rows {
        expected_rows(emu, model, at_ms)
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        super::on_own_runtime(async move {
            let mut c = admin_conn(&admin).await;
            let _ = c
                .query_drop(format!("DROP DATABASE IF EXISTS `{name}`"))
                .await;
            let _ = c.disconnect().await;
        });
    }
}

/// A cell normalised for comparison, as MySQL keeps it: timestamps in whole seconds,
/// booleans as `true`/`false`, numbers as f64, JSON (objects and arrays) as values.
pub fn normalise(ty: &ColumnType, text: Option<&str>) -> Option<String> {
    super::normalise_as(ty, text, true)
}

/// The expected rows of `namespace.table` at `at_ms`, normalised as MySQL keeps them.
pub fn expected_rows(emu: &Emulator, model: &TableModel, at_ms: i64) -> Vec<Vec<Option<String>>> {
    super::expected_rows_as(emu, &model.namespace, model, at_ms, normalise)
}
