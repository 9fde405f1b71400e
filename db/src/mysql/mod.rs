//! The MySQL and MariaDB driver (mysql_async, rustls with ring): connects, locks, reads
//! the catalog, and runs the statements the plan and the dialect wrote.
//!
//! MySQL commits implicitly before and after every DDL statement, so a table cannot be
//! created and registered in one transaction as on PostgreSQL. Instead a snapshot loads
//! into a hidden copy (`<ns>__<table>__dap_new`, via `LOAD DATA LOCAL INFILE` fed by the
//! download); only once it is complete does one transaction record the position, ended
//! by the `RENAME TABLE` that publishes the copy (the server commits the row and renames
//! the copy while running that one statement). A failed or killed load leaves at most
//! the hidden copy, which the next run drops. A sync stages its window in a temporary
//! table (which commits nothing), then deletes, upserts and moves the position in one
//! transaction. Two runs on one table take turns on a named lock (`GET_LOCK`).

mod load;
pub(crate) mod sql;

use std::sync::Arc;

use mysql_async::prelude::{FromRow, Queryable};
use mysql_async::{Conn, Opts, OptsBuilder, Params, Row, SslOpts};

use crate::conn::{ConnectionString, ServerConn, SslMode, Target};
use crate::dialect::mysql::{catalog_type, table_name, work_table};
use crate::dialect::{Dialect, META_NAMESPACE, MySql};
use crate::error::{Error, chain, redact};
use crate::migrate::{ExistingColumn, ExistingTable};
use crate::plan::Position;
use crate::store::{Feed, LoadJob, LoadStats, Store, SyncRow, TableSession, parse_naive_utc};

/// A MySQL or MariaDB database.
#[derive(Debug, Clone)]
pub struct MySqlStore {
    inner: Arc<ServerConn>,
}

/// Suffix of the copy a snapshot is loaded into before it is published.
const NEW: &str = "dap_new";
/// Suffix of the copy a re-initialisation replaces, dropped right after.
const OLD: &str = "dap_old";

impl MySqlStore {
    /// A store for the database `conn` names; `None` if it names another kind.
    pub fn new(conn: &ConnectionString) -> Option<Self> {
        match conn.target() {
            Target::MySql(t) => Some(Self {
                inner: Arc::new(ServerConn::new(t, conn)),
            }),
            _ => None,
        }
    }

    fn password(&self) -> Option<&str> {
        self.inner.password()
    }

    fn database(&self) -> &str {
        self.inner.target.database.as_deref().unwrap_or("")
    }

    /// A failed statement, its text redacted.
    pub(crate) fn fail(&self, what: impl Into<String>, e: &mysql_async::Error) -> Error {
        Error::database(what, redact(&chain(e), self.password()))
    }

    fn opts(&self, ssl: Option<SslOpts>) -> Opts {
        let t = &self.inner.target;
        OptsBuilder::default()
            .ip_or_hostname(t.host.clone())
            .tcp_port(t.port)
            .user(Some(t.user.clone().unwrap_or_else(|| "root".to_owned())))
            .pass(t.password.as_ref().map(|p| p.secret().to_owned()))
            .db_name(t.database.clone())
            .prefer_socket(Some(false))
            .init(sql::SESSION_SETUP.to_vec())
            .ssl_opts(ssl)
            .into()
    }

    /// TLS options for `mode` (`None`: a plain connection).
    fn ssl_opts(&self, mode: SslMode) -> Option<SslOpts> {
        let mut opts = SslOpts::default();
        if let Some(root) = &self.inner.target.root_cert {
            opts = opts.with_root_certs(vec![root.clone().into()]);
        }
        match mode {
            SslMode::Disable => None,
            SslMode::VerifyFull => Some(opts),
            SslMode::VerifyCa => Some(opts.with_danger_skip_domain_validation(true)),
            _ => Some(opts.with_danger_accept_invalid_certs(true)),
        }
    }

    /// Opens a connection, with TLS as the connection string asks.
    pub async fn connect(&self) -> Result<Conn, Error> {
        if self.database().is_empty() {
            return Err(Error::Connect {
                target: self.inner.shown.clone(),
                reason: "the connection string names no database \
                         (mysql://user:password@host:port/database)"
                    .to_owned(),
            });
        }
        // mysql_async builds its TLS configuration with the process's default provider.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let plain = || self.opts(None);
        let tls = |mode| self.opts(self.ssl_opts(mode));
        let result = match self.inner.target.ssl {
            SslMode::Disable => Conn::new(plain()).await,
            SslMode::Allow => match Conn::new(plain()).await {
                Ok(c) => Ok(c),
                Err(_) => Conn::new(tls(SslMode::Require)).await,
            },
            SslMode::Prefer => match Conn::new(tls(SslMode::Require)).await {
                Ok(c) => Ok(c),
                Err(_) => Conn::new(plain()).await,
            },
            mode => Conn::new(tls(mode)).await,
        };
        result.map_err(|e| Error::Connect {
            target: self.inner.shown.clone(),
            reason: redact(&chain(&e), self.password()),
        })
    }
}

/// Runs a query with parameters, converting each row without panicking on an
/// unexpected type.
pub(crate) async fn rows<T: FromRow>(
    conn: &mut Conn,
    store: &MySqlStore,
    what: &str,
    query: &str,
    params: Params,
) -> Result<Vec<T>, Error> {
    let rows: Vec<Row> = conn
        .exec(query, params)
        .await
        .map_err(|e| store.fail(what, &e))?;
    rows.into_iter()
        .map(|r| {
            mysql_async::from_row_opt::<T>(r)
                .map_err(|e| Error::database(what, format!("unexpected row: {e}")))
        })
        .collect()
}

/// The single count a query returns.
pub(crate) async fn count_of(
    conn: &mut Conn,
    store: &MySqlStore,
    what: &str,
    query: &str,
) -> Result<u64, Error> {
    let n: Vec<(i64,)> = rows(conn, store, what, query, Params::Empty).await?;
    Ok(n.first().map_or(0, |r| u64::try_from(r.0).unwrap_or(0)))
}

/// The database's default character set.
async fn database_charset(conn: &mut Conn, store: &MySqlStore) -> Result<Option<String>, Error> {
    let found: Vec<(Option<String>,)> = rows(
        conn,
        store,
        "reading the database's character set",
        sql::DATABASE_CHARSET,
        Params::Empty,
    )
    .await?;
    Ok(found.into_iter().next().and_then(|c| c.0))
}

/// Runs statements one after another.
pub(crate) async fn run_all(
    conn: &mut Conn,
    store: &MySqlStore,
    what: &str,
    statements: &[String],
) -> Result<(), Error> {
    for s in statements {
        conn.query_drop(s).await.map_err(|e| store.fail(what, &e))?;
    }
    Ok(())
}

/// Takes the named lock `name`, waiting (and saying so) while another run holds it.
async fn lock(conn: &mut Conn, store: &MySqlStore, name: &str, table: &str) -> Result<(), Error> {
    let what = "taking the table's lock";
    let got: Vec<(Option<i64>,)> =
        rows(conn, store, what, "SELECT GET_LOCK(?, 0)", (name,).into()).await?;
    if got.first().and_then(|r| r.0) == Some(1) {
        return Ok(());
    }
    tracing::warn!("Table '{table}' is being replicated by another run; waiting for it to finish");
    let got: Vec<(Option<i64>,)> = rows(
        conn,
        store,
        what,
        "SELECT GET_LOCK(?, 31536000)",
        (name,).into(),
    )
    .await?;
    match got.first().and_then(|r| r.0) {
        Some(1) => Ok(()),
        _ => Err(Error::database(what, "the server did not grant the lock")),
    }
}

impl Store for MySqlStore {
    type Session = MySqlSession;

    fn dialect(&self) -> &'static dyn Dialect {
        &MySql
    }

    async fn prepare(&self, _namespace: &str) -> Result<(), Error> {
        let mut conn = self.connect().await?;
        // Two first runs at once must not both create the meta tables.
        lock(
            &mut conn,
            self,
            &sql::lock_name(self.database(), META_NAMESPACE, ""),
            META_NAMESPACE,
        )
        .await?;
        run_all(
            &mut conn,
            self,
            "creating the meta tables",
            &MySql.create_meta(),
        )
        .await?;
        if let Some(c) = database_charset(&mut conn, self).await? {
            if c != "utf8mb4" {
                tracing::warn!(
                    "The database's default character set is {c}, not utf8mb4: replicated \
                     tables are created with utf8mb4, so that every character is stored"
                );
            }
        }
        let _ = conn.disconnect().await;
        Ok(())
    }

    async fn session(&self, namespace: &str, table: &str) -> Result<MySqlSession, Error> {
        let mut conn = self.connect().await?;
        lock(
            &mut conn,
            self,
            &sql::lock_name(self.database(), namespace, table),
            table,
        )
        .await?;
        let utf8mb4_default =
            database_charset(&mut conn, self).await?.as_deref() == Some("utf8mb4");
        Ok(MySqlSession {
            store: self.clone(),
            conn,
            namespace: namespace.to_owned(),
            table: table.to_owned(),
            utf8mb4_default,
        })
    }

    async fn positions(&self, namespace: &str) -> Result<Vec<SyncRow>, Error> {
        let mut conn = self.connect().await?;
        let what = "reading instructure_dap__table_sync";
        let found: Vec<(String, String, i64, Option<String>, String)> = rows(
            &mut conn,
            self,
            what,
            &sql::select_positions(),
            (namespace,).into(),
        )
        .await?;
        let _ = conn.disconnect().await;
        found
            .into_iter()
            .map(|(table, ts, version, target_schema, target_table)| {
                Ok(SyncRow {
                    timestamp: parse_naive_utc(&ts)
                        .ok_or_else(|| Error::database(what, format!("bad timestamp {ts}")))?,
                    table,
                    schema_version: u64::try_from(version).unwrap_or(0),
                    target_schema,
                    target_table,
                })
            })
            .collect()
    }

    async fn count(&self, namespace: &str, table: &str) -> Result<u64, Error> {
        let mut conn = self.connect().await?;
        let name = MySql.qualified(namespace, table);
        let n = count_of(
            &mut conn,
            self,
            &format!("counting the rows of {name}"),
            &format!("SELECT COUNT(*) FROM {name}"),
        )
        .await?;
        let _ = conn.disconnect().await;
        Ok(n)
    }
}

/// One MySQL table, locked by this session's connection.
#[derive(Debug)]
pub struct MySqlSession {
    store: MySqlStore,
    conn: Conn,
    namespace: String,
    table: String,
    /// Whether the database's default character set is utf8mb4 (else new tables ask
    /// for it).
    utf8mb4_default: bool,
}

impl TableSession for MySqlSession {
    async fn position(&mut self) -> Result<Option<Position>, Error> {
        let what = "reading instructure_dap__table_sync";
        let found: Vec<(i64, String, i64, String)> = rows(
            &mut self.conn,
            &self.store,
            what,
            &sql::select_position(),
            (&self.namespace, &self.table).into(),
        )
        .await?;
        let Some((id, ts, version, description)) = found.into_iter().next() else {
            return Ok(None);
        };
        Ok(Some(Position {
            id,
            timestamp: parse_naive_utc(&ts)
                .ok_or_else(|| Error::database(what, format!("bad timestamp {ts}")))?,
            schema_version: u64::try_from(version).unwrap_or(0),
            schema_description: description,
        }))
    }

    async fn existing(&mut self) -> Result<Option<ExistingTable>, Error> {
        let name = table_name(&self.namespace, &self.table);
        let what = "reading the table's columns";
        let columns: Vec<(String, String, bool, Option<String>, bool)> = rows(
            &mut self.conn,
            &self.store,
            what,
            sql::COLUMNS,
            (&name,).into(),
        )
        .await?;
        if columns.is_empty() {
            return Ok(None);
        }
        let mut table = ExistingTable::default();
        for (column, ty, nullable, comment, key) in columns {
            if key {
                table.primary_key.push(column.clone());
            }
            table.columns.push(ExistingColumn {
                name: column,
                type_name: catalog_type(&ty),
                nullable,
                comment: comment.filter(|c| !c.is_empty()),
            });
        }
        let comment: Vec<(Option<String>,)> = rows(
            &mut self.conn,
            &self.store,
            what,
            sql::TABLE_COMMENT,
            (&name,).into(),
        )
        .await?;
        table.comment = comment
            .into_iter()
            .next()
            .and_then(|c| c.0)
            .filter(|c| !c.is_empty());
        Ok(Some(table))
    }

    async fn enums(&mut self, _names: &[String]) -> Result<Vec<(String, Vec<String>)>, Error> {
        // Enumerations are column types: a new value is a change of the column.
        Ok(Vec::new())
    }

    async fn execute_each(&mut self, statements: &[String]) -> Result<(), Error> {
        run_all(
            &mut self.conn,
            &self.store,
            "changing the database",
            statements,
        )
        .await
    }

    async fn load(&mut self, job: &LoadJob<'_>, feed: Feed<'_>) -> Result<LoadStats, Error> {
        load::run(self, job, feed).await
    }

    async fn drop_table(&mut self) -> Result<bool, Error> {
        let Some(position) = self.position().await? else {
            return Ok(false);
        };
        let store = self.store.clone();
        let (ns, t) = (&self.namespace, &self.table);
        let name = MySql.qualified(ns, t);
        let what = format!("dropping {name}");
        self.conn
            .query_drop("START TRANSACTION")
            .await
            .map_err(|e| store.fail(&what, &e))?;
        self.conn
            .exec_drop(sql::delete_position(), (position.id,))
            .await
            .map_err(|e| store.fail(&what, &e))?;
        // The server commits the row's deletion as it starts the DROP: one statement.
        let drop = format!(
            "DROP TABLE IF EXISTS {name}, {}, {}",
            crate::dialect::mysql::quote_ident(&work_table(ns, t, NEW)),
            crate::dialect::mysql::quote_ident(&work_table(ns, t, OLD))
        );
        self.conn
            .query_drop(drop)
            .await
            .map_err(|e| store.fail(&what, &e))?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(url: &str) -> MySqlStore {
        MySqlStore::new(&ConnectionString::parse(url).unwrap()).unwrap()
    }

    #[test]
    fn tls_as_the_connection_string_asks() {
        let s = store("mysql://u:pw@h/db?ssl=require");
        assert!(s.ssl_opts(SslMode::Disable).is_none());
        let require = s.ssl_opts(SslMode::Require).unwrap();
        assert!(require.accept_invalid_certs());
        let ca = s.ssl_opts(SslMode::VerifyCa).unwrap();
        assert!(!ca.accept_invalid_certs() && ca.skip_domain_validation());
        let full = s.ssl_opts(SslMode::VerifyFull).unwrap();
        assert!(!full.accept_invalid_certs() && !full.skip_domain_validation());
        let s = store("mysql://u@h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem");
        assert_eq!(
            s.ssl_opts(SslMode::VerifyFull).unwrap().root_certs().len(),
            1
        );
        assert!(!format!("{:?}", store("mysql://u:hunter2@h/db")).contains("hunter2"));
    }

    #[tokio::test]
    async fn a_connection_string_without_a_database_is_refused() {
        let e = store("mysql://u:pw@127.0.0.1:1")
            .connect()
            .await
            .unwrap_err();
        assert!(e.to_string().contains("names no database"), "{e}");
    }
}
